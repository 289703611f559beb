"""``kmssign sandbox`` run as a user runs it: a child process serving until SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

START_SECONDS = 120  # moto's import and the key; a deadline for a hang, not a timing check


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of an ``env.sh`` the sandbox wrote (``export NAME=VALUE`` lines)."""
    import shlex

    env = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        (env[name],) = shlex.split(value)
    return env


class SandboxProcess:
    """``start()`` runs ``command`` (``kmssign sandbox --dir DIR``) and waits for its env.sh."""

    def __init__(self, command: Sequence[str], directory: Path, log: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.command = [*command, "--dir", str(directory)]
        self.directory = directory
        self.log = log
        self.env = None if env is None else dict(env)
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env_file(self) -> Path:
        return self.directory / "env.sh"

    def start(self) -> SandboxProcess:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env, cwd=self.cwd)
        end = time.monotonic() + START_SECONDS
        while not self.env_file.exists():
            if self.process.poll() is not None or time.monotonic() > end:
                self.stop()
                raise AssertionError(f"kmssign sandbox did not start:\n{self.output()}")
            time.sleep(0.2)
        return self

    def variables(self) -> dict[str, str]:
        return read_env_file(self.env_file)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; its exit status."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            os.kill(process.pid, signal.SIGINT)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
