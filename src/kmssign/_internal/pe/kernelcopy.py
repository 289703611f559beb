"""The kernel's copy of a large file (``copy_file_range`` into blocks reserved with
``fallocate``), hashed in this process while the kernel copies."""

from __future__ import annotations

import errno
import functools
import os
import threading
from collections.abc import Callable
from typing import BinaryIO

from kmssign._internal.pe import reading
from kmssign._internal.pe.checksum import Checksum, accelerate_for
from kmssign._internal.pe.hashing import Summer
from kmssign._internal.pe.image import PEImage, align8
from kmssign._internal.pe.reading import new_hash, split
from kmssign.errors import PEFormatError

# copy_file_range cannot serve these files or filesystems: use the plain copy instead
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}
_STEP = 4 << 20  # bytes per copy_file_range call: the hashing pass follows this closely


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


class _CopyFailed(Exception):
    """The kernel copy stopped; its OSError is in ``_Copied.failure``."""


class _Copied:
    """How far the kernel copy got, for the pass that reads the copy behind it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.done = 0
        self.failure: OSError | None = None

    def advance(self, done: int) -> None:
        with self._changed:
            self.done = done
            self._changed.notify_all()

    def fail(self, exc: OSError) -> None:
        with self._changed:
            self.failure = exc
            self._changed.notify_all()

    def wait(self, upto: int) -> None:
        """Return once the first ``upto`` bytes are copied; _CopyFailed if they never are."""
        with self._changed:
            while self.done < upto and self.failure is None:
                self._changed.wait()
            if self.done < upto:
                raise _CopyFailed


def hash_beside_kernel_copy(
    f: BinaryIO, image: PEImage, digest: str, out: BinaryIO
) -> tuple[bytes, Checksum] | None:
    """Hash in this process while the kernel copies the file (``copy_file_range``).

    Writing a large copy through user space costs more than hashing it; the kernel copy
    runs beside the hashing pass on another core. The hashing pass reads the copy,
    through memory maps, right behind the kernel (never the original, which another
    process could cut short under a map), so the digest is that of the bytes written.
    Where the copy cannot be mapped, the original is read through buffers instead.
    Returns None (and leaves ``out`` as it was) where the kernel cannot copy, so the
    caller falls back to the streaming copy. On success ``out`` holds the image
    (CheckSum and security entry zeroed) padded to 8, and the result is its digest and
    the checksum of what was written.
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
    copied = _Copied()

    def kernel_copy() -> None:
        done = 0
        try:
            while done < end:
                step = min(_STEP, end - done)
                n = copy_file_range(src_fd, dst_fd, step, done, base + done)
                if n == 0:
                    raise OSError(
                        errno.EIO, "file is shorter than its headers say (changed while reading?)"
                    )
                done += n
                copied.advance(done)
        except OSError as exc:
            copied.fail(exc)

    _preallocate(dst_fd, base, align8(end))
    h = new_hash(digest)
    mapped = reading.mappable(dst_fd, base + end)
    summer = Summer(h, threaded=True, mapped=mapped)
    copier = threading.Thread(target=kernel_copy, name="kmssign-copy", daemon=True)
    copier.start()
    try:
        accelerate_for(end)  # importing numpy holds the GIL; the kernel copies meanwhile
        if mapped:
            windows = reading.mapped_windows(dst_fd, 0, end, base=base, ready=copied.wait)
            for offset, view in windows:
                written, pieces = split(offset, view, image)
                summer.feed(offset, written, pieces)
                del view, written, pieces  # see Summer._drain
        else:
            for offset, data, lease in summer.chunks(f, 0, end):
                written, pieces = split(offset, data, image)
                summer.feed(offset, written, pieces, lease)
    except _CopyFailed:
        pass  # the failure is handled below
    finally:
        summer.close()
        copier.join()
    if copied.failure is not None:
        if copied.failure.errno in _NO_KERNEL_COPY:
            out.seek(base)
            out.truncate()
            return None
        raise copied.failure
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
    return h.digest(), summer.checksum

