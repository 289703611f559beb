"""DER length facts of Authenticode signatures, and signed files whose lengths are chosen.

asn1crypto (1.5.x) re-encodes a *loaded* value on ``dump()`` whenever the last byte of
its header is 0x80: it takes that for an indefinite length (``30 80``) although
``30 82 01 80`` is the definite length 0x180 and ``04 81 80`` a 128-byte OCTET STRING.
A SEQUENCE re-encodes its whole subtree then, which on a signature with certificates and
a timestamp token takes minutes. This module finds such headers without asn1crypto and
makes files that have them where a test wants them:

``outline(der)``            every TLV of a signature with a path name (see below)
``signatures_in(path)``     the PKCS#7 blobs of a PE file's certificate table
``forcing_headers(der)``    the nodes asn1crypto would re-encode on ``dump()``
``make_signed(...)``        sign a copy of a file so that one node's length has a chosen
                            low byte (0x7F, 0x80, 0x81, ...), by padding the program URL
                            of the new signature (``--url`` / osslsigncode ``-i``)

Path names follow the CMS grammar: ``content_info``, ``content_info/signed_data``,
``.../certificates``, ``.../certificates/certificate[1]``, ``.../signer_info``,
``.../signer_info/signed_attrs``, ``.../signer_info/signature``,
``.../signer_info/unsigned_attrs``, and for each unsigned attribute
``.../unsigned_attrs/<kind>`` (the attribute SEQUENCE), ``.../<kind>/values`` (its SET)
and the value itself: ``.../timestamp/content_info`` (an RFC 3161 token),
``.../nested_signature/content_info`` (a nested Authenticode signature, values in file
order: ``nested_signature/content_info[1]`` for the second), ``.../counter_signature/
signer_info`` (a legacy timestamp). :data:`TARGETS` names the usual ones.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# OIDs of the unsigned attributes, DER-encoded (tag, length, contents), and their names.
_ATTRIBUTE_KINDS = {
    bytes.fromhex("060a2b060104018237030301"): "timestamp",  # 1.3.6.1.4.1.311.3.3.1
    bytes.fromhex("060a2b060104018237020401"): "nested_signature",  # 1.3.6.1.4.1.311.2.4.1
    bytes.fromhex("06092a864886f70d010906"): "counter_signature",  # 1.2.840.113549.1.9.6
}

CI = "content_info"
SD = f"{CI}/signed_data"
SI = f"{SD}/signer_info"

#: The nodes a sweep usually targets, by short name.
TARGETS = {
    "content_info": CI,
    "content": f"{CI}/content",  # the [0] EXPLICIT around SignedData
    "signed_data": SD,
    "encap_content_info": f"{SD}/encap_content_info",
    "certificates": f"{SD}/certificates",
    "signer_infos": f"{SD}/signer_infos",
    "signer_info": SI,
    "signature": f"{SI}/signature",
    "signed_attrs": f"{SI}/signed_attrs",
    "unsigned_attrs": f"{SI}/unsigned_attrs",
    "timestamp_attr": f"{SI}/unsigned_attrs/timestamp",
    "timestamp_token": f"{SI}/unsigned_attrs/timestamp/content_info",
    "nested_attr": f"{SI}/unsigned_attrs/nested_signature",
    "nested_values": f"{SI}/unsigned_attrs/nested_signature/values",
    "nested_content_info": f"{SI}/unsigned_attrs/nested_signature/content_info",
}


@dataclass(frozen=True)
class Node:
    """One TLV: where it starts, its header bytes, its contents' length, its path name."""

    path: str
    offset: int
    header: bytes
    length: int

    @property
    def tag(self) -> int:
        return self.header[0]

    @property
    def end(self) -> int:
        return self.offset + len(self.header) + self.length

    @property
    def low_byte(self) -> int:
        """The last byte of the header: asn1crypto re-encodes on dump() when it is 0x80."""
        return self.header[-1]

    @property
    def forces_reencoding(self) -> bool:
        return self.low_byte == 0x80

    def __str__(self) -> str:
        return f"{self.path} @{self.offset}: {self.header.hex(' ')} (length {self.length})"


