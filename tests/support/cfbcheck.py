"""olefile as the oracle for compound files: what it lists and reads, compared before and
after kmssign rewrote a file."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Collection, Mapping
from pathlib import Path

import olefile

from kmssign._internal.cfb.reader import CompoundFile

Tree = dict[tuple[str, ...], tuple[str, bytes, str]]  # path -> (kind, clsid, sha256 or "")


def ole_tree(source: bytes | Path) -> Tree:
    """Every storage and stream olefile finds: kind, class id (raw 16 bytes) and, for a
    stream, the SHA-256 of what olefile reads."""
    ole = olefile.OleFileIO(source if isinstance(source, bytes) else str(source))
    try:
        tree: Tree = {(): ("root", _raw_clsid(ole.root.clsid), "")}
        for path in ole.listdir(streams=True, storages=True):
            kind = ole.get_type(path)
            if kind == olefile.STGTY_STREAM:
                data = ole.openstream(path).read()
                assert len(data) == ole.get_size(path)
                tree[tuple(path)] = ("stream", bytes(16), hashlib.sha256(data).hexdigest())
            else:
                tree[tuple(path)] = ("storage", _raw_clsid(ole.getclsid(path)), "")
        return tree
    finally:
        ole.close()


def _raw_clsid(text: str) -> bytes:
    """olefile's text form of a class id back to the 16 bytes the entry stores."""
    if not text:
        return bytes(16)
    parts = text.split("-")
    head = (int(parts[0], 16).to_bytes(4, "little") + int(parts[1], 16).to_bytes(2, "little")
            + int(parts[2], 16).to_bytes(2, "little"))
    return head + bytes.fromhex(parts[3] + parts[4])


def metadata(data: bytes) -> dict[tuple[str, ...], tuple[object, ...]]:
    """kmssign's reader's view of every entry: what a rewrite must keep."""
    cf = CompoundFile.open(io.BytesIO(data), "check")
    found: dict[tuple[str, ...], tuple[object, ...]] = {}
    pending = [((), cf.root)]
    while pending:
        path, entry = pending.pop()
        found[path] = (entry.kind, entry.raw_name, entry.clsid, entry.state_bits,
                       entry.created, entry.modified,
                       entry.size if entry.kind == "stream" else None)
        pending.extend(((*path, c.name), c) for c in cf.children(entry))
    return found


def assert_rewritten(before: bytes, after: bytes, written: Mapping[str, bytes],
                     removed: Collection[str] = ()) -> None:
    """``after`` holds what ``before`` held, less the removed root streams, with the
    written ones added or replaced: by olefile's reading and by kmssign's."""
    old, new = ole_tree(before), ole_tree(after)
    expected = {path: value for path, value in old.items()
                if not (len(path) == 1 and (path[0] in removed or path[0] in written))}
    for name, data in written.items():
        expected[(name,)] = ("stream", bytes(16), hashlib.sha256(data).hexdigest())
    assert new == expected
    old_meta, new_meta = metadata(before), metadata(after)
    for path, value in new_meta.items():
        if path and path[0] not in written:
            assert old_meta[path] == value, path
    assert set(new_meta) == set(expected)
    cf = CompoundFile.open(io.BytesIO(after), "after")
    assert cf.free_sectors == 0
