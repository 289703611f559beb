"""PE32/PE32+ images: the headers, and where the parts Authenticode cares about are.

Nothing here loads a whole image (the passes over a file are in the sibling modules,
the certificate table's entries in ``certtable``). Parsing is defensive: any structural
problem raises :class:`~kmssign.errors.PEFormatError` whose message is the reason only
(callers add the file name).

Authenticode hashes the file linearly except three ranges: the 4-byte CheckSum field,
the 8-byte certificate-table directory entry and the certificate table itself (which
must be the last thing in the file). An image without a table whose size is not a
multiple of 8 is hashed as if zero-padded to 8.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import BinaryIO, NamedTuple

from kmssign.errors import PEFormatError

PE32_MAGIC = 0x10B
PE32_PLUS_MAGIC = 0x20B
DIGESTS = ("sha1", "sha256", "sha384", "sha512")

CHUNK = 1 << 20  # read size; at most a few of these are alive at once

_COFF = struct.Struct("<HHIIIHH")  # Machine .. Characteristics
_SECTION = struct.Struct("<8sIIIIIIHHI")
DIR_ENTRY = struct.Struct("<II")
WIN_CERT = struct.Struct("<IHH")
_SECURITY_DIR = 4


class PEImage(NamedTuple):
    """Where the parts Authenticode cares about are, as file offsets."""

    size: int
    pe32_plus: bool
    machine: int
    checksum_offset: int
    security_entry_offset: int
    cert_table_offset: int
    cert_table_size: int
    headers_end: int = 0  # end of the section table
    number_of_sections: int = 0

    @property
    def has_certificate_table(self) -> bool:
        return self.cert_table_size != 0

    @property
    def image_end(self) -> int:
        """End of the hashed image: the table's start, or the file's end without one."""
        return self.cert_table_offset if self.has_certificate_table else self.size


def align8(n: int) -> int:
    return (n + 7) & ~7


def _file_size(f: BinaryIO) -> int:
    return f.seek(0, 2)


def read_at(f: BinaryIO, offset: int, length: int, reason: str) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise PEFormatError(reason)
    return data


def looks_like_pe(path: Path) -> bool:
    """Cheap sniff by content: 'MZ', e_lfanew inside the file, 'PE\\0\\0' there.

    Only regular files qualify (opening a FIFO found in a directory walk would block).
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            return has_pe_header(f)
    except OSError:
        return False


def has_pe_header(f: BinaryIO) -> bool:
    """The sniff of :func:`looks_like_pe` on an open file; OSError when it cannot be read."""
    head = f.read(64)
    if len(head) < 64 or head[:2] != b"MZ":
        return False
    (e_lfanew,) = struct.unpack_from("<I", head, 0x3C)
    try:
        f.seek(e_lfanew)
    except (ValueError, OverflowError):
        return False
    return bool(f.read(4) == b"PE\0\0")


