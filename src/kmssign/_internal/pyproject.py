"""Reading pyproject.toml: finding the nearest one, loading it, and tables in it.

Problems are appended to a list (the caller reports them all at once), never raised.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or one of its parents."""
    start = start.absolute()
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_toml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
    try:
        with path.open("rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror or exc}")
        return None
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: invalid TOML: {exc}")
        return None
    return data


def table_at(data: Mapping[str, Any], dotted: str, problems: list[str]) -> Mapping[str, Any]:
    node: object = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            problems.append(f"{dotted} must be a table")
            return {}
        node = node.get(part, {})
    if not isinstance(node, Mapping):
        problems.append(f"{dotted} must be a table")
        return {}
    return node


def table_in(pyproject: Path, dotted: str) -> object | None:
    """The value at ``dotted`` (e.g. ``tool.kmssign.setuptools``) in a TOML file; None when
    the file is missing or unreadable (its own tools report that) or has no such key."""
    data = read_toml(pyproject, []) if pyproject.is_file() else None
    node: object = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
