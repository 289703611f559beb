"""Build fixtures: real wheels of throwaway projects and of sample_app, built in subprocesses.

``kmssign_wheel_dir`` holds a kmssign wheel of this repository (built once per session)
so isolated build environments can install kmssign through ``PIP_FIND_LINKS`` /
``UV_FIND_LINKS``; ``build_env`` is the environment every build subprocess runs with
(moto's KMS through ``AWS_ENDPOINT_URL``, dummy credentials, no bytecode written into
the projects, hatch's environments in a session directory).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fixtures_kms import DUMMY_KEY, DUMMY_SECRET, KmsServer

REPO = Path(__file__).resolve().parents[2]
SAMPLE_APP = REPO / "sample_app"


@pytest.fixture(scope="session")
def kmssign_wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a kmssign wheel of the working tree."""
    out = tmp_path_factory.mktemp("kmssign-wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", str(out), str(REPO)],
        check=True, capture_output=True,
    )
    assert list(out.glob("kmssign-*.whl"))
    return out


@pytest.fixture(scope="session")
def build_env(
    kms_server: KmsServer, kmssign_wheel_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The environment of build subprocesses (copy it before changing it)."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("KMSSIGN_", "AWS_", "HATCH_")) and k != "PYTHONPATH"
    }
    home = tmp_path_factory.mktemp("build-home")
    env.update(
        AWS_ACCESS_KEY_ID=DUMMY_KEY,
        AWS_SECRET_ACCESS_KEY=DUMMY_SECRET,
        AWS_DEFAULT_REGION=kms_server.region,
        AWS_ENDPOINT_URL=kms_server.endpoint_url,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(home / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
        PYTHONDONTWRITEBYTECODE="1",
        HATCH_DATA_DIR=str(home / "hatch-data"),
        HATCH_CACHE_DIR=str(home / "hatch-cache"),
    )
    for name, separator in (("PIP_FIND_LINKS", " "), ("UV_FIND_LINKS", ",")):
        before = env.get(name, "").strip()
        env[name] = f"{kmssign_wheel_dir}{separator}{before}" if before else str(kmssign_wheel_dir)
    return env


@dataclass
class Build:
    returncode: int
    output: str  # stdout and stderr, interleaved
    wheels: list[Path]

    @property
    def wheel(self) -> Path:
        assert self.returncode == 0, self.output
        assert len(self.wheels) == 1, self.output
        return self.wheels[0]


def run_build(
    project: Path,
    out: Path,
    env: dict[str, str],
    *,
    frontend: str = "build",
    isolated: bool = False,
    target: str = "wheel",
) -> Build:
    """Build ``project`` into ``out`` with ``python -m build`` (``--no-isolation`` unless
    ``isolated``; ``target="sdist+wheel"``: the sdist, then the wheel from it), ``pip wheel``
    (isolated), ``hatch build`` or ``python -m hatchling build`` (``frontend="hatchling"``,
    the in-environment form of hatch's builder, needed for custom targets)."""
    out.mkdir(parents=True, exist_ok=True)
    if frontend == "build":
        chosen = [] if target == "sdist+wheel" else [f"--{target}"]
        cmd = [sys.executable, "-m", "build", *chosen, "-o", str(out), str(project)]
        if not isolated:
            cmd.append("--no-isolation")
    elif frontend == "pip":
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(project)]
    elif frontend == "hatch":
        cmd = [sys.executable, "-m", "hatch", "build", "-t", target, str(out)]
    else:
        cmd = [sys.executable, "-m", "hatchling", "build", "-t", target, "-d", str(out)]
    proc = subprocess.run(
        cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        check=False,
    )
    return Build(proc.returncode, proc.stdout, sorted(out.glob("*.whl")))


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root``, by relative path (to prove nothing changed)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()
    }


def members(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def assert_record_matches(wheel: Path) -> None:
    """Every member is in RECORD with its sha256 and size, and RECORD lists nothing else
    (directory entries, such as delvewheel writes, are not files and not listed)."""
    content = {name: data for name, data in members(wheel).items() if not name.endswith("/")}
    record_name = next(n for n in content if n.endswith(".dist-info/RECORD"))
    rows = list(csv.reader(io.StringIO(content[record_name].decode())))
    listed = {row[0] for row in rows}
    assert listed == set(content), sorted(listed ^ set(content))
    for name, digest, size in rows:
        if name == record_name:
            assert digest == "" and size == ""
            continue
        data = content[name]
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert digest == f"sha256={expected}", name
        assert int(size) == len(data), name


def extract(wheel: Path, directory: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(directory)
    return directory
