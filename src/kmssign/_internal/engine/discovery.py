"""Find the files to work on: by content (a PE header, an MSI package's compound file),
not by extension."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from kmssign._internal.engine.atomic import NAME_ROOM, is_temporary
from kmssign._internal.engine.formats import refusal, sniff

NOT_PE = "not a PE file (no MZ/PE header)"
_KINDS = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


class Found(NamedTuple):
    """The outcome of discovery: PE files to process, what cannot be processed (with the
    reason), and temporary files that kmssign runs left (never processed)."""

    files: tuple[Path, ...]
    problems: tuple[tuple[Path, str], ...]
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
    """Whether ``relative`` (a path under a directory argument, or inside a wheel) passes
    the ``include`` globs (none: everything) and none of the ``exclude`` globs."""
    if include and not matches(relative, include):
        return False
    return not (exclude and matches(relative, exclude))


def reason_of(exc: OSError) -> str:
    """``permission denied`` for an OSError: its message without the file name."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def kind_of(mode: int) -> str:
    """``not a regular file (FIFO)``, or ``(character device)``, ... for a stat mode."""
    kind = next((name for test, name in _KINDS if test(mode)), "special file")
    return f"not a regular file ({kind})"


def temporaries_in(directory: Path) -> list[Path]:
    """The temporary files of kmssign runs in ``directory`` (sorted)."""
    try:
        with os.scandir(directory) as entries:
            return sorted(
                Path(e.path) for e in entries
                if is_temporary(e.name) and e.is_file(follow_symlinks=False)
            )
    except OSError:
        return []


def leftovers_of(file: Path, temporaries: list[Path] | None = None) -> list[Path]:
    """Temporary files that kmssign runs made for ``file``, beside it: among
    ``temporaries`` (those of its directory, listed once for all the files given
    there), or listed now."""
    if temporaries is None:
        temporaries = temporaries_in(file.parent)
    prefix = f".{file.name[:NAME_ROOM]}"
    return [t for t in temporaries if t.name.startswith(prefix)]


def _no_wait(path: str, flags: int) -> int:
    """Open without waiting (a file swapped for a FIFO meanwhile would block a plain open)."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def _given(paths: Iterable[Path], problems: list[tuple[Path, str]]) -> Iterator[tuple[Path, int]]:
    """Each of ``paths`` that can be looked at, with its mode; the others, with the reason,
    in ``problems``."""
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            broken = os.path.lexists(path)
            problems.append(
                (path, "broken symbolic link" if broken else "no such file or directory")
            )
        except OSError as exc:
            problems.append((path, reason_of(exc)))
        else:
            yield path, mode


def _regular_files_below(
    directory: Path, problems: list[tuple[Path, str]]
) -> Iterator[Path]:
    """The regular files below ``directory`` (sorted, no symbolic links, no special files);
    directories that cannot be listed, with the reason, in ``problems``."""

    def unlistable(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else directory
        problems.append((where, f"cannot list this directory: {reason_of(exc)}"))

    for root, dirs, names in os.walk(directory, onerror=unlistable):
        dirs.sort()
        for name in sorted(names):
            full = Path(root, name)
            try:
                regular = stat.S_ISREG(os.lstat(full).st_mode)
            except OSError:  # gone meanwhile
                continue
            if regular:
                yield full


def discover(
    paths: Iterable[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Found:
    """Expand directories to the PE files below them (sorted), honouring include/exclude.

    Files named explicitly are kept when they pass the globs; those that are not PE
    files, that are missing, unreadable or not regular files, and directories (or
    subdirectories) that cannot be listed are in ``problems`` with the reason, so the
    caller can fail each by name. Below a directory, symbolic links and special files
    are passed over, and kmssign's own temporary files are never selected: they are
    listed in ``leftovers``.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    leftovers: list[Path] = []
    seen: set[Path] = set()
    listed: dict[Path, list[Path]] = {}  # each directory of given files is listed once

    def add(path: Path, relative: str, explicit: bool) -> None:
        key = path.resolve()
        if key in seen or not selected(relative, include, exclude):
            return
        seen.add(key)
        try:
            with open(path, "rb", opener=_no_wait) as f:
                signable = sniff(f) is not None
                why = None if signable or not explicit else refusal(f)
        except OSError as exc:
            problems.append((path, f"cannot read it: {reason_of(exc)}"))
            return
        if signable:
            files.append(path)
        elif explicit:
            problems.append((path, why or NOT_PE))

    for path, mode in _given(paths, problems):
        if stat.S_ISDIR(mode):
            for full in _regular_files_below(path, problems):
                if is_temporary(full.name):
                    leftovers.append(full)
                else:
                    add(full, full.relative_to(path).as_posix(), explicit=False)
        elif not stat.S_ISREG(mode):
            problems.append((path, kind_of(mode)))
        elif is_temporary(path.name):
            leftovers.append(path)
        else:
            if path.parent not in listed:
                listed[path.parent] = temporaries_in(path.parent)
            leftovers.extend(leftovers_of(path, listed[path.parent]))
            add(path, path.name, explicit=True)
    return Found(tuple(files), tuple(problems), tuple(dict.fromkeys(leftovers)))


def is_wheel_name(path: Path) -> bool:
    return path.suffix.lower() == ".whl"


def find_wheels(paths: Iterable[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(wheels, problems): files as given, and the ``*.whl`` files below directories
    (sorted, each once); paths that are missing, not regular files, or directories that
    cannot be listed, with the reason."""
    wheels: list[Path] = []
    problems: list[tuple[Path, str]] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            wheels.append(path)

    for path, mode in _given(paths, problems):
        if stat.S_ISDIR(mode):
            for full in _regular_files_below(path, problems):
                if is_wheel_name(full) and not is_temporary(full.name):
                    add(full)
        elif stat.S_ISREG(mode):
            add(path)
        else:
            problems.append((path, kind_of(mode)))
    return wheels, problems
