"""The signer pages' recipes run as written: docs/how-to/pkcs11.md's SoftHSM2 try (bash,
softhsm2-util, openssl, kmssign), and the pages name what the code does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kmssign import config
from tests.support import peutil
from tests.support.markdown import code_blocks, section

ROOT = Path(__file__).resolve().parent.parent
HOWTO = ROOT / "docs" / "how-to"


@pytest.mark.softhsm
@pytest.mark.osslsigncode
@pytest.mark.posix
def test_the_softhsm2_try_runs_as_written(tmp_path: Path) -> None:
    page = (HOWTO / "pkcs11.md").read_text(encoding="utf-8")
    (block,) = code_blocks(section(page, "## A local try with SoftHSM2"))
    script = "\n".join(line for line in block.splitlines()
                       if not line.startswith("sudo apt-get"))  # installed here already
    peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tmp_path, "app.exe")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KMSSIGN_", "SOFTHSM2"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "signed: app.exe" in proc.stdout and "verified: app.exe" in proc.stdout
    assert "1234" not in proc.stdout.replace("--pin 1234", "")
    peutil.osslsigncode_verify(tmp_path / "app.exe", tmp_path / "cert.pem")
    assert not (tmp_path / "key.pem").exists() and not (tmp_path / "key.p8").exists()
    assert shutil.which("softhsm2-util")


def test_the_pkcs11_settings_table_is_the_code_s() -> None:
    text = section((HOWTO / "pkcs11.md").read_text(encoding="utf-8"), "## Settings")
    for key in (k for k in config.KEYS if k.startswith("pkcs11-")):
        env = config.ENV_PREFIX + key.upper().replace("-", "_")
        assert f"| `{key}` | `--{key}` | `{env}` |" in text


def test_the_pages_link_each_other() -> None:
    signers = (HOWTO / "signers.md").read_text(encoding="utf-8")
    assert "(pkcs11.md)" in signers and "(two-step.md)" in signers
    assert "(two-step.md)" in (HOWTO / "pkcs11.md").read_text(encoding="utf-8")


def test_the_two_step_workflow_is_valid_and_uses_real_commands() -> None:
    import yaml

    from kmssign.frontends.cli.main import build_parser

    page = (HOWTO / "two-step.md").read_text(encoding="utf-8")
    (workflow,) = code_blocks(section(page, "## The GitHub Actions workflow"))
    jobs = yaml.safe_load(workflow)["jobs"]
    assert list(jobs) == ["build", "sign", "attach"]
    assert jobs["sign"]["permissions"] == {"id-token": "write"}
    assert "id-token" not in str(jobs["build"]) + str(jobs["attach"])
    parser = build_parser()
    commands = [" ".join(step["run"].split()) for job in jobs.values() for step in job["steps"]
                if str(step.get("run", "")).startswith("kmssign")]
    assert [c.split()[1] for c in commands] == ["digest", "sign-digests", "attach", "verify"]
    for command in commands:
        parser.parse_args(command.split()[1:])  # exits on an unknown flag
