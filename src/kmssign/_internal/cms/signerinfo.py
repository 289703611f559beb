"""One SignerInfo: its fields, its signed attributes, the certificate it names, and its
signature, checked the same way for an Authenticode signature, a timestamp token and a
legacy countersignature. ``what`` names the structure in messages ("timestamp token")."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509

from kmssign._internal.cms import structures
from kmssign._internal.cms.algorithms import (
    digest_bytes,
    digest_name,
    key_fits,
    signature_kind,
    verify_raw_signature,
)
from kmssign._internal.der import contents
from kmssign._internal.digests import HASHES
from kmssign.errors import VerificationError

Attributes = dict[str, list[bytes]]  # attribute name (or dotted OID) -> its value elements


@dataclass(frozen=True)
class SignerInfo:
    """The parts of a SignerInfo, each a slice of the bytes found."""

    sid: bytes
    digest: str  # digestAlgorithm: "sha256", ... or a dotted OID
    signature_algorithm: bytes  # the AlgorithmIdentifier element
    signed_attrs: bytes | None  # the [0] IMPLICIT element
    signature: bytes  # the signature value (OCTET STRING contents)
    unsigned_attrs: bytes | None  # the [1] IMPLICIT element


def read_signer_info(element: bytes) -> SignerInfo:
    found = structures.signer_info(element)
    return SignerInfo(
        sid=found["sid"],
        digest=digest_name(found["digest_algorithm"]),
        signature_algorithm=found["signature_algorithm"],
        signed_attrs=found.get("signed_attrs"),
        signature=contents(found["signature"]),
        unsigned_attrs=found.get("unsigned_attrs"),
    )


def attribute_name(oid: bytes) -> str:
    return str(cms.CMSAttributeType.load(oid).native)


def content_type_name(oid: bytes) -> str:
    return str(cms.ContentType.load(oid).native)


def check_signed_attributes(
    signer: SignerInfo,
    content: bytes,
    what: str,
    *,
    content_type: tuple[str, str] | None,
    covers: str,
) -> Attributes:
    """The signed attributes, by name, once each: ``content_type`` (asn1crypto's name, and
    how messages call it) when given, and a messageDigest of ``content``, which ``covers``
    names in messages."""
    if signer.digest not in HASHES:
        raise VerificationError(f"{what} uses unsupported digest {signer.digest}")
    if signer.signed_attrs is None:
        raise VerificationError(f"{what} has no signed attributes")
    found: Attributes = {}
    for oid, values in structures.attributes(signer.signed_attrs):
        name = attribute_name(oid)
        if name in found:
            raise VerificationError(f"{what} has the signed attribute {name} twice")
        found[name] = values
    if content_type is not None:
        name, label = content_type
        values = found.get("content_type", [])
        if len(values) != 1 or content_type_name(values[0]) != name:
            raise VerificationError(f"{what} contentType attribute is not {label}")
    message_digest = found.get("message_digest", [])
    if len(message_digest) != 1 or message_digest[0][0] != 0x04:
        raise VerificationError(f"{what} has no messageDigest attribute")
    if contents(message_digest[0]) != digest_bytes(signer.digest, content):
        raise VerificationError(f"{what} messageDigest does not match {covers}")
    return found


def check_signature(signer: SignerInfo, public_key: Any, failure: str) -> None:
    """The signature over the signed attributes verifies with ``public_key``;
    VerificationError(``failure``) when it does not."""
    if signer.signed_attrs is None:
        raise VerificationError("no signed attributes to check the signature of")
    try:
        kind = signature_kind(signer.signature_algorithm)
    except ValueError as exc:
        raise VerificationError(f"unsupported signature algorithm ({exc})") from exc
    if not key_fits(kind, public_key):
        raise VerificationError(f"signature algorithm {kind} does not fit the signer's key")
    signed = structures.signed_part(signer.signed_attrs)
    if not verify_raw_signature(public_key, signer.signature, signed, signer.digest):
        raise VerificationError(failure)


# A TSA answers every request of a run with the same certificates: what identifies a
# certificate is kept, keyed by its DER, instead of being parsed again for every token.


@dataclass(frozen=True)
class _Identity:
    """What identifies a certificate to a SignerInfo's ``sid``."""

    serial: bytes  # contents of the serial INTEGER
    issuer_der: bytes
    issuer: asn1_x509.Name
    key_identifier: bytes | None


@functools.lru_cache(maxsize=64)
def _identity(der: bytes) -> _Identity:
    issuer_der, serial = structures.issuer_and_serial(der)
    issuer = asn1_x509.Name.load(issuer_der)
    issuer.hashable  # noqa: B018 - parse it whole now: the object is shared between threads
    try:
        key_identifier = asn1_x509.Certificate.load(der).key_identifier
    except structures.PARSE_ERRORS:  # a malformed extension: it names no signer by key id
        key_identifier = None
    return _Identity(contents(serial), issuer_der, issuer, key_identifier)


def find_signer_certificate(sid: bytes, certificates: Sequence[bytes], missing: str) -> int:
    """The index of the certificate among ``certificates`` (DER) that a SignerInfo's
    ``sid`` names; VerificationError(``missing``) when none does."""
    if sid[0] == 0x30:  # IssuerAndSerialNumber
        issuer_der, serial = structures.sid_issuer_and_serial(sid)
        serial_value = contents(serial)
        issuer: asn1_x509.Name | None = None
        for index, der in enumerate(certificates):
            found = _identity(der)
            if found.serial != serial_value:
                continue
            # identical encodings first (fast); asn1crypto's Name equality otherwise
            if found.issuer_der == issuer_der:
                return index
            issuer = issuer or asn1_x509.Name.load(issuer_der)
            if found.issuer == issuer:
                return index
    else:  # [0] SubjectKeyIdentifier
        key_identifier = contents(sid)
        for index, der in enumerate(certificates):
            found = _identity(der)
            if found.key_identifier is not None and found.key_identifier == key_identifier:
                return index
    raise VerificationError(missing)
