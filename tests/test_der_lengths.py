"""Signatures whose DER lengths end in 0x7F, 0x80 or 0x81, through every path.

asn1crypto takes a header whose last byte is 0x80 (``30 82 0b 80``) for an indefinite
length and re-encodes the whole value on ``dump()``: minutes for a signature holding a
timestamp token. kmssign once dumped parsed signatures, and a 160-character description
made ``sign`` and ``verify`` take 14 s, ``sign --append`` onto vendor DLLs 6-7 minutes.

Here the lengths of the ContentInfo, SignedData, SignerInfo, signed attributes, and of
the nested-signature attribute and the unsigned attributes around it are steered
(through the description and URL, or osslsigncode's ``-n``) onto each of those low
bytes, and sign, verify, the skip-signed decision, ``--append`` and ``timestamp`` must
each finish within a generous budget, without kmssign dumping any value it parsed
(:mod:`tests.support.reencode`; a last test covers the remaining paths and other tools' files).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kmssign._internal import der as rawder
from kmssign._internal.cms import structures
from kmssign._internal.der import der
from kmssign._internal.pe.certtable import read_certificates
from kmssign._internal.pe.image import parse_pe
from tests.support import peutil
from tests.support.helpers import budget, run_cli, sign_args
from tests.support.pki import TestPKI
from tests.support.reencode import parsed_dumps

LOW_BYTES = (0x7F, 0x80, 0x81)
NESTED_OID = der(0x06, bytes.fromhex("2b060104018237020401"))  # 1.3.6.1.4.1.311.2.4.1


def _length(element: bytes) -> int:
    found = rawder.read(element)
    return found.body_end - found.body


def lengths(content_info: bytes) -> dict[str, int]:
    """The contents length of each part of a signature whose header may end in 0x80."""
    _, inner = structures.content_info(content_info)
    signed_data = structures.signed_data(inner)
    signer_info = rawder.children(signed_data["signer_infos"])[0]
    fields = structures.signer_info(signer_info)
    found = {
        "ContentInfo": _length(content_info),
        "SignedData": _length(inner),
        "SignerInfo": _length(signer_info),
        "signedAttrs": _length(fields["signed_attrs"]),
    }
    if "unsigned_attrs" in fields:
        found["unsignedAttrs"] = _length(fields["unsigned_attrs"])
        for attribute in rawder.children(fields["unsigned_attrs"]):
            if attribute.startswith(NESTED_OID, len(attribute) - _length(attribute)):
                found["nested attribute"] = _length(attribute)
    return found


def signature_of(path: Path) -> bytes:
    """The SignedData in the file's certificate table."""
    with open(path, "rb") as f:
        return read_certificates(f, parse_pe(f))[0].data


def steer(make: Callable[[int], bytes], part: str, low: int) -> bytes:
    """The signature ``make(n)`` gives for an ``n`` whose ``part`` length ends in ``low``.

    Every step of ``n`` adds one byte to the signed attributes (and so to everything
    around them); where a length of length grows, the next try corrects for it.
    """
    n = 0
    for _ in range(5):
        signature = make(n)
        off = (lengths(signature)[part] - low) & 0xFF
        if off == 0:
            return signature
        n += 256 - off
    raise AssertionError(f"could not steer the {part} length onto 0x..{low:02x}")


