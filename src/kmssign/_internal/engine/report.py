"""What a run reports: one result per file, and their sum."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kmssign.errors import KmsSignError, plain_reason, redact

Status = Literal[
    "signed", "skipped", "failed", "verified", "timestamped", "would-sign", "unsigned"
]
STATUS_ORDER: tuple[Status, ...] = (
    "signed", "timestamped", "verified", "would-sign", "skipped", "unsigned", "failed",
)


@dataclass
class FileResult:
    path: Path
    status: Status
    reason: str | None = None
    signer: str | None = None
    digest: str | None = None
    timestamp: dt.datetime | None = None
    sha256_before: str | None = None
    sha256_after: str | None = None
    warnings: list[str] = field(default_factory=list)
    output: Path | None = None  # the file written (``path``, or where -o put it)
    format: str | None = None  # the file's format ("pe", "msi"), once it was opened

    def fail(self, exc: Exception) -> FileResult:
        """Mark this file failed with the one-line reason ``exc`` gives; an exception
        that is neither kmssign's nor the system's is a bug, said as :func:`unexpected`
        (so the per-file paths catch ``Exception``: one file never ends a batch)."""
        self.status = "failed"
        if isinstance(exc, OSError):
            self.reason = f"{exc.strerror or exc}"
        elif isinstance(exc, KmsSignError):
            self.reason = str(exc)
        else:
            self.reason = unexpected(exc)
        return self


@dataclass
class Report:
    results: list[FileResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the run, not one file

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """``3 signed, 1 skipped, 0 failed``: every status seen, and always failures."""
        return ", ".join(
            f"{self.count(s)} {s}" for s in STATUS_ORDER if self.count(s) or s == "failed"
        )


def unexpected(exc: Exception) -> str:
    """The reason a file failed for a bug of ours (or of a library): one line, no
    internals, no credentials, and where to report it."""
    return redact(
        f"unexpected error ({type(exc).__name__}: {plain_reason(exc)}); please report it "
        "to kmssign's issue tracker"
    )
