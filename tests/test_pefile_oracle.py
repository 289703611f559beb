"""pefile judges kmssign's PE parsing: on every PE file the tests have, signed and not.

For each file kmssign and pefile (through tests/support/pe_oracle.py, which does not
import kmssign) must agree on the CheckSum field's offset, the security directory
entry's offset and value, the certificate table's entries, the computed checksum (pefile's
``generate_checksum``), and the bytes Authenticode hashes. Where one accepts a file the
other refuses, the case is named below with the reason (kmssign may be stricter than
pefile, an analysis tool that parses what it can and warns; never laxer).
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
from collections.abc import Callable
from pathlib import Path

import pefile
import pytest

from kmssign._internal.pe.certtable import read_certificates
from kmssign._internal.pe.checksum import pe_checksum
from kmssign._internal.pe.digest import authenticode_digest
from kmssign._internal.pe.image import parse_pe, stored_checksum
from kmssign.errors import PEFormatError
from kmssign.frontends.cli.main import main
from tests.support import malformed, pe_oracle
from tests.support.fixtures_pypi import SIGNED, VENDOR_FILES
from tests.support.helpers import sign_args
from tests.support.pki import TestPKI


def assert_agree(data: bytes, label: str) -> pe_oracle.PefileView:
    """kmssign and pefile read ``data`` the same way (both must accept it)."""
    view = pe_oracle.pefile_view(data)
    f = io.BytesIO(data)
    image = parse_pe(f)
    mine = read_certificates(f, image)
    ours = {
        "pe32_plus": image.pe32_plus,
        "machine": image.machine,
        "checksum_offset": image.checksum_offset,
        "stored_checksum": stored_checksum(f, image),
        "checksum": pe_checksum(f, image),
        "security_entry": image.security_entry_offset,
        "cert_table": (image.cert_table_offset, image.cert_table_size),
        "section_table_end": image.headers_end,
        "sections": image.number_of_sections,
    }
    theirs = {
        "pe32_plus": view.pe32_plus,
        "machine": view.machine,
        "checksum_offset": view.checksum_offset,
        "stored_checksum": view.stored_checksum,
        "checksum": view.checksum,
        "security_entry": view.security_entry,
        "cert_table": view.cert_table,
        "section_table_end": view.section_table[1],
        "sections": view.number_of_sections,
    }
    assert ours == theirs, label

    # The certificate table's entries: pefile locates the table, the spec splits it.
    oracle = pe_oracle.spec_entries(data, *view.cert_table) if view.cert_table[1] else []
    assert [(e.revision, e.cert_type) for e in oracle] == [
        (c.revision, c.cert_type) for c in mine
    ], label
    for entry, cert in zip(oracle, mine, strict=True):
        # kmssign drops the zero padding some signers count in dwLength, nothing else
        assert entry.content.startswith(cert.data), label
        assert not entry.content[len(cert.data) :].strip(b"\0"), label

    # The bytes kmssign hashes: every section pefile lists lies in the hashed image, and
    # the digest is the one computed from pefile's offsets. (pefile lists fewer sections
    # than the header counts when one's header is all zeros: test_null_section_headers.)
    assert len(view.sections) <= view.number_of_sections, label
    for section in view.sections:
        if section.raw_size:
            assert section.raw_pointer + section.raw_size <= image.image_end, (label, section)
    for algorithm in ("sha256", "sha1"):
        digest = authenticode_digest(f, image, algorithm)
        assert digest == pe_oracle.linear_digest(data, view, algorithm), (label, algorithm)
    if pe_oracle.contiguous(view) and (view.cert_table[1] or len(data) % 8 == 0):
        assert authenticode_digest(f, image, "sha256") == pe_oracle.spec_digest(data, view), label
    return view


def kmssign_sign(path: Path, *args: str) -> None:
    """``kmssign sign`` in-process; fails the test on a non-zero exit."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["sign", str(path), "-q", *args])
    assert code == 0, err.getvalue()


def test_real_samples_agree(sample_sources: dict[str, Path]) -> None:
    """pip's launchers (PE32, PE32+ x64 and ARM64) and, with mingw-w64, hello.exe/lib.dll."""
    assert {"t64.exe", "w32.exe", "t64-arm.exe"} <= sample_sources.keys()
    for name, path in sample_sources.items():
        view = assert_agree(path.read_bytes(), name)
        assert view.cert_table == (0, 0), name


@pytest.mark.mingw
def test_mingw_builds_agree(mingw_binaries: dict[str, Path]) -> None:
    for name, path in mingw_binaries.items():
        assert_agree(path.read_bytes(), name)


