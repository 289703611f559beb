"""The fixed parts of a compound file: the header and the special sector numbers."""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass

SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
HEADER = struct.Struct("<8s16sHHHHH6sIIIIIIIII")  # the 76 bytes before the header's DIFAT
HEADER_DIFAT = 109  # FAT sector numbers held by the header itself
HEADER_BYTES = 512  # what the header uses; version 4 pads it to a whole 4096-byte sector

MAXREGSECT = 0xFFFFFFFA
DIFSECT = 0xFFFFFFFC
FATSECT = 0xFFFFFFFD
ENDOFCHAIN = 0xFFFFFFFE
FREESECT = 0xFFFFFFFF
NOSTREAM = 0xFFFFFFFF

MINI_SECTOR = 64
MINI_CUTOFF = 4096
BYTE_ORDER = 0xFFFE
MINOR_VERSION = 0x003E
SECTOR_SHIFT = {3: 9, 4: 12}
MAX_FILE = 1 << 32  # 4 GiB: larger packages are refused


def sector_numbers(data: bytes | bytearray | memoryview) -> array[int]:
    """Little-endian 32-bit numbers (FAT, mini FAT and DIFAT sectors) as an array."""
    numbers = array("I")
    assert numbers.itemsize == 4
    numbers.frombytes(bytes(data))
    if sys.byteorder == "big":
        numbers.byteswap()
    return numbers


def sector_bytes(numbers: array[int]) -> bytes:
    """The inverse of :func:`sector_numbers`."""
    if sys.byteorder == "big":
        numbers = array("I", numbers)
        numbers.byteswap()
    return numbers.tobytes()


@dataclass(frozen=True)
class Header:
    """The header fields kmssign uses (the reserved ones and the CLSID are zero)."""

    version: int
    n_dir_sectors: int  # 0 in version 3
    n_fat_sectors: int
    first_dir: int
    first_minifat: int
    n_minifat_sectors: int
    first_difat: int
    n_difat_sectors: int
    difat: tuple[int, ...]  # the header's 109 FAT sector numbers
    minor_version: int = MINOR_VERSION
    transaction: int = 0

    @property
    def sector_size(self) -> int:
        return 1 << SECTOR_SHIFT[self.version]

    def pack(self) -> bytes:
        """The header sector: 512 bytes, padded with zeros to 4096 in version 4."""
        fixed = HEADER.pack(
            SIGNATURE, bytes(16), self.minor_version, self.version, BYTE_ORDER,
            SECTOR_SHIFT[self.version], 6, bytes(6), self.n_dir_sectors, self.n_fat_sectors,
            self.first_dir, self.transaction, MINI_CUTOFF, self.first_minifat,
            self.n_minifat_sectors, self.first_difat, self.n_difat_sectors,
        )
        difat = sector_bytes(array("I", self.difat))
        return (fixed + difat).ljust(self.sector_size, b"\0")


def parse_header(data: bytes) -> tuple[Header, str | None]:
    """The header in the first 512 bytes, and what is wrong with it (None when nothing)."""
    (_, clsid, minor, major, order, shift, mini_shift, _, n_dir, n_fat, first_dir, txn, cutoff,
     first_minifat, n_minifat, first_difat, n_difat) = HEADER.unpack_from(data)
    header = Header(
        version=major, n_dir_sectors=n_dir, n_fat_sectors=n_fat, first_dir=first_dir,
        first_minifat=first_minifat, n_minifat_sectors=n_minifat, first_difat=first_difat,
        n_difat_sectors=n_difat, difat=tuple(sector_numbers(data[HEADER.size:HEADER_BYTES])),
        minor_version=minor, transaction=txn,
    )
    problem = None
    if order != BYTE_ORDER:
        problem = f"byte order mark 0x{order:04x} (not 0xfffe)"
    elif major not in SECTOR_SHIFT:
        problem = f"unknown major version {major} (3 or 4)"
    elif shift != SECTOR_SHIFT[major]:
        problem = f"sector shift {shift} does not fit version {major}"
    elif mini_shift != 6:
        problem = f"mini sector shift {mini_shift} (not 6)"
    elif cutoff != MINI_CUTOFF:
        problem = f"mini stream cutoff {cutoff} (not 4096)"
    elif major == 3 and n_dir != 0:
        problem = "a version 3 header counts directory sectors"
    elif clsid != bytes(16):
        problem = "the header's class id is not zero"
    return header, problem
