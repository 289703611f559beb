"""A corpus of malformed PE inputs, built from a real PE file by byte surgery.

``build_corpus(base, out_dir)`` writes one file per case and returns {name: path}.
Offsets are worked out here with ``struct`` independently of ``kmssign._internal.pe``, so the
corpus does not depend on the code it tests.

Every case is a file kmssign must refuse. Most are broken at the PE level (the PE layer
raises PEFormatError); the names in ``ACCEPTED_BY_PE_LAYER`` have a well-formed
certificate table whose content is not a valid signature, so only the PKCS#7/verify
layer can reject them.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ACCEPTED_BY_PE_LAYER = frozenset({"garbage_pkcs7", "pkcs7_not_der", "cert_type_x509"})

# A small DER SEQUENCE that is not a SignedData: good enough as table content.
FAKE_DER = b"\x30\x0d" + b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02" + b"\x05\x00"


@dataclass(frozen=True)
class Layout:
    """Header offsets of a PE file, computed from raw bytes."""

    e_lfanew: int
    coff: int
    opt: int
    fixed: int  # size of the optional header before the data directories
    sections_at: int
    n_sections: int

    @classmethod
    def of(cls, data: bytes) -> Layout:
        (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
        assert data[e_lfanew : e_lfanew + 4] == b"PE\0\0", "base is not a PE file"
        coff = e_lfanew + 4
        n_sections, opt_size = struct.unpack_from("<H12xH", data, coff + 2)
        opt = coff + 20
        (magic,) = struct.unpack_from("<H", data, opt)
        fixed = {0x10B: 96, 0x20B: 112}[magic]
        return cls(e_lfanew, coff, opt, fixed, opt + opt_size, n_sections)

    @property
    def n_dirs(self) -> int:
        return self.opt + self.fixed - 4

    @property
    def security_entry(self) -> int:
        return self.opt + self.fixed + 4 * 8

    def section(self, index: int) -> int:
        return self.sections_at + 40 * index


def _put(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, *values)
    return bytes(buf)


def _pad8(data: bytes) -> bytes:
    return data + bytes(-len(data) % 8)


def _unsigned(data: bytes) -> bytes:
    """The base without a certificate table, if it has one."""
    lay = Layout.of(data)
    offset, size = struct.unpack_from("<II", data, lay.security_entry)
    if size:
        data = _put(data[:offset], lay.security_entry, "<II", 0, 0)
    return data


def with_table(
    body: bytes,
    content: bytes = FAKE_DER,
    *,
    length: int | None = None,
    cert_type: int = 2,
    extra_in_table: bytes = b"",
    after: bytes = b"",
    skew: int = 0,
) -> bytes:
    """``body`` + one WIN_CERTIFICATE holding ``content``, the security entry pointing at it.

    ``length`` overrides dwLength, ``extra_in_table`` is counted in the table after the
    entry, ``after`` follows the table, ``skew`` misaligns the table's offset.
    """
    lay = Layout.of(body)
    body = _pad8(body) + b"\xcc" * skew
    real = 8 + len(content)
    entry = struct.pack("<IHH", real if length is None else length, 0x0200, cert_type)
    table = _pad8(entry + content) + extra_in_table
    data = body + table + after
    return _put(data, lay.security_entry, "<II", len(body), len(table))


def _cases(base: bytes) -> dict[str, Callable[[], bytes]]:
    lay = Layout.of(base)
    size = len(base)
    aligned_end = size - size % 8
    (first_raw_ptr,) = struct.unpack_from("<I", base, lay.section(0) + 20)
    rng = random.Random(20130)  # fixed: the corpus is the same on every run

    def entry(offset: int, length: int) -> bytes:
        return _put(base, lay.security_entry, "<II", offset, length)

    return {
        "empty": lambda: b"",
        "text": lambda: b"This is a text file, not a program.\n" * 40,
        "elf": lambda: b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHI", 2, 0x3E, 1) + base,
        "mz_only": lambda: b"MZ",
        "random_after_mz": lambda: b"MZ" + rng.randbytes(4094),
        "truncated_dos_header": lambda: base[:40],
        "elfanew_out_of_range": lambda: _put(base, 0x3C, "<I", size + 0x100),
        "elfanew_negative": lambda: _put(base, 0x3C, "<I", 0xFFFFFFF8),
        "elfanew_at_end": lambda: _put(base, 0x3C, "<I", size - 2),
        "elfanew_zero": lambda: _put(base, 0x3C, "<I", 0),
        "pe_signature_wrong": lambda: _put(base, lay.e_lfanew, "<4s", b"PE\0\1"),
        "ne_signature": lambda: _put(base, lay.e_lfanew, "<4s", b"NE\0\0"),
        "truncated_pe_signature": lambda: base[: lay.e_lfanew + 2],
        "truncated_coff_header": lambda: base[: lay.coff + 10],
        "truncated_optional_header": lambda: base[: lay.opt + 40],
        "truncated_data_directories": lambda: base[: lay.opt + lay.fixed + 12],
        "truncated_section_table": lambda: base[: lay.sections_at + 60],
        "optional_magic_unknown": lambda: _put(base, lay.opt, "<H", 0x107),
        "optional_magic_zero": lambda: _put(base, lay.opt, "<H", 0),
        "number_of_sections_huge": lambda: _put(base, lay.coff + 2, "<H", 0xFFFF),
        "size_of_optional_header_zero": lambda: _put(base, lay.coff + 16, "<H", 0),
        "size_of_optional_header_lies": lambda: _put(base, lay.coff + 16, "<H", lay.fixed + 5 * 8),
        "size_of_optional_header_huge": lambda: _put(base, lay.coff + 16, "<H", 0xFFFF)[
            : lay.opt + 0x8000
        ],
        "rva_count_zero": lambda: _put(base, lay.n_dirs, "<I", 0),
        "rva_count_four": lambda: _put(base, lay.n_dirs, "<I", 4),
        "rva_count_huge": lambda: _put(base, lay.n_dirs, "<I", 0xFFFFFFFF),
        "section_raw_data_past_eof": lambda: _put(base, lay.section(0) + 16, "<I", size),
        "section_pointer_huge": lambda: _put(base, lay.section(0) + 20, "<I", 0xFFFFFE00),
        "cert_table_outside_file": lambda: entry(aligned_end + 0x1000, 0x100),
        "cert_table_past_end": lambda: entry(aligned_end - 0x40, 0x1000),
        "cert_table_wraps_32bit": lambda: entry(0xFFFFFFF8, 0x10),
        "cert_table_size_zero": lambda: entry(aligned_end - 0x40, 0),
        "cert_table_offset_zero": lambda: entry(0, 0x100),
        "cert_table_unaligned": lambda: with_table(base, skew=3),
        "cert_table_overlaps_headers": lambda: entry(8, size - 8),
        "cert_table_overlaps_sections": lambda: entry(first_raw_ptr, size - first_raw_ptr),
        "cert_table_too_small": lambda: _put(
            _pad8(base) + b"\x04\0\0\0", lay.security_entry, "<II", len(_pad8(base)), 4
        ),
        "win_cert_length_zero": lambda: with_table(base, length=0),
        "win_cert_length_too_small": lambda: with_table(base, length=4),
        "win_cert_length_too_big": lambda: with_table(base, length=0x10000),
        "win_cert_truncated_header": lambda: with_table(base, extra_in_table=b"\x08\0\0\0"),
        "data_in_cert_entry": lambda: with_table(base, FAKE_DER + b"\x90" * 64),
        "data_after_cert_table": lambda: with_table(base, after=b"APPENDED DATA!!!"),
        "garbage_pkcs7": lambda: with_table(base, b"\x30\x82\x01\x00" + rng.randbytes(256)),
        "pkcs7_not_der": lambda: with_table(base, b"\x01\x02" + rng.randbytes(300)),
        "cert_type_x509": lambda: with_table(base, cert_type=1),
    }


def build_corpus(base: Path, out_dir: Path) -> dict[str, Path]:
    """Write every malformed case derived from the PE file ``base`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    original = _unsigned(base.read_bytes())
    corpus: dict[str, Path] = {}
    for name, make in _cases(original).items():
        path = out_dir / f"{name}.exe"
        path.write_bytes(make())
        corpus[name] = path
    return corpus
