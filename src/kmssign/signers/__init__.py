"""The signer abstraction: whatever holds the private key signs bytes, nothing more.

A signer receives the DER encoding of the Authenticode signed attributes and returns
the raw signature value (PKCS#1 v1.5 for RSA, DER ``ECDSA-Sig-Value`` for EC keys).
CMS assembly lives in :mod:`kmssign._internal.authenticode.build`, whatever holds the key.

Signers from other packages: register a factory in the entry point group
``kmssign.signers``, under the name users put in the ``signer`` setting::

    [project.entry-points."kmssign.signers"]
    vault = "acme_vault_signer:make_signer"

    def make_signer(settings: kmssign.config.Settings, log: Callable[[str], None]) -> Signer:
        ...

The factory is called once per run, should make no network call (fetch the public key
lazily, cache it), and raises :class:`kmssign.errors.ConfigError` or
:class:`kmssign.errors.SigningError` with a one-line message for what is missing.
``sign`` is called from several threads at once.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

DigestName = Literal["sha256", "sha384", "sha512"]
DIGESTS: tuple[DigestName, ...] = ("sha256", "sha384", "sha512")

KeyType = Literal["rsa", "ec"]


@runtime_checkable
class Signer(Protocol):
    """A private key that can sign; the certificate is not its business."""

    @property
    def name(self) -> str:
        """Human-readable name of the key for messages (``KMS key alias/x``)."""

    @property
    def key_type(self) -> KeyType:
        """``"rsa"`` or ``"ec"``."""

    def public_key_der(self) -> bytes:
        """DER SubjectPublicKeyInfo of the key (fetched once, then cached)."""

    def digest_for(self, requested: DigestName) -> DigestName:
        """The digest this key will actually sign with when ``requested`` is asked for.

        RSA keys honour the request; EC keys are bound to their curve
        (P-256 -> sha256, P-384 -> sha384, P-521 -> sha512).
        """

    def sign(self, data: bytes, digest: DigestName) -> bytes:
        """Sign ``data`` (hashed with ``digest`` by the signer) and return the signature."""
