"""The recipes of docs/how-to/wheels.md and verify-release.md run as written: cibuildwheel's
``repair-wheel-command`` (with and without delvewheel) on a real win_amd64 wheel, a wheel
built by a third backend (flit) then signed with ``kmssign wheel``, and the nox session
that checks ``dist/`` before a release.

Signing goes through moto's KMS server on loopback and the loopback TSA; every PE member
is checked with ``osslsigncode verify`` and ``kmssign verify``, RECORD with our own check
and ``python -m wheel unpack``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import peutil, wheelutil
from tests.support.docs import page
from tests.support.fixtures_build import SAMPLE_APP, run_build
from tests.support.helpers import run_cli
from tests.support.markdown import code_blocks, section
from tests.support.plugincheck import KmsBuild, check_kms_signed_wheel, toml_table

BIN = Path(sys.executable).parent  # kmssign, delvewheel and python of the test environment

HELPER_C = "__declspec(dllexport) int helper(int x) { return 2 * x; }\n"
EXT_C = """
__declspec(dllimport) int helper(int x);
__declspec(dllexport) void *PyInit__ext(void) { return (void *)(long long)helper(21); }
"""
LIB_C = "__declspec(dllexport) int lib_add(int a, int b) { return a + b; }\n"
PYD = f"{wheelutil.DIST}/_ext.cp312-win_amd64.pyd"
LIB = f"{wheelutil.DIST}/bin/lib.dll"
SCRIPT = f"{wheelutil.DIST}-{wheelutil.VERSION}.data/scripts/tool.exe"


def mingw(out: Path, source: str, *extra: str) -> Path:
    c_file = out.with_suffix(".c")
    c_file.write_text(source)
    assert peutil.MINGW_GCC
    subprocess.run([peutil.MINGW_GCC, "-O2", "-s", "-shared", "-o", str(out), str(c_file),
                    *extra], check=True)
    return out


@pytest.fixture(scope="session")
def win_wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A win_amd64 wheel with a .pyd that loads helper.dll, a DLL of its own and a tool in
    .data/scripts; and the directory holding helper.dll (not in the wheel, as after a
    build: delvewheel finds it on PATH)."""
    root = tmp_path_factory.mktemp("win-wheel")
    native = root / "native"
    native.mkdir()
    helper = mingw(native / "helper.dll", HELPER_C)
    pyd = mingw(root / "_ext.pyd", EXT_C, str(helper))
    lib = mingw(root / "lib.dll", LIB_C)
    wheel = wheelutil.write_wheel(root / wheelutil.WHEEL_NAME, {
        f"{wheelutil.DIST}/__init__.py": b'"""demo"""\n',
        PYD: pyd.read_bytes(),
        LIB: lib.read_bytes(),
        SCRIPT: peutil.LAUNCHERS["t64.exe"].read_bytes(),
    })
    return wheel, native


def kmssign_table(kms_build: KmsBuild) -> str:
    return "[tool.kmssign]\n" + toml_table(kms_build.settings()) + "\n"


def with_path(env: dict[str, str], *directories: Path) -> dict[str, str]:
    """``env`` with ``directories`` first on PATH."""
    return {**env, "PATH": os.pathsep.join([*map(str, directories), env["PATH"]])}


