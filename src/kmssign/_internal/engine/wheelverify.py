"""Verifying wheels: RECORD against every member's bytes, then each PE member the globs
select verified as a loose file, its result named ``wheel!member``."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509

from kmssign._internal.engine.discovery import selected
from kmssign._internal.engine.pipeline import run_simple
from kmssign._internal.engine.report import FileResult
from kmssign._internal.engine.verifying import verify_one
from kmssign._internal.engine.wheelscan import PEMember, scan_wheel


def verify_wheels(
    wheels: Sequence[Path],
    *,
    roots: Sequence[x509.Certificate],
    tsa_roots: Sequence[x509.Certificate],
    require_timestamp: bool = False,
    allow_unsigned: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    jobs: int = 4,
    on_result: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """One result per selected PE member; one per wheel that is broken or has none.

    An unsigned member fails, as a loose file does (``unsigned`` with ``allow_unsigned``).
    """
    results: list[FileResult] = []

    def deliver(result: FileResult) -> FileResult:
        results.append(result)
        if on_result is not None:
            on_result(result)
        return result

    def work(pe: PEMember) -> FileResult:
        result = verify_one(
            pe.extracted, roots, tsa_roots, require_timestamp=require_timestamp,
            allow_unsigned=allow_unsigned,
        )
        result.path = pe.display
        return result

    with tempfile.TemporaryDirectory(prefix="kmssign-wheel-") as work_dir:
        for n, path in enumerate(wheels):
            try:
                wheel = scan_wheel(
                    path, Path(work_dir, str(n)), lambda name: selected(name, include, exclude)
                )
            except Exception as exc:  # anything: one wheel never ends a batch
                deliver(FileResult(path, "failed").fail(exc))
                continue
            if not wheel.pe_members:
                deliver(FileResult(path, "verified", reason="RECORD matches; no PE member"))
                continue
            for result in run_simple(wheel.pe_members, work, jobs=jobs):
                deliver(result)
    return results
