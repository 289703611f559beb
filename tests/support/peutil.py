"""Real PE files for tests, and the independent verifier (osslsigncode)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pip

DISTLIB = Path(pip.__file__).parent / "_vendor" / "distlib"
LAUNCHERS = {
    "t64.exe": DISTLIB / "t64.exe",  # PE32+, x64
    "w32.exe": DISTLIB / "w32.exe",  # PE32, x86
    "t64-arm.exe": DISTLIB / "t64-arm.exe",  # PE32+, ARM64
}

# The tools, found once (tests/conftest.py skips a test marked with one missing here)
MINGW_GCC = shutil.which("x86_64-w64-mingw32-gcc")
OSSLSIGNCODE = shutil.which("osslsigncode")
# SoftHSM2's module and tool, and OpenSC's pkcs11-tool (tests/support/fixtures_pkcs11.py)
SOFTHSM = (shutil.which("softhsm2-util") if os.path.isfile("/usr/lib/softhsm/libsofthsm2.so")
           and shutil.which("pkcs11-tool") else None)
WINE_CANDIDATES = ("wine64", "/usr/lib/wine/wine64", "/usr/lib64/wine/wine64", "wine")


def _find_wine() -> str | None:
    for candidate in WINE_CANDIDATES:
        found = shutil.which(candidate) if "/" not in candidate else candidate
        if found and os.access(found, os.X_OK):
            return found
    return None


WINE = _find_wine()

HELLO_C = r"""
#include <stdio.h>
int main(void) { printf("hello from kmssign test\n"); return 0; }
"""

LIB_C = r"""
__declspec(dllexport) int kmssign_add(int a, int b) { return a + b; }
"""


def build_mingw(directory: Path) -> dict[str, Path]:
    """Compile a tiny .exe and .dll with mingw-w64."""
    assert MINGW_GCC, "x86_64-w64-mingw32-gcc is required (apt-get install gcc-mingw-w64-x86-64)"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hello.c").write_text(HELLO_C)
    (directory / "lib.c").write_text(LIB_C)
    subprocess.run(
        [MINGW_GCC, "-O2", "-s", "-o", str(directory / "hello.exe"), str(directory / "hello.c")],
        check=True,
    )
    subprocess.run(
        [MINGW_GCC, "-O2", "-s", "-shared", "-o", str(directory / "lib.dll"),
         str(directory / "lib.c")],
        check=True,
    )
    return {"hello.exe": directory / "hello.exe", "lib.dll": directory / "lib.dll"}


def copy_sample(src: Path, dst_dir: Path, name: str | None = None) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / (name or src.name)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o755)
    return dst


def osslsigncode_verify(
    path: Path, ca: Path, *, tsa_ca: Path | None = None, expect_ok: bool = True
) -> str:
    """Run ``osslsigncode verify`` and assert what it says; return its output.

    With ``tsa_ca``, also assert that the timestamp's own signature verified (osslsigncode
    exits 0 even when that check fails, so the line itself is checked).
    """
    assert OSSLSIGNCODE, "osslsigncode is required (apt-get install osslsigncode)"
    cmd = [OSSLSIGNCODE, "verify", "-CAfile", str(ca)]
    if tsa_ca is not None:
        cmd += ["-TSA-CAfile", str(tsa_ca)]
    cmd += ["-in", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    if expect_ok:
        assert proc.returncode == 0, out
        assert "Signature verification: ok" in out, out
        if tsa_ca is not None:
            assert "Timestamp Server Signature verification: ok" in out, out
    else:
        assert proc.returncode != 0, out
    return out


def osslsigncode_digest(path: Path) -> bytes:
    """The Authenticode digest osslsigncode calculates for a signed file."""
    assert OSSLSIGNCODE
    proc = subprocess.run(
        [OSSLSIGNCODE, "verify", "-in", str(path)], capture_output=True, text=True, check=False
    )
    match = re.search(r"Calculated message digest\s*:\s*([0-9A-Fa-f]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return bytes.fromhex(match.group(1))


def osslsigncode_sign(src: Path, dst: Path, identity: object, *extra: str) -> None:
    """Sign with osslsigncode (a known-good reference signer)."""
    assert OSSLSIGNCODE
    subprocess.run(
        [OSSLSIGNCODE, "sign", "-certs", str(identity.cert_path),  # type: ignore[attr-defined]
         "-key", str(identity.key_path), *extra,  # type: ignore[attr-defined]
         "-in", str(src), "-out", str(dst)],
        check=True, capture_output=True,
    )
