"""The package layout keeps its promises: the import paths users write work, and the
import contracts of pyproject.toml (the one statement of the layering rules, drawn in
docs/explanation/architecture.md) hold."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "kmssign"
README = (ROOT / "README.md").read_text(encoding="utf-8")

def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_readmes_import_lines_run() -> None:
    """Every `from kmssign... import ...` line in the README's Python blocks runs."""
    blocks = re.findall(r"^```python\n(.*?)^```", README, flags=re.M | re.S)
    lines = {
        line.strip() for block in blocks for line in block.splitlines()
        if re.match(r"\s*(from kmssign[\w.]* import|import kmssign)", line)
    }
    for line in sorted(lines):
        exec(line, {})  # the README's own import lines


def test_entry_points_resolve() -> None:
    """The `hatch` and setuptools plugin entry points and the `kmssign` console script of
    the installed distribution load (pip installs the package in development mode for the
    tests)."""
    eps = importlib.metadata.entry_points()
    (hatch,) = [ep for ep in eps.select(group="hatch") if ep.name == "kmssign"]
    plugin = hatch.load()
    hook = plugin.hatch_register_build_hook()
    assert hook.PLUGIN_NAME == "kmssign"
    group = "setuptools.finalize_distribution_options"
    (setuptools_ep,) = [ep for ep in eps.select(group=group) if ep.name == "kmssign"]
    from kmssign.frontends.setuptools.plugin import finalize_distribution_options

    assert setuptools_ep.load() is finalize_distribution_options
    (script,) = [ep for ep in eps.select(group="console_scripts") if ep.name == "kmssign"]
    from kmssign.frontends.cli.main import main

    assert script.load() is main


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kmssign", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("kmssign ")


def test_import_contracts_hold() -> None:
    """The layering rules of pyproject.toml's [tool.importlinter] (what `nox -s lint` runs):
    imports flow one way, no cycle, front ends apart, one importer per heavy package."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_subpackage_inits_import_nothing() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent == PACKAGE or init.parent == PACKAGE / "signers":
            continue
        tree = ast.parse(init.read_text(encoding="utf-8"))
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not imports, f"{init} imports something"


def test_modules_stay_small() -> None:
    big = {p.relative_to(PACKAGE).as_posix(): n for p in modules()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert not big


def test_importing_one_module_loads_no_unrelated_package() -> None:
    """A fresh interpreter importing the PE layer loads nothing of Authenticode, the
    network or the front ends."""
    code = (
        "import sys, kmssign._internal.pe.signedcopy, kmssign._internal.pe.digest\n"
        "print(sorted(m for m in sys.modules if m.startswith('kmssign.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout.strip())
    assert loaded, out.stderr
    ok = ("kmssign.errors", "kmssign._internal", "kmssign._internal.der", "kmssign._deprecated")
    assert all(m.startswith("kmssign._internal.pe") or m in ok for m in loaded), loaded
    importlib.invalidate_caches()


def test_spec_helpers_load_no_http_stack() -> None:
    """A .spec file's ``import kmssign.pyinstaller`` loads no timestamp client, urllib or
    http.client: a build without timestamps never needs them."""
    code = (
        "import sys, kmssign.pyinstaller\n"
        "print(sorted(m for m in ('kmssign._internal.timestamp.client', 'urllib.request',"
        " 'http.client')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ast.literal_eval(out.stdout.strip()) == [], out.stderr
