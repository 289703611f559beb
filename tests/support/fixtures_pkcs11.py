"""A real PKCS#11 token for the tests: SoftHSM2 in a directory of this session.

One token, ``kmssign-test`` (user PIN ``USER_PIN``), holds a key pair and its code-signing
certificate (from the test PKI) per kind: RSA 2048 and 4096, EC P-256 and P-384, labelled
``sign-<kind>`` with ids ``KEY_IDS[kind]``. The keys are made with ``cryptography`` and
imported with ``softhsm2-util``; the certificates written with ``pkcs11-tool`` (OpenSC).
Tests that change a token (a locked one) make their own with :meth:`SoftHsm.new_token`.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.pki import TestPKI

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
SOFTHSM_UTIL = shutil.which("softhsm2-util")
PKCS11_TOOL = shutil.which("pkcs11-tool")
# OpenSC's logging proxy module: it forwards every call to $PKCS11SPY and writes it down
SPY_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so",
    "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so",
    "/usr/lib/aarch64-linux-gnu/pkcs11/pkcs11-spy.so",
    "/usr/lib/pkcs11/pkcs11-spy.so",
)
SPY = next((Path(p) for p in SPY_CANDIDATES if os.path.isfile(p)), None)
AVAILABLE = MODULE.is_file() and SOFTHSM_UTIL is not None and PKCS11_TOOL is not None

TOKEN = "kmssign-test"
USER_PIN = "4711-user"
SO_PIN = "0815-officer"
KINDS = ("rsa2048", "rsa4096", "p256", "p384")
KEY_IDS = {"rsa2048": "a1", "rsa4096": "a2", "p256": "e1", "p384": "e2"}
CKA_OS_TOKENFLAGS = 0x8000534B  # SoftHSM2's token flags in its token.object file
CKF_USER_PIN_LOCKED = 0x00040000


@dataclass
class SoftHsm:
    directory: Path
    conf: Path
    pki: TestPKI
    tokens: dict[str, Path] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["SOFTHSM2_CONF"] = str(self.conf)
        env.update(extra)
        return env

    def _run(self, *args: str) -> str:
        proc = subprocess.run(args, env=self.env(), capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{args[0]}: {proc.stdout}{proc.stderr}"
        return proc.stdout

    def new_token(self, label: str) -> None:
        assert SOFTHSM_UTIL is not None
        before = set(self.directory.joinpath("tokens").iterdir())
        self._run(SOFTHSM_UTIL, "--init-token", "--free", "--label", label,
                  "--pin", USER_PIN, "--so-pin", SO_PIN)
        (made,) = set(self.directory.joinpath("tokens").iterdir()) - before
        self.tokens[label] = made

    def import_key(self, token: str, kind: str, *, certificate: bool = True) -> None:
        """The test PKI's key of ``kind`` onto ``token``, and its certificate beside it."""
        assert SOFTHSM_UTIL is not None and PKCS11_TOOL is not None
        identity = self.pki.identity(kind)
        key_file = self.directory / f"{kind}.p8"
        key_file.write_bytes(identity.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
        try:
            self._run(SOFTHSM_UTIL, "--import", str(key_file), "--token", token,
                      "--label", f"sign-{kind}", "--id", KEY_IDS[kind], "--pin", USER_PIN)
        finally:
            key_file.unlink()
        if certificate:
            cert_file = self.directory / f"{kind}.der"
            cert_file.write_bytes(identity.cert.public_bytes(serialization.Encoding.DER))
            self._run(PKCS11_TOOL, "--module", str(MODULE), "--token-label", token, "--login",
                      "--pin", USER_PIN, "--write-object", str(cert_file), "--type", "cert",
                      "--id", KEY_IDS[kind], "--label", f"sign-{kind}")

    def lock(self, token: str) -> None:
        """Set the user-PIN-locked flag in the token's own store, as too many wrong PINs
        would on a token with a retry limit (SoftHSM2 has none)."""
        path = self.tokens[token] / "token.object"
        data = bytearray(path.read_bytes())
        marker = struct.pack(">QQ", CKA_OS_TOKENFLAGS, 2)  # attribute, kind "unsigned long"
        at = data.index(marker) + len(marker)
        (flags,) = struct.unpack(">Q", data[at:at + 8])
        data[at:at + 8] = struct.pack(">Q", flags | CKF_USER_PIN_LOCKED)
        path.write_bytes(bytes(data))


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> Iterator[SoftHsm]:
    """The session's SoftHSM2 token directory (SOFTHSM2_CONF set for the whole session,
    subprocesses included), with the ``kmssign-test`` token and its four keys."""
    if not AVAILABLE:
        pytest.skip("SoftHSM2 or OpenSC is not installed (apt-get install softhsm2 opensc)")
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {directory / 'tokens'}\n"
        "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
    )
    hsm = SoftHsm(directory, conf, pki)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(conf))
        hsm.new_token(TOKEN)
        for kind in KINDS:
            hsm.import_key(TOKEN, kind)
        yield hsm
