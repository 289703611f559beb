"""``nox -s demo``'s script, run as a newcomer runs it: one subprocess, real everything."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "run_demo.py"
SUMMARY = re.compile(r"demo: (\d+) files signed and verified")


def git_status() -> str:
    """Tracked changes, untracked files, and ignored files where a build would leave them."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    ignored = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all",
         "--", "sample_app", "demo"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    return status + "\n--- ignored under sample_app/ and demo/ ---\n" + ignored


def assert_servers_stopped(output: str) -> None:
    """The KMS and TSA ports the demo printed no longer accept connections."""
    ports = re.findall(r"(?:KMS endpoint|timestamp URL) http://127\.0\.0\.1:(\d+)", output)
    assert len(ports) == 2, output
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()


def demo_env(tmp_path: Path) -> dict[str, str]:
    """The caller's environment with a temp dir the demo's own temp dir must live in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KMSSIGN_", "AWS_"))}
    env["TMPDIR"] = str(tmp_path)
    return env


@pytest.mark.slow
@pytest.mark.osslsigncode  # the demo's last step
@pytest.mark.mingw  # sample_app's greet.dll and hello.exe
@pytest.mark.network  # hatchling for hatch's isolated build
@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="needs a git checkout to prove the tree is unchanged")
def test_demo_signs_and_verifies_and_leaves_no_trace(tmp_path: Path) -> None:
    before = git_status()
    proc = subprocess.run(
        [sys.executable, str(DEMO)], cwd=REPO, env=demo_env(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.strip().splitlines()
    match = SUMMARY.fullmatch(lines[-1])
    assert match, lines[-1]
    count = int(match.group(1))
    # sample_app's hello.exe and greet.dll (mingw-w64 compiled them), in the wheel and in dist/.
    assert count == 4 and "    wheel: sample_app/bin/greet.dll" in proc.stdout.splitlines()
    assert proc.stdout.count("verified: ") == count
    assert f"kmssign: {count} verified, 0 failed" in proc.stdout
    assert proc.stdout.count("Timestamp Server Signature verification: ok") == count
    # The steps are numbered, and the certificate came from the CSR kmssign made.
    assert re.search(r"^\[1\] ", proc.stdout, re.MULTILINE)
    assert "-m kmssign csr --key-id alias/sample-app-signing" in proc.stdout
    assert "(Sample App Demo Publisher, sha256, timestamp " in proc.stdout
    # Nothing left behind: the work directory is gone and the repository is unchanged.
    assert_servers_stopped(proc.stdout)
    assert list(tmp_path.iterdir()) == []
    assert git_status() == before


@pytest.mark.slow
def test_demo_failure_is_one_line_and_cleans_up(tmp_path: Path) -> None:
    """A step that fails (here: a stand-in `hatch` that exits 3) ends the demo
    with one ``demo: error:`` line, exit status 1, servers stopped and no work dir left."""
    env = demo_env(tmp_path)
    shadow = tmp_path / "shadow"
    (shadow / "hatch").mkdir(parents=True)
    (shadow / "hatch" / "__init__.py").write_text("")
    (shadow / "hatch" / "__main__.py").write_text(
        "import sys\nprint('hatch is broken on purpose')\nsys.exit(3)\n"
    )
    env["PYTHONPATH"] = str(shadow)
    proc = subprocess.run(
        [sys.executable, str(DEMO)], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("demo: error:")]
    assert errors == ["demo: error: hatch build failed (exit status 3); output above"]
    assert proc.stderr.strip().splitlines()[-1] == errors[0]
    assert "hatch is broken on purpose" in proc.stderr
    assert not SUMMARY.search(proc.stdout)
    assert_servers_stopped(proc.stdout)
    assert [p.name for p in tmp_path.iterdir()] == ["shadow"]
