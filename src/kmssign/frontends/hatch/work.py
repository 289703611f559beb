"""The work behind the Hatch build hook, without hatchling: no import of it here.

Settings from the hook's table, how messages name that table, and signing the artifact of
a target other than the wheel (a PE file, or a directory of them) in place. The wheel
itself is signed by :mod:`kmssign.frontends.buildhooks`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kmssign.api import looks_like_pe, sign_files
from kmssign.config import Settings, load_settings, table_in
from kmssign.frontends.buildhooks import Log, log_results

# Keys hatchling itself reads from every hook table; they are not kmssign settings.
HATCHLING_HOOK_KEYS = frozenset(
    {
        "dependencies",
        "require-runtime-dependencies",
        "require-runtime-features",
        "enable-by-default",
    }
)


def hook_table_name(root: Path, target: str) -> str:
    """``tool.hatch.build.targets.<target>.hooks.kmssign`` when the project's pyproject.toml
    has that table, else ``tool.hatch.build.hooks.kmssign``."""
    own = f"tool.hatch.build.targets.{target}.hooks.kmssign"
    if table_in(root / "pyproject.toml", own) is not None:
        return own
    return "tool.hatch.build.hooks.kmssign"


def hook_settings(
    root: Path, hook_table: Mapping[str, object], table_name: str, env: Mapping[str, str]
) -> Settings:
    """``[tool.kmssign]`` < keys of the hook table < ``KMSSIGN_*`` of the project at ``root``."""
    table = {k: v for k, v in hook_table.items() if k not in HATCHLING_HOOK_KEYS}
    return load_settings(
        config=root / "pyproject.toml", cwd=root, env=env, table=table, table_name=table_name
    )


# Where a project keeps what is not its packages' source: not searched for binaries.
_NOT_PACKAGES = frozenset({"build", "dist", "venv", "env", "node_modules", "__pycache__"})
_BINARY_SUFFIXES = (".pyd", ".dll")


def _project_binaries(root: Path, limit: int = 3) -> list[str]:
    """Up to ``limit`` .pyd/.dll files below ``root``, outside hidden and build folders."""
    found: list[str] = []
    stack = [root]
    while stack and len(found) < limit:
        directory = stack.pop()
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name in _NOT_PACKAGES:
                continue
            if entry.is_dir() and not entry.is_symlink():
                stack.append(entry)
            elif entry.suffix.lower() in _BINARY_SUFFIXES and len(found) < limit:
                found.append(entry.relative_to(root).as_posix())
    return found


def excluded_binaries_hint(root: Path) -> str | None:
    """When a wheel came out without Windows binaries while the project has some: the
    likely reason (hatchling's default exclude ``*.py[cdo]`` matches ``.pyd``, and
    ignored files such as built DLLs stay out) and the way in (``artifacts``)."""
    binaries = _project_binaries(root)
    if not binaries:
        return None
    return (
        f"kmssign: hint: the project has Windows binaries ({', '.join(binaries)}) that are "
        "not in the wheel: hatchling excludes *.pyd by default (its *.py[cdo] pattern) and "
        "leaves out files that VCS ignores; list them in "
        '[tool.hatch.build.targets.wheel] artifacts = ["*.pyd", "*.dll"]'
    )


def sign_artifact(artifact: Path, settings: Settings, log: Log) -> None:
    """Sign a built executable, or the PE files in a built directory, in place, and log it.

    An artifact that is neither a PE file nor a directory gets one log line.
    """
    if not artifact.is_dir() and not (artifact.is_file() and looks_like_pe(artifact)):
        log(f"kmssign: {artifact.name} is not a Windows binary")
        return
    report = sign_files([artifact], settings, log=log)
    if not report.results:
        log(f"kmssign: no Windows binaries in {artifact.name}")
        return
    base = artifact if artifact.is_dir() else artifact.parent
    log_results(((r.path.relative_to(base).as_posix(), r) for r in report.results), log)
