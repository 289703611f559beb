"""Find the PE files to work on: by content (MZ + PE header), not by extension."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kmssign.pe.image import looks_like_pe


@dataclass(frozen=True)
class Found:
    """The outcome of discovery: PE files to process and explicit arguments that are not."""

    files: tuple[Path, ...]
    not_pe: tuple[Path, ...]
    missing: tuple[Path, ...]


def matches(relative: str, patterns: Iterable[str]) -> bool:
    """A glob without '/' matches the file name; with '/', the relative path ('**/' = any depth)."""
    name = PurePosixPath(relative).name
    for pattern in patterns:
        if "/" not in pattern:
            if fnmatch.fnmatchcase(name, pattern):
                return True
            continue
        candidates = {pattern}
        if pattern.startswith("**/"):
            candidates.add(pattern[3:])
        if any(fnmatch.fnmatchcase(relative, p) for p in candidates):
            return True
    return False


def selected(relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not matches(relative, include):
        return False
    return not (exclude and matches(relative, exclude))


def discover(
    paths: Iterable[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Found:
    """Expand directories to the PE files below them (sorted), honouring include/exclude.

    Files named explicitly are kept when they pass the globs; those that are not PE files
    are reported in ``not_pe`` so the caller can fail them with a clear reason.
    """
    files: list[Path] = []
    not_pe: list[Path] = []
    missing: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path, relative: str, explicit: bool) -> None:
        key = path.resolve()
        if key in seen or not selected(relative, include, exclude):
            return
        seen.add(key)
        if looks_like_pe(path):
            files.append(path)
        elif explicit:
            not_pe.append(path)

    for path in paths:
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    full = Path(root, name)
                    if full.is_file() and not full.is_symlink():
                        add(full, full.relative_to(path).as_posix(), explicit=False)
        elif path.is_file():
            add(path, path.name, explicit=True)
        else:
            missing.append(path)
    return Found(tuple(files), tuple(not_pe), tuple(missing))


def is_wheel_name(path: Path) -> bool:
    return path.suffix.lower() == ".whl"


def find_wheels(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """(wheels, missing): files as given, and the ``*.whl`` files below directories
    (sorted); each wheel once."""
    wheels: list[Path] = []
    missing: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            wheels.append(path)

    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if is_wheel_name(found) and found.is_file():
                    add(found)
        elif path.is_file():
            add(path)
        else:
            missing.append(path)
    return wheels, missing
