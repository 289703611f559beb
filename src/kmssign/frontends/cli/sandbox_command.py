"""``kmssign sandbox``: local stand-ins for AWS KMS, a certificate authority and an RFC 3161
timestamp server, to try every front end without an AWS account (the tutorial uses it).

It starts moto's KMS on 127.0.0.1 (``pip install 'kmssign[sandbox]'``) with a signing key,
makes a throwaway root CA, has it issue the code-signing certificate for the request that
the KMS key signs (as ``kmssign csr`` makes it), starts a timestamp server, writes
``env.sh`` and ``kmssign.toml`` into ``--dir`` and serves until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kmssign.errors import KmsSignError

EXIT_OK = 0
DEFAULT_DIR = "kmssign-sandbox"
START_SECONDS = 120.0  # importing moto and making the key take seconds; this is for a hang


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sandbox`` subcommand to the ``kmssign`` parser's subparsers."""
    from kmssign._internal.sandbox.kms import KEY_SPECS

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sandbox",
        help="run a local KMS, CA and timestamp server to try kmssign (Ctrl-C stops)",
        description="Start a local KMS with a signing key, a throwaway CA that issues the "
        "code-signing certificate from the key's certificate request, and an RFC 3161 "
        "timestamp server, all on 127.0.0.1; write env.sh (source it) and kmssign.toml "
        "(a [tool.kmssign] table) into DIR; serve until Ctrl-C.",
    )
    parser.add_argument(
        "--dir", type=Path, default=Path(DEFAULT_DIR), metavar="DIR",
        help=f"where root.pem, signing.pem, env.sh and kmssign.toml go (default {DEFAULT_DIR})",
    )
    parser.add_argument(
        "--key-spec", choices=KEY_SPECS, default="RSA_2048",
        help="the KMS key's spec (default RSA_2048)",
    )
    parser.add_argument(
        "--detach", action="store_true",
        help="serve from a process of its own and return once it is ready; "
        "DIR/sandbox.pid names it (kill stops it), DIR/sandbox.log has its output",
    )
    return parser


def _detach(args: argparse.Namespace) -> int:
    """Start ``kmssign sandbox`` without --detach in a new session; wait until it wrote
    env.sh (or died); print what it printed."""
    import subprocess
    import sys
    import time

    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    env_file = directory / "env.sh"
    env_file.unlink(missing_ok=True)
    log_path = directory / "sandbox.log"
    with log_path.open("wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "kmssign", "sandbox", "--dir", str(directory),
             "--key-spec", args.key_spec],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_SECONDS
    while not (env_file.exists() and b"ready;" in log_path.read_bytes()):
        if child.poll() is not None or time.monotonic() > deadline:
            if child.poll() is None:
                child.terminate()
                child.wait()
            output = log_path.read_text(errors="replace").strip().splitlines()
            reason = output[-1].removeprefix("kmssign: error: ") if output else "no output"
            raise KmsSignError(f"the sandbox did not start: {reason} (see {log_path})")
        time.sleep(0.1)
    (directory / "sandbox.pid").write_text(f"{child.pid}\n")
    sys.stdout.write(log_path.read_text(errors="replace"))
    print(f"kmssign sandbox: running as process {child.pid}; stop it with: "
          f"kill $(cat {directory / 'sandbox.pid'})", flush=True)
    return EXIT_OK


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    signums = [getattr(signal, n) for n in names if hasattr(signal, n)]
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Serve until Ctrl-C, SIGTERM or ``stop`` is set (or, with --detach, start a process
    that does)."""
    if args.detach:
        return _detach(args)
    from kmssign._internal.sandbox.run import Sandbox

    sandbox = Sandbox(args.dir, key_spec=args.key_spec)
    try:
        sandbox.start()
        for line in sandbox.lines:
            print(f"kmssign sandbox: {line}", flush=True)
        print(f"kmssign sandbox: [tool.kmssign] for these services: {args.dir / 'kmssign.toml'}")
        print(f"kmssign sandbox: in another shell, run: . {sandbox.env_file}", flush=True)
        for name, value in sandbox.env().items():
            print(f"export {name}={value}")
        print("kmssign sandbox: ready; Ctrl-C stops it", flush=True)
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        pass
    finally:
        with _signals_ignored():  # a second Ctrl-C must not cut the stopping short
            sandbox.stop()
            (args.dir / "sandbox.pid").unlink(missing_ok=True)
    print("kmssign sandbox: stopped", flush=True)
    return EXIT_OK
