"""Write a new archive: every member kept byte for byte (local header, compressed data,
data descriptor), except the replaced ones, which get a new local header; then a new
central directory and end records (ZIP64 where a count, size or offset needs it).

Names, order, dates, flags, attributes, comments and extra fields are kept. A replaced
member keeps its compression method; its header gets the new CRC and sizes and no data
descriptor.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kmssign._internal.wheel import codec
from kmssign._internal.wheel.streams import Packed
from kmssign._internal.wheel.zipdir import (
    CENTRAL,
    DEFLATED,
    EOCD,
    EXTRA_HEADER,
    FLAG_DESCRIPTOR,
    LOCAL,
    MAX16,
    MAX32,
    SIG_CENTRAL,
    SIG_EOCD,
    SIG_LOCAL,
    SIG_ZIP64_EOCD,
    SIG_ZIP64_LOCATOR,
    ZIP64_EOCD,
    ZIP64_EXTRA,
    ZIP64_LOCATOR,
    Archive,
    Member,
)

ZIP64_VERSION = 45
_COPY_CHUNK = 1 << 20
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}


@dataclass(frozen=True)
class Replacement:
    """A member's new data: compressed bytes (in memory, or in a file) and their sizes."""

    data: bytes | Path
    packed: Packed


def pack_bytes(data: bytes, method: int) -> Replacement:
    """``data`` compressed with ``method`` (stored or deflate) as a replacement."""
    if method == DEFLATED:
        deflater = codec.deflater()
        stored = bytes(deflater.compress(data) + deflater.flush())
    else:
        stored = data
    return Replacement(stored, Packed(zlib.crc32(data), len(stored), len(data)))


def copy_range(src: BinaryIO, out: BinaryIO, offset: int, length: int) -> None:
    """Append ``length`` bytes of ``src`` from ``offset`` to ``out``: by the kernel
    (``copy_file_range``) where it can, through a buffer otherwise."""
    out.flush()
    position = out.tell()
    done = 0
    copy_file_range = getattr(os, "copy_file_range", None)
    try:
        fds = (src.fileno(), out.fileno())
    except (AttributeError, OSError, ValueError):  # not files (io.BytesIO): copy through
        copy_file_range = None
    if copy_file_range is not None:
        try:
            while done < length:
                n = copy_file_range(*fds, length - done, offset + done, position + done)
                if n == 0:
                    raise OSError(errno.EIO, "the wheel changed while it was being copied")
                done += n
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY:
                raise
    out.seek(position + done)
    src.seek(offset + done)
    while done < length:
        data = src.read(min(_COPY_CHUNK, length - done))
        if not data:
            raise OSError(errno.EIO, "the wheel changed while it was being copied")
        out.write(data)
        done += len(data)


def _zip64_field(values: list[int]) -> bytes:
    if not values:
        return b""
    body = struct.pack(f"<{len(values)}Q", *values)
    return EXTRA_HEADER.pack(ZIP64_EXTRA, len(body)) + body


def _write_local(out: BinaryIO, member: Member, new: Packed) -> None:
    big = new.file_size >= MAX32 or new.compress_size >= MAX32
    zip64 = _zip64_field([new.file_size, new.compress_size] if big else [])
    extra = zip64 + member.local_extra
    out.write(LOCAL.pack(
        SIG_LOCAL,
        max(member.version_needed, ZIP64_VERSION) if big else member.version_needed,
        member.flags & ~FLAG_DESCRIPTOR, member.method, member.time, member.date, new.crc,
        MAX32 if big else new.compress_size, MAX32 if big else new.file_size,
        len(member.raw_name), len(extra),
    ))
    out.write(member.raw_name)
    out.write(extra)


def _central(member: Member, offset: int, new: Packed | None) -> bytes:
    crc, csize, usize, flags = member.crc, member.compress_size, member.file_size, member.flags
    if new is not None:
        crc, csize, usize = new.crc, new.compress_size, new.file_size
        flags &= ~FLAG_DESCRIPTOR
    wide = [v for v in (usize, csize, offset) if v >= MAX32]
    extra = _zip64_field(wide) + member.extra
    needed = max(member.version_needed, ZIP64_VERSION) if wide else member.version_needed
    header = CENTRAL.pack(
        SIG_CENTRAL, member.version_made, needed, flags, member.method, member.time,
        member.date, crc, min(csize, MAX32), min(usize, MAX32), len(member.raw_name),
        len(extra), len(member.comment), 0, member.internal_attr, member.external_attr,
        min(offset, MAX32),
    )
    return header + member.raw_name + extra + member.comment


def _write_end(out: BinaryIO, archive: Archive, cd_offset: int, cd_size: int) -> None:
    count = len(archive.members)
    if count > MAX16 or cd_offset >= MAX32 or cd_size >= MAX32:
        record_at = out.tell()
        out.write(ZIP64_EOCD.pack(
            SIG_ZIP64_EOCD, ZIP64_EOCD.size - 12, ZIP64_VERSION, ZIP64_VERSION, 0, 0,
            count, count, cd_size, cd_offset,
        ))
        out.write(ZIP64_LOCATOR.pack(SIG_ZIP64_LOCATOR, 0, record_at, 1))
    out.write(EOCD.pack(
        SIG_EOCD, 0, 0, min(count, MAX16), min(count, MAX16), min(cd_size, MAX32),
        min(cd_offset, MAX32), len(archive.comment),
    ))
    out.write(archive.comment)


def write_archive(
    src: BinaryIO, archive: Archive, replacements: Mapping[str, Replacement], out: BinaryIO
) -> None:
    """Write ``archive`` (open in ``src``) to ``out`` with ``replacements`` by name."""
    offsets: dict[str, int] = {}
    pending: tuple[int, int] | None = None  # a run of kept members not copied yet

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            copy_range(src, out, pending[0], pending[1] - pending[0])
            pending = None

    for member in sorted(archive.members, key=lambda m: m.header_offset):
        replacement = replacements.get(member.name)
        position = out.tell() + (pending[1] - pending[0] if pending else 0)
        offsets[member.name] = position
        if replacement is None:
            if pending is not None and pending[1] == member.header_offset:
                pending = (pending[0], member.end)
            else:
                flush()
                pending = (member.header_offset, member.end)
            continue
        flush()
        _write_local(out, member, replacement.packed)
        if isinstance(replacement.data, Path):
            with open(replacement.data, "rb") as data:
                copy_range(data, out, 0, replacement.packed.compress_size)
        else:
            out.write(replacement.data)
    flush()
    cd_offset = out.tell()
    for member in archive.members:
        replacement = replacements.get(member.name)
        out.write(_central(member, offsets[member.name],
                           replacement.packed if replacement else None))
    _write_end(out, archive, cd_offset, out.tell() - cd_offset)
