"""Checks shared by the build-plugin and recipe tests: a wheel that came out signed, and a
build that failed the way a build plugin must fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kmssign.pe.image import looks_like_pe
from tests import peutil
from tests.fixtures_build import Build, assert_record_matches, extract
from tests.helpers import run_cli
from tests.pki import TestPKI

KMS_SUBJECT = "kmssign Test KMS Signer RSA_2048"


def check_kms_signed_wheel(wheel: Path, pki: TestPKI, tmp: Path, capsys: object) -> set[str]:
    """Every PE member (found by content) signed by the test KMS key and timestamped, as
    ``osslsigncode verify`` (with -TSA-CAfile) and ``kmssign verify --require-signed
    --require-timestamp`` see it; RECORD right by our check and ``python -m wheel unpack``'s.
    Returns the PE members' paths in the wheel."""
    content = extract(wheel, tmp / f"content-{wheel.stem}")
    names = {p.relative_to(content).as_posix() for p in content.rglob("*") if looks_like_pe(p)}
    assert names, wheel
    for name in sorted(names):
        out = peutil.osslsigncode_verify(content / name, pki.root_pem, tsa_ca=pki.root_pem)
        assert KMS_SUBJECT in out, (name, out)
    assert_record_matches(wheel)
    proc = subprocess.run(
        [sys.executable, "-m", "wheel", "unpack", "-d", str(tmp / f"unpacked-{wheel.stem}"),
         str(wheel)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    code, out, err = run_cli(capsys, "verify", "--ca", str(pki.root_pem), "--require-timestamp",
                             "--require-signed", str(wheel))
    assert code == 0, out + err
    for name in names:
        assert f"verified: {wheel}!{name} (" in out, out
    return names


def one_error_line(build: Build, lead: str = "") -> str:
    """The build failed with exactly one ``kmssign: error: ...`` line (after ``lead``, the
    build tool's own prefix), no traceback and no wheel; returns it without ``lead``."""
    assert build.returncode != 0, build.output
    assert not build.wheels
    errors = [x.strip() for x in build.output.splitlines() if "kmssign: error: " in x]
    assert len(errors) == 1, build.output
    assert errors[0].startswith(f"{lead}kmssign: error: "), build.output
    assert "Traceback" not in build.output, build.output
    return errors[0].removeprefix(lead)
