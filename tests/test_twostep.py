"""Signing in two steps: ``kmssign digest`` (certificate only), ``sign-digests`` or an
outside tool signing the hashes, ``kmssign attach``; PE files and MSI packages."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from tests.support import msiutil, peutil, wheelutil
from tests.support.helpers import run_cli
from tests.support.pki import TestPKI

pytestmark = [pytest.mark.osslsigncode]
OPENSSL = shutil.which("openssl")


def _cert_args(pki: TestPKI, kind: str) -> list[str]:
    identity = pki.identity(kind)
    return ["--certificate", str(identity.cert_path), "--chain", str(identity.chain_path)]


def _digest(capsys, pki: TestPKI, kind: str, out: Path, *paths: Path, extra: tuple = ()) -> dict:
    code, stdout, err = run_cli(capsys, "digest", *map(str, paths), "-o", str(out),
                                *_cert_args(pki, kind), *extra)
    assert code == 0, err
    return json.loads(out.read_text())


def _verified(capsys, pki: TestPKI, paths, *, timestamped: bool) -> None:
    for path in paths:
        peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem if timestamped else None)
    args = ["--require-timestamp"] if timestamped else []
    code, out, err = run_cli(capsys, "verify", *map(str, paths), "--ca", str(pki.root_pem), *args)
    assert code == 0, err


def test_digest_sign_digests_attach_with_a_key_file(
    capsys, pki: TestPKI, samples, tsa, tmp_path: Path
) -> None:
    identity = pki.identity("rsa2048")
    paths = list(samples.values())
    before = {p: p.read_bytes() for p in paths}
    requests = _digest(capsys, pki, "rsa2048", tmp_path / "req.json", *paths,
                       extra=("--description", "two steps", "--digest", "sha384"))
    assert all(p.read_bytes() == before[p] for p in paths)  # digest writes no file
    assert requests["settings"] == {"digest": "sha384", "description": "two steps", "url": None,
                                    "skip-signed": True}
    assert requests["signature_algorithm"] == "RSASSA_PKCS1_V1_5_SHA_384"
    assert len(requests["requests"]) == len(paths)
    code, out, err = run_cli(capsys, "sign-digests", str(tmp_path / "req.json"),
                             "-o", str(tmp_path / "sig.json"), "--key-file", str(identity.key_path))
    assert code == 0, err
    assert f"wrote {len(paths)} signatures" in out
    code, out, err = run_cli(capsys, "attach", str(tmp_path / "req.json"),
                             str(tmp_path / "sig.json"), "--timestamp-url", tsa.url("tsa"))
    assert code == 0, err
    assert out.count("signed: ") == len(paths)
    _verified(capsys, pki, paths, timestamped=True)
    for path in paths:
        assert "Message digest algorithm: SHA384" in peutil.osslsigncode_verify(path, pki.root_pem)


def _outside_sign(requests: dict, key, out: Path, *, use_openssl: bool, key_path: Path) -> None:
    """Sign each request's hash as a digest-signing service would (aws kms sign
    --message-type DIGEST): openssl pkeyutl, or cryptography's prehashed signing."""
    lines = []
    for entry in requests["requests"]:
        digest = bytes.fromhex(entry["hash"])
        if use_openssl:
            assert OPENSSL
            proc = subprocess.run(
                [OPENSSL, "pkeyutl", "-sign", "-inkey", str(key_path),
                 "-pkeyopt", f"digest:{requests['settings']['digest']}"],
                input=digest, capture_output=True, check=True,
            )
            signature = proc.stdout
        else:
            algorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}[
                requests["settings"]["digest"]]
            signature = key.sign(digest, ec.ECDSA(utils.Prehashed(algorithm)))
        lines.append(f"{entry['hash']} {base64.b64encode(signature).decode()}\n")
    out.write_text("".join(lines))


@pytest.mark.parametrize("kind", ["rsa2048", "p384"])
def test_an_outside_tool_signs_the_hashes(
    capsys, pki: TestPKI, samples, tmp_path: Path, kind: str
) -> None:
    identity = pki.identity(kind)
    paths = list(samples.values())
    requests = _digest(capsys, pki, kind, tmp_path / "req.json", *paths)
    if kind == "p384":
        assert requests["settings"]["digest"] == "sha384"  # the curve binds it
        assert requests["signature_algorithm"] == "ECDSA_SHA_384"
    _outside_sign(requests, identity.key, tmp_path / "sig.txt", use_openssl=kind == "rsa2048",
                  key_path=identity.key_path)
    code, out, err = run_cli(capsys, "attach", str(tmp_path / "req.json"),
                             str(tmp_path / "sig.txt"), "--no-timestamp")
    assert code == 0, err
    _verified(capsys, pki, paths, timestamped=False)


