"""Large files: the kernel-copy path (copy_file_range beside the hashing pass) and its
fallback produce the same, valid signed file as the streaming copy."""

from __future__ import annotations

import errno
import os
import random
import threading
from pathlib import Path

import pytest

from kmssign.errors import PEFormatError
from kmssign.pe import kernelcopy, reading
from kmssign.pe.checksum import pe_checksum
from kmssign.pe.digest import authenticode_digest
from kmssign.pe.image import parse_pe, stored_checksum
from tests import peutil
from tests.helpers import run_cli, sign_args
from tests.pki import TestPKI


def _large_pe(path: Path, mib: int = 9, seed: int | None = None) -> Path:
    with open(path, "wb") as out:
        out.write(peutil.LAUNCHERS["t64.exe"].read_bytes())
        block = random.Random(seed).randbytes(1 << 20) if seed is not None else os.urandom(1 << 20)
        for _ in range(mib):
            out.write(block)
        out.write(b"odd tail")  # not a multiple of 8
    return path


_SIGNED_BY_VARIANT: dict[str, bytes] = {}


@pytest.mark.osslsigncode
@pytest.mark.parametrize("mapped", [True, False], ids=["mapped", "read"])
@pytest.mark.parametrize("kernel_copy", ["available", "refused"])
def test_large_file_signs_the_same_either_way(
    capsys,
    pki: TestPKI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kernel_copy: str,
    mapped: bool,
) -> None:
    if not mapped:
        monkeypatch.setattr(reading, "mappable", lambda fd, end: False)
    calls: list[int] = []
    real = os.copy_file_range

    def copy_file_range(*args: int) -> int:
        calls.append(1)
        if kernel_copy == "refused":
            raise OSError(errno.EXDEV, "cross-device")
        return real(*args)

    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    path = _large_pe(tmp_path / "big.exe", seed=3)
    code, out, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    assert calls, "the kernel copy was not tried"
    peutil.osslsigncode_verify(path, pki.root_pem)
    with open(path, "rb") as f:
        image = parse_pe(f)
        assert pe_checksum(f, image) == stored_checksum(f, image)
        assert authenticode_digest(f, image, "sha256") == peutil.osslsigncode_digest(path)
    assert b"odd tail" in path.read_bytes()[-(1 << 16) :]
    # Every way through (mapped or read, kernel or streaming copy) writes the same bytes.
    _SIGNED_BY_VARIANT[f"{kernel_copy}-{mapped}"] = path.read_bytes()
    assert len(set(_SIGNED_BY_VARIANT.values())) == 1


def test_mapped_windows_refuse_a_file_cut_short(tmp_path: Path) -> None:
    """A file shorter than the image end is refused before it is mapped (a read past the
    end of a mapping would kill the process)."""
    path = _large_pe(tmp_path / "big.exe", mib=4)
    size = path.stat().st_size
    with open(path, "rb") as f:
        windows = reading.mapped_windows(f.fileno(), 0, size)
        first_offset, first = next(windows)
        assert first_offset == 0 and bytes(first[:2]) == b"MZ"
        del first
        os.truncate(path, reading.WINDOW + 5)
        with pytest.raises(PEFormatError, match="changed while"):
            list(windows)


@pytest.mark.posix
def test_full_disk_at_preallocation_fails_cleanly(
    capsys, pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(fd: int, offset: int, length: int) -> int:
        return errno.ENOSPC

    monkeypatch.setattr(kernelcopy, "_fallocate", lambda: no_space)
    path = _large_pe(tmp_path / "big.exe")
    before = path.read_bytes()
    code, out, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert code == 1
    assert f"failed: {path}: no space left" in err, err
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.exe"]
    assert not [t.name for t in threading.enumerate() if t.name.startswith("kmssign-")]


@pytest.mark.osslsigncode
@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.ENOSYS])
def test_filesystem_without_preallocation_still_signs(
    capsys, pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    tried: list[int] = []

    def unsupported(fd: int, offset: int, length: int) -> int:
        tried.append(length)
        return code

    monkeypatch.setattr(kernelcopy, "_fallocate", lambda: unsupported)
    path = _large_pe(tmp_path / "big.exe")
    code_, out, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert code_ == 0, err
    assert len(tried) == 1 and tried[0] >= 9 << 20  # tried once, for the whole image
    peutil.osslsigncode_verify(path, pki.root_pem)


def test_mapped_digest_without_madvise_and_through_reads_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the OS has no madvise (Windows) the mapped pass still works; it and the
    read pass give the same digest and checksum (what `verify` computes)."""
    path = _large_pe(tmp_path / "big.exe", seed=5)

    def digest_and_checksum() -> tuple[bytes, int]:
        with open(path, "rb") as f:
            image = parse_pe(f)
            return authenticode_digest(f, image, "sha256"), pe_checksum(f, image)

    mapped = digest_and_checksum()
    monkeypatch.setattr(reading, "_SEQUENTIAL", None)
    assert digest_and_checksum() == mapped
    monkeypatch.setattr(reading, "mappable", lambda fd, end: False)
    assert digest_and_checksum() == mapped


@pytest.mark.posix
def test_fallocate_reserves_blocks_here(tmp_path: Path) -> None:
    """The libc binding itself: on this Linux machine it reserves the blocks."""
    reserve = kernelcopy._fallocate()
    assert reserve is not None
    with open(tmp_path / "reserved", "wb") as f:
        assert reserve(f.fileno(), 0, 3 << 20) == 0
        assert os.fstat(f.fileno()).st_size == 3 << 20
        assert os.fstat(f.fileno()).st_blocks * 512 >= 3 << 20
        assert reserve(-1, 0, 4096) == errno.EBADF
