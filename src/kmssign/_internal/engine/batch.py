"""What every batch of the library API starts with: the files found among the paths
given (and the notes and failures of discovery), reported as the run's first results."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from kmssign._internal.engine.atomic import clear_leftover, resume
from kmssign._internal.engine.discovery import NOT_PE, discover, is_wheel_name
from kmssign._internal.engine.report import FileResult, Outcome, Report
from kmssign._internal.engine.session import Log, nolog

OnResult = Callable[[FileResult], None]
OnStart = Callable[[int], None]


def discovered(
    paths: Iterable[Path | str],
    include: Sequence[str],
    exclude: Sequence[str],
    report: Report,
    on_result: OnResult | None,
    on_start: OnStart | None,
    *,
    log: Log = nolog,
    clean: bool = True,
) -> list[Path]:
    """The PE files and MSI packages among ``paths``; what cannot be processed is a failed
    result in ``report`` already. Temporary files of kmssign runs are never processed: each is a
    note, and with ``clean`` those no run holds any more are removed."""
    resume()  # a run in this process may have been interrupted before
    found = discover([Path(p) for p in paths], include, exclude)
    for leftover in found.leftovers:
        note = clear_leftover(leftover, remove=clean)
        if note is not None:
            report.notes.append(note)
            log(note)
    for path, reason in found.problems:
        if reason == NOT_PE and is_wheel_name(path):
            reason = f"a wheel, not a PE file: `kmssign wheel {path}` signs the PE files in it"
        code = Outcome.NOT_SIGNABLE if reason == NOT_PE else Outcome.IO_ERROR
        report.results.append(FileResult(path, "failed", reason=reason, code=code))
    if on_start:
        on_start(len(found.files) + len(report.results))
    if on_result:
        for r in report.results:
            on_result(r)
    return list(found.files)


def unusable(problems: Sequence[tuple[Path, str]], on_result: OnResult | None) -> Report:
    report = Report([FileResult(path, "failed", reason=reason) for path, reason in problems])
    if on_result:
        for result in report.results:
            on_result(result)
    return report
