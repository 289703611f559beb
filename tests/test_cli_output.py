"""What the CLI prints is one line per file whatever the file is called, and names the
file written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kmssign.errors import printable
from tests.support import peutil
from tests.support.helpers import run_cli, sign_args
from tests.support.pki import TestPKI


@pytest.mark.posix  # Windows allows no control characters in names
def test_control_characters_in_names_cannot_forge_lines(capsys, tmp_path: Path) -> None:
    tree = tmp_path / "dist"
    tree.mkdir()
    evil = tree / "evil.exe\nverified: forged.exe (all fine)"
    shutil.copyfile(peutil.LAUNCHERS["t64.exe"], evil)
    (tree / "esc\x1b[2K.txt").write_text("not PE")
    code, out, err = run_cli(capsys, "verify", str(evil), str(tree / "esc\x1b[2K.txt"))
    assert code == 1
    lines = (out + err).splitlines()
    assert not [line for line in lines if line.startswith("verified: ")], lines
    assert f"failed: {tree}/evil.exe\\nverified: forged.exe (all fine): not signed" in lines
    assert f"failed: {tree}/esc\\x1b[2K.txt: not a PE file (no MZ/PE header)" in lines
    assert "\x1b" not in out + err


def test_printable_escapes_what_could_hide_or_fake_text() -> None:
    assert printable("plain name.exe") == "plain name.exe"
    assert printable("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert printable("bell\x07 del\x7f c1\x85") == "bell\\x07 del\\x7f c1\\x85"
    assert printable("line\u2028sep") == "line\\u2028sep"
    assert printable("abc\u202eexe.txt") == "abc\\u202eexe.txt"  # right-to-left override
    assert printable(os.fsdecode(b"bad\xff\xfe.exe")) == "bad\\xff\\xfe.exe"
    assert printable("caf\u00e9 \u00a0 \u65e5\u672c.exe") == "caf\u00e9 \u00a0 \u65e5\u672c.exe"


@pytest.mark.osslsigncode
@pytest.mark.posix  # names of any bytes
@pytest.mark.skipif(sys.platform == "darwin", reason="names must be any bytes")
def test_a_name_that_is_not_utf8_is_printed_escaped(pki: TestPKI, tmp_path: Path) -> None:
    """Under PYTHONIOENCODING=utf-8 printing such a name raised UnicodeEncodeError and
    ended the batch; the JSON report keeps the bytes (os.fsencode gives them back)."""
    tree = tmp_path / "dist"
    tree.mkdir()
    raw = os.fsencode(tree) + b"/tool\xff.exe"
    shutil.copyfile(peutil.LAUNCHERS["t64.exe"], raw)
    peutil.copy_sample(peutil.LAUNCHERS["w32.exe"], tree, "after.exe")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}

    def kmssign(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kmssign", *argv], capture_output=True, text=True,
            env=env, timeout=120, check=False, encoding="utf-8",
        )

    signed = kmssign("sign", str(tree), *sign_args(pki.identity("rsa2048")))
    assert signed.returncode == 0, signed.stderr
    assert f"signed: {tree}/tool\\xff.exe (" in signed.stdout
    assert f"signed: {tree}/after.exe (" in signed.stdout
    checked = kmssign("verify", str(tree), "--ca", str(pki.root_pem), "--json")
    assert checked.returncode == 0, checked.stderr
    paths = {os.fsencode(f["path"]) for f in json.loads(checked.stdout)["files"]}
    assert raw in paths
    peutil.osslsigncode_verify(Path(os.fsdecode(raw)), pki.root_pem)


@pytest.mark.osslsigncode
def test_output_option_names_the_file_written(capsys, pki: TestPKI, samples, tmp_path) -> None:
    src = samples["w32.exe"]
    dst = tmp_path / "out" / "signed.exe"
    dst.parent.mkdir()
    identity = pki.identity("rsa2048")
    code, out, err = run_cli(capsys, "sign", str(src), *sign_args(identity, "-o", str(dst)))
    assert code == 0, err
    assert out.startswith(f"signed: {src} -> {dst} (")
    dst.unlink()
    code, out, err = run_cli(
        capsys, "sign", str(src), *sign_args(identity, "-o", str(dst), "--json")
    )
    assert code == 0, err
    (entry,) = json.loads(out)["files"]
    assert entry["path"] == str(src) and entry["output"] == str(dst)
    assert entry["format"] == "pe"
    assert entry["sha256_before"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert entry["sha256_after"] == hashlib.sha256(dst.read_bytes()).hexdigest()
    peutil.osslsigncode_verify(dst, pki.root_pem)
    for command in (("verify", "--ca", str(pki.root_pem), str(dst)),
                    ("sign", "--dry-run", str(src), *sign_args(identity))):
        code, out, err = run_cli(capsys, *command, "--json")
        assert code == 0, err
        assert [f["format"] for f in json.loads(out)["files"]] == ["pe"]
