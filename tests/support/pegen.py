"""Generated PE files: Hypothesis strategies that build PE32 and PE32+ images from parts.

The layout is drawn (NT headers' position, data directory count, file alignment,
sections with or without raw data, gaps between them, an overlay of any length, an
existing certificate table) and the bytes are written with ``struct`` from the PE/COFF
specification, independently of ``kmssign._internal.pe``. The images are well formed:
every one is a file kmssign must sign and verify. They hold no code (nothing runs them);
osslsigncode, pefile and kmssign only read their headers.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field

from hypothesis import strategies as st

MACHINES = {False: (0x14C,), True: (0x8664, 0xAA64)}  # PE32: x86; PE32+: x64, ARM64
SECTION_ALIGNMENT = 0x1000

# A DER SEQUENCE that is not a SignedData: the content of an "existing" table to replace
FAKE_DER = b"\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02\x05\x00"


@dataclass(frozen=True)
class SectionSpec:
    name: str
    raw_size: int  # bytes of raw data (0: uninitialised data only)
    virtual_size: int
    gap: int  # bytes of padding before the raw data
    fill: int  # seed of the section's bytes


@dataclass(frozen=True)
class PESpec:
    """Everything needed to rebuild one generated file (kept as JSON for regressions)."""

    pe32_plus: bool
    machine: int
    e_lfanew: int
    n_dirs: int
    file_alignment: int
    header_padding: int  # extra bytes after the section table, before SizeOfHeaders
    sections: list[SectionSpec] = field(default_factory=list)
    overlay: int = 0  # bytes after the last section's raw data
    existing_table: bool = False  # a (non-signature) certificate table to be replaced
    dll: bool = False
    good_checksum: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PESpec:
        raw = json.loads(text)
        raw["sections"] = [SectionSpec(**s) for s in raw["sections"]]
        return cls(**raw)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _pattern(seed: int, size: int) -> bytes:
    """Deterministic, non-constant bytes (cheap: repeats a 251-byte cycle)."""
    cycle = bytes((seed * 131 + i * 7 + (i * i) % 13) & 0xFF for i in range(251))
    return (cycle * (size // 251 + 1))[:size]


def checksum(data: bytes, checksum_offset: int) -> int:
    """The PE checksum by its definition (16-bit words, end-around carry, plus size)."""
    words = bytearray(data)
    words[checksum_offset : checksum_offset + 4] = bytes(4)
    if len(words) % 2:
        words.append(0)
    total = sum(struct.unpack(f"<{len(words) // 2}H", words))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFFFFFF


def build(spec: PESpec) -> bytes:
    """The bytes of the file ``spec`` describes."""
    fixed = 112 if spec.pe32_plus else 96
    opt_size = fixed + 8 * spec.n_dirs
    coff = spec.e_lfanew + 4
    opt = coff + 20
    sections_at = opt + opt_size
    headers_end = sections_at + 40 * len(spec.sections)
    size_of_headers = _align(headers_end + spec.header_padding, 4)

    # raw data placement
    pos = size_of_headers
    placed = []
    rva = _align(size_of_headers, SECTION_ALIGNMENT)
    for s in spec.sections:
        raw_ptr = 0
        if s.raw_size:
            pos = _align(pos + s.gap, 4)
            raw_ptr = pos
            pos += s.raw_size
        vsize = max(s.virtual_size, s.raw_size, 1)
        placed.append((s, raw_ptr, rva, vsize))
        rva += _align(vsize, SECTION_ALIGNMENT)
    size_of_image = rva

    out = bytearray(pos)
    out[0:2] = b"MZ"
    out[2:0x3C] = _pattern(0x4D, 0x3A)  # DOS header fields and stub: any bytes
    struct.pack_into("<I", out, 0x3C, spec.e_lfanew)
    out[0x40 : spec.e_lfanew] = _pattern(0x57, spec.e_lfanew - 0x40)
    out[spec.e_lfanew : coff] = b"PE\0\0"
    characteristics = 0x0002 | (0x2000 if spec.dll else 0) | (0 if spec.pe32_plus else 0x0100)
    if spec.pe32_plus:
        characteristics |= 0x0020  # large address aware
    struct.pack_into("<HHIIIHH", out, coff, spec.machine, len(spec.sections), 0x5F000000, 0, 0,
                     opt_size, characteristics)
    code = sum(s.raw_size for s in spec.sections[:1])
    entry = placed[0][2] if placed else 0
    if spec.pe32_plus:
        struct.pack_into("<HBBIIIII", out, opt, 0x20B, 14, 0, code, 0, 0, entry, entry)
        struct.pack_into("<QII", out, opt + 24, 0x140000000, SECTION_ALIGNMENT,
                         spec.file_alignment)
    else:
        struct.pack_into("<HBBIIIIII", out, opt, 0x10B, 14, 0, code, 0, 0, entry, entry, 0)
        struct.pack_into("<III", out, opt + 28, 0x400000, SECTION_ALIGNMENT, spec.file_alignment)
    struct.pack_into("<HHHHHHI", out, opt + 40, 6, 0, 0, 0, 6, 0, 0)
    struct.pack_into("<II", out, opt + 56, size_of_image, size_of_headers)
    struct.pack_into("<HH", out, opt + 68, 3, 0x8160)  # console; dynamic base, NX, ...
    if spec.pe32_plus:
        struct.pack_into("<QQQQII", out, opt + 72, 0x100000, 0x1000, 0x100000, 0x1000, 0,
                         spec.n_dirs)
    else:
        struct.pack_into("<IIIIII", out, opt + 72, 0x100000, 0x1000, 0x100000, 0x1000, 0,
                         spec.n_dirs)
    for index, (s, raw_ptr, section_rva, vsize) in enumerate(placed):
        flags = 0x60000020 if index == 0 else (0xC0000040 if s.raw_size else 0xC0000080)
        struct.pack_into("<8sIIIIIIHHI", out, sections_at + 40 * index,
                         s.name.encode("ascii"), vsize, section_rva, s.raw_size, raw_ptr,
                         0, 0, 0, 0, flags)
        if s.raw_size:
            out[raw_ptr : raw_ptr + s.raw_size] = _pattern(s.fill, s.raw_size)
    data = bytes(out) + _pattern(0xA5 ^ spec.overlay, spec.overlay)
    if spec.existing_table:
        body = data + bytes(-len(data) % 8)
        entry_bytes = struct.pack("<IHH", 8 + len(FAKE_DER), 0x0200, 2) + FAKE_DER
        table = entry_bytes + bytes(-len(entry_bytes) % 8)
        data = body + table
        buf = bytearray(data)
        struct.pack_into("<II", buf, opt + fixed + 32, len(body), len(table))
        data = bytes(buf)
    if spec.good_checksum:
        buf = bytearray(data)
        struct.pack_into("<I", buf, opt + 64, checksum(data, opt + 64))
        data = bytes(buf)
    return data


_NAMES = st.sampled_from([".text", ".rdata", ".data", ".pdata", ".rsrc", ".reloc", ".bss",
                          "UPX0", ".tls", "_RDATA"])


@st.composite
def sections(draw: st.DrawFn, file_alignment: int) -> SectionSpec:
    raw = draw(st.one_of(
        st.just(0),  # uninitialised data only
        st.integers(1, 4).map(lambda n: n * file_alignment),  # aligned, as linkers write
        st.integers(1, 3000),  # any length: some loaders and packers allow it
    ))
    gap = draw(st.one_of(st.just(0), st.integers(1, 2).map(lambda n: n * file_alignment),
                         st.integers(1, 64)))
    return SectionSpec(
        name=draw(_NAMES),
        raw_size=raw,
        virtual_size=draw(st.integers(0, 0x3000)),
        gap=gap,
        fill=draw(st.integers(0, 255)),
    )


@st.composite
def pe_specs(draw: st.DrawFn) -> PESpec:
    """PE32 and PE32+ layouts: 1-6 sections, odd sizes, gaps, overlays, existing tables."""
    pe32_plus = draw(st.booleans())
    file_alignment = draw(st.sampled_from([0x200, 0x200, 0x1000, 0x40]))
    return PESpec(
        pe32_plus=pe32_plus,
        machine=draw(st.sampled_from(MACHINES[pe32_plus])),
        e_lfanew=draw(st.integers(0x10, 0x40).map(lambda n: n * 4)),
        n_dirs=draw(st.sampled_from([16, 16, 5, 6, 10])),
        file_alignment=file_alignment,
        header_padding=draw(st.one_of(st.just(0), st.integers(0, 600))),
        sections=draw(st.lists(sections(file_alignment), min_size=1, max_size=6)),
        overlay=draw(st.one_of(st.just(0), st.integers(1, 5000))),
        existing_table=draw(st.booleans()),
        dll=draw(st.booleans()),
        good_checksum=draw(st.booleans()),
    )
