"""Sector chains: following a FAT (or the mini FAT) from a start, every sector claimed by
one chain at most, in runs of contiguous sectors so that a chain of a million sectors
laid out in order costs a few dozen steps, not a million."""

from __future__ import annotations

from array import array
from collections.abc import Iterator

from kmssign._internal.cfb.layout import ENDOFCHAIN, FREESECT, MAXREGSECT

MAX_RUN = 1 << 16  # sectors checked at once for contiguity


class ChainError(Exception):
    """What is wrong with a chain, in words for the one-line refusal."""


class Chains:
    """The chains of one table: ``table[i]`` is the sector after ``i`` in its chain."""

    def __init__(self, table: array[int], count: int, unit: str, end: str) -> None:
        self.table = table
        self.count = count  # sectors that exist
        self.owner = bytearray(count)  # 1 once a sector belongs to a chain
        self.unit = unit  # "sector", "mini sector"
        self.end = end  # what lies past the last sector: "the end of the file", ...

    def claim_one(self, sector: int, what: str) -> None:
        """Claim one sector for ``what`` (a FAT or DIFAT sector)."""
        self._check(sector, what)
        if self.owner[sector]:
            raise ChainError(f"{self.unit} {sector} is used twice ({what})")
        self.owner[sector] = 1

    def _check(self, sector: int, what: str) -> None:
        if sector >= self.count:
            where = "a special value" if sector > MAXREGSECT else f"past {self.end}"
            raise ChainError(f"the chain of {what} points to {self.unit} 0x{sector:x}, {where}")

    def claim(self, start: int, what: str, length: int | None) -> list[tuple[int, int]]:
        """Claim the chain from ``start``: ``length`` sectors exactly, or up to ENDOFCHAIN
        when length is None. Returns its runs of contiguous sectors (first, count).
        An empty chain's start names no sector: ENDOFCHAIN, as [MS-CFB] says, or any
        other value a writer left there."""
        runs: list[tuple[int, int]] = []
        if length == 0:
            return runs
        table, owner = self.table, self.owner
        sector, left, block, got = start, length, 1, 0
        while left != 0:
            if sector == ENDOFCHAIN:
                if length is None:
                    break
                raise ChainError(f"the chain of {what} ends after {got} of {length} "
                                 f"{self.unit}s")
            self._check(sector, what)
            k = min(block, self.count - sector, MAX_RUN if left is None else left)
            if k > 1 and table[sector:sector + k - 1] != array("I", range(sector + 1,
                                                                         sector + k)):
                k = 1
            taken = owner.find(1, sector, sector + k)
            if taken != -1:
                raise ChainError(f"{self.unit} {taken} is used twice (the chain of {what} "
                                 "loops or crosses another)")
            owner[sector:sector + k] = b"\1" * k
            if runs and runs[-1][0] + runs[-1][1] == sector:
                runs[-1] = (runs[-1][0], runs[-1][1] + k)
            else:
                runs.append((sector, k))
            got += k
            if left is not None:
                left -= k
            block = min(block * 2, MAX_RUN) if k == block else 2
            sector = table[sector + k - 1]
        if sector != ENDOFCHAIN:
            if sector < self.count and owner[sector]:
                raise ChainError(f"the chain of {what} loops or crosses another chain "
                                 f"(at {self.unit} {sector})")
            raise ChainError(f"the chain of {what} is longer than its size")
        return runs

    def runs(self, start: int, length: int) -> Iterator[tuple[int, int]]:
        """The runs of a chain :meth:`claim` accepted (first, count), in order."""
        table, sector, left, block = self.table, start, length, 1
        while left > 0:
            k = min(block, self.count - sector, left)
            if k > 1 and table[sector:sector + k - 1] != array("I", range(sector + 1,
                                                                         sector + k)):
                k = 1
            yield sector, k
            left -= k
            block = min(block * 2, MAX_RUN) if k == block else 2
            sector = table[sector + k - 1]

    def stray(self) -> int | None:
        """The first sector the table allocates that belongs to no chain, if any."""
        sector = self.owner.find(0)
        while sector != -1:
            if self.table[sector] != FREESECT:
                return sector
            sector = self.owner.find(0, sector + 1)
        return None

    def free(self) -> int:
        return self.count - self.owner.count(1)
