"""Compound files: kmssign's reader against olefile, and files rewritten with root-level
streams added, replaced and removed, in both sector sizes, read back by olefile."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct

import olefile
import pytest

from kmssign._internal.cfb.reader import CompoundFile
from kmssign._internal.cfb.writer import rewrite
from tests.support.cfbcheck import assert_rewritten, ole_tree
from tests.support.cfbgen import Storage, Stream, generate

SIG = "\x05DigitalSignature"
SIG_EX = "\x05MsiDigitalSignatureEx"


def sample_tree(rng: random.Random) -> list[Stream | Storage]:
    """Streams around the mini stream cutoff, an empty one, nested storages."""
    return [
        Stream("\x05SummaryInformation", rng.randbytes(400)),
        *(Stream(f"s{size}", rng.randbytes(size)) for size in (1, 63, 64, 65, 4095, 4096, 4097)),
        Stream("empty", b""),
        Stream("big", rng.randbytes(70_000)),
        Storage("sub", [Stream("x", b"abc"), Storage("deeper", [
            Stream("y", rng.randbytes(5000)), Stream("z", b"")], clsid=rng.randbytes(16))]),
        Storage("другой", [], clsid=rng.randbytes(16)),
    ]


def open_bytes(data: bytes) -> CompoundFile:
    return CompoundFile.open(io.BytesIO(data), "test.msi")


def rewritten(data: bytes, **changes: object) -> bytes:
    src = io.BytesIO(data)
    cf = CompoundFile.open(src, "test.msi")
    out = io.BytesIO()
    rewrite(src, cf, out, **changes)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_reader_agrees_with_olefile(version: int, seed: int | None) -> None:
    rng = random.Random(seed)
    layout = generate(sample_tree(rng), version=version, seed=seed, free=seed or 0)
    cf = open_bytes(layout.data)
    assert (cf.version, cf.sector_size) == (version, 512 if version == 3 else 4096)
    assert cf.free_sectors == (seed or 0)
    oracle = ole_tree(layout.data)
    mine: dict[tuple[str, ...], tuple[str, bytes, str]] = {}
    pending = [((), cf.root)]
    while pending:
        path, entry = pending.pop()
        digest = ""
        if entry.kind == "stream":
            pieces = list(cf.read_stream(entry, chunk=1000))
            assert all(len(p) <= 1000 for p in pieces)
            digest = hashlib.sha256(b"".join(pieces)).hexdigest()
        mine[path] = (entry.kind, entry.clsid if entry.kind != "stream" else bytes(16), digest)
        children = cf.children(entry)
        names = [c.name for c in children]
        assert names == sorted(names, key=lambda n: (len(n), n.upper()))
        for child in children:
            assert cf.find(entry, child.name.upper()) == child
            pending.append(((*path, child.name), child))
    assert mine == oracle
    assert cf.find(cf.root, "missing") is None


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("size", [0, 1, 3000, 4095, 4096, 10_000, 200_000])
def test_signature_streams_added_replaced_removed(version: int, size: int) -> None:
    rng = random.Random(size)
    before = generate(sample_tree(rng), version=version, seed=size, free=2).data
    signature = rng.randbytes(size)
    added = rewritten(before, set_streams={SIG: signature})
    assert_rewritten(before, added, {SIG: signature})
    both = {SIG: rng.randbytes(5000 - size % 4000), SIG_EX: rng.randbytes(32)}
    replaced = rewritten(added, set_streams=both)
    assert_rewritten(added, replaced, both)
    assert signature not in replaced or size < 8  # the old signature's bytes are gone
    removed = rewritten(replaced, set_streams={}, remove=[SIG, SIG_EX, "not there"])
    assert_rewritten(replaced, removed, {}, removed=[SIG, SIG_EX])
    assert ole_tree(removed) == ole_tree(before)


def test_rewrite_keeps_a_file_as_it_reads() -> None:
    """Nothing written: the same entries, and a second rewrite gives the same bytes."""
    before = generate(sample_tree(random.Random(7)), seed=7, free=5).data
    once = rewritten(before, set_streams={})
    assert_rewritten(before, once, {})
    assert rewritten(once, set_streams={}) == once
    assert len(once) < len(before)  # the free sectors are gone


@pytest.mark.parametrize("version", [3, 4])
def test_root_trees_of_every_size_are_red_black(version: int) -> None:
    """Trees of 1 to 40 root entries (perfect and not): valid red-black trees."""
    rng = random.Random(version)
    before = generate([Stream("n", b"n")], version=version, seed=version).data
    for count in range(40):
        written = {f"w{i}": rng.randbytes(i * 7) for i in range(count)}
        after = rewritten(before, set_streams=written)
        assert sorted(olefile.OleFileIO(after).listdir()) == sorted(
            [["n"]] + [[name] for name in written])
        check_red_black(after)
    many: list[Stream | Storage] = [Stream(f"n{i}", rng.randbytes(rng.randrange(0, 9000)))
                                    for i in range(1, 200)]
    before = generate(many, version=version, seed=version).data
    written = {SIG: b"s" * 5000, SIG_EX: b"e" * 20}
    after = rewritten(before, set_streams=written)
    assert_rewritten(before, after, written)
    check_red_black(after)


def check_red_black(data: bytes) -> None:
    """The root's children form a red-black tree: a BST in [MS-CFB] name order, a black
    root, no red node with a red child, the same number of black nodes on every path."""
    ole = olefile.OleFileIO(data)
    entries = {sid: e for sid, e in enumerate(ole.direntries) if e is not None}

    def key(sid: int) -> tuple[int, str]:
        return len(entries[sid].name), entries[sid].name.upper()

    def walk(sid: int, low: tuple[int, str] | None, high: tuple[int, str] | None) -> int:
        """The number of black nodes on every path below ``sid``."""
        if sid == olefile.NOSTREAM:
            return 1
        e = entries[sid]
        assert (low is None or key(sid) > low) and (high is None or key(sid) < high)
        if e.color == 0:  # red: both children black
            for child in (e.sid_left, e.sid_right):
                assert child == olefile.NOSTREAM or entries[child].color == 1
        black = walk(e.sid_left, low, key(sid))
        assert walk(e.sid_right, key(sid), high) == black
        return black + e.color

    top = entries[0].sid_child
    assert entries[top].color == 1
    walk(top, None, None)


def test_large_file_with_difat_sectors() -> None:
    """More than 109 FAT sectors: the DIFAT, read and written (version 3, 8 MiB)."""
    rng = random.Random(5)
    tree: list[Stream | Storage] = [Stream("huge", rng.randbytes(8 << 20)),
                                    Stream("small", rng.randbytes(100))]
    before = generate(tree, seed=5).data
    assert int.from_bytes(before[72:76], "little") >= 1  # DIFAT sectors in the source
    signature = os.urandom(9000)
    after = rewritten(before, set_streams={SIG: signature})
    assert int.from_bytes(after[72:76], "little") >= 1
    assert_rewritten(before, after, {SIG: signature})


def test_fat_grows_into_the_difat_and_shrinks_back() -> None:
    """109 FAT sectors fit the header: a signature that needs a 110th brings the first
    DIFAT sector, and removing it again takes it away."""
    tree: list[Stream | Storage] = [Stream("big", bytes(13835 * 512)), Stream("s", b"s")]
    before = generate(tree).data
    def header(data: bytes) -> tuple[int, int]:
        """The FAT and DIFAT sector counts."""
        return struct.unpack_from("<I", data, 44)[0], struct.unpack_from("<I", data, 72)[0]

    assert header(before) == (109, 0)
    signature = random.Random(9).randbytes(9000)
    after = rewritten(before, set_streams={SIG: signature})
    assert header(after) == (110, 1)
    assert_rewritten(before, after, {SIG: signature})
    again = rewritten(after, set_streams={}, remove=[SIG])
    assert header(again) == (109, 0)
    assert_rewritten(after, again, {}, removed=[SIG])


@pytest.mark.parametrize("version", [3, 4])
def test_difat_in_a_small_file(version: int) -> None:
    """A writer may keep more FAT sectors than it needs; the reader follows the DIFAT."""
    before = generate(sample_tree(random.Random(1)), version=version, seed=1,
                      extra_fat=115).data
    assert int.from_bytes(before[72:76], "little") == 1
    after = rewritten(before, set_streams={SIG: b"sig"})
    assert_rewritten(before, after, {SIG: b"sig"})
    assert int.from_bytes(after[72:76], "little") == 0


def test_bad_arguments() -> None:
    data = generate(sample_tree(random.Random(2))).data
    for changes, message in [
        ({"set_streams": {SIG: b"a"}, "remove": [SIG]}, "both"),
        ({"set_streams": {"sub": b"a"}}, "storage"),
        ({"set_streams": {}, "remove": ["sub"]}, "storage"),
        ({"set_streams": {"a" * 32: b"a"}}, "UTF-16 units"),
        ({"set_streams": {"a/b": b"a"}}, "forbid"),
    ]:
        with pytest.raises(ValueError, match=message):
            rewritten(data, **changes)
