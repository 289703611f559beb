"""A member's bytes in and out: its uncompressed bytes, read in bounded chunks with the
CRC and size checked, and a file compressed into a member's data (stored or deflate)."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
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


@dataclass(frozen=True)
class Middle:
    """Bytes ``[start, end)`` of ``source`` deflated on their own into ``data`` (a fresh
    deflater, ended by a sync flush): a piece of a signed member's part that signing
    leaves as it was, deflated before the signature exists, for :func:`pack` to splice
    in. Pieces are deflated in parallel; each starts with no history, which costs next
    to nothing in size at a few MiB a piece."""

    source: Path
    start: int
    end: int
    data: Path


def deflate_range(source: Path, start: int, end: int, data: Path) -> Middle:
    """Deflate bytes ``[start, end)`` of ``source`` into the file ``data``."""
    deflater = codec.deflater()
    with open(source, "rb") as src, open(data, "wb") as out:
        src.seek(start)
        remaining = end - start
        while remaining:
            chunk = src.read(min(CHUNK, remaining))
            if not chunk:
                raise WheelFormatError(f"{source} is shorter than {end} bytes")
            remaining -= len(chunk)
            out.write(deflater.compress(chunk))
        out.write(deflater.flush(codec.SYNC_FLUSH))
    return Middle(source, start, end, data)


class _Packer:
    """The member's data written to ``out`` as the source's bytes come in."""

    def __init__(self, out: BinaryIO, hasher: hashlib._Hash | None) -> None:
        self.out = out
        self.hasher = hasher
        self.crc = 0
        self.file_size = 0
        self.compress_size = 0

    def take(self, chunk: memoryview) -> None:
        self.crc = zlib.crc32(chunk, self.crc)
        if self.hasher is not None:
            self.hasher.update(chunk)
        self.file_size += len(chunk)

    def put(self, data: bytes | memoryview) -> None:
        self.compress_size += len(data)
        self.out.write(data)


def _chunks(src: BinaryIO, length: int | None) -> Iterator[memoryview]:
    """``src``'s next ``length`` bytes (None: all that is left), a buffer at a time."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while length is None or length > 0:
        got = src.readinto(view[: CHUNK if length is None else min(CHUNK, length)])  # type: ignore[attr-defined]
        if not got:
            return
        if length is not None:
            length -= got
        yield view[:got]


def pack(
    src: BinaryIO,
    out: BinaryIO,
    method: int,
    *,
    hasher: hashlib._Hash | None = None,
    middle: Sequence[Middle] = (),
) -> Packed | None:
    """Write ``src``'s bytes to ``out`` as a member's data: stored, or raw deflate;
    ``hasher`` (RECORD's hash of the member) sees the uncompressed bytes.

    With ``middle`` (deflate only: pieces one after another), ``src``'s bytes over
    each piece's range are compared with its source's and its deflated data is copied
    in, after the head and before the tail, which are deflated here, each by a deflater
    of its own. None when the bytes differ: ``out`` and ``hasher`` are then spoiled,
    and the caller packs again without ``middle``.
    """
    packer = _Packer(out, hasher)
    if method != DEFLATED:
        for chunk in _chunks(src, None):
            packer.take(chunk)
            packer.put(chunk)
        return Packed(packer.crc, packer.compress_size, packer.file_size)
    if middle:
        head = codec.deflater()
        for chunk in _chunks(src, middle[0].start):
            packer.take(chunk)
            packer.put(head.compress(chunk))
        packer.put(head.flush(codec.SYNC_FLUSH))
    for piece in middle:
        if packer.file_size != piece.start:
            return None
        with open(piece.source, "rb") as source:
            source.seek(piece.start)
            for chunk in _chunks(src, piece.end - piece.start):
                if source.read(len(chunk)) != chunk.tobytes():  # memcmp; a view compares slowly
                    return None
                packer.take(chunk)
        if packer.file_size != piece.end:
            return None
        with open(piece.data, "rb") as data:
            for chunk in _chunks(data, None):
                packer.put(chunk)
    tail = codec.deflater()
    for chunk in _chunks(src, None):
        packer.take(chunk)
        packer.put(tail.compress(chunk))
    packer.put(tail.flush())
    return Packed(packer.crc, packer.compress_size, packer.file_size)