def our_text(n: int) -> list[str]:
    """--description and --url adding ``n`` bytes: UTF-16 description, ASCII URL."""
    return ["--description", "d" * (1 + n // 2), "--url", "https://x.example/" + "u" * (n % 2)]


class Tools:
    """In-process CLI calls, each within the budget, on fresh copies of files."""

    def __init__(self, capsys: Any, pki: TestPKI, tmp_path: Path, dumps: list[str]) -> None:
        self.capsys, self.root, self.tmp_path = capsys, str(pki.root_pem), tmp_path
        self.dumps = dumps  # what kmssign re-encoded (tests.support.reencode): stays empty
        self.count = 0

    def fresh(self, source: Path) -> Path:
        self.count += 1
        return peutil.copy_sample(source, self.tmp_path / str(self.count))

    def run(self, *argv: str) -> tuple[int, str, str]:
        with budget(f"kmssign {' '.join(argv[:2])}"):
            return run_cli(self.capsys, *argv)

    def sign(self, path: Path, identity: Any, *extra: str) -> None:
        code, _, err = self.run("sign", str(path), "--no-skip-signed", *sign_args(identity, *extra))
        assert code == 0, err

    def verify(self, path: Path) -> None:
        code, out, err = self.run("verify", str(path), "--ca", self.root, "--tsa-ca", self.root)
        assert code == 0 and f"verified: {path}" in out, out + err


@pytest.fixture
def tools(capsys: Any, pki: TestPKI, tmp_path: Path, monkeypatch: Any) -> Iterator[Tools]:
    with parsed_dumps(monkeypatch) as found:
        yield Tools(capsys, pki, tmp_path, found)


def every_path(tools: Tools, pki: TestPKI, tsa: Any, path: Path) -> None:
    """verify, the skip-signed decision, --append and timestamp on ``path``, each in time."""
    tools.verify(path)
    code, out, err = tools.run("sign", str(path), *sign_args(pki.identity("rsa3072")))
    assert code == 0 and f"skipped: {path} (already signed)" in out, out + err
    appended = tools.fresh(path)
    code, _, err = tools.run("sign", str(appended), "--append", *sign_args(pki.identity("p256")))
    assert code == 0, err
    tools.verify(appended)
    stamped = tools.fresh(path)
    code, _, err = tools.run("timestamp", str(stamped), "--timestamp-url", tsa.url("tsa"))
    assert code == 0, err
    tools.verify(stamped)
    peutil.osslsigncode_verify(appended, pki.root_pem)
    peutil.osslsigncode_verify(stamped, pki.root_pem, tsa_ca=pki.root_pem)
    assert tools.dumps == []


def sweep(
    tools: Tools, pki: TestPKI, tsa: Any, source: Path, parts: tuple[str, ...],
    sign: Callable[[Path, int], None],
) -> None:
    """For each part and low byte: a copy of ``source`` signed by ``sign(copy, n)``, ``n``
    steered onto that low byte, then through every path."""
    made: list[Path] = []

    def make(n: int) -> bytes:
        path = tools.fresh(source)
        sign(path, n)
        made.append(path)
        return signature_of(path)

    for part in parts:
        for low in LOW_BYTES:
            steer(make, part, low)
            every_path(tools, pki, tsa, made[-1])


@pytest.mark.osslsigncode
@pytest.mark.posix  # budget() uses SIGALRM
@pytest.mark.parametrize("stamped", [False, True], ids=["unstamped", "timestamped"])
def test_our_signatures_at_every_troublesome_length(
    tools: Tools, pki: TestPKI, tsa: Any, sample_sources: dict[str, Path], stamped: bool
) -> None:
    timestamp = ("--timestamp-url", tsa.url("tsa")) if stamped else ()

    def sign(path: Path, n: int) -> None:  # the sign path itself builds each signature
        tools.sign(path, pki.identity("rsa2048"), *our_text(n), *timestamp)

    parts = ("ContentInfo", "SignedData", "SignerInfo", "signedAttrs")
    sweep(tools, pki, tsa, sample_sources["t64.exe"], parts, sign)


@pytest.mark.osslsigncode
@pytest.mark.posix  # budget() uses SIGALRM
def test_nested_signature_attribute_at_every_troublesome_length(
    tools: Tools, pki: TestPKI, tsa: Any, sample_sources: dict[str, Path]
) -> None:
    base = tools.fresh(sample_sources["w32.exe"])
    tools.sign(base, pki.identity("rsa2048"))

    def append(path: Path, n: int) -> None:  # the unsigned attributes hold only this one
        code, _, err = tools.run("sign", str(path), "--append",
                                 *sign_args(pki.identity("rsa3072"), *our_text(n)))
        assert code == 0, err

    sweep(tools, pki, tsa, base, ("nested attribute", "unsignedAttrs"), append)


@pytest.mark.osslsigncode
@pytest.mark.posix  # budget() uses SIGALRM
def test_osslsigncode_signatures_at_every_troublesome_length(
    tools: Tools, pki: TestPKI, tsa: Any, sample_sources: dict[str, Path]
) -> None:
    identity = pki.identity("rsa2048")

    def sign(path: Path, n: int) -> None:  # -n: an ASCII program name, one byte a character
        out = path.with_name("ossl.exe")
        peutil.osslsigncode_sign(path, out, identity, "-ac", str(identity.chain_path),
                                 "-n", "o" * (1 + n))
        shutil.move(out, path)

    parts = ("ContentInfo", "SignerInfo", "signedAttrs")
    sweep(tools, pki, tsa, sample_sources["t64.exe"], parts, sign)


@pytest.mark.osslsigncode
def test_no_path_dumps_a_parsed_value(
    capsys: Any, pki: TestPKI, tsa: Any, samples: dict[str, Path], monkeypatch: Any,
    tmp_path: Path,
) -> None:
    """Whatever the lengths: sign (with a timestamp), verify, skip-signed, the dry run,
    --append, timestamp, and files of another tool (dual-signed, legacy countersignature)
    never dump() what asn1crypto parsed."""
    root = str(pki.root_pem)
    path, other, dual = samples["t64.exe"], samples["w32.exe"], samples["t64-arm.exe"]
    legacy = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tmp_path / "legacy")
    identity = pki.identity("rsa2048")
    for target, args in (
        (dual, ["-h", "sha1", "-ts", tsa.url("tsa")]),
        (dual, ["-nest", "-h", "sha256", "-ts", tsa.url("tsa")]),
        (legacy, ["-t", tsa.url("legacy")]),
    ):
        out = target.with_name("ossl.out")
        peutil.osslsigncode_sign(target, out, identity, "-ac", str(identity.chain_path), *args)
        shutil.move(out, target)
    with parsed_dumps(monkeypatch) as found:
        ts = ("--timestamp-url", tsa.url("tsa"))
        steps = [
            ("sign", str(path), *sign_args(identity, "--description", "x" * 160, *ts)),
            ("verify", str(path), "--ca", root),
            ("sign", str(path), *sign_args(identity)),
            ("sign", str(path), "--dry-run", *sign_args(identity)),
            ("sign", str(path), "--append", *sign_args(pki.identity("p256"), *ts)),
            ("verify", str(path), "--ca", root),
            ("sign", str(other), *sign_args(identity)),
            ("sign", str(other), "--append", *sign_args(pki.identity("p384"))),
            ("timestamp", str(other), *ts),
            ("verify", str(other), "--ca", root, "--require-timestamp"),
            ("verify", str(dual), "--ca", root),
            ("sign", str(dual), "--append", *sign_args(pki.identity("p256"))),
            ("timestamp", str(dual), *ts),
            ("verify", str(dual), "--ca", root),
            ("verify", str(legacy), "--ca", root),
        ]
        for argv in steps:
            code, out, err = run_cli(capsys, *argv)
            assert code == 0, (argv, out, err)
    assert found == []
    for signed in (path, other, dual):
        peutil.osslsigncode_verify(signed, pki.root_pem, tsa_ca=pki.root_pem)


def test_encoded_gives_the_bytes_read_even_when_a_header_ends_in_0x80(
    monkeypatch: Any,
) -> None:
    """structures.encoded, which kmssign uses for tokens handed over as asn1crypto values (the
    TSA client's, a caller's), returns what was read, for a value and for a child of
    one, after their fields were read, and re-encodes nothing."""
    from asn1crypto import cms

    from kmssign._internal.timestamp.client import TimeStampResp

    octets = bytes(0x180 - 19)  # 19: the OID, and the [0] and OCTET STRING headers
    token = der(0x30, der(0x06, bytes.fromhex("2a864886f70d010701")) + der(0xA0, der(0x04, octets)))
    assert token[:4] == bytes.fromhex("30820180")  # what asn1crypto takes for indefinite
    reply = der(0x30, der(0x30, b"\x02\x01\x00") + token)
    with parsed_dumps(monkeypatch) as found:
        loaded = cms.ContentInfo.load(token)
        assert loaded["content_type"].native == "data"
        assert structures.encoded(loaded) == token
        child = TimeStampResp.load(reply)["time_stamp_token"]
        assert child["content"].native == octets
        assert structures.encoded(child) == token
    assert found == []
    data_oid = der(0x06, bytes.fromhex("2a864886f70d010701"))
    assert structures.encoded(cms.ContentType("data")) == data_oid


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x30", "truncated"),
        (b"\x30\x05\x02\x01", "runs past"),
        (b"\x30\x85\x01\x00\x00\x00\x00", "bad DER length"),
        (b"\x04\x80\x00\x00", "indefinite"),
        (b"\x1f\x01\x00", "multi-byte tag"),
        (b"\x30\x80\x02\x01\x01", "truncated"),
    ],
)
def test_read_refuses_what_is_not_der(data: bytes, reason: str) -> None:
    with pytest.raises(rawder.DerError, match=reason):
        rawder.read(data)


def test_read_follows_indefinite_lengths() -> None:
    ber = b"\x30\x80\x02\x01\x01\x30\x80\x04\x00\x00\x00\x00\x00"
    found = rawder.read(ber)
    assert found.end == len(ber) and found.body_end == len(ber) - 2
    assert rawder.children(ber) == [b"\x02\x01\x01", b"\x30\x80\x04\x00\x00\x00"]
