"""The rough edges a new user hit (#23 item 6): each bug, run as the user ran it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.fixtures_kms import KmsIdentity
from tests.support.helpers import run_cli, sign_args
from tests.support.kms_proxy import KmsProxy
from tests.support.kms_server import KmsServer
from tests.support.permissions import kmssign_held_to_permissions
from tests.support.pki import TestPKI
from tests.support.tsa_server import LoopbackTSA

SRC = str(Path(__file__).resolve().parents[1] / "src")

# A child Python that runs `kmssign ARGS` with some modules made unimportable, and
# optionally sends itself SIGINT when a module starts importing (Ctrl-C during imports).
_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    hidden, interrupt_at = sys.argv[1], sys.argv[2]

    class Hook:
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if hidden and top == hidden:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            if interrupt_at and name == interrupt_at:
                os.kill(os.getpid(), signal.SIGINT)
            return None

    sys.meta_path.insert(0, Hook())
    sys.argv = ["kmssign", *sys.argv[3:]]
    from kmssign.frontends.cli.main import main
    sys.exit(main())
    """
)


def run_child(
    *argv: str, hidden: str = "", interrupt_at: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", _CHILD, hidden, interrupt_at, *argv],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
    )


def test_pyinstaller_help_without_pyinstaller() -> None:
    done = run_child("pyinstaller", "--help", hidden="PyInstaller")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "usage: kmssign pyinstaller" in done.stdout
    assert "PyInstaller is not installed here: pip install pyinstaller" in done.stdout
    build = run_child("pyinstaller", "app.py", hidden="PyInstaller")
    assert build.returncode == 2
    assert build.stderr.splitlines() == [
        "kmssign: error: PyInstaller is not installed here: pip install pyinstaller "
        "(in this environment)"
    ]


def test_ctrl_c_while_importing_exits_130_in_one_line(tmp_path: Path) -> None:
    """Ctrl-C in the first fraction of a second lands during the imports (the engine,
    cryptography): still one line and exit 130, not a traceback and death by SIGINT."""
    for module in ("kmssign.config", "kmssign.api", "cryptography.x509"):
        done = run_child("verify", str(tmp_path), interrupt_at=module)
        assert done.returncode == 130, (module, done.returncode, done.stderr)
        assert done.stderr.splitlines() == [
            "kmssign: interrupted (SIGINT); files not finished are left as they were"
        ], module


def test_a_bad_timestamp_url_names_the_flag_as_typed(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--timestamp-url", "--timestamp-urls"):
        code, _, err = run_cli(capsys, "sign", "x.exe", "--key-file", "k.pem",
                               "--certificate", "c.pem", flag, "ftp://x")
        assert code == 2
        assert err.splitlines() == [
            f"kmssign: error: {flag} must contain http:// or https:// URLs, not 'ftp://x'"
        ]


def _launcher_wheel(directory: Path) -> Path:
    from tests.support import peutil, wheelutil

    directory.mkdir(parents=True, exist_ok=True)
    launcher = peutil.LAUNCHERS["t64.exe"].read_bytes()
    return wheelutil.write_wheel(
        directory / wheelutil.WHEEL_NAME, {"demo_pkg/tool.exe": launcher}
    )


@pytest.mark.posix  # permission bits, capabilities
def test_wheel_in_an_unwritable_directory_fails_before_any_kms_or_tsa_call(
    aws_env: dict[str, str], kms_server: KmsServer,
    kms_identity: Callable[..., KmsIdentity], tsa: LoopbackTSA, tmp_path: Path,
) -> None:
    identity = kms_identity("RSA_2048")
    wheel = _launcher_wheel(tmp_path / "dist")
    before = wheel.read_bytes()
    proxy = KmsProxy(kms_server.endpoint_url).start()
    tsa.reset()
    (tmp_path / "dist").chmod(0o555)
    try:
        done = kmssign_held_to_permissions(
            "wheel", str(wheel), "--key-id", identity.key_id, "--certificate",
            str(identity.cert_path), "--endpoint-url", proxy.endpoint_url,
            "--timestamp-url", tsa.url(), env=aws_env,
        )
        assert (proxy.count("Sign"), proxy.count("GetPublicKey"), tsa.count()) == (0, 0, 0)
    finally:
        (tmp_path / "dist").chmod(0o755)
        proxy.stop()
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"failed: {wheel}: cannot write into {wheel.parent} (permission denied); "
        "left unchanged"
    ]
    assert wheel.read_bytes() == before


def test_a_read_only_file_is_refused_and_left_as_it_was(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, tmp_path: Path
) -> None:
    """As signtool and osslsigncode users expect: a read-only file is not replaced behind
    their back (the rename would do it, even as root); one line names it."""
    from tests.support import peutil

    path = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tmp_path)
    other = peutil.copy_sample(peutil.LAUNCHERS["w32.exe"], tmp_path)
    path.chmod(0o444)
    before = path.read_bytes()
    code, out, err = run_cli(capsys, "sign", str(tmp_path), *sign_args(pki.identity()))
    assert code == 1
    assert err.splitlines() == [
        f"failed: {path}: read-only file; left unchanged (make it writable, e.g. chmod u+w, "
        "to sign it)"
    ]
    assert path.read_bytes() == before and stat.S_IMODE(path.stat().st_mode) == 0o444
    assert f"signed: {other} " in out
    wheel = _launcher_wheel(tmp_path / "dist")
    wheel.chmod(0o444)
    before = wheel.read_bytes()
    code, out, err = run_cli(capsys, "wheel", str(wheel), *sign_args(pki.identity()))
    assert code == 1
    assert f"failed: {wheel}: read-only file; left unchanged" in err
    assert wheel.read_bytes() == before
