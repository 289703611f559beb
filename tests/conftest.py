from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import peutil, wixlbuild
from tests.support import profiles as _profiles  # noqa: F401  (Hypothesis' fast and fuzz)
from tests.support.pki import TestPKI

# Fixture modules owned by the parts that need them (KMS server, TSA server, ...).
pytest_plugins = [f"tests.support.{name}" for name in (
    "fixtures_kms", "fixtures_tsa", "fixtures_pyinstaller", "fixtures_build", "plugincheck",
    "fixtures_pypi", "fixtures_plugins", "fixtures_pkcs11")]

# The Debian tools some tests run, by their marker: (where found here, the command, the
# package). This table is the one place their presence is checked; .ci/run installs all.
TOOLS = {
    "osslsigncode": (peutil.OSSLSIGNCODE, "osslsigncode", "osslsigncode"),
    "wine": (peutil.WINE, "wine64", "wine64"),
    "mingw": (peutil.MINGW_GCC, "x86_64-w64-mingw32-gcc", "gcc-mingw-w64-x86-64"),
    "wixl": (wixlbuild.WIXL, "wixl", "wixl"),
    "msitools": (wixlbuild.MSIINFO, "msiinfo", "msitools"),
    "softhsm": (peutil.SOFTHSM, "softhsm2-util and pkcs11-tool", "softhsm2 opensc"),
}


def _missing(marker: str) -> str | None:
    """Why a test marked ``marker`` cannot run here, or None when it can."""
    found, command, package = TOOLS[marker]
    return None if found else f"{command} is not installed (apt-get install {package})"


def pytest_report_header() -> str:
    return "tools: " + ", ".join(f"{marker} {found or 'missing (its tests are skipped)'}"
                                 for marker, (found, _, _) in TOOLS.items())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked with a tool missing here is skipped, naming the Debian package (-ra,
    in addopts, lists each reason). `-m "not osslsigncode and ..."` deselects them instead,
    as the Windows CI job does."""
    for item in items:
        reasons = {_missing(m.name) for m in item.iter_markers() if m.name in TOOLS} - {None}
        if reasons:
            item.add_marker(pytest.mark.skip(reason="; ".join(sorted(map(str, reasons)))))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """One test PKI per session: root, intermediate, code-signing leaves, TSA certs."""
    return TestPKI.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def mingw_binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """hello.exe and lib.dll compiled with mingw-w64 (a test using them is marked mingw)."""
    return peutil.build_mingw(tmp_path_factory.mktemp("mingw"))


@pytest.fixture(scope="session")
def sample_sources(request: pytest.FixtureRequest) -> dict[str, Path]:
    """Every real PE sample available here, by name (read-only originals): pip's launchers,
    and hello.exe and lib.dll where mingw-w64 is installed (CI on Linux; a test that needs
    those two is marked mingw, one over every sample takes what there is)."""
    samples = dict(peutil.LAUNCHERS)
    if _missing("mingw") is None:
        samples.update(request.getfixturevalue("mingw_binaries"))
    return samples


@pytest.fixture
def samples(sample_sources: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """Fresh writable copies of every real PE sample."""
    return {
        name: peutil.copy_sample(src, tmp_path / "samples") for name, src in sample_sources.items()
    }
