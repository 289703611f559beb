"""Fixtures for the PyInstaller tests: Windows bootloader, wine (and WinVerifyTrust under it),
KMS Sign counter, builds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import peutil
from tests.support.fixtures_kms import KmsServer
from tests.support.kms_proxy import KmsProxy

BOOTLOADER = "PyInstaller/bootloader/Windows-64bit-intel/run.exe"


@dataclass
class Wine:
    """wine64 with a private prefix for this session."""

    binary: str
    env: dict[str, str]

    def run(self, exe: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, str(exe), *args],
            capture_output=True, text=True, env=self.env, cwd=exe.parent, timeout=300,
        )


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wine]:
    """Runs Windows executables; the first use creates the prefix (about 10 s). A test
    using it is marked wine."""
    binary = peutil.WINE
    assert binary, "wine64 is required (apt-get install wine64)"
    env = dict(os.environ)
    env.update(WINEPREFIX=str(tmp_path_factory.mktemp("wineprefix")), WINEDEBUG="-all",
               WINEDLLOVERRIDES="mscoree,mshtml=")  # no Mono/Gecko installer dialogs
    proc = subprocess.run([binary, "wineboot", "--init"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, f"wine could not create a prefix: {proc.stderr.strip()[-300:]}"
    try:
        yield Wine(binary, env)
    finally:
        server = shutil.which("wineserver") or str(Path(binary).with_name("wineserver"))
        if os.access(server, os.X_OK):
            subprocess.run([server, "-k"], env=env, capture_output=True, timeout=60, check=False)


OK = "00000000"
TRUST_E_BAD_DIGEST = "80096010"
TRUST_E_NOSIGNATURE = "800b0100"

# wvt FILE...: prints WinVerifyTrust's HRESULT for each file, one hex line each.
WVT_C = r"""
#include <windows.h>
#include <wintrust.h>
#include <softpub.h>
#include <stdio.h>

int wmain(int argc, wchar_t **argv) {
    for (int i = 1; i < argc; i++) {
        WINTRUST_FILE_INFO file = {0};
        file.cbStruct = sizeof file;
        file.pcwszFilePath = argv[i];
        WINTRUST_DATA data = {0};
        data.cbStruct = sizeof data;
        data.dwUIChoice = WTD_UI_NONE;
        data.fdwRevocationChecks = WTD_REVOKE_NONE;
        data.dwUnionChoice = WTD_CHOICE_FILE;
        data.pFile = &file;
        data.dwStateAction = WTD_STATEACTION_VERIFY;
        GUID action = WINTRUST_ACTION_GENERIC_VERIFY_V2;
        LONG status = WinVerifyTrust(NULL, &action, &data);
        data.dwStateAction = WTD_STATEACTION_CLOSE;
        WinVerifyTrust(NULL, &action, &data);
        printf("%08lx\n", (unsigned long)status);
    }
    return 0;
}
"""

Check = Callable[[Sequence[Path]], list[str]]


def _windows_path(path: Path) -> str:
    return "Z:" + str(path.resolve()).replace("/", "\\")  # Wine's Z: drive is /


@pytest.fixture(scope="session")
def win_verify_trust(wine: Wine, tmp_path_factory: pytest.TempPathFactory) -> Check:
    """Runs WinVerifyTrust on files under Wine; returns its HRESULT for each, as hex (a
    test using it is marked wine and mingw)."""
    assert peutil.MINGW_GCC
    directory = tmp_path_factory.mktemp("wvt")
    (directory / "wvt.c").write_text(WVT_C)
    exe = directory / "wvt.exe"
    subprocess.run(
        [peutil.MINGW_GCC, "-municode", "-O1", "-o", str(exe), str(directory / "wvt.c"),
         "-lwintrust"],
        check=True, capture_output=True, text=True,
    )

    def check(paths: Sequence[Path]) -> list[str]:
        ran = wine.run(exe, *(_windows_path(p) for p in paths))
        assert ran.returncode == 0, ran.stderr
        return ran.stdout.split()

    return check


@pytest.fixture(scope="session")
def windows_bootloader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PyInstaller's own Windows x64 bootloader (run.exe) from its win_amd64 wheel.

    The wheel is the installed PyInstaller's version, so its archive format matches
    PyInstaller's CArchiveWriter here.
    """
    import PyInstaller

    directory = tmp_path_factory.mktemp("pyinstaller-win")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--platform", "win_amd64",
         "--only-binary=:all:", "--no-deps", f"pyinstaller=={PyInstaller.__version__}",
         "-d", str(directory)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    wheels = sorted(directory.glob("pyinstaller-*-win_amd64.whl"))
    if proc.returncode != 0 or not wheels:
        pytest.skip(f"cannot download PyInstaller's win_amd64 wheel: {proc.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        run_exe = directory / "run.exe"
        run_exe.write_bytes(wheel.read(BOOTLOADER))
    return run_exe


@pytest.fixture(scope="session")
def kms_counter(kms_server: KmsServer) -> Iterator[KmsProxy]:
    """KMS calls counted on the wire (builds run in subprocesses)."""
    counter = KmsProxy(kms_server.endpoint_url).start()
    try:
        yield counter
    finally:
        counter.stop()


def run_pyinstaller(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m PyInstaller`` in ``project`` (output in project/dist, project/build)."""
    return subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", *args],
        cwd=project, capture_output=True, text=True, env=env, timeout=900, check=False,
    )


def run_kmssign(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``kmssign`` command in a fresh interpreter, in ``project``."""
    code = "import sys; from kmssign.frontends.cli.main import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=project, capture_output=True, text=True, env=env, timeout=900, check=False,
    )
