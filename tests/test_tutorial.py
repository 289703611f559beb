"""docs/tutorial.md runs as written, from an installed wheel of kmssign and nothing else of
the repository: its ``sh`` blocks, in order, in one bash shell, in an empty directory, with
a fresh virtual environment (the tutorial makes it), the sandbox as the only service.
Then osslsigncode checks what the tutorial signed against the sandbox's root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.support import peutil
from tests.support.docs import ROOT, fenced, page

TUTORIAL = "tutorial.md"


def tutorial_script() -> str:
    blocks = fenced(page(TUTORIAL), "sh")
    assert len(blocks) >= 6
    return "set -euo pipefail\n" + "\n".join(blocks)


def test_the_tutorial_uses_the_sandbox_and_every_front_end() -> None:
    script = tutorial_script()
    assert "kmssign sandbox --dir sandbox --detach" in script
    assert ". sandbox/env.sh" in script
    for step in ("kmssign sign hello.exe", "python -m build --wheel", "pyinstaller ",
                 'kill "$(cat sandbox/sandbox.pid)"'):
        assert step in script


@pytest.fixture(scope="module")
def kmssign_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout (the only thing of the repository the tutorial gets)."""
    out = tmp_path_factory.mktemp("kmssign-wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(out), str(ROOT)], check=True, capture_output=True)
    (wheel,) = out.glob("kmssign-*.whl")
    return wheel


def clean_environment(tmp_path: Path, wheels: Path) -> dict[str, str]:
    """No KMSSIGN_*, AWS_*, PYTHON* or test virtual environment; python3 is the
    interpreter this one was made from; pip finds kmssign in ``wheels`` (not on any index)."""
    venv_bin = str(Path(sys.executable).parent)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    base = getattr(sys, "_base_executable", sys.executable)
    (bin_dir / "python3").symlink_to(base)
    path = [str(bin_dir), *(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KMSSIGN_", "AWS_", "PYTHON", "VIRTUAL_ENV"))}
    # pip's own configuration (an index mirror, certificates) stays; kmssign's wheel is
    # added to the places it finds links in.
    links = [str(wheels), *os.environ.get("PIP_FIND_LINKS", "").split()]
    configured = subprocess.run([sys.executable, "-m", "pip", "config", "get",
                                 "global.find-links"], capture_output=True, text=True)
    if configured.returncode == 0:
        links += configured.stdout.split()
    env.update(PATH=os.pathsep.join(path), HOME=str(tmp_path / "home"),
               PIP_FIND_LINKS=" ".join(links), PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def stop_sandbox(directory: Path) -> None:
    """Wait until the sandbox the tutorial stopped is gone; stop it if the tutorial failed
    before its last step."""
    pid_file = directory / "sandbox.pid"
    end = time.monotonic() + 30
    while pid_file.exists() and time.monotonic() < end:
        time.sleep(0.2)  # the tutorial's kill: it stops its servers, then removes the file
    if pid_file.exists():
        os.kill(int(pid_file.read_text()), signal.SIGTERM)


@pytest.mark.slow
@pytest.mark.network  # the tutorial installs kmssign's dependencies, moto and PyInstaller
@pytest.mark.posix  # bash
@pytest.mark.osslsigncode
def test_the_tutorial_runs_from_an_installed_wheel(kmssign_wheel: Path, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    env = clean_environment(tmp_path, kmssign_wheel.parent)
    work = tmp_path / "home"
    script = tmp_path / "tutorial.sh"
    script.write_text(tutorial_script())
    try:
        proc = subprocess.run(["bash", str(script)], cwd=work, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1500)
    finally:
        stop_sandbox(work / "kmssign-tutorial" / "sandbox")
    assert proc.returncode == 0, proc.stdout[-6000:]
    out = proc.stdout
    tutorial = work / "kmssign-tutorial"
    # what the tutorial signed came from the wheel, not from this checkout
    site = list((tutorial / ".venv").glob("lib/python*/site-packages/kmssign"))
    assert site and not (site[0].parent / "__editable__.kmssign.pth").exists()
    assert "signed: hello.exe (kmssign Sandbox Publisher, sha256, timestamp" in out
    assert "hello/bin/helper.exe" in out  # the Hatch hook's line for the wheel's member
    assert "verified: " in out and " failed" in out
    assert "kmssign sandbox: stopped" in (tutorial / "sandbox" / "sandbox.log").read_text()

    root = tutorial / "sandbox" / "root.pem"
    peutil.osslsigncode_verify(tutorial / "hello.exe", root, tsa_ca=root)
    (wheel,) = (tutorial / "hello" / "dist").glob("hello-1.0-*.whl")
    member = tmp_path / "helper-from-wheel.exe"
    with zipfile.ZipFile(wheel) as archive:
        member.write_bytes(archive.read("hello/bin/helper.exe"))
    peutil.osslsigncode_verify(member, root, tsa_ca=root)
    bundled = tutorial / "hello" / "dist" / "app" / "_internal" / "bin" / "helper.exe"
    peutil.osslsigncode_verify(bundled, root, tsa_ca=root)
