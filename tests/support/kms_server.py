"""moto's AWS KMS emulation, served over HTTP on 127.0.0.1 from a child process.

Used by the test fixtures and by the demo. A child process rather than a thread: moto's
in-process ``mock_aws`` resets every moto backend when it stops (which would wipe the
keys of a server in the same process), and subprocesses under test (hatch, PyInstaller)
reach the server through ``AWS_ENDPOINT_URL``, as they would reach a VPC endpoint.
Needs ``moto[server]``; nothing here depends on pytest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

REGION = "us-east-1"
# moto accepts any credentials; these are placeholders, never real ones.
DUMMY_KEY = "testing"
DUMMY_SECRET = "testing"

_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # serve until the parent closes stdin
server.stop()
"""


def kms_client(endpoint_url: str | None = None, region: str = REGION) -> Any:
    """A boto3 KMS client with placeholder credentials (no environment needed)."""
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


class KmsServer:
    """``start()`` launches the server, ``stop()`` ends it; ``endpoint_url`` while running."""

    region = REGION

    def __init__(self, log: Path) -> None:
        self.log = log
        self.endpoint_url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    def start(self) -> KmsServer:
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _SERVER],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                cwd=self.log.parent,
            )
        assert self._process.stdout is not None
        port = self._process.stdout.readline().decode().strip()
        if not port.isdigit():
            self.stop()
            details = self.log.read_text(errors="replace").strip().splitlines()
            reason = details[-1] if details else "no output"
            raise RuntimeError(
                f"moto's KMS server did not start ({reason}); is moto[server] installed?"
            )
        self.endpoint_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def client(self) -> Any:
        """A boto3 KMS client for this server (placeholder credentials)."""
        if self._client is None:
            self._client = kms_client(self.endpoint_url, self.region)
        return self._client

    def create_key(
        self, spec: str = "RSA_2048", usage: str = "SIGN_VERIFY", alias: str | None = None
    ) -> str:
        """A new key of ``spec`` (named by ``alias`` when given); returns its key id."""
        return create_kms_key(self.client(), spec, usage, alias)

    def key_arn(self, key_id: str) -> str:
        arn: str = self.client().describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
        return arn

    def public_key_der(self, key_id: str) -> bytes:
        der: bytes = self.client().get_public_key(KeyId=key_id)["PublicKey"]
        return der

    def environment(self) -> dict[str, str]:
        """What a process needs to use this KMS through boto3's default chain."""
        return {
            "AWS_ACCESS_KEY_ID": DUMMY_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
