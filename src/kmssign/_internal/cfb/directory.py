"""Directory entries: their 128 bytes, names and how [MS-CFB] orders them, and the
red-black tree of a storage's children."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from kmssign._internal.cfb.layout import NOSTREAM

ENTRY = struct.Struct("<64sHBBIII16sIQQIQ")
ENTRY_SIZE = 128
assert ENTRY.size == ENTRY_SIZE

UNUSED, STORAGE, STREAM, ROOT = 0, 1, 2, 5
KINDS: dict[int, Literal["root", "storage", "stream"]] = {
    ROOT: "root", STORAGE: "storage", STREAM: "stream",
}
RED, BLACK = 0, 1
MAX_NAME_UNITS = 31  # UTF-16 code units, the terminating NUL not counted
FORBIDDEN_IN_NAMES = "/\\:!"
BLANK = ENTRY.pack(bytes(64), 0, UNUSED, RED, NOSTREAM, NOSTREAM, NOSTREAM, bytes(16), 0, 0, 0,
                   0, 0)


@dataclass(frozen=True, slots=True)
class Entry:
    """One directory entry: a storage, a stream or the root."""

    sid: int
    name: str
    raw_name: bytes  # UTF-16LE as stored, without the terminating NUL
    kind: Literal["root", "storage", "stream"]
    clsid: bytes  # the 16 bytes as stored
    size: int  # a stream's size (the root's: the mini stream's); storages 0
    state_bits: int = 0
    created: int = 0  # FILETIME, as stored
    modified: int = 0
    start: int = 0  # first sector (mini sector for a stream under 4096 bytes)


@dataclass(slots=True)
class RawEntry:
    """The fields of a directory entry, for reading and for writing back."""

    name_field: bytes
    name_length: int
    kind: int
    color: int
    left: int
    right: int
    child: int
    clsid: bytes
    state_bits: int
    created: int
    modified: int
    start: int
    size: int

    @classmethod
    def unpack(cls, data: bytes | memoryview, offset: int = 0) -> RawEntry:
        return cls(*ENTRY.unpack_from(data, offset))

    def pack(self) -> bytes:
        return ENTRY.pack(
            self.name_field, self.name_length, self.kind, self.color, self.left, self.right,
            self.child, self.clsid, self.state_bits, self.created, self.modified, self.start,
            self.size,
        )

    def raw_name(self) -> bytes | None:
        """The name's UTF-16LE bytes without the NUL, or None when the length field or the
        terminator is wrong or a NUL is inside."""
        n = self.name_length
        if n < 2 or n > 64 or n % 2:
            return None
        raw = self.name_field[: n - 2]
        if self.name_field[n - 2:n] != b"\0\0":
            return None
        units = [raw[i:i + 2] for i in range(0, len(raw), 2)]
        return None if b"\0\0" in units else raw


def decode_name(raw: bytes) -> str:
    return raw.decode("utf-16-le", "surrogatepass")


def encode_name(name: str) -> bytes:
    """``name`` as a directory entry stores it; ValueError for a name [MS-CFB] forbids."""
    raw = name.encode("utf-16-le", "surrogatepass")
    if not name or len(raw) // 2 > MAX_NAME_UNITS:
        raise ValueError(f"stream name {name!r} must have 1 to {MAX_NAME_UNITS} UTF-16 units")
    if "\0" in name or any(c in FORBIDDEN_IN_NAMES for c in name):
        raise ValueError(f"stream name {name!r} holds a character compound files forbid")
    return raw


def _upper(char: str) -> str:
    up = char.upper()
    return up if len(up) == 1 else char


def name_key(raw_name: bytes) -> tuple[int, bytes]:
    """How [MS-CFB] orders names in a storage: shorter first, then by the UTF-16 code
    units of the upper-cased names."""
    upper = "".join(map(_upper, decode_name(raw_name)))
    return len(raw_name) // 2, upper.encode("utf-16-be", "surrogatepass")


def build_tree(entries: dict[int, RawEntry], children: Sequence[int]) -> int:
    """Link ``children`` (sids, in name order) into a balanced red-black tree: left and
    right siblings and colours set; returns the sid of the tree's root (NOSTREAM when
    there are none). Nodes on the last level of a tree that is not perfect are red, the
    rest black, so every path has the same number of black nodes."""
    depth: dict[int, int] = {}

    def link(lo: int, hi: int, level: int) -> int:
        if lo >= hi:
            return NOSTREAM
        mid = (lo + hi) // 2
        sid = children[mid]
        depth[sid] = level
        entries[sid].left = link(lo, mid, level + 1)
        entries[sid].right = link(mid + 1, hi, level + 1)
        return sid

    top = link(0, len(children), 0)
    deepest = max(depth.values(), default=0)
    perfect = len(children) == (1 << (deepest + 1)) - 1
    for sid, level in depth.items():
        entries[sid].color = RED if level == deepest and not perfect else BLACK
    return top
