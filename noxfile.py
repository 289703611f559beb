"""Developer sessions: ``nox -s tests``, ``nox -s lint``."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (needs osslsigncode; mingw-w64 and wine64 widen it)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict over src/."""
    session.install("-e", ".", "ruff", "mypy", "boto3-stubs[kms]", "hatchling", "pyinstaller")
    session.run("ruff", "check", "src", "tests")
    session.run("mypy", "--strict", "src/kmssign")
