"""A Windows Installer package (MSI, merge module, patch) as a signable file.

The Authenticode digest of a package (as the MSI SIP computes it, and osslsigncode,
jsign and signify check it): walk the storages from the root; in each, take the
children ordered by their raw UTF-16LE names (bytewise, a name that is a prefix of
another first); hash each stream's bytes and walk each storage; after a storage's
children, hash its 16-byte class id as stored. At the root the two signature streams
are left out. When ``\\x05MsiDigitalSignatureEx`` is present, a digest of the
metadata (names, sizes, class ids, state bits and times, in the same order) comes
first: that stream holds it.

The signature is the DER ContentInfo itself, as the root-level stream
``\\x05DigitalSignature``. kmssign never writes ``MsiDigitalSignatureEx``: a new
signature replacing the old removes one found; ``--append`` and ``timestamp`` keep it
(and the metadata it covers), so the signatures under it stay valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from kmssign._internal.cfb.directory import Entry
from kmssign._internal.cfb.reader import CompoundFile
from kmssign._internal.cfb.writer import rewrite
from kmssign.errors import VerificationError

SIGNATURE = "\x05DigitalSignature"
SIGNATURE_EX = "\x05MsiDigitalSignatureEx"

# Root class ids (the GUIDs' bytes as a directory entry stores them)
MSI_CLSID = bytes.fromhex("84100c0000000000c000000000000046")  # {000C1084-...-000000000046}
MSP_CLSID = bytes.fromhex("86100c0000000000c000000000000046")  # {000C1086-...}: a patch
MST_CLSID = bytes.fromhex("82100c0000000000c000000000000046")  # {000C1082-...}: a transform
SIGNED_CLSIDS = frozenset({MSI_CLSID, MSP_CLSID})
# the MSI SIP's GUID {000C10F1-0000-0000-C000-000000000046}, in SpcSipInfo as stored
MSI_SIP_GUID = bytes.fromhex("f1100c0000000000c000000000000046")
SPC_SIP_INFO = "1.3.6.1.4.1.311.2.1.30"

_THREADED = 256 << 10  # pieces at least this large are hashed beside the next read
MAX_SIGNATURE = 64 << 20  # a larger signature stream is refused (memory bound)
_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")


UNREADABLE = b"?"  # root_clsid of a compound file whose root entry cannot be found


def root_clsid(f: BinaryIO) -> bytes | None:
    """The root entry's class id of a compound file, read cheaply from the header and the
    first directory sector (no validation: :class:`MsiPackage` does that); None for a
    file that is not a compound file, :data:`UNREADABLE` for one too broken to tell.
    ``f`` is read from its start."""
    f.seek(0)
    header = f.read(512)
    if len(header) < 8 or header[:8] != _MAGIC:
        return None
    shift = int.from_bytes(header[0x1E:0x20], "little")
    first_dir = int.from_bytes(header[0x30:0x34], "little")
    if len(header) < 512 or shift not in (9, 12) or first_dir >= 0xFFFFFFFA:
        return UNREADABLE
    f.seek((first_dir + 1) << shift)
    root = f.read(128)
    if len(root) < 128 or root[0x42] != 5:  # entry type 5: the root storage
        return UNREADABLE
    return root[0x50:0x60]


def is_package(f: BinaryIO) -> bool:
    """Whether ``f`` is a compound file whose root carries the class id of a Windows
    Installer package or patch (the sniff of discovery); a compound file too broken to
    tell counts, so that opening it says what is wrong."""
    clsid = root_clsid(f)
    return clsid in SIGNED_CLSIDS or clsid == UNREADABLE


def refusal(f: BinaryIO) -> str | None:
    """Why a compound file that is not a package kmssign signs is left alone; None for
    a file that is not a compound file at all."""
    clsid = root_clsid(f)
    if clsid is None:
        return None
    if clsid == MST_CLSID:
        return "a Windows Installer transform (.mst): kmssign signs packages, not transforms"
    return (
        "a compound file, but not a Windows Installer package (its root class id is "
        f"{_guid(clsid)}); kmssign signs .msi, .msm and .msp files"
    )


def _guid(raw: bytes) -> str:
    d1, d2, d3 = (int.from_bytes(raw[a:b], "little") for a, b in ((0, 4), (4, 6), (6, 8)))
    return f"{{{d1:08X}-{d2:04X}-{d3:04X}-{raw[8:10].hex().upper()}-{raw[10:].hex().upper()}}}"


def _sorted_children(cf: CompoundFile, storage: Entry, left_out: frozenset[int]) -> list[Entry]:
    children = [c for c in cf.children(storage) if c.sid not in left_out]
    return sorted(children, key=lambda e: e.raw_name)


def _walk(cf: CompoundFile, left_out: frozenset[int]) -> Iterator[tuple[str, Entry]]:
    """("enter" | "stream" | "leave", entry) in the digest's order, without recursion
    (a tree of nested storages may be deep); the root's children ``left_out`` (by sid:
    the signature streams) are not visited."""
    yield "enter", cf.root
    stack = [(cf.root, iter(_sorted_children(cf, cf.root, left_out)))]
    while stack:
        storage, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            yield "leave", storage
        elif child.kind == "stream":
            yield "stream", child
        else:
            yield "enter", child
            stack.append((child, iter(_sorted_children(cf, child, frozenset()))))


def _metadata(entry: Entry) -> bytes:
    """What the MsiDigitalSignatureEx pre-hash takes of one entry."""
    parts = [] if entry.kind == "root" else [entry.raw_name]
    if entry.kind == "stream":
        parts.append((entry.size & 0xFFFFFFFF).to_bytes(4, "little"))
    else:
        parts.append(entry.clsid)
    parts.append(entry.state_bits.to_bytes(4, "little"))
    if entry.kind != "root":
        parts.append(entry.created.to_bytes(8, "little") + entry.modified.to_bytes(8, "little"))
    return b"".join(parts)


@dataclass(frozen=True)
class _CopyState:
    keep_ex: bool


class MsiPackage:
    """An open Windows Installer package: validated as a compound file when opened."""

    format = "msi"
    kind = "an MSI package"
    data_type = SPC_SIP_INFO

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        # (the reader's messages start with this name; the caller adds the file's)
        self.cf = CompoundFile.open(f, "compound file")
        self._signature = self.cf.find(self.cf.root, SIGNATURE)
        self._ex = self.cf.find(self.cf.root, SIGNATURE_EX)
        # the signature streams as found (names compare as [MS-CFB] compares them)
        self._left_out = frozenset(e.sid for e in (self._signature, self._ex) if e is not None)

    @property
    def signed(self) -> bool:
        return self._signature is not None

    def _read(self, entry: Entry, what: str) -> bytes:
        if entry.kind != "stream":
            raise VerificationError(f"{what} is a storage, not a stream")
        if entry.size > MAX_SIGNATURE:
            raise VerificationError(f"{what} is too large ({entry.size} bytes)")
        return b"".join(self.cf.read_stream(entry))

    def signature(self) -> bytes:
        if self._signature is None:
            raise VerificationError("not signed")
        return self._read(self._signature, "the DigitalSignature stream")

    def prehash(self, algorithm: str) -> bytes:
        """The MsiDigitalSignatureEx value for ``algorithm``: a digest of the metadata."""
        h = hashlib.new(algorithm)
        for step, entry in _walk(self.cf, self._left_out):
            if step != "leave":
                h.update(_metadata(entry))
        return h.digest()

    def _checked_ex(self, algorithm: str) -> bytes:
        """The pre-hash that goes before the content, checked against the stream."""
        assert self._ex is not None
        stored = self._read(self._ex, "the MsiDigitalSignatureEx stream")
        computed = self.prehash(algorithm)
        if len(stored) == len(computed) and stored != computed:
            raise VerificationError(
                "the package's metadata (names, sizes, times) changed after signing "
                "(MsiDigitalSignatureEx does not match)"
            )
        return computed

    def _hashed(self) -> Iterator[bytes]:
        """What the digest covers after the pre-hash, in order, in bounded pieces."""
        for step, entry in _walk(self.cf, self._left_out):
            if step == "stream":
                yield from self.cf.read_stream(entry)
            elif step == "leave":
                yield entry.clsid

    def content_digest(self, algorithm: str, *, with_ex: bool) -> bytes:
        """The digest over the streams (and, ``with_ex`` and present, the pre-hash).

        Large pieces are hashed on a worker thread while the next one is read (hashlib
        lets go of the GIL for them); the order of the updates is kept."""
        h = hashlib.new(algorithm)
        if with_ex and self._ex is not None:
            h.update(self._checked_ex(algorithm))
        with ThreadPoolExecutor(1, thread_name_prefix="kmssign-msi-hash") as worker:
            pending: Future[None] | None = None
            for piece in self._hashed():
                if pending is not None:
                    pending.result()
                    pending = None
                if len(piece) >= _THREADED:
                    pending = worker.submit(h.update, piece)
                else:
                    h.update(piece)
            if pending is not None:
                pending.result()
        return h.digest()

    def digest(self, algorithm: str) -> bytes:
        return self.content_digest(algorithm, with_ex=True)

    def begin_copy(
        self, algorithm: str, out: BinaryIO, *, nesting: bool = False
    ) -> tuple[bytes, _CopyState]:
        """The digest the new signature signs. Nothing is written before the signature is
        known (:meth:`finish_copy` writes the whole package)."""
        return self.content_digest(algorithm, with_ex=nesting), _CopyState(keep_ex=nesting)

    def finish_copy(self, out: BinaryIO, state: object, signature: bytes) -> None:
        """Write the package to ``out`` with ``signature`` as its DigitalSignature stream;
        without ``nesting`` an MsiDigitalSignatureEx stream is left out."""
        assert isinstance(state, _CopyState)
        remove = () if state.keep_ex else (SIGNATURE_EX,)
        rewrite(self.f, self.cf, out, set_streams={SIGNATURE: signature}, remove=remove)

    def known_digest(
        self, algorithm: str, copy_digest: bytes, *, nesting: bool = False
    ) -> dict[str, bytes]:
        """The copy's digest as the file's digest: when it covers what the existing
        signatures cover (with the pre-hash, if there is one)."""
        return {algorithm: copy_digest} if nesting or self._ex is None else {}
