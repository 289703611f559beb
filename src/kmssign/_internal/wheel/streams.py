"""A member's bytes in and out: its uncompressed bytes, read in bounded chunks with the
CRC and size checked, and a file compressed into a member's data (stored or deflate)."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from kmssign._internal.wheel import codec
from kmssign._internal.wheel.zipdir import DEFLATED, STORED, Member
from kmssign.errors import WheelFormatError

CHUNK = 1 << 20


def check_method(member: Member) -> None:
    if member.method not in (STORED, DEFLATED):
        raise WheelFormatError(
            f"member {member.name!r} uses compression method {member.method} "
            "(only stored and deflate are supported)"
        )


def read_member(f: BinaryIO, member: Member, *, check_crc: bool = True) -> Iterator[bytes]:
    """The uncompressed bytes of ``member`` in chunks of at most :data:`CHUNK` bytes.

    Raises WheelFormatError when the data is not what the directory says (size, CRC,
    a broken deflate stream); a deflate bomb is stopped once it exceeds the stated size.
    ``check_crc=False`` spares the CRC for a caller that checks a stronger hash of the
    bytes (RECORD's).
    """
    check_method(member)
    what = f"member {member.name!r}"
    inflater = codec.inflater() if member.method == DEFLATED else None
    crc = 0
    total = 0

    def counted(out: bytes) -> bytes:
        nonlocal crc, total
        total += len(out)
        if total > member.file_size:
            raise WheelFormatError(f"{what} is corrupt (larger than its stated size)")
        if check_crc:
            crc = zlib.crc32(out, crc)
        return out

    f.seek(member.data_offset)
    remaining = member.compress_size
    try:
        while remaining:
            data = f.read(min(CHUNK, remaining))
            if not data:
                raise WheelFormatError(f"truncated zip: the data of {what} is cut short")
            remaining -= len(data)
            if inflater is None:
                yield counted(data)
                continue
            while data:
                out = inflater.decompress(data, CHUNK)
                data = inflater.unconsumed_tail
                if out:
                    yield counted(out)
        if inflater is not None:
            if out := inflater.flush():
                yield counted(out)
            if not inflater.eof or inflater.unused_data:
                raise WheelFormatError(
                    f"{what} is corrupt (its deflate stream does not end with its data)"
                )
    except codec.ERRORS as exc:
        raise WheelFormatError(f"{what} is corrupt ({exc})") from exc
    if total != member.file_size or (check_crc and crc != member.crc):
        raise WheelFormatError(f"{what} is corrupt (size or CRC-32 differs from the directory)")


@dataclass(frozen=True)
class Packed:
    """A file compressed into a member's data, as the zip headers describe it."""

    crc: int
    compress_size: int
    file_size: int


def pack(
    src: BinaryIO,
    out: BinaryIO,
    method: int,
    *,
    hasher: hashlib._Hash | None = None,
) -> Packed:
    """Write ``src``'s bytes to ``out`` as a member's data: stored, or raw deflate;
    ``hasher`` (RECORD's hash of the member) sees the uncompressed bytes."""
    deflater = codec.deflater() if method == DEFLATED else None
    crc = 0
    file_size = 0
    compress_size = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while got := src.readinto(buffer):  # type: ignore[attr-defined]
        chunk = view[:got]
        crc = zlib.crc32(chunk, crc)
        if hasher is not None:
            hasher.update(chunk)
        file_size += got
        data = deflater.compress(chunk) if deflater is not None else chunk
        compress_size += len(data)
        out.write(data)
    if deflater is not None:
        tail = deflater.flush()
        compress_size += len(tail)
        out.write(tail)
    return Packed(crc, compress_size, file_size)
