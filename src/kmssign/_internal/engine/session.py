"""A signing run's session: the key, the certificates, the digest and the timestamp
client, resolved once before any file is touched, and released when the run ends."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator

from kmssign._internal.net.breaker import FirstSuccess
from kmssign._internal.pki.certs import (
    SigningCertificates,
    leaf_warnings,
    select_signing_certificates,
    subject_of,
)
from kmssign.config import DEFAULT_JOBS, Settings
from kmssign.errors import ConfigError
from kmssign.signers import DIGESTS, DigestName, Signer, Timestamper

Log = Callable[[str], None]


def nolog(_message: str) -> None:
    """The log of a run nobody listens to."""


class RequestSlots:
    """At most ``jobs`` requests in flight to each service of a run: the signer (KMS, a
    token) and the timestamp servers. A file waiting for its timestamp holds no signer
    slot, so the next file's signature is made meanwhile."""

    def __init__(self, jobs: int = DEFAULT_JOBS) -> None:
        self.jobs = max(1, jobs)
        self.sign = threading.BoundedSemaphore(self.jobs)
        self.stamp = threading.BoundedSemaphore(self.jobs)

    @property
    def workers(self) -> int:
        """Files under way at once, so that both kinds of slot stay busy (each file needs one
        of each in turn); with ``jobs`` 1, one file at a time."""
        return 2 * self.jobs if self.jobs > 1 else 1


class SigningSession:
    """Everything resolved once per run: key, certificates, digest, timestamp client."""

    def __init__(
        self,
        signer: Signer,
        certificates: SigningCertificates,
        digest: DigestName,
        timestamper: Timestamper | None,
        timestamp_policy: str,
        description: str | None,
        url: str | None,
        log: Log = nolog,
        owns_signer: bool = False,  # made by open_session
        slots: RequestSlots | None = None,
    ) -> None:
        self.signer = signer
        self.certificates = certificates
        self.digest = digest
        self.timestamper = timestamper
        self.timestamp_policy = timestamp_policy
        self.description = description
        self.url = url
        self.log = log
        self.owns_signer = owns_signer
        self.first_stamp = FirstSuccess()
        self.slots = slots or RequestSlots()

    @functools.cached_property
    def signer_subject(self) -> str:
        return subject_of(self.certificates.leaf)

    def close(self) -> None:
        """Release the signer when this session made it (a signer given by the caller
        stays the caller's to close)."""
        if self.owns_signer:
            close_signer(self.signer)


def timestamper_for(
    settings: Settings, timestamper: Timestamper | None, log: Log
) -> Timestamper | None:
    """None with ``timestamp`` off; else ``timestamper``, or a client of the settings'
    timestamp servers."""
    if settings.timestamp == "off":
        return None
    if timestamper is not None:
        return timestamper
    from kmssign._internal.timestamp.client import TimestampClient

    return TimestampClient(settings.timestamp_urls, timeout=settings.timestamp_timeout, log=log)


@contextlib.contextmanager
def signer_for(settings: Settings, signer: Signer | None, log: Log) -> Iterator[Signer]:
    """``signer``, or the settings' own made for the ``with`` block and released after."""
    if signer is not None:
        yield signer
        return
    own = create_signer(settings, log)
    try:
        yield own
    finally:
        close_signer(own)


def close_signer(signer: object) -> None:
    """Release what a signer holds, where it has a ``close()`` (a token's sessions and
    login): without it they would last until the process ends."""
    close = getattr(signer, "close", None)
    if callable(close):
        close()


def create_signer(settings: Settings, log: Log = nolog) -> Signer:
    """The signer the settings name (``signer``, or the key setting given), made by its
    factory in the ``kmssign.signers`` entry point group."""
    from kmssign._internal.engine import signerchoice

    return signerchoice.create_signer(settings, log)


def open_session(
    settings: Settings,
    *,
    signer: Signer | None = None,
    timestamper: Timestamper | None = None,
    log: Log = nolog,
) -> SigningSession:
    """Resolve the key and certificates once; fail before any file is touched.

    A signer made here (none was given) belongs to the session: :meth:`SigningSession.close`
    releases it, and a failure here already has."""
    made: list[Signer] = []

    def make() -> Signer:
        made.append(create_signer(settings, log))
        return made[0]

    try:
        return _open_session(settings, signer, timestamper, log, make)
    except BaseException:
        for own in made:
            close_signer(own)
        raise


def _open_session(
    settings: Settings,
    signer: Signer | None,
    timestamper: Timestamper | None,
    log: Log,
    make: Callable[[], Signer],
) -> SigningSession:
    owns = signer is None
    problems = []
    stores = signer is not None  # may the signer keep certificates beside its key?
    if signer is None:
        from kmssign._internal.engine.signerchoice import NO_KEY, signer_name

        name = signer_name(settings)
        stores = name not in (None, "aws-kms", "key-file")
        if name is None:
            problems.append(NO_KEY)
    if settings.certificate is None and stores:
        # a signer that stores certificates beside its key (a token) may supply it
        signer = signer or make()
    stored = getattr(signer, "token_certificates", None)
    if settings.certificate is None and not callable(stored):
        problems.append("no certificate: set certificate (PEM, DER or .p7b)")
    if settings.digest not in DIGESTS:
        problems.append(f"digest must be one of {', '.join(DIGESTS)}")
    if problems:
        raise ConfigError(problems)
    signer = signer or make()
    certificates = select_signing_certificates(
        settings.certificate if settings.certificate is not None else stored(),  # type: ignore[misc]
        settings.chain, signer.public_key_der(), signer.name,
    )
    for warning in leaf_warnings(certificates.leaf):
        log(f"warning: {warning}")
    requested: DigestName = settings.digest  # type: ignore[assignment]
    digest = signer.digest_for(requested)
    if digest != requested:
        log(f"note: {signer.name} is an EC key bound to {digest}; using {digest}, not {requested}")
    return SigningSession(
        signer=signer,
        certificates=certificates,
        digest=digest,
        timestamper=timestamper_for(settings, timestamper, log),
        timestamp_policy=settings.timestamp,
        description=settings.description,
        url=settings.url,
        log=log,
        owns_signer=owns,
        slots=RequestSlots(settings.jobs),
    )
