"""docs/how-to/msi.md's wixl recipe runs as written, with bash: wixl builds the package,
kmssign signs it with a key in (moto's) KMS and timestamps it (loopback TSA), verifies
it, and msiinfo lists its tables; osslsigncode accepts the result."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import msiutil, peutil
from tests.support.fixtures_kms import KmsIdentity
from tests.support.markdown import code_blocks, section
from tests.support.pki import TestPKI

ROOT = Path(__file__).resolve().parent.parent
HOWTO = (ROOT / "docs" / "how-to" / "msi.md").read_text(encoding="utf-8")
PUBLIC_TSA = "http://timestamp.digicert.com"

pytestmark = [pytest.mark.wixl, pytest.mark.msitools, pytest.mark.osslsigncode]


def test_the_wixl_recipe_runs_as_written(
    aws_env: dict[str, str], kms_identity: Callable[..., KmsIdentity], pki: TestPKI, tsa,
    tmp_path: Path,
) -> None:
    (block,) = code_blocks(section(HOWTO, "## wixl (WiX on Linux)"))
    assert PUBLIC_TSA in block and "alias/release-signing" in block
    identity = kms_identity(alias="alias/release-signing")
    project = tmp_path / "project"
    (project / "installer").mkdir(parents=True)
    (project / "dist").mkdir()
    app = project / "build" / "MyApp"
    app.mkdir(parents=True)
    files = {}
    for name in ("myapp.dat", "README.txt"):
        (app / name).write_bytes(os.urandom(3000) + name.encode())
        files[name] = app / name
    (project / "installer" / "MyApp.wxs").write_text(
        msiutil.wxs("MyApp", files, project), encoding="utf-8"
    )
    shutil.copy(identity.cert_path, project / "release-cert.pem")
    shutil.copy(pki.root_pem, project / "root.pem")
    env = dict(aws_env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    script = block.replace(PUBLIC_TSA, tsa.url("tsa"))
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=project, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    package = project / "dist" / "MyApp.msi"
    assert "signed: dist/MyApp.msi" in proc.stdout
    assert "verified: dist/MyApp.msi" in proc.stdout
    assert "Property" in proc.stdout.split()  # msiinfo tables
    peutil.osslsigncode_verify(package, pki.root_pem, tsa_ca=pki.root_pem)
