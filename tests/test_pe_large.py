"""Large files: the kernel-copy path (copy_file_range beside the hashing pass) and its
fallback produce the same, valid signed file as the streaming copy."""

from __future__ import annotations

import errno
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kmssign._internal.net import deadline
from kmssign._internal.pe import kernelcopy, reading
from kmssign._internal.pe.checksum import pe_checksum
from kmssign._internal.pe.digest import authenticode_digest
from kmssign._internal.pe.image import parse_pe, stored_checksum
from kmssign._internal.pe.signedcopy import begin_signed_copy
from tests.support import peutil
from tests.support.helpers import run_cli, sign_args
from tests.support.pki import TestPKI


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
@pytest.mark.posix  # os.copy_file_range
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


# Runs kmssign with its hashing wrapped: once CUT_AT bytes are hashed, the file being
# signed or verified is cut to 4 KiB, as another process truncating it would. A read of a
# mapped page past the new end would kill the process with SIGBUS.
_CUTTER = """
import os, sys
from kmssign._internal.pe import digest, kernelcopy, reading, signedcopy
target, cut_at = sys.argv[1], int(sys.argv[2])
real = reading.new_hash

class Cutting:
    def __init__(self, h):
        self.h, self.seen = h, 0
    def update(self, data):
        self.seen += len(data)
        if self.seen > cut_at and os.path.getsize(target) > 4096:
            os.truncate(target, 4096)
        self.h.update(data)
    def digest(self):
        return self.h.digest()

for module in (reading, digest, kernelcopy, signedcopy):
    module.new_hash = lambda name: Cutting(real(name))
from kmssign.frontends.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def _run_while_cutting(path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CUTTER, str(path), str(8 << 20), *argv],
        capture_output=True, text=True, timeout=120, check=False,
    )


def _one_clean_failure(proc: subprocess.CompletedProcess[str], path: Path) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)  # -7: SIGBUS
    failures = [line for line in proc.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failures) == 1, proc.stderr
    assert failures[0].startswith(f"failed: {path}: "), failures
    assert "changed" in failures[0] or "shorter" in failures[0], failures
    assert "Traceback" not in proc.stderr


@pytest.mark.posix  # Windows truncates no open file
def test_a_file_cut_short_while_signing_is_a_clean_failure(pki: TestPKI, tmp_path: Path) -> None:
    path = _large_pe(tmp_path / "big.exe", mib=64)
    original = path.read_bytes()
    proc = _run_while_cutting(path, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    _one_clean_failure(proc, path)
    assert path.read_bytes() == original[:4096]  # as the other process left it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.exe"]


@pytest.mark.posix  # Windows truncates no open file
def test_a_file_cut_short_while_verifying_is_a_clean_failure(
    capsys, pki: TestPKI, tmp_path: Path
) -> None:
    path = _large_pe(tmp_path / "big.exe", mib=64)
    code, _, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    proc = _run_while_cutting(path, "verify", "--no-chain", str(path))
    _one_clean_failure(proc, path)


@pytest.mark.posix  # os.copy_file_range
def test_the_signing_pass_maps_only_its_own_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signing pass maps the kernel's copy (the temporary file), never the original."""
    path = _large_pe(tmp_path / "big.exe", mib=12)
    mapped: list[int] = []
    real_mmap = reading.mmap.mmap

    def spy(fd: int, *args: object, **kwargs: object) -> object:
        mapped.append(os.fstat(fd).st_ino)
        return real_mmap(fd, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reading.mmap, "mmap", spy)
    with open(path, "rb") as f, open(tmp_path / "copy", "w+b") as out:
        image = parse_pe(f)
        begin_signed_copy(f, image, "sha256", out)
        authenticode_digest(f, image, "sha256")
        pe_checksum(f, image)
        copy = os.fstat(out.fileno()).st_ino
    assert mapped and set(mapped) == {copy}


@pytest.mark.posix  # fallocate
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
    # no call left running (runner threads kept idle for the next calls are fine)
    assert not [t.name for t in threading.enumerate()
                if t.name.startswith("kmssign-") and t.name != deadline.IDLE]


@pytest.mark.osslsigncode
@pytest.mark.posix  # fallocate
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


def test_mapped_copy_without_madvise_and_reads_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signing pass reads the kernel's copy through maps (with madvise, or without it
    as on Windows) or, where the copy cannot be mapped, the original through buffers;
    verify reads through buffers. All give the same digest and checksum."""
    path = _large_pe(tmp_path / "big.exe", seed=5)

    def signing_pass() -> tuple[bytes, int]:
        with open(path, "rb") as f, open(tmp_path / "copy", "w+b") as out:
            digest, state = begin_signed_copy(f, parse_pe(f), "sha256", out)
            return digest, state.checksum.value(state.image_length)

    mapped = signing_pass()
    with open(path, "rb") as f:
        image = parse_pe(f)
        assert authenticode_digest(f, image, "sha256") == mapped[0]
    monkeypatch.setattr(reading, "_SEQUENTIAL", None)
    assert signing_pass() == mapped
    monkeypatch.setattr(reading, "mappable", lambda fd, end: False)
    assert signing_pass() == mapped


@pytest.mark.posix  # fallocate
def test_fallocate_reserves_blocks_here(tmp_path: Path) -> None:
    """The libc binding itself: on this Linux machine it reserves the blocks."""
    reserve = kernelcopy._fallocate()
    assert reserve is not None
    with open(tmp_path / "reserved", "wb") as f:
        assert reserve(f.fileno(), 0, 3 << 20) == 0
        assert os.fstat(f.fileno()).st_size == 3 << 20
        assert os.fstat(f.fileno()).st_blocks * 512 >= 3 << 20
        assert reserve(-1, 0, 4096) == errno.EBADF
