"""A compound file written anew: every entry of the source kept (name, class id, state
bits, times, the trees of nested storages), root-level streams added, replaced or
removed, and the sectors laid out from scratch. Nothing of the source's free sectors or
of a removed or replaced stream reaches the output; the streams kmssign does not write
are copied in bounded chunks, byte for byte.

The output, in sector order: the FAT, the DIFAT, the directory, the mini FAT, the mini
stream, then each stream of 4096 bytes or more, each chain contiguous.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from kmssign._internal.cfb.directory import (
    BLANK,
    ROOT,
    STREAM,
    Entry,
    RawEntry,
    build_tree,
    encode_name,
    name_key,
)
from kmssign._internal.cfb.layout import (
    DIFSECT,
    ENDOFCHAIN,
    FATSECT,
    FREESECT,
    HEADER_DIFAT,
    MAX_FILE,
    MINI_CUTOFF,
    MINI_SECTOR,
    Header,
    sector_bytes,
)
from kmssign._internal.cfb.reader import CompoundFile
from kmssign.errors import CompoundFileError

CHUNK = 1 << 20


def _ceil(n: int, d: int) -> int:
    return -(-n // d)


@dataclass
class _Plan:
    """Where everything goes: sector counts and each stream's place."""

    sector_size: int
    n_fat: int
    n_difat: int
    n_dir: int
    n_minifat: int
    n_ministream: int
    regular: list[tuple[int, int]]  # (sid, first sector)
    mini: list[tuple[int, int]]  # (sid, first mini sector)
    n_mini: int  # mini sectors in use
    total: int  # sectors after the header


def _plan(entries: dict[int, RawEntry], ss: int) -> _Plan:
    per = ss // 4
    streams = sorted(sid for sid, e in entries.items() if e.kind == STREAM)
    mini, n_mini = [], 0
    big = []
    for sid in streams:
        size = entries[sid].size
        if size >= MINI_CUTOFF:
            big.append(sid)
        elif size:
            mini.append((sid, n_mini))
            n_mini += _ceil(size, MINI_SECTOR)
    n_dir = _ceil((max(entries) + 1) * 128, ss)
    n_minifat = _ceil(n_mini * 4, ss)
    n_ministream = _ceil(n_mini * MINI_SECTOR, ss)
    data = n_dir + n_minifat + n_ministream + sum(_ceil(entries[s].size, ss) for s in big)
    n_fat = n_difat = 0
    while True:  # the FAT must cover itself and the DIFAT: grow both until they fit
        need_fat = _ceil(data + n_fat + n_difat, per)
        need_difat = _ceil(max(0, need_fat - HEADER_DIFAT), per - 1)
        if (need_fat, need_difat) == (n_fat, n_difat):
            break
        n_fat, n_difat = need_fat, need_difat
    first = n_fat + n_difat + n_dir + n_minifat + n_ministream
    regular = []
    for sid in big:
        regular.append((sid, first))
        first += _ceil(entries[sid].size, ss)
    return _Plan(ss, n_fat, n_difat, n_dir, n_minifat, n_ministream, regular, mini, n_mini,
                 first)


def _chains(table: array[int], runs: Iterable[tuple[int, int]]) -> None:
    """Mark each contiguous run (first, count) as a chain in ``table``."""
    for first, count in runs:
        table[first:first + count - 1] = array("I", range(first + 1, first + count))
        if count:
            table[first + count - 1] = ENDOFCHAIN


def _padded(pieces: Iterable[bytes], size: int, unit: int, what: str) -> Iterator[bytes]:
    """``pieces`` (which must add up to ``size`` bytes), then zeros to a whole ``unit``."""
    got = 0
    for piece in pieces:
        got += len(piece)
        if got > size:
            break
        yield piece
    if got != size:
        raise CompoundFileError(f"{what} changed size while it was copied")
    if size % unit:
        yield bytes(unit - size % unit)


