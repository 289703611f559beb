"""Raw DER: read a header, list a constructed value's children, slice what was found, and
encode a value (tag, length, contents). No ASN.1 library, no knowledge of any structure.

asn1crypto re-encodes a loaded value on ``dump()`` whenever the last byte of its header
is 0x80, which it takes for an indefinite length even when it is the low byte of a
long-form length (``30 82 0b 80``). Re-encoding a signature that holds a timestamp token
takes minutes, and would rewrite bytes that are signed. So kmssign never dumps what it
parsed: lengths come from the headers read here, a signature's parts are slices of the
bytes found in the file, and new structures are spliced together from such slices.

Everything that reads DER (the PE certificate table, CMS, timestamps) uses this module.
"""

from __future__ import annotations

from typing import NamedTuple

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


def whole(element: bytes) -> Tlv:
    """The header of ``element``, which must be exactly one element."""
    found = read(element)
    if found.end != len(element):
        raise DerError(f"{len(element) - found.end} bytes after a DER element")
    return found


def contents(element: bytes) -> bytes:
    """The contents octets of ``element`` (one whole element), without tag and length."""
    found = whole(element)
    return element[found.body : found.body_end]


def children(element: bytes) -> list[bytes]:
    """The whole child elements of the constructed ``element``, each as found."""
    found = whole(element)
    if not found.tag & 0x20:
        raise DerError(f"expected a constructed value, found tag 0x{found.tag:02x}")
    items = []
    pos = found.body
    while pos < found.body_end:
        child = read(element, pos, found.body_end)
        items.append(element[child.start : child.end])
        pos = child.end
    return items


def only_child(element: bytes, what: str) -> bytes:
    """The single element inside ``element`` (an EXPLICIT tag, a one-value SET)."""
    items = children(element)
    if len(items) != 1:
        raise DerError(f"{what} holds {len(items)} values, expected one")
    return items[0]


def der(tag: int, body: bytes) -> bytes:
    """One DER element (definite length) with the contents ``body``."""
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + body


def der_integer(value: int) -> bytes:
    """A DER INTEGER (two's complement, minimal length, negative values too)."""
    magnitude = value if value >= 0 else ~value
    return der(0x02, value.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True))
