from __future__ import annotations

from pathlib import Path

import pytest

from tests import peutil
from tests.pki import TestPKI

# Fixture modules owned by the parts that need them (KMS server, TSA server, ...).
pytest_plugins = ["tests.fixtures_kms", "tests.fixtures_tsa", "tests.fixtures_pyinstaller",
                  "tests.fixtures_build", "tests.plugincheck", "tests.fixtures_pypi"]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """One test PKI per session: root, intermediate, code-signing leaves, TSA certs."""
    return TestPKI.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def mingw_binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """hello.exe and lib.dll compiled with mingw-w64 (empty dict when mingw is absent)."""
    return peutil.build_mingw(tmp_path_factory.mktemp("mingw"))


@pytest.fixture(scope="session")
def sample_sources(mingw_binaries: dict[str, Path]) -> dict[str, Path]:
    """Every real PE sample available here, by name (read-only originals)."""
    samples = dict(peutil.LAUNCHERS)
    samples.update(mingw_binaries)
    return samples


@pytest.fixture
def samples(sample_sources: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """Fresh writable copies of every real PE sample."""
    return {
        name: peutil.copy_sample(src, tmp_path / "samples") for name, src in sample_sources.items()
    }
