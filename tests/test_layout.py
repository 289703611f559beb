"""The package layout keeps its promises: the import paths users write work, and imports
flow one way between the subpackages (docs/architecture.md)."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "kmssign"
README = (ROOT / "README.md").read_text(encoding="utf-8")

# Which kmssign packages each layer may import (besides itself and kmssign.errors).
ALLOWED: dict[str, set[str]] = {
    "pe": set(),
    "net": set(),
    "wheel": set(),
    "cfb": set(),
    "msi": {"cfb"},
    "signers": {"net"},
    "pki": {"signers"},
    "authenticode": {"pe", "pki", "signers", "timestamp"},
    "timestamp": {"authenticode", "pki", "net"},
    "engine": {"pe", "wheel", "cfb", "msi", "pki", "signers", "authenticode", "timestamp", "config",
               "pyproject"},
    "pyproject": set(),
    "config": {"pyproject"},
    "api": {"pe", "wheel", "cfb", "msi", "pki", "signers", "authenticode", "timestamp", "engine",
            "config"},
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def kmssign_imports(path: Path) -> set[str]:
    """Every kmssign module ``path`` imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("kmssign"))
        elif (
            isinstance(node, ast.ImportFrom) and node.level == 0
            and (node.module or "").startswith("kmssign")
        ):
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def layer(module: str) -> str:
    """``pe`` for kmssign._internal.pe.image, ``frontends.cli`` for
    kmssign.frontends.cli.main, ..."""
    parts = module.split(".")[1:]
    if parts[:1] == ["_internal"]:
        parts = parts[1:]
    if not parts:
        return ""
    if parts[0] == "frontends" and len(parts) > 1:
        return f"frontends.{parts[1]}"
    return parts[0]


def test_public_import_paths_work_as_the_readme_shows() -> None:
    """Every `from kmssign... import ...` line in the README's Python blocks runs."""
    blocks = re.findall(r"^```python\n(.*?)^```", README, flags=re.M | re.S)
    lines = {
        line.strip() for block in blocks for line in block.splitlines()
        if re.match(r"\s*(from kmssign[\w.]* import|import kmssign)", line)
    }
    assert "from kmssign.api import sign_files" in lines
    assert "from kmssign.pyinstaller import sign_bundled, sign_outputs" in lines
    for line in sorted(lines):
        exec(line, {})  # the README's own import lines
    from kmssign.api import sign_files, timestamp_files, verify_files
    from kmssign.config import Settings, load_settings
    from kmssign.errors import ConfigError, KmsSignError

    assert issubclass(ConfigError, KmsSignError)
    assert all(callable(f) for f in (sign_files, timestamp_files, verify_files, load_settings))
    assert Settings.__module__ == "kmssign.config"


def test_spec_files_import_path_is_the_real_helpers() -> None:
    import kmssign.pyinstaller
    from kmssign.frontends import pyinstaller as implementation

    assert kmssign.pyinstaller.sign_bundled is implementation.sign_bundled
    assert kmssign.pyinstaller.sign_outputs is implementation.sign_outputs


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


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path: Path) -> None:
    own = layer(dotted(path))
    for target in kmssign_imports(path):
        other = layer(target)
        if other in ("", "errors", own) or target == "kmssign.__version__":
            continue
        if own.startswith("frontends."):
            # buildhooks is what the build plugins share; it imports no front end itself.
            shared = other == "frontends.buildhooks" and own != other
            assert shared or not other.startswith("frontends."), (
                f"front ends import each other: {target}"
            )
            continue
        if own in ("pyinstaller", "__main__"):  # the public shims of front ends
            continue
        assert own in ALLOWED, f"{dotted(path)} is in no known layer"
        assert other in ALLOWED[own], f"{dotted(path)} ({own}) may not import {target}"


def test_third_party_boundaries() -> None:
    """boto3 only in the KMS signer, python-pkcs11 only in the PKCS#11 signer, hatchling
    only in the hook, setuptools only in its plugin's command, PyInstaller only in its
    front end, isal only in the wheel codec."""
    owners = {"boto3": "_internal/signers/aws_kms.py", "botocore": "_internal/signers/aws_kms.py",
              "hatchling": "frontends/hatch/hook.py", "PyInstaller": "frontends/pyinstaller.py",
              "setuptools": "frontends/setuptools/command.py",
              "distutils": "frontends/setuptools/command.py", "isal": "_internal/wheel/codec.py",
              "pkcs11": "_internal/signers/pkcs11.py"}
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in owners:
                    assert path.relative_to(PACKAGE).as_posix() == owners[top], (path, name)


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
    ok = ("kmssign.errors", "kmssign._internal")
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
