"""CMS (RFC 5652) structures read field by field from the bytes found: ContentInfo,
SignedData, encapContentInfo, SignerInfo, attributes, algorithm identifiers and
certificate identities. Each field is a slice of the input (:mod:`kmssign._internal.der`);
asn1crypto only *reads* small leaves (OIDs, times) through ``.native``, and nothing
parsed here is ever re-encoded.
"""

from __future__ import annotations

from collections.abc import Sequence

from asn1crypto import core
from cryptography.exceptions import UnsupportedAlgorithm

from kmssign._internal.der import DerError, children, only_child

# What reading a malformed structure raises: the DER walk (DerError is a ValueError),
# asn1crypto's zoo, and cryptography's for a key or algorithm it does not know. All mean
# "not usable"; every CMS caller catches exactly these.
PARSE_ERRORS = (
    ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
    UnsupportedAlgorithm,
)

Layout = Sequence[tuple[str, tuple[int, ...], bool]]  # (name, tags it may have, optional)


def fields(element: bytes, layout: Layout, what: str) -> dict[str, bytes]:
    """The children of a SEQUENCE by field name, checked against ``layout`` in order."""
    if element[:1] != b"\x30":
        raise DerError(f"{what} is not a SEQUENCE")
    items = children(element)
    found: dict[str, bytes] = {}
    index = 0
    for name, tags, optional in layout:
        if index < len(items) and items[index][0] in tags:
            found[name] = items[index]
            index += 1
        elif not optional:
            raise DerError(f"{what} has no {name.replace('_', ' ')}")
    if index != len(items):
        raise DerError(f"{what} has {len(items) - index} unexpected fields")
    return found


_CONTENT_INFO: Layout = (("content_type", (0x06,), False), ("content", (0xA0,), False))
_SIGNED_DATA: Layout = (
    ("version", (0x02,), False),
    ("digest_algorithms", (0x31,), False),
    ("encap_content_info", (0x30,), False),
    ("certificates", (0xA0,), True),
    ("crls", (0xA1,), True),
    ("signer_infos", (0x31,), False),
)
_ENCAP_CONTENT_INFO: Layout = (("content_type", (0x06,), False), ("content", (0xA0,), True))
_SIGNER_INFO: Layout = (
    ("version", (0x02,), False),
    ("sid", (0x30, 0x80), False),  # IssuerAndSerialNumber, or [0] SubjectKeyIdentifier
    ("digest_algorithm", (0x30,), False),
    ("signed_attrs", (0xA0,), True),
    ("signature_algorithm", (0x30,), False),
    ("signature", (0x04,), False),
    ("unsigned_attrs", (0xA1,), True),
)


def content_info(element: bytes) -> tuple[bytes, bytes]:
    """(contentType OID element, the content inside its [0] EXPLICIT) of a ContentInfo."""
    found = fields(element, _CONTENT_INFO, "ContentInfo")
    return found["content_type"], only_child(found["content"], "ContentInfo content")


def signed_data(element: bytes) -> dict[str, bytes]:
    return fields(element, _SIGNED_DATA, "SignedData")


def encap_content_info(element: bytes) -> tuple[bytes, bytes | None]:
    """(eContentType OID element, the eContent inside its [0] EXPLICIT, if any)."""
    found = fields(element, _ENCAP_CONTENT_INFO, "encapContentInfo")
    inner = found.get("content")
    return found["content_type"], None if inner is None else only_child(inner, "eContent")


def signer_info(element: bytes) -> dict[str, bytes]:
    return fields(element, _SIGNER_INFO, "SignerInfo")


def first_signer_info(content_info_der: bytes) -> dict[str, bytes]:
    """The fields of the first SignerInfo of a ContentInfo { SignedData }."""
    found = signed_data(content_info(content_info_der)[1])
    return signer_info(children(found["signer_infos"])[0])


def certificates(signed_data_fields: dict[str, bytes]) -> list[bytes]:
    """The DER certificates of a SignedData's certificate set (other choices left out)."""
    found = signed_data_fields.get("certificates")
    return [c for c in children(found) if c[0] == 0x30] if found else []


def algorithm(element: bytes) -> bytes:
    """The OID element of a digest or signature AlgorithmIdentifier, whose parameters
    are absent or NULL (Authenticode's digests, PKCS#1 v1.5 and ECDSA have no others)."""
    parts = children(element) if element[:1] == b"\x30" else []
    if not 1 <= len(parts) <= 2 or parts[0][0] != 0x06 or parts[1:] not in ([], [b"\x05\x00"]):
        raise DerError("malformed AlgorithmIdentifier")
    return parts[0]


def attributes(element: bytes) -> list[tuple[bytes, list[bytes]]]:
    """(attrType OID element, attrValues elements) of each Attribute of a SET OF them
    (signedAttrs and unsignedAttrs too, whatever their implicit tag)."""
    found = []
    for attribute in children(element):
        parts = children(attribute)
        if attribute[0] != 0x30 or len(parts) != 2 or parts[0][0] != 0x06 or parts[1][0] != 0x31:
            raise DerError("malformed attribute")
        found.append((parts[0], children(parts[1])))
    return found


def signed_part(signed_attrs: bytes) -> bytes:
    """The bytes a SignerInfo's signature covers: its signedAttrs, stored as ``[0]
    IMPLICIT`` (the element as found), re-tagged as the SET OF they are signed as (RFC
    5652, 5.4)."""
    return b"\x31" + signed_attrs[1:]


def sid_issuer_and_serial(sid: bytes) -> tuple[bytes, bytes]:
    """The issuer Name and serial INTEGER of an IssuerAndSerialNumber."""
    parts = children(sid)
    if len(parts) != 2 or parts[0][0] != 0x30 or parts[1][0] != 0x02:
        raise DerError("malformed IssuerAndSerialNumber")
    return parts[0], parts[1]


def issuer_and_serial(certificate: bytes) -> tuple[bytes, bytes]:
    """The issuer Name and serial INTEGER of a DER certificate, as encoded in it."""
    tbs = children(certificate)[0]
    parts = children(tbs)
    if parts and parts[0][0] == 0xA0:  # [0] EXPLICIT version
        parts = parts[1:]
    if len(parts) < 3 or parts[0][0] != 0x02 or parts[2][0] != 0x30:
        raise DerError("certificate has no issuer and serial number")
    return parts[2], parts[0]


def encoded(value: core.Asn1Value) -> bytes:
    """The bytes a SEQUENCE asn1crypto loaded was read from, without re-encoding it.

    A loaded value keeps its header, contents and trailer as read, until something is
    assigned to it (``contents`` then rebuilds, and drops the header). A value built in
    Python has no header yet: its DER is made the ordinary way.
    """
    body = value.contents  # first: rebuilding contents clears the header
    header = value._header
    if header is None or body is None:
        return bytes(value.dump())
    return bytes(header + body + value._trailer)