def parse_pe(f: BinaryIO) -> PEImage:
    """Parse the headers of an open, seekable binary file; PEFormatError for anything broken."""
    size = _file_size(f)
    if size == 0:
        raise PEFormatError("file is empty")
    f.seek(0)
    if f.read(2) != b"MZ":
        raise PEFormatError("not a PE file (no MZ header)")
    dos = read_at(f, 0, 64, "truncated DOS header")
    (e_lfanew,) = struct.unpack_from("<I", dos, 0x3C)
    if e_lfanew + 4 > size:
        raise PEFormatError(f"e_lfanew 0x{e_lfanew:x} points outside the file")
    if read_at(f, e_lfanew, 4, "truncated PE signature") != b"PE\0\0":
        raise PEFormatError(f"no PE signature at e_lfanew 0x{e_lfanew:x}")
    coff = read_at(f, e_lfanew + 4, _COFF.size, "truncated COFF header")
    machine, n_sections, _, _, _, opt_size, _ = _COFF.unpack(coff)

    opt = e_lfanew + 4 + _COFF.size
    magic_raw = read_at(f, opt, 2, "truncated optional header")
    (magic,) = struct.unpack("<H", magic_raw)
    if magic == PE32_MAGIC:
        pe32_plus, fixed = False, 96
    elif magic == PE32_PLUS_MAGIC:
        pe32_plus, fixed = True, 112
    else:
        raise PEFormatError(f"unknown optional header magic 0x{magic:x}")
    if opt_size < fixed + 8 * (_SECURITY_DIR + 1):
        raise PEFormatError(
            f"SizeOfOptionalHeader {opt_size} is too small to hold the certificate table entry"
        )
    header = read_at(f, opt, opt_size, "truncated optional header")
    (n_dirs,) = struct.unpack_from("<I", header, fixed - 4)
    if n_dirs <= _SECURITY_DIR:
        raise PEFormatError(f"no certificate table directory entry (NumberOfRvaAndSizes={n_dirs})")
    if n_dirs > 16:
        raise PEFormatError(f"NumberOfRvaAndSizes {n_dirs} is absurd (at most 16)")
    if fixed + 8 * n_dirs > opt_size:
        raise PEFormatError(
            f"SizeOfOptionalHeader {opt_size} does not hold {n_dirs} data directory entries"
        )
    security_entry = fixed + 8 * _SECURITY_DIR
    cert_offset, cert_size = DIR_ENTRY.unpack_from(header, security_entry)

    sections_at = opt + opt_size
    headers_end = sections_at + _SECTION.size * n_sections
    if headers_end > size:
        raise PEFormatError(f"section table ({n_sections} sections) extends past end of file")
    table = read_at(f, sections_at, headers_end - sections_at, "truncated section table")
    raw_end = _check_sections(table, size)
    image = PEImage(
        size=size,
        pe32_plus=pe32_plus,
        machine=machine,
        checksum_offset=opt + 64,
        security_entry_offset=opt + security_entry,
        cert_table_offset=cert_offset,
        cert_table_size=cert_size,
        headers_end=headers_end,
        number_of_sections=n_sections,
    )
    _check_cert_table(image, raw_end)
    return image


def _check_sections(table: bytes, size: int) -> int:
    """Check each section's raw data lies inside the file; return where the last one ends."""
    raw_end = 0
    for index, fields in enumerate(_SECTION.iter_unpack(table)):
        name = fields[0].rstrip(b"\0").decode("ascii", "replace")
        raw_size, raw_ptr = fields[3], fields[4]
        if raw_size == 0:
            continue
        if raw_ptr + raw_size > size:
            raise PEFormatError(f"section {index} ({name!r}) raw data extends past end of file")
        raw_end = max(raw_end, raw_ptr + raw_size)
    return raw_end


def _check_cert_table(image: PEImage, raw_end: int) -> None:
    offset, length = image.cert_table_offset, image.cert_table_size
    if offset == 0 and length == 0:
        return
    if length == 0:
        raise PEFormatError(f"certificate table at 0x{offset:x} has size 0")
    if offset == 0:
        raise PEFormatError(f"certificate table of {length} bytes has offset 0")
    if offset >= image.size:
        raise PEFormatError("certificate table starts past end of file")
    if offset + length > image.size:
        raise PEFormatError("certificate table extends past end of file")
    if offset % 8:
        raise PEFormatError(f"certificate table offset 0x{offset:x} is not 8-byte aligned")
    if offset < image.headers_end:
        raise PEFormatError("certificate table overlaps the PE headers")
    if offset < raw_end:
        raise PEFormatError("certificate table overlaps section data")
    if length < WIN_CERT.size:
        raise PEFormatError(f"certificate table is too small ({length} bytes)")
    if offset + length < image.size:
        trailing = image.size - offset - length
        raise PEFormatError(f"{trailing} bytes of data after the certificate table")


def stored_checksum(f: BinaryIO, image: PEImage) -> int:
    raw = read_at(f, image.checksum_offset, 4, "truncated optional header")
    return int(struct.unpack("<I", raw)[0])


