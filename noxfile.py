"""Developer sessions: ``nox -s tests`` (default), ``demo``, ``sample``, ``lint``, ``bench``."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (needs osslsigncode; mingw-w64 and wine64 widen it)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Sign and verify sample_app's binaries against a local KMS, CA and TSA."""
    session.install("-e", ".[demo]")
    session.run("python", "demo/run_demo.py", *session.posargs)


@nox.session
def sample(session: nox.Session) -> None:
    """Build sample_app's wheel with the kmssign hook (local KMS + TSA) and verify it."""
    session.install("-e", ".[test]")
    session.run("python", "sample_app/build_and_verify.py", "--local-services", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over src/ and tests/, mypy --strict over src/."""
    session.install("-e", ".[test]", "ruff", "mypy", "boto3-stubs[kms]")
    session.run("ruff", "check", "src", "tests", "benchmarks", "demo", "sample_app")
    session.run("mypy", "--strict", "src/kmssign")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks: one 512 MiB file, 300 files against latency-injected services, and
    a 174 MiB wheel."""
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/bench_sign.py", *session.posargs)
    session.run("python", "benchmarks/bench_batch.py")
    session.run("python", "benchmarks/bench_wheel.py")
