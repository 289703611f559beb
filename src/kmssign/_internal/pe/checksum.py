"""The PE image checksum (OptionalHeader.CheckSum), computed incrementally, and the pass
that computes it for a whole file.

The algorithm sums the file as little-endian 16-bit words with end-around carry (the
running sum is folded to 16 bits after every addition), then adds the file length.
Because ``2**16 == 1 (mod 0xFFFF)``, the folded sum is the plain sum of the words modulo
``0xFFFF``, except that a non-zero sum that is a multiple of ``0xFFFF`` folds to
``0xFFFF`` and not 0. That lets a whole buffer be reduced at once: read as one
little-endian integer, its value modulo ``0xFFFF`` equals its word sum modulo ``0xFFFF``.

numpy, when importable, is used as an optional accelerator for large buffers (about
10x faster; imported only for files large enough to repay the import, never required);
the pure-Python path gives identical results and is always available.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO

from kmssign._internal.pe.image import PEImage
from kmssign._internal.pe.reading import Data, chunks

_MOD = 0xFFFF

Buffer = bytes | bytearray | memoryview


_PIECE = 16 << 10  # bytes made into one integer at a time by word_sum_python (even)


def word_sum_python(buf: Buffer) -> int:
    """Sum of the little-endian 16-bit words of ``buf`` (zero-padded to even), mod 0xFFFF.

    The buffer is read as integers of ``_PIECE`` bytes: each is congruent to its own word
    sum (every piece starts at an even offset), so their plain sum is congruent to the
    buffer's, and only that sum, a number of ``_PIECE`` bytes, is divided. Reducing one
    integer of the whole buffer instead costs a division per 30-bit digit, three times
    the conversion itself. The pieces also keep each step short: between two of them
    the GIL can pass to the hashing thread.
    """
    view = memoryview(buf)
    from_bytes = int.from_bytes
    total = sum(from_bytes(view[i : i + _PIECE], "little") for i in range(0, len(view), _PIECE))
    return total % _MOD


_numpy: Any = None
_numpy_checked = False


def _load_numpy() -> Any:
    """numpy if it can be imported (looked up once, on first need), else None."""
    global _numpy, _numpy_checked
    if not _numpy_checked:
        _numpy_checked = True
        try:
            import numpy

            _numpy = numpy
        except ImportError:  # an optional accelerator only
            _numpy = None
    return _numpy


def numpy_available() -> bool:
    return _load_numpy() is not None


def word_sum_numpy(buf: Buffer) -> int:
    """Same result as :func:`word_sum_python`, about 20x faster (that path without numpy)."""
    np = _load_numpy()
    if np is None:
        return word_sum_python(buf)
    # A little-endian 32-bit word w0 + w1 * 2**16 is congruent to w0 + w1 mod 0xFFFF,
    # so summing 32-bit words gives the same residue with half the elements.
    n = len(buf)
    whole = n & ~3
    total = 0
    if whole:
        words = np.frombuffer(buf, dtype="<u4", count=whole // 4)
        total = int(words.sum(dtype=np.uint64))
    if whole != n:
        total += int.from_bytes(buf[whole:], "little")
    return total % _MOD


_NUMPY_MIN = 1 << 16  # smaller buffers are not worth a call into numpy
# Importing numpy takes about as long as checksumming 50 MiB without it: it is imported
# for a file at least this large, and then used for every buffer of _NUMPY_MIN or more.
ACCELERATE_MIN = 32 << 20


def accelerate_for(size: int) -> None:
    """Get ready to checksum ``size`` bytes: import numpy when that pays off."""
    if size >= ACCELERATE_MIN:
        _load_numpy()


def word_sum_auto(buf: Buffer) -> int:
    """numpy's sum once numpy is loaded (see :func:`accelerate_for`), Python's otherwise."""
    if _numpy is not None and len(buf) >= _NUMPY_MIN:
        return word_sum_numpy(buf)
    return word_sum_python(buf)


#: The implementation in use; tests swap it to compare both paths.
word_sum: Callable[[Buffer], int] = word_sum_auto


def holds_gil() -> bool:
    """Whether summing a large buffer holds the GIL all along (the pure-Python sum), as
    numpy's sum, which drops it, does not."""
    return _numpy is None or word_sum is word_sum_python


class Checksum:
    """Accumulates the PE checksum over pieces of a file given with their file offsets.

    Pieces may come in any order and may start at odd offsets; bytes never added count
    as zero (that is how the CheckSum field itself is left out).
    """

    __slots__ = ("_nonzero", "_total")

    def __init__(self) -> None:
        self._total = 0
        self._nonzero = False

    def add(self, buf: Buffer, offset: int) -> None:
        if not buf:
            return
        residue = word_sum(buf)
        if offset & 1:
            # Every byte moves to the other half of its word: weight 2**8 instead of 1.
            residue = (residue << 8) % _MOD
        self._total = (self._total + residue) % _MOD
        if not self._nonzero:
            self._nonzero = residue != 0 or any(bytes(buf))

    def value(self, file_size: int) -> int:
        """The final checksum for a file of ``file_size`` bytes."""
        folded = self._total
        if folded == 0 and self._nonzero:
            folded = _MOD
        return (folded + file_size) & 0xFFFFFFFF


def reference_checksum(data: bytes, checksum_offset: int) -> int:
    """Word-by-word fold, straight from the definition; slow, for tests of small files."""
    padded = bytearray(data)
    padded[checksum_offset : checksum_offset + 4] = bytes(4)
    if len(padded) & 1:
        padded.append(0)
    total = 0
    for i in range(0, len(padded), 2):
        total += padded[i] | (padded[i + 1] << 8)
        total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFFFFFF


def pe_checksum(f: BinaryIO, image: PEImage) -> int:
    """The PE checksum of the file as it is (CheckSum field counted as zero)."""
    acc = Checksum()
    accelerate_for(image.size)
    cks = image.checksum_offset
    for offset, data in chunks(f, 0, image.size):
        piece: Data = data
        if offset < cks + 4 and cks < offset + len(data):
            zeroed = bytearray(data)
            lo, hi = max(cks, offset) - offset, min(cks + 4, offset + len(data)) - offset
            zeroed[lo:hi] = bytes(hi - lo)
            piece = bytes(zeroed)
        acc.add(piece, offset)
    return acc.value(image.size)

