"""One exit code per class of problem (#23 item 4), and docs/reference/exit-codes.md
says the same as the program."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kmssign.frontends.cli.exits import EXIT_CODES, EXIT_FAILED, EXIT_USAGE
from tests.support import peutil
from tests.support.helpers import run_cli
from tests.support.pki import TestPKI

DOC = Path(__file__).resolve().parents[1] / "docs" / "reference" / "exit-codes.md"


def test_the_documented_table_is_the_programs() -> None:
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", DOC.read_text(encoding="utf-8"), flags=re.M)
    assert {int(code): text for code, text in rows} == EXIT_CODES


def test_missing_certificate_setting_and_missing_certificate_file_exit_alike(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, tmp_path: Path
) -> None:
    """Both are the settings' problem: 2, as a wrong flag is (they were 2 and 1)."""
    path = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tmp_path)
    identity = pki.identity()
    key = ("--key-file", str(identity.key_path), "--no-timestamp")
    code, _, err = run_cli(capsys, "sign", str(path), *key)
    assert (code, err.splitlines()) == (
        EXIT_USAGE, ["kmssign: error: no certificate: set certificate (PEM, DER or .p7b)"]
    )
    missing = tmp_path / "missing.pem"
    code, _, err = run_cli(capsys, "sign", str(path), *key, "--certificate", str(missing))
    assert code == EXIT_USAGE and str(missing) in err
    code, _, err = run_cli(capsys, "sign", str(path), "--key-file", str(missing),
                           "--certificate", str(identity.cert_path), "--no-timestamp")
    assert code == EXIT_USAGE and f"{missing}: cannot read key file" in err
    other = pki.identity("p256")
    code, _, err = run_cli(capsys, "sign", str(path), *key, "--certificate",
                           str(other.cert_path))
    assert code == EXIT_USAGE, err
    code, _, err = run_cli(capsys, "verify", str(path), "--ca", str(missing))
    assert code == EXIT_USAGE, err
    code, _, err = run_cli(capsys, "verify", str(path))  # the file's problem: not signed
    assert code == EXIT_FAILED and err.splitlines() == [f"failed: {path}: not signed"]
