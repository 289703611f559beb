"""What the build-plugin and recipe tests share: the ``kms_build`` fixture (the test KMS
key, its certificate, the TSA and the build environment), a project built once with its
files recorded, and the checks: a wheel that came out signed, its log, its install, and a
build that failed the way a build plugin must fail."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from kmssign._internal.pe.image import looks_like_pe
from tests.support import peutil
from tests.support.fixtures_build import Build, assert_record_matches, extract, members, tree_digest
from tests.support.fixtures_kms import KmsIdentity
from tests.support.helpers import run_cli
from tests.support.pki import TestPKI
from tests.support.tsa_server import LoopbackTSA

KMS_SUBJECT = "kmssign Test KMS Signer RSA_2048"
P = TypeVar("P")


@dataclass(frozen=True)
class KmsBuild:
    """What a build that signs with the session's KMS key and timestamps needs."""

    identity: KmsIdentity
    tsa: LoopbackTSA
    pki: TestPKI
    env: dict[str, str]  # the build subprocesses' environment (copy it to change it)

    def settings(self) -> dict[str, object]:
        """``[tool.kmssign]`` keys for the key, its certificate and the loopback TSA."""
        return {"key-id": self.identity.key_id, "certificate": str(self.identity.cert_path),
                "timestamp-urls": [self.tsa.url()]}


@pytest.fixture(scope="session")
def kms_build(
    kms_identity: Callable[..., KmsIdentity], tsa: LoopbackTSA, pki: TestPKI,
    build_env: dict[str, str],
) -> KmsBuild:
    return KmsBuild(kms_identity(), tsa, pki, build_env)


def toml_table(values: dict[str, object]) -> str:
    """The lines of a TOML table holding ``values`` (strings, booleans, lists of them)."""

    def value(v: object) -> str:
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(i) for i in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        return '"' + str(v).replace("\\", "\\\\") + '"'

    return "\n".join(f"{k} = {value(v)}" for k, v in values.items())


@dataclass
class Built(Generic[P]):
    project: P
    build: Build
    before: dict[str, str]  # the project's files before the build (tree_digest)
    after: dict[str, str]


def build_recorded(project: P, root: Path, run: Callable[[Path], Build]) -> Built[P]:
    """``run`` the build of ``project`` (whose tree is ``root``), its files recorded around it."""
    before = tree_digest(root)
    build = run(root)
    return Built(project, build, before, tree_digest(root))


def assert_signed_lines(output: str, names: Iterable[str], count: str) -> None:
    """The build log has a ``kmssign: signed: NAME (...)`` line naming the KMS signer and a
    timestamp for each of ``names``, and the ``count`` line."""
    lines = [x.strip() for x in output.splitlines()]
    for name in names:
        line = next((x for x in lines if x.startswith(f"kmssign: signed: {name} (")), None)
        assert line is not None, output
        assert KMS_SUBJECT in line and "Z" in line and ", timestamp 20" in line, line
    assert count in lines, output


def assert_installs(wheel: Path, names: Iterable[str], tmp: Path) -> None:
    """pip installs ``wheel`` (checking it as it does) with ``names`` as they are in it."""
    target = tmp / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )
    content = members(wheel)
    for name in names:
        assert (target / name).read_bytes() == content[name], name


def check_kms_signed_wheel(wheel: Path, pki: TestPKI, tmp: Path, capsys: object) -> set[str]:
    """Every PE member (found by content) signed by the test KMS key and timestamped, as
    ``osslsigncode verify`` (with -TSA-CAfile) and ``kmssign verify --require-signed
    --require-timestamp`` see it; RECORD right by our check and ``python -m wheel unpack``'s.
    Returns the PE members' paths in the wheel."""
    content = extract(wheel, tmp / f"content-{wheel.stem}")
    names = {p.relative_to(content).as_posix() for p in content.rglob("*") if looks_like_pe(p)}
    assert names, wheel
    for name in sorted(names):
        out = peutil.osslsigncode_verify(content / name, pki.root_pem, tsa_ca=pki.root_pem)
        assert KMS_SUBJECT in out, (name, out)
    assert_record_matches(wheel)
    proc = subprocess.run(
        [sys.executable, "-m", "wheel", "unpack", "-d", str(tmp / f"unpacked-{wheel.stem}"),
         str(wheel)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    code, out, err = run_cli(capsys, "verify", "--ca", str(pki.root_pem), "--require-timestamp",
                             "--require-signed", str(wheel))
    assert code == 0, out + err
    for name in names:
        assert f"verified: {wheel}!{name} (" in out, out
    return names


def one_error_line(build: Build, lead: str = "") -> str:
    """The build failed with exactly one ``kmssign: error: ...`` line (after ``lead``, the
    build tool's own prefix), no traceback and no wheel; returns it without ``lead``."""
    assert build.returncode != 0, build.output
    assert not build.wheels
    errors = [x.strip() for x in build.output.splitlines() if "kmssign: error: " in x]
    assert len(errors) == 1, build.output
    assert errors[0].startswith(f"{lead}kmssign: error: "), build.output
    assert "Traceback" not in build.output, build.output
    return errors[0].removeprefix(lead)
