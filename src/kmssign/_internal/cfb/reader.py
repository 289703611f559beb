"""A compound file, opened strictly: every sector and mini sector is accounted for
(FAT, DIFAT, directory, mini FAT, mini stream, a stream's chain, or free), every chain
has exactly the length its size needs, and the directory is a tree of distinct names.
Anything else is refused with a one-line :class:`~kmssign.errors.CompoundFileError`
naming the file. Opening reads the header, the FAT, the directory and the mini FAT, never
the streams' data; every loop is bounded by the number of sectors.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Iterator
from typing import BinaryIO

from kmssign._internal.cfb.chains import ChainError, Chains
from kmssign._internal.cfb.directory import (
    ENTRY_SIZE,
    KINDS,
    ROOT,
    STREAM,
    UNUSED,
    Entry,
    RawEntry,
    decode_name,
    name_key,
)
from kmssign._internal.cfb.layout import (
    DIFSECT,
    ENDOFCHAIN,
    FATSECT,
    FREESECT,
    HEADER_BYTES,
    HEADER_DIFAT,
    MAX_FILE,
    MINI_CUTOFF,
    MINI_SECTOR,
    NOSTREAM,
    SIGNATURE,
    Header,
    parse_header,
    sector_numbers,
)
from kmssign.errors import CompoundFileError

MAX_DIRECTORY = 8 << 20  # bytes of directory entries kmssign reads (65536 entries)


class _Refused(Exception):
    """A reason, turned into a CompoundFileError naming the file by :meth:`open`."""


def _ceil(n: int, d: int) -> int:
    return -(-n // d)


class CompoundFile:
    """An open compound file (see the module's docstring). ``f`` stays in use: the
    streams are read from it on demand."""

    version: int
    sector_size: int
    root: Entry
    name: str
    size: int  # of the file, in bytes
    free_sectors: int  # sectors the FAT marks free (they hold nothing of any stream)

    def __init__(self, f: BinaryIO, name: str) -> None:
        self._f = f
        self.name = name

    @classmethod
    def open(cls, f: BinaryIO, name: str) -> CompoundFile:
        cf = cls(f, name)
        try:
            cf._load()
        except (_Refused, ChainError) as exc:
            raise CompoundFileError(f"{name}: {exc}") from None
        except OSError as exc:
            raise CompoundFileError(f"{name}: cannot read: {exc.strerror or exc}") from None
        return cf

    # -- reading the structure ------------------------------------------------------

    def _read(self, offset: int, n: int) -> bytes:
        self._f.seek(offset)
        data = self._f.read(n)
        if len(data) != n:
            raise _Refused(f"truncated: {n} bytes wanted at offset {offset}")
        return data

    def _sector(self, sector: int) -> bytes:
        return self._read((sector + 1) * self.sector_size, self.sector_size)

    def _load(self) -> None:
        size = self._f.seek(0, 2)
        self.size = size
        self._f.seek(0)
        head = self._f.read(HEADER_BYTES)
        if not head:
            raise _Refused("empty file (not a compound file)")
        if head[:8] != SIGNATURE[: len(head[:8])]:
            raise _Refused("not a compound file (no OLE2 signature)")
        if len(head) < HEADER_BYTES:
            raise _Refused(f"truncated compound file ({size} bytes, less than its header)")
        header, problem = parse_header(head)
        if problem:
            raise _Refused(f"bad compound file header: {problem}")
        if size > MAX_FILE:
            raise _Refused(f"compound file of {size} bytes is larger than 4 GiB")
        self.version = header.version
        ss = self.sector_size = header.sector_size
        if size < ss:
            raise _Refused(f"truncated compound file ({size} bytes, less than its header)")
        if ss > HEADER_BYTES and self._read(HEADER_BYTES, ss - HEADER_BYTES).strip(b"\0"):
            raise _Refused("bytes that do not belong in the header sector")
        if (size - ss) % ss:
            raise _Refused(f"ends in a partial sector of {(size - ss) % ss} bytes "
                           "(truncated, or bytes that do not belong)")
        self._nsec = (size - ss) // ss
        self._load_fat(header)
        self._load_directory(header)
        self._load_streams(header)
        stray = self._sectors.stray()
        if stray is not None:
            raise _Refused(f"sector {stray} is allocated but belongs to no stream "
                           "(bytes that do not belong)")
        self.free_sectors = self._sectors.free()
        last = self._sectors.owner.rfind(1)
        if last != self._nsec - 1:
            raise _Refused(f"{self._nsec - 1 - last} free sectors at the end of the file "
                           "(bytes that do not belong)")

    def _numbers(self, sector: int, what: str) -> array[int]:
        if sector >= self._nsec:
            raise _Refused(f"{what} sector 0x{sector:x} is past the end of the file")
        return sector_numbers(self._sector(sector))

    def _load_fat(self, header: Header) -> None:
        n_fat, per = header.n_fat_sectors, self.sector_size // 4
        if n_fat > self._nsec or header.n_difat_sectors > self._nsec:
            raise _Refused(f"the header counts {n_fat} FAT and {header.n_difat_sectors} DIFAT "
                           f"sectors, the file has {self._nsec} sectors (truncated?)")
        fat_sectors = list(header.difat[: min(n_fat, HEADER_DIFAT)])
        if any(s != FREESECT for s in header.difat[len(fat_sectors):]):
            raise _Refused("the header's DIFAT lists more FAT sectors than it counts")
        difat_sectors = []
        sector = header.first_difat
        for _ in range(header.n_difat_sectors):  # a loop shows as a sector listed twice
            difat_sectors.append(sector)
            numbers = self._numbers(sector, "DIFAT")
            wanted = min(n_fat - len(fat_sectors), per - 1)
            fat_sectors.extend(numbers[:wanted])
            if any(s != FREESECT for s in numbers[wanted:per - 1]):
                raise _Refused("a DIFAT sector lists more FAT sectors than the header counts")
            sector = numbers[per - 1]
        if sector not in (ENDOFCHAIN, FREESECT) or len(fat_sectors) < n_fat:
            raise _Refused(f"the DIFAT chain does not match its count of "
                           f"{header.n_difat_sectors} sectors for {n_fat} FAT sectors")
        fat = array("I")
        for sector in fat_sectors:
            fat.extend(self._numbers(sector, "FAT"))
        if len(fat) < self._nsec:
            raise _Refused(f"the FAT covers {len(fat)} sectors, the file has {self._nsec} "
                           "(bytes that do not belong)")
        beyond = len(fat) - self._nsec
        if fat[self._nsec:].count(FREESECT) != beyond:
            raise _Refused(f"the FAT claims more sectors than the {self._nsec} that exist "
                           "(truncated?)")
        self._fat = fat
        self._sectors = Chains(fat, self._nsec, "sector", "the end of the file")
        for kind, sectors, mark in (("FAT", fat_sectors, FATSECT),
                                    ("DIFAT", difat_sectors, DIFSECT)):
            for sector in sectors:
                self._sectors.claim_one(sector, f"the {kind}")
                if fat[sector] != mark:
                    raise _Refused(f"{kind} sector {sector} is not marked as one in the FAT")

    def _chain(self, start: int, what: str, count: int | None) -> list[int]:
        """Claim the chain from ``start`` (``count`` sectors, or up to ENDOFCHAIN when
        None) and return its sectors."""
        runs = self._sectors.claim(start, what, count)
        return [s for first, n in runs for s in range(first, first + n)]

    def _load_directory(self, header: Header) -> None:
        chain = self._chain(header.first_dir, "the directory", None)
        if header.version == 4 and header.n_dir_sectors not in (0, len(chain)):
            raise _Refused(f"the header counts {header.n_dir_sectors} directory sectors, "
                           f"the chain has {len(chain)}")
        if not chain:
            raise _Refused("the directory is empty")
        if len(chain) * self.sector_size > MAX_DIRECTORY:
            raise _Refused(f"a directory of {len(chain) * self.sector_size // ENTRY_SIZE} "
                           f"entries (kmssign reads {MAX_DIRECTORY // ENTRY_SIZE} at most)")
        raw = b"".join(self._sector(s) for s in chain)
        self._raw = [RawEntry.unpack(raw, i) for i in range(0, len(raw), ENTRY_SIZE)]
        self._children: dict[int, list[int]] = {}
        self._entries: dict[int, Entry] = {}
        if self._raw[0].kind != ROOT:
            raise _Refused("the first directory entry is not the root")
        self._entries[0] = self._entry(0)
        seen = bytearray(len(self._raw))
        seen[0] = 1
        pending = [0]
        while pending:
            storage = pending.pop()
            kids = self._walk_tree(storage, seen)
            self._children[storage] = kids
            pending.extend(s for s in kids if self._entries[s].kind == "storage")
        for sid, entry in enumerate(self._raw):
            if entry.kind != UNUSED and not seen[sid]:
                raise _Refused(f"directory entry {sid} is in no storage's tree")
        self.root = self._entries[0]

    def _entry(self, sid: int) -> Entry:
        raw = self._raw[sid]
        name = raw.raw_name()
        if name is None:
            raise _Refused(f"directory entry {sid} has a malformed name")
        size = raw.size & 0xFFFFFFFF if self.version == 3 else raw.size
        return Entry(sid=sid, name=decode_name(name), raw_name=name, kind=KINDS[raw.kind],
                     clsid=raw.clsid, size=size if raw.kind in (ROOT, STREAM) else 0,
                     state_bits=raw.state_bits, created=raw.created, modified=raw.modified,
                     start=raw.start)

    def _walk_tree(self, storage: int, seen: bytearray) -> list[int]:
        """The children of ``storage``, in order; each entry may be reached once only."""
        where = repr(self._entries[storage].name)
        kids: list[int] = []
        stack: list[int] = []
        node = self._raw[storage].child
        while stack or node != NOSTREAM:
            while node != NOSTREAM:
                if node >= len(self._raw):
                    raise _Refused(f"the tree of {where} points past the directory")
                if seen[node]:
                    raise _Refused(f"the directory tree has a cycle (entry {node} is "
                                   "reached twice)")
                if self._raw[node].kind not in KINDS or self._raw[node].kind == ROOT:
                    raise _Refused(f"the tree of {where} holds entry {node} of type "
                                   f"{self._raw[node].kind}")
                seen[node] = 1
                self._entries[node] = self._entry(node)
                stack.append(node)
                node = self._raw[node].left
            node = stack.pop()
            if kids:
                before, this = self._entries[kids[-1]], self._entries[node]
                order = (name_key(before.raw_name), name_key(this.raw_name))
                if order[0] == order[1]:
                    raise _Refused(f"duplicate name {this.name!r} in {where}")
                if order[0] > order[1]:
                    raise _Refused(f"the tree of {where} is out of order at {this.name!r}")
            kids.append(node)
            node = self._raw[node].right
        return kids

    def _load_streams(self, header: Header) -> None:
        root = self._entries[0]
        self._ministream = array("I", self._chain(
            root.start, "the mini stream", _ceil(root.size, self.sector_size)))
        n_mini = _ceil(root.size, MINI_SECTOR)
        minifat_chain = self._chain(header.first_minifat, "the mini FAT",
                                    0 if header.n_minifat_sectors == 0 else None)
        if len(minifat_chain) != header.n_minifat_sectors:
            raise _Refused(f"the header counts {header.n_minifat_sectors} mini FAT sectors, "
                           f"the chain has {len(minifat_chain)}")
        minifat = array("I")
        for sector in minifat_chain:
            minifat.extend(sector_numbers(self._sector(sector)))
        if len(minifat) < n_mini:
            raise _Refused(f"the mini FAT covers {len(minifat)} mini sectors, the mini stream "
                           f"has {n_mini} (bytes that do not belong)")
        # Past the mini stream's end there is nothing to claim; osslsigncode leaves an
        # ENDOFCHAIN there (on the first entry past the end), which describes no bytes.
        beyond = minifat[n_mini:]
        if beyond.count(FREESECT) + beyond.count(ENDOFCHAIN) != len(beyond):
            raise _Refused("the mini FAT claims more mini sectors than the mini stream has")
        self._minis = Chains(minifat, n_mini, "mini sector", "the mini stream")
        for entry in self._entries.values():
            if entry.kind != "stream" or entry.size == 0:
                continue
            what = f"stream {entry.name!r}"
            if entry.size >= MINI_CUTOFF:
                self._sectors.claim(entry.start, what, _ceil(entry.size, self.sector_size))
            else:
                self._minis.claim(entry.start, what, _ceil(entry.size, MINI_SECTOR))
        stray = self._minis.stray()
        if stray is not None:
            raise _Refused(f"mini sector {stray} is allocated but belongs to no stream "
                           "(bytes that do not belong)")

    # -- the public reading side ---------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every entry in the tree, the root first, then by sid."""
        return [self._entries[sid] for sid in sorted(self._entries)]

    def raw_entry(self, sid: int) -> RawEntry:
        """A copy of entry ``sid``'s fields as stored (a version 3 size's high half, which
        old writers left uninitialised, cleared)."""
        raw = dataclasses.replace(self._raw[sid])
        if self.version == 3:
            raw.size &= 0xFFFFFFFF
        return raw

    def children(self, entry: Entry) -> list[Entry]:
        """The direct children of a storage or the root, in the tree's (name) order."""
        return [self._entries[sid] for sid in self._children.get(entry.sid, [])]

    def find(self, parent: Entry, name: str) -> Entry | None:
        """The child of ``parent`` called ``name`` (compared as [MS-CFB] does: case aside)."""
        key = name_key(name.encode("utf-16-le", "surrogatepass"))
        for child in self.children(parent):
            if name_key(child.raw_name) == key:
                return child
        return None

    def read_stream(self, entry: Entry, chunk: int = 1 << 20) -> Iterator[bytes]:
        """A stream's bytes in pieces of at most ``chunk`` bytes, from the file kmssign
        opened."""
        return self.stream_from(self._f, entry, chunk)

    def stream_from(self, f: BinaryIO, entry: Entry, chunk: int = 1 << 20) -> Iterator[bytes]:
        """As :meth:`read_stream`, reading ``f`` (the same file, another handle)."""
        if entry.kind != "stream":
            raise ValueError(f"{entry.name!r} is a {entry.kind}, not a stream")
        for offset, length in self._runs(entry):
            f.seek(offset)
            while length:
                data = f.read(min(length, chunk))
                if not data:
                    raise CompoundFileError(f"{self.name}: truncated while reading "
                                            f"stream {entry.name!r} (did the file change?)")
                length -= len(data)
                yield data

    def _runs(self, entry: Entry) -> Iterator[tuple[int, int]]:
        """(file offset, length) of each contiguous piece of a stream, in order."""
        run_start, run_length = -1, 0
        for offset, n in self._pieces(entry):
            if offset == run_start + run_length:
                run_length += n
                continue
            if run_length:
                yield run_start, run_length
            run_start, run_length = offset, n
        if run_length:
            yield run_start, run_length

    def _pieces(self, entry: Entry) -> Iterator[tuple[int, int]]:
        ss, left = self.sector_size, entry.size
        if left >= MINI_CUTOFF:
            for first, count in self._sectors.runs(entry.start, _ceil(left, ss)):
                yield (first + 1) * ss, min(count * ss, left)
                left -= count * ss
            return
        for first, count in self._minis.runs(entry.start, _ceil(left, MINI_SECTOR)):
            for mini in range(first, first + count):
                pos = mini * MINI_SECTOR
                yield (self._ministream[pos // ss] + 1) * ss + pos % ss, min(MINI_SECTOR, left)
                left -= MINI_SECTOR
