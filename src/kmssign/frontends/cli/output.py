"""What the CLI prints: one line per file, a summary, a live progress line, or JSON."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO, overload

from kmssign.api import FileResult, Report
from kmssign.errors import printable

# The library speaks of settings; where the CLI prints its words, they name its flags.
_FLAG_WORDING = (
    ("signing with skip-signed off replaces it", "--no-skip-signed replaces it"),
    ("signing without append replaces it", "sign without --append to replace it"),
    ("chain not checked (no trusted roots given)", "chain not checked (--no-chain)"),
    ("(require-timestamp)", "(--require-timestamp)"),
    ("and timestamp-urls, or set timestamp to optional",
     "and --timestamp-url, or pass --timestamp optional"),
    ("output needs exactly one input file", "--output needs exactly one input file"),
    ("set the region setting,", "pass --region, set region in [tool.kmssign],"),
    ("or give the trusted roots yourself", "or give --ca"),
)


@overload
def flag_wording(text: str) -> str: ...
@overload
def flag_wording(text: None) -> None: ...
def flag_wording(text: str | None) -> str | None:
    """A library message as the CLI says it: the settings named by the flags that set them."""
    if text is None:
        return None
    for library, cli in _FLAG_WORDING:
        text = text.replace(library, cli)
    return text


def describe(result: FileResult) -> str:
    """One line for one file: ``signed: path (signer, sha256, timestamp ...)``, or
    ``signed: path -> output (...)`` when the signed file went elsewhere (``-o``).
    Control characters and undecodable bytes in names and reasons are escaped."""
    return printable(flag_wording(_describe(result)))


def _describe(result: FileResult) -> str:
    return result.line()


def as_json(report: Report, error: str | None = None) -> dict[str, Any]:
    """The ``--json`` document. ``path`` is the file as named (or found); ``output`` the
    file written, when one was. Names are the file system's as Python decodes them:
    bytes that are not valid UTF-8 come out as ``\\udcXX`` escapes, which
    ``os.fsencode`` turns back into the bytes."""
    return {
        "ok": report.ok and error is None,
        "summary": report.summary(),
        "error": error,
        "notes": report.notes,
        "files": [
            {
                "path": str(r.path),
                "output": str(r.output) if r.output is not None else None,
                "status": r.status,
                "outcome": r.outcome.value,
                "format": r.format,
                "reason": flag_wording(r.reason),
                "signer": r.signer,
                "digest": r.digest,
                "timestamp": r.timestamp.isoformat() if r.timestamp else None,
                "sha256_before": r.sha256_before,
                "sha256_after": r.sha256_after,
                "warnings": r.warnings,
            }
            for r in report.results
        ],
    }


class Printer:
    """Prints results as they come; thread-safe; progress only on a terminal."""

    def __init__(
        self,
        *,
        quiet: bool = False,
        json_mode: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.quiet = quiet
        self.json_mode = json_mode
        self.total = 0
        self.done = 0
        self._start = time.monotonic()
        self._lock = threading.Lock()
        isatty = getattr(self.err, "isatty", None)
        self.progress = bool(isatty and isatty()) and not quiet and not json_mode
        self._progress_shown = False

    def start(self, total: int) -> None:
        self.total = total
        self._start = time.monotonic()

    def log(self, message: str) -> None:
        with self._lock:
            self._clear_progress()
            print(printable(message), file=self.err)
            self._draw_progress()

    def result(self, result: FileResult) -> None:
        with self._lock:
            self.done += 1
            self._clear_progress()
            if not self.json_mode and (not self.quiet or result.status == "failed"):
                stream = self.err if result.status == "failed" else self.out
                print(describe(result), file=stream, flush=True)
            self._draw_progress()

    def finish(self, report: Report, error: str | None = None) -> None:
        """The summary (or the JSON document); ``error`` ends a run that failed as a
        whole, on standard error, in place of the summary line."""
        with self._lock:
            self._clear_progress()
        if self.json_mode:
            import json  # --json only

            json.dump(as_json(report, error), self.out, indent=2)
            self.out.write("\n")
        elif error is None and not self.quiet:
            print(f"kmssign: {report.summary()}", file=self.out)
        if error is not None:
            print(f"kmssign: error: {printable(error)}", file=self.err)

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.err.write("\r\x1b[K")
            self._progress_shown = False

    def _draw_progress(self) -> None:
        if not self.progress or not self.total or self.done >= self.total:
            return
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate else 0.0
        self.err.write(f"[{self.done}/{self.total}] {rate:.1f} files/s, ETA {eta:.0f}s")
        self.err.flush()
        self._progress_shown = True
