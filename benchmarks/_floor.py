"""The least any Python signer pays for one large file: bench_sign's "Python floor" rows.

Usage: python benchmarks/_floor.py SRC OUT [--checksum]

A Python process that imports nothing beyond the standard library and does only what
every way of signing a file atomically must do with its bytes, each part on its own
thread as early as the interpreter allows: SHA-256 over the whole file (read through
memory maps, as kmssign reads it) while the kernel copies it into a new file
(``copy_file_range`` into blocks reserved with ``fallocate``). No PE parsing, no key, no
certificate, no signature, no checksum, so no real signer can be faster than this.

``--checksum`` adds the PE checksum's word sum on the main thread beside the other two,
in the cheapest form this install allows: numpy where it is installed (kmssign[fast]),
else the standard library's (16 KiB integers summed, as kmssign sums them, with the
GIL handed over every 0.2 ms). Prints nothing; bench_sign times the whole process.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import sys
import threading

WINDOW = 4 << 20
PIECE = 16 << 10


def hash_file(fd: int, size: int) -> None:
    h = hashlib.sha256()
    for offset in range(0, size, WINDOW):
        length = min(WINDOW, size - offset)
        with (
            mmap.mmap(fd, length, offset=offset, access=mmap.ACCESS_READ) as m,
            memoryview(m) as view,
        ):
            h.update(view)


def copy_file(fd: int, size: int, target: str) -> None:
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(out, 0, size)
        copied = 0
        while copied < size:
            copied += os.copy_file_range(fd, out, size - copied, copied, copied)
    finally:
        os.close(out)


def word_sum_stdlib(fd: int, size: int) -> int:
    sys.setswitchinterval(0.0002)
    total = 0
    for offset in range(0, size, WINDOW):
        length = min(WINDOW, size - offset)
        with mmap.mmap(fd, length, offset=offset, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            total += sum(
                int.from_bytes(view[i : i + PIECE], "little") for i in range(0, length, PIECE)
            )
            del view
    return total % 0xFFFF


def word_sum(fd: int, size: int) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `kmssign sign` sets it
    try:
        import numpy as np
    except ImportError:
        return word_sum_stdlib(fd, size)

    total = 0
    whole = size & ~3
    for offset in range(0, whole, WINDOW):
        length = min(WINDOW, whole - offset)
        with mmap.mmap(fd, length, offset=offset, access=mmap.ACCESS_READ) as m:
            words = np.frombuffer(m, dtype="<u4")
            total += int(words.sum(dtype=np.uint64))
            del words
    return total % 0xFFFF


def main() -> None:
    src, target = sys.argv[1], sys.argv[2]
    fd = os.open(src, os.O_RDONLY)
    size = os.fstat(fd).st_size
    workers = [
        threading.Thread(target=hash_file, args=(fd, size)),
        threading.Thread(target=copy_file, args=(fd, size, target)),
    ]
    for worker in workers:
        worker.start()
    if "--checksum" in sys.argv[3:]:
        word_sum(fd, size)
    for worker in workers:
        worker.join()
    os.close(fd)


if __name__ == "__main__":
    main()
