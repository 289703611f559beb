"""Where the AWS region comes from, through botocore's own resolution against moto's KMS
server (keys live in one region there: a wrong region is "not found"). AWS's order: the
region setting, then AWS_REGION, then AWS_DEFAULT_REGION, then the profile's region.
AWS_PROFILE and AWS_ENDPOINT_URL_KMS work as they do for the AWS CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import peutil
from tests.support.helpers import run_cli
from tests.support.pki import TestPKI

pytestmark = [pytest.mark.osslsigncode]

OTHER = "eu-west-3"  # a region where the test keys do not exist


@pytest.fixture
def env(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The moto environment without any region."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name)
        aws_env.pop(name)
    return aws_env


def _sign(capsys, identity, path: Path, tsa, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "sign", str(path), "--key-id", identity.key_id,
                   "--cert", str(identity.cert_path), "--timestamp-url", tsa.url("tsa"), *extra)


def test_aws_region_alone_signs_with_an_alias(
    env, kms_server, kms_identity, pki: TestPKI, samples, tsa
) -> None:
    """The issue's case, in a fresh process: AWS_DEFAULT_REGION unset, AWS_REGION set."""
    identity = kms_identity("RSA_2048", alias="alias/kmssign-aws-region")
    path = samples["t64.exe"]
    proc = subprocess.run(
        [sys.executable, "-m", "kmssign", "sign", str(path), "--key-id",
         "alias/kmssign-aws-region", "--cert", str(identity.cert_path),
         "--timestamp-url", tsa.url("tsa")],
        env={**env, "AWS_REGION": kms_server.region}, capture_output=True, text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)


def test_without_any_region_the_message_names_the_ways_to_give_one(
    capsys, env, kms_identity, samples, tsa
) -> None:
    path = samples["w32.exe"]
    before = path.read_bytes()
    code, out, err = _sign(capsys, kms_identity("RSA_2048"), path, tsa)
    assert code == 1 and "no AWS region set" in err and "AWS_REGION" in err, err
    assert path.read_bytes() == before


def test_aws_region_wins_over_aws_default_region(
    capsys, env, kms_server, kms_identity, pki: TestPKI, samples, tsa,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    identity = kms_identity("RSA_2048")
    path = samples["w32.exe"]
    monkeypatch.setenv("AWS_DEFAULT_REGION", OTHER)
    monkeypatch.setenv("AWS_REGION", kms_server.region)
    code, out, err = _sign(capsys, identity, path, tsa)
    assert code == 0, err
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    monkeypatch.setenv("AWS_DEFAULT_REGION", kms_server.region)
    monkeypatch.setenv("AWS_REGION", OTHER)  # now AWS_REGION names the wrong one
    code, out, err = _sign(capsys, identity, samples["t64-arm.exe"], tsa)
    assert code == 1 and f"not found in region {OTHER}" in err, err


def test_the_setting_wins_over_aws_region(
    capsys, env, kms_server, kms_identity, pki: TestPKI, samples, tsa,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = samples["t64-arm.exe"]
    monkeypatch.setenv("AWS_REGION", OTHER)
    code, out, err = _sign(capsys, kms_identity("RSA_2048"), path, tsa,
                           "--region", kms_server.region)
    assert code == 0, err
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)


def test_the_profile_region_comes_last(
    capsys, env, kms_server, kms_identity, pki: TestPKI, samples, tsa,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """AWS_PROFILE picks the profile (its region signs); AWS_DEFAULT_REGION beats it."""
    config = tmp_path / "aws-config"
    config.write_text(f"[profile signing]\nregion = {kms_server.region}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "signing")
    identity = kms_identity("RSA_2048")
    path = samples["t64.exe"]
    code, out, err = _sign(capsys, identity, path, tsa)
    assert code == 0, err
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    monkeypatch.setenv("AWS_DEFAULT_REGION", OTHER)
    code, out, err = _sign(capsys, identity, samples["w32.exe"], tsa)
    assert code == 1 and f"not found in region {OTHER}" in err, err


def test_the_service_specific_endpoint_variable(
    capsys, env, kms_server, kms_identity, pki: TestPKI, samples, tsa,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AWS_ENDPOINT_URL_KMS alone (no AWS_ENDPOINT_URL) reaches the KMS it names."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", kms_server.endpoint_url)
    monkeypatch.setenv("AWS_REGION", kms_server.region)
    path = samples["w32.exe"]
    code, out, err = _sign(capsys, kms_identity("ECC_NIST_P256"), path, tsa)
    assert code == 0, err
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
