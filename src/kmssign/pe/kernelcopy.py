"""The kernel's copy of a large file (``copy_file_range`` into blocks reserved with
``fallocate``), hashed in this process while the kernel copies."""

from __future__ import annotations

import errno
import functools
import os
import threading
from collections.abc import Callable
from typing import BinaryIO

from kmssign.errors import PEFormatError
from kmssign.pe import reading
from kmssign.pe.checksum import Checksum, accelerate_for
from kmssign.pe.hashing import Summer
from kmssign.pe.image import PEImage, align8
from kmssign.pe.reading import new_hash, split

# copy_file_range cannot serve these files or filesystems: use the plain copy instead
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}


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


def hash_beside_kernel_copy(
    f: BinaryIO, image: PEImage, digest: str, out: BinaryIO
) -> tuple[bytes, Checksum] | None:
    """Hash in this process while the kernel copies the file (``copy_file_range``).

    Writing a large copy through user space costs more than hashing it; the kernel copy
    runs beside the hashing pass on another core. Returns None (and leaves ``out`` as it
    was) where the kernel cannot copy, so the caller falls back to the streaming copy.
    On success ``out`` holds the image (CheckSum and security entry zeroed) padded to 8,
    and the result is its digest and the checksum of what was written.
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
    h = new_hash(digest)
    mapped = reading.mappable(src_fd, end)
    summer = Summer(h, threaded=True, mapped=mapped)
    copier = threading.Thread(target=kernel_copy, name="kmssign-copy", daemon=True)
    copier.start()
    try:
        accelerate_for(end)  # importing numpy holds the GIL; the kernel copies meanwhile
        if mapped:
            for offset, view in reading.mapped_windows(src_fd, 0, end):
                written, pieces = split(offset, view, image)
                summer.feed(offset, written, pieces)
                del view, written, pieces  # see Summer._drain
        else:
            for offset, data, lease in summer.chunks(f, 0, end):
                written, pieces = split(offset, data, image)
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
    return h.digest(), summer.checksum

