"""What a run reports: one result per file, and their sum."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Status = Literal["signed", "skipped", "failed", "verified", "timestamped", "would-sign"]
STATUS_ORDER: tuple[Status, ...] = (
    "signed", "timestamped", "verified", "would-sign", "skipped", "failed",
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

    def fail(self, exc: BaseException) -> FileResult:
        """Mark this file failed with the one-line reason ``exc`` gives."""
        self.status = "failed"
        self.reason = f"{exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
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
