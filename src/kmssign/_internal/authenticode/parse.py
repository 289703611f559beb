"""Parse and check Authenticode SignedData found in a file (pure: no files, no network).

Every part kept is a slice of the bytes found (:mod:`kmssign._internal.cms.structures`);
nothing parsed is ever re-encoded. The CMS parts (SignerInfo, signed attributes, the
signer's certificate, the signature) are checked by :mod:`kmssign._internal.cms`; this
module adds what is Authenticode's own: SpcIndirectDataContent, the file digest, the
timestamps and nested signatures among the unsigned attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asn1crypto import algos
from cryptography import x509

from kmssign._internal.authenticode import asn1
from kmssign._internal.cms import structures
from kmssign._internal.cms.algorithms import digest_name
from kmssign._internal.cms.signerinfo import (
    SignerInfo,
    attribute_name,
    check_signed_attributes,
    content_type_name,
    find_signer_certificate,
    read_signer_info,
)
from kmssign._internal.cms.signerinfo import check_signature as check_signer_signature
from kmssign._internal.cms.structures import PARSE_ERRORS
from kmssign._internal.der import children, contents, read
from kmssign._internal.digests import HASHES
from kmssign.errors import MalformedSignatureError, VerificationError, plain_reason

MAX_NESTING = 4  # nested signatures inside nested signatures, as deep as anyone goes

__all__ = ["PARSE_ERRORS", "ParsedSignature", "check_signature", "parse_signature"]


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
    signer_info: SignerInfo
    digest_algorithms: tuple[str, ...]  # the SignedData's digestAlgorithms
    content: bytes  # SpcIndirectDataContent without tag and length: what messageDigest covers
    data_type: str = asn1.OID_SPC_PE_IMAGE_DATA  # the SpcIndirectDataContent data's type
    timestamp_token: bytes | None = None  # an RFC 3161 token (ContentInfo)
    nested: tuple[ParsedSignature, ...] = field(default=())
    # a pre-RFC 3161 Authenticode timestamp (PKCS#9 countersignature SignerInfo), as older
    # files have
    countersignature: bytes | None = None

    @property
    def signature(self) -> bytes:
        return self.signer_info.signature

    @property
    def signer_digest(self) -> str:  # the SignerInfo's digestAlgorithm
        return self.signer_info.digest

    @property
    def signed_attrs(self) -> bytes | None:  # the SignerInfo's [0] IMPLICIT signedAttrs
        return self.signer_info.signed_attrs

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
        end = read(der).end
        if der[end:].strip(b"\0"):
            raise MalformedSignatureError("data after the Authenticode signature")
        return _parse(der[:end], 0)
    except VerificationError:
        raise
    except PARSE_ERRORS as exc:
        raise MalformedSignatureError(
            f"malformed Authenticode signature ({plain_reason(exc)})"
        ) from exc


def _parse(content_info: bytes, depth: int) -> ParsedSignature:
    content_type, inner = structures.content_info(content_info)
    if content_type_name(content_type) != "signed_data":
        raise VerificationError("signature is not PKCS#7 SignedData")
    signed_data = structures.signed_data(inner)
    encap_type, content = structures.encap_content_info(signed_data["encap_content_info"])
    if content_type_name(encap_type) != "spc_indirect_data" or content is None:
        raise VerificationError("signature does not hold SpcIndirectDataContent")
    indirect = asn1.SpcIndirectDataContent.load(content)
    # which kind of file it is for (SpcPeImageData, SpcSipInfo): the file's format checks it
    data_type = str(indirect["data"]["type"].dotted)
    digest_info = children(children(content)[1])  # DigestInfo { algorithm, digest }
    if len(digest_info) != 2 or digest_info[1][0] != 0x04:
        raise VerificationError("malformed DigestInfo in SpcIndirectDataContent")
    digest = digest_name(digest_info[0])
    if digest not in HASHES:
        raise VerificationError(f"unsupported digest algorithm {digest}")
    certificate_set = signed_data.get("certificates")
    certificate_ders = tuple(children(certificate_set)) if certificate_set else ()
    if any(c[0] != 0x30 for c in certificate_ders):  # attribute certificates and others
        raise VerificationError("the signature's certificates hold something else too")
    certificates = tuple(x509.load_der_x509_certificate(c) for c in certificate_ders)
    signer_infos = children(signed_data["signer_infos"])
    if len(signer_infos) != 1:
        raise VerificationError(f"expected one SignerInfo, found {len(signer_infos)}")
    signer = read_signer_info(signer_infos[0])
    # well-formed, though checked only with the signature
    algos.SignedDigestAlgorithm.load(signer.signature_algorithm).signature_algo  # noqa: B018
    token = countersignature = None
    nested: list[ParsedSignature] = []
    if signer.unsigned_attrs is not None:
        for oid, values in structures.attributes(signer.unsigned_attrs):
            kind = attribute_name(oid)
            if kind == "ms_rfc3161_timestamp":
                token = values[0]
            elif kind == "counter_signature":
                countersignature = values[0]
            elif kind == "spc_nested_signature":
                if depth >= MAX_NESTING:
                    raise VerificationError("nested signatures are nested too deep")
                nested.extend(_parse(v, depth + 1) for v in values)
    index = find_signer_certificate(
        signer.sid, certificate_ders, "the signer's certificate is not in the signature"
    )
    return ParsedSignature(
        der=content_info,
        digest=digest,
        file_digest=contents(digest_info[1]),
        signer_cert=certificates[index],
        certificates=certificates,
        certificate_ders=certificate_ders,
        signer_info=signer,
        digest_algorithms=tuple(
            digest_name(a) for a in children(signed_data["digest_algorithms"])
        ),
        content=contents(content),
        data_type=data_type,
        timestamp_token=token,
        nested=tuple(nested),
        countersignature=countersignature,
    )


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
    check_signed_attributes(
        parsed.signer_info,
        parsed.content,
        "signature",
        content_type=("spc_indirect_data", "SpcIndirectDataContent"),
        covers="the signed content",
    )
    check_signer_signature(
        parsed.signer_info,
        parsed.signer_cert.public_key(),
        "the signature does not verify with the signer's certificate",
    )
