"""Each command imports what it uses and nothing else: the modules a fresh interpreter
holds after running one command (not how long it took; the start-up benchmark is
benchmarks/bench_startup.py)."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import run_cli, sign_args
from tests.support.pki import TestPKI
from tests.support.wheelutil import DIST, VERSION, write_wheel

SCRIPT = """
import json, sys
from kmssign.frontends.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --version and --help exit through argparse
    code = exc.code
print(json.dumps([code, sorted(sys.modules)]))
"""

KMS = ("boto3", "botocore", "kmssign._internal.signers.aws_kms")
CRYPTO = ("cryptography", "asn1crypto")
HTTP = ("kmssign._internal.timestamp.client", "kmssign._internal.timestamp.transport",
        "http.client", "urllib.request")
WHEELS = ("kmssign._internal.wheel", "kmssign._internal.engine.wheelscan",
          "kmssign._internal.engine.wheelsign", "kmssign._internal.engine.wheelverify",
          "zipfile", "csv", "importlib.metadata")
MSI = ("kmssign._internal.msi", "kmssign._internal.cfb")  # loaded for files that are not PE
# the verifier: signing a file that carries no signature verifies nothing
VERIFIER = ("kmssign._internal.authenticode.verify", "kmssign._internal.authenticode.parse",
            "kmssign._internal.cms.signerinfo", "kmssign._internal.cms.timestamps",
            "kmssign._internal.engine.verifying", "kmssign._internal.engine.stamping")
# the thread pools (and the logging that concurrent.futures loads): one file runs inline
ONE_FILE = ("concurrent.futures", "logging")
# what large files need: hashing on worker threads (queue), the kernel's copy
LARGE_FILES = ("queue", "kmssign._internal.pe.kernelcopy")
# what suggests a name (difflib): only for a name that is wrong
SUGGESTIONS = ("difflib",)
# certificate requests: the csr command's (kmssign.api imports them when first used)
CSR = ("kmssign._internal.pki.csr", "asn1crypto.csr")
# the other commands' parsers and code: a run builds and imports its own command's only
OTHER_COMMANDS = ("kmssign.frontends.cli.twostep_command", "kmssign.frontends.cli.sandbox_command",
                  "kmssign.frontends.cli.pyinstaller_command", "kmssign._internal.sandbox")


def modules_after(*argv: str, cwd: Path) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMSSIGN_")}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv], capture_output=True, text=True, check=False,
        cwd=cwd, env=env,
    )
    last = proc.stdout.strip().splitlines()[-1]
    code, modules = json.loads(last)
    assert code == 0, proc.stderr
    return set(modules)


def loaded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    """The modules of ``modules`` that are one of ``packages`` or inside one."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_import_no_crypto_and_no_kms(flag: str, tmp_path: Path) -> None:
    modules = modules_after(flag, cwd=tmp_path)
    assert "argparse" in modules
    assert loaded(modules, KMS + CRYPTO + HTTP + WHEELS + MSI + ("logging",)) == []


def test_sign_and_verify_of_loose_files_import_no_wheel_kms_or_http_stack(
    pki: TestPKI, samples: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "t64.exe"
    shutil.copyfile(samples["t64.exe"], target)
    signed = modules_after(
        "sign", str(target), *sign_args(pki.identity("rsa2048")), "--quiet", cwd=tmp_path
    )
    assert "kmssign._internal.authenticode.build" in signed
    assert loaded(signed, KMS + HTTP + WHEELS + MSI + OTHER_COMMANDS + VERIFIER) == []
    assert loaded(signed, ONE_FILE + SUGGESTIONS + CSR + LARGE_FILES) == []

    verified = modules_after("verify", "--no-chain", str(target), "--quiet", cwd=tmp_path)
    assert "kmssign._internal.authenticode.verify" in verified
    assert loaded(verified, KMS + HTTP + WHEELS + MSI + OTHER_COMMANDS + CSR + LARGE_FILES) == []


def test_wheel_imports_the_wheel_stack_and_no_kms_or_http_stack(
    pki: TestPKI, samples: dict[str, Path], tmp_path: Path
) -> None:
    wheel = write_wheel(
        tmp_path / f"{DIST}-{VERSION}-cp312-cp312-win_amd64.whl",
        {f"{DIST}/_ext.cp312-win_amd64.pyd": samples["lib.dll"].read_bytes(),
         f"{DIST}/__init__.py": b"\n"},
    )
    modules = modules_after(
        "wheel", str(wheel), *sign_args(pki.identity("rsa2048")), "--quiet", cwd=tmp_path
    )
    assert "kmssign._internal.engine.wheelsign" in modules
    assert loaded(modules, KMS + HTTP + ("importlib.metadata",)) == []


def test_the_command_freezes_what_its_imports_made_and_an_in_process_call_does_not(
    pki: TestPKI, samples: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ``kmssign`` process (main() with no arguments) moves the objects its imports made
    out of the collector's way (gc.freeze); a caller of main(argv), a test included, keeps
    its collector as it was."""
    target = tmp_path / "t64.exe"
    shutil.copyfile(samples["t64.exe"], target)
    args = ["sign", str(target), *sign_args(pki.identity("rsa2048")), "--quiet"]
    code = ("import gc, sys; from kmssign.frontends.cli.main import main; code = main(); "
            "print(code, gc.get_freeze_count())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMSSIGN_")}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=True, cwd=tmp_path, env=env)
    exit_code, frozen = map(int, proc.stdout.split())
    assert exit_code == 0 and frozen > 1000, proc.stderr

    before = gc.get_freeze_count()
    assert run_cli(capsys, "sign", str(target), *sign_args(pki.identity("rsa2048")),
                   "--quiet", "--no-skip-signed")[0] == 0
    assert gc.get_freeze_count() == before
