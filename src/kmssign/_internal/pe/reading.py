"""Reading a PE file in pieces: buffered chunks, or read-only memory maps of kmssign's
own copy of a large file, with the CheckSum field and the certificate-table entry split
out.

Memory stays bounded: the file is read in chunks of :data:`~kmssign._internal.pe.image.CHUNK`, or
its copy through read-only memory maps of :data:`WINDOW` bytes at a time. A file that
another process may change is never mapped: touching a mapped page past the end of a
file cut short kills the process with SIGBUS, and no check beforehand can rule out a
truncation right after it. Read through buffers, a file cut short is a clean error.
"""

from __future__ import annotations

import hashlib
import mmap
from collections.abc import Callable, Iterator
from typing import BinaryIO

from kmssign._internal.pe.image import CHUNK, DIGESTS, PEImage
from kmssign.errors import ConfigError, PEFormatError

Data = bytes | memoryview  # a chunk of the file, or a zeroed copy of one

LARGE = 8 * CHUNK  # from this size on, files are copied by the kernel and the copy mapped
WINDOW = 2 * CHUNK  # bytes of the copy mapped at once by the mapped pass
_SEQUENTIAL: int | None = getattr(mmap, "MADV_SEQUENTIAL", None)


def new_hash(digest: str) -> hashlib._Hash:
    if digest not in DIGESTS:
        raise ConfigError(f"unsupported digest algorithm {digest!r} (use sha256, sha384 or sha512)")
    return hashlib.new(digest)


def read_into(f: BinaryIO, buffer: bytearray, want: int) -> memoryview:
    view = memoryview(buffer)[:want]
    readinto = getattr(f, "readinto", None)
    if readinto is not None:
        got = int(readinto(view) or 0)
    else:  # a file object without readinto: copy what read() returns
        data = f.read(want)
        got = len(data)
        view[:got] = data
    if not got:
        raise PEFormatError("file is shorter than its headers say (changed while reading?)")
    return view[:got]


def chunks(f: BinaryIO, start: int, end: int) -> Iterator[tuple[int, memoryview]]:
    """(offset, data) pieces of [start, end), each at most CHUNK long.

    Every piece is read into the same buffer: use it before asking for the next one.
    (Reusing buffers matters: a fresh 1 MiB object per read costs page faults that, in a
    new process, take longer than hashing.)
    """
    f.seek(start)
    buffer = bytearray(CHUNK)
    offset = start
    while offset < end:
        data = read_into(f, buffer, min(CHUNK, end - offset))
        yield offset, data
        offset += len(data)


def mapped_windows(
    fd: int, start: int, end: int, *, base: int = 0, ready: Callable[[int], None] | None = None
) -> Iterator[tuple[int, memoryview]]:
    """(offset, data) pieces of [start, end) of the image that begins at ``base`` in the
    file open as ``fd``, read through read-only memory maps.

    Only for kmssign's own temporary file, which no other process shrinks (see the module
    docstring). ``ready(upto)`` returns once the image's first ``upto`` bytes are written
    there (the kernel copies the file in while it is read), or raises. Hashing straight
    from the page cache saves copying every byte into a buffer (on a large file that
    copy costs as much as hashing). One window is mapped at a time and unmapped once
    every holder of its view is done, so the resident size stays bounded.
    """
    offset = start
    while offset < end:
        length = min(WINDOW, end - offset)
        if ready is not None:
            ready(offset + length)
        position = base + offset
        aligned = position - position % mmap.ALLOCATIONGRANULARITY
        window = mmap.mmap(
            fd, position + length - aligned, offset=aligned, access=mmap.ACCESS_READ
        )
        if _SEQUENTIAL is not None:  # read-ahead hint; madvise is not on every OS
            window.madvise(_SEQUENTIAL)
        yield offset, memoryview(window)[position - aligned :]
        offset += length


def _holes(image: PEImage) -> tuple[tuple[int, int], tuple[int, int]]:
    return (
        (image.checksum_offset, image.checksum_offset + 4),
        (image.security_entry_offset, image.security_entry_offset + 8),
    )


def split(offset: int, data: Data, image: PEImage) -> tuple[Data, list[memoryview]]:
    """``data`` with the CheckSum and security entry zeroed, and the pieces Authenticode hashes."""
    end = offset + len(data)
    holes = [(a, b) for a, b in _holes(image) if a < end and b > offset]
    view = memoryview(data)
    if not holes:
        return data, [view]
    zeroed = bytearray(data)
    pieces: list[memoryview] = []
    pos = offset
    for a, b in holes:
        lo, hi = max(a, offset), min(b, end)
        if lo > pos:
            pieces.append(view[pos - offset : lo - offset])
        zeroed[lo - offset : hi - offset] = bytes(hi - lo)
        pos = max(pos, hi)
    if pos < end:
        pieces.append(view[pos - offset :])
    return bytes(zeroed), pieces


def mappable(fd: int, end: int) -> bool:
    """Whether the first ``end`` bytes of the file can be read through memory maps."""
    try:
        probe = mmap.mmap(fd, min(WINDOW, end), access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return False
    probe.close()
    return True
