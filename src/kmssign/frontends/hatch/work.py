"""The work behind the Hatch build hook, without hatchling: no import of it here.

The hook hands over the files a wheel will contain (source path + path in the wheel);
this module picks the PE files among them, signs copies in a temporary directory outside
the project root and says which force-include entries to add and drop. For other targets
it signs the produced executables in place.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kmssign.api import FileResult, Report, sign_files
from kmssign.config import Settings, load_settings
from kmssign.engine.discovery import selected
from kmssign.errors import ConfigError, SigningError
from kmssign.pe.image import looks_like_pe

Log = Callable[[str], None]

DISABLE_VARIABLE = "KMSSIGN_DISABLE"
# Keys hatchling itself reads from every hook table; they are not kmssign settings.
HATCHLING_HOOK_KEYS = frozenset(
    {
        "dependencies",
        "require-runtime-dependencies",
        "require-runtime-features",
        "enable-by-default",
    }
)


def disabled(env: Mapping[str, str]) -> bool:
    """``KMSSIGN_DISABLE`` set to a true value (1, true, yes, on)."""
    return env.get(DISABLE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def hook_settings(
    root: Path, hook_table: Mapping[str, object], table_name: str, env: Mapping[str, str]
) -> Settings:
    """``[tool.kmssign]`` < keys of the hook table < ``KMSSIGN_*`` of the project at ``root``."""
    table = {k: v for k, v in hook_table.items() if k not in HATCHLING_HOOK_KEYS}
    return load_settings(
        config=root / "pyproject.toml", cwd=root, env=env, table=table, table_name=table_name
    )


@dataclass(frozen=True)
class Member:
    """A file the wheel will contain: where it comes from and where it goes."""

    source: Path
    wheel_path: str  # POSIX, relative to the wheel root


def pe_members(members: Iterable[Member], settings: Settings) -> list[Member]:
    """The members that are PE files by content and pass include/exclude (on wheel paths)."""
    return [
        m
        for m in members
        if selected(m.wheel_path, settings.include, settings.exclude) and looks_like_pe(m.source)
    ]


@dataclass
class Signed:
    member: Member
    copy: Path
    result: FileResult


class Staging:
    """A temporary directory outside the project root holding the copies to sign."""

    def __init__(self, root: Path) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="kmssign-hatch-")
        self.path = Path(self._tmp.name)
        resolved_root = root.resolve()
        if self.path.resolve().is_relative_to(resolved_root):
            self.cleanup()
            raise ConfigError(
                f"the temporary directory {self.path} is inside the project root {root}; "
                "set TMPDIR to a directory outside it"
            )

    def copy(self, member: Member) -> Path:
        target = self.path.joinpath(*member.wheel_path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(member.source, target)
        os.chmod(target, target.stat().st_mode | 0o200)  # sources may be read-only
        return target

    def cleanup(self) -> None:
        self._tmp.cleanup()


def sign_members(
    members: list[Member], settings: Settings, staging: Staging, log: Log
) -> tuple[list[Signed], Report]:
    """Copy every member into ``staging`` and sign the copies with one ``sign_files`` call.

    include/exclude were applied to wheel paths already, so they are not applied again to
    the copies. Raises KmsSignError for run-level problems (key, certificate, settings).
    """
    copies = {staging.copy(m): m for m in members}
    plain = dataclasses.replace(settings, include=(), exclude=())
    report = sign_files(list(copies), plain, log=log)
    by_path = {r.path: r for r in report.results}
    signed = [Signed(m, c, by_path[c]) for c, m in copies.items() if c in by_path]
    return signed, report


def normalized_source(raw: str, root: Path) -> Path:
    """A force-include key the way hatchling resolves it (user, relative to the root)."""
    source = os.path.expanduser(os.path.normpath(raw))
    if not os.path.isabs(source):
        source = os.path.abspath(os.path.join(root, source))
    return Path(source)


def replace_forced_files(
    force_include: dict[str, str], root: Path, sources: Iterable[Path]
) -> dict[str, str]:
    """Drop the entries of ``force_include`` that force a file among ``sources``; return them.

    A forced file is added to the wheel even when another entry maps to its path, so its
    own entry must go before the signed copy is mapped there. (Forced directories and
    project files step aside on their own for a file forced from outside the root.)
    """
    wanted = set(sources)
    removed: dict[str, str] = {}
    for raw, target in list(force_include.items()):
        source = normalized_source(raw, root)
        if source in wanted and source.is_file():
            removed[raw] = target
            del force_include[raw]
    return removed


def reserved_relatives(removed: Mapping[str, str], root: Path) -> list[str]:
    """Root-relative paths of removed force-include sources inside the root.

    hatchling keeps a file forced from inside the root out of the wheel at its own path;
    once its entry is gone, that path has to stay reserved the same way.
    """
    resolved_root = os.path.abspath(root)
    relatives = []
    for raw in removed:
        source = str(normalized_source(raw, root))
        if source.startswith(resolved_root + os.sep):
            relatives.append(os.path.relpath(source, resolved_root))
    return relatives


def describe(result: FileResult, name: str) -> str:
    """One log line for one file."""
    if result.status == "signed":
        when = result.timestamp.isoformat() if result.timestamp else "no timestamp"
        return f"kmssign: signed {name} (signer: {result.signer}; timestamp: {when})"
    if result.status == "skipped":
        return f"kmssign: skipped {name} ({result.reason})"
    return f"kmssign: FAILED {name}: {result.reason}"


def failure_error(failed: list[tuple[str, FileResult]]) -> SigningError:
    """One error naming every file that failed; files failing the same way share a reason."""
    by_reason: dict[str, list[str]] = {}
    for name, result in failed:
        by_reason.setdefault(result.reason or "unknown error", []).append(name)
    parts = "; ".join(
        f"{names[0]}: {reason}" if len(names) == 1 else f"{', '.join(names)}: {reason}"
        for reason, names in by_reason.items()
    )
    noun = "file" if len(failed) == 1 else "files"
    return SigningError(f"{len(failed)} {noun} could not be signed: {parts}")


def sign_artifact(artifact: Path, settings: Settings, log: Log) -> Report | None:
    """Sign a built executable, or the PE files in a built directory, in place.

    Returns None when the artifact is neither a PE file nor a directory (nothing to do).
    """
    if artifact.is_file() and not looks_like_pe(artifact):
        return None
    if not artifact.is_dir() and not artifact.is_file():
        return None
    return sign_files([artifact], settings, log=log)
