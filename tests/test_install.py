"""Installing kmssign before it is on PyPI, as docs/how-to/install.md says: a built wheel into
a fresh venv, and kmssign as a build requirement of a Hatch project under pip's build
isolation, found through PIP_FIND_LINKS or named by a direct file:// reference."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support import peutil
from tests.support.fixtures_build import extract
from tests.support.pki import TestPKI

pytestmark = [pytest.mark.slow, pytest.mark.network]  # kmssign's dependencies, hatchling

PROJECT = """\
[build-system]
requires = ["hatchling", {requirement!r}]
build-backend = "hatchling.build"

[project]
name = "tiny"
version = "1.0"

[tool.hatch.build.targets.wheel]
packages = ["tiny"]

[tool.hatch.build.hooks.kmssign]

[tool.kmssign]
key-file = {key!r}
certificate = {cert!r}
chain = [{chain!r}]
timestamp = "off"
"""


def fresh_venv(directory: Path) -> Path:
    """A new virtual environment with pip; returns its Python."""
    venv.EnvBuilder(with_pip=True).create(directory)
    bindir = "Scripts" if sys.platform == "win32" else "bin"
    return directory / bindir / ("python.exe" if sys.platform == "win32" else "python")


def tiny_project(root: Path, requirement: str, pki: TestPKI) -> Path:
    identity = pki.identity("rsa2048")
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "__init__.py").write_text("")
    peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], root / "tiny", "helper.exe")
    (root / "pyproject.toml").write_text(PROJECT.format(
        requirement=requirement, key=identity.key_path.as_posix(),
        cert=identity.cert_path.as_posix(), chain=identity.chain_path.as_posix()))
    return root


def run(python: Path, *args: str, env: dict[str, str]) -> str:
    proc = subprocess.run([str(python), *args], env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_wheel_installs_and_serves_isolated_builds(
    kmssign_wheel_dir: Path, pki: TestPKI, tmp_path: Path
) -> None:
    (wheel,) = kmssign_wheel_dir.glob("kmssign-*.whl")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KMSSIGN_", "VIRTUAL_ENV"))
           and k not in ("PIP_FIND_LINKS", "UV_FIND_LINKS", "PYTHONPATH")}
    python = fresh_venv(tmp_path / "venv")

    # "pip install path/to/kmssign-X-py3-none-any.whl": the wheel and its dependencies
    run(python, "-m", "pip", "install", "--quiet", str(wheel), env=env)
    version = run(python, "-m", "kmssign", "--version", env=env)
    assert wheel.name.split("-")[1] in version

    # requires = ["hatchling", "kmssign"] + PIP_FIND_LINKS: pip's isolated build finds it
    found = tiny_project(tmp_path / "found", "kmssign", pki)
    run(python, "-m", "pip", "install", "--quiet", str(found),
        env={**env, "PIP_FIND_LINKS": str(kmssign_wheel_dir)})
    installed = Path(run(python, "-c", "import tiny; print(tiny.__file__)", env=env).strip())
    helper = installed.parent / "helper.exe"
    verify = [str(helper), "--ca", str(pki.root_pem)]
    run(python, "-m", "kmssign", "verify", *verify, env=env)

    # Without find-links the same build cannot find kmssign (it is not on the index)...
    refused = subprocess.run(
        [str(python), "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "no"),
         str(found)], env=env, capture_output=True, text=True, timeout=900, check=False)
    assert refused.returncode != 0
    assert "kmssign" in refused.stdout + refused.stderr

    # ... and a direct reference to the wheel file needs no find-links at all
    direct = tiny_project(tmp_path / "direct", f"kmssign @ {wheel.as_uri()}", pki)
    run(python, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "out"),
        str(direct), env=env)
    (built,) = (tmp_path / "out").glob("tiny-*.whl")
    unpacked = extract(built, tmp_path / "unpacked")
    run(python, "-m", "kmssign", "verify", str(unpacked / "tiny" / "helper.exe"),
        "--ca", str(pki.root_pem), env=env)
