"""The KMS path end to end: moto's KMS server on loopback, real PE files, osslsigncode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support import peutil
from tests.support.helpers import run_cli
from tests.support.pki import TestPKI


def _kms_args(identity, endpoint: str, *extra: str) -> list[str]:
    return ["--key-id", identity.key_id, "--cert", str(identity.cert_path),
            "--endpoint-url", endpoint, *extra]


@pytest.mark.osslsigncode
@pytest.mark.parametrize(
    "spec", ["RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384"]
)
def test_kms_keys_sign_real_files(
    capsys, aws_env, kms_server, kms_identity, pki: TestPKI, samples, tsa, spec: str
) -> None:
    identity = kms_identity(spec)
    paths = [str(p) for p in samples.values()]
    code, out, err = run_cli(
        capsys, "sign", *paths,
        *_kms_args(identity, kms_server.endpoint_url, "--timestamp-url", tsa.url("tsa")),
    )
    assert code == 0, err
    assert out.count("signed: ") == len(paths)
    for path in samples.values():
        result = peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
        assert f"kmssign Test KMS Signer {spec}" in result
    code, out, err = run_cli(
        capsys, "verify", *paths, "--ca", str(pki.root_pem), "--require-timestamp"
    )
    assert code == 0, err


@pytest.mark.osslsigncode
def test_alias_and_environment_endpoint_in_a_subprocess(
    aws_env, kms_server, kms_identity, pki: TestPKI, samples, tsa
) -> None:
    identity = kms_identity("RSA_2048", alias="alias/kmssign-subprocess")
    path = samples["t64.exe"]
    proc = subprocess.run(
        [sys.executable, "-m", "kmssign", "sign", str(path),
         "--key-id", "alias/kmssign-subprocess", "--cert", str(identity.cert_path),
         "--timestamp-url", tsa.url("tsa")],
        env=aws_env, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)


@pytest.mark.osslsigncode
def test_settings_come_from_pyproject_and_env(
    capsys, aws_env, kms_server, kms_identity, pki: TestPKI, samples, tsa, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    identity = kms_identity("ECC_NIST_P256")
    project = tmp_path / "project"
    (project / "certs").mkdir(parents=True)
    (project / "certs" / "signer.pem").write_bytes(identity.cert_path.read_bytes())
    (project / "pyproject.toml").write_text(
        "[tool.kmssign]\n"
        f'certificate = "certs/signer.pem"\n'
        f'timestamp-urls = ["{tsa.url("tsa")}"]\n'
        'description = "Settings Test"\n'
    )
    monkeypatch.setenv("KMSSIGN_KEY_ID", identity.key_id)
    path = samples["w32.exe"]
    code, out, err = run_cli(capsys, "sign", str(path), "--config", str(project / "pyproject.toml"))
    assert code == 0, err
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    # and from the working directory upward, without --config
    sub = project / "build" / "deep"
    sub.mkdir(parents=True)
    path2 = samples["t64.exe"]
    monkeypatch.chdir(sub)
    code, out, err = run_cli(capsys, "sign", str(path2))
    assert code == 0, err
    peutil.osslsigncode_verify(path2, pki.root_pem, tsa_ca=pki.root_pem)


def _assert_clean_failure(
    capsys, samples, argv: list[str], message: str, code: int = 1
) -> str:
    before = {n: p.read_bytes() for n, p in samples.items()}
    got, out, err = run_cli(capsys, "sign", *map(str, samples.values()), *argv)
    assert got == code, out + err
    assert message in err, err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, f"expected one line, got:\n{err}"
    assert {n: p.read_bytes() for n, p in samples.items()} == before
    return err


def test_key_not_found(capsys, aws_env, kms_server, kms_identity, samples) -> None:
    identity = kms_identity("RSA_2048")
    _assert_clean_failure(
        capsys, samples,
        ["--key-id", "alias/does-not-exist", "--cert", str(identity.cert_path), "--no-timestamp"],
        "alias/does-not-exist",
    )


@pytest.fixture
def kms_proxy(kms_server):
    from tests.support.kms_proxy import KmsProxy

    proxy = KmsProxy(kms_server.endpoint_url).start()
    yield proxy
    proxy.stop()


@pytest.mark.parametrize(
    ("operation", "code", "aws_message", "expected"),
    [
        ("GetPublicKey", "DisabledException", "{key} is disabled.", "is disabled"),
        ("GetPublicKey", "KMSInvalidStateException", "{key} is pending deletion.",
         "is pending deletion"),
        ("GetPublicKey", "AccessDeniedException",
         "User: arn:aws:iam::111122223333:user/ci is not authorized to perform: "
         "kms:GetPublicKey on resource: {key}", "may not call kms:GetPublicKey"),
        ("Sign", "AccessDeniedException",
         "User: arn:aws:iam::111122223333:user/ci is not authorized to perform: kms:Sign "
         "on resource: {key}", "may not call kms:Sign"),
    ],
)
def test_service_errors_over_http(
    capsys, aws_env, kms_identity, kms_proxy, samples, operation, code, aws_message, expected
) -> None:
    """Errors that moto does not produce, answered over real HTTP by a proxy in front of it."""
    from tests.support.kms_proxy import fail

    identity = kms_identity("RSA_2048")
    kms_proxy.rules.append(fail(operation, 400, code, aws_message.format(key=identity.key_id)))
    argv = ["--key-id", identity.key_id, "--cert", str(identity.cert_path), "--no-timestamp",
            "--endpoint-url", kms_proxy.endpoint_url]
    before = {n: p.read_bytes() for n, p in samples.items()}
    got, out, err = run_cli(capsys, "sign", *map(str, samples.values()), *argv)
    assert got == 1
    assert expected in err and identity.key_id in err
    assert "Traceback" not in err
    assert {n: p.read_bytes() for n, p in samples.items()} == before
    if operation == "GetPublicKey":  # a run-level error: one line, no file touched
        assert err.strip().count("\n") == 0, err
    else:  # every file fails with the reason named
        assert err.count("failed: ") == len(samples)


@pytest.mark.osslsigncode
def test_throttled_sign_is_retried(
    capsys, aws_env, kms_identity, kms_proxy, pki: TestPKI, samples
) -> None:
    from tests.support.kms_proxy import fail

    identity = kms_identity("RSA_2048")
    kms_proxy.rules.append(fail("Sign", 400, "ThrottlingException", "Rate exceeded", every=2))
    code, out, err = run_cli(
        capsys, "sign", *map(str, samples.values()), "--key-id", identity.key_id,
        "--cert", str(identity.cert_path), "--no-timestamp",
        "--endpoint-url", kms_proxy.endpoint_url,
    )
    assert code == 0, err
    assert kms_proxy.calls["Sign"] > len(samples)  # throttled calls were retried
    assert kms_proxy.calls["GetPublicKey"] == 1
    for path in samples.values():
        peutil.osslsigncode_verify(path, pki.root_pem)


def test_encrypt_decrypt_key(capsys, aws_env, kms_server, kms_identity, samples) -> None:
    key_id = kms_server.create_key("RSA_2048", usage="ENCRYPT_DECRYPT")
    cert = kms_identity("RSA_2048").cert_path
    err = _assert_clean_failure(
        capsys, samples, ["--key-id", key_id, "--cert", str(cert), "--no-timestamp"],
        "ENCRYPT_DECRYPT",
    )
    assert "SIGN_VERIFY" in err


def test_certificate_of_another_key(capsys, aws_env, kms_server, kms_identity, samples) -> None:
    mine = kms_identity("RSA_2048")
    other = kms_identity("RSA_3072")
    _assert_clean_failure(
        capsys, samples,
        ["--key-id", mine.key_id, "--cert", str(other.cert_path), "--no-timestamp"],
        f"does not belong to KMS key {mine.key_id}", code=2,
    )


def test_no_credentials(
    capsys, aws_env, kms_server, kms_identity, samples, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = kms_identity("RSA_2048")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    err = _assert_clean_failure(
        capsys, samples,
        ["--key-id", identity.key_id, "--cert", str(identity.cert_path), "--no-timestamp"],
        "credentials",
    )
    assert identity.key_id in err


def test_no_region(
    capsys, aws_env, kms_server, kms_identity, samples, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = kms_identity("RSA_2048")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    _assert_clean_failure(
        capsys, samples,
        ["--key-id", identity.key_id, "--cert", str(identity.cert_path), "--no-timestamp"],
        "region",
    )


def test_endpoint_unreachable(
    capsys, aws_env, kms_identity, samples, tsa, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = kms_identity("RSA_2048")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    _assert_clean_failure(
        capsys, samples,
        ["--key-id", identity.key_id, "--cert", str(identity.cert_path), "--no-timestamp",
         "--endpoint-url", tsa.refused_url()],
        "cannot reach the KMS endpoint",
    )


def test_csr_and_pubkey(capsys, aws_env, kms_server, tmp_path: Path) -> None:
    key_id = kms_server.create_key("RSA_3072", alias="alias/kmssign-csr")
    csr_path = tmp_path / "req.csr"
    code, out, err = run_cli(
        capsys, "csr", "--key-id", "alias/kmssign-csr", "--subject",
        "CN=Example Ltd,O=Example Ltd,L=Berlin,ST=Berlin,C=DE", "-o", str(csr_path),
    )
    assert code == 0, err
    proc = subprocess.run(
        ["openssl", "req", "-verify", "-noout", "-in", str(csr_path)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0 and "verif" in (proc.stdout + proc.stderr).lower()
    from cryptography import x509

    request = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert request.is_signature_valid
    der = request.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert der == kms_server.public_key_der(key_id)
    expected = "CN=Example Ltd,O=Example Ltd,L=Berlin,ST=Berlin,C=DE"
    assert request.subject.rfc4514_string() == expected
    code, out, err = run_cli(capsys, "pubkey", "--key-id", key_id)
    assert code == 0, err
    pem = serialization.load_pem_public_key(out.encode())
    assert pem.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == der


def test_config_errors_are_listed_together(capsys, samples, tmp_path: Path) -> None:
    project = tmp_path / "bad"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        "[tool.kmssign]\ncolour = 'blue'\njobs = 'many'\nkey-id = 'x'\nkey-file = 'k.pem'\n"
    )
    before = {n: p.read_bytes() for n, p in samples.items()}
    code, out, err = run_cli(
        capsys, "sign", *map(str, samples.values()), "--config", str(project / "pyproject.toml")
    )
    assert code == 2
    assert "tool.kmssign.colour is not a known setting" in err
    assert "tool.kmssign.jobs" in err
    assert "mutually exclusive" in err
    assert err.count("kmssign: error:") >= 3
    assert {n: p.read_bytes() for n, p in samples.items()} == before
