"""Broken compound files (#21 item 6): each is refused with one line that names the file
and the reason, as a CompoundFileError, the file left byte for byte as it was; never a
traceback, never a hang (every loop of the reader is bounded by the file's sectors)."""

from __future__ import annotations

import io
import random
import re
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from kmssign._internal.cfb.reader import CompoundFile
from kmssign._internal.cfb.writer import rewrite
from kmssign.errors import CompoundFileError, MalformedFileError
from tests.support.cfbgen import Layout, Storage, Stream, generate
from tests.support.profiles import examples

END, FREE = 0xFFFFFFFE, 0xFFFFFFFF


def sample(version: int = 3, seed: int | None = None) -> Layout:
    rng = random.Random(4)
    return generate([
        Stream("\x05SummaryInformation", rng.randbytes(300)),
        Stream("alpha", rng.randbytes(5000)),
        Stream("beta", rng.randbytes(9000)),
        Stream("gamma", rng.randbytes(200)),
        Stream("delta", rng.randbytes(130)),
        Storage("store", [Stream("inner", rng.randbytes(700)), Stream("inner2", b"x" * 6000)]),
    ], version=version, seed=seed)


def fat_offset(layout: Layout, sector: int) -> int:
    per = layout.sector_size // 4
    return (layout.chains["fat"][sector // per] + 1) * layout.sector_size + sector % per * 4


def minifat_offset(layout: Layout, mini: int) -> int:
    per = layout.sector_size // 4
    return (layout.chains["minifat"][mini // per] + 1) * layout.sector_size + mini % per * 4


def put32(data: bytearray, offset: int, value: int) -> None:
    struct.pack_into("<I", data, offset, value)


def get32(data: bytes | bytearray, offset: int) -> int:
    return int(struct.unpack_from("<I", data, offset)[0])


def entry_field(layout: Layout, path: str, field: str) -> int:
    """The offset of a field of a directory entry."""
    return layout.entry_offset[path] + {"left": 68, "right": 72, "child": 76, "start": 116,
                                        "size": 120, "name": 0, "type": 66}[field]


def nsectors(layout: Layout) -> int:
    return len(layout.data) // layout.sector_size - 1


# Each case: (a function of a fresh layout giving the broken bytes, words of the reason)
def not_cfb(layout: Layout) -> bytes:
    return b"MZ" + bytes(1022)


def empty(layout: Layout) -> bytes:
    return b""


def short_header(layout: Layout) -> bytes:
    return layout.data[:300]


def truncated_mid_sector(layout: Layout) -> bytes:
    return layout.data[:-100]


def truncated_whole_sectors(layout: Layout) -> bytes:
    return layout.data[: len(layout.data) // 2 // layout.sector_size * layout.sector_size]


def trailing_bytes(layout: Layout) -> bytes:
    return layout.data + b"junk"


def trailing_sector(layout: Layout) -> bytes:
    return layout.data + bytes(layout.sector_size)


def stream_chain_loops(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    chain = layout.chains["beta"]
    put32(data, fat_offset(layout, chain[-1]), chain[0])
    return bytes(data)


def stream_chain_past_end(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    put32(data, fat_offset(layout, layout.chains["beta"][0]), nsectors(layout) + 7)
    return bytes(data)


def stream_chain_ends_early(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    put32(data, fat_offset(layout, layout.chains["beta"][0]), END)
    return bytes(data)


def directory_chain_loops(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    chain = layout.chains["directory"]
    put32(data, fat_offset(layout, chain[-1]), chain[0])
    return bytes(data)


def chains_cross(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    put32(data, fat_offset(layout, layout.chains["alpha"][-1]), layout.chains["beta"][1])
    return bytes(data)


def fat_claims_more_sectors(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    put32(data, fat_offset(layout, nsectors(layout) + 3), END)
    return bytes(data)


def header_counts_too_many_fat_sectors(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    put32(data, 44, 5000)
    return bytes(data)


def fat_sector_past_end(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    put32(data, 76, nsectors(layout) + 1)
    return bytes(data)


def orphan_sector(layout: Layout) -> bytes:
    """A stream shrunk by one sector: its last sector stays allocated, owned by nobody."""
    data = bytearray(layout.data)
    chain = layout.chains["beta"]
    put32(data, fat_offset(layout, chain[-2]), END)
    put32(data, entry_field(layout, "beta", "size"), (len(chain) - 1) * layout.sector_size)
    return bytes(data)


def chain_longer_than_size(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    size = entry_field(layout, "beta", "size")
    put32(data, size, get32(data, size) - layout.sector_size * 1)
    return bytes(data)


def duplicate_names(layout: Layout) -> bytes:
    """"alpha" renamed "BETA": the same name as "beta" to [MS-CFB], which ignores case."""
    data = bytearray(layout.data)
    offset = entry_field(layout, "alpha", "name")
    data[offset:offset + 64] = "BETA".encode("utf-16-le").ljust(64, b"\0")
    struct.pack_into("<H", data, offset + 64, 10)
    return bytes(data)


def out_of_order(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    offset = entry_field(layout, "gamma", "name")
    data[offset:offset + 2] = "z".encode("utf-16-le")
    return bytes(data)


def tree_cycle(layout: Layout) -> bytes:
    """A leaf of the root's tree points back at the tree's top."""
    data = bytearray(layout.data)
    top = get32(data, entry_field(layout, "", "child"))
    for path in ("alpha", "beta", "gamma", "delta", "store", "\x05SummaryInformation"):
        if get32(data, entry_field(layout, path, "left")) == FREE:
            put32(data, entry_field(layout, path, "left"), top)
            return bytes(data)
    raise AssertionError("no leaf")


def storage_contains_itself(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    offset = entry_field(layout, "store", "child")
    store_sid = get32(data, entry_field(layout, "", "child"))  # any entry of the root's tree
    put32(data, offset, store_sid)
    return bytes(data)


def tree_points_past_directory(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    put32(data, entry_field(layout, "store", "child"), 100_000)
    return bytes(data)


def entry_not_in_tree(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    put32(data, entry_field(layout, "store", "child"), FREE)
    return bytes(data)


def mini_chain_loops(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    start = get32(data, entry_field(layout, "gamma", "start"))
    put32(data, minifat_offset(layout, start), start)
    return bytes(data)


def mini_chain_past_end(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    put32(data, entry_field(layout, "gamma", "start"), 5000)
    return bytes(data)


def mini_orphan(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    start = get32(data, entry_field(layout, "delta", "start"))
    put32(data, minifat_offset(layout, start), END)
    put32(data, entry_field(layout, "delta", "size"), 64)
    return bytes(data)


def bad_byte_order(layout: Layout) -> bytes:
    return layout.data[:28] + b"\xff\xfe" + layout.data[30:]


def bad_version(layout: Layout) -> bytes:
    return layout.data[:26] + b"\x05\x00" + layout.data[28:]


def bad_name_length(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    struct.pack_into("<H", data, layout.entry_offset["alpha"] + 64, 7)
    return bytes(data)


def unused_entry_in_tree(layout: Layout) -> bytes:
    data = bytearray(layout.data)
    data[entry_field(layout, "store/inner", "type")] = 0
    return bytes(data)


CASES: list[tuple[Callable[[Layout], bytes], str]] = [
    (not_cfb, "not a compound file"),
    (empty, "empty file"),
    (short_header, "truncated"),
    (truncated_mid_sector, "partial sector"),
    (truncated_whole_sectors, ""),
    (trailing_bytes, "partial sector"),
    (trailing_sector, "the FAT covers|free sectors at the end"),
    (stream_chain_loops, "loops"),
    (stream_chain_past_end, "past the end of the file"),
    (stream_chain_ends_early, "ends after"),
    (directory_chain_loops, "used twice"),
    (chains_cross, "crosses|longer than its size"),
    (fat_claims_more_sectors, "FAT claims more sectors"),
    (header_counts_too_many_fat_sectors, "counts 5000 FAT"),
    (fat_sector_past_end, "past the end of the file"),
    (orphan_sector, "belongs to no stream"),
    (chain_longer_than_size, "longer than its size"),
    (duplicate_names, "duplicate name"),
    (out_of_order, "out of order"),
    (tree_cycle, "cycle"),
    (storage_contains_itself, "cycle"),
    (tree_points_past_directory, "points past the directory"),
    (entry_not_in_tree, "in no storage's tree"),
    (mini_chain_loops, "mini sector .* used twice"),
    (mini_chain_past_end, "points to mini sector 0x1388, past the mini stream"),
    (mini_orphan, "mini sector .* belongs to no stream"),
    (bad_byte_order, "byte order"),
    (bad_version, "major version 5"),
    (bad_name_length, "malformed name"),
    (unused_entry_in_tree, "of type 0"),
]


def snapshot(path: Path) -> tuple[int, int, bytes]:
    """Size, modification time and the first MiB (all of a test file but the sparse one)."""
    with path.open("rb") as f:
        return path.stat().st_size, path.stat().st_mtime_ns, f.read(1 << 20)


def refused(path: Path) -> str:
    """Open ``path`` as kmssign does; the one-line reason it is refused with."""
    before = snapshot(path)
    with path.open("rb") as f, pytest.raises(CompoundFileError) as info:
        CompoundFile.open(f, str(path))
    assert snapshot(path) == before
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert isinstance(info.value, MalformedFileError)
    return message


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize(("breaker", "reason"), CASES, ids=[c[0].__name__ for c in CASES])
def test_broken_files_are_refused_in_one_line(tmp_path: Path, version: int,
                                              breaker: Callable[[Layout], bytes],
                                              reason: str) -> None:
    layout = sample(version, seed=version)
    CompoundFile.open(io.BytesIO(layout.data), "intact")  # the file before breaking it
    path = tmp_path / "broken.msi"
    path.write_bytes(breaker(layout))
    message = refused(path)
    assert re.search(reason, message), message


@pytest.mark.parametrize("start", [END, FREE, 0, 7])
def test_empty_chains_may_start_anywhere(start: int) -> None:
    """No mini stream and no mini FAT: where their (empty) chains start names nothing."""
    layout = generate([Stream("big", bytes(5000)), Stream("empty", b"")])
    data = bytearray(layout.data)
    assert get32(data, 64) == 0 and get32(data, entry_field(layout, "", "size")) == 0
    put32(data, 60, start)
    put32(data, entry_field(layout, "", "start"), start)
    put32(data, entry_field(layout, "empty", "start"), start)
    cf = CompoundFile.open(io.BytesIO(bytes(data)), "empty chains")
    assert [e.size for e in cf.children(cf.root)] == [5000, 0]
    put32(data, 64, 1)  # a mini FAT of one sector: the start must be one
    with pytest.raises(CompoundFileError, match="mini FAT"):
        CompoundFile.open(io.BytesIO(bytes(data)), "counted")


@pytest.mark.posix  # a sparse file
def test_larger_than_4_gib(tmp_path: Path) -> None:
    """A sparse file: its header is fine, its size is not."""
    layout = sample()
    path = tmp_path / "huge.msi"
    with path.open("wb") as f:
        f.write(layout.data)
        f.truncate((1 << 32) + layout.sector_size)
    assert "larger than 4 GiB" in refused(path)


def test_a_directory_too_large_to_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit (65536 entries) lowered to 16 entries, for a small file to pass it."""
    from kmssign._internal.cfb import reader

    monkeypatch.setattr(reader, "MAX_DIRECTORY", 16 * 128)
    streams: list[Stream | Storage] = [Stream(f"s{i}", b"") for i in range(16)]
    path = tmp_path / "many.msi"
    path.write_bytes(generate(streams[:15]).data)
    CompoundFile.open(io.BytesIO(path.read_bytes()), "fits")
    path.write_bytes(generate(streams).data)
    assert "a directory of 20 entries (kmssign reads 16 at most)" in refused(path)


def test_a_file_that_changes_while_read_is_refused(tmp_path: Path) -> None:
    layout = sample()
    path = tmp_path / "shrinks.msi"
    path.write_bytes(layout.data)
    with path.open("rb") as f:
        cf = CompoundFile.open(f, str(path))
        path.write_bytes(layout.data[: 4 * layout.sector_size])
        beta = cf.find(cf.root, "beta")
        assert beta is not None
        with pytest.raises(CompoundFileError, match="truncated while reading"):
            b"".join(cf.read_stream(beta))


STRUCTURE = st.sampled_from(["header", "fat", "directory", "minifat", "any"])


@settings(max_examples=examples(150))
@given(version=st.sampled_from([3, 4]), where=STRUCTURE, seed=st.integers(0, 2**32),
       flips=st.integers(1, 4))
def test_mutated_files_open_cleanly_or_are_refused(version: int, where: str, seed: int,
                                                   flips: int) -> None:
    """Bytes changed in the structures: either a CompoundFileError, or a file whose every
    stream reads and which rewrites to a file that opens again."""
    layout = sample(version, seed=version)
    rng = random.Random(seed)
    data = bytearray(layout.data)
    ss = layout.sector_size
    regions = {
        "header": [(0, 76 + 4 * 4)],
        "fat": [((s + 1) * ss, ss) for s in layout.chains["fat"]],
        "directory": [((s + 1) * ss, ss) for s in layout.chains["directory"]],
        "minifat": [((s + 1) * ss, ss) for s in layout.chains["minifat"]],
        "any": [(0, len(data))],
    }[where]
    for _ in range(flips):
        start, length = rng.choice(regions)
        offset = start + rng.randrange(length)
        data[offset] = rng.choice([0, 0xFF, 0xFE, rng.randrange(256), data[offset] ^ 1])
    src = io.BytesIO(bytes(data))
    try:
        cf = CompoundFile.open(src, "mutated")
    except CompoundFileError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("mutated: ")
        event(f"refused: {where}")
        return
    event(f"accepted: {where}")
    for entry in cf.entries():
        if entry.kind == "stream":
            assert sum(map(len, cf.read_stream(entry))) == entry.size
    out = io.BytesIO()
    rewrite(src, cf, out, set_streams={"\x05DigitalSignature": b"sig"})
    out.seek(0)
    CompoundFile.open(out, "rewritten")
