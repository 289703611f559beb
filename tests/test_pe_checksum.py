"""The PE checksum against its word-by-word definition, on generated buffers of odd sizes
and on real files signed through every pass (inline, worker threads, the kernel copy)."""

from __future__ import annotations

import array
import random
import sys
from pathlib import Path

import pytest

from kmssign._internal.pe import checksum, hashing, reading
from kmssign._internal.pe.image import parse_pe, stored_checksum
from kmssign._internal.pe.signedcopy import begin_signed_copy, finish_signed_copy
from tests.support.peutil import LAUNCHERS


def definition(data: bytes) -> int:
    """The checksum as specified: 16-bit little-endian words added one at a time, the
    carry folded back after each addition, then the file length added."""
    padded = data + bytes(len(data) & 1)
    total = 0
    for i in range(0, len(padded), 2):
        total += padded[i] | (padded[i + 1] << 8)
        total = (total & 0xFFFF) + (total >> 16)
    return total + len(data)


def definition_of_file(data: bytes, checksum_offset: int) -> int:
    """:func:`definition` with the CheckSum field counted as zero, for large files: the
    words summed first and the carries folded at the end, which gives the same value
    (checked against :func:`definition` below)."""
    zeroed = bytearray(data)
    zeroed[checksum_offset : checksum_offset + 4] = bytes(4)
    if len(zeroed) & 1:
        zeroed.append(0)
    words = array.array("H")
    words.frombytes(bytes(zeroed))
    if sys.byteorder == "big":
        words.byteswap()
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total + len(data)


SIZES = [0, 1, 2, 3, 7, 4095, 16383, 16384, 16385, 32767, 49153, 65535, 100001]


def buffers() -> list[bytes]:
    rng = random.Random(24)
    out = [rng.randbytes(n) for n in SIZES]
    out += [rng.randbytes(rng.randrange(1, 200_000) | 1) for _ in range(6)]  # odd sizes
    out += [b"\xff" * n for n in (1, 16385, 131071)]  # the most carries
    out += [b"\xff\xff" + bytes(6), bytes(16385)]  # a sum of 0xFFFF; all zeros
    return out


def test_word_sum_is_the_word_by_word_sum() -> None:
    for data in buffers():
        expected = (definition(data) - len(data)) % 0xFFFF
        assert checksum.word_sum_python(data) == expected, len(data)
        assert checksum.word_sum_python(memoryview(data)) == expected, len(data)
        assert checksum.word_sum_python(bytearray(data)) == expected, len(data)


def test_checksum_of_whole_buffers_is_the_definition() -> None:
    for data in buffers():
        acc = checksum.Checksum()
        acc.add(data, 0)
        assert acc.value(len(data)) == definition(data), len(data)


def test_pieces_at_odd_offsets_and_in_any_order() -> None:
    rng = random.Random(7)
    for size in (70_001, 131_073):
        data = rng.randbytes(size)
        cuts = sorted({*rng.sample(range(1, size), 9), size})
        pieces = list(zip([0, *cuts[:-1]], cuts, strict=True))
        assert any(a & 1 for a, _ in pieces)
        rng.shuffle(pieces)
        acc = checksum.Checksum()
        for a, b in pieces:
            acc.add(memoryview(data)[a:b], a)
        assert acc.value(size) == definition(data)


def test_the_large_file_reference_agrees_with_the_definition() -> None:
    rng = random.Random(3)
    for data in [rng.randbytes(50_001), b"\xff" * 40_000, LAUNCHERS["t64.exe"].read_bytes()]:
        assert definition_of_file(data, 0) == definition(bytes(4) + data[4:])


def sign_copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as f, open(dst, "w+b") as out:
        _, state = begin_signed_copy(f, parse_pe(f), "sha256", out)
        finish_signed_copy(out, state, b"\x30\x82\x01\x00" + bytes(256))


@pytest.mark.parametrize(
    "overlay",
    [
        1001,  # inline
        hashing.THREAD_MIN + 12_345,  # worker threads, read through buffers
        reading.LARGE + 54_321,  # the kernel's copy, read through memory maps
    ],
    ids=["inline", "threads", "kernel-copy"],
)
def test_signed_files_carry_the_defined_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overlay: int
) -> None:
    """Every pass of signing, with the pure-Python sum, writes the checksum the definition
    gives for the finished file; the file is of an odd size before its table is added."""
    monkeypatch.setattr(checksum, "word_sum", checksum.word_sum_python)
    src = tmp_path / "big.exe"
    src.write_bytes(LAUNCHERS["t64.exe"].read_bytes() + random.Random(overlay).randbytes(overlay))
    assert src.stat().st_size & 1
    dst = tmp_path / "signed.exe"
    sign_copy(src, dst)
    data = dst.read_bytes()
    with open(dst, "rb") as f:
        image = parse_pe(f)
        stored = stored_checksum(f, image)
    assert stored == definition_of_file(data, image.checksum_offset)


def test_pure_python_sum_shortens_the_switch_interval_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pure-Python sum holds the GIL: while it runs beside the hashing thread, the
    interpreter switches threads more often, and the old interval is back afterwards."""
    seen: list[float] = []

    def recording(buf: checksum.Buffer) -> int:
        seen.append(sys.getswitchinterval())
        return checksum.word_sum_python(buf)

    monkeypatch.setattr(checksum, "word_sum", recording)
    monkeypatch.setattr(hashing, "holds_gil", lambda: True)
    before = sys.getswitchinterval()
    src = tmp_path / "big.exe"
    src.write_bytes(LAUNCHERS["t64.exe"].read_bytes() + bytes(hashing.THREAD_MIN))
    sign_copy(src, tmp_path / "signed.exe")
    assert seen
    assert max(seen[:-2]) < before  # the last two are the table, after the pass
    assert sys.getswitchinterval() == before