def test_signed_output_agrees(samples: dict[str, Path], pki: TestPKI) -> None:
    """What kmssign writes: its checksum is the one pefile computes, its table the one
    pefile finds; then a nested signature (--append), then a re-signing (replace)."""
    rsa, p256 = pki.identity("rsa2048"), pki.identity("p256")
    for name, path in samples.items():
        original = path.read_bytes()
        for step, args in (
            ("signed", sign_args(rsa)),
            ("appended", ["--append", *sign_args(p256)]),
            ("re-signed", ["--no-skip-signed", *sign_args(p256, "--digest", "sha384")]),
        ):
            kmssign_sign(path, *args)
            data = path.read_bytes()
            view = assert_agree(data, f"{name} {step}")
            assert view.stored_checksum == view.checksum != 0, (name, step)
            offset, size = view.cert_table
            assert offset == len(original) + (-len(original) % 8), (name, step)
            assert offset + size == len(data), (name, step)
            entries = pe_oracle.spec_entries(data, offset, size)
            assert [(e.revision, e.cert_type) for e in entries] == [(0x0200, 2)], (name, step)
            assert entries[0].length == size, (name, step)


def test_vendor_files_agree(vendor_pe: dict[str, Path]) -> None:
    """The pinned vendors' binaries: Microsoft-signed (nested signatures, timestamps),
    unsigned mingw and MSVC builds, a 20 MB OpenBLAS DLL."""
    for name, path in vendor_pe.items():
        view = assert_agree(path.read_bytes(), name)
        assert bool(view.cert_table[1]) == VENDOR_FILES[name].signed, name


def test_vendor_files_resigned_agree(
    vendor_copy: Callable[[str], Path], pki: TestPKI
) -> None:
    """A vendor's signed file re-signed by kmssign (its table replaced) and one appended to."""
    for name in ("attach_x86.dll", "conpty.dll"):
        assert name in SIGNED
        path = vendor_copy(name)
        kmssign_sign(path, "--no-skip-signed", *sign_args(pki.identity("rsa2048")))
        assert_agree(path.read_bytes(), f"{name} re-signed")
        kmssign_sign(path, "--append", *sign_args(pki.identity("p256")))
        assert_agree(path.read_bytes(), f"{name} appended")


# Why kmssign refuses files pefile parses: kmssign's reason (a regular expression over its
# message) -> why kmssign is right to be stricter. pefile is an analysis tool: it parses
# what it can and records a warning, and of the security directory it reads the entry,
# not the table. None of these is a file kmssign could sign or verify soundly. A refusal
# of a file pefile reads whose reason is not here fails the tests (test_pe_fuzz too).
STRICTER = {
    r"^truncated optional header$": "the optional header or the data directories run past "
    "the end of the file; pefile reads what is missing as zeros",
    r"^unknown optional header magic": "neither PE32 nor PE32+: the CheckSum and security "
    "entry offsets are undefined (pefile warns and lists no data directory)",
    r"^section table \(\d+ sections\) extends past end of file$": "the section table runs "
    "past the end of the file; pefile reads the sections that fit",
    r"^SizeOfOptionalHeader \d+ is too small": "the optional header cannot hold the "
    "security entry; the section table would sit inside it",
    r"^SizeOfOptionalHeader \d+ does not hold \d+ data directory": "the data directories "
    "overlap the section table",
    r"^no certificate table directory entry": "fewer than five data directories: there is "
    "nowhere to put a signature",
    r"^NumberOfRvaAndSizes \d+ is absurd": "more than 16 data directories; pefile reads 16 "
    "and warns, kmssign refuses rather than guess",
    r"^section \d+ \(.*\) raw data extends past end of file$": "a section's raw data is not "
    "in the file, so it cannot be hashed (pefile warns)",
    r"^certificate table (starts|extends) past end of file$": "the certificate table is not "
    "(wholly) in the file",
    r"^certificate table at 0x[0-9a-f]+ has size 0$": "a table offset with size 0",
    r"^certificate table of \d+ bytes has offset 0$": "a table of non-zero size at offset 0",
    r"^certificate table offset 0x[0-9a-f]+ is not 8-byte aligned$": "the PE/COFF "
    "specification requires the table 8-aligned",
    r"^certificate table overlaps the PE headers$": "the table would hide the headers from "
    "the digest",
    r"^certificate table overlaps section data$": "the table would hide section data from "
    "the digest",
    r"^certificate table is too small \(\d+ bytes\)$": "smaller than one WIN_CERTIFICATE "
    "header",
    r"^certificate table is too large": "over kmssign's 64 MiB bound on what it reads",
    r"^WIN_CERTIFICATE length \d+ is too small$": "an entry shorter than its own header",
    r"^WIN_CERTIFICATE length \d+ runs past the certificate table$": "an entry runs past "
    "the table",
    r"^truncated WIN_CERTIFICATE header at table offset \d+$": "bytes after the last entry "
    "too few for a header",
    r"^\d+ bytes of data after the SignedData in its certificate entry$": "bytes hidden "
    "after the SignedData inside its entry (CVE-2013-3900)",
    r"^\d+ bytes of data after the certificate table$": "data after the certificate table, "
    "which must be last (CVE-2013-3900)",
}
# Files kmssign's PE layer accepts and pefile refuses: none may exist (pefile reads the
# headers only, and kmssign's checks include pefile's).
LAXER: dict[str, str] = {}


def stricter_because(message: str) -> str:
    """Why kmssign refuses, with ``message``, a file pefile reads; fails when unnamed."""
    for pattern, why in STRICTER.items():
        if re.search(pattern, message):
            return why
    raise AssertionError(f"kmssign refuses a file pefile reads, for a reason not named in "
                         f"tests/test_pefile_oracle.py's STRICTER: {message}")


