"""The public API is one list (kmssign.__all__), the docs show that list, every name
imports from where the docs say, and the old import paths still work with a warning."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import kmssign

DOC = Path(__file__).resolve().parent.parent / "docs" / "explanation" / "library.md"


def documented() -> dict[str, list[str]]:
    """module -> the names the docs' table lists for it."""
    rows = re.findall(r"^\| `(kmssign[\w.]*)` \| (.*) \|$", DOC.read_text(encoding="utf-8"),
                      flags=re.M)
    return {module: re.findall(r"`(\w+)`", names) for module, names in rows}


def test_the_docs_list_exactly_kmssign_all() -> None:
    listed = [name for names in documented().values() for name in names]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(kmssign.__all__) - {"__version__"}


@pytest.mark.parametrize("module", sorted(documented()))
def test_every_documented_name_imports_from_its_module_and_the_top(module: str) -> None:
    loaded = importlib.import_module(module)
    for name in documented()[module]:
        assert name in loaded.__all__, (module, name)
        value = getattr(loaded, name)
        assert getattr(kmssign, name) is value
        namespace: dict[str, object] = {}
        exec(f"from kmssign import {name}", namespace)
        assert namespace[name] is value


def test_importing_kmssign_loads_nothing_else() -> None:
    code = "import sys, kmssign; print(sorted(m for m in sys.modules if m.startswith('kmssign')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['kmssign', 'kmssign._deprecated']"


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'sign_everything'"):
        kmssign.sign_everything  # noqa: B018
    with pytest.raises(ImportError):
        exec("from kmssign import engine_internals", {})


def test_every_name_of_kmssign_api_resolves_and_the_csr_helpers_are_the_csr_modules() -> None:
    from kmssign import api
    from kmssign._internal.pki import csr

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    for name in ("build_csr", "parse_subject", "public_key_pem"):  # imported when first used
        assert getattr(api, name) is getattr(csr, name)
    namespace: dict[str, object] = {}
    exec("from kmssign.api import build_csr", namespace)
    assert namespace["build_csr"] is csr.build_csr
    with pytest.raises(AttributeError, match="no attribute 'sign_everything'"):
        api.sign_everything  # noqa: B018


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("kmssign.engine.signing", "kmssign._internal.engine.session", "open_session"),
        ("kmssign.engine.signing", "kmssign._internal.engine.signing", "sign_file"),
        ("kmssign.pe.image", "kmssign._internal.pe.image", "parse_pe"),
        ("kmssign.authenticode.verify", "kmssign._internal.authenticode.verify",
         "read_signatures"),
        ("kmssign.authenticode.tlv", "kmssign._internal.der", "read"),
        ("kmssign.timestamp.tokens", "kmssign._internal.cms.timestamps", "check_token"),
        ("kmssign.signers.aws_kms", "kmssign._internal.signers.aws_kms", "KmsSigner"),
        ("kmssign.frontends.pyinstaller", "kmssign.pyinstaller", "sign_outputs"),
    ],
)
def test_old_import_paths_work_with_a_deprecation_warning(old: str, new: str, name: str) -> None:
    """In a fresh interpreter (this one may have imported them already)."""
    code = (
        "import warnings, importlib, sys\n"
        "warnings.simplefilter('error')\n"
        "try:\n"
        f"    importlib.import_module({old!r})\n"
        "except DeprecationWarning as exc:\n"
        "    print('warned:', exc)\n"
        "warnings.simplefilter('ignore')\n"
        f"old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        f"print(getattr(old, {name!r}) is getattr(new, {name!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    warned = re.fullmatch(r"warned: ([\w.]+) is deprecated and goes away in kmssign .*", out[0])
    assert warned and old.startswith(warned[1]), out  # the first old module imported warns
    assert out[-1] == "True", out


def test_old_from_import_of_a_package_member() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from kmssign.pe import image  # type: ignore[import-not-found]
    from kmssign._internal.pe import image as new

    assert image.PEImage is new.PEImage
    assert any(issubclass(w.category, DeprecationWarning) for w in caught) or (
        "kmssign.pe" in sys.modules  # imported (and warned) earlier in this process
    )


def test_verify_files_old_keywords_warn_and_still_apply(tmp_path: Path) -> None:
    from kmssign.api import verify_files

    (tmp_path / "a.txt").write_bytes(b"not a binary")
    with pytest.warns(DeprecationWarning, match=r"verify_files\(jobs=\) is deprecated"):
        report = verify_files([tmp_path], jobs=2)
    assert report.results == []
    with pytest.raises(TypeError, match="unexpected keyword argument 'job'"):
        verify_files([tmp_path], job=2)
