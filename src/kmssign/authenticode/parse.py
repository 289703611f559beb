"""Parse and check Authenticode SignedData found in a file (pure: no files, no network)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms
from cryptography import x509

from kmssign.authenticode import asn1
from kmssign.authenticode.build import HASHES, to_asn1, verify_raw_signature
from kmssign.errors import VerificationError, one_line


@dataclass(frozen=True)
class ParsedSignature:
    """One Authenticode signature as found in a file (with its nested ones)."""

    content_info: cms.ContentInfo
    digest: str
    file_digest: bytes
    signer_cert: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    signature: bytes
    timestamp_token: cms.ContentInfo | None
    nested: tuple[ParsedSignature, ...] = field(default=())
    # a pre-RFC 3161 Authenticode timestamp (PKCS#9 countersignature), as older files have
    countersignature: cms.SignerInfo | None = None

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
        content_info = cms.ContentInfo.load(der)
        trailing = der[len(content_info.dump()) :]
        if trailing.strip(b"\0"):
            raise VerificationError("data after the Authenticode signature")
        return _parse(content_info)
    except VerificationError:
        raise
    except Exception as exc:  # asn1crypto raises ValueError, TypeError, KeyError, ...
        raise VerificationError(f"malformed Authenticode signature ({one_line(exc)})") from exc


def _parse(content_info: cms.ContentInfo) -> ParsedSignature:
    if content_info["content_type"].native != "signed_data":
        raise VerificationError("signature is not PKCS#7 SignedData")
    signed_data = content_info["content"]
    encap = signed_data["encap_content_info"]
    if encap["content_type"].native != "spc_indirect_data":
        raise VerificationError("signature does not hold SpcIndirectDataContent")
    content = encap["content"]
    if not isinstance(content, asn1.SpcIndirectDataContent):
        content = asn1.SpcIndirectDataContent.load(content.dump())
    message_digest = content["message_digest"]
    digest = message_digest["digest_algorithm"]["algorithm"].native
    if digest not in HASHES:
        raise VerificationError(f"unsupported digest algorithm {digest}")
    certs = tuple(
        x509.load_der_x509_certificate(choice.chosen.dump())
        for choice in signed_data["certificates"]
        if choice.name == "certificate"
    )
    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) != 1:
        raise VerificationError(f"expected one SignerInfo, found {len(signer_infos)}")
    signer_info = signer_infos[0]
    signer_cert = _find_signer_cert(signer_info, certs)
    token = None
    countersignature = None
    nested: list[ParsedSignature] = []
    if not asn1.absent(signer_info["unsigned_attrs"]):
        for attr in signer_info["unsigned_attrs"]:
            kind = attr["type"].native
            if kind == "ms_rfc3161_timestamp":
                token = attr["values"][0]
            elif kind == "counter_signature":
                countersignature = attr["values"][0]
            elif kind == "spc_nested_signature":
                nested.extend(_parse(cms.ContentInfo.load(v.dump())) for v in attr["values"])
    return ParsedSignature(
        content_info=content_info,
        digest=digest,
        file_digest=bytes(message_digest["digest"].native),
        signer_cert=signer_cert,
        certificates=certs,
        signature=bytes(signer_info["signature"].native),
        timestamp_token=token,
        nested=tuple(nested),
        countersignature=countersignature,
    )


def _find_signer_cert(
    signer_info: cms.SignerInfo, certs: Sequence[x509.Certificate]
) -> x509.Certificate:
    sid = signer_info["sid"]
    if sid.name == "issuer_and_serial_number":
        serial = sid.chosen["serial_number"].native
        issuer = sid.chosen["issuer"].dump()
        for cert in certs:
            if cert.serial_number == serial and to_asn1(cert).issuer.dump() == issuer:
                return cert
    else:
        ski = sid.chosen.native
        for cert in certs:
            try:
                ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ext.value.digest == ski:
                return cert
    raise VerificationError("the signer's certificate is not in the signature")


def check_signature(parsed: ParsedSignature) -> None:
    """Check the signed attributes and the signature itself (not the file digest, not the chain)."""
    signer_info = parsed.content_info["content"]["signer_infos"][0]
    digest = signer_info["digest_algorithm"]["algorithm"].native
    if digest not in HASHES:
        raise VerificationError(f"unsupported digest algorithm {digest}")
    attrs = signer_info["signed_attrs"]
    if asn1.absent(attrs):
        raise VerificationError("signature has no signed attributes")
    found: dict[str, Any] = {a["type"].native: a["values"] for a in attrs}
    if "content_type" not in found or found["content_type"][0].native != "spc_indirect_data":
        raise VerificationError("signed contentType attribute is not SpcIndirectDataContent")
    if "message_digest" not in found:
        raise VerificationError("signature has no messageDigest attribute")
    content = parsed.content_info["content"]["encap_content_info"]["content"]
    expected = hashlib.new(digest, content.contents).digest()
    if bytes(found["message_digest"][0].native) != expected:
        raise VerificationError("messageDigest does not match the signed content")
    signed_bytes = asn1.signed_part(signer_info)
    if not verify_raw_signature(
        parsed.signer_cert.public_key(), parsed.signature, signed_bytes, digest
    ):
        raise VerificationError("the signature does not verify with the signer's certificate")
