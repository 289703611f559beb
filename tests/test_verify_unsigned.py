"""Unsigned means failed (#23 item 2): for loose files as in wheels; --allow-unsigned
reports without failing; verify's --include/--exclude as sign's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import peutil
from tests.support.helpers import run_cli, sign_args
from tests.support.pki import TestPKI


def test_loose_unsigned_file_fails_unless_allowed_and_globs_select(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, tmp_path: Path
) -> None:
    signed = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tmp_path, "signed.exe")
    unsigned = peutil.copy_sample(peutil.LAUNCHERS["w32.exe"], tmp_path, "plain.exe")
    code, _, err = run_cli(capsys, "sign", str(signed), *sign_args(pki.identity()))
    assert code == 0, err
    ca = ("--ca", str(pki.root_pem))
    code, out, err = run_cli(capsys, "verify", str(tmp_path), *ca)
    assert code == 1 and err.splitlines() == [f"failed: {unsigned}: not signed"]
    code, out, err = run_cli(capsys, "verify", str(tmp_path), *ca, "--allow-unsigned")
    assert code == 0, err
    assert f"unsigned: {unsigned} (not signed)" in out.splitlines()
    assert out.splitlines()[-1] == "kmssign: 1 verified, 1 unsigned, 0 failed"
    code, out, err = run_cli(capsys, "verify", str(tmp_path), *ca, "--exclude", "plain*")
    assert code == 0, err
    assert out.splitlines()[-1] == "kmssign: 1 verified, 0 failed"
    code, out, err = run_cli(capsys, "verify", str(tmp_path), *ca, "--include", "plain*")
    assert code == 1 and out.splitlines()[-1] == "kmssign: 1 failed"