def read_header(data: bytes, offset: int) -> tuple[bytes, int]:
    """(header bytes, contents length) of the TLV at ``offset`` (definite lengths only)."""
    pos = offset + 1
    if data[offset] & 0x1F == 0x1F:  # high tag number: base-128 continuation bytes
        while data[pos] & 0x80:
            pos += 1
        pos += 1
    first = data[pos]
    pos += 1
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise ValueError(f"indefinite length at offset {offset}")
    else:
        count = first & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError(f"TLV at offset {offset} runs past the end of the data")
    return data[offset:pos], length


def _children(data: bytes, node: Node) -> Iterator[tuple[int, bytes, int]]:
    pos = node.offset + len(node.header)
    while pos < node.end:
        header, length = read_header(data, pos)
        yield pos, header, length
        pos += len(header) + length


def _node(path: str, data: bytes, offset: int) -> Node:
    header, length = read_header(data, offset)
    return Node(path, offset, header, length)


def _generic(data: bytes, node: Node) -> Iterator[Node]:
    """A subtree without names: constructed values are walked, children get ``[i]``."""
    yield node
    if node.tag & 0x20:
        for i, (offset, header, length) in enumerate(_children(data, node)):
            yield from _generic(data, Node(f"{node.path}[{i}]", offset, header, length))


def _content_info(data: bytes, node: Node) -> Iterator[Node]:
    yield node
    kids = list(_children(data, node))
    for offset, header, length in kids[:1]:
        yield Node(f"{node.path}/content_type", offset, header, length)
    for offset, header, length in kids[1:2]:  # [0] EXPLICIT content
        explicit = Node(f"{node.path}/content", offset, header, length)
        yield explicit
        for inner in list(_children(data, explicit))[:1]:
            yield from _signed_data(data, Node(f"{node.path}/signed_data", *inner))


def _signed_data(data: bytes, node: Node) -> Iterator[Node]:
    yield node
    kids = [Node("", *kid) for kid in _children(data, node)]
    for i, kid in enumerate(kids):
        if i == 0:
            yield Node(f"{node.path}/version", kid.offset, kid.header, kid.length)
        elif i == 1:
            yield from _generic(data, _renamed(kid, f"{node.path}/digest_algorithms"))
        elif i == 2:
            yield from _encap(data, _renamed(kid, f"{node.path}/encap_content_info"))
        elif kid.tag == 0xA0:
            certificates = _renamed(kid, f"{node.path}/certificates")
            yield certificates
            for j, cert in enumerate(_children(data, certificates)):
                yield from _generic(data, Node(f"{certificates.path}/certificate[{j}]", *cert))
        elif kid.tag == 0xA1:
            yield from _generic(data, _renamed(kid, f"{node.path}/crls"))
        elif kid.tag == 0x31:
            signer_infos = _renamed(kid, f"{node.path}/signer_infos")
            yield signer_infos
            for j, si in enumerate(_children(data, signer_infos)):
                name = f"{node.path}/signer_info" + (f"[{j}]" if j else "")
                yield from _signer_info(data, Node(name, *si))


def _encap(data: bytes, node: Node) -> Iterator[Node]:
    yield node
    kids = [Node("", *kid) for kid in _children(data, node)]
    for kid in kids[:1]:
        yield _renamed(kid, f"{node.path}/content_type")
    for kid in kids[1:2]:
        explicit = _renamed(kid, f"{node.path}/content")
        yield explicit
        for inner in _children(data, explicit):
            econtent = Node(f"{node.path}/econtent", *inner)
            yield econtent
            if econtent.tag == 0x04:  # RFC 3161: TSTInfo inside an OCTET STRING
                inner_offset = econtent.offset + len(econtent.header)
                yield from _generic(data, _node(f"{node.path}/tst_info", data, inner_offset))