def rewrite(src: BinaryIO, cf: CompoundFile, dst: BinaryIO, *, set_streams: Mapping[str, bytes],
            remove: Collection[str] = ()) -> None:
    """Write ``cf`` (open on ``src``) to ``dst`` with the root-level streams of
    ``set_streams`` added or replaced and those named in ``remove`` left out (a name not
    there is no error). ``dst`` is written front to back, never read."""
    if set(set_streams) & set(remove):
        raise ValueError("a stream cannot be both written and removed")
    ss = cf.sector_size
    entries: dict[int, RawEntry] = {}
    for entry in cf.entries():
        entries[entry.sid] = cf.raw_entry(entry.sid)
    sources: dict[int, Entry | bytes] = {e.sid: e for e in cf.entries() if e.kind == "stream"}
    top = {name_key(e.raw_name): e for e in cf.children(cf.root)}
    for name in remove:
        gone = top.pop(name_key(encode_name(name)), None)
        if gone is not None:
            if gone.kind != "stream":
                raise ValueError(f"{name!r} is a storage: only streams are removed")
            del entries[gone.sid], sources[gone.sid]
    for name, data in set_streams.items():
        raw_name = encode_name(name)
        old = top.get(name_key(raw_name))
        if old is not None and old.kind != "stream":
            raise ValueError(f"{name!r} is a storage: it cannot be replaced by a stream")
        if old is not None:
            sid = old.sid
        else:
            sid = min(set(range(len(entries) + 1)) - set(entries))
            entries[sid] = RawEntry.unpack(BLANK)
            entries[sid].name_field = raw_name.ljust(64, b"\0")
            entries[sid].name_length = len(raw_name) + 2
            entries[sid].kind = STREAM
            top[name_key(raw_name)] = Entry(sid, name, raw_name, "stream", bytes(16), len(data))
        entries[sid].size = len(data)
        sources[sid] = bytes(data)
    entries[0].child = build_tree(entries, [top[k].sid for k in sorted(top)])
    _write(src, cf, dst, entries, sources, _plan(entries, ss))


def _write(src: BinaryIO, cf: CompoundFile, dst: BinaryIO, entries: dict[int, RawEntry],
           sources: dict[int, Entry | bytes], plan: _Plan) -> None:
    ss, per = plan.sector_size, plan.sector_size // 4
    if (plan.total + 1) * ss > MAX_FILE:
        raise CompoundFileError(f"{cf.name}: the rewritten file would be larger than 4 GiB")
    at = plan.n_fat + plan.n_difat
    dir_start, minifat_start = at, at + plan.n_dir
    ministream_start = minifat_start + plan.n_minifat

    fat = array("I", [FREESECT]) * (plan.n_fat * per)
    for s in range(plan.n_fat):
        fat[s] = FATSECT
    for s in range(plan.n_fat, at):
        fat[s] = DIFSECT
    _chains(fat, [(dir_start, plan.n_dir), (minifat_start, plan.n_minifat),
                  (ministream_start, plan.n_ministream)])
    _chains(fat, [(first, _ceil(entries[sid].size, ss)) for sid, first in plan.regular])
    minifat = array("I", [FREESECT]) * (plan.n_minifat * per)
    _chains(minifat, [(first, _ceil(entries[sid].size, MINI_SECTOR)) for sid, first in plan.mini])

    for entry in entries.values():
        if entry.kind == STREAM:
            entry.start = ENDOFCHAIN
    for sid, first in plan.regular + plan.mini:
        entries[sid].start = first
    root = entries[0]
    assert root.kind == ROOT
    root.start = ministream_start if plan.n_ministream else ENDOFCHAIN
    root.size = plan.n_mini * MINI_SECTOR

    fat_ids = list(range(plan.n_fat))
    header = Header(
        version=cf.version, n_dir_sectors=plan.n_dir if cf.version == 4 else 0,
        n_fat_sectors=plan.n_fat, first_dir=dir_start,
        first_minifat=minifat_start if plan.n_minifat else ENDOFCHAIN,
        n_minifat_sectors=plan.n_minifat,
        first_difat=plan.n_fat if plan.n_difat else ENDOFCHAIN, n_difat_sectors=plan.n_difat,
        difat=tuple(fat_ids[:HEADER_DIFAT] + [FREESECT] * (HEADER_DIFAT - min(plan.n_fat,
                                                                                HEADER_DIFAT))),
    )
    dst.write(header.pack())
    dst.write(sector_bytes(fat))
    rest = fat_ids[HEADER_DIFAT:]
    for i in range(plan.n_difat):
        numbers = array("I", rest[i * (per - 1):(i + 1) * (per - 1)])
        numbers.extend([FREESECT] * (per - 1 - len(numbers)))
        numbers.append(plan.n_fat + i + 1 if i + 1 < plan.n_difat else ENDOFCHAIN)
        dst.write(sector_bytes(numbers))
    directory = b"".join(entries[sid].pack() if sid in entries else BLANK
                         for sid in range(plan.n_dir * ss // 128))
    dst.write(directory)
    dst.write(sector_bytes(minifat))

    def pieces(sid: int) -> Iterable[bytes]:
        source = sources[sid]
        if isinstance(source, bytes):
            return [source]
        return cf.stream_from(src, source, CHUNK)

    for sid, _ in plan.mini:
        what = f"{cf.name}: stream {sid}"
        for piece in _padded(pieces(sid), entries[sid].size, MINI_SECTOR, what):
            dst.write(piece)
    if plan.n_mini * MINI_SECTOR % ss:
        dst.write(bytes(ss - plan.n_mini * MINI_SECTOR % ss))
    for sid, _ in plan.regular:
        what = f"{cf.name}: stream {sid}"
        for piece in _padded(pieces(sid), entries[sid].size, ss, what):
            dst.write(piece)
