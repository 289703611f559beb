"""An independent compound-file generator for the tests: trees of storages and streams
written as [MS-CFB] version 3 or 4 files, laid out unlike kmssign's writer (streams
first, the FAT and DIFAT last, and, with a seed, every chain scattered over the file and
every tree shaped by insertion order). olefile reads what it writes (tests check that);
the malformed-input tests start from its output and break one thing.
"""

from __future__ import annotations

import itertools
import random
import struct
import sys
from array import array
from dataclasses import dataclass, field
from pathlib import Path

SIG = bytes.fromhex("d0cf11e0a1b11ae1")
FREE, END, FATS, DIFS, NONE = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFC, 0xFFFFFFFF
MSI_CLSID = bytes.fromhex("84100c0000000000c000000000000046")  # {000C1084-...-000000000046}


@dataclass
class Stream:
    name: str
    data: bytes


@dataclass
class Storage:
    name: str
    children: list[Stream | Storage] = field(default_factory=list)
    clsid: bytes = bytes(16)


@dataclass
class Layout:
    """What was generated, for tests that break it: entry offsets by name, the sector
    numbers of each chain (physical), sizes."""

    data: bytes
    sector_size: int
    entry_offset: dict[str, int]  # path "a/b" -> file offset of its directory entry
    chains: dict[str, list[int]]  # "directory", "minifat", "ministream", "fat", "difat", path
    fat_offset: int  # file offset of the FAT's first sector


def cfb_key(name: str) -> tuple[int, bytes]:
    upper = "".join(c.upper() if len(c.upper()) == 1 else c for c in name)
    return len(name.encode("utf-16-le", "surrogatepass")) // 2, upper.encode("utf-16-be",
                                                                             "surrogatepass")


