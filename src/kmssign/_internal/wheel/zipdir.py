"""The structure of a zip archive: the end records (ZIP64 included), the central directory,
each member's local header and data descriptor.

Read only, and distrustful: a member name that would leave the root, a duplicate name,
an encrypted member, a local header that names another file than its directory entry,
members that overlap or run past the central directory, and a truncated archive are all
refused with a :class:`~kmssign.errors.WheelFormatError` naming the member.
"""

from __future__ import annotations

import itertools
import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

from kmssign.errors import WheelFormatError

EOCD = struct.Struct("<IHHHHIIH")
ZIP64_LOCATOR = struct.Struct("<IIQI")
ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")
CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
LOCAL = struct.Struct("<IHHHHHIIIHH")
EXTRA_HEADER = struct.Struct("<HH")

SIG_EOCD = 0x06054B50
SIG_ZIP64_LOCATOR = 0x07064B50
SIG_ZIP64_EOCD = 0x06064B50
SIG_CENTRAL = 0x02014B50
SIG_LOCAL = 0x04034B50
SIG_DESCRIPTOR = 0x08074B50

ZIP64_EXTRA = 0x0001
MAX32 = 0xFFFFFFFF
MAX16 = 0xFFFF
FLAG_ENCRYPTED = 0x0001
FLAG_DESCRIPTOR = 0x0008
FLAG_STRONG_ENCRYPTION = 0x0040
FLAG_UTF8 = 0x0800
STORED, DEFLATED = 0, 8
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass
class Member:
    """One archive member: its central directory entry, and where its data is."""

    name: str
    raw_name: bytes
    version_made: int
    version_needed: int
    flags: int
    method: int
    time: int
    date: int
    crc: int
    compress_size: int
    file_size: int
    internal_attr: int
    external_attr: int
    header_offset: int
    extra: bytes  # the central entry's extra fields, without the ZIP64 one
    comment: bytes
    local_extra: bytes = b""  # the local header's extra fields, without the ZIP64 one
    data_offset: int = 0  # first byte of the compressed data
    end: int = 0  # end of the member: data, then its data descriptor if any

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


@dataclass
class Archive:
    size: int
    members: list[Member]  # central directory order
    comment: bytes
    cd_offset: int


def _find_end(f: BinaryIO, size: int) -> tuple[int, tuple[int, ...]]:
    """The end of central directory record whose comment runs exactly to the file's end."""
    tail_start = max(0, size - EOCD.size - MAX16)
    f.seek(tail_start)
    tail = f.read(size - tail_start)
    position = len(tail)
    while (position := tail.rfind(b"PK\x05\x06", 0, position)) >= 0:
        if position + EOCD.size <= len(tail):
            fields = EOCD.unpack_from(tail, position)
            if position + EOCD.size + fields[7] == len(tail):
                return tail_start + position, fields
    raise WheelFormatError("not a zip file (no end of central directory record; truncated?)")


def _read_exact(f: BinaryIO, offset: int, length: int, what: str) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise WheelFormatError(f"truncated zip: {what} runs past the end of the file")
    return data


def _directory_location(f: BinaryIO, size: int) -> tuple[int, int, int, bytes]:
    """(entries, central directory offset, its size, archive comment)."""
    eocd_at, (_, disk, cd_disk, _, entries, cd_size, cd_offset, comment_len) = _find_end(f, size)
    comment = _read_exact(f, eocd_at + EOCD.size, comment_len, "the archive comment")
    directory_end = eocd_at
    if eocd_at >= ZIP64_LOCATOR.size:
        locator = _read_exact(f, eocd_at - ZIP64_LOCATOR.size, ZIP64_LOCATOR.size, "the end")
        sig, _, record_at, disks = ZIP64_LOCATOR.unpack(locator)
        if sig == SIG_ZIP64_LOCATOR:
            if disks > 1:
                raise WheelFormatError("spanned zip archives are not supported")
            record = _read_exact(f, record_at, ZIP64_EOCD.size, "the ZIP64 end record")
            fields = ZIP64_EOCD.unpack(record)
            if fields[0] != SIG_ZIP64_EOCD:
                raise WheelFormatError("broken zip: the ZIP64 end record is not where its "
                                       "locator says (truncated?)")
            disk, cd_disk, entries, cd_size, cd_offset = (
                fields[4], fields[5], fields[7], fields[8], fields[9]
            )
            directory_end = record_at
    if disk or cd_disk:
        raise WheelFormatError("spanned zip archives are not supported")
    if cd_offset + cd_size != directory_end:
        raise WheelFormatError(
            "broken zip: the central directory is not where the end record says "
            "(truncated, or data added before the archive)"
        )
    return entries, cd_offset, cd_size, comment


