"""The setuptools plugin end to end: a real setuptools project built in isolated build
environments (kmssign installed from the session's kmssign wheel), then its wheel checked.

The project ships a DLL and an .exe as package data, a DLL that a custom command compiles
with mingw-w64 during the build, and an .exe in ``data_files`` (a ``.data/`` member).
Signing goes through moto's KMS server on loopback and the loopback TSA.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from kmssign.config import load_settings
from kmssign.errors import ConfigError
from tests.support import peutil
from tests.support.fixtures_build import members, run_build, tree_digest
from tests.support.pki import TestPKI
from tests.support.plugincheck import (
    Built,
    KmsBuild,
    assert_installs,
    assert_signed_lines,
    build_recorded,
    check_kms_signed_wheel,
    one_error_line,
    toml_table,
)

DATA_EXE = "throwaway_st-1.0.data/data/share/throwaway/tool.exe"
SIGNED = {"pkg/bin/lib.dll", "pkg/bin/t64.exe", "pkg/native/helper.dll", DATA_EXE}

SETUP_PY = '''
"""A build that compiles a DLL with mingw-w64 in a custom command, as build_ext would."""
import os
import subprocess

from setuptools import Command, setup
from setuptools.command.build import build


class build_dll(Command):
    description = "compile native/helper.c into pkg/native/helper.dll"
    user_options = []

    def initialize_options(self):
        self.build_lib = None

    def finalize_options(self):
        self.set_undefined_options("build", ("build_lib", "build_lib"))

    def run(self):
        out = os.path.join(self.build_lib, "pkg", "native")
        os.makedirs(out, exist_ok=True)
        subprocess.run(
            ["x86_64-w64-mingw32-gcc", "-O2", "-s", "-shared", "-o",
             os.path.join(out, "helper.dll"), os.path.join("native", "helper.c")],
            check=True,
        )


class build_with_dll(build):
    sub_commands = [*build.sub_commands, ("build_dll", None)]


setup(
    cmdclass={"build": build_with_dll, "build_dll": build_dll},
    data_files=[("share/throwaway", ["native/tool.exe"])],
)
'''

PYPROJECT = """
[build-system]
{requires}
build-backend = "setuptools.build_meta"

[project]
name = "throwaway-st"
version = "1.0"

[tool.setuptools]
packages = ["pkg"]

[tool.setuptools.package-data]
pkg = ["bin/*"]
"""

HELPER_C = "__declspec(dllexport) int helper(int x) { return 2 * x; }\n"


def toml_section(name: str, values: dict[str, object]) -> str:
    return f"\n[{name}]\n{toml_table(values)}\n"


@pytest.fixture(scope="session")
def make_st_project(sample_sources: dict[str, Path]) -> Callable[..., Path]:
    """Factory: the throwaway setuptools project (its root), with or without kmssign's
    tables."""

    def make(
        root: Path,
        kmssign: dict[str, object] | None = None,
        setuptools: dict[str, object] | None = None,
        *,
        requires: tuple[str, ...] = ("setuptools>=70.1", "kmssign"),
    ) -> Path:
        files = {
            "pkg/bin/lib.dll": sample_sources["lib.dll"],
            "pkg/bin/t64.exe": peutil.LAUNCHERS["t64.exe"],
            "native/tool.exe": sample_sources["hello.exe"],
        }
        for relative, src in files.items():
            peutil.copy_sample(src, (root / relative).parent, Path(relative).name)
        (root / "pkg" / "__init__.py").write_text('"""A throwaway package."""\n')
        (root / "pkg" / "bin" / "notes.txt").write_text("not a binary\n")
        (root / "native" / "helper.c").write_text(HELPER_C)
        (root / "MANIFEST.in").write_text("graft native\n")
        (root / "setup.py").write_text(SETUP_PY)
        text = PYPROJECT.format(requires=toml_table({"requires": list(requires)}))
        if kmssign is not None:
            text += toml_section("tool.kmssign", kmssign)
        if setuptools is not None:
            text += toml_section("tool.kmssign.setuptools", setuptools)
        (root / "pyproject.toml").write_text(text)
        return root

    return make


def kms_tables(kms_build: KmsBuild) -> tuple[dict[str, object], dict[str, object]]:
    """[tool.kmssign] without a timestamp, and a setuptools table that turns it on (its keys
    override [tool.kmssign]: the timestamps in the wheel prove it)."""
    return {**kms_build.settings(), "timestamp": "off"}, {
        "timestamp": "required", "description": "throwaway"
    }


@pytest.fixture(scope="module")
def sdist_and_wheel(
    make_st_project: Callable[..., Path], kms_build: KmsBuild,
    tmp_path_factory: pytest.TempPathFactory,
) -> Built[Path]:
    """``python -m build`` of the project, signing with moto's KMS and timestamping."""
    root = tmp_path_factory.mktemp("setuptools")
    project = make_st_project(root / "proj", *kms_tables(kms_build))
    return build_recorded(project, project, lambda p: run_build(
        p, root / "dist", kms_build.env, isolated=True, target="sdist+wheel"))


