"""What the build-backend plugins (Hatch, setuptools) share: signing the wheel a build just
wrote, in place, and telling the build's log about it.

One log line per PE member (its path in the wheel, the signer, the timestamp time), then
a count; members that failed become one :class:`SigningError` that names each of them, for
the plugin to turn into its build tool's one-line ``kmssign: error: ...``. No build tool
is imported here; the plugins import this module, it imports no front end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from kmssign.api import FileResult, sign_wheels
from kmssign.config import DISABLE_VARIABLE, Settings
from kmssign.errors import ConfigError, SigningError, printable

Log = Callable[[str], None]

DISABLED_NOTE = f"kmssign: {DISABLE_VARIABLE} is set; not signing"


def describe(result: FileResult, name: str) -> str:
    """One log line for one file: the CLI's line for it (``FileResult.line``), after
    ``kmssign:``, control characters escaped."""
    return printable(f"kmssign: {result.line(name)}")


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
    return SigningError(printable(f"{len(failed)} {noun} could not be signed: {parts}"))


def log_results(named: Iterable[tuple[str, FileResult]], log: Log) -> None:
    """A line per file signed or skipped, then raise :func:`failure_error` naming every
    file that failed (each reason said once, there), or log the count."""
    named = list(named)
    for name, result in named:
        if result.status != "failed":  # the error names each failure, with its reason once
            log(describe(result, name))
    failed = [(n, r) for n, r in named if r.status == "failed"]
    if failed:
        raise failure_error(failed)
    signed = sum(1 for _, r in named if r.status == "signed")
    log(f"kmssign: {signed} signed, {len(named) - signed} skipped")


def check_sdist_certificate(settings: Settings, project: Path) -> None:
    """A build from an sdist runs in a copy of the project that holds only what the sdist
    carries: a ``certificate`` given relative to the project may not be in it. Say so,
    and the way out, before the run fails on a file in a temporary directory."""
    path = settings.certificate
    if path is None or path.exists() or not (project / "PKG-INFO").is_file():
        return
    try:
        relative = path.relative_to(project).as_posix()
    except ValueError:
        return  # an absolute path elsewhere: its own error says it is missing
    raise ConfigError(
        f"certificate {relative!r} is relative to the project, and this build runs from "
        f"an sdist that does not carry it ({project}); set certificate to an absolute "
        "path, or the certificate's path in KMSSIGN_CERTIFICATE"
    )


def sign_built_wheel(
    wheel: Path, settings: Settings, log: Log, *, project: Path | None = None
) -> int:
    """Sign every PE member of ``wheel`` in place (atomically) and log it.

    Raises KmsSignError: run-level problems (settings, key, certificate) from
    ``sign_wheels``, and a SigningError naming every member (or the wheel) that failed;
    the plugin then fails the build. ``project``: the project's directory (a build from
    an sdist is checked for a certificate it did not carry). Returns how many PE members
    the wheel has.
    """
    if project is not None:
        check_sdist_certificate(settings, project)
    report = sign_wheels([wheel], settings, log=log)
    prefix = f"{wheel}!"  # results name members "<wheel>!<path in the wheel>"
    members = [(str(r.path)[len(prefix):], r) for r in report.results
               if str(r.path).startswith(prefix)]
    whole = [(wheel.name, r) for r in report.results if not str(r.path).startswith(prefix)]
    if not members and all(r.status == "skipped" for _, r in whole):
        log(f"kmssign: no Windows binaries in {wheel.name}")
        return 0
    if any(r.status == "failed" for _, r in members):
        whole = []  # "left unchanged: N of its PE members failed" would say it again
    log_results(members + whole, log)
    return len(members)