# The corpus cases pefile parses (the rest it refuses, as kmssign does)
PEFILE_READS = frozenset({
    "truncated_data_directories", "size_of_optional_header_huge", "optional_magic_unknown",
    "optional_magic_zero", "number_of_sections_huge", "size_of_optional_header_zero",
    "size_of_optional_header_lies", "rva_count_zero", "rva_count_four", "rva_count_huge",
    "section_raw_data_past_eof", "section_pointer_huge", "cert_table_outside_file",
    "cert_table_past_end", "cert_table_wraps_32bit", "cert_table_size_zero",
    "cert_table_offset_zero", "cert_table_unaligned", "cert_table_overlaps_headers",
    "cert_table_overlaps_sections", "cert_table_too_small", "win_cert_length_zero",
    "win_cert_length_too_small", "win_cert_length_too_big", "win_cert_truncated_header",
    "data_in_cert_entry", "data_after_cert_table",
})


@pytest.mark.parametrize("base", ["t64.exe", "w32.exe"])
def test_malformed_corpus_disagreements_are_named(
    base: str, sample_sources: dict[str, Path], tmp_path: Path
) -> None:
    corpus = malformed.build_corpus(sample_sources[base], tmp_path)
    stricter, laxer = {}, {}
    for name, path in corpus.items():
        data = path.read_bytes()
        theirs = pe_oracle.pefile_accepts(data)
        f = io.BytesIO(data)
        try:
            image = parse_pe(f)
            read_certificates(f, image)
            ours = True
        except PEFormatError as exc:
            ours, why = False, str(exc)
        if theirs and not ours:
            stricter[name] = stricter_because(why)
        elif ours and not theirs:
            laxer[name] = "pefile refuses"
        elif ours and theirs:
            assert_agree(data, name)
    assert set(stricter) == PEFILE_READS - malformed.ACCEPTED_BY_PE_LAYER, stricter
    assert set(laxer) == set(LAXER), laxer


def test_misaligned_nt_headers_checksum_is_where_the_spec_says(
    sample_sources: dict[str, Path],
) -> None:
    """e_lfanew not a multiple of 4 puts the CheckSum field off a 4-byte boundary.

    pefile's generate_checksum leaves out the aligned dword that contains the field's
    first byte, not the field; kmssign leaves out the field's own four bytes (the PE
    checksum definition: the file summed as 16-bit words, the field counted as zero).
    The case is named here: kmssign and pefile agree on the offset, and the checksum
    kmssign writes is the definition's, checked with a word-by-word sum."""
    data = sample_sources["t64.exe"].read_bytes()
    lay = malformed.Layout.of(data)
    # move the NT headers 2 bytes later: the DOS stub has room, the section table too
    shifted = bytearray(data)
    start, end = lay.e_lfanew, lay.sections_at + 40 * lay.n_sections
    shifted[start + 2 : end + 2] = data[start:end]
    struct.pack_into("<I", shifted, 0x3C, start + 2)
    view = pe_oracle.pefile_view(bytes(shifted))
    f = io.BytesIO(bytes(shifted))
    image = parse_pe(f)
    assert image.checksum_offset == view.checksum_offset
    assert view.checksum_offset % 4 == 2
    ours = pe_checksum(f, image)
    words = bytearray(shifted)
    words[view.checksum_offset : view.checksum_offset + 4] = bytes(4)
    total = 0
    for (word,) in struct.iter_unpack("<H", bytes(words) + bytes(len(words) % 2)):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    assert ours == total + len(shifted)
    assert view.checksum != ours  # pefile's known deviation, named here


def test_oracle_notices_a_wrong_offset(sample_sources: dict[str, Path]) -> None:
    """The oracle can fail: a security entry read 8 bytes off disagrees."""
    data = sample_sources["t64.exe"].read_bytes()
    view = pe_oracle.pefile_view(data)
    assert view.security_entry is not None
    wrong = pe_oracle.PefileView(**{**view.__dict__, "security_entry": view.security_entry + 8})
    f = io.BytesIO(data)
    assert authenticode_digest(f, parse_pe(f), "sha256") != pe_oracle.linear_digest(data, wrong)
    with pytest.raises(pefile.PEFormatError):
        pe_oracle.pefile_view(b"MZ" + bytes(100))


def test_null_section_headers(sample_sources: dict[str, Path]) -> None:
    """Section headers of zero bytes: pefile stops listing sections at the first one,
    kmssign counts them all. Neither hashes anything for them (no raw data), so the
    digest and every offset agree; the case is named here. Windows would not load such
    an image (a section at RVA 0); kmssign signs it, as it signs any file whose
    Authenticode ranges are sound, and does not judge what the loader would run."""
    data = bytearray(sample_sources["t64.exe"].read_bytes())
    lay = malformed.Layout.of(bytes(data))
    data[lay.section(1) : lay.section(lay.n_sections)] = bytes(40 * (lay.n_sections - 1))
    view = assert_agree(bytes(data), "null section headers")
    assert (len(view.sections), view.number_of_sections) == (1, lay.n_sections)
