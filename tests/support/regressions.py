"""Failing property-test cases kept as regression files under tests/regressions/<kind>/.

A property test describes each case as JSON. :func:`kept_on_failure` notes it (Hypothesis
prints it with the failure) and, when KMSSIGN_SAVE_REGRESSIONS=DIR is set (``nox -s
fuzz`` sets it to tests/regressions), writes it to DIR/<kind>/<test>.json. Hypothesis
runs the shrunk example last, so that is the file left behind; commit it under a name
that says what it is, and the test module's replay test runs it on every ``nox -s tests``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from hypothesis import currently_in_test_context, note

ROOT = Path(__file__).parent.parent / "regressions"
SAVE_ENV = "KMSSIGN_SAVE_REGRESSIONS"


def kept(kind: str) -> list[Path]:
    """The committed cases of ``kind``, by name."""
    return sorted((ROOT / kind).glob("*.json"))


@contextlib.contextmanager
def kept_on_failure(kind: str, test: str, case_json: str) -> Iterator[None]:
    if currently_in_test_context():
        note(case_json)
    try:
        yield
    except BaseException:
        target = os.environ.get(SAVE_ENV)
        if target:
            directory = Path(target) / kind
            directory.mkdir(parents=True, exist_ok=True)
            (directory / f"{test}.json").write_text(case_json + "\n")
        raise
