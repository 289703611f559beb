"""KMS fixtures (moto).

``kms_server`` is moto's ``ThreadedMotoServer`` on loopback, run in a child process:
in-process ``mock_aws`` resets every moto backend when it stops, which would wipe the
keys of a server living in the test process. A child process keeps them for the whole
session, and subprocesses under test reach it through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from cryptography.hazmat.primitives import serialization

from tests.pki import TestPKI

REGION = "us-east-1"
DUMMY_KEY = "testing"
DUMMY_SECRET = "testing"

_SERVER_SCRIPT = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # runs until the test session closes our stdin
server.stop()
"""


def kms_client(endpoint_url: str | None = None, region: str = REGION) -> Any:
    """A boto3 KMS client with dummy credentials (no environment needed)."""
    import boto3

    return boto3.client(
        "kms",
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=DUMMY_KEY,
        aws_secret_access_key=DUMMY_SECRET,
    )


def create_kms_key(
    client: Any, spec: str = "RSA_2048", usage: str = "SIGN_VERIFY", alias: str | None = None
) -> str:
    """Create a KMS key (and optionally an ``alias/...``) and return its key id."""
    key_id: str = client.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
    if alias is not None:
        client.create_alias(AliasName=alias, TargetKeyId=key_id)
    return key_id


@dataclass
class KmsServer:
    """A moto KMS reachable over HTTP on loopback."""

    endpoint_url: str
    region: str = REGION
    _client: Any = field(default=None, repr=False)

    def client(self) -> Any:
        if self._client is None:
            self._client = kms_client(self.endpoint_url, self.region)
        return self._client

    def create_key(
        self, spec: str = "RSA_2048", usage: str = "SIGN_VERIFY", alias: str | None = None
    ) -> str:
        return create_kms_key(self.client(), spec, usage, alias)

    def public_key_der(self, key_id: str) -> bytes:
        der: bytes = self.client().get_public_key(KeyId=key_id)["PublicKey"]
        return der


@pytest.fixture(scope="session")
def kms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmsServer]:
    """moto's KMS over HTTP on 127.0.0.1, one per session."""
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline().decode().strip()
    if not line.isdigit():
        process.kill()
        process.wait()
        raise RuntimeError(f"moto server did not start: {log.read_text(errors='replace')}")
    try:
        yield KmsServer(endpoint_url=f"http://127.0.0.1:{line}")
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
