"""Turn a ``kmssign sign --json`` / ``verify --json`` report into Markdown for a job summary.

    python kmssign_summary.py --heading "kmssign sign" sign.json >> "$GITHUB_STEP_SUMMARY"

The report is the document kmssign prints with ``--json``: ``ok``, ``summary`` and
``files``, each with ``path``, ``status``, ``reason``, ``signer``, ``digest``,
``timestamp`` and ``warnings``. The Markdown is a heading with the outcome and the
summary line, then one table row per file. A report that is empty or missing (kmssign
stopped before any file, e.g. on a settings error, and said why on standard error) gives
a heading that says so. The exit status is 0 whenever Markdown was written: the step
that ran kmssign decides whether the job fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = ("file", "status", "signer", "digest", "timestamp", "details")


def cell(value: object) -> str:
    """A Markdown table cell: pipes escaped (GitHub's tables need that even in code spans,
    where a backslash is otherwise literal: Windows paths stay as they are), line breaks
    flattened, empty for None."""
    if value is None or value == "" or value == []:
        return ""
    text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
    return " ".join(text.replace("|", "\\|").split())


def utc(value: object) -> object:
    """A report's ISO 8601 time as kmssign's lines give it (UTC, to the second, with Z);
    anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is None:
        return value
    return f"{when.astimezone(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"


def row(entry: dict[str, Any]) -> str:
    details = [entry["reason"]] if entry.get("reason") else []
    details += [f"warning: {w}" for w in entry.get("warnings") or []]
    cells = [
        f"`{cell(entry.get('path'))}`",
        cell(entry.get("status")),
        cell(entry.get("signer")),
        cell(entry.get("digest")),
        cell(utc(entry.get("timestamp"))),
        cell(details),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(report: dict[str, Any] | None, heading: str) -> str:
    if report is None:
        return f"### {heading}: no report\n\nkmssign wrote no report (see the step's log).\n"
    mark = "passed" if report.get("ok") else "FAILED"
    lines = [f"### {heading}: {mark}", "", cell(report.get("summary")), ""]
    files = report.get("files") or []
    if files:
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += [row(entry) for entry in files]
        lines.append("")
    return "\n".join(lines) + "\n"


def load(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    if not text.strip():
        return None
    report: dict[str, Any] = json.loads(text)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("report", type=Path, help="the JSON kmssign printed with --json")
    parser.add_argument("--heading", default="kmssign", help="heading text (default kmssign)")
    args = parser.parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):  # the summary file is UTF-8 on every OS
        sys.stdout.reconfigure(encoding="utf-8")
    sys.stdout.write(markdown(load(args.report), args.heading))
    return 0


if __name__ == "__main__":
    sys.exit(main())
