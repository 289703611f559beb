"""The least any Python signer of wheels pays beside the signing: bench_wheel's "floor" row.

Usage: python benchmarks/_wheel_floor.py WHEEL OUT

A Python process that imports the standard library (and ``isal`` where it is installed,
as kmssign does) and does only what signing a wheel's PE members must add to signing
them as loose files, each part as early and as parallel as the interpreter allows:

- every member inflated and hashed with SHA-256 once (the RECORD check, which the wheel
  format asks for and pip does when it installs), on one thread per core (at most 4);
- each PE member (found by content, ``MZ`` first) deflated once, on the same threads,
  as soon as its bytes are there (ISA-L at its default level, or zlib at level 1, as
  kmssign compresses); the floor needs no signature first, kmssign does;
- the output written: the other members' stored bytes copied by the kernel, the PE
  members' new data appended.

No RECORD parsing, no comparison, no PE parsing, no signing, no central directory, no
temporary files, no atomic rename: no real signer can do less. Prints nothing;
bench_wheel times the whole process.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

CHUNK = 1 << 20
LOCAL = struct.Struct("<IHHHHHIIIHH")

codec: Any
try:
    from isal import isal_zlib as codec

    LEVEL = codec.ISAL_DEFAULT_COMPRESSION
except ImportError:
    codec, LEVEL = zlib, 1


def data_offset(fd: int, info: zipfile.ZipInfo) -> int:
    header = os.pread(fd, LOCAL.size, info.header_offset)
    name_len, extra_len = LOCAL.unpack(header)[9:]
    return info.header_offset + LOCAL.size + name_len + extra_len


def check(fd: int, info: zipfile.ZipInfo) -> bytes | None:
    """Inflate and hash one member; its bytes deflated again if it is a PE file."""
    position = data_offset(fd, info)
    end = position + info.compress_size
    inflater = codec.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    hasher = hashlib.sha256()
    deflater = None
    out: list[bytes] = []
    first = True
    while position < end:
        data = os.pread(fd, min(CHUNK, end - position), position)
        position += len(data)
        while data:
            if inflater is not None:
                chunk = inflater.decompress(data, CHUNK)
                data = inflater.unconsumed_tail
            else:
                chunk, data = data, b""
            if first and chunk:
                first = False
                if chunk[:2] == b"MZ":
                    deflater = codec.compressobj(LEVEL, codec.DEFLATED, -15)
            hasher.update(chunk)
            if deflater is not None:
                out.append(deflater.compress(chunk))
    hasher.digest()
    if deflater is None:
        return None
    out.append(deflater.flush())
    return b"".join(out)


def main() -> None:
    wheel, target = sys.argv[1], sys.argv[2]
    with zipfile.ZipFile(wheel) as archive:
        members = sorted(archive.infolist(), key=lambda i: i.header_offset)
    fd = os.open(wheel, os.O_RDONLY)
    threads = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(threads) as pool:
        # the largest first, so that no thread is left with a big one at the end
        order = sorted(members, key=lambda i: -i.compress_size)
        packed = dict(zip((i.filename for i in order),
                          pool.map(lambda i: check(fd, i), order), strict=True))
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        written = 0
        for info in members:
            new = packed[info.filename]
            if new is not None:
                written += os.write(out, new)
                continue
            start = info.header_offset
            length = data_offset(fd, info) + info.compress_size - start
            while length:
                n = os.copy_file_range(fd, out, length, start, written)
                start, length, written = start + n, length - n, written + n
    finally:
        os.close(out)
        os.close(fd)


if __name__ == "__main__":
    main()