def _signer_info(data: bytes, node: Node) -> Iterator[Node]:
    yield node
    for i, (offset, header, length) in enumerate(_children(data, node)):
        kid = Node("", offset, header, length)
        if i == 1:
            yield from _generic(data, _renamed(kid, f"{node.path}/sid"))
        elif kid.tag == 0xA0:
            yield from _generic(data, _renamed(kid, f"{node.path}/signed_attrs"))
        elif kid.tag == 0x04:
            yield _renamed(kid, f"{node.path}/signature")
        elif kid.tag == 0xA1:
            yield from _unsigned_attrs(data, _renamed(kid, f"{node.path}/unsigned_attrs"))


def _unsigned_attrs(data: bytes, node: Node) -> Iterator[Node]:
    yield node
    for offset, header, length in _children(data, node):
        attr = Node("", offset, header, length)
        oid_offset, oid_header, oid_length = next(_children(data, attr))
        oid = data[oid_offset : oid_offset + len(oid_header) + oid_length]
        kind = _ATTRIBUTE_KINDS.get(oid, f"attr_{oid.hex()}")
        attr = _renamed(attr, f"{node.path}/{kind}")
        yield attr
        for values in list(_children(data, attr))[1:2]:
            value_set = Node(f"{attr.path}/values", *values)
            yield value_set
            for j, value in enumerate(_children(data, value_set)):
                suffix = f"[{j}]" if j else ""
                if kind in ("timestamp", "nested_signature"):
                    named = Node(f"{attr.path}/content_info{suffix}", *value)
                    yield from _content_info(data, named)
                elif kind == "counter_signature":
                    named = Node(f"{attr.path}/signer_info{suffix}", *value)
                    yield from _signer_info(data, named)
                else:
                    yield from _generic(data, Node(f"{attr.path}/value{suffix}", *value))


def _renamed(node: Node, path: str) -> Node:
    return Node(path, node.offset, node.header, node.length)


def outline(der: bytes) -> list[Node]:
    """Every node of a DER PKCS#7 ContentInfo, named by path (trailing padding ignored)."""
    return list(_content_info(der, _node(CI, der, 0)))


def find(der: bytes, path: str) -> Node:
    """The node named ``path`` (a full path or a key of :data:`TARGETS`)."""
    wanted = TARGETS.get(path, path)
    for node in outline(der):
        if node.path == wanted:
            return node
    raise KeyError(f"no node {wanted} in this signature")


def forcing_headers(der: bytes) -> list[Node]:
    """The nodes whose header ends in 0x80: asn1crypto re-encodes them (and below) on dump()."""
    return [node for node in outline(der) if node.forces_reencoding]


def encode(tag: int, contents: bytes) -> bytes:
    """A DER TLV (single-byte tag, definite length)."""
    n = len(contents)
    if n < 0x80:
        return bytes([tag, n]) + contents
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + contents


_NESTED_OID = bytes.fromhex("060a2b060104018237020401")

#: The nodes ``kmssign sign --append`` writes anew (all others keep their bytes).
NEST_REWRITES = tuple(
    TARGETS[name]
    for name in ("content_info", "content", "signed_data", "signer_infos", "signer_info",
                 "unsigned_attrs", "nested_attr", "nested_values")
)


