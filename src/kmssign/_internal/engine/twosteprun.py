"""The three runs of two-step signing: digest (certificate only), sign the digests with
one of kmssign's signers, attach (through the ordinary signing pipeline)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kmssign._internal.cms.algorithms import verify_raw_signature
from kmssign._internal.engine.pipeline import run_simple
from kmssign._internal.engine.report import FileResult
from kmssign._internal.engine.session import Log, RequestSlots, SigningSession, timestamper_for
from kmssign._internal.engine.signing import already_signed
from kmssign._internal.engine.twostep import (
    PresetSigner,
    Request,
    Requests,
    key_type_of,
    make_request,
)
from kmssign._internal.pki.certs import (
    SigningCertificates,
    load_certificates,
    order_chain,
    spki_der,
    subject_of,
)
from kmssign.config import Settings
from kmssign.errors import CertificateError, ConfigError, SigningError
from kmssign.signers import DIGESTS, DigestName, Signer, Timestamper


def certificates_of(settings: Settings) -> tuple[SigningCertificates, DigestName]:
    """The signing certificate (the first in ``certificate``) and its chain, with the
    digest the requests use (an EC key's curve binds it)."""
    if settings.certificate is None:
        raise ConfigError("no certificate: set certificate (PEM, DER or .p7b)")
    if settings.digest not in DIGESTS:
        raise ConfigError(f"digest must be one of {', '.join(DIGESTS)}")
    primary = load_certificates(settings.certificate)
    pool = [*primary[1:], *(c for p in settings.chain for c in load_certificates(p))]
    leaf = primary[0]
    _, bound = key_type_of(leaf)
    digest: DigestName = bound or settings.digest
    return SigningCertificates(leaf, tuple(order_chain(leaf, pool))), digest


def digest_run(
    files: Sequence[Path],
    settings: Settings,
    *,
    wheels: Sequence[Path] = (),
    on_result: Callable[[FileResult], None] | None = None,
) -> tuple[Requests, list[FileResult]]:
    """A request for every file to sign, and for every PE member of ``wheels`` (files
    signed already are skipped with skip-signed); each is a ``would-sign`` result, to be
    signed by ``attach``."""
    from kmssign._internal.engine.twostepwheels import wheel_requests

    certificates, digest = certificates_of(settings)
    found: dict[Path, Request] = {}
    lock = threading.Lock()

    def work(path: Path) -> FileResult:
        if settings.skip_signed:
            kept = already_signed(path)
            if kept is not None:
                return kept
        result = FileResult(path, "would-sign", digest=digest)
        try:
            request = make_request(path, digest, settings.description, settings.url)
        except Exception as exc:  # anything: one file never ends a batch
            return result.fail(exc)
        result.format = request.format
        with lock:
            found[path] = request
        return result

    results = run_simple(files, work, jobs=settings.jobs, on_result=on_result)
    requests = [found[p] for p in files if p in found]
    for wheel in wheels:
        try:
            members, member_results = wheel_requests(wheel, settings, digest)
        except Exception as exc:  # anything: one wheel never ends a batch
            member_results = [FileResult(wheel, "failed").fail(exc)]
            members = []
        requests.extend(members)
        results.extend(member_results)
        if on_result is not None:
            for result in member_results:
                on_result(result)
    made = Requests(digest, certificates, settings.description, settings.url, tuple(requests),
                    settings.skip_signed)
    return made, results


def sign_run(requests: Requests, signer: Signer, *, jobs: int) -> dict[bytes, bytes]:
    """Every request signed by ``signer`` (which must hold the certificate's key), each
    signature checked with the certificate; by the hash each one signs."""
    leaf = requests.certificates.leaf
    if signer.public_key_der() != spki_der(leaf):
        raise CertificateError(f"certificate {subject_of(leaf)} of the requests "
                               f"does not belong to {signer.name}")
    if signer.digest_for(requests.digest) != requests.digest:
        raise SigningError(f"{signer.name} cannot sign {requests.digest} requests")

    def sign(request: Request) -> tuple[bytes, bytes]:
        signature = signer.sign(request.signed_attributes, requests.digest)
        if not verify_raw_signature(leaf.public_key(), signature, request.signed_attributes,
                                    requests.digest):
            raise SigningError(f"{request.path}: the signature {signer.name} made does not "
                               "verify with the certificate")
        return request.hash(requests.digest), signature

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return dict(pool.map(sign, requests.requests))


def attach_session(
    requests: Requests,
    signatures: Mapping[bytes, bytes],
    settings: Settings,
    timestamper: Timestamper | None,
    log: Log,
) -> SigningSession:
    """A signing session whose signer hands out the checked signatures."""
    return SigningSession(
        signer=PresetSigner(requests, signatures),
        certificates=requests.certificates,
        digest=requests.digest,
        timestamper=timestamper_for(settings, timestamper, log),
        timestamp_policy=settings.timestamp,
        description=requests.description,
        url=requests.url,
        log=log,
        slots=RequestSlots(settings.jobs),
    )
