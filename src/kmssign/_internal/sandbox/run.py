"""``kmssign sandbox``: start the local KMS, CA and timestamp server, write what a shell
and a ``pyproject.toml`` need to use them, serve until stopped."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from kmssign._internal.pki.csr import build_csr, parse_subject
from kmssign._internal.sandbox.kms import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, LocalKms
from kmssign._internal.sandbox.pki import Authority, pem
from kmssign._internal.sandbox.tsa import Stamper, TimestampServer
from kmssign._internal.signers.aws_kms import KmsSigner

ALIAS = "alias/sandbox-signing"
SUBJECT = "CN=kmssign Sandbox Publisher,O=kmssign sandbox"
ENV_FILE = "env.sh"
TOML_FILE = "kmssign.toml"


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all: a reader waiting for the file never sees half of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Sandbox:
    """The three services and the files in ``directory``; ``start()``, then ``stop()``."""

    directory: Path
    key_spec: str = "RSA_2048"
    alias: str = ALIAS
    subject: str = SUBJECT
    kms: LocalKms | None = None
    tsa: TimestampServer | None = None
    key_arn: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.directory / "root.pem"

    @property
    def certificate(self) -> Path:
        return self.directory / "signing.pem"

    @property
    def request(self) -> Path:
        return self.directory / "signing.csr"

    @property
    def env_file(self) -> Path:
        return self.directory / ENV_FILE

    def start(self) -> Sandbox:
        self.directory = self.directory.absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.env_file.unlink(missing_ok=True)  # written last, when everything is up
        # This process signs the certificate request through boto3's default chain.
        os.environ.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
                           "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
                           "AWS_EC2_METADATA_DISABLED": "true"})
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.pop("AWS_PROFILE", None)
        self.kms = LocalKms().start()
        self.key_arn = self.kms.create_key(self.key_spec, self.alias)
        self.lines.append(f"KMS {self.kms.endpoint_url}: key {self.alias} ({self.key_spec}), "
                          f"{self.key_arn}")

        authority = Authority.create()
        _write(self.root, pem(authority.cert))
        # What `kmssign csr --key-id ALIAS --subject ... -o signing.csr` does
        signer = KmsSigner.create(self.alias, region=REGION, endpoint_url=self.kms.endpoint_url)
        _write(self.request, build_csr(signer, parse_subject(self.subject),
                                       signer.digest_for("sha256")))
        _write(self.certificate, pem(authority.issue_from_csr(self.request.read_bytes())))
        self.lines.append(f"certificate {self.certificate}, issued by {self.root} "
                          f"for the request {self.request}")

        tsa_cert, tsa_key = authority.timestamp_authority()
        self.tsa = TimestampServer(Stamper(tsa_cert, tsa_key)).start()
        self.lines.append(f"timestamp server {self.tsa.url} (its certificate chains to "
                          f"{self.root.name})")

        _write(self.directory / TOML_FILE, self.toml().encode())
        _write(self.env_file, "".join(
            f"export {name}={shlex.quote(value)}\n" for name, value in self.env().items()
        ).encode())
        return self

    def env(self) -> dict[str, str]:
        """The variables a shell exports to sign with the sandbox (AWS_* for boto3)."""
        assert self.kms is not None and self.tsa is not None
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_EC2_METADATA_DISABLED": "true",
            "KMSSIGN_KEY_ID": self.alias,
            "KMSSIGN_REGION": REGION,
            "KMSSIGN_ENDPOINT_URL": self.kms.endpoint_url,
            "KMSSIGN_CERTIFICATE": str(self.certificate),
            "KMSSIGN_TIMESTAMP_URLS": self.tsa.url,
        }

    def toml(self) -> str:
        """The same as a ``[tool.kmssign]`` table (AWS credentials stay in the environment)."""
        assert self.kms is not None and self.tsa is not None
        return "\n".join([
            "[tool.kmssign]",
            f"key-id = {_toml_string(self.alias)}",
            f"region = {_toml_string(REGION)}",
            f"endpoint-url = {_toml_string(self.kms.endpoint_url)}",
            f"certificate = {_toml_string(str(self.certificate))}",
            f"timestamp-urls = [{_toml_string(self.tsa.url)}]",
            "",
        ])

    def stop(self) -> None:
        """Stop the servers; the env file goes (its URLs are dead), the certificates stay."""
        self.env_file.unlink(missing_ok=True)
        tsa, self.tsa = self.tsa, None
        if tsa is not None:
            tsa.stop()
        kms, self.kms = self.kms, None
        if kms is not None:
            kms.stop()