def _fields(extra: bytes, what: str) -> dict[int, bytes]:
    """The extra fields of a header by id (the last of each id)."""
    found: dict[int, bytes] = {}
    position = 0
    while position + EXTRA_HEADER.size <= len(extra):
        field_id, length = EXTRA_HEADER.unpack_from(extra, position)
        start = position + EXTRA_HEADER.size
        if start + length > len(extra):
            raise WheelFormatError(f"{what}: malformed extra field")
        found[field_id] = extra[start : start + length]
        position = start + length
    return found


def strip_zip64(extra: bytes) -> bytes:
    """``extra`` without its ZIP64 field (the writer adds a fresh one where needed)."""
    kept = bytearray()
    position = 0
    while position + EXTRA_HEADER.size <= len(extra):
        field_id, length = EXTRA_HEADER.unpack_from(extra, position)
        end = position + EXTRA_HEADER.size + length
        if field_id != ZIP64_EXTRA:
            kept += extra[position:end]
        position = end
    return bytes(kept + extra[position:])


def check_name(name: str) -> None:
    """Refuse a member name that could land outside the directory it is unpacked into."""
    why = None
    if not name or "\0" in name:
        why = "an empty name or a NUL character"
    elif "\\" in name:
        why = "a backslash"
    elif name.startswith("/"):
        why = "an absolute path"
    elif _DRIVE.match(name):
        why = "a drive letter"
    elif ".." in name.split("/"):
        why = "a '..' component"
    if why is not None:
        raise WheelFormatError(f"member {name!r} escapes the wheel's root ({why})")


def _member(record: bytes, position: int, what: str) -> tuple[Member, int]:
    if position + CENTRAL.size > len(record):
        raise WheelFormatError(f"broken zip: {what} runs past the central directory")
    (sig, made, needed, flags, method, time, date, crc, csize, usize, name_len, extra_len,
     comment_len, disk, iattr, eattr, offset) = CENTRAL.unpack_from(record, position)
    if sig != SIG_CENTRAL:
        raise WheelFormatError(f"broken zip: {what} has no central directory signature")
    start = position + CENTRAL.size
    end = start + name_len + extra_len + comment_len
    if end > len(record):
        raise WheelFormatError(f"broken zip: {what} runs past the central directory")
    raw_name = record[start : start + name_len]
    name = raw_name.decode("utf-8" if flags & FLAG_UTF8 else "cp437", errors="replace")
    extra = record[start + name_len : start + name_len + extra_len]
    zip64 = _fields(extra, f"member {name!r}").get(ZIP64_EXTRA)
    if zip64 is not None:
        values = [usize, csize, offset]
        wanted = [i for i, v in enumerate(values) if v == MAX32]
        if len(zip64) < 8 * len(wanted):
            raise WheelFormatError(f"member {name!r}: malformed ZIP64 extra field")
        for n, i in enumerate(wanted):
            values[i] = struct.unpack_from("<Q", zip64, 8 * n)[0]
        usize, csize, offset = values
        if disk == MAX16 and len(zip64) >= 8 * len(wanted) + 4:
            disk = struct.unpack_from("<I", zip64, 8 * len(wanted))[0]
    if disk:
        raise WheelFormatError("spanned zip archives are not supported")
    member = Member(
        name=name, raw_name=raw_name, version_made=made, version_needed=needed, flags=flags,
        method=method, time=time, date=date, crc=crc, compress_size=csize, file_size=usize,
        internal_attr=iattr, external_attr=eattr, header_offset=offset,
        extra=strip_zip64(extra), comment=record[start + name_len + extra_len : end],
    )
    return member, end


