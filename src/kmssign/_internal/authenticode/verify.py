"""Verify the Authenticode signatures of one signed file (any format): digest, signature,
chain, timestamp."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kmssign._internal.authenticode.parse import (
    PARSE_ERRORS,
    ParsedSignature,
    check_signature,
    parse_signature,
)
from kmssign._internal.authenticode.signedfile import SignedFile
from kmssign._internal.cms.timestamps import check_countersignature, check_token
from kmssign._internal.pki.certs import extension, subject_of, validate_chain
from kmssign.errors import (
    ChainUntrustedError,
    DigestMismatchError,
    MalformedSignatureError,
    TimestampInvalidError,
    TimestampMissingError,
    VerificationError,
    plain_reason,
)


@dataclass(frozen=True)
class VerifiedSignature:
    """One signature of a file, checked: who signed, with which digest, and when."""

    signer: str
    digest: str
    timestamp: dt.datetime | None
    chain_checked: bool


@dataclass(frozen=True)
class VerifiedFile:
    """A file's signatures, checked: the primary one first, then the nested ones."""

    signatures: tuple[VerifiedSignature, ...]

    @property
    def primary(self) -> VerifiedSignature:
        return self.signatures[0]


def read_signatures(signed: SignedFile) -> list[ParsedSignature]:
    """The file's Authenticode signatures, parsed (not checked): the primary one, then the
    ones nested in it."""
    parsed = parse_signature(signed.signature())
    return [parsed, *parsed.nested]


def _check_intact(parsed: ParsedSignature, signed: SignedFile, file_digest: bytes) -> None:
    if parsed.data_type != signed.data_type:
        raise VerificationError(
            f"the signature is not one for {signed.kind} (its content is {parsed.data_type})"
        )
    if parsed.file_digest != file_digest:
        raise DigestMismatchError(
            "the file's digest does not match its signature (the file was changed after signing)"
        )
    check_signature(parsed)


def intact_signatures(
    signed: SignedFile, known: Mapping[str, bytes] | None = None
) -> list[ParsedSignature]:
    """The file's signatures, each checked against the file's digest and against its own
    signed attributes (not the chain, not the timestamps): what a signature needs to be
    kept or timestamped. ``known`` maps digest algorithms to the file's digest already
    computed; every other algorithm costs one pass over the file.

    Raises a KmsSignError subclass naming the signature and what is wrong with it.
    """
    signatures = read_signatures(signed)
    check_intact(signed, signatures, known)
    return signatures


def check_intact(
    signed: SignedFile,
    signatures: Sequence[ParsedSignature],
    known: Mapping[str, bytes] | None = None,
) -> None:
    """:func:`intact_signatures` for the file's signatures read already."""
    digests = dict(known or {})
    for index, parsed in enumerate(signatures):
        if parsed.digest not in digests and parsed.data_type == signed.data_type:
            digests[parsed.digest] = signed.digest(parsed.digest)
        try:
            _check_intact(parsed, signed, digests.get(parsed.digest, b""))
        except VerificationError as exc:
            if index:
                raise _nested(index, exc) from exc
            raise


def _nested(index: int, exc: VerificationError) -> VerificationError:
    """``exc`` said of nested signature ``index``, of the same class (the same outcome)."""
    return type(exc)(f"nested signature {index}: {exc}")


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
    try:
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
    except VerificationError as exc:
        raise TimestampInvalidError(str(exc)) from exc
    if roots:
        try:
            validate_chain(
                parsed.signer_cert,
                parsed.intermediates,
                roots,
                when or dt.datetime.now(dt.timezone.utc),
                required_eku=_requires_code_signing(parsed.signer_cert),
            )
        except VerificationError as exc:
            raise ChainUntrustedError(str(exc)) from exc
    return VerifiedSignature(
        signer=subject_of(parsed.signer_cert),
        digest=parsed.digest,
        timestamp=when,
        chain_checked=bool(roots),
    )


def verify_signed(
    signed: SignedFile,
    *,
    roots: Sequence[x509.Certificate] = (),
    tsa_roots: Sequence[x509.Certificate] = (),
    require_timestamp: bool = False,
) -> VerifiedFile:
    """Verify every signature of a signed file; raise a KmsSignError subclass with the
    reason."""
    try:
        signatures = intact_signatures(signed)
        results = []
        for index, parsed in enumerate(signatures):
            try:
                results.append(verify_signature(parsed, roots=roots, tsa_roots=tsa_roots))
            except VerificationError as exc:
                if index:
                    raise _nested(index, exc) from exc
                raise
    except OSError as exc:
        raise VerificationError(f"cannot read file: {exc.strerror or exc}") from exc
    except PARSE_ERRORS as exc:  # asn1crypto reads some values only when asked
        raise MalformedSignatureError(f"malformed signature ({plain_reason(exc)})") from exc
    if require_timestamp and results[0].timestamp is None:
        raise TimestampMissingError("the signature has no timestamp (require-timestamp)")
    return VerifiedFile(tuple(results))
