"""Checking timestamps of a signature: RFC 3161 tokens (imprint, nonce, CMS signature,
TSA certificate) and legacy Authenticode countersignatures (PKCS#9).

A token is a CMS ``ContentInfo`` holding ``SignedData`` whose encapsulated content is a
``TSTInfo``. This module never touches the network: the timestamp client calls
:func:`check_token` on every token before handing it out, and the Authenticode verifier
calls both checks with the trusted roots.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kmssign._internal.cms import structures
from kmssign._internal.cms.algorithms import digest_bytes
from kmssign._internal.cms.signerinfo import (
    Attributes,
    SignerInfo,
    check_signature,
    check_signed_attributes,
    content_type_name,
    find_signer_certificate,
    read_signer_info,
)
from kmssign._internal.der import children, contents
from kmssign._internal.pki.certs import validate_chain
from kmssign.errors import VerificationError, plain_reason

_NO_TSA_CERTIFICATE = "timestamp token does not contain the TSA signing certificate"


@dataclass(frozen=True)
class TokenInfo:
    """What a valid token says."""

    gen_time: datetime
    tsa_subject: str  # RFC 4514 string of the TSA signing certificate
    digest: str  # hash algorithm of the message imprint


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
        der = token if isinstance(token, bytes) else structures.encoded(token)
        return _check(der, signature_value, roots, nonce)
    except structures.PARSE_ERRORS as exc:
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
    what = "timestamp countersignature"
    try:
        signer = read_signer_info(signer_info)
        attrs = check_signed_attributes(
            signer, signature_value, what, content_type=None, covers="the signature"
        )
        signing_time = _single(attrs, "signing_time", what)
        if signing_time is None:
            raise VerificationError(f"{what} has no signingTime attribute")
        when: datetime = cms.Time.load(signing_time).native
        index = find_signer_certificate(signer.sid, certificates, _NO_TSA_CERTIFICATE)
        return _check_tsa(signer, certificates, index, when, roots, digest=signer.digest)
    except structures.PARSE_ERRORS as exc:
        raise VerificationError(f"{what} is malformed: {plain_reason(exc)}") from exc


def _single(attrs: Attributes, name: str, what: str) -> bytes | None:
    values = attrs.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise VerificationError(f"{what} has more than one {name} attribute value")
    return values[0]


def _check(
    token: bytes,
    signature_value: bytes,
    roots: Sequence[x509.Certificate],
    nonce: int | None,
) -> TokenInfo:
    what = "timestamp token"
    signer_info_der, certificates, tst_bytes = _unpack(token)
    tst_info = tsp.TSTInfo.load(tst_bytes, strict=True)
    signer = read_signer_info(signer_info_der)
    if signer.signed_attrs is None:
        raise VerificationError(f"{what} has no signed attributes")
    index = find_signer_certificate(signer.sid, certificates, _NO_TSA_CERTIFICATE)
    attrs = check_signed_attributes(
        signer, tst_bytes, what, content_type=("tst_info", "id-ct-TSTInfo"), covers="its TSTInfo"
    )
    _check_signing_certificate(attrs, certificates[index], what)

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
    return _check_tsa(signer, certificates, index, gen_time, roots, digest=imprint_algo)


def _check_signing_certificate(attrs: Attributes, tsa_der: bytes, what: str) -> None:
    """ESS signingCertificate(V2) binds the signer to one certificate; checked when present."""
    for name, spec in (
        ("signing_certificate_v2", tsp.SigningCertificateV2),
        ("signing_certificate", tsp.SigningCertificate),
    ):
        value = _single(attrs, name, what)
        if value is None:
            continue
        cert_id = spec.load(value)["certs"][0]
        algo = cert_id["hash_algorithm"]["algorithm"].native if name.endswith("v2") else "sha1"
        if cert_id["cert_hash"].native != digest_bytes(algo, tsa_der):
            raise VerificationError(f"{what} signingCertificate does not name the TSA certificate")


def _check_tsa(
    signer: SignerInfo,
    certificates: Sequence[bytes],
    index: int,
    when: datetime,
    roots: Sequence[x509.Certificate],
    *,
    digest: str,
) -> TokenInfo:
    """The signature verifies with the TSA certificate, which may stamp (timeStamping), was
    valid at ``when``, and chains to ``roots`` when any are given (through the others)."""
    tsa = _tsa_certificate(certificates[index])
    check_signature(signer, tsa.public_key, "timestamp token signature does not verify")
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
        others = [c for i, c in enumerate(certificates) if i != index]
        intermediates = [x509.load_der_x509_certificate(der) for der in others]
        try:
            validate_chain(certificate, intermediates, roots, when)
        except VerificationError as exc:
            raise VerificationError(f"timestamp token TSA chain: {exc}") from exc
    return TokenInfo(gen_time=when, tsa_subject=tsa.subject, digest=digest)


def _unpack(token: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(the SignerInfo, the certificates, the encapsulated TSTInfo) of a token, each the
    DER found in it."""
    content_type, inner = structures.content_info(token)
    kind = content_type_name(content_type)
    if kind != "signed_data":
        raise VerificationError(f"timestamp token is {kind}, not signed data")
    signed_data = structures.signed_data(inner)
    encap_type, content = structures.encap_content_info(signed_data["encap_content_info"])
    kind = content_type_name(encap_type)
    if kind != "tst_info" or content is None or content[0] != 0x04:
        raise VerificationError(f"timestamp token content is {kind}, not a TSTInfo")
    signer_infos = children(signed_data["signer_infos"])
    if len(signer_infos) != 1:
        raise VerificationError(
            f"timestamp token has {len(signer_infos)} signers, expected exactly one"
        )
    certificates = structures.certificates(signed_data)
    return signer_infos[0], certificates, contents(content)  # TSTInfo exactly as signed


@dataclass(frozen=True)
class _TsaCertificate:
    """A TSA certificate as a token's checks need it."""

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
