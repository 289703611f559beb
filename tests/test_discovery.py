"""What a run finds: unreadable paths are named failures, special files are called what
they are, and a run that finds nothing says so instead of passing."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from kmssign._internal.engine.discovery import discover
from tests.support import peutil
from tests.support.helpers import run_cli, sign_args
from tests.support.permissions import kmssign_held_to_permissions
from tests.support.pki import TestPKI


@pytest.mark.posix  # permission bits, capabilities
def test_unreadable_file_and_directories_are_named_failures(
    capsys, pki: TestPKI, tmp_path: Path
) -> None:
    """The run sees one good file, one it cannot read and two directories it cannot
    list; each is a named failure, and the exit code says so."""
    tree = tmp_path / "tree"
    (tree / "sub" / "locked").mkdir(parents=True)
    good = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tree)
    code, _, err = run_cli(capsys, "sign", str(good), *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    secret = peutil.copy_sample(peutil.LAUNCHERS["w32.exe"], tree, "secret.exe")
    hidden = peutil.copy_sample(peutil.LAUNCHERS["w32.exe"], tree / "sub" / "locked")
    (tree / "closed").mkdir()
    secret.chmod(0o000)
    (tree / "closed").chmod(0o000)
    (tree / "sub" / "locked").chmod(0o311)  # may be entered, not listed

    proc = kmssign_held_to_permissions("verify", "--no-chain", str(tree))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"verified: {good}" in proc.stdout
    failures = sorted(line for line in proc.stderr.splitlines() if line.startswith("failed: "))
    assert failures == sorted([
        f"failed: {tree / 'closed'}: cannot list this directory: permission denied",
        f"failed: {secret}: cannot read it: permission denied",
        f"failed: {tree / 'sub' / 'locked'}: cannot list this directory: permission denied",
    ]), proc.stderr
    assert "Traceback" not in proc.stderr
    assert "kmssign: 1 verified, 3 failed" in proc.stdout
    assert hidden.exists()

    # named explicitly: the file, and a file inside a directory it may not enter
    proc = kmssign_held_to_permissions("verify", str(secret), str(tree / "closed" / "x.exe"))
    assert proc.returncode == 1
    assert f"failed: {secret}: cannot read it: permission denied" in proc.stderr
    assert f"failed: {tree / 'closed' / 'x.exe'}: permission denied" in proc.stderr


@pytest.mark.posix  # /dev/zero, a FIFO, a symbolic link
def test_special_files_are_called_what_they_are(capsys, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.exe"
    os.mkfifo(fifo)
    dangling = tmp_path / "dangling.exe"
    dangling.symlink_to(tmp_path / "nowhere.exe")
    code, out, err = run_cli(
        capsys, "verify", "/dev/zero", str(fifo), str(dangling), str(tmp_path / "absent.exe")
    )
    assert code == 1
    assert "failed: /dev/zero: not a regular file (character device)" in err
    assert f"failed: {fifo}: not a regular file (FIFO)" in err
    assert f"failed: {dangling}: broken symbolic link" in err
    assert f"failed: {tmp_path / 'absent.exe'}: no such file or directory" in err


@pytest.mark.parametrize("command", ["sign", "verify", "timestamp"])
def test_finding_nothing_is_an_error_unless_allowed(
    capsys, pki: TestPKI, tmp_path: Path, command: str
) -> None:
    tree = tmp_path / "dist"
    tree.mkdir()
    (tree / "README.txt").write_text("no Windows binary here")
    extra = sign_args(pki.identity("rsa2048")) if command == "sign" else []
    code, out, err = run_cli(capsys, command, str(tree), *extra)
    assert code == 1
    assert err.strip() == (
        f"kmssign: error: nothing to {command}: no PE file or MSI package found in {tree} "
        "(--allow-empty accepts that)"
    )
    assert "0 failed" not in out

    code, out, err = run_cli(capsys, command, str(tree), *extra, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False and report["files"] == []
    assert report["error"].startswith(f"nothing to {command}")

    code, out, err = run_cli(capsys, command, str(tree), *extra, "--allow-empty")
    assert code == 0, err
    assert out.strip() == "kmssign: 0 failed" and err == ""


def test_globs_that_exclude_everything_find_nothing(capsys, pki: TestPKI, samples) -> None:
    folder = samples["t64.exe"].parent
    code, _, err = run_cli(
        capsys, "sign", str(folder), *sign_args(pki.identity("rsa2048"), "--include", "*.nope")
    )
    assert code == 1 and "nothing to sign" in err


def test_pyinstaller_outputs_without_windows_binaries_are_a_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kmssign.pyinstaller import sign_outputs

    monkeypatch.chdir(tmp_path)  # no pyproject.toml: no settings, no key, no call to one
    dist = tmp_path / "dist" / "app"
    dist.mkdir(parents=True)
    (dist / "app").write_bytes(b"\x7fELF a Linux build")
    with caplog.at_level(logging.INFO, logger="kmssign"):
        report = sign_outputs(dist)
    assert report.results == []
    assert [r.getMessage() for r in caplog.records] == [
        f"kmssign: no Windows binaries in {dist}; nothing to sign"
    ]


def test_discovery_lists_problems_in_order(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("text")
    found = discover([tmp_path / "absent", tmp_path / "notes.txt", tmp_path])
    assert found.files == ()
    assert found.problems == (
        (tmp_path / "absent", "no such file or directory"),
        (tmp_path / "notes.txt", "not a PE file (no MZ/PE header)"),
    )