def _ceil(n: int, d: int) -> int:
    return -(-n // d)


def generate(children: list[Stream | Storage], *, version: int = 3,
             root_clsid: bytes = MSI_CLSID, seed: int | None = None, free: int = 0,
             extra_fat: int = 0) -> Layout:
    """The file holding ``children`` under the root. ``seed`` scatters the sectors and
    shapes the trees; ``free`` adds free sectors full of noise; ``extra_fat`` adds FAT
    sectors beyond need (to reach the DIFAT in a small file)."""
    rng = random.Random(seed)
    ss = 512 if version == 3 else 4096
    per = ss // 4
    # directory entries, depth first; every entry: [name, type, clsid, size, path, kids]
    entries: list[dict[str, object]] = [
        {"name": "Root Entry", "type": 5, "clsid": root_clsid, "path": "", "kids": []}]

    def add(parent: int, nodes: list[Stream | Storage], prefix: str) -> None:
        for node in nodes:
            sid = len(entries)
            path = prefix + node.name
            entry: dict[str, object] = {"name": node.name, "path": path, "kids": []}
            if isinstance(node, Stream):
                entry.update(type=2, clsid=bytes(16), data=node.data)
            else:
                entry.update(type=1, clsid=node.clsid)
            entries.append(entry)
            kids = entries[parent]["kids"]
            assert isinstance(kids, list)
            kids.append(sid)
            if isinstance(node, Storage):
                add(sid, node.children, path + "/")

    add(0, children, "")
    streams = [i for i, e in enumerate(entries) if e["type"] == 2]
    big = [i for i in streams if len(entries[i]["data"]) >= 4096]  # type: ignore[arg-type]
    small = [i for i in streams if 0 < len(entries[i]["data"]) < 4096]  # type: ignore[arg-type]
    # mini stream: each small stream's mini sectors, scattered with a seed
    mini_slots = [(i, k) for i in small for k in range(_ceil(len(entries[i]["data"]), 64))]  # type: ignore[arg-type]
    mini_order = list(range(len(mini_slots)))
    if seed is not None:
        rng.shuffle(mini_order)
    n_mini = len(mini_slots)
    ministream = bytearray(n_mini * 64)
    minifat = [FREE] * (_ceil(n_mini * 4, ss) * per)
    mini_start: dict[int, int] = {}
    previous: dict[int, int] = {}
    for slot, position in zip(mini_slots, mini_order, strict=True):
        sid, k = slot
        data = entries[sid]["data"]
        assert isinstance(data, bytes)
        ministream[position * 64:position * 64 + 64] = data[k * 64:(k + 1) * 64].ljust(64, b"\0")
        if k == 0:
            mini_start[sid] = position
        else:
            minifat[previous[sid]] = position
        previous[sid] = position
        minifat[position] = END
    # logical sectors: big streams, mini stream, mini FAT, directory, free, FAT, DIFAT
    chains: dict[str, list[int]] = {}
    contents: list[bytes] = []

    def put(label: str, data: bytes) -> None:
        first = len(contents)
        pieces = [data[i:i + ss].ljust(ss, b"\0") for i in range(0, len(data), ss)]
        contents.extend(pieces)
        chains[label] = list(range(first, first + len(pieces)))

    for sid in big:
        put(str(entries[sid]["path"]), entries[sid]["data"])  # type: ignore[arg-type]
    put("ministream", bytes(ministream))
    put("minifat", struct.pack(f"<{len(minifat)}I", *minifat))
    n_entries = _ceil(len(entries) * 128, ss) * ss // 128
    put("directory", bytes(n_entries * 128))  # filled in below, once sectors are known
    free_from = len(contents)
    for _ in range(free):
        contents.append(rng.randbytes(ss))
    n_fat = n_difat = 0
    while True:
        need = _ceil(len(contents) + n_fat + n_difat, per) + extra_fat
        need_difat = _ceil(max(0, need - 109), per - 1)
        if (need, need_difat) == (n_fat, n_difat):
            break
        n_fat, n_difat = need, need_difat
    chains["fat"] = list(range(len(contents), len(contents) + n_fat))
    chains["difat"] = list(range(len(contents) + n_fat, len(contents) + n_fat + n_difat))
    total = len(contents) + n_fat + n_difat
    place = list(range(total))
    if seed is not None:
        rng.shuffle(place)
        last = place.index(total - 1)  # the last sector holds something (free ones: trailing)
        if free_from <= last < free_from + free:
            place[last], place[0] = place[0], place[last]
    chains = {label: [place[s] for s in chain] for label, chain in chains.items()}
    fat = [FREE] * (n_fat * per)
    for chain in chains.values():
        for a, b in itertools.pairwise(chain):
            fat[a] = b
        if chain:
            fat[chain[-1]] = END
    for s in chains["fat"]:
        fat[s] = FATS
    for s in chains["difat"]:
        fat[s] = DIFS
    # the trees: each storage's children inserted in a seeded order into a plain BST
    links = {sid: [NONE, NONE, NONE] for sid in range(len(entries))}  # left, right, child
    for sid, entry in enumerate(entries):
        kids = list(entry["kids"])  # type: ignore[call-overload]
        if seed is not None:
            rng.shuffle(kids)
        else:
            kids.sort(key=lambda k: cfb_key(str(entries[k]["name"])))
            kids = _middle_first(kids)
        for kid in kids:
            if links[sid][2] == NONE:
                links[sid][2] = kid
                continue
            node = links[sid][2]
            while True:
                side = 0 if cfb_key(str(entries[kid]["name"])) < cfb_key(
                    str(entries[node]["name"])) else 1
                if links[node][side] == NONE:
                    links[node][side] = kid
                    break
                node = links[node][side]
    directory = bytearray(n_entries * 128)
    for i in range(len(entries), n_entries):
        struct.pack_into("<III", directory, i * 128 + 68, NONE, NONE, NONE)
    for sid, entry in enumerate(entries):
        name = str(entry["name"]).encode("utf-16-le", "surrogatepass")
        if entry["type"] == 5:
            start = chains["ministream"][0] if chains["ministream"] else END
            size = n_mini * 64
        elif entry["type"] == 2:
            data = entry["data"]
            assert isinstance(data, bytes)
            size = len(data)
            start = (chains[str(entry["path"])][0] if size >= 4096
                     else mini_start[sid] if size else END)
        else:
            start = size = 0
        stamps = [rng.getrandbits(n) if seed is not None and sid else 0 for n in (32, 64, 64)]
        struct.pack_into("<64sHBBIII16sIQQIQ", directory, sid * 128, name, len(name) + 2,
                         entry["type"], 1, *links[sid], entry["clsid"], *stamps, start, size)
    image: list[bytes] = [b""] * total
    for logical, physical in enumerate(place):
        if logical < len(contents):
            image[physical] = contents[logical]
    for i, s in enumerate(chains["directory"]):
        image[s] = bytes(directory[i * ss:(i + 1) * ss])
    fat_bytes = struct.pack(f"<{len(fat)}I", *fat)
    for i, s in enumerate(chains["fat"]):
        image[s] = fat_bytes[i * ss:(i + 1) * ss]
    overflow = chains["fat"][109:]
    for i, s in enumerate(chains["difat"]):
        ids = overflow[i * (per - 1):(i + 1) * (per - 1)]
        ids += [FREE] * (per - 1 - len(ids))
        nxt = chains["difat"][i + 1] if i + 1 < n_difat else END
        image[s] = struct.pack(f"<{per}I", *ids, nxt)
    head_difat = chains["fat"][:109] + [FREE] * (109 - min(109, n_fat))
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII109I", SIG, bytes(16), 0x3E, version, 0xFFFE,
        9 if version == 3 else 12, 6, bytes(6), len(chains["directory"]) if version == 4 else 0,
        n_fat, chains["directory"][0], 0, 4096,
        chains["minifat"][0] if chains["minifat"] else END, len(chains["minifat"]),
        chains["difat"][0] if n_difat else END, n_difat, *head_difat,
    ).ljust(ss, b"\0")
    offsets = {str(e["path"]): _entry_offset(chains["directory"], sid, ss)
               for sid, e in enumerate(entries)}
    return Layout(header + b"".join(image), ss, offsets, chains,
                  (chains["fat"][0] + 1) * ss if chains["fat"] else 0)


