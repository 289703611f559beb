"""Every front end works with every signer: the settings pass through. Here the PKCS#11
signer (SoftHSM2) signs through ``kmssign wheel``, the PyInstaller helpers and a real
Hatch build, and a signer package through the Hatch build as well."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kmssign.pyinstaller import sign_outputs
from tests.support import peutil, wheelutil
from tests.support.fixtures_build import extract, run_build
from tests.support.fixtures_pkcs11 import MODULE, TOKEN, USER_PIN, SoftHsm
from tests.support.fixtures_plugins import InstalledPlugin
from tests.support.helpers import run_cli
from tests.support.pki import TestPKI

pytestmark = [pytest.mark.osslsigncode]


@pytest.mark.softhsm
def test_kmssign_wheel_signs_through_a_token(
    capsys, monkeypatch: pytest.MonkeyPatch, softhsm: SoftHsm, pki: TestPKI, samples, tsa,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("KMSSIGN_PKCS11_PIN", USER_PIN)
    dist = f"{wheelutil.DIST}-{wheelutil.VERSION}"
    pe = (f"{wheelutil.DIST}/_ext.cp312-win_amd64.pyd", f"{dist}.data/scripts/tool.exe")
    members = {f"{wheelutil.DIST}/__init__.py": b"", pe[0]: samples["t64.exe"].read_bytes(),
               pe[1]: samples["w32.exe"].read_bytes()}
    wheel = wheelutil.write_wheel(tmp_path / wheelutil.WHEEL_NAME, members)
    code, out, err = run_cli(
        capsys, "wheel", str(wheel), "--pkcs11-module", str(MODULE), "--pkcs11-token", TOKEN,
        "--pkcs11-key", "sign-rsa4096", "--chain", str(pki.identity("rsa4096").chain_path),
        "--timestamp-url", tsa.url("tsa"),
    )
    assert code == 0, err
    extracted = wheelutil.check_signed_wheel(wheel, pki, tmp_path, members=pe, timestamped=True)
    for path in extracted.values():
        assert "kmssign Test Signer rsa4096" in peutil.osslsigncode_verify(path, pki.root_pem)
    code, out, err = run_cli(capsys, "verify", str(wheel), "--ca", str(pki.root_pem),
                             "--require-signed")
    assert code == 0, err


@pytest.mark.softhsm
def test_the_pyinstaller_helper_takes_the_pkcs11_settings(
    monkeypatch: pytest.MonkeyPatch, softhsm: SoftHsm, pki: TestPKI, samples, tmp_path: Path
) -> None:
    monkeypatch.setenv("KMSSIGN_PKCS11_PIN", USER_PIN)
    (tmp_path / "pyproject.toml").write_text("[tool.kmssign]\n")
    tree = tmp_path / "dist" / "app"
    for name in ("t64.exe", "w32.exe"):
        peutil.copy_sample(samples[name], tree)
    report = sign_outputs(
        tree, config=tmp_path, pkcs11_module=MODULE, pkcs11_token=TOKEN,
        pkcs11_key="sign-p384", chain=[pki.identity("p384").chain_path], timestamp="off",
    )
    assert report.count("signed") == 2, report.results
    for name in ("t64.exe", "w32.exe"):
        assert "kmssign Test Signer p384" in peutil.osslsigncode_verify(tree / name, pki.root_pem)


PYPROJECT = """\
[build-system]
requires = ["hatchling", "kmssign"]
build-backend = "hatchling.build"

[project]
name = "tokenbuilt"
version = "1.0"

[tool.hatch.build.targets.wheel]
packages = ["pkg"]
artifacts = ["pkg/*.exe"]

