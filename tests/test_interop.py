"""Signatures kmssign did not make: files another tool signed, as vendors' DLLs in a
PyInstaller bundle come. osslsigncode makes them here in the classic dual-signed shape
(a SHA-1 primary signature with a SHA-256 one nested in it, as signtool made them for
years), and kmssign must verify them, leave them alone by default, nest its own
signature beside theirs and timestamp them, each time without touching their bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms

from tests.support import peutil
from tests.support.helpers import primary_signature, run_cli, sign_args, signature_states
from tests.support.pki import TestPKI

pytestmark = pytest.mark.osslsigncode


def _ossl_sign(path: Path, pki: TestPKI, *extra: str) -> None:
    """Sign ``path`` in place with osslsigncode (leaf + intermediate in the signature)."""
    identity = pki.identity("rsa2048")
    out = path.with_name(path.name + ".ossl")
    peutil.osslsigncode_sign(path, out, identity, "-ac", str(identity.chain_path), *extra)
    out.replace(path)


def _dual_signed(path: Path, pki: TestPKI, *timestamp: str) -> None:
    _ossl_sign(path, pki, "-h", "sha1", *timestamp)
    _ossl_sign(path, pki, "-h", "sha256", "-nest", *timestamp)


def _raw_signatures(path: Path) -> list[bytes]:
    primary = primary_signature(path)
    return [s.der for s in (primary, *primary.nested)]


def test_a_dual_signed_file_of_another_tool_verifies_and_is_skipped(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tsa: Any
) -> None:
    path = samples["t64.exe"]
    _dual_signed(path, pki, "-ts", tsa.url("tsa"))
    assert signature_states(path, pki) == [("sha1", True), ("sha256", True)]
    code, out, err = run_cli(
        capsys, "verify", str(path), "--ca", str(pki.root_pem), "--require-timestamp"
    )
    assert code == 0, err
    assert ", sha1, timestamp 20" in out and "nested signature: " in out
    before = path.read_bytes()
    code, out, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("p256")))
    assert code == 0, err
    assert f"skipped: {path} (already signed)" in out and path.read_bytes() == before


def test_kmssign_nests_its_signature_beside_another_tools_two(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tsa: Any
) -> None:
    path = samples["w32.exe"]
    _dual_signed(path, pki, "-ts", tsa.url("tsa"))
    theirs = _raw_signatures(path)
    code, _, err = run_cli(
        capsys, "sign", str(path), "--append",
        *sign_args(pki.identity("p384"), "--timestamp-url", tsa.url("tsa")),
    )
    assert code == 0, err
    ours = _raw_signatures(path)
    assert theirs[1] in ours[1:]  # their nested signature, byte for byte
    assert sorted(signature_states(path, pki)) == [
        ("sha1", True), ("sha256", True), ("sha384", True)
    ]
    out = peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    assert "Number of verified signatures: 3" in out, out


def test_kmssign_timestamps_another_tools_signatures(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tsa: Any
) -> None:
    path = samples["t64.exe"]
    _dual_signed(path, pki)
    assert signature_states(path, pki) == [("sha1", False), ("sha256", False)]
    before = tsa.count("tsa")
    code, out, err = run_cli(capsys, "timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
    assert code == 0, err
    assert f"timestamped: {path}" in out and tsa.count("tsa") == before + 2
    assert signature_states(path, pki) == [("sha1", True), ("sha256", True)]
    out = peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    assert out.count("Timestamp Server Signature verification: ok") == 2, out


def test_a_legacy_authenticode_timestamp_is_verified(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tsa: Any, tmp_path: Path
) -> None:
    """The timestamp before RFC 3161 (a PKCS#9 countersignature, `signtool /t`), which
    older vendor files carry: its time counts, its signature and TSA chain are checked."""
    from tests.support.pki import make_root, write_pem

    path = samples["t64.exe"]
    _ossl_sign(path, pki, "-t", tsa.url("legacy"))
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    code, out, err = run_cli(
        capsys, "verify", str(path), "--ca", str(pki.root_pem), "--require-timestamp"
    )
    assert code == 0, err
    assert ", sha256, timestamp 20" in out
    # already timestamped: `kmssign timestamp` adds no second one
    before, calls = path.read_bytes(), tsa.count("tsa")
    code, out, _ = run_cli(capsys, "timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
    assert code == 0 and "already timestamped" in out
    assert path.read_bytes() == before and tsa.count("tsa") == calls
    # the TSA must chain to the TSA roots given
    other = write_pem(tmp_path / "other.pem", make_root("Unrelated TSA Root").cert)
    code, _, err = run_cli(
        capsys, "verify", str(path), "--ca", str(pki.root_pem), "--tsa-ca", str(other)
    )
    assert code == 1 and "does not chain" in err
    # one changed byte of the countersignature's own signature
    countersignature = primary_signature(path).countersignature
    assert countersignature is not None
    value = bytes(cms.SignerInfo.load(countersignature)["signature"].native)
    data = bytearray(before)
    at = data.index(value)
    data[at + 10] ^= 0x01
    broken = tmp_path / "broken.exe"
    broken.write_bytes(data)
    code, _, err = run_cli(capsys, "verify", str(broken), "--ca", str(pki.root_pem))
    assert code == 1 and "timestamp token signature does not verify" in err