def _locate_data(f: BinaryIO, member: Member, limit: int) -> None:
    """Read ``member``'s local header and data descriptor; fill in where its data is."""
    what = f"member {member.name!r}"
    header = _read_exact(f, member.header_offset, LOCAL.size, f"the local header of {what}")
    sig, _, flags, method, _, _, _, _, _, name_len, extra_len = LOCAL.unpack(header)
    if sig != SIG_LOCAL:
        raise WheelFormatError(f"broken zip: {what} has no local header where the "
                               "central directory says")
    names = _read_exact(f, member.header_offset + LOCAL.size, name_len + extra_len, what)
    if names[:name_len] != member.raw_name:
        raise WheelFormatError(f"broken zip: the local header of {what} names "
                               f"{names[:name_len].decode('utf-8', 'replace')!r}")
    if flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION) or method != member.method:
        raise WheelFormatError(f"broken zip: the local header of {what} disagrees with "
                               "its central directory entry")
    local_zip64 = ZIP64_EXTRA in _fields(names[name_len:], what)
    member.local_extra = strip_zip64(names[name_len:])
    member.data_offset = member.header_offset + LOCAL.size + name_len + extra_len
    member.end = member.data_offset + member.compress_size
    if member.flags & FLAG_DESCRIPTOR:
        member.end += _descriptor_length(f, member, local_zip64)
    if member.end > limit:
        raise WheelFormatError(f"truncated zip: the data of {what} runs past the central "
                               "directory")


def _descriptor_length(f: BinaryIO, member: Member, zip64: bool) -> int:
    """Length of the data descriptor after ``member``'s data: optional signature, CRC,
    then sizes of 4 bytes, or 8 when the local header had a ZIP64 field (either form is
    accepted when its values match the central directory)."""
    f.seek(member.data_offset + member.compress_size)
    raw = f.read(24)
    skip = 4 if raw[:4] == struct.pack("<I", SIG_DESCRIPTOR) else 0
    expected = (member.crc, member.compress_size, member.file_size)
    for form in ("<IQQ", "<III") if zip64 else ("<III", "<IQQ"):
        size = struct.calcsize(form)
        if len(raw) >= skip + size and struct.unpack_from(form, raw, skip) == expected:
            return skip + size
    raise WheelFormatError(f"broken zip: the data descriptor of member {member.name!r} "
                           "does not match its central directory entry (truncated?)")


def read_archive(f: BinaryIO) -> Archive:
    """Parse and check the archive open in ``f`` (seekable, binary)."""
    size = f.seek(0, 2)
    entries, cd_offset, cd_size, comment = _directory_location(f, size)
    record = _read_exact(f, cd_offset, cd_size, "the central directory")
    members: list[Member] = []
    position = 0
    for index in range(entries):
        member, position = _member(record, position, f"central directory entry {index}")
        members.append(member)
    if position != cd_size:
        raise WheelFormatError("broken zip: the central directory holds more or fewer "
                               "entries than the end record says")
    seen: set[str] = set()
    for member in members:
        check_name(member.name)
        if member.name in seen:
            raise WheelFormatError(f"duplicate member name {member.name!r}")
        seen.add(member.name)
        if member.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION):
            raise WheelFormatError(f"member {member.name!r} is encrypted")
        _locate_data(f, member, cd_offset)
    by_offset = sorted(members, key=lambda m: m.header_offset)
    for before, after in itertools.pairwise(by_offset):
        if before.end > after.header_offset:
            raise WheelFormatError(f"broken zip: members {before.name!r} and {after.name!r} "
                                   "overlap")
    return Archive(size=size, members=members, comment=comment, cd_offset=cd_offset)