[tool.hatch.build.targets.wheel.hooks.kmssign]
{hook}
"""


def _project(root: Path, hook: str, exe: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    peutil.copy_sample(exe, root / "pkg", "tool.exe")
    (root / "pyproject.toml").write_text(PYPROJECT.format(hook=textwrap.dedent(hook)))
    return root


@pytest.mark.slow
@pytest.mark.softhsm
def test_a_hatch_build_signs_through_a_token(
    softhsm: SoftHsm, pki: TestPKI, build_env: dict[str, str], sample_sources, tmp_path: Path
) -> None:
    chain = pki.identity("p256").chain_path
    project = _project(tmp_path / "project", f"""\
        pkcs11-module = "{MODULE}"
        pkcs11-token = "{TOKEN}"
        pkcs11-key = "sign-p256"
        chain = "{chain}"
        timestamp = "off"
        """, sample_sources["t64.exe"])
    env = {**build_env, "SOFTHSM2_CONF": str(softhsm.conf), "KMSSIGN_PKCS11_PIN": USER_PIN}
    built = run_build(project, tmp_path / "out", env)
    assert built.returncode == 0, built.output
    assert USER_PIN not in built.output
    tool = extract(built.wheel, tmp_path / "x") / "pkg" / "tool.exe"
    assert "kmssign Test Signer p256" in peutil.osslsigncode_verify(tool, pki.root_pem)


@pytest.mark.slow
def test_a_hatch_build_signs_through_a_signer_package(
    signer_plugin: InstalledPlugin, pki: TestPKI, build_env: dict[str, str], sample_sources,
    tmp_path: Path,
) -> None:
    identity = pki.identity("rsa2048")
    project = _project(tmp_path / "project", f"""\
        signer = "acme"
        certificate = "{identity.cert_path}"
        chain = "{identity.chain_path}"
        timestamp = "off"
        """, sample_sources["w32.exe"])
    log = tmp_path / "acme.log"
    env = {**build_env, "PYTHONPATH": str(signer_plugin.site),
           "ACME_SIGNER_KEY": str(identity.key_path), "ACME_SIGNER_LOG": str(log)}
    built = run_build(project, tmp_path / "out", env)
    assert built.returncode == 0, built.output
    assert log.read_text().count("\n") == 1
    tool = extract(built.wheel, tmp_path / "x") / "pkg" / "tool.exe"
    assert "kmssign Test Signer rsa2048" in peutil.osslsigncode_verify(tool, pki.root_pem)


ST_PYPROJECT = """\
[build-system]
requires = ["setuptools>=70.1", "kmssign[pkcs11]"]
build-backend = "setuptools.build_meta"

[project]
name = "tokenbuilt-st"
version = "1.0"

[tool.setuptools]
packages = ["pkg"]

[tool.setuptools.package-data]
pkg = ["*.exe"]

[tool.kmssign]
pkcs11-module = "{module}"
pkcs11-token = "{token}"
pkcs11-key = "id:e2"
chain = "{chain}"

[tool.kmssign.setuptools]
timestamp = "off"
"""


@pytest.mark.slow
@pytest.mark.network  # an isolated build environment: setuptools and python-pkcs11 from PyPI
@pytest.mark.softhsm
def test_a_setuptools_build_signs_through_a_token(
    softhsm: SoftHsm, pki: TestPKI, build_env: dict[str, str], sample_sources, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text("")
    peutil.copy_sample(sample_sources["t64.exe"], project / "pkg", "tool.exe")
    (project / "pyproject.toml").write_text(ST_PYPROJECT.format(
        module=MODULE, token=TOKEN, chain=pki.identity("p384").chain_path))
    env = {**build_env, "SOFTHSM2_CONF": str(softhsm.conf), "KMSSIGN_PKCS11_PIN": USER_PIN}
    built = run_build(project, tmp_path / "out", env, isolated=True)
    assert built.returncode == 0, built.output
    assert USER_PIN not in built.output
    tool = extract(built.wheel, tmp_path / "x") / "pkg" / "tool.exe"
    assert "kmssign Test Signer p384" in peutil.osslsigncode_verify(tool, pki.root_pem)


@pytest.mark.slow
@pytest.mark.posix  # bash
@pytest.mark.network  # the step pip-installs kmssign and its dependencies
@pytest.mark.parametrize("where", ["env", "pyproject"])
def test_the_actions_install_step_adds_the_pkcs11_extra(tmp_path: Path, where: str) -> None:
    """With PKCS#11 settings in the step's env (or the project's pyproject.toml), the
    Action's own environment can load the PKCS#11 signer; the five inputs stay."""
    import os
    import subprocess

    import yaml

    root = Path(__file__).resolve().parent.parent
    action = yaml.safe_load((root / "action.yml").read_text(encoding="utf-8"))
    install = action["runs"]["steps"][0]
    assert install["id"] == "install"
    workdir, runner = tmp_path / "workspace", tmp_path / "runner"
    workdir.mkdir()
    runner.mkdir()
    env = {k: os.environ[k] for k in ("PATH", "TMPDIR") if k in os.environ}
    env.update(HOME=str(tmp_path), RUNNER_OS="Linux", RUNNER_TEMP=str(runner),
               GITHUB_ACTION_PATH=str(root), GITHUB_OUTPUT=str(runner / "output"))
    if where == "env":
        env["KMSSIGN_PKCS11_MODULE"] = str(MODULE)
    else:
        (workdir / "pyproject.toml").write_text('[tool.kmssign]\npkcs11-key = "release"\n')
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                           install["run"]], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    python = dict(line.split("=", 1) for line in
                  (runner / "output").read_text().splitlines())["python"]
    check = subprocess.run(
        [python, "-c", "import pkcs11, kmssign._internal.signers.pkcs11; print('ok')"],
        capture_output=True, text=True, check=False,
    )
    assert check.stdout.strip() == "ok", check.stderr