def nest(outer: bytes, inner: bytes) -> bytes:
    """``outer`` with ``inner`` added to its first SignerInfo's nested-signature attribute,
    laid out as ``kmssign sign --append`` lays it out: every nested value (old ones and
    ``inner``) in one attribute, values and attributes in DER order, everything else of
    ``outer`` byte for byte. Lets a test know the lengths of an --append before running it.
    """
    nodes = {node.path: node for node in outline(outer)}

    def tlv(node: Node) -> bytes:
        return outer[node.offset : node.end]

    def kids(node: Node) -> list[Node]:
        return [Node("", *kid) for kid in _children(outer, node)]

    signer_info = nodes[SI]
    attrs: list[bytes] = []
    values = [inner]
    for part in kids(signer_info):
        if part.tag != 0xA1:
            continue
        for attr in kids(part):
            oid, value_set = kids(attr)[:2]
            if tlv(oid) == _NESTED_OID:
                values.extend(tlv(value) for value in kids(value_set))
            else:
                attrs.append(tlv(attr))
    attrs.append(encode(0x30, _NESTED_OID + encode(0x31, b"".join(sorted(values)))))
    new_signer_info = encode(
        0x30,
        b"".join(tlv(part) for part in kids(signer_info) if part.tag != 0xA1)
        + encode(0xA1, b"".join(sorted(attrs))),
    )
    signed_data = nodes[SD]
    *fields, signer_infos = kids(signed_data)
    others = b"".join(tlv(si) for si in kids(signer_infos)[1:])
    new_signed_data = encode(
        0x30,
        b"".join(tlv(field) for field in fields) + encode(0x31, new_signer_info + others),
    )
    content_type = kids(nodes[CI])[0]
    return encode(0x30, tlv(content_type) + encode(0xA0, new_signed_data))


def nested_signatures(der: bytes) -> list[bytes]:
    """The DER of each signature nested in ``der``'s first SignerInfo, in file order."""
    nested = TARGETS["nested_content_info"]
    return [
        der[node.offset : node.end]
        for node in outline(der)
        if node.path == nested or re.fullmatch(re.escape(nested) + r"\[\d+\]", node.path)
    ]


def rewritten_by_nest(der: bytes) -> list[Node]:
    """The nodes of ``der`` (an --append result) that --append wrote anew."""
    return [node for node in outline(der) if node.path in NEST_REWRITES]


# -- the certificate table of a PE file -------------------------------------------------


def signatures_in(path: Path) -> list[bytes]:
    """The DER of every PKCS#7 WIN_CERTIFICATE in ``path``'s certificate table (padding
    cut off); empty when the file has no certificate table."""
    data = path.read_bytes()
    pe_offset = struct.unpack_from("<I", data, 0x3C)[0]
    if data[pe_offset : pe_offset + 4] != b"PE\0\0":
        raise ValueError(f"{path}: not a PE file")
    optional = pe_offset + 24
    magic = struct.unpack_from("<H", data, optional)[0]
    directories = optional + (96 if magic == 0x10B else 112)
    table_offset, table_size = struct.unpack_from("<II", data, directories + 4 * 8)
    found = []
    pos = table_offset
    while table_size and pos + 8 <= table_offset + table_size:
        length, _revision, cert_type = struct.unpack_from("<IHH", data, pos)
        if length < 8:
            break
        if cert_type == 0x0002:
            blob = data[pos + 8 : pos + length]
            header, contents = read_header(blob, 0)
            found.append(blob[: len(header) + contents])
        pos += (length + 7) & ~7
    return found


# -- making signatures with chosen lengths ----------------------------------------------

SignFn = Callable[[Path, Path, str], None]
"""Sign ``source`` into ``destination`` (a new file) with this program URL."""


def kmssign_command() -> list[str]:
    """The ``kmssign`` command of this interpreter's environment (a fresh process)."""
    return [sys.executable, "-m", "kmssign"]


def kmssign_signer(sign_args: Sequence[str], *, append: bool = False) -> SignFn:
    """A SignFn running ``kmssign sign`` in a subprocess with ``sign_args`` (key, certs,
    ``--no-timestamp`` or a TSA; see tests.support.helpers.sign_args), ``--append`` if asked."""

    def sign(source: Path, destination: Path, url: str) -> None:
        cmd = [*kmssign_command(), "sign", str(source), "-o", str(destination),
               "--url", url, *sign_args]
        if append:
            cmd.append("--append")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"kmssign sign failed: {proc.stdout}{proc.stderr}")

    return sign