def _entry_offset(directory: list[int], sid: int, ss: int) -> int:
    per = ss // 128
    return (directory[sid // per] + 1) * ss + (sid % per) * 128


def _middle_first(items: list[int]) -> list[int]:
    """A sorted list in an insertion order that gives a balanced tree."""
    if not items:
        return []
    mid = len(items) // 2
    return [items[mid], *_middle_first(items[:mid]), *_middle_first(items[mid + 1:])]


def write_sparse(path: Path, size: int, *, version: int = 3,
                 small: dict[str, bytes] | None = None) -> None:
    """A compound file with one stream "big" of ``size`` zero bytes, left as a hole in a
    sparse file (a 1 GiB package costs no disk), and ``small`` streams in the mini
    stream. Root-level only; the FAT and DIFAT are whole, so large files have DIFAT
    sectors."""
    ss = 512 if version == 3 else 4096
    per = ss // 4
    small = small or {}
    names = sorted(["big", *small], key=cfb_key)
    n_mini = sum(_ceil(len(d), 64) for d in small.values())
    n_minifat = _ceil(n_mini * 4, ss)
    n_ministream = _ceil(n_mini * 64, ss)
    n_dir = _ceil((len(names) + 1) * 128, ss)
    data = n_dir + n_minifat + n_ministream + _ceil(size, ss)
    n_fat = n_difat = 0
    while True:
        need = _ceil(data + n_fat + n_difat, per)
        need_difat = _ceil(max(0, need - 109), per - 1)
        if (need, need_difat) == (n_fat, n_difat):
            break
        n_fat, n_difat = need, need_difat
    fat = array("I", [FREE]) * (n_fat * per)
    for s in range(n_fat):
        fat[s] = FATS
    for s in range(n_fat, n_fat + n_difat):
        fat[s] = DIFS
    first = n_fat + n_difat
    runs = {"dir": (first, n_dir), "minifat": (first + n_dir, n_minifat),
            "ministream": (first + n_dir + n_minifat, n_ministream),
            "big": (first + n_dir + n_minifat + n_ministream, _ceil(size, ss))}
    for start, count in runs.values():
        for s in range(start, start + count):
            fat[s] = s + 1 if s + 1 < start + count else END
    minifat = [FREE] * (n_minifat * per)
    ministream = bytearray()
    mini_start: dict[str, int] = {}
    for name in names:
        if name == "big":
            continue
        mini_start[name] = len(ministream) // 64
        count = _ceil(len(small[name]), 64)
        for i in range(mini_start[name], mini_start[name] + count):
            minifat[i] = i + 1 if i + 1 < mini_start[name] + count else END
        ministream += small[name].ljust(count * 64, b"\0")
    directory = bytearray()
    root_start = runs["ministream"][0] if n_ministream else END
    # all the root's children on a right-leaning chain: a valid BST in name order
    sids = {name: i + 1 for i, name in enumerate(names)}
    for sid, name in enumerate(["Root Entry", *names]):
        raw = name.encode("utf-16-le")
        right = sids[names[sid]] if 0 < sid < len(names) else NONE
        child = 1 if sid == 0 else NONE
        if sid == 0:
            kind, start, length, clsid = 5, root_start, n_mini * 64, MSI_CLSID
        elif name == "big":
            kind, start, length, clsid = 2, runs["big"][0], size, bytes(16)
        else:
            kind, start, length, clsid = 2, mini_start[name], len(small[name]), bytes(16)
        directory += struct.pack("<64sHBBIII16sIQQIQ", raw, len(raw) + 2, kind, 1, NONE, right,
                                 child, clsid, 0, 0, 0, start, length)
    while len(directory) < n_dir * ss:
        directory += struct.pack("<64sHBBIII16sIQQIQ", b"", 0, 0, 0, NONE, NONE, NONE,
                                 bytes(16), 0, 0, 0, 0, 0)
    fat_ids = list(range(n_fat))
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII109I", SIG, bytes(16), 0x3E, version, 0xFFFE,
        9 if version == 3 else 12, 6, bytes(6), n_dir if version == 4 else 0, n_fat, first, 0,
        4096, runs["minifat"][0] if n_minifat else END, n_minifat,
        n_fat if n_difat else END, n_difat, *(fat_ids[:109] + [FREE] * (109 - min(109, n_fat))),
    ).ljust(ss, b"\0")
    if sys.byteorder == "big":
        fat.byteswap()
    with path.open("wb") as f:
        f.write(header)
        f.write(fat.tobytes())
        rest = fat_ids[109:]
        for i in range(n_difat):
            ids = rest[i * (per - 1):(i + 1) * (per - 1)]
            ids += [FREE] * (per - 1 - len(ids))
            f.write(struct.pack(f"<{per}I", *ids, n_fat + i + 1 if i + 1 < n_difat else END))
        f.write(directory)
        f.write(struct.pack(f"<{len(minifat)}I", *minifat))
        f.write(bytes(ministream).ljust(n_ministream * ss, b"\0"))
        f.truncate((runs["big"][0] + runs["big"][1] + 1) * ss)
