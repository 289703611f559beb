"""A wheel's ``*.dist-info/RECORD``: CSV rows ``path,algorithm=digest,size``, the digest
urlsafe base64 without padding; RECORD's own row has neither. ``RECORD.jws`` and
``RECORD.p7s`` sign RECORD and are not listed in it."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kmssign.errors import WheelFormatError

SIGNATURE_NAMES = ("RECORD.jws", "RECORD.p7s")
WEAK = frozenset({"md5", "sha1"})


def find_record(names: Iterable[str]) -> str:
    """The name of the wheel's one ``NAME-VERSION.dist-info/RECORD``."""
    found = sorted(n for n in names if n.count("/") == 1 and n.endswith(".dist-info/RECORD"))
    if not found:
        raise WheelFormatError("no .dist-info/RECORD member (not a wheel?)")
    if len(found) > 1:
        raise WheelFormatError(f"more than one .dist-info/RECORD: {', '.join(found)}")
    return found[0]


def signature_members(names: Iterable[str], record_name: str) -> list[str]:
    """The members that sign RECORD (``RECORD.jws``, ``RECORD.p7s``) present beside it."""
    folder = record_name.rsplit("/", 1)[0]
    wanted = {f"{folder}/{s}" for s in SIGNATURE_NAMES}
    return sorted(n for n in names if n in wanted)


def encode_digest(algorithm: str, digest: bytes) -> str:
    return f"{algorithm}=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Expected:
    algorithm: str
    digest: str  # urlsafe base64, no padding
    size: int | None

    def new_hash(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


@dataclass
class Record:
    name: str
    rows: list[list[str]]
    newline: str

    def __post_init__(self) -> None:
        folder = self.name.rsplit("/", 1)[0]
        # RECORD itself and the signatures over it have no row with a hash
        self.unsigned = {self.name, *(f"{folder}/{s}" for s in SIGNATURE_NAMES)}
        self._by_path = {row[0]: row for row in self.rows}

    def expected(self, path: str) -> Expected:
        """What RECORD says ``path``'s bytes are; WheelFormatError if it says nothing."""
        row = self._by_path.get(path)
        if row is None or len(row) < 2 or "=" not in row[1]:
            raise WheelFormatError(f"RECORD has no hash for member {path!r}")
        algorithm, _, digest = row[1].partition("=")
        if algorithm not in hashlib.algorithms_guaranteed or algorithm in WEAK:
            raise WheelFormatError(f"RECORD hashes {path!r} with {algorithm!r}, which is "
                                   "unknown or too weak (use sha256)")
        size = None
        if len(row) > 2 and row[2] != "":
            try:
                size = int(row[2])
            except ValueError:
                raise WheelFormatError(f"RECORD gives {path!r} the size {row[2]!r}") from None
        return Expected(algorithm, digest.rstrip("="), size)

    def check(self, path: str, digest: bytes, size: int) -> None:
        """Refuse a member whose bytes do not match its row."""
        expected = self.expected(path)
        if encode_digest(expected.algorithm, digest) != f"{expected.algorithm}={expected.digest}":
            raise WheelFormatError(f"RECORD's {expected.algorithm} hash of member {path!r} "
                                   "does not match its bytes")
        if expected.size is not None and expected.size != size:
            raise WheelFormatError(f"RECORD gives member {path!r} {expected.size} bytes; "
                                   f"it has {size}")

    def updated(self, changes: Mapping[str, tuple[str, int]]) -> bytes:
        """RECORD with new ``(algorithm=digest, size)`` for the changed paths, the rows
        in their order, the rest as they were."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator=self.newline)
        for row in self.rows:
            if row[0] in changes:
                digest, size = changes[row[0]]
                row = [row[0], digest, str(size), *row[3:]]
            writer.writerow(row)
        return out.getvalue().encode("utf-8")


def parse_record(data: bytes, name: str, members: Iterable[str]) -> Record:
    """Parse RECORD; refuse duplicate rows and members it does not list."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise WheelFormatError(f"{name} is not UTF-8") from None
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise WheelFormatError(f"{name} is not valid CSV ({exc})") from None
    seen: set[str] = set()
    for row in rows:
        if row[0] in seen:
            raise WheelFormatError(f"{name} lists {row[0]!r} twice")
        seen.add(row[0])
    record = Record(name, rows, "\r\n" if "\r\n" in text else "\n")
    for member in members:
        if member not in seen and member not in record.unsigned and not member.endswith("/"):
            raise WheelFormatError(f"member {member!r} is not in RECORD")
    return record