def osslsigncode_signer(cert: Path, key: Path, *extra: str) -> SignFn:
    """A SignFn running ``osslsigncode sign`` (``-i URL``; ``extra`` e.g. ``-ac CHAIN``,
    ``-nest``, ``-ts TSA``). osslsigncode adds signingTime, a fixed-length UTCTime."""

    def sign(source: Path, destination: Path, url: str) -> None:
        proc = subprocess.run(
            ["osslsigncode", "sign", "-certs", str(cert), "-key", str(key), "-i", url, *extra,
             "-in", str(source), "-out", str(destination)],
            capture_output=True, text=True, check=False, timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"osslsigncode sign failed: {proc.stdout}{proc.stderr}")

    return sign


@dataclass(frozen=True)
class Made:
    """A file signed by :func:`make_signed`: the URL used and the signature's DER."""

    path: Path
    url: str
    der: bytes
    node: Node

    @property
    def forcing(self) -> list[Node]:
        return forcing_headers(self.der)


BASE_URL = "https://example.com/"


def url_of_length(extra: int) -> str:
    """:data:`BASE_URL` followed by ``extra`` characters (each one byte of the IA5String)."""
    return BASE_URL + "p" * extra


def make_signed(
    source: Path,
    destination: Path,
    *,
    target: str,
    low_byte: int,
    sign: SignFn,
    signature: int = 0,
    layout: Callable[[bytes], bytes] | None = None,
    tries: int = 10,
) -> Made:
    """Sign ``source`` into ``destination`` so that ``target``'s length ends in ``low_byte``.

    ``target`` is a path of :func:`outline` or a key of :data:`TARGETS`, in the
    certificate table's ``signature``-th PKCS#7 entry. The new signature's program URL is
    padded: each character adds one byte to the signed attributes and to every node
    that contains them, plus one where a header inside grows past 127 or 255 bytes; a
    length such a jump skips is given up for the same low byte 256 bytes further on.
    The result's length is long-form (at least 128 bytes), so its last header byte is
    the low byte of the length.

    With ``layout`` the target is looked up in ``layout(signature)`` instead: e.g.
    ``functools.partial(nest, vendor_der)`` with a ``sign`` that makes a standalone
    signature (``--no-skip-signed``) finds the URL with which ``kmssign sign --append``
    would put the target on ``low_byte``, without running the --append itself (``der``
    is then the predicted result and ``destination`` holds the standalone signature).

    Raises ``ValueError`` when the target cannot be reached in ``tries`` signatures (e.g.
    it does not contain the new signature's signed attributes) and ``RuntimeError`` when
    signing fails. Every try is a real signature: one that lands on a header ending in
    0x80 elsewhere may be slow on code with the asn1crypto stall; run this under a timeout.
    """
    scratch = destination.with_name(destination.name + ".try")
    lengths: dict[int, int] = {}  # URL padding -> the target's length

    def attempt(pad: int) -> tuple[str, bytes, Node]:
        url = url_of_length(pad)
        scratch.unlink(missing_ok=True)
        sign(source, scratch, url)
        der = signatures_in(scratch)[signature]
        if layout is not None:
            der = layout(der)
        node = find(der, target)
        lengths[pad] = node.length
        return url, der, node

    url, der, node = attempt(0)
    base = node.length
    for period in range(3):
        goal = base + (low_byte - base) % 256 + 256 * period
        if goal < 0x80:
            continue
        pad = goal - base
        while len(lengths) < tries:
            url, der, node = attempt(pad)
            if node.length == goal:
                scratch.replace(destination)
                return Made(destination, url, der, node)
            if node.length == base:
                scratch.unlink(missing_ok=True)
                raise ValueError(f"{target} does not grow with the program URL")
            following = pad + goal - node.length
            if following < 0 or following in lengths:
                break  # the goal lies in a jump between two paddings already tried
            pad = following
    scratch.unlink(missing_ok=True)
    raise ValueError(
        f"{target}: no URL length gave low byte {low_byte:#04x} (padding -> length: {lengths})"
    )
