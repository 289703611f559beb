"""pefile as an independent judge of kmssign's PE parsing.

``pefile_view(data)`` says where pefile finds what Authenticode cares about; the helpers
beside it compute, from those offsets only and the PE/COFF specification, what kmssign
computes with its own code: the certificate table's entries, the digest (both the
linear way Windows and osslsigncode hash and the section-by-section way the
specification describes) and the checksum. Nothing here imports ``kmssign``: a test
compares this module's answers with kmssign's.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import pefile

SECURITY = pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]  # 4


@dataclass(frozen=True)
class Section:
    name: bytes
    raw_pointer: int
    raw_size: int


@dataclass(frozen=True)
class PefileView:
    """What pefile reads from a file's headers, as file offsets (``security_entry`` is
    None when the file has fewer than five data directories)."""

    size: int
    pe32_plus: bool
    machine: int
    checksum_offset: int
    stored_checksum: int
    checksum: int  # pefile's generate_checksum()
    security_entry: int | None
    cert_table: tuple[int, int]  # (file offset, size); (0, 0) without a table
    size_of_headers: int
    section_table: tuple[int, int]  # (start, end) of the section headers
    number_of_sections: int  # the COFF header's NumberOfSections
    # The sections pefile parsed: it stops at a section header of zero bytes (kmssign
    # counts those as sections without raw data; neither hashes anything for them).
    sections: tuple[Section, ...]
    warnings: tuple[str, ...]


def pefile_view(data: bytes, *, checksum: bool = True) -> PefileView:
    """Parse ``data`` with pefile; pefile.PEFormatError when pefile refuses it."""
    pe = pefile.PE(data=data, fast_load=True)
    try:
        opt = pe.OPTIONAL_HEADER
        directories = opt.DATA_DIRECTORY
        entry = directories[SECURITY] if len(directories) > SECURITY else None
        sections = tuple(
            Section(s.Name.rstrip(b"\0"), s.PointerToRawData, s.SizeOfRawData)
            for s in pe.sections
        )
        table_start = pe.FILE_HEADER.get_file_offset() + pe.FILE_HEADER.sizeof() + (
            pe.FILE_HEADER.SizeOfOptionalHeader
        )
        view = PefileView(
            size=len(data),
            pe32_plus=opt.Magic == pefile.OPTIONAL_HEADER_MAGIC_PE_PLUS,
            machine=pe.FILE_HEADER.Machine,
            checksum_offset=opt.get_field_absolute_offset("CheckSum"),
            stored_checksum=opt.CheckSum,
            checksum=pe.generate_checksum() if checksum else -1,
            security_entry=None if entry is None else entry.get_file_offset(),
            cert_table=(0, 0) if entry is None else (entry.VirtualAddress, entry.Size),
            size_of_headers=opt.SizeOfHeaders,
            section_table=(table_start, table_start + 40 * pe.FILE_HEADER.NumberOfSections),
            number_of_sections=pe.FILE_HEADER.NumberOfSections,
            sections=sections,
            warnings=tuple(pe.get_warnings()),
        )
    finally:
        pe.close()
    return view


@dataclass(frozen=True)
class Entry:
    """One WIN_CERTIFICATE as the PE/COFF specification lays it out."""

    length: int
    revision: int
    cert_type: int
    content: bytes  # bCertificate: dwLength - 8 bytes


def spec_entries(data: bytes, offset: int, size: int) -> list[Entry]:
    """Walk the certificate table at ``offset`` (each entry 8-aligned, per the spec).

    ValueError when the table does not split into whole entries."""
    table = data[offset : offset + size]
    if len(table) != size:
        raise ValueError("certificate table runs past the end of the file")
    entries = []
    pos = 0
    while pos < size:
        if size - pos < 8:
            raise ValueError(f"{size - pos} bytes left at table offset {pos}")
        length, revision, cert_type = struct.unpack_from("<IHH", table, pos)
        if length < 8 or pos + length > size:
            raise ValueError(f"dwLength {length} at table offset {pos}")
        entries.append(Entry(length, revision, cert_type, table[pos + 8 : pos + length]))
        pos += (length + 7) & ~7
    return entries


def linear_digest(data: bytes, view: PefileView, algorithm: str = "sha256") -> bytes:
    """Authenticode as Windows and osslsigncode compute it, from pefile's offsets: the
    file up to the certificate table (or its end), less the CheckSum field and the
    security directory entry; an unsigned file is padded with zeros to 8."""
    assert view.security_entry is not None
    offset, size = view.cert_table
    end = offset if size else len(data)
    cks, sec = view.checksum_offset, view.security_entry
    h = hashlib.new(algorithm)
    h.update(data[:cks])
    h.update(data[cks + 4 : sec])
    h.update(data[sec + 8 : end])
    if not size:
        h.update(bytes(-end % 8))
    return h.digest()


def spec_digest(data: bytes, view: PefileView, algorithm: str = "sha256") -> bytes:
    """Authenticode as the PE/COFF specification's appendix describes it: the headers
    (SizeOfHeaders bytes) less the two fields, the sections in file order, then the data
    after the last section up to the certificate table. It equals the linear digest
    exactly when the headers and sections leave no gap."""
    assert view.security_entry is not None
    cks, sec = view.checksum_offset, view.security_entry
    h = hashlib.new(algorithm)
    head = data[: view.size_of_headers]
    h.update(head[:cks])
    h.update(head[cks + 4 : sec])
    h.update(head[sec + 8 :])
    hashed = view.size_of_headers
    for s in sorted((s for s in view.sections if s.raw_size), key=lambda s: s.raw_pointer):
        h.update(data[s.raw_pointer : s.raw_pointer + s.raw_size])
        hashed += s.raw_size
    offset, size = view.cert_table
    extra = len(data) - (size + hashed)
    if extra > 0:
        h.update(data[hashed : hashed + extra])
    return h.digest()


def contiguous(view: PefileView) -> bool:
    """Whether the sections follow the headers and each other without a gap or overlap
    (then :func:`spec_digest` and :func:`linear_digest` hash the same bytes)."""
    pos = view.size_of_headers
    for s in sorted((s for s in view.sections if s.raw_size), key=lambda s: s.raw_pointer):
        if s.raw_pointer != pos:
            return False
        pos += s.raw_size
    return True


def pefile_accepts(data: bytes) -> bool:
    try:
        pefile_view(data, checksum=False)
    except pefile.PEFormatError:
        return False
    return True
