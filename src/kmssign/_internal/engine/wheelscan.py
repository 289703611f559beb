"""Opening a wheel to sign or verify it: its zip structure and RECORD checked, every
member's bytes hashed against RECORD, and the PE members the globs select extracted into
a work directory (found by content, as loose files are).

Members are read on a few threads at once (zlib and hashlib let go of the GIL), each
thread with its own handle on the wheel; memory stays at a few chunks per thread.
Members named like PE files are read first, then the largest first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kmssign._internal.engine.pipeline import local_threads
from kmssign._internal.pe.image import looks_like_pe
from kmssign._internal.wheel.record import Record, find_record, parse_record, signature_members
from kmssign._internal.wheel.streams import read_member
from kmssign._internal.wheel.zipdir import Archive, Member, read_archive
from kmssign.errors import WheelFormatError

MAX_RECORD = 256 << 20  # a RECORD larger than this is refused rather than read
_BATCH_BYTES = 4 << 20  # members are handed to the threads in batches of about this
_BATCH_COUNT = 256
_PE_SUFFIXES = (".dll", ".pyd", ".exe", ".sys")


def member_path(wheel: Path, name: str) -> Path:
    """How a member is named in results: ``dist/x.whl!pkg/a.dll``."""
    return Path(f"{wheel}!{name}")


@dataclass(frozen=True)
class PEMember:
    wheel: Path
    member: Member
    extracted: Path  # its bytes, in the work directory

    @property
    def display(self) -> Path:
        return member_path(self.wheel, self.member.name)


@dataclass(frozen=True)
class ScannedWheel:
    path: Path
    archive: Archive
    record: Record
    record_member: Member
    signatures: list[str]  # RECORD.jws / RECORD.p7s members
    pe_members: list[PEMember]
    stat: os.stat_result  # to notice a wheel changed between the scan and the write


def _reading_order(members: Sequence[Member], select: Callable[[str], bool]) -> list[Member]:
    """The members in the order they are read: those whose names say PE file first (so
    that signing's work on them can start while the rest is read), then the largest
    first (so that no thread is left with a large one at the end). Which members are
    PE files is still decided by their bytes."""
    def key(member: Member) -> tuple[bool, int]:
        named_pe = member.name.lower().endswith(_PE_SUFFIXES) and select(member.name)
        return not named_pe, -member.compress_size

    return sorted(members, key=key)


def _batches(members: Sequence[Member]) -> Iterator[list[Member]]:
    batch: list[Member] = []
    size = 0
    for member in members:
        batch.append(member)
        size += member.compress_size
        if size >= _BATCH_BYTES or len(batch) >= _BATCH_COUNT:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _read_record(f: BinaryIO, archive: Archive) -> tuple[Record, Member]:
    names = [m.name for m in archive.members]
    record_name = find_record(names)
    member = next(m for m in archive.members if m.name == record_name)
    if member.file_size > MAX_RECORD:
        raise WheelFormatError(f"{record_name} is larger than {MAX_RECORD >> 20} MiB")
    return parse_record(b"".join(read_member(f, member)), record_name, names), member


class _Scan:
    """One wheel's members, checked on worker threads."""

    def __init__(
        self,
        path: Path,
        record: Record,
        select: Callable[[str], bool],
        workdir: Path,
        on_pe: Callable[[PEMember], None] | None,
    ) -> None:
        self.path = path
        self.record = record
        self.select = select
        self.workdir = workdir
        self.on_pe = on_pe

    def batch(self, members: list[Member]) -> list[PEMember]:
        found = []
        with open(self.path, "rb") as f:
            for member in members:
                extracted = self.member(f, member)
                if extracted is not None:
                    found.append(PEMember(self.path, member, extracted))
                    if self.on_pe is not None:
                        self.on_pe(found[-1])
        return found

    def member(self, f: BinaryIO, member: Member) -> Path | None:
        """Check one member against RECORD; return where it was extracted if it is a PE
        file the globs select."""
        if member.name == self.record.name:
            return None
        listed = member.name not in self.record.unsigned and not member.is_dir
        hasher = self.record.expected(member.name).new_hash() if listed else None
        wanted = not member.is_dir and self.select(member.name)
        target = self.workdir / str(member.header_offset)
        out: BinaryIO | None = None
        size = 0
        try:
            for chunk in read_member(f, member, check_crc=hasher is None):
                if size == 0 and wanted and chunk[:2] == b"MZ":
                    out = open(target, "wb")  # noqa: SIM115 - closed below
                if hasher is not None:
                    hasher.update(chunk)
                if out is not None:
                    out.write(chunk)
                size += len(chunk)
        finally:
            if out is not None:
                out.close()
        if hasher is not None:
            self.record.check(member.name, hasher.digest(), size)
        if out is None:
            return None
        if looks_like_pe(target):
            return target
        target.unlink()
        return None


def scan_wheel(
    path: Path,
    workdir: Path,
    select: Callable[[str], bool],
    on_pe: Callable[[PEMember], None] | None = None,
) -> ScannedWheel:
    """Read and check ``path``; WheelFormatError (naming the member) for any problem.

    ``on_pe`` is called (on a worker thread) with each PE member as soon as it has been
    extracted and its bytes matched RECORD, while the other members are still read."""
    workdir.mkdir(parents=True, exist_ok=True)
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        archive = read_archive(f)
        record, record_member = _read_record(f, archive)
    scan = _Scan(path, record, select, workdir, on_pe)
    with ThreadPoolExecutor(local_threads(), thread_name_prefix="kmssign-wheel") as pool:
        batches = _batches(_reading_order(archive.members, select))
        found = [pe for batch in pool.map(scan.batch, batches) for pe in batch]
    position = {member.name: n for n, member in enumerate(archive.members)}
    found.sort(key=lambda pe: position[pe.member.name])  # reported in the wheel's order
    return ScannedWheel(
        path=path,
        archive=archive,
        record=record,
        record_member=record_member,
        signatures=signature_members([m.name for m in archive.members], record.name),
        pe_members=found,
        stat=stat,
    )
