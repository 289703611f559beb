"""moto's AWS KMS emulation, served over HTTP on 127.0.0.1 from a child process.

A child process rather than a thread keeps moto's imports and state out of the demo
process; the builds (hatch, PyInstaller) run in further subprocesses and reach it through
``AWS_ENDPOINT_URL``, exactly as they would reach a VPC endpoint. Needs ``moto[server]``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

REGION = "us-east-1"
# moto accepts any credentials; these are placeholders, never real ones.
ACCESS_KEY = "demo-access-key"
SECRET_KEY = "demo-secret-key"

_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # serve until the parent closes stdin
server.stop()
"""


class LocalKms:
    """``start()`` launches the server, ``stop()`` ends it; ``endpoint_url`` while running."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.endpoint_url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalKms:
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
            raise RuntimeError(f"moto's KMS server did not start ({reason}); "
                               "is moto[server] installed?")
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
        import boto3

        return boto3.client(
            "kms", region_name=REGION, endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        )

    def create_signing_key(self, alias: str, spec: str = "RSA_4096") -> str:
        """An asymmetric SIGN_VERIFY key of ``spec`` named by ``alias``; returns its ARN."""
        kms = self.client()
        metadata = kms.create_key(
            KeySpec=spec, KeyUsage="SIGN_VERIFY", Description="kmssign demo signing key"
        )["KeyMetadata"]
        kms.create_alias(AliasName=alias, TargetKeyId=metadata["KeyId"])
        arn: str = metadata["Arn"]
        return arn

    def environment(self) -> dict[str, str]:
        """What a process needs to use this KMS through boto3's default chain."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
