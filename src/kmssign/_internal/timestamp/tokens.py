"""Checking RFC 3161 timestamp tokens: imprint, nonce, CMS signature, TSA certificate.

A token is a CMS ``ContentInfo`` holding ``SignedData`` whose encapsulated content is a
``TSTInfo``. This module never touches the network;
:mod:`kmssign._internal.timestamp.client` fetches
tokens and calls :func:`check_token` before handing them out, and ``kmssign verify``
calls it with the trusted roots.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from kmssign._internal.authenticode import asn1, tlv
from kmssign._internal.pki.certs import validate_chain
from kmssign.errors import VerificationError, plain_reason

# Hash algorithms a token may use (sha1 only appears in old tokens read by `verify`).
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# asn1crypto raises a zoo of exceptions on malformed input; all mean "not parsable".
_PARSE_ERRORS = (
    ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
    UnsupportedAlgorithm,
)


@dataclass(frozen=True)
class TokenInfo:
    """What a valid token says."""

    gen_time: datetime
    tsa_subject: str  # RFC 4514 string of the TSA signing certificate
    digest: str  # hash algorithm of the message imprint


def digest_bytes(algorithm: str, data: bytes) -> bytes:
    """Hash ``data`` with one of the supported algorithms (``sha256``, ...)."""
    if algorithm not in _HASHES:
        raise VerificationError(f"unsupported hash algorithm {algorithm}")
    return hashlib.new(algorithm, data).digest()


def check_token(
    token: cms.ContentInfo | bytes,
    signature_value: bytes,
    *,
    roots: Sequence[x509.Certificate] = (),
    nonce: int | None = None,
) -> TokenInfo:
    """Validate ``token`` as a timestamp over ``signature_value`` and return what it says.

    ``token`` is the token's DER, or a ContentInfo asn1crypto loaded (read from the bytes
    it was loaded from, never re-encoded). Raises :class:`VerificationError` with a
    one-line reason when anything is wrong.
    """
    try:
        der = token if isinstance(token, bytes) else tlv.encoded(token)
        return _check(der, signature_value, roots, nonce)
    except _PARSE_ERRORS as exc:
        raise VerificationError(f"timestamp token is malformed: {plain_reason(exc)}") from exc


def check_countersignature(
    signer_info: bytes,
    signature_value: bytes,
    certificates: Sequence[bytes],
    *,
    roots: Sequence[x509.Certificate] = (),
) -> TokenInfo:
    """Validate a legacy Authenticode timestamp: a PKCS#9 countersignature (the DER of its
    SignerInfo) over ``signature_value``, signed by a TSA whose certificate is among
    ``certificates`` (the DER of the signature's certificate set); return its signingTime.
    """
    try:
        return _check_countersignature(signer_info, signature_value, certificates, roots)
    except _PARSE_ERRORS as exc:
        raise VerificationError(
            f"timestamp countersignature is malformed: {plain_reason(exc)}"
        ) from exc


def _check_countersignature(
    signer_info_der: bytes,
    signature_value: bytes,
    certificates: Sequence[bytes],
    roots: Sequence[x509.Certificate],
) -> TokenInfo:
    raw = tlv.signer_info(signer_info_der)
    if "signed_attrs" not in raw:
        raise VerificationError("timestamp countersignature has no signed attributes")
    signer_info = cms.SignerInfo.load(signer_info_der)
    attrs = _signed_attributes(signer_info)
    digest_algo = signer_info["digest_algorithm"]["algorithm"].native
    message_digest = attrs.get("message_digest")
    signing_time = attrs.get("signing_time")
    if not isinstance(message_digest, cms.OctetString):
        raise VerificationError("timestamp countersignature has no messageDigest attribute")
    if message_digest.native != digest_bytes(digest_algo, signature_value):
        raise VerificationError("timestamp countersignature does not match the signature")
    if not isinstance(signing_time, cms.Time):
        raise VerificationError("timestamp countersignature has no signingTime attribute")
    when: datetime = signing_time.native
    tsa_der = _find_signer_cert(raw["sid"], certificates)
    tsa = _tsa_certificate(tsa_der)
    _check_signature(signer_info, asn1.signed_part(raw["signed_attrs"]), tsa.public_key)
    _check_tsa(tsa, when, [der for der in certificates if der != tsa_der], roots)
    return TokenInfo(gen_time=when, tsa_subject=tsa.subject, digest=digest_algo)


def _check(
    token: bytes,
    signature_value: bytes,
    roots: Sequence[x509.Certificate],
    nonce: int | None,
) -> TokenInfo:
    signer_info_der, raw_certs, tst_bytes = _unpack(token)
    tst_info = tsp.TSTInfo.load(tst_bytes, strict=True)
    raw = tlv.signer_info(signer_info_der)
    if "signed_attrs" not in raw:
        raise VerificationError("timestamp token has no signed attributes")
    signer_info = cms.SignerInfo.load(signer_info_der)
    tsa_der = _find_signer_cert(raw["sid"], raw_certs)
    tsa = _tsa_certificate(tsa_der)
    _check_signed_attributes(signer_info, tst_bytes, tsa_der)
    _check_signature(signer_info, asn1.signed_part(raw["signed_attrs"]), tsa.public_key)

    imprint_algo = tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native
    imprint = tst_info["message_imprint"]["hashed_message"].native
    if imprint != digest_bytes(imprint_algo, signature_value):
        raise VerificationError("timestamp token message imprint does not match the signature")
    token_nonce = tst_info["nonce"].native
    if nonce is not None and token_nonce is None:
        raise VerificationError("timestamp token carries no nonce although one was sent")
    if nonce is not None and token_nonce != nonce:
        raise VerificationError(
            f"timestamp token nonce {token_nonce} does not match the request nonce {nonce}"
        )
    gen_time = tst_info["gen_time"].native
    _check_tsa(tsa, gen_time, [der for der in raw_certs if der != tsa_der], roots)
    return TokenInfo(gen_time=gen_time, tsa_subject=tsa.subject, digest=imprint_algo)


def _check_tsa(
    tsa: _TsaCertificate,
    when: datetime,
    others: Sequence[bytes],
    roots: Sequence[x509.Certificate],
) -> None:
    """The TSA certificate may stamp (timeStamping), was valid at ``when``, and chains to
    ``roots`` when any are given (through ``others``, DER certificates)."""
    certificate = tsa.certificate
    if not tsa.timestamping:
        raise VerificationError(
            f"TSA certificate {tsa.subject} lacks the timeStamping extended key usage"
        )
    if not certificate.not_valid_before_utc <= when <= certificate.not_valid_after_utc:
        raise VerificationError(
            f"TSA certificate {tsa.subject} "
            f"is not valid at the token time {when:%Y-%m-%d %H:%M:%S} UTC"
        )
    if roots:
        intermediates = [x509.load_der_x509_certificate(der) for der in others]
        try:
            validate_chain(certificate, intermediates, roots, when)
        except VerificationError as exc:
            raise VerificationError(f"timestamp token TSA chain: {exc}") from exc


def _unpack(token: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(the SignerInfo, the certificates, the encapsulated TSTInfo) of a token, each the
    DER found in it."""
    content_type, inner = tlv.content_info(token)
    kind = cms.ContentType.load(content_type).native
    if kind != "signed_data":
        raise VerificationError(f"timestamp token is {kind}, not signed data")
    signed_data = tlv.signed_data(inner)
    encap_type, content = tlv.encap_content_info(signed_data["encap_content_info"])
    kind = cms.ContentType.load(encap_type).native
    if kind != "tst_info" or content is None or content[0] != 0x04:
        raise VerificationError(f"timestamp token content is {kind}, not a TSTInfo")
    signer_infos = tlv.children(signed_data["signer_infos"])
    if len(signer_infos) != 1:
        raise VerificationError(
            f"timestamp token has {len(signer_infos)} signers, expected exactly one"
        )
    certificates = signed_data.get("certificates")
    raw_certs = [c for c in tlv.children(certificates) if c[0] == 0x30] if certificates else []
    return signer_infos[0], raw_certs, tlv.contents(content)  # TSTInfo exactly as signed


# A TSA answers every request of a run with the same certificates: what is read from a
# certificate is kept, keyed by its DER, instead of being parsed again for every token.


@dataclass(frozen=True)
class _Identity:
    """What identifies a certificate as the signer of a SignerInfo."""

    serial: bytes  # contents of the serial INTEGER
    issuer_der: bytes
    issuer: asn1_x509.Name
    key_identifier: bytes | None


@functools.lru_cache(maxsize=64)
def _identity(der: bytes) -> _Identity:
    issuer_der, serial = tlv.issuer_and_serial(der)
    issuer = asn1_x509.Name.load(issuer_der)
    issuer.hashable  # noqa: B018 - parse it whole now: the object is shared between threads
    key_identifier = asn1_x509.Certificate.load(der).key_identifier
    return _Identity(tlv.contents(serial), issuer_der, issuer, key_identifier)


@dataclass(frozen=True)
class _TsaCertificate:
    certificate: x509.Certificate
    public_key: object
    subject: str
    timestamping: bool  # carries the timeStamping extended key usage


@functools.lru_cache(maxsize=16)
def _tsa_certificate(der: bytes) -> _TsaCertificate:
    certificate = x509.load_der_x509_certificate(der)
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    return _TsaCertificate(
        certificate,
        certificate.public_key(),
        certificate.subject.rfc4514_string(),
        eku is not None and ExtendedKeyUsageOID.TIME_STAMPING in eku,
    )


def _find_signer_cert(sid: bytes, raw_certs: Sequence[bytes]) -> bytes:
    """The DER of the certificate among ``raw_certs`` that a SignerInfo's sid names."""
    if sid[0] == 0x30:  # IssuerAndSerialNumber
        issuer_der, serial = tlv.sid_issuer_and_serial(sid)
        serial_value = tlv.contents(serial)
        issuer: asn1_x509.Name | None = None
        for der in raw_certs:
            found = _identity(der)
            if found.serial != serial_value:
                continue
            # identical encodings first (fast); asn1crypto's Name equality otherwise
            if found.issuer_der == issuer_der:
                return der
            issuer = issuer or asn1_x509.Name.load(issuer_der)
            if found.issuer == issuer:
                return der
    else:  # [0] SubjectKeyIdentifier
        key_identifier = tlv.contents(sid)
        for der in raw_certs:
            found = _identity(der)
            if found.key_identifier is not None and found.key_identifier == key_identifier:
                return der
    raise VerificationError("timestamp token does not contain the TSA signing certificate")


def _signed_attributes(signer_info: cms.SignerInfo) -> dict[str, object]:
    """The single value of each signed attribute, by name (one pass over them)."""
    found: dict[str, object] = {}
    for attr in signer_info["signed_attrs"]:
        name = attr["type"].native
        values = attr["values"]
        if name in found or len(values) != 1:
            raise VerificationError(f"timestamp token has more than one {name} attribute value")
        found[name] = values[0]
    return found


def _check_signed_attributes(signer_info: cms.SignerInfo, tst_bytes: bytes, tsa_der: bytes) -> None:
    if not signer_info["signed_attrs"]:
        raise VerificationError("timestamp token has no signed attributes")
    digest_algo = signer_info["digest_algorithm"]["algorithm"].native
    attrs = _signed_attributes(signer_info)
    content_type = attrs.get("content_type")
    message_digest = attrs.get("message_digest")
    ess_v2 = attrs.get("signing_certificate_v2")
    ess_v1 = attrs.get("signing_certificate")
    if not isinstance(content_type, cms.ContentType) or content_type.native != "tst_info":
        raise VerificationError("timestamp token contentType attribute is not id-ct-TSTInfo")
    if not isinstance(message_digest, cms.OctetString):
        raise VerificationError("timestamp token has no messageDigest attribute")
    if message_digest.native != digest_bytes(digest_algo, tst_bytes):
        raise VerificationError("timestamp token messageDigest does not match its TSTInfo")
    # ESS signingCertificate(V2) binds the signer to one certificate; check it when present.
    for ess in (ess_v2, ess_v1):
        if not isinstance(ess, (tsp.SigningCertificateV2, tsp.SigningCertificate)):
            continue
        cert_id = ess["certs"][0]
        algo = (
            cert_id["hash_algorithm"]["algorithm"].native
            if isinstance(ess, tsp.SigningCertificateV2)
            else "sha1"
        )
        cert_hash = cert_id["cert_hash"].native
        if cert_hash != digest_bytes(algo, tsa_der):
            raise VerificationError(
                "timestamp token signingCertificate does not name the TSA certificate"
            )


def _check_signature(signer_info: cms.SignerInfo, signed: bytes, public_key: object) -> None:
    signature = signer_info["signature"].native
    digest_algo = signer_info["digest_algorithm"]["algorithm"].native
    if digest_algo not in _HASHES:
        raise VerificationError(f"timestamp token uses unsupported digest {digest_algo}")
    hash_algorithm = _HASHES[digest_algo]()
    try:
        kind = signer_info["signature_algorithm"].signature_algo
    except ValueError as exc:
        raise VerificationError(f"timestamp token signature algorithm unsupported: {exc}") from exc
    try:
        if kind == "rsassa_pkcs1v15" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, signed, padding.PKCS1v15(), hash_algorithm)
        elif kind == "ecdsa" and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, signed, ec.ECDSA(hash_algorithm))
        else:
            raise VerificationError(
                f"timestamp token signature algorithm {kind} does not fit the TSA key"
            )
    except InvalidSignature as exc:
        raise VerificationError("timestamp token signature does not verify") from exc
