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
``sign`` is called from several threads at once. A signer that holds something to
release (a token's sessions and login, a connection) may have a ``close()`` method: a run
that made the signer through its factory calls it once the run ends, failed or not; a
signer passed to the library by its caller is left to the caller.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["DIGESTS", "DigestName", "KeyType", "Signer", "TimestampInfo", "Timestamper"]

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


class TimestampInfo(Protocol):
    """What a checked timestamp token says (at least)."""

    @property
    def gen_time(self) -> dt.datetime:
        """The time the TSA vouches for (timezone-aware, UTC)."""


@runtime_checkable
class Timestamper(Protocol):
    """Gets RFC 3161 timestamp tokens for signature values.

    kmssign makes its own from the ``timestamp-url`` settings (with retries, failover and
    a circuit breaker); pass another as ``timestamper=`` to :func:`kmssign.api.sign_files`,
    :func:`kmssign.api.sign_wheels` or :func:`kmssign.api.timestamp_files`. Called from
    several threads at once.
    """

    @property
    def available(self) -> bool:
        """``False`` once the timestamper has given up for this run."""

    def check_available(self) -> None:
        """Raise :class:`kmssign.errors.TimestampUnavailableError` once it has given up
        (asked before a signature that needs a token is made)."""

    def stamp(self, signature_value: bytes, digest: str) -> tuple[Any, TimestampInfo]:
        """A token over ``digest(signature_value)``, already checked (an asn1crypto
        ``cms.ContentInfo``), and what it says; :class:`kmssign.errors.TimestampError`
        when none can be had."""
