"""The rough edges a new user hit (#23 item 6): each bug, run as the user ran it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
    assert build.returncode == 1
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


def test_a_bad_timestamp_url_names_the_flag_as_typed(capsys) -> None:
    from tests.support.helpers import run_cli

    for flag in ("--timestamp-url", "--timestamp-urls"):
        code, _, err = run_cli(capsys, "sign", "x.exe", "--key-file", "k.pem",
                               "--certificate", "c.pem", flag, "ftp://x")
        assert code == 2
        assert err.splitlines() == [
            f"kmssign: error: {flag} must contain http:// or https:// URLs, not 'ftp://x'"
        ]
