"""The documentation: README.md, the pages under docs/, and the reference generator."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```([\w+-]*)[ \t]*([^\n]*)\n(.*?)^```", flags=re.M | re.S)


def page(name: str) -> str:
    """The Markdown of ``docs/NAME`` (e.g. ``how-to/wheels.md``)."""
    return (DOCS / name).read_text(encoding="utf-8")


def pages() -> dict[str, str]:
    """Every Markdown page of the site, by its path under docs/."""
    return {p.relative_to(DOCS).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(DOCS.rglob("*.md")) if "_gen" not in p.parts}


def fenced(text: str, language: str | None = None) -> list[str]:
    """The bodies of the fenced blocks in ``text`` (only ``language``'s when given)."""
    return [body for lang, _info, body in FENCE.findall(text)
            if language is None or lang == language]


def reference() -> ModuleType:
    """docs/_gen/reference.py, the MkDocs hook that generates the reference tables."""
    spec = importlib.util.spec_from_file_location("kmssign_docs_reference",
                                                  DOCS / "_gen" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
