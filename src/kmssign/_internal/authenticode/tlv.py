"""Raw DER: read a header, list a constructed value's children, slice what was found.

asn1crypto re-encodes a loaded value on ``dump()`` whenever the last byte of its header
is 0x80, which it takes for an indefinite length even when it is the low byte of a
long-form length (``30 82 0b 80``). Re-encoding a signature that holds a timestamp token
takes minutes, and would rewrite bytes that are signed. So kmssign never dumps what it
parsed: lengths come from the headers read here, a signature's parts are slices of the
bytes found in the file, and new structures are spliced together from such slices.
asn1crypto only *reads* values (small leaves, through ``.native``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from asn1crypto import core

MAX_DEPTH = 32  # nesting of indefinite-length values (BER) followed when finding their end


class DerError(ValueError):
    """Bytes that are not the DER (or definite/indefinite BER) structure expected."""


class Tlv(NamedTuple):
    """Where one element lies in a byte string."""

    tag: int  # the identifier octet
    start: int  # offset of the identifier octet
    body: int  # offset of the contents
    body_end: int  # end of the contents
    end: int  # end of the element (after the end-of-contents octets of an indefinite length)


def read(data: bytes, pos: int = 0, limit: int | None = None, *, _depth: int = 0) -> Tlv:
    """The element at ``pos``, which must end by ``limit`` (default: the end of ``data``)."""
    limit = len(data) if limit is None else limit
    if pos + 2 > limit:
        raise DerError("truncated DER element")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise DerError(f"unexpected multi-byte tag at offset {pos}")
    body = pos + 2
    if first < 0x80:
        end = body + first
    elif first == 0x80:  # BER indefinite length: children up to the 00 00 end marker
        if not tag & 0x20 or _depth >= MAX_DEPTH:
            raise DerError(f"unsupported indefinite length at offset {pos}")
        cursor = body
        while data[cursor : cursor + 2] != b"\0\0":
            cursor = read(data, cursor, limit, _depth=_depth + 1).end
        if cursor + 2 > limit:
            raise DerError("truncated DER element")
        return Tlv(tag, pos, body, cursor, cursor + 2)
    else:
        count = first & 0x7F
        if count > 4 or body + count > limit:
            raise DerError(f"bad DER length at offset {pos}")
        end = body + count + int.from_bytes(data[body : body + count], "big")
        body += count
    if end > limit:
        raise DerError(f"DER element at offset {pos} runs past its container")
    return Tlv(tag, pos, body, end, end)


def contents(element: bytes) -> bytes:
    """The contents octets of ``element`` (one whole element), without tag and length."""
    found = _whole(element)
    return element[found.body : found.body_end]


def children(element: bytes) -> list[bytes]:
    """The whole child elements of the constructed ``element``, each as found."""
    found = _whole(element)
    if not found.tag & 0x20:
        raise DerError(f"expected a constructed value, found tag 0x{found.tag:02x}")
    items = []
    pos = found.body
    while pos < found.body_end:
        child = read(element, pos, found.body_end)
        items.append(element[child.start : child.end])
        pos = child.end
    return items


def _whole(element: bytes) -> Tlv:
    found = read(element)
    if found.end != len(element):
        raise DerError(f"{len(element) - found.end} bytes after a DER element")
    return found


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


# -- CMS (RFC 5652) structures, field by field ------------------------------------------

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


def only_child(element: bytes, what: str) -> bytes:
    """The single element inside ``element`` (an EXPLICIT tag, a one-value SET)."""
    items = children(element)
    if len(items) != 1:
        raise DerError(f"{what} holds {len(items)} values, expected one")
    return items[0]


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
