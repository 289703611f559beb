"""A signer backed by a private key file (PEM or DER; PKCS#8 or traditional)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from kmssign._internal.digests import HASHES
from kmssign.errors import KeyFileError
from kmssign.signers import DigestName, KeyType

CURVE_DIGESTS: dict[str, DigestName] = {
    "secp256r1": "sha256",
    "secp384r1": "sha384",
    "secp521r1": "sha512",
}
PASSWORD_ENV = "KMSSIGN_KEY_PASSWORD"


class KeyFileSigner:
    """Signs with a private key loaded from a file; the key never leaves this process."""

    def __init__(self, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, name: str) -> None:
        self._key = key
        self._name = name

    @classmethod
    def from_file(
        cls,
        path: Path,
        password: bytes | None = None,
        *,
        warn: Callable[[str], None] | None = None,
    ) -> KeyFileSigner:
        """The key in ``path``; its password is ``password`` or ``KMSSIGN_KEY_PASSWORD``.

        A password given for a key that is not encrypted is ignored, with a note to
        ``warn``.
        """
        given = "a password was given"
        if password is None and os.environ.get(PASSWORD_ENV):
            password = os.environ[PASSWORD_ENV].encode()
            given = f"{PASSWORD_ENV} is set"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read key file: {exc.strerror or exc}") from exc
        loader = (
            serialization.load_pem_private_key
            if b"-----BEGIN" in data
            else serialization.load_der_private_key
        )
        try:
            # cryptography's RSA consistency check (primality tests) costs 60 ms for a
            # 2048-bit key and seconds for larger ones; it is not needed here because
            # every signature is verified against the certificate before it is used.
            try:
                key = loader(data, password=password, unsafe_skip_rsa_key_validation=True)
            except TypeError:
                if password is None:
                    raise
                # cryptography refuses a password for a key that has none: load it
                # without, and say that the password was not needed
                key = loader(data, password=None, unsafe_skip_rsa_key_validation=True)
                if warn is not None:
                    warn(f"{given} but key file {path} is not encrypted; the password is ignored")
        except TypeError as exc:
            raise KeyFileError(
                f"{path}: the key is encrypted; set {PASSWORD_ENV}"
                if password is None
                else f"{path}: {exc}"
            ) from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            reason = "wrong password or not a private key" if password else "not a private key"
            raise KeyFileError(f"{path}: {reason} (PEM or DER, PKCS#8 or traditional)") from exc
        if isinstance(key, rsa.RSAPrivateKey):
            if not 2048 <= key.key_size <= 16384:
                raise KeyFileError(f"{path}: RSA key of {key.key_size} bits is not supported")
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            if key.curve.name not in CURVE_DIGESTS:
                raise KeyFileError(f"{path}: elliptic curve {key.curve.name} is not supported")
        else:
            raise KeyFileError(f"{path}: only RSA and ECDSA (P-256/P-384/P-521) keys can sign")
        return cls(key, f"key file {path}")

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_type(self) -> KeyType:
        return "rsa" if isinstance(self._key, rsa.RSAPrivateKey) else "ec"

    def public_key_der(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def digest_for(self, requested: DigestName) -> DigestName:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return CURVE_DIGESTS[self._key.curve.name]
        return requested

    def sign(self, data: bytes, digest: DigestName) -> bytes:
        algorithm = HASHES[digest]()
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), algorithm)
        return self._key.sign(data, ec.ECDSA(algorithm))
