"""The sandbox's KMS: moto's AWS emulation served over HTTP on 127.0.0.1 (``moto[server]``,
the ``kmssign[sandbox]`` extra), and the signing key made in it."""

from __future__ import annotations

from typing import Any

from kmssign.errors import KmsSignError

REGION = "us-east-1"
# moto accepts any credentials: these name the sandbox, they are no secret of anyone's.
ACCESS_KEY_ID = "sandbox"
SECRET_ACCESS_KEY = "sandbox"
KEY_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384",
             "ECC_NIST_P521")


class LocalKms:
    """``start()`` serves moto's KMS in a thread of this process; ``create_key`` makes a
    ``SIGN_VERIFY`` key under an alias; ``stop()``."""

    def __init__(self, port: int = 0) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise KmsSignError(
                "the sandbox needs moto's server (pip install 'kmssign[sandbox]'): "
                f"{exc}") from exc
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.endpoint_url = ""

    def start(self) -> LocalKms:
        import logging  # here: the CLI's parser reads KEY_SPECS from this module

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def _client(self) -> Any:
        import boto3

        return boto3.client("kms", region_name=REGION, endpoint_url=self.endpoint_url,
                            aws_access_key_id=ACCESS_KEY_ID,
                            aws_secret_access_key=SECRET_ACCESS_KEY)

    def create_key(self, spec: str, alias: str) -> str:
        """A new asymmetric signing key named ``alias``; returns its ARN."""
        client = self._client()
        meta = client.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY",
                                 Description="kmssign sandbox signing key")["KeyMetadata"]
        client.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
        return str(meta["Arn"])
