"""One voice (#23 item 3): the CLI, the build plugins and the PyInstaller helpers say a
file's result in the same line: signer, digest, timestamp in UTC with Z."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from kmssign.api import FileResult
from kmssign.frontends import buildhooks
from kmssign.frontends.cli.output import describe

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def test_every_front_end_says_a_result_in_one_format() -> None:
    signed = FileResult(Path("dist/a.exe"), "signed", signer="Example Ltd", digest="sha256",
                        timestamp=WHEN, output=Path("dist/a.exe"))
    line = "signed: dist/a.exe (Example Ltd, sha256, timestamp 2026-01-02T01:04:05Z)"
    assert signed.line() == line == describe(signed)
    assert buildhooks.describe(signed, "pkg/a.exe") == (
        "kmssign: signed: pkg/a.exe (Example Ltd, sha256, timestamp 2026-01-02T01:04:05Z)"
    )
    skipped = FileResult(Path("b.dll"), "skipped", reason="already signed")
    assert buildhooks.describe(skipped, "pkg/b.dll") == (
        "kmssign: skipped: pkg/b.dll (already signed)"
    )
    failed = FileResult(Path("c.dll"), "failed", reason="not a PE file")
    assert describe(failed) == "failed: c.dll: not a PE file"
    assert buildhooks.describe(failed, "pkg/c.dll") == "kmssign: failed: pkg/c.dll: not a PE file"
    moved = FileResult(Path("in.exe"), "signed", signer="S", digest="sha384",
                       output=Path("out/in.exe"))
    assert moved.line() == "signed: in.exe -> out/in.exe (S, sha384, no timestamp)"