# --- python -m build: sdist, then the wheel from it --------------------------------------


@pytest.mark.slow
@pytest.mark.mingw
@pytest.mark.network
@pytest.mark.osslsigncode
def test_python_m_build_wheel_is_signed_everywhere(
    sdist_and_wheel: Built[Path], pki: TestPKI, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wheel = sdist_and_wheel.build.wheel
    assert check_kms_signed_wheel(wheel, pki, tmp_path, capsys) == SIGNED
    assert members(wheel)["pkg/bin/notes.txt"] == b"not a binary\n"


@pytest.mark.slow
@pytest.mark.mingw
@pytest.mark.network
def test_build_log_names_every_member_and_the_count(sdist_and_wheel: Built[Path]) -> None:
    assert_signed_lines(sdist_and_wheel.build.output, SIGNED, "kmssign: 4 signed, 0 skipped")
    assert "Found credentials" not in sdist_and_wheel.build.output  # botocore's INFO notes


@pytest.mark.slow
@pytest.mark.mingw
@pytest.mark.network
def test_sdist_and_source_tree_are_untouched(sdist_and_wheel: Built[Path]) -> None:
    project = sdist_and_wheel.project
    (sdist,) = sdist_and_wheel.build.wheel.parent.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        for relative in ("pkg/bin/lib.dll", "native/tool.exe"):
            member = archive.extractfile(f"throwaway_st-1.0/{relative}")
            assert member is not None, relative
            assert member.read() == (project / relative).read_bytes()
    before, after = sdist_and_wheel.before, sdist_and_wheel.after
    assert {k: after.get(k) for k in before} == before  # build/ and egg-info may be new


@pytest.mark.slow
@pytest.mark.mingw
@pytest.mark.network
def test_wheel_installs(sdist_and_wheel: Built[Path], tmp_path: Path) -> None:
    names = ("pkg/bin/lib.dll", "pkg/native/helper.dll")  # --target leaves .data/ out
    assert_installs(sdist_and_wheel.build.wheel, names, tmp_path)


@pytest.mark.slow
@pytest.mark.mingw
@pytest.mark.network
@pytest.mark.osslsigncode
@pytest.mark.parametrize("frontend", ["pip", "build"])  # pip wheel .; python -m build --wheel
def test_a_wheel_built_straight_from_the_tree_is_signed(
    frontend: str, make_st_project: Callable[..., Path], kms_build: KmsBuild, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = make_st_project(tmp_path / "proj", *kms_tables(kms_build))
    build = run_build(project, tmp_path / "dist", kms_build.env, frontend=frontend,
                      isolated=True)
    assert check_kms_signed_wheel(build.wheel, kms_build.pki, tmp_path, capsys) == SIGNED


@pytest.mark.slow
@pytest.mark.mingw
@pytest.mark.network
@pytest.mark.osslsigncode
def test_before_setuptools_70_1_the_wheel_packages_bdist_wheel_is_subclassed(
    make_st_project: Callable[..., Path], kms_build: KmsBuild, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = make_st_project(tmp_path / "proj", *kms_tables(kms_build),
                              requires=("setuptools>=64,<70.1", "wheel", "kmssign"))
    build = run_build(project, tmp_path / "dist", kms_build.env, isolated=True)
    assert check_kms_signed_wheel(build.wheel, kms_build.pki, tmp_path, capsys) == SIGNED
    assert "kmssign: 4 signed, 0 skipped" in build.output


# --- what must not change ----------------------------------------------------------------


REPRODUCIBLE = {"SOURCE_DATE_EPOCH": "1700000000"}  # zip dates and the DLL's timestamps


@pytest.fixture(scope="module")
def plain_wheel(
    make_st_project: Callable[..., Path],
    build_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The project's wheel built without kmssign in the build environment at all."""
    root = tmp_path_factory.mktemp("plain")
    project = make_st_project(root / "proj", requires=("setuptools>=70.1",))
    build = run_build(project, root / "dist", {**build_env, **REPRODUCIBLE}, isolated=True)
    assert "kmssign" not in build.output
    return build.wheel


@pytest.mark.slow
@pytest.mark.mingw
@pytest.mark.network
@pytest.mark.parametrize(
    ("setuptools_table", "disable", "notes"),
    [
        (None, "", []),  # kmssign installed, [tool.kmssign] present: nothing at all
        ({"certificate": "missing.pem"}, "1", ["kmssign: KMSSIGN_DISABLE is set; not signing"]),
    ],
    ids=["no table", "KMSSIGN_DISABLE"],
)
def test_the_wheel_is_byte_identical_to_one_built_without_kmssign(
    setuptools_table: dict[str, object] | None,
    disable: str,
    notes: list[str],
    make_st_project: Callable[..., Path],
    plain_wheel: Path,
    build_env: dict[str, str],
    tmp_path: Path,
) -> None:
    project = make_st_project(tmp_path / "proj", {"key-id": "alias/never-used"},
                              setuptools_table)
    env = {**build_env, **REPRODUCIBLE, "KMSSIGN_DISABLE": disable}
    build = run_build(project, tmp_path / "dist", env, isolated=True)
    assert build.wheel.read_bytes() == plain_wheel.read_bytes()
    assert "- kmssign" in build.output  # installed in the build environment
    assert [x.strip() for x in build.output.splitlines() if "kmssign:" in x] == notes


@pytest.mark.slow
@pytest.mark.mingw
@pytest.mark.network
@pytest.mark.parametrize("frontend", ["build", "pip"])
def test_a_wrong_certificate_fails_the_build_in_one_line(
    frontend: str, make_st_project: Callable[..., Path], kms_build: KmsBuild, tmp_path: Path
) -> None:
    settings = {**kms_build.settings(), "timestamp": "off",
                "certificate": str(kms_build.pki.identity().cert_path)}
    project = make_st_project(tmp_path / "proj", settings, {})
    out = tmp_path / "dist"
    build = run_build(project, out, kms_build.env, frontend=frontend, isolated=True)
    line = one_error_line(build)
    assert line.startswith("kmssign: error: certificate "), line
    assert "does not belong to KMS key" in line, line
    assert not list(out.rglob("*.whl"))


@pytest.mark.slow
@pytest.mark.mingw
@pytest.mark.network
@pytest.mark.posix  # the venv's bin/python
def test_editable_install_is_left_alone(
    make_st_project: Callable[..., Path], pki: TestPKI, build_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """``pip install -e``: no signing at all, so a configuration that could only fail
    (a certificate that does not exist) does not stop it, and the tree stays as it was."""
    project = make_st_project(
        tmp_path / "proj", {"key-file": str(pki.identity().key_path)},
        {"certificate": str(tmp_path / "missing.pem")},
    )
    before = tree_digest(project)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-v", "--no-deps", "-e", str(project)],
        env=build_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout
    assert "kmssign:" not in proc.stdout, proc.stdout
    after = tree_digest(project)
    assert {k: after.get(k) for k in before} == before
    code = "import pkg, pathlib; print(pathlib.Path(pkg.__file__).parent)"
    where = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                           cwd=tmp_path, check=True).stdout.strip()
    assert Path(where) == project / "pkg"


# --- without a build -----------------------------------------------------------------------


def test_the_setuptools_table_is_not_a_setting_of_tool_kmssign(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.kmssign]\nkey-id = "alias/a"\n[tool.kmssign.setuptools]\ndescription = "x"\n'
    )
    assert load_settings(config=tmp_path, env={}).key_id == "alias/a"
    (tmp_path / "pyproject.toml").write_text('[tool.kmssign]\nsetuptools = "yes"\n')
    with pytest.raises(ConfigError, match=r"tool\.kmssign\.setuptools must be a table"):
        load_settings(config=tmp_path, env={})


def test_the_plugin_does_nothing_without_its_table(tmp_path: Path) -> None:
    """The entry point leaves the Distribution alone (no table, no pyproject.toml)."""
    from kmssign.frontends.setuptools.plugin import finalize_distribution_options

    class Dist:
        src_root = str(tmp_path)

        def __init__(self) -> None:
            self.cmdclass: dict[str, type] = {}

        def get_command_class(self, name: str) -> type:
            raise AssertionError(f"looked up {name}")

    dist = Dist()
    finalize_distribution_options(dist)
    (tmp_path / "pyproject.toml").write_text('[tool.kmssign]\nkey-id = "alias/a"\n')
    finalize_distribution_options(dist)
    assert dist.cmdclass == {}


def test_project_settings_layer_the_table_over_tool_kmssign(tmp_path: Path) -> None:
    from kmssign.frontends.setuptools.command import project_settings

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[tool.kmssign]\nkey-id = "alias/file"\ndigest = "sha384"\ncertificate = "c.pem"\n'
        '[tool.kmssign.setuptools]\ndigest = "sha512"\n'
    )
    settings = project_settings(pyproject, {})
    assert (settings.key_id, settings.digest) == ("alias/file", "sha512")
    assert settings.certificate == tmp_path / "c.pem"
    assert project_settings(pyproject, {"KMSSIGN_DIGEST": "sha256"}).digest == "sha256"



FAILING = """
import sys
from pathlib import Path

import setuptools  # first, as in a build

from kmssign.frontends.setuptools.command import sign_made_wheels

wheel = Path(sys.argv[2])
try:
    sign_made_wheels([wheel], Path(sys.argv[1]), print)
except SystemExit as exc:
    print(type(exc).__name__, exc.code, sep="|")
"""


def test_a_failure_removes_the_wheel_and_exits_with_one_line(tmp_path: Path) -> None:
    """What the backend's process prints as its one line and fails the build on (in a
    fresh interpreter: setuptools must be imported before anything loads distutils)."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[tool.kmssign]\nkey-id = "alias/x"\n'
        '[tool.kmssign.setuptools]\ntimestamp = "sometimes"\ncolour = "red"\n'
    )
    wheel = tmp_path / "x-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + bytes(18))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMSSIGN_")}
    proc = subprocess.run([sys.executable, "-c", FAILING, str(pyproject), str(wheel)],
                          capture_output=True, text=True, env=env, check=True)
    kind, _, message = proc.stdout.strip().partition("|")
    assert kind == "SystemExit", proc.stdout + proc.stderr
    assert message.startswith("kmssign: error: ") and "\n" not in message, message
    assert "tool.kmssign.setuptools.timestamp must be one of" in message, message
    assert "tool.kmssign.setuptools.colour is not a known setting" in message, message
    assert not wheel.exists()
