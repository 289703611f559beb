"""Malformed inputs: the PE layer refuses each with PEFormatError and a specific reason."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest

from kmssign._internal.pe.certtable import (
    WIN_CERT_REVISION_2_0,
    WIN_CERT_TYPE_PKCS_SIGNED_DATA,
    WinCertificate,
    read_certificates,
)
from kmssign._internal.pe.checksum import pe_checksum
from kmssign._internal.pe.digest import authenticode_digest
from kmssign._internal.pe.image import looks_like_pe, parse_pe
from kmssign.errors import PEFormatError
from tests.support import malformed

# The reason each case must be refused for (a substring of the message).
REASONS = {
    "empty": "file is empty",
    "text": "no MZ header",
    "elf": "no MZ header",
    "mz_only": "truncated DOS header",
    "random_after_mz": "e_lfanew",
    "truncated_dos_header": "truncated DOS header",
    "elfanew_out_of_range": "points outside the file",
    "elfanew_negative": "points outside the file",
    "elfanew_at_end": "points outside the file",
    "elfanew_zero": "no PE signature",
    "pe_signature_wrong": "no PE signature",
    "ne_signature": "no PE signature",
    "truncated_pe_signature": "points outside the file",
    "truncated_coff_header": "truncated COFF header",
    "truncated_optional_header": "truncated optional header",
    "truncated_data_directories": "truncated optional header",
    "truncated_section_table": "section table",
    "optional_magic_unknown": "unknown optional header magic 0x107",
    "optional_magic_zero": "unknown optional header magic 0x0",
    "number_of_sections_huge": "section table (65535 sections) extends past end of file",
    "size_of_optional_header_zero": "SizeOfOptionalHeader 0 is too small",
    "size_of_optional_header_lies": "does not hold 16 data directory entries",
    "size_of_optional_header_huge": "truncated optional header",
    "rva_count_zero": "NumberOfRvaAndSizes=0",
    "rva_count_four": "NumberOfRvaAndSizes=4",
    "rva_count_huge": "NumberOfRvaAndSizes 4294967295 is absurd",
    "section_raw_data_past_eof": "raw data extends past end of file",
    "section_pointer_huge": "raw data extends past end of file",
    "cert_table_outside_file": "certificate table starts past end of file",
    "cert_table_past_end": "certificate table extends past end of file",
    "cert_table_wraps_32bit": "certificate table starts past end of file",
    "cert_table_size_zero": "has size 0",
    "cert_table_offset_zero": "has offset 0",
    "cert_table_unaligned": "not 8-byte aligned",
    "cert_table_overlaps_headers": "overlaps the PE headers",
    "cert_table_overlaps_sections": "overlaps section data",
    "cert_table_too_small": "certificate table is too small",
    "win_cert_length_zero": "WIN_CERTIFICATE length 0 is too small",
    "win_cert_length_too_small": "WIN_CERTIFICATE length 4 is too small",
    "win_cert_length_too_big": "runs past the certificate table",
    "win_cert_truncated_header": "truncated WIN_CERTIFICATE header",
    "data_in_cert_entry": "64 bytes of data after the SignedData",
    "data_after_cert_table": "16 bytes of data after the certificate table",
}


def run_pe_layer(path: Path) -> list[WinCertificate]:
    """Everything the PE layer does with a file before the PKCS#7 layer sees it."""
    with open(path, "rb") as f:
        image = parse_pe(f)
        certs = read_certificates(f, image)
        authenticode_digest(f, image, "sha256")
        pe_checksum(f, image)
        return certs


@pytest.fixture(params=["t64.exe", "w32.exe", "t64-arm.exe",
                        pytest.param("hello.exe", marks=pytest.mark.mingw)])
def corpus(
    request: pytest.FixtureRequest, sample_sources: dict[str, Path], tmp_path: Path
) -> dict[str, Path]:
    return malformed.build_corpus(sample_sources[request.param], tmp_path / "corpus")


def test_corpus_is_complete(corpus: dict[str, Path]) -> None:
    assert len(corpus) >= 20
    assert set(corpus) == set(REASONS) | malformed.ACCEPTED_BY_PE_LAYER
    assert all(path.is_file() for path in corpus.values())


def test_each_case_is_refused_for_its_reason(corpus: dict[str, Path]) -> None:
    for name, path in corpus.items():
        if name in malformed.ACCEPTED_BY_PE_LAYER:
            continue
        before = path.read_bytes()
        with pytest.raises(PEFormatError) as info:
            run_pe_layer(path)
        message = str(info.value)
        assert REASONS[name] in message, f"{name}: {message}"
        assert "\n" not in message and path.name not in message
        assert path.read_bytes() == before


def test_wellformed_tables_with_bad_content_reach_the_pkcs7_layer(
    corpus: dict[str, Path],
) -> None:
    for name in sorted(malformed.ACCEPTED_BY_PE_LAYER):
        (cert,) = run_pe_layer(corpus[name])
        assert cert.revision == WIN_CERT_REVISION_2_0
        expected_type = 1 if name == "cert_type_x509" else WIN_CERT_TYPE_PKCS_SIGNED_DATA
        assert cert.cert_type == expected_type
        assert cert.data
    garbage = run_pe_layer(corpus["garbage_pkcs7"])[0].data
    assert len(garbage) == 260  # DER header says 4 + 256 bytes; padding is not part of it


def test_looks_like_pe_on_corpus(corpus: dict[str, Path]) -> None:
    """The cheap sniff never raises; it rejects what has no PE signature where it points."""
    for name in ("empty", "text", "elf", "mz_only", "elfanew_out_of_range", "ne_signature"):
        assert not looks_like_pe(corpus[name]), name
    assert looks_like_pe(corpus["rva_count_zero"])  # the sniff is cheap, parse_pe is strict
    for path in corpus.values():
        looks_like_pe(path)


def test_the_base_itself_is_fine(sample_sources: dict[str, Path]) -> None:
    """Guard against a corpus that fails for a reason unrelated to its mutation."""
    for name in ("t64.exe", "w32.exe", "t64-arm.exe"):
        assert run_pe_layer(sample_sources[name]) == []
        body = sample_sources[name].read_bytes()
        tmp = malformed.with_table(body)
        image = parse_pe(BytesIO(tmp))
        (cert,) = read_certificates(BytesIO(tmp), image)
        assert cert.data == malformed.FAKE_DER
