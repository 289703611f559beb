"""Find the PE files to work on: by content (MZ + PE header), not by extension."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kmssign.engine.atomic import NAME_ROOM, is_temporary
from kmssign.pe.image import looks_like_pe


@dataclass(frozen=True)
class Found:
    """The outcome of discovery: PE files to process, explicit arguments that are not,
    and temporary files that kmssign runs left (never processed)."""

    files: tuple[Path, ...]
    not_pe: tuple[Path, ...]
    missing: tuple[Path, ...]
    leftovers: tuple[Path, ...] = ()


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


def leftovers_of(file: Path) -> list[Path]:
    """Temporary files that kmssign runs made for ``file``, beside it."""
    prefix = f".{file.name[:NAME_ROOM]}"
    try:
        with os.scandir(file.parent) as entries:
            return sorted(
                Path(e.path) for e in entries
                if e.name.startswith(prefix) and is_temporary(e.name)
                and e.is_file(follow_symlinks=False)
            )
    except OSError:
        return []


def discover(
    paths: Iterable[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Found:
    """Expand directories to the PE files below them (sorted), honouring include/exclude.

    Files named explicitly are kept when they pass the globs; those that are not PE files
    are reported in ``not_pe`` so the caller can fail them with a clear reason.
    kmssign's own temporary files are never selected: they are listed in ``leftovers``.
    """
    files: list[Path] = []
    not_pe: list[Path] = []
    missing: list[Path] = []
    leftovers: list[Path] = []
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
                        if is_temporary(name):
                            leftovers.append(full)
                        else:
                            add(full, full.relative_to(path).as_posix(), explicit=False)
        elif path.is_file() and is_temporary(path.name):
            leftovers.append(path)
        elif path.is_file():
            leftovers.extend(p for p in leftovers_of(path) if p not in leftovers)
            add(path, path.name, explicit=True)
        else:
            missing.append(path)
    return Found(tuple(files), tuple(not_pe), tuple(missing), tuple(leftovers))
