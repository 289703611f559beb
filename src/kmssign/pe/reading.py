"""Reading a PE file in pieces: buffered chunks, or read-only memory maps for large
files, with the CheckSum field and the certificate-table entry split out.

Memory stays bounded: the file is read in chunks of :data:`~kmssign.pe.image.CHUNK`, or,
when large, through read-only memory maps of :data:`WINDOW` bytes at a time.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Iterator
from typing import BinaryIO

from kmssign.errors import ConfigError, PEFormatError
from kmssign.pe.image import CHUNK, DIGESTS, PEImage

Data = bytes | memoryview  # a chunk of the file, or a zeroed copy of one

LARGE = 8 * CHUNK  # from this size on, files are mapped and copied by the kernel
WINDOW = 2 * CHUNK  # bytes of the file mapped at once by the mapped pass
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


def mapped_windows(fd: int, start: int, end: int) -> Iterator[tuple[int, memoryview]]:
    """(offset, data) pieces of [start, end) read through read-only memory maps.

    Hashing straight from the page cache saves copying every byte into a buffer (on a
    large file that copy costs as much as hashing). One window is mapped at a time and
    unmapped once every holder of its view is done, so the resident size stays bounded.
    ``start`` must be a multiple of ``mmap.ALLOCATIONGRANULARITY`` (64 KiB on Windows).
    """
    offset = start
    while offset < end:
        # A file cut short while mapped would kill the process (SIGBUS): look first.
        if os.fstat(fd).st_size < end:
            raise PEFormatError("the file changed while it was being signed")
        length = min(WINDOW, end - offset)
        window = mmap.mmap(fd, length, offset=offset, access=mmap.ACCESS_READ)
        if _SEQUENTIAL is not None:  # read-ahead hint; madvise is not on every OS
            window.madvise(_SEQUENTIAL)
        yield offset, memoryview(window)
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


def pieces(f: BinaryIO, end: int) -> Iterator[tuple[int, memoryview]]:
    """[0, end) of the file in pieces: mapped windows for large regular files (no copy
    into a buffer), read chunks otherwise."""
    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if end >= LARGE and fd >= 0 and mappable(fd, end):
        yield from mapped_windows(fd, 0, end)
    else:
        yield from chunks(f, 0, end)


def mappable(fd: int, end: int) -> bool:
    """Whether the file can be read through memory maps (regular files can)."""
    try:
        probe = mmap.mmap(fd, min(WINDOW, end), access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return False
    probe.close()
    return True

