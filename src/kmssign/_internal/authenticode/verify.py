"""Verify the Authenticode signatures of one PE file: digest, signature, chain, timestamp."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kmssign._internal.authenticode.parse import (
    PARSE_ERRORS,
    ParsedSignature,
    check_signature,
    parse_signature,
)
from kmssign._internal.pe.certtable import read_signature_entry
from kmssign._internal.pe.digest import authenticode_digest
from kmssign._internal.pe.image import PEImage, parse_pe
from kmssign._internal.pki.certs import extension, subject_of, validate_chain
from kmssign._internal.timestamp.tokens import check_countersignature, check_token
from kmssign.errors import VerificationError, plain_reason


@dataclass(frozen=True)
class VerifiedSignature:
    signer: str
    digest: str
    timestamp: dt.datetime | None
    chain_checked: bool


@dataclass(frozen=True)
class VerifiedFile:
    signatures: tuple[VerifiedSignature, ...]

    @property
    def primary(self) -> VerifiedSignature:
        return self.signatures[0]


def read_signatures(f: BinaryIO, image: PEImage) -> list[ParsedSignature]:
    """The file's Authenticode signatures, parsed (not checked): the primary one, then the
    ones nested in it."""
    parsed = parse_signature(read_signature_entry(f, image))
    return [parsed, *parsed.nested]


def _check_intact(parsed: ParsedSignature, file_digest: bytes) -> None:
    if parsed.file_digest != file_digest:
        raise VerificationError(
            "the file's digest does not match its signature (the file was changed after signing)"
        )
    check_signature(parsed)


def intact_signatures(
    f: BinaryIO, image: PEImage, known: Mapping[str, bytes] | None = None
) -> list[ParsedSignature]:
    """The file's signatures, each checked against the file's digest and against its own
    signed attributes (not the chain, not the timestamps): what a signature needs to be
    kept or timestamped. ``known`` maps digest algorithms to the file's digest already
    computed; every other algorithm costs one pass over the file.

    Raises a KmsSignError subclass naming the signature and what is wrong with it.
    """
    signatures = read_signatures(f, image)
    check_intact(f, image, signatures, known)
    return signatures


def check_intact(
    f: BinaryIO,
    image: PEImage,
    signatures: Sequence[ParsedSignature],
    known: Mapping[str, bytes] | None = None,
) -> None:
    """:func:`intact_signatures` for the file's signatures read already."""
    digests = dict(known or {})
    for index, parsed in enumerate(signatures):
        if parsed.digest not in digests:
            digests[parsed.digest] = authenticode_digest(f, image, parsed.digest)
        try:
            _check_intact(parsed, digests[parsed.digest])
        except VerificationError as exc:
            if index:
                raise VerificationError(f"nested signature {index}: {exc}") from exc
            raise


def _requires_code_signing(cert: x509.Certificate) -> x509.ObjectIdentifier | None:
    """Windows demands codeSigning only when the leaf restricts its key usage at all."""
    if extension(cert, x509.ExtendedKeyUsage) is None:
        return None
    return ExtendedKeyUsageOID.CODE_SIGNING


def verify_signature(
    parsed: ParsedSignature,
    *,
    roots: Sequence[x509.Certificate],
    tsa_roots: Sequence[x509.Certificate],
) -> VerifiedSignature:
    """Timestamp and chain of a signature found intact (:func:`intact_signatures`)."""
    when: dt.datetime | None = None
    if parsed.timestamp_token is not None:
        info = check_token(parsed.timestamp_token, parsed.signature, roots=tsa_roots or roots)
        when = info.gen_time
    elif parsed.countersignature is not None:
        info = check_countersignature(
            parsed.countersignature,
            parsed.signature,
            parsed.certificate_ders,
            roots=tsa_roots or roots,
        )
        when = info.gen_time
    if roots:
        validate_chain(
            parsed.signer_cert,
            parsed.intermediates,
            roots,
            when or dt.datetime.now(dt.timezone.utc),
            required_eku=_requires_code_signing(parsed.signer_cert),
        )
    return VerifiedSignature(
        signer=subject_of(parsed.signer_cert),
        digest=parsed.digest,
        timestamp=when,
        chain_checked=bool(roots),
    )


def verify_file(
    path: Path,
    *,
    roots: Sequence[x509.Certificate] = (),
    tsa_roots: Sequence[x509.Certificate] = (),
    require_timestamp: bool = False,
) -> VerifiedFile:
    """Verify every signature of ``path``; raise a KmsSignError subclass with the reason."""
    try:
        with open(path, "rb") as f:
            image = parse_pe(f)
            if not image.has_certificate_table:
                raise VerificationError("not signed")
            signatures = intact_signatures(f, image)
        results = []
        for index, parsed in enumerate(signatures):
            try:
                results.append(verify_signature(parsed, roots=roots, tsa_roots=tsa_roots))
            except VerificationError as exc:
                if index:
                    raise VerificationError(f"nested signature {index}: {exc}") from exc
                raise
    except OSError as exc:
        raise VerificationError(f"cannot read file: {exc.strerror or exc}") from exc
    except PARSE_ERRORS as exc:  # asn1crypto reads some values only when asked
        raise VerificationError(f"malformed signature ({plain_reason(exc)})") from exc
    if require_timestamp and results[0].timestamp is None:
        raise VerificationError("the signature has no timestamp (--require-timestamp)")
    return VerifiedFile(tuple(results))
