"""Property tests of the PE parser: whatever the bytes, only PEFormatError escapes."""

from __future__ import annotations

import io
import struct

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kmssign._internal.pe.certtable import read_certificates
from kmssign._internal.pe.checksum import pe_checksum
from kmssign._internal.pe.digest import authenticode_digest
from kmssign._internal.pe.image import parse_pe, stored_checksum
from kmssign._internal.pe.signedcopy import begin_signed_copy, finish_signed_copy
from kmssign.errors import PEFormatError
from tests.support import malformed, pe_oracle, peutil
from tests.support.profiles import examples
from tests.test_pefile_oracle import assert_agree, stricter_because

BASES = {name: path.read_bytes() for name, path in peutil.LAUNCHERS.items()}
EDGE_INTS = st.sampled_from(
    [0, 1, 4, 5, 7, 8, 16, 17, 0x40, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFF8, 0xFFFFFFFF]
)
U32 = st.one_of(EDGE_INTS, st.integers(0, 0xFFFFFFFF), st.integers(0, 0x30000))
FUZZ = settings(max_examples=examples(300), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def fields(data: bytes) -> dict[str, tuple[int, str]]:
    """Header fields worth lying about: name -> (offset, struct format)."""
    lay = malformed.Layout.of(data)
    return {
        "e_lfanew": (0x3C, "<I"),
        "n_sections": (lay.coff + 2, "<H"),
        "opt_size": (lay.coff + 16, "<H"),
        "magic": (lay.opt, "<H"),
        "n_dirs": (lay.n_dirs, "<I"),
        "cert_offset": (lay.security_entry, "<I"),
        "cert_size": (lay.security_entry + 4, "<I"),
        "raw_size0": (lay.section(0) + 16, "<I"),
        "raw_ptr0": (lay.section(0) + 20, "<I"),
        "raw_ptr_last": (lay.section(lay.n_sections - 1) + 20, "<I"),
    }


@st.composite
def mutated_pe(draw: st.DrawFn) -> bytes:
    data = BASES[draw(st.sampled_from(sorted(BASES)))]
    if draw(st.booleans()):  # a well-formed table first, then break things around it
        content = draw(st.binary(max_size=64))
        length = draw(st.one_of(st.none(), st.integers(0, 200)))
        data = malformed.with_table(
            data,
            content,
            length=length,
            extra_in_table=draw(st.binary(max_size=12)),
            after=draw(st.binary(max_size=12)),
            skew=draw(st.integers(0, 7)),
        )
    table = fields(data)
    buf = bytearray(data)
    for name in draw(st.lists(st.sampled_from(sorted(table)), max_size=3)):
        offset, fmt = table[name]
        value = draw(U32) & (0xFFFF if fmt == "<H" else 0xFFFFFFFF)
        struct.pack_into(fmt, buf, offset, value)
    region = malformed.Layout.of(data).sections_at + 40 * 4
    for _ in range(draw(st.integers(0, 6))):
        buf[draw(st.integers(0, region - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        buf = buf[: draw(st.integers(0, len(buf)))]
    return bytes(buf)


def exercise(data: bytes, judge: bool = False) -> None:
    """Run the PE layer; on success, check the image's invariants and sign it in memory.

    With ``judge``, pefile judges too (tests/test_pefile_oracle.py): a file kmssign refuses
    and pefile reads must be refused for a reason named in STRICTER, and a file kmssign
    accepts must read the same in pefile. (pefile is slow: fewer examples do that.)"""
    f = io.BytesIO(data)
    try:
        image = parse_pe(f)
        certs = read_certificates(f, image)
        digest = authenticode_digest(f, image, "sha256")
        pe_checksum(f, image)
    except PEFormatError as exc:
        message = str(exc)
        assert message and "\n" not in message
        event(f"refused: {message.split(' ')[0]}")
        if judge and pe_oracle.pefile_accepts(data):  # kmssign stricter: a named reason
            event(f"pefile reads it: {stricter_because(message)[:50]}")
        return
    event("accepted")
    if judge:  # pefile reads every file kmssign accepts, and the same way
        assert pe_oracle.pefile_accepts(data)
        assert_agree(data, "mutated")
    assert image.size == len(data)
    assert image.checksum_offset + 4 <= image.security_entry_offset <= image.headers_end - 8
    assert image.headers_end <= image.size
    if image.has_certificate_table:
        assert image.cert_table_offset % 8 == 0
        assert image.cert_table_offset + image.cert_table_size == image.size
        assert certs
    else:
        assert certs == []
    # Any accepted image can be signed, and signing keeps its digest.
    out = io.BytesIO()
    again, state = begin_signed_copy(f, image, "sha256", out)
    finish_signed_copy(out, state, b"\x30\x03\x02\x01\x01")
    assert again == digest
    signed = parse_pe(out)
    assert authenticode_digest(out, signed, "sha256") == digest
    assert pe_checksum(out, signed) == stored_checksum(out, signed)
    assert [c.data for c in read_certificates(out, signed)] == [b"\x30\x03\x02\x01\x01"]


@FUZZ
@given(mutated_pe())
def test_mutated_headers_raise_only_pe_format_error(data: bytes) -> None:
    exercise(data)


@settings(max_examples=examples(60), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated_pe())
def test_mutants_judged_by_pefile(data: bytes) -> None:
    exercise(data, judge=True)


@FUZZ
@given(st.sampled_from(["", "MZ"]), st.binary(max_size=2048))
def test_random_bytes_raise_only_pe_format_error(prefix: str, tail: bytes) -> None:
    exercise(prefix.encode() + tail)


@settings(max_examples=examples(100), deadline=None)
@given(st.sampled_from(sorted(BASES)), st.data())
def test_truncation_anywhere(name: str, data: st.DataObject) -> None:
    base = BASES[name]
    lay = malformed.Layout.of(base)
    cut = data.draw(st.integers(0, lay.sections_at + 40 * lay.n_sections + 64))
    exercise(base[:cut])
    exercise(base[:cut] + bytes(4096))
