"""What a run reports: one result per file, and their sum."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal

from kmssign.errors import KmsSignError, VerificationError, plain_reason, redact

Status = Literal[
    "signed", "skipped", "failed", "verified", "timestamped", "would-sign", "unsigned"
]
STATUS_ORDER: tuple[Status, ...] = (
    "signed", "timestamped", "verified", "would-sign", "skipped", "unsigned", "failed",
)


class Outcome(str, Enum):
    """What happened to one file, as a stable code (its value): what a library caller or
    a reader of the JSON report tells "unsigned" from "tampered" from "not trusted" by."""

    SIGNED = "signed"
    SKIPPED_SIGNED = "skipped-signed"  # already signed, signatures intact: left alone
    SKIPPED = "skipped"  # nothing to do for another reason (already timestamped, ...)
    WOULD_SIGN = "would-sign"
    TIMESTAMPED = "timestamped"
    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    DIGEST_MISMATCH = "digest-mismatch"
    SIGNATURE_INVALID = "signature-invalid"
    CHAIN_UNTRUSTED = "chain-untrusted"
    TIMESTAMP_INVALID = "timestamp-invalid"
    TIMESTAMP_MISSING = "timestamp-missing"
    MALFORMED = "malformed"
    NOT_SIGNABLE = "not-signable"  # not a file of a format kmssign signs
    IO_ERROR = "io-error"
    SERVICE_ERROR = "service-error"  # KMS or the timestamp servers
    SIGNING_FAILED = "signing-failed"
    CERTIFICATE_INVALID = "certificate-invalid"
    CONFIG_ERROR = "config-error"
    ERROR = "error"  # a bug: the reason says where to report it


_BY_STATUS = {
    "signed": Outcome.SIGNED, "skipped": Outcome.SKIPPED, "would-sign": Outcome.WOULD_SIGN,
    "timestamped": Outcome.TIMESTAMPED, "verified": Outcome.VERIFIED,
    "unsigned": Outcome.UNSIGNED, "failed": Outcome.ERROR,
}


def outcome_of(exc: BaseException) -> Outcome:
    """The outcome an exception stands for (a KmsSignError's ``code``; OSError: io-error)."""
    if isinstance(exc, OSError):
        return Outcome.IO_ERROR
    try:
        return Outcome(getattr(exc, "code", "error"))
    except ValueError:
        return Outcome.ERROR


@dataclass
class FileResult:
    """What a run did with one file: its status and outcome code, and what it found."""

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
    error: BaseException | None = None  # why it failed, for a library caller
    code: Outcome | None = None  # set where the status alone does not say it

    @property
    def outcome(self) -> Outcome:
        """What happened, as a stable code (:class:`Outcome`)."""
        if self.code is not None:
            return self.code
        if self.error is not None:
            return outcome_of(self.error)
        return _BY_STATUS.get(self.status, Outcome.ERROR)

    def fail(self, exc: Exception) -> FileResult:
        """Mark this file failed with the one-line reason ``exc`` gives; an exception
        that is neither kmssign's nor the system's is a bug, said as :func:`unexpected`
        (so the per-file paths catch ``Exception``: one file never ends a batch)."""
        self.status = "failed"
        self.error = exc
        if isinstance(exc, OSError):
            self.reason = f"{exc.strerror or exc}"
        elif isinstance(exc, KmsSignError):
            self.reason = str(exc)
        else:
            self.reason = unexpected(exc)
        return self

    def line(self, name: str | None = None) -> str:
        """The one line every front end says for this file (the CLI, the build plugins,
        the PyInstaller helpers, the Action): ``signed: NAME (signer, sha256, timestamp
        2026-01-02T03:04:05Z)``, ``skipped: NAME (already signed)``, ``failed: NAME:
        reason``; ``-> OUTPUT`` after the name when the file was written elsewhere.
        ``name`` (default: the path) is how the front end names the file. Not escaped:
        :func:`~kmssign.errors.printable` it before printing."""
        where = str(self.path) if name is None else name
        if self.status == "failed":
            return f"failed: {where}: {self.reason}"
        details = [d for d in (self.signer, self.digest) if d]
        if self.timestamp is not None:
            when = self.timestamp
            when = when.astimezone(dt.timezone.utc) if when.tzinfo is not None else when
            details.append(f"timestamp {when:%Y-%m-%dT%H:%M:%SZ}")
        elif self.status in ("signed", "verified") and self.signer:
            details.append("no timestamp")
        if self.reason:
            details.append(self.reason)
        if self.output is not None and self.output != self.path:
            where += f" -> {self.output}"
        return f"{self.status}: {where}" + (f" ({', '.join(details)})" if details else "")


@dataclass
class Report:
    """A run's results, one per file, and its notes about the run as a whole."""

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


def same_kind(exc: KmsSignError, message: str) -> VerificationError:
    """A VerificationError saying ``message``, with ``exc``'s code (its outcome)."""
    error = VerificationError(message)
    error.code = exc.code
    return error


def unexpected(exc: Exception) -> str:
    """The reason a file failed for a bug of ours (or of a library): one line, no
    internals, no credentials, and where to report it."""
    return redact(
        f"unexpected error ({type(exc).__name__}: {plain_reason(exc)}); please report it "
        "to kmssign's issue tracker"
    )
