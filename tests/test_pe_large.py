"""Large files: the kernel-copy path (copy_file_range beside the hashing pass) and its
fallback produce the same, valid signed file as the streaming copy."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from kmssign import pe, pestream
from tests import peutil
from tests.helpers import run_cli, sign_args
from tests.pki import TestPKI


def _large_pe(path: Path, mib: int = 9) -> Path:
    with open(path, "wb") as out:
        out.write(peutil.LAUNCHERS["t64.exe"].read_bytes())
        block = os.urandom(1 << 20)
        for _ in range(mib):
            out.write(block)
        out.write(b"odd tail")  # not a multiple of 8
    return path


@pytest.mark.parametrize("kernel_copy", ["available", "refused"])
def test_large_file_signs_the_same_either_way(
    capsys, pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_copy: str
) -> None:
    calls: list[int] = []
    real = os.copy_file_range

    def copy_file_range(*args: int) -> int:
        calls.append(1)
        if kernel_copy == "refused":
            raise OSError(errno.EXDEV, "cross-device")
        return real(*args)

    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    path = _large_pe(tmp_path / "big.exe")
    code, out, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    assert calls, "the kernel copy was not tried"
    peutil.osslsigncode_verify(path, pki.root_pem)
    with open(path, "rb") as f:
        image = pe.parse_pe(f)
        assert pestream.pe_checksum(f, image) == pe.stored_checksum(f, image)
        assert pestream.authenticode_digest(f, image, "sha256") == peutil.osslsigncode_digest(path)
    assert b"odd tail" in path.read_bytes()[-(1 << 16) :]