def test_sign_digests_with_kms(
    capsys, aws_env, kms_identity, pki: TestPKI, samples, tmp_path: Path
) -> None:
    identity = kms_identity("ECC_NIST_P256")
    path = samples["t64.exe"]
    code, _, err = run_cli(capsys, "digest", str(path), "-o", str(tmp_path / "req.json"),
                           "--certificate", str(identity.cert_path))
    assert code == 0, err
    code, _, err = run_cli(capsys, "sign-digests", str(tmp_path / "req.json"), "-o",
                           str(tmp_path / "sig.json"), "--key-id", identity.key_id)
    assert code == 0, err
    code, _, err = run_cli(capsys, "attach", str(tmp_path / "req.json"),
                           str(tmp_path / "sig.json"), "--no-timestamp")
    assert code == 0, err
    _verified(capsys, pki, [path], timestamped=False)


@pytest.mark.softhsm
def test_sign_digests_with_a_token(
    capsys, monkeypatch: pytest.MonkeyPatch, softhsm, pki: TestPKI, samples, tmp_path: Path
) -> None:
    from tests.support.fixtures_pkcs11 import MODULE, TOKEN, USER_PIN

    monkeypatch.setenv("KMSSIGN_PKCS11_PIN", USER_PIN)
    path = samples["w32.exe"]
    _digest(capsys, pki, "p256", tmp_path / "req.json", path)
    code, _, err = run_cli(capsys, "sign-digests", str(tmp_path / "req.json"), "-o",
                           str(tmp_path / "sig.json"), "--pkcs11-module", str(MODULE),
                           "--pkcs11-token", TOKEN, "--pkcs11-key", "sign-p256")
    assert code == 0, err
    code, _, err = run_cli(capsys, "attach", str(tmp_path / "req.json"),
                           str(tmp_path / "sig.json"), "--no-timestamp")
    assert code == 0, err
    _verified(capsys, pki, [path], timestamped=False)


@pytest.mark.wixl
@pytest.mark.msitools
def test_an_msi_package_in_two_steps(capsys, pki: TestPKI, samples, tsa, tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "a.bin").write_bytes(os.urandom(3000))
    package = msiutil.build_msi(tmp_path / "demo.msi", {"a.bin": payload / "a.bin"})
    identity = pki.identity("rsa2048")
    requests = _digest(capsys, pki, "rsa2048", tmp_path / "req.json", package, samples["t64.exe"])
    assert sorted(e["format"] for e in requests["requests"]) == ["msi", "pe"]
    code, _, err = run_cli(capsys, "sign-digests", str(tmp_path / "req.json"), "-o",
                           str(tmp_path / "sig.json"), "--key-file", str(identity.key_path))
    assert code == 0, err
    code, out, err = run_cli(capsys, "attach", str(tmp_path / "req.json"),
                             str(tmp_path / "sig.json"), "--timestamp-url", tsa.url("tsa"))
    assert code == 0, err
    _verified(capsys, pki, [package, samples["t64.exe"]], timestamped=True)
    assert msiutil.tables(package)


@pytest.fixture
def two_signed_requests(capsys, pki: TestPKI, samples, tmp_path: Path):
    """Requests and signatures for two files, made and not yet attached."""
    identity = pki.identity("rsa2048")
    paths = [samples["t64.exe"], samples["w32.exe"]]
    _digest(capsys, pki, "rsa2048", tmp_path / "req.json", *paths)
    code, _, err = run_cli(capsys, "sign-digests", str(tmp_path / "req.json"), "-o",
                           str(tmp_path / "sig.json"), "--key-file", str(identity.key_path))
    assert code == 0, err
    return paths, tmp_path / "req.json", tmp_path / "sig.json"


def _refused(capsys, paths, requests: Path, signatures: Path) -> str:
    before = {p: p.read_bytes() for p in paths}
    code, out, err = run_cli(capsys, "attach", str(requests), str(signatures), "--no-timestamp")
    assert code == 1
    assert err.count("\n") == 1, err
    assert all(p.read_bytes() == before[p] for p in paths)  # nothing written, none of them
    return err.strip()


def test_a_file_changed_since_digest_stops_every_file(capsys, two_signed_requests) -> None:
    paths, requests, signatures = two_signed_requests
    with open(paths[1], "ab") as f:
        f.write(b"\0" * 8)
    err = _refused(capsys, paths, requests, signatures)
    assert err == (f"kmssign: error: {paths[1]}: the file changed since kmssign digest; "
                   "nothing was written")


def test_a_signature_that_does_not_verify_stops_every_file(
    capsys, two_signed_requests
) -> None:
    paths, requests, signatures = two_signed_requests
    data = json.loads(signatures.read_text())
    first = next(iter(data["signatures"]))
    raw = bytearray(base64.b64decode(data["signatures"][first]))
    raw[10] ^= 1
    data["signatures"][first] = base64.b64encode(raw).decode()
    signatures.write_text(json.dumps(data))
    err = _refused(capsys, paths, requests, signatures)
    assert "its signature does not verify with the certificate kmssign Test Signer rsa2048" \
        in err
    assert err.endswith("; nothing was written")


def test_a_missing_signature_stops_every_file(capsys, two_signed_requests) -> None:
    paths, requests, signatures = two_signed_requests
    data = json.loads(signatures.read_text())
    data["signatures"].popitem()
    signatures.write_text(json.dumps(data))
    err = _refused(capsys, paths, requests, signatures)
    assert ": no signature for it; nothing was written" in err


