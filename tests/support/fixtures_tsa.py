"""TSA fixtures: one real loopback RFC 3161 server per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pki import TestPKI
from tests.support.tsa_server import LoopbackTSA


@pytest.fixture(scope="session")
def tsa(pki: TestPKI) -> Iterator[LoopbackTSA]:
    """The loopback TSA: ``tsa.url(mode)``, ``tsa.count(mode)``, ``tsa.reset()``,
    ``tsa.refused_url()``; modes are listed in :mod:`tests.support.tsa_server`."""
    server = LoopbackTSA(pki).start()
    try:
        yield server
    finally:
        server.stop()
