"""Temporary files never outlive a run or get signed, and runs do not step on each other:
SIGTERM and Ctrl-C clean up, a killed run's leftovers are removed by the next run, two
runs on one tree sign each file once, and each report says what is on disk."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmssign._internal.engine import atomic
from kmssign._internal.engine.locking import lock_target
from kmssign._internal.pki.certs import subject_of
from tests.support import peutil
from tests.support.helpers import primary_signature, run_cli, sign_args
from tests.support.pki import TestPKI

BUDGET = 60.0  # seconds: only against hangs


def _tree(directory: Path, count: int) -> list[Path]:
    """``count`` distinct PE files (a launcher with a different overlay each)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = directory / f"tool{i}.exe"
        shutil.copyfile(peutil.LAUNCHERS["t64.exe"], path)
        with open(path, "ab") as f:
            f.write(f"overlay {i}".encode())
        files.append(path)
    return files


def _temporaries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if atomic.is_temporary(p.name))


def _kmssign(*argv: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "kmssign", *argv], text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen,
    )


def _wait_for_temporaries(directory: Path, proc: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + BUDGET
    while len(_temporaries(directory)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no temporary files appeared"
        time.sleep(0.01)


def test_discovery_never_selects_temporary_files(capsys, pki: TestPKI, tmp_path: Path) -> None:
    """A temporary file holds a full PE copy; earlier versions named it .NAME.XXXXXXXX.kmssign."""
    tree = tmp_path / "dist"
    (real,) = _tree(tree, 1)
    old_style = tree / f".{real.name}.k2j3h4g5.kmssign"
    new_style = tree / f".{real.name}.abcd_123.kmssign-tmp"
    for leftover in (old_style, new_style):
        shutil.copyfile(real, leftover)
    code, out, err = run_cli(capsys, "sign", str(tree), *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("signed: ")] == [
        line for line in out.splitlines() if line.startswith(f"signed: {real} ")
    ] != []
    for leftover in (old_style, new_style):
        assert f"note: removed {leftover}, a temporary file left by an interrupted kmssign run" \
            in err
        assert not leftover.exists()
    assert atomic.is_temporary(".x.exe.abcdefgh.kmssign-tmp")
    assert atomic.is_temporary(".with\nnewline.exe.abcdefgh.kmssign-tmp")
    assert not atomic.is_temporary("app.kmssign") and not atomic.is_temporary(".app.exe")


@pytest.mark.posix  # file locks
def test_a_live_runs_temporary_file_is_left_alone(capsys, pki: TestPKI, tmp_path: Path) -> None:
    (real,) = _tree(tmp_path / "dist", 1)
    live = atomic.AtomicFile(real)  # as another run holds it (its own open file, locked)
    try:
        live.handle.write(real.read_bytes())
        live.handle.flush()
        code, out, err = run_cli(capsys, "verify", str(real.parent))
        assert f"note: {live.path}: a temporary file left by" not in err
        code, out, err = run_cli(capsys, "sign", str(real), *sign_args(pki.identity("rsa2048")))
        assert code == 0, err
        assert f"note: {live.path}: temporary file of a kmssign run in progress; left alone" \
            in err
        assert live.path.exists()
        assert out.count("signed: ") == 1
    finally:
        live.abort()
    assert not live.path.exists()


@pytest.mark.posix  # SIGTERM and SIGINT sent to a process
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_removes_every_temporary_file(
    pki: TestPKI, tsa, tmp_path: Path, signum: signal.Signals
) -> None:
    """Files wait on a slow timestamp server with their temporary files open; a signal
    then ends the run: exit 128 + signal, one line, no temporary file, originals kept."""
    files = _tree(tmp_path / "dist", 4)
    before = {p: p.read_bytes() for p in files}
    proc = _kmssign(
        "sign", str(tmp_path / "dist"),
        *sign_args(pki.identity("rsa2048"), "--timestamp-url", tsa.url("slow"), "--jobs", "4"),
    )
    _wait_for_temporaries(tmp_path / "dist", proc, 2)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=BUDGET)
    assert proc.returncode == 128 + signum, err
    assert err.splitlines()[-1] == (
        f"kmssign: interrupted ({signum.name}); files not finished are left as they were"
    ), err
    assert "Traceback" not in err
    assert _temporaries(tmp_path) == []
    assert {p: p.read_bytes() for p in files} == before


@pytest.mark.osslsigncode
@pytest.mark.posix  # SIGKILL
def test_a_killed_runs_leftovers_are_removed_by_the_next_run(
    capsys, pki: TestPKI, tsa, tmp_path: Path
) -> None:
    files = _tree(tmp_path / "dist", 2)
    proc = _kmssign(
        "sign", str(tmp_path / "dist"),
        *sign_args(pki.identity("rsa2048"), "--timestamp-url", tsa.url("slow")),
    )
    _wait_for_temporaries(tmp_path / "dist", proc, 1)
    proc.kill()
    proc.communicate(timeout=BUDGET)
    leftovers = _temporaries(tmp_path)
    assert leftovers, "SIGKILL left no temporary file: nothing to test"
    code, out, err = run_cli(capsys, "verify", str(tmp_path / "dist"))
    for leftover in leftovers:
        assert (f"note: {leftover}: a temporary file left by an interrupted kmssign run; "
                "sign or timestamp removes it") in err
        assert leftover.exists()
    code, out, err = run_cli(capsys, "sign", str(tmp_path / "dist"),
                             *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    for leftover in leftovers:
        assert f"note: removed {leftover}, a temporary file left by an interrupted" in err
    assert _temporaries(tmp_path) == []
    assert out.count("signed: ") == len(files)
    for path in files:
        peutil.osslsigncode_verify(path, pki.root_pem)


@pytest.mark.posix  # file locks
def test_a_run_waits_for_another_on_the_same_file(
    capsys, pki: TestPKI, tmp_path: Path
) -> None:
    """While another run holds the file, this one waits; the other one replaces the file
    (signs it), and this one then reads the new file: already signed, skipped."""
    (path,) = _tree(tmp_path / "dist", 1)
    held = lock_target(path, check=atomic.check_running)
    try:
        proc = _kmssign("sign", str(path), *sign_args(pki.identity("rsa2048")))
        assert proc.stderr is not None
        waiting = f"note: {path}: another kmssign run is working on this file; waiting\n"
        while (line := proc.stderr.readline()) not in (waiting, ""):
            pass  # a warning about the certificate, say
        assert line == waiting, proc.communicate()
        copy = tmp_path / "copy.exe"
        shutil.copyfile(path, copy)
        code, _, err = run_cli(capsys, "sign", str(copy), *sign_args(pki.identity("p256")))
        assert code == 0, err
        os.replace(copy, path)  # what the other run does at its end
    finally:
        held.release()
    out, err = proc.communicate(timeout=BUDGET)
    assert proc.returncode == 0, err
    assert out.startswith(f"skipped: {path} (")
    assert subject_of(primary_signature(path).signer_cert) == "kmssign Test Signer p256"


@pytest.mark.osslsigncode
@pytest.mark.posix  # file locks
def test_two_runs_on_one_tree_sign_each_file_once_and_report_what_is_on_disk(
    pki: TestPKI, tsa, tmp_path: Path
) -> None:
    files = _tree(tmp_path / "dist", 8)
    tsa.latency = 0.15  # every file waits for its timestamp: the runs overlap
    try:
        runs = [
            _kmssign("sign", str(tmp_path / "dist"), *sign_args(
                pki.identity(kind), "--timestamp-url", tsa.url("tsa"), "--jobs", "4", "--json"
            ))
            for kind in ("rsa2048", "p256")
        ]
        outputs = [run.communicate(timeout=BUDGET) for run in runs]
    finally:
        tsa.latency = 0.0
    reports = []
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        reports.append({Path(f["path"]): f for f in json.loads(out)["files"]})
    assert _temporaries(tmp_path) == []
    for path in files:
        entries = [report[path] for report in reports]
        assert sorted(e["status"] for e in entries) == ["signed", "skipped"], entries
        (signed,) = (e for e in entries if e["status"] == "signed")
        assert signed["sha256_after"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert signed["output"] == str(path)
        peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
        assert subject_of(primary_signature(path).signer_cert) == signed["signer"]
    for report in reports:  # neither run saw (or signed) the other's temporary files
        assert set(report) == set(files)


@pytest.mark.posix  # an open file removed under its writer
def test_abort_all_removes_live_files_and_refuses_their_commit(tmp_path: Path) -> None:
    target = tmp_path / "app.exe"
    target.write_bytes(b"original")
    live = atomic.AtomicFile(target)
    live.handle.write(b"half of a signed copy")
    live.handle.flush()
    try:
        assert atomic.abort_all() == 1
        assert not live.path.exists()
        with pytest.raises(OSError):  # writes now fail: the run's work stops early
            live.handle.write(b"more" * 10000)
            live.handle.flush()
        with pytest.raises(atomic.RunInterrupted):
            live.commit()
        with pytest.raises(atomic.RunInterrupted):
            atomic.AtomicFile(target)
    finally:
        atomic.resume()
    assert target.read_bytes() == b"original"
    assert _temporaries(tmp_path) == []