def shell(command: str, cwd: Path, env: dict[str, str]) -> str:
    """Run ``command`` through the shell, as cibuildwheel and a CI step do."""
    proc = subprocess.run(command, shell=True, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 0, f"{command}\n{proc.stdout}"
    return proc.stdout


# --- cibuildwheel ---------------------------------------------------------------------------


def repair_commands() -> list[str]:
    text = section(page("how-to/wheels.md"), "## cibuildwheel")
    found = [m for block in code_blocks(text)
             for m in re.findall(r'^repair-wheel-command = "(.*)"$', block, flags=re.M)]
    assert len(found) == 2, found
    return found


def test_the_page_has_both_repair_commands() -> None:
    with_delvewheel, alone = repair_commands()
    assert with_delvewheel.startswith("delvewheel repair -w {dest_dir} {wheel} && kmssign ")
    assert alone.startswith("kmssign wheel ")
    for command in (with_delvewheel, alone):
        assert "*" not in command  # cmd.exe expands no globs


@pytest.mark.slow
@pytest.mark.mingw
@pytest.mark.osslsigncode
@pytest.mark.parametrize("which", ["delvewheel", "kmssign alone"])
def test_repair_wheel_command_leaves_one_signed_wheel_in_dest_dir(
    which: str, win_wheel: tuple[Path, Path], kms_build: KmsBuild, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    command = repair_commands()[0 if which == "delvewheel" else 1]
    built, native = win_wheel
    project = tmp_path / "project"  # cibuildwheel runs the command in the project directory
    project.mkdir()
    (project / "pyproject.toml").write_text(kmssign_table(kms_build))
    wheel = tmp_path / "built_wheel" / built.name
    wheel.parent.mkdir()
    shutil.copyfile(built, wheel)
    dest_dir = tmp_path / "repaired_wheel"
    dest_dir.mkdir()  # cibuildwheel makes it, empty, for each build
    env = with_path(kms_build.env, BIN, native)
    shell(command.format(wheel=wheel, dest_dir=dest_dir), project, env)
    (repaired,) = dest_dir.glob("*.whl")
    assert repaired.name == built.name
    names = check_kms_signed_wheel(repaired, kms_build.pki, tmp_path, capsys)
    expected = {PYD, LIB, SCRIPT}
    if which == "delvewheel":
        (vendored,) = names - expected
        assert re.fullmatch(rf"{wheelutil.DIST}\.libs/helper-[0-9a-f]+\.dll", vendored), names
    else:
        assert names == expected
        assert wheel.read_bytes() == built.read_bytes()  # {wheel} itself is left as built


# --- a third backend: flit ------------------------------------------------------------------


FLIT_PYPROJECT = """
[build-system]
requires = ["flit_core>=3.4,<5"]
build-backend = "flit_core.buildapi"

[project]
name = "flitdemo"
version = "1.0"
description = "A pure-Python package that ships Windows binaries as package data"

"""


def backend_recipe() -> list[str]:
    blocks = code_blocks(section(page("how-to/wheels.md"), "## Other build backends"))
    lines = [line for line in blocks[0].splitlines() if line.strip()]
    assert lines[0] == "python -m build --wheel", lines
    assert lines[1].startswith("kmssign wheel "), lines
    assert lines[2] == "kmssign verify dist/", lines
    return lines


@pytest.mark.slow
@pytest.mark.mingw
@pytest.mark.osslsigncode
@pytest.mark.network  # flit_core for the isolated build
def test_a_flit_wheel_signed_as_the_page_says(
    sample_sources: dict[str, Path], kms_build: KmsBuild, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = tmp_path / "flitdemo"
    package = project / "flitdemo"
    peutil.copy_sample(sample_sources["lib.dll"], package / "bin")
    peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], package / "bin")
    (package / "__init__.py").write_text('"""Binaries for Windows."""\n')
    (project / "pyproject.toml").write_text(FLIT_PYPROJECT + kmssign_table(kms_build))
    for line in backend_recipe():
        if line.startswith("kmssign verify "):
            # the page's verify trusts Microsoft's root program, as Windows does; the
            # test's CA is not in it, so its root is given as a user of a private CA would
            line += f" --ca {kms_build.pki.root_pem}"
        shell(line, project, with_path(kms_build.env, BIN))
    (wheel,) = (project / "dist").glob("*.whl")
    assert wheel.name.startswith("flitdemo-1.0-") and wheel.name.endswith("-none-any.whl")
    names = check_kms_signed_wheel(wheel, kms_build.pki, tmp_path, capsys)
    assert names == {"flitdemo/bin/lib.dll", "flitdemo/bin/t64.exe"}


# --- the release check: the nox session ----------------------------------------------------


def page_noxfile() -> str:
    blocks = [b for b in code_blocks(page("how-to/verify-release.md")) if "@nox.session" in b]
    assert len(blocks) == 1
    return blocks[0]


class RecordingSession:
    """Stands in for ``nox.Session``: records what the session would install and run."""

    def __init__(self) -> None:
        self.installed: list[str] = []
        self.commands: list[list[str]] = []

    def install(self, *args: str) -> None:
        self.installed.extend(args)

    def run(self, *args: str) -> None:
        self.commands.append(list(args))


def load_session(source: str) -> Callable[[RecordingSession], None]:
    fake_nox = types.ModuleType("nox")
    fake_nox.session = lambda f: f  # type: ignore[attr-defined]
    fake_nox.Session = RecordingSession  # type: ignore[attr-defined]
    saved = sys.modules.get("nox")
    sys.modules["nox"] = fake_nox
    try:
        namespace: dict[str, object] = {"__name__": "noxfile"}
        exec(compile(source, "noxfile.py", "exec"), namespace)
    finally:
        if saved is None:
            del sys.modules["nox"]
        else:
            sys.modules["nox"] = saved
    session = namespace["verify_signatures"]
    assert callable(session)
    return session  # type: ignore[return-value]


def test_sample_apps_noxfile_has_the_pages_session() -> None:
    def body(source: str) -> list[str]:
        lines = source.splitlines()
        start = next(i for i, line in enumerate(lines) if line == "@nox.session")
        return lines[start:]

    own = (SAMPLE_APP / "noxfile.py").read_text(encoding="utf-8")
    assert body(own) == body(page_noxfile())


@pytest.mark.slow
@pytest.mark.mingw
@pytest.mark.network  # hatchling for the isolated build
def test_the_release_session_passes_signed_dist_and_fails_an_unsigned_binary(
    kms_build: KmsBuild, sample_sources: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sample_app's session over a dist/ holding its signed wheel (built by the Hatch hook)
    and a PyInstaller-like app directory signed by ``kmssign sign``."""
    identity, pki = kms_build.identity, kms_build.pki
    app = tmp_path / "sample_app"
    shutil.copytree(SAMPLE_APP, app, ignore=shutil.ignore_patterns("__pycache__", "dist"))
    (app / "signing").mkdir()
    shutil.copyfile(pki.root_pem, app / "signing" / "root.pem")
    env = {**kms_build.env, "KMSSIGN_KEY_ID": identity.key_id,
           "KMSSIGN_CERTIFICATE": str(identity.cert_path),
           "KMSSIGN_TIMESTAMP_URLS": kms_build.tsa.url()}
    dist = app / "dist"
    assert run_build(app, dist, env, isolated=True).returncode == 0
    onedir = dist / "sample-app"
    for name in ("sample-app.exe", "_internal/helper.dll"):
        src = sample_sources["hello.exe" if name.endswith(".exe") else "lib.dll"]
        peutil.copy_sample(src, (onedir / name).parent, Path(name).name)
    for name, value in env.items():
        if name.startswith(("KMSSIGN_", "AWS_")):
            monkeypatch.setenv(name, value)
    code, out, err = run_cli(capsys, "sign", str(onedir))
    assert code == 0, out + err

    session = load_session((app / "noxfile.py").read_text(encoding="utf-8"))
    recorder = RecordingSession()
    session(recorder)
    assert recorder.installed == ["kmssign"]
    ((program, *args),) = recorder.commands
    assert program == "kmssign"
    monkeypatch.chdir(app)
    code, out, err = run_cli(capsys, *args)
    assert code == 0, out + err
    assert "sample_app/bin/hello.exe" in out and "sample-app.exe" in out, out

    peutil.copy_sample(sample_sources["lib.dll"], onedir / "_internal", "unsigned.dll")
    code, out, err = run_cli(capsys, *args)
    assert code != 0
    assert "unsigned.dll" in out + err