def test_an_edited_request_file_stops_every_file(capsys, two_signed_requests) -> None:
    paths, requests, signatures = two_signed_requests
    data = json.loads(requests.read_text())
    data["settings"]["description"] = "edited"
    requests.write_text(json.dumps(data))
    err = _refused(capsys, paths, requests, signatures)
    assert err == (f"kmssign: error: {requests} was edited after kmssign digest wrote it (its "
                   "checksum does not match); run kmssign digest again")


def test_a_request_edited_with_its_checksum_redone_is_caught_too(
    capsys, two_signed_requests
) -> None:
    """Whoever edits the attributes and recomputes the checksum still meets the file: the
    attributes are derived again from it and the recorded settings."""
    from kmssign._internal.engine.twostep import checksum

    paths, requests, signatures = two_signed_requests
    data = json.loads(requests.read_text())
    data["requests"][0]["path"] = data["requests"][1]["path"]
    data["requests"][0]["sha256"] = data["requests"][1]["sha256"]
    data.pop("checksum")
    data["checksum"] = checksum(data)
    requests.write_text(json.dumps(data))
    err = _refused(capsys, paths, requests, signatures)
    assert "the request was edited (its signed attributes are not the file's)" in err


def test_sign_digests_refuses_a_key_that_is_not_the_certificates(
    capsys, pki: TestPKI, samples, tmp_path: Path
) -> None:
    _digest(capsys, pki, "rsa2048", tmp_path / "req.json", samples["t64.exe"])
    code, _, err = run_cli(capsys, "sign-digests", str(tmp_path / "req.json"), "-o",
                           str(tmp_path / "sig.json"), "--key-file",
                           str(pki.identity("p256").key_path))
    assert code == 2
    assert err.count("\n") == 1 and "does not belong to key file" in err
    assert not (tmp_path / "sig.json").exists()


def _wheel(samples, tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    dist = f"{wheelutil.DIST}-{wheelutil.VERSION}"
    pe = (f"{wheelutil.DIST}/_ext.cp312-win_amd64.pyd", f"{dist}.data/scripts/tool.exe")
    members = {f"{wheelutil.DIST}/__init__.py": b"", pe[0]: samples["t64.exe"].read_bytes(),
               pe[1]: samples["w32.exe"].read_bytes()}
    return wheelutil.write_wheel(tmp_path / wheelutil.WHEEL_NAME, members), pe


def test_a_wheels_pe_members_in_two_steps(
    capsys, pki: TestPKI, samples, tsa, tmp_path: Path
) -> None:
    wheel, pe = _wheel(samples, tmp_path)
    loose = samples["hello.exe"] if "hello.exe" in samples else samples["t64-arm.exe"]
    requests = _digest(capsys, pki, "rsa2048", tmp_path / "req.json", wheel, loose)
    members = sorted(e.get("member", "") for e in requests["requests"])
    assert members == ["", *sorted(pe)]
    identity = pki.identity("rsa2048")
    code, _, err = run_cli(capsys, "sign-digests", str(tmp_path / "req.json"), "-o",
                           str(tmp_path / "sig.json"), "--key-file", str(identity.key_path))
    assert code == 0, err
    code, out, err = run_cli(capsys, "attach", str(tmp_path / "req.json"),
                             str(tmp_path / "sig.json"), "--timestamp-url", tsa.url("tsa"))
    assert code == 0, err
    assert out.count("signed: ") == 3, out
    wheelutil.check_signed_wheel(wheel, pki, tmp_path, members=pe, timestamped=True)
    _verified(capsys, pki, [loose], timestamped=True)


def test_a_wheel_changed_since_digest_stops_every_file(
    capsys, pki: TestPKI, samples, tmp_path: Path
) -> None:
    wheel, _ = _wheel(samples, tmp_path)
    loose = samples["t64-arm.exe"]
    _digest(capsys, pki, "rsa2048", tmp_path / "req.json", loose, wheel)
    code, _, err = run_cli(capsys, "sign-digests", str(tmp_path / "req.json"), "-o",
                           str(tmp_path / "sig.json"), "--key-file",
                           str(pki.identity("rsa2048").key_path))
    assert code == 0, err
    with open(wheel, "ab") as f:
        f.write(b"\0")
    err = _refused(capsys, [wheel, loose], tmp_path / "req.json", tmp_path / "sig.json")
    assert err == (f"kmssign: error: {wheel}: the wheel changed since kmssign digest; "
                   "nothing was written")


def test_digest_writes_no_request_file_when_a_file_fails(
    capsys, pki: TestPKI, samples, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("not a PE file")
    code, out, err = run_cli(capsys, "digest", str(samples["t64.exe"]),
                             str(tmp_path / "notes.txt"), "-o", str(tmp_path / "req.json"),
                             *_cert_args(pki, "rsa2048"))
    assert code == 1
    assert "notes.txt" in out + err
    assert "wrote" not in out
    assert not (tmp_path / "req.json").exists()
