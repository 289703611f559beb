"""Parse and check Authenticode SignedData found in a file (pure: no files, no network).

Every part kept is a slice of the bytes found (:mod:`kmssign._internal.authenticode.tlv`); nothing
parsed is ever re-encoded. asn1crypto only reads small values out of those slices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from kmssign._internal.authenticode import asn1, tlv
from kmssign._internal.authenticode.build import HASHES, verify_raw_signature
from kmssign.errors import VerificationError, plain_reason

MAX_NESTING = 4  # nested signatures inside nested signatures, as deep as anyone goes

# asn1crypto and the DER walk raise these on malformed input, cryptography the last one
# for a key it does not know; all mean "not usable".
PARSE_ERRORS = (
    ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
    UnsupportedAlgorithm,
)


@dataclass(frozen=True)
class ParsedSignature:
    """One Authenticode signature as found in a file (with its nested ones).

    ``der`` is the ContentInfo exactly as found; the other byte fields are slices of it.
    """

    der: bytes
    digest: str  # algorithm of the file digest (SpcIndirectDataContent)
    file_digest: bytes
    signer_cert: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    certificate_ders: tuple[bytes, ...]
    signature: bytes
    signer_digest: str  # the SignerInfo's digestAlgorithm
    digest_algorithms: tuple[str, ...]  # the SignedData's digestAlgorithms
    signed_attrs: bytes | None  # the SignerInfo's [0] IMPLICIT signedAttrs element
    content: bytes  # SpcIndirectDataContent without tag and length: what messageDigest covers
    data_type: str = asn1.OID_SPC_PE_IMAGE_DATA  # the SpcIndirectDataContent data's type
    timestamp_token: bytes | None = None  # an RFC 3161 token (ContentInfo)
    nested: tuple[ParsedSignature, ...] = field(default=())
    # a pre-RFC 3161 Authenticode timestamp (PKCS#9 countersignature SignerInfo), as older
    # files have
    countersignature: bytes | None = None

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        return tuple(c for c in self.certificates if c != self.signer_cert)

    @property
    def timestamped(self) -> bool:
        return self.timestamp_token is not None or self.countersignature is not None


def parse_signature(der: bytes) -> ParsedSignature:
    """Parse DER PKCS#7 SignedData holding an Authenticode signature.

    Raises VerificationError for anything that is not a well-formed Authenticode
    SignedData (garbage bytes included).
    """
    try:
        end = tlv.read(der).end
        if der[end:].strip(b"\0"):
            raise VerificationError("data after the Authenticode signature")
        return _parse(der[:end], 0)
    except VerificationError:
        raise
    except PARSE_ERRORS as exc:
        raise VerificationError(f"malformed Authenticode signature ({plain_reason(exc)})") from exc


def _name(spec: type[cms.ObjectIdentifier], oid: bytes) -> str:
    return str(spec.load(oid).native)


def _algorithm(
    element: bytes, spec: type[algos.ObjectIdentifier] = algos.DigestAlgorithmId
) -> str:
    """The name (or dotted OID) of a well-formed AlgorithmIdentifier."""
    return str(spec.load(tlv.algorithm(element)).native)


def _parse(content_info: bytes, depth: int) -> ParsedSignature:
    content_type, inner = tlv.content_info(content_info)
    if _name(cms.ContentType, content_type) != "signed_data":
        raise VerificationError("signature is not PKCS#7 SignedData")
    signed_data = tlv.signed_data(inner)
    encap_type, content = tlv.encap_content_info(signed_data["encap_content_info"])
    if _name(cms.ContentType, encap_type) != "spc_indirect_data" or content is None:
        raise VerificationError("signature does not hold SpcIndirectDataContent")
    indirect = asn1.SpcIndirectDataContent.load(content)
    # which kind of file it is for (SpcPeImageData, SpcSipInfo): the file's format checks it
    data_type = str(indirect["data"]["type"].dotted)
    digest_info = tlv.children(tlv.children(content)[1])  # DigestInfo { algorithm, digest }
    if len(digest_info) != 2 or digest_info[1][0] != 0x04:
        raise VerificationError("malformed DigestInfo in SpcIndirectDataContent")
    digest = _algorithm(digest_info[0])
    if digest not in HASHES:
        raise VerificationError(f"unsupported digest algorithm {digest}")
    certificate_set = signed_data.get("certificates")
    certificate_ders = tuple(tlv.children(certificate_set)) if certificate_set else ()
    if any(c[0] != 0x30 for c in certificate_ders):  # attribute certificates and others
        raise VerificationError("the signature's certificates hold something else too")
    certificates = tuple(x509.load_der_x509_certificate(c) for c in certificate_ders)
    signer_infos = tlv.children(signed_data["signer_infos"])
    if len(signer_infos) != 1:
        raise VerificationError(f"expected one SignerInfo, found {len(signer_infos)}")
    signer_info = tlv.signer_info(signer_infos[0])
    # well-formed, though unused: the certificate's key decides how to verify
    _algorithm(signer_info["signature_algorithm"], algos.SignedDigestAlgorithmId)
    token = countersignature = None
    nested: list[ParsedSignature] = []
    if "unsigned_attrs" in signer_info:
        for oid, values in tlv.attributes(signer_info["unsigned_attrs"]):
            kind = _name(cms.CMSAttributeType, oid)
            if kind == "ms_rfc3161_timestamp":
                token = values[0]
            elif kind == "counter_signature":
                countersignature = values[0]
            elif kind == "spc_nested_signature":
                if depth >= MAX_NESTING:
                    raise VerificationError("nested signatures are nested too deep")
                nested.extend(_parse(v, depth + 1) for v in values)
    return ParsedSignature(
        der=content_info,
        digest=digest,
        file_digest=tlv.contents(digest_info[1]),
        signer_cert=_find_signer_cert(signer_info["sid"], certificate_ders, certificates),
        certificates=certificates,
        certificate_ders=certificate_ders,
        signature=tlv.contents(signer_info["signature"]),
        signer_digest=_algorithm(signer_info["digest_algorithm"]),
        digest_algorithms=tuple(
            _algorithm(a) for a in tlv.children(signed_data["digest_algorithms"])
        ),
        signed_attrs=signer_info.get("signed_attrs"),
        content=tlv.contents(content),
        data_type=data_type,
        timestamp_token=token,
        nested=tuple(nested),
        countersignature=countersignature,
    )


def _find_signer_cert(
    sid: bytes, ders: Sequence[bytes], certs: Sequence[x509.Certificate]
) -> x509.Certificate:
    if sid[0] == 0x30:  # IssuerAndSerialNumber
        issuer, serial = tlv.sid_issuer_and_serial(sid)
        for der, cert in zip(ders, certs, strict=True):
            cert_issuer, cert_serial = tlv.issuer_and_serial(der)
            if tlv.contents(cert_serial) == tlv.contents(serial) and (
                cert_issuer == issuer
                or asn1_x509.Name.load(cert_issuer) == asn1_x509.Name.load(issuer)
            ):
                return cert
    else:  # [0] SubjectKeyIdentifier
        key_identifier = tlv.contents(sid)
        for der, cert in zip(ders, certs, strict=True):
            try:
                found = asn1_x509.Certificate.load(der).key_identifier
            except PARSE_ERRORS:  # a malformed extension: not the signer's
                continue
            if found == key_identifier:
                return cert
    raise VerificationError("the signer's certificate is not in the signature")


def check_signature(parsed: ParsedSignature) -> None:
    """Check the signed attributes and the signature itself (not the file digest, not the
    chain); VerificationError with the reason."""
    try:
        _check_signature(parsed)
    except VerificationError:
        raise
    except PARSE_ERRORS as exc:
        raise VerificationError(f"malformed signed attributes ({plain_reason(exc)})") from exc


def _check_signature(parsed: ParsedSignature) -> None:
    digest = parsed.signer_digest
    if digest not in HASHES:
        raise VerificationError(f"unsupported digest algorithm {digest}")
    if digest not in parsed.digest_algorithms:
        raise VerificationError(
            f"the signer's digest algorithm {digest} is not among the SignedData's "
            f"digestAlgorithms ({', '.join(parsed.digest_algorithms) or 'none'})"
        )
    if parsed.signed_attrs is None:
        raise VerificationError("signature has no signed attributes")
    found: dict[str, list[bytes]] = {}
    for oid, values in tlv.attributes(parsed.signed_attrs):
        name = _name(cms.CMSAttributeType, oid)
        if name in found:
            raise VerificationError(f"signed attribute {name} appears twice")
        found[name] = values
    content_type = found.get("content_type", [])
    if len(content_type) != 1 or _name(cms.ContentType, content_type[0]) != "spc_indirect_data":
        raise VerificationError("signed contentType attribute is not SpcIndirectDataContent")
    message_digest = found.get("message_digest", [])
    if len(message_digest) != 1 or message_digest[0][0] != 0x04:
        raise VerificationError("signature has no messageDigest attribute")
    expected = hashlib.new(digest, parsed.content).digest()
    if tlv.contents(message_digest[0]) != expected:
        raise VerificationError("messageDigest does not match the signed content")
    signed_bytes = asn1.signed_part(parsed.signed_attrs)
    if not verify_raw_signature(
        parsed.signer_cert.public_key(), parsed.signature, signed_bytes, digest
    ):
        raise VerificationError("the signature does not verify with the signer's certificate")
