"""Streaming passes over a PE image: the Authenticode digest, the PE checksum, and the
signed copy (digest + copy + checksum in one read of the file).

Memory stays bounded: the file is read in chunks of :data:`kmssign.pe.CHUNK`, or, when
large, through read-only memory maps of :data:`WINDOW` bytes at a time.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import mmap
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from kmssign.checksum import Checksum, accelerate_for
from kmssign.errors import ConfigError, PEFormatError
from kmssign.pe import (
    CHUNK,
    DIGESTS,
    DIR_ENTRY,
    WIN_CERT,
    PEImage,
    align8,
    unwrap_table,
    win_certificate,
)

Data = bytes | memoryview  # a chunk of the file, or a zeroed copy of one

THREAD_MIN = 4 * CHUNK  # below this, hashing in worker threads does not pay
_QUEUE_DEPTH = 8  # chunks in flight to each worker thread (bounded memory)
_MAPPED_DEPTH = 1  # mapped windows queued for each worker thread


def _new_hash(digest: str) -> hashlib._Hash:
    if digest not in DIGESTS:
        raise ConfigError(f"unsupported digest algorithm {digest!r} (use sha256, sha384 or sha512)")
    return hashlib.new(digest)


def _read_into(f: BinaryIO, buffer: bytearray, want: int) -> memoryview:
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


def _chunks(f: BinaryIO, start: int, end: int) -> Iterator[tuple[int, memoryview]]:
    """(offset, data) pieces of [start, end), each at most CHUNK long.

    Every piece is read into the same buffer: use it before asking for the next one.
    (Reusing buffers matters: a fresh 1 MiB object per read costs page faults that, in a
    new process, take longer than hashing.)
    """
    f.seek(start)
    buffer = bytearray(CHUNK)
    offset = start
    while offset < end:
        data = _read_into(f, buffer, min(CHUNK, end - offset))
        yield offset, data
        offset += len(data)


class _Lease:
    """A pooled buffer that returns to its pool once every holder is done with it."""

    __slots__ = ("_buffer", "_holders", "_lock", "_pool")

    def __init__(self, pool: queue.SimpleQueue[bytearray], buffer: bytearray, holders: int):
        self._pool, self._buffer, self._holders = pool, buffer, holders
        self._lock = threading.Lock()

    def done(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders:
                return
        self._pool.put(self._buffer)


WINDOW = 2 * CHUNK  # bytes of the file mapped at once by the mapped pass
_SEQUENTIAL: int | None = getattr(mmap, "MADV_SEQUENTIAL", None)


def _mapped_windows(fd: int, start: int, end: int) -> Iterator[tuple[int, memoryview]]:
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


def _split(offset: int, data: Data, image: PEImage) -> tuple[Data, list[memoryview]]:
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


def authenticode_digest(f: BinaryIO, image: PEImage, digest: str) -> bytes:
    """The Authenticode digest of the image, in one streaming pass."""
    h = _new_hash(digest)
    end = image.image_end
    for offset, data in _pieces(f, end):
        for piece in _split(offset, data, image)[1]:
            h.update(piece)
    if not image.has_certificate_table:
        h.update(bytes(align8(end) - end))
    return h.digest()


def _pieces(f: BinaryIO, end: int) -> Iterator[tuple[int, memoryview]]:
    """[0, end) of the file in pieces: mapped windows for large regular files (no copy
    into a buffer), read chunks otherwise."""
    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if end >= _KERNEL_COPY_MIN and fd >= 0 and _mappable(fd, end):
        yield from _mapped_windows(fd, 0, end)
    else:
        yield from _chunks(f, 0, end)


def pe_checksum(f: BinaryIO, image: PEImage) -> int:
    """The PE checksum of the file as it is (CheckSum field counted as zero)."""
    acc = Checksum()
    accelerate_for(image.size)
    cks = image.checksum_offset
    for offset, data in _pieces(f, image.size):
        piece: Data = data
        if offset < cks + 4 and cks < offset + len(data):
            zeroed = bytearray(data)
            lo, hi = max(cks, offset) - offset, min(cks + 4, offset + len(data)) - offset
            zeroed[lo:hi] = bytes(hi - lo)
            piece = bytes(zeroed)
        acc.add(piece, offset)
    return acc.value(image.size)


class _Summer:
    """Hashes the Authenticode pieces and checksums the written bytes of each chunk.

    With ``threaded``, one worker thread hashes and another checksums (hashlib and numpy
    drop the GIL on large buffers) while the calling thread only reads and writes, so the
    pass costs about the largest of the three instead of their sum. Bounded queues
    bound the memory.
    """

    def __init__(self, h: hashlib._Hash | None, threaded: bool, *, mapped: bool = False) -> None:
        self.h = h
        self.checksum = Checksum()
        self._queues: list[queue.Queue[_Item | None]] = []
        self._threads: list[threading.Thread] = []
        self._pool: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        if threaded:
            depth = _QUEUE_DEPTH
            if mapped:  # the pieces are mapped windows (_mapped_windows): no buffers
                depth = _MAPPED_DEPTH
            else:
                # enough buffers for both full queues, one in each worker and one being read
                for _ in range(_QUEUE_DEPTH + 3):
                    self._pool.put(bytearray(CHUNK))
            for target in (self._hash_pieces, self._sum_written):
                q: queue.Queue[_Item | None] = queue.Queue(maxsize=depth)
                thread = threading.Thread(
                    target=self._drain, args=(q, target), name="kmssign-hash", daemon=True
                )
                self._queues.append(q)
                self._threads.append(thread)
                thread.start()

    @staticmethod
    def _drain(
        q: queue.Queue[_Item | None], work: Callable[[int, Data, list[memoryview]], None]
    ) -> None:
        while (item := q.get()) is not None:
            offset, written, pieces, lease = item
            work(offset, written, pieces)
            if lease is not None:
                lease.done()
            # Drop this item's views now, not at the next get(): a mapped window is
            # unmapped only when its last view is gone.
            del item, written, pieces

    def chunks(
        self, f: BinaryIO, start: int, end: int
    ) -> Iterator[tuple[int, memoryview, _Lease | None]]:
        """Like :func:`_chunks`, for feeding: with workers, each piece has a buffer of its
        own that goes back to the pool when the workers and the caller are done with it
        (pass the lease to :meth:`feed`; the caller's hold ends when it asks for more)."""
        if not self._queues:
            for offset, data in _chunks(f, start, end):
                yield offset, data, None
            return
        f.seek(start)
        offset = start
        while offset < end:
            buffer = self._pool.get()
            data = _read_into(f, buffer, min(CHUNK, end - offset))
            lease = _Lease(self._pool, buffer, len(self._queues) + 1)
            yield offset, data, lease
            lease.done()
            offset += len(data)

    def _hash_pieces(self, _offset: int, _written: Data, pieces: list[memoryview]) -> None:
        if self.h is not None:
            for piece in pieces:
                self.h.update(piece)

    def _sum_written(self, offset: int, written: Data, _pieces: list[memoryview]) -> None:
        self.checksum.add(written, offset)

    def feed(
        self, offset: int, written: Data, pieces: list[memoryview], lease: _Lease | None = None
    ) -> None:
        if not self._queues:
            self._hash_pieces(offset, written, pieces)
            self._sum_written(offset, written, pieces)
        else:
            for q in self._queues:
                q.put((offset, written, pieces, lease))

    def close(self) -> None:
        """Wait for the workers; afterwards feed() works inline."""
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join()
        self._queues, self._threads = [], []


_Item = tuple[int, "Data", list[memoryview], _Lease | None]


@dataclass
class SignedCopy:
    """What finish_signed_copy needs after begin_signed_copy streamed the image."""

    base: int  # position of the image's first byte in `out`
    image_length: int  # bytes written so far (image without table, padded to 8)
    checksum_offset: int
    security_entry_offset: int
    checksum: Checksum


def _copy_without_table(f: BinaryIO, image: PEImage, out: BinaryIO, summer: _Summer) -> SignedCopy:
    """Copy [0, image_end) to ``out`` with CheckSum and security entry zeroed, then pad to 8."""
    base = out.tell()
    end = image.image_end
    try:
        for offset, data, lease in summer.chunks(f, 0, end):
            written, pieces = _split(offset, data, image)
            summer.feed(offset, written, pieces, lease)
            out.write(written)
    finally:
        summer.close()
    padding = bytes(align8(end) - end)
    if padding:
        summer.feed(end, padding, [memoryview(padding)])
        out.write(padding)
    return SignedCopy(
        base,
        end + len(padding),
        image.checksum_offset,
        image.security_entry_offset,
        summer.checksum,
    )


def begin_signed_copy(
    f: BinaryIO, image: PEImage, digest: str, out: BinaryIO
) -> tuple[bytes, SignedCopy]:
    """Stream the image once: return its Authenticode digest and write it, without its old
    certificate table and zero-padded to 8, to ``out`` (from its current position)."""
    if align8(image.image_end) + WIN_CERT.size > 0xFFFFFFFF:
        raise PEFormatError("file is too large to sign (a PE image ends below 4 GiB)")
    if image.image_end >= _KERNEL_COPY_MIN:
        done = _hash_beside_kernel_copy(f, image, digest, out)
        if done is not None:
            return done
    accelerate_for(image.image_end)
    h = _new_hash(digest)
    summer = _Summer(h, threaded=image.image_end >= THREAD_MIN)
    state = _copy_without_table(f, image, out, summer)
    return h.digest(), state


_KERNEL_COPY_MIN = 8 * CHUNK  # below this, a plain read/write copy is as fast
# copy_file_range cannot serve these files or filesystems: use the plain copy instead
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}


