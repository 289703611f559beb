"""KMS fixtures: ``kms_server`` (moto over HTTP on loopback, see tests/support/kms_server.py),
``aws_env`` and ``kms_identity``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.kms_server import (  # re-exported for the tests that import them from here
    DUMMY_KEY,
    DUMMY_SECRET,
    REGION,
    KmsServer,
    create_kms_key,
    kms_client,
)
from tests.support.pki import TestPKI

__all__ = ["DUMMY_KEY", "DUMMY_SECRET", "REGION", "KmsServer", "create_kms_key", "kms_client"]


@pytest.fixture(scope="session")
def kms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmsServer]:
    """moto's KMS over HTTP on 127.0.0.1, one per session."""
    server = KmsServer(tmp_path_factory.mktemp("moto") / "server.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_env(
    kms_server: KmsServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    """Point boto3 (here and in subprocesses) at the moto server with dummy credentials.

    Returns a copy of the patched environment for ``subprocess.run(env=...)``.
    """
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
        "AWS_DEFAULT_REGION": kms_server.region,
        "AWS_REGION": kms_server.region,
        "AWS_ENDPOINT_URL": kms_server.endpoint_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


class KmsIdentity(NamedTuple):
    key_id: str
    cert_path: Path  # PEM bundle: leaf issued for the KMS key, then the intermediate


@pytest.fixture(scope="session")
def kms_identity(kms_server: KmsServer, pki: TestPKI) -> Callable[..., KmsIdentity]:
    """Factory: ``kms_identity(spec="RSA_2048", alias=None)`` -> (key_id, cert_path).

    Creates a SIGN_VERIFY key on the session moto server and a code-signing leaf for its
    public key issued by the session PKI (trust anchor: ``pki.root_pem``). Cached per
    (spec, alias) for the session.
    """
    cache: dict[tuple[str, str | None], KmsIdentity] = {}

    def make(spec: str = "RSA_2048", alias: str | None = None) -> KmsIdentity:
        if (spec, alias) not in cache:
            key_id = kms_server.create_key(spec, alias=alias)
            public_key = serialization.load_der_public_key(kms_server.public_key_der(key_id))
            label = f"kms-{spec.lower()}" + (f"-{alias.replace('/', '_')}" if alias else "")
            cert_path = pki.leaf_for(
                public_key,  # type: ignore[arg-type]
                f"kmssign Test KMS Signer {spec}",
                pki.directory / f"{label}.pem",
            )
            cache[(spec, alias)] = KmsIdentity(key_id, cert_path)
        return cache[(spec, alias)]

    return make
