"""Hints where users fall (#23 item 5): a Hatch wheel without the project's Windows
binaries says why (hatchling's exclude, artifacts); a relative certificate that an sdist
did not carry says so, with the way out."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmssign.config import Settings
from kmssign.errors import ConfigError
from kmssign.frontends.buildhooks import check_sdist_certificate
from kmssign.frontends.hatch.work import excluded_binaries_hint
from tests.support import peutil
from tests.support.fixtures_build import run_build
from tests.support.pki import TestPKI
from tests.support.plugincheck import one_error_line

SRC = Path(__file__).resolve().parents[1] / "src"


def _project(root: Path, pki: TestPKI, extra: str = "", certificate: str | None = None) -> Path:
    identity = pki.identity()
    (root / "hinted").mkdir(parents=True)
    (root / "hinted" / "__init__.py").write_text("")
    peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], root / "hinted", "_speedups.pyd")
    cert = certificate or identity.cert_path.as_posix()
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling", "kmssign"]\n'
        'build-backend = "hatchling.build"\n'
        '[project]\nname = "hinted"\nversion = "1.0"\n'
        "[tool.hatch.build.hooks.kmssign]\n"
        f'key-file = "{identity.key_path.as_posix()}"\ncertificate = "{cert}"\n'
        f'chain = ["{identity.chain_path.as_posix()}"]\ntimestamp = "off"\n{extra}'
    )
    return root


def _env(build_env: dict[str, str]) -> dict[str, str]:
    return {**build_env, "PYTHONPATH": str(SRC)}  # this tree's kmssign in the build


def test_hint_names_excluded_pyd_files_and_artifacts(
    pki: TestPKI, build_env: dict[str, str], tmp_path: Path
) -> None:
    root = _project(tmp_path / "proj", pki)
    build = run_build(root, tmp_path / "dist", _env(build_env))
    assert build.returncode == 0, build.output
    assert "kmssign: no Windows binaries in hinted-1.0-py2.py3-none-any.whl" in build.output
    hint = next(x for x in build.output.splitlines() if "kmssign: hint: " in x)
    assert "(hinted/_speedups.pyd)" in hint and "hatchling excludes *.pyd by default" in hint
    assert 'artifacts = ["*.pyd", "*.dll"]' in hint
    # listed in artifacts, the .pyd ships and is signed: no hint
    artifacts = tmp_path / "with-artifacts"
    _project(artifacts, pki, '[tool.hatch.build.targets.wheel]\nartifacts = ["*.pyd"]\n')
    build = run_build(artifacts, tmp_path / "dist2", _env(build_env))
    assert build.returncode == 0, build.output
    assert "kmssign: signed" in build.output and "kmssign: hint:" not in build.output


def test_no_hint_without_binaries_in_the_project(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "python3.dll").write_bytes(b"MZ")  # not the project's
    assert excluded_binaries_hint(tmp_path) is None
    (tmp_path / "pkg" / "native.dll").write_bytes(b"MZ")
    assert "(pkg/native.dll)" in str(excluded_binaries_hint(tmp_path))


def test_relative_certificate_missing_from_an_sdist_build(
    pki: TestPKI, build_env: dict[str, str], tmp_path: Path
) -> None:
    root = _project(
        tmp_path / "proj", pki,
        '[tool.hatch.build.targets.sdist]\nexclude = ["signing"]\n'
        '[tool.hatch.build.targets.wheel]\nartifacts = ["*.pyd"]\n',
        certificate="signing/cert.pem",
    )
    (root / "signing").mkdir()
    (root / "signing" / "cert.pem").write_bytes(pki.identity().cert_path.read_bytes())
    build = run_build(root, tmp_path / "dist", _env(build_env), target="sdist+wheel")
    line = one_error_line(build)
    assert "certificate 'signing/cert.pem' is relative to the project, and this build runs " \
        "from an sdist that does not carry it" in line, line
    assert "absolute path, or the certificate's path in KMSSIGN_CERTIFICATE" in line


def test_sdist_check_leaves_other_builds_alone(tmp_path: Path) -> None:
    settings = Settings(certificate=tmp_path / "signing" / "cert.pem")
    check_sdist_certificate(settings, tmp_path)  # not an sdist: the run says it is missing
    (tmp_path / "PKG-INFO").write_text("Metadata-Version: 2.1\n")
    with pytest.raises(ConfigError, match=r"'signing/cert\.pem' is relative to the project"):
        check_sdist_certificate(settings, tmp_path)
    check_sdist_certificate(Settings(certificate=tmp_path / "PKG-INFO"), tmp_path)  # exists
