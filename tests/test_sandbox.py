"""``kmssign sandbox``: a local KMS with a key, a throwaway CA that issued the certificate
for the key's own certificate request, and a timestamp server; signing with its env.sh
gives files that osslsigncode and ``kmssign verify`` accept against its root.pem; Ctrl-C
stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kmssign._internal.pki.certs import load_certificates
from tests.support import peutil
from tests.support.sandbox import SandboxProcess

KMSSIGN = [sys.executable, "-m", "kmssign"]
# Stopped as a user stops it, with SIGINT (Ctrl-C) or SIGTERM (kill): signals.
pytestmark = pytest.mark.posix


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    process = SandboxProcess([*KMSSIGN, "sandbox"], tmp_path / "box", tmp_path / "sandbox.log",
                             cwd=tmp_path).start()
    try:
        yield process
    finally:
        process.stop()


def run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run([*KMSSIGN, *args], env={**os.environ, **env}, cwd=cwd,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_certificate_is_issued_for_the_kms_keys_request(sandbox: SandboxProcess) -> None:
    box = sandbox.directory
    request = x509.load_pem_x509_csr((box / "signing.csr").read_bytes())
    assert request.is_signature_valid
    (leaf,) = load_certificates(box / "signing.pem")
    (root,) = load_certificates(box / "root.pem")
    assert leaf.public_key() == request.public_key()
    assert leaf.subject == request.subject
    assert leaf.issuer == root.subject
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CODE_SIGNING]
    # the request's key is the KMS key: `kmssign pubkey` prints the same
    env = sandbox.variables()
    pem = run(["pubkey"], env, box)
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    assert load_pem_public_key(pem.encode()) == request.public_key()


@pytest.mark.osslsigncode
def test_signing_with_its_env_verifies_against_its_root(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    env = sandbox.variables()
    assert env["KMSSIGN_KEY_ID"] == "alias/sandbox-signing"
    target = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tmp_path / "app", "app.exe")
    out = run(["sign", str(target)], env, tmp_path)
    assert "signed:" in out and "timestamp 20" in out, out
    root = sandbox.directory / "root.pem"
    run(["verify", "--ca", str(root), "--require-timestamp", str(target)], env, tmp_path)
    peutil.osslsigncode_verify(target, root, tsa_ca=root)


def test_the_toml_snippet_signs_as_the_env_does(sandbox: SandboxProcess, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text((sandbox.directory / "kmssign.toml").read_text())
    target = peutil.copy_sample(peutil.LAUNCHERS["w32.exe"], project, "tool.exe")
    credentials = {k: v for k, v in sandbox.variables().items() if k.startswith("AWS_")}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KMSSIGN_")}
    proc = subprocess.run([*KMSSIGN, "sign", str(target)], env={**clean, **credentials},
                          cwd=project, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "kmssign Sandbox Publisher" in proc.stdout


def test_ctrl_c_stops_it_and_removes_the_env_file(tmp_path: Path) -> None:
    process = SandboxProcess([*KMSSIGN, "sandbox"], tmp_path / "box", tmp_path / "log",
                             cwd=tmp_path).start()
    url = process.variables()["KMSSIGN_TIMESTAMP_URLS"]
    assert process.stop() == 0
    assert not process.env_file.exists()
    assert (tmp_path / "box" / "root.pem").is_file()
    assert process.output().splitlines()[-1] == "kmssign sandbox: stopped"
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, data=b"x", timeout=5)


def test_detach_returns_once_ready_and_kill_stops_it(tmp_path: Path) -> None:
    box = tmp_path / "box"
    proc = subprocess.run([*KMSSIGN, "sandbox", "--dir", str(box), "--detach"], cwd=tmp_path,
                          capture_output=True, text=True, check=False, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pid = int((box / "sandbox.pid").read_text())
    try:
        assert "kmssign sandbox: ready" in proc.stdout
        assert f"kill $(cat {box / 'sandbox.pid'})" in proc.stdout
        env = {name: value for name, value in (
            line.removeprefix("export ").split("=", 1)
            for line in (box / "env.sh").read_text().splitlines())}
        run(["pubkey"], env, tmp_path)  # the detached KMS answers
    finally:
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 30
    while (box / "sandbox.pid").exists() and time.monotonic() < end:
        time.sleep(0.2)
    assert not (box / "sandbox.pid").exists() and not (box / "env.sh").exists()
    assert (box / "sandbox.log").read_text().splitlines()[-1] == "kmssign sandbox: stopped"


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detach"])
def test_without_moto_it_says_which_extra_in_one_line(tmp_path: Path, detach: bool) -> None:
    fake = tmp_path / "no-moto" / "moto"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("No module named moto (a stand-in)")\n')
    pythonpath = os.pathsep.join([str(fake.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    box = tmp_path / "box"
    proc = subprocess.run([*KMSSIGN, "sandbox", "--dir", str(box), *(["--detach"] * detach)],
                          env={**os.environ, "PYTHONPATH": pythonpath}, cwd=tmp_path,
                          capture_output=True, text=True, check=False, timeout=180)
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("kmssign: error: ") and line.count("kmssign: error:") == 1
    assert "pip install 'kmssign[sandbox]'" in line
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (box / "env.sh").exists() and not (box / "sandbox.pid").exists()


@pytest.mark.osslsigncode
def test_an_ec_key_spec_signs_with_its_curves_digest(tmp_path: Path) -> None:
    process = SandboxProcess([*KMSSIGN, "sandbox", "--key-spec", "ECC_NIST_P384"],
                             tmp_path / "box", tmp_path / "log", cwd=tmp_path).start()
    try:
        target = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tmp_path, "ec.exe")
        out = run(["sign", str(target)], process.variables(), tmp_path)
        assert "sha384" in out, out  # P-384 is bound to SHA-384
        root = process.directory / "root.pem"
        peutil.osslsigncode_verify(target, root, tsa_ca=root)
    finally:
        assert process.stop() == 0
