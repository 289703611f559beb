"""A small signer package from outside kmssign, built and pip-installed for the tests.

``acme-signer`` registers the factory ``acme`` in the ``kmssign.signers`` entry point
group. It signs with the private key file named by ``ACME_SIGNER_KEY`` and appends one
line per signature to ``ACME_SIGNER_LOG``, so a test can tell it really signed, and a line
to ``ACME_SIGNER_LOG.closed`` when it is closed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "acme-signer"
version = "1.0"
dependencies = ["cryptography"]

[project.entry-points."kmssign.signers"]
acme = "acme_signer:make_signer"
broken = "acme_signer:missing_factory"

[tool.hatch.build.targets.wheel]
packages = ["acme_signer"]
"""

MODULE = '''\
"""A signer from another package: a key file named by an environment variable."""

import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from kmssign.errors import ConfigError

_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
_CURVES = {"secp256r1": "sha256", "secp384r1": "sha384", "secp521r1": "sha512"}


class AcmeSigner:
    def __init__(self, path, log_path, description):
        with open(path, "rb") as f:
            self._key = serialization.load_pem_private_key(f.read(), password=None)
        self._log_path = log_path
        self._description = description

    @property
    def name(self):
        return "acme signer"

    @property
    def key_type(self):
        return "rsa" if isinstance(self._key, rsa.RSAPrivateKey) else "ec"

    def public_key_der(self):
        return self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def digest_for(self, requested):
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return _CURVES[self._key.curve.name]
        return requested

    def sign(self, data, digest):
        algorithm = _HASHES[digest]()
        with open(self._log_path, "a") as log:
            log.write(f"{digest} {len(data)} {self._description}\\n")
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), algorithm)
        return self._key.sign(data, ec.ECDSA(algorithm))


    def close(self):
        # a run closes the signer it made, once; the test reads this file
        with open(self._log_path + ".closed", "a") as log:
            log.write("closed\\n")


def make_signer(settings, log):
    path = os.environ.get("ACME_SIGNER_KEY")
    if not path:
        raise ConfigError("signer acme needs ACME_SIGNER_KEY")
    log("note: acme signer in use")
    return AcmeSigner(path, os.environ["ACME_SIGNER_LOG"], settings.description)
'''


@dataclass(frozen=True)
class InstalledPlugin:
    """Where the package was installed (put it on PYTHONPATH / sys.path)."""

    site: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a subprocess that sees the package (and this kmssign)."""
        env = dict(os.environ)
        paths = [str(self.site), *filter(None, [env.get("PYTHONPATH")])]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env.update(extra)
        return env


@pytest.fixture(scope="session")
def signer_plugin(tmp_path_factory: pytest.TempPathFactory) -> InstalledPlugin:
    """``acme-signer``, built from its pyproject by pip (hatchling, no network) and
    installed into a directory of its own."""
    root = tmp_path_factory.mktemp("acme-signer")
    project = root / "project"
    (project / "acme_signer").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "acme_signer" / "__init__.py").write_text(textwrap.dedent(MODULE))
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(site), str(project)],
        check=True, capture_output=True, text=True,
    )
    assert (site / "acme_signer" / "__init__.py").is_file()
    return InstalledPlugin(site)