def _mappable(fd: int, end: int) -> bool:
    """Whether the file can be read through memory maps (regular files can)."""
    try:
        probe = mmap.mmap(fd, min(WINDOW, end), access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return False
    probe.close()
    return True


@functools.lru_cache(maxsize=1)
def _fallocate() -> Callable[[int, int, int], int] | None:
    """fallocate(2) from libc, where there is one (Linux), as ``(fd, offset, length) ->
    errno`` (0 when the blocks are reserved); None elsewhere."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = getattr(libc, "fallocate64", None) or libc.fallocate
    except (OSError, AttributeError, TypeError):  # no such function; Windows has no libc
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    function.restype = ctypes.c_int

    def reserve(fd: int, offset: int, length: int) -> int:
        return 0 if function(fd, 0, offset, length) == 0 else ctypes.get_errno()

    return reserve


def _preallocate(fd: int, offset: int, length: int) -> None:
    """Reserve the blocks of a large copy before writing it, where the filesystem can.

    On ext4 a copy into reserved blocks takes a third of the time of one that allocates
    as it goes, and a full disk fails here, before the copy. Not os.posix_fallocate:
    where the filesystem cannot, glibc emulates it by writing every block, which costs
    more than it saves; here such filesystems are simply skipped.
    """
    fallocate = _fallocate()
    if fallocate is not None and fallocate(fd, offset, length) == errno.ENOSPC:
        raise OSError(errno.ENOSPC, "no space left on the device for the signed copy")


def _hash_beside_kernel_copy(
    f: BinaryIO, image: PEImage, digest: str, out: BinaryIO
) -> tuple[bytes, SignedCopy] | None:
    """Hash in this process while the kernel copies the file (``copy_file_range``).

    Writing a large copy through user space costs more than hashing it; the kernel copy
    runs beside the hashing pass on another core. Returns None (and leaves ``out`` as it
    was) where the kernel cannot copy, so the caller falls back to the streaming copy.
    """
    copy_file_range = getattr(os, "copy_file_range", None)
    try:
        src_fd, dst_fd = f.fileno(), out.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    if copy_file_range is None:
        return None
    out.flush()
    base = out.tell()
    end = image.image_end
    before = os.fstat(src_fd)
    failures: list[OSError] = []

    def kernel_copy() -> None:
        copied = 0
        try:
            while copied < end:
                n = copy_file_range(src_fd, dst_fd, end - copied, copied, base + copied)
                if n == 0:
                    raise OSError(errno.EIO, "file is shorter than its headers say")
                copied += n
        except OSError as exc:
            failures.append(exc)

    _preallocate(dst_fd, base, align8(end))
    h = _new_hash(digest)
    mapped = _mappable(src_fd, end)
    summer = _Summer(h, threaded=True, mapped=mapped)
    copier = threading.Thread(target=kernel_copy, name="kmssign-copy", daemon=True)
    copier.start()
    try:
        accelerate_for(end)  # importing numpy holds the GIL; the kernel copies meanwhile
        if mapped:
            for offset, view in _mapped_windows(src_fd, 0, end):
                written, pieces = _split(offset, view, image)
                summer.feed(offset, written, pieces)
                del view, written, pieces  # see _Summer._drain
        else:
            for offset, data, lease in summer.chunks(f, 0, end):
                written, pieces = _split(offset, data, image)
                summer.feed(offset, written, pieces, lease)
    finally:
        summer.close()
        copier.join()
    if failures:
        if failures[0].errno in _NO_KERNEL_COPY:
            out.seek(base)
            out.truncate()
            return None
        raise failures[0]
    after = os.fstat(src_fd)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise PEFormatError("the file changed while it was being signed")
    # The copy holds the original CheckSum and security entry: zero them as the
    # streaming copy does (finish_signed_copy writes the final values).
    out.seek(base + image.checksum_offset)
    out.write(bytes(4))
    out.seek(base + image.security_entry_offset)
    out.write(bytes(8))
    out.seek(base + end)
    padding = bytes(align8(end) - end)
    if padding:
        summer.feed(end, padding, [memoryview(padding)])
        out.write(padding)
    state = SignedCopy(
        base,
        end + len(padding),
        image.checksum_offset,
        image.security_entry_offset,
        summer.checksum,
    )
    return h.digest(), state


def _write_tail(out: BinaryIO, state: SignedCopy, entry: tuple[int, int], table: bytes) -> None:
    """Append ``table``, set the security entry and the checksum of the finished file."""
    table_offset, table_size = entry
    if table_offset + table_size > 0xFFFFFFFF:
        raise PEFormatError("signed file would be larger than 4 GiB")
    out.seek(state.base + state.image_length)
    out.write(table)
    raw_entry = DIR_ENTRY.pack(table_offset, table_size)
    state.checksum.add(raw_entry, state.security_entry_offset)
    state.checksum.add(table, state.image_length)
    total = state.image_length + len(table)
    out.seek(state.base + state.security_entry_offset)
    out.write(raw_entry)
    out.seek(state.base + state.checksum_offset)
    out.write(struct.pack("<I", state.checksum.value(total)))
    out.seek(state.base + total)


def finish_signed_copy(out: BinaryIO, state: SignedCopy, signed_data: bytes) -> None:
    """Append one WIN_CERTIFICATE holding ``signed_data`` (DER SignedData, or a one-entry
    certificate table given whole), point the security entry at it, write the checksum."""
    table = win_certificate(unwrap_table(signed_data))
    _write_tail(out, state, (state.image_length, len(table)), table)


def strip_copy(f: BinaryIO, image: PEImage, out: BinaryIO) -> None:
    """Copy the image without its certificate table (entry zeroed, checksum recomputed).

    The copy ends where the table started (8-aligned when the file was signed); an
    image without a table is copied as it is, only the checksum is rewritten.
    """
    base = out.tell()
    accelerate_for(image.image_end)
    summer = _Summer(None, threaded=False)
    for offset, data in _chunks(f, 0, image.image_end):
        written = _split(offset, data, image)[0]
        summer.feed(offset, written, [])
        out.write(written)
    state = SignedCopy(
        base, image.image_end, image.checksum_offset, image.security_entry_offset, summer.checksum
    )
    _write_tail(out, state, (0, 0), b"")
