"""Verify the Authenticode signatures of one PE file: digest, signature, chain, timestamp."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from kmssign.authenticode.parse import ParsedSignature, check_signature, parse_signature
from kmssign.errors import KmsSignError, VerificationError
from kmssign.pe.certtable import WIN_CERT_TYPE_PKCS_SIGNED_DATA, read_certificates
from kmssign.pe.digest import authenticode_digest
from kmssign.pe.image import PEImage, parse_pe
from kmssign.pki.certs import subject_of, validate_chain
from kmssign.timestamp.tokens import check_countersignature, check_token


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
    """Every Authenticode signature in the file: each PKCS#7 entry, nested ones after it."""
    entries = [
        c
        for c in read_certificates(f, image)
        if c.cert_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA
    ]
    if not entries:
        raise VerificationError("the certificate table holds no PKCS#7 signature")
    found: list[ParsedSignature] = []
    for entry in entries:
        parsed = parse_signature(entry.data)
        found.append(parsed)
        found.extend(parsed.nested)
    return found


def _requires_code_signing(cert: x509.Certificate) -> x509.ObjectIdentifier | None:
    """Windows demands codeSigning only when the leaf restricts its key usage at all."""
    try:
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return None
    return ExtendedKeyUsageOID.CODE_SIGNING


def verify_signature(
    parsed: ParsedSignature,
    file_digest: bytes,
    *,
    roots: Sequence[x509.Certificate],
    tsa_roots: Sequence[x509.Certificate],
) -> VerifiedSignature:
    if parsed.file_digest != file_digest:
        raise VerificationError(
            "the file's digest does not match its signature (the file was changed after signing)"
        )
    check_signature(parsed)
    when: dt.datetime | None = None
    if parsed.timestamp_token is not None:
        info = check_token(parsed.timestamp_token, parsed.signature, roots=tsa_roots or roots)
        when = info.gen_time
    elif parsed.countersignature is not None:
        info = check_countersignature(
            parsed.countersignature,
            parsed.signature,
            [c.public_bytes(Encoding.DER) for c in parsed.certificates],
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
            signatures = read_signatures(f, image)
            digests: dict[str, bytes] = {}
            results = []
            for parsed in signatures:
                if parsed.digest not in digests:
                    digests[parsed.digest] = authenticode_digest(f, image, parsed.digest)
                results.append(
                    verify_signature(
                        parsed, digests[parsed.digest], roots=roots, tsa_roots=tsa_roots
                    )
                )
    except OSError as exc:
        raise VerificationError(f"cannot read file: {exc.strerror or exc}") from exc
    except KmsSignError:
        raise
    if require_timestamp and results[0].timestamp is None:
        raise VerificationError("the signature has no timestamp (--require-timestamp)")
    return VerifiedFile(tuple(results))
