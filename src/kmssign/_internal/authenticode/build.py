"""Authenticode SignedData: build it for a file digest, add timestamps and nested signatures.

Pure: no files, no network. The private key is behind a :class:`Signer`; timestamp
tokens arrive as ready ``ContentInfo`` values.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Sequence
from typing import Any

from asn1crypto import algos, cms, core
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kmssign._internal.authenticode import asn1
from kmssign._internal.cms import structures
from kmssign._internal.cms.algorithms import verify_raw_signature
from kmssign._internal.der import children, contents, der, der_integer
from kmssign._internal.pki.certs import spki_der
from kmssign.errors import SigningError
from kmssign.signers import DigestName, Signer


def _digest_algorithm(name: str) -> algos.DigestAlgorithm:
    return algos.DigestAlgorithm({"algorithm": name, "parameters": core.Null()})


# Everything that does not change between files is encoded once (asn1crypto is slow to
# build trees); per file only the digests and the signature are spliced in.


@functools.lru_cache(maxsize=8)
def _algorithm_der(digest: str) -> bytes:
    return bytes(_digest_algorithm(digest).dump())


@functools.lru_cache(maxsize=1)
def _pe_image_data_der() -> bytes:
    image_data = asn1.SpcPeImageData(
        {
            "flags": set(),
            "file": asn1.SpcLink(
                name="file",
                value=asn1.SpcString(name="unicode", value=asn1.OBSOLETE_FILE_LINK),
            ),
        }
    )
    value = asn1.SpcAttributeTypeAndOptionalValue(
        {"type": asn1.OID_SPC_PE_IMAGE_DATA, "value": image_data}
    )
    return bytes(value.dump())


def pe_image_data_der() -> bytes:
    """The SpcIndirectDataContent ``data`` of a PE image: SpcPeImageData, obsolete link."""
    return _pe_image_data_der()


@functools.lru_cache(maxsize=4)
def sip_info_der(sip_guid: bytes) -> bytes:
    """The SpcIndirectDataContent ``data`` of a file a SIP hashes (an MSI package):
    SpcSipInfo { version 1, the SIP's GUID as stored (16 bytes), five zero integers }."""
    zero = der_integer(0)
    sip_info = der(0x30, der_integer(1) + der(0x04, sip_guid) + zero * 5)
    return der(0x30, _oid_der(asn1.OID_SPC_SIP_INFO) + sip_info)


def _oid_der(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


def indirect_data_der(digest: str, file_digest: bytes, data: bytes | None = None) -> bytes:
    """DER SpcIndirectDataContent for a file digest; ``data`` is the format's
    SpcAttributeTypeAndOptionalValue (DER), a PE image's when None."""
    digest_info = der(0x30, _algorithm_der(digest) + der(0x04, file_digest))
    return der(0x30, (data if data is not None else _pe_image_data_der()) + digest_info)


@functools.lru_cache(maxsize=16)
def _attribute_type_der(attr_type: str) -> bytes:
    return bytes(cms.CMSAttributeType(attr_type).dump())


@functools.lru_cache(maxsize=4)
def _content_type_der(content_type: str) -> bytes:
    return bytes(cms.ContentType(content_type).dump())


def _attribute_der(attr_type: str, value_der: bytes) -> bytes:
    return der(0x30, _attribute_type_der(attr_type) + der(0x31, value_der))


def _opus_info_der(description: str | None, url: str | None) -> bytes:
    value: dict[str, Any] = {}
    if description:
        value["program_name"] = asn1.SpcString(name="unicode", value=description)
    if url:
        value["more_info"] = asn1.SpcLink(name="url", value=url)
    return bytes(asn1.SpcSpOpusInfo(value).dump()) if value else b"\x30\x00"


@functools.lru_cache(maxsize=32)
def _constant_attributes(description: str | None, url: str | None) -> tuple[bytes, ...]:
    statement = asn1.SpcStatementType([asn1.OID_SPC_INDIVIDUAL_SP_KEY_PURPOSE]).dump()
    return (
        _attribute_der("content_type", _content_type_der("spc_indirect_data")),
        _attribute_der("spc_sp_opus_info", _opus_info_der(description, url)),
        _attribute_der("spc_statement_type", bytes(statement)),
    )


def signed_attributes_der(
    content_der: bytes,
    digest: str,
    *,
    description: str | None = None,
    url: str | None = None,
    signing_time: dt.datetime | None = None,
) -> bytes:
    """The DER SET OF signed attributes (what the signer signs).

    messageDigest is over the SpcIndirectDataContent's contents without its own tag and
    length octets, as Windows computes it.
    """
    message_digest = hashlib.new(digest, contents(content_der)).digest()
    attrs = [
        *_constant_attributes(description, url),
        _attribute_der("message_digest", der(0x04, message_digest)),
    ]
    if signing_time is not None:
        attrs.append(
            _attribute_der("signing_time", cms.Time(name="utc_time", value=signing_time).dump())
        )
    return der(0x31, b"".join(sorted(attrs)))


@functools.lru_cache(maxsize=8)
def _signature_algorithm_der(key_type: str, digest: str) -> bytes:
    if key_type == "rsa":
        algorithm = algos.SignedDigestAlgorithm(
            {"algorithm": "rsassa_pkcs1v15", "parameters": core.Null()}
        )
    else:
        algorithm = algos.SignedDigestAlgorithm({"algorithm": f"{digest}_ecdsa"})
    return bytes(algorithm.dump())


@functools.lru_cache(maxsize=16)
def _identity_der(certs: tuple[x509.Certificate, ...]) -> tuple[bytes, bytes]:
    """(IssuerAndSerialNumber of the leaf, [0] IMPLICIT certificates) for a chain."""
    ders = [c.public_bytes(serialization.Encoding.DER) for c in certs]
    issuer, serial = structures.issuer_and_serial(ders[0])  # as the certificate encodes them
    return der(0x30, issuer + serial), der(0xA0, b"".join(ders))


def build_signed_data(
    *,
    file_digest: bytes,
    digest: DigestName,
    signer: Signer,
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    description: str | None = None,
    url: str | None = None,
    signing_time: dt.datetime | None = None,
    content_data: bytes | None = None,
) -> bytes:
    """Sign a file digest: DER ContentInfo { SignedData } with the leaf and chain,
    self-checked before return.

    Raises SigningError when the signature the signer produced does not verify with the
    leaf certificate's public key, so nothing is written and no timestamp is requested
    for it. ``content_data`` is the file format's SpcIndirectDataContent ``data`` (DER;
    a PE image's when None).
    """
    content = indirect_data_der(digest, file_digest, content_data)
    to_sign = signed_attributes_der(
        content, digest, description=description, url=url, signing_time=signing_time
    )
    signature = signer.sign(to_sign, digest)
    if not verify_raw_signature(leaf.public_key(), signature, to_sign, digest):
        raise SigningError(_self_check_failure(signer, leaf))
    sid, certificates = _identity_der((leaf, *chain))
    signer_info = der(
        0x30,
        b"\x02\x01\x01"  # version 1
        + sid
        + _algorithm_der(digest)
        + b"\xa0" + to_sign[1:]  # the signed SET, re-tagged [0] IMPLICIT
        + _signature_algorithm_der(signer.key_type, digest)
        + der(0x04, signature),
    )
    encap = der(0x30, _content_type_der("spc_indirect_data") + der(0xA0, content))
    signed_data = der(
        0x30,
        b"\x02\x01\x01"  # version 1
        + der(0x31, _algorithm_der(digest))
        + encap
        + certificates
        + der(0x31, signer_info),
    )
    return der(0x30, _content_type_der("signed_data") + der(0xA0, signed_data))


def _self_check_failure(signer: Signer, leaf: x509.Certificate) -> str:
    subject = leaf.subject.rfc4514_string()
    if spki_der(leaf) == signer.public_key_der():
        return (
            f"{signer.name} returned a signature that does not verify (with its own public "
            f"key, which certificate {subject} does match): the signer is faulty"
        )
    return (
        f"the signature made with {signer.name} does not verify with the certificate "
        f"{subject}: the certificate does not belong to the key"
    )


def signature_value(content_info: bytes) -> bytes:
    """The first SignerInfo's signature (what an RFC 3161 timestamp is taken over)."""
    return contents(structures.first_signer_info(content_info)["signature"])


def _with_unsigned_attribute(
    content_info: bytes, attr_type: str, new_values: Sequence[bytes], *, replace: bool
) -> bytes:
    """``content_info`` (DER) whose first SignerInfo carries ``new_values`` (DER) in
    ``attr_type``: in place of the attribute's values (``replace``) or beside them.

    Spliced from the bytes found: every other part keeps its exact encoding, and nothing
    parsed is re-encoded.
    """
    content_type, inner = structures.content_info(content_info)
    signed_data = structures.signed_data(inner)
    signer_infos = children(signed_data["signer_infos"])
    signer_info = structures.signer_info(signer_infos[0])
    oid = _attribute_type_der(attr_type)
    attrs: list[bytes] = []
    kept: list[bytes] = []  # values of attr_type that stay (all of its attributes merged)
    if "unsigned_attrs" in signer_info:
        for attr in children(signer_info.pop("unsigned_attrs")):
            found_oid, values = children(attr)
            if found_oid != oid:
                attrs.append(attr)
            elif not replace:
                kept.extend(children(values))
    if kept or new_values:
        attrs.append(der(0x30, oid + der(0x31, b"".join(sorted([*kept, *new_values])))))
    unsigned = der(0xA1, b"".join(sorted(attrs))) if attrs else b""
    signer_info_der = der(0x30, b"".join(signer_info.values()) + unsigned)
    signed_data.pop("signer_infos")
    signed_data_der = der(
        0x30,
        b"".join(signed_data.values()) + der(0x31, signer_info_der + b"".join(signer_infos[1:])),
    )
    return der(0x30, content_type + der(0xA0, signed_data_der))


def add_timestamp(content_info: bytes, token: bytes) -> bytes:
    """Embed an RFC 3161 token as unsigned attribute 1.3.6.1.4.1.311.3.3.1 (replacing any)."""
    return _with_unsigned_attribute(content_info, "ms_rfc3161_timestamp", [token], replace=True)


def add_nested(outer: bytes, inner: bytes) -> bytes:
    """Nest ``inner`` in ``outer`` as unsigned attribute 1.3.6.1.4.1.311.2.4.1."""
    return _with_unsigned_attribute(outer, "spc_nested_signature", [inner], replace=False)


def replace_nested(outer: bytes, nested: Sequence[bytes]) -> bytes:
    """``outer`` with exactly ``nested`` as its nested signatures (e.g. after they were
    timestamped); ``outer``'s own signed parts and other attributes keep their bytes."""
    return _with_unsigned_attribute(outer, "spc_nested_signature", nested, replace=True)
