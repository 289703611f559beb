"""``kmssign sandbox``: local stand-ins for AWS KMS, a certificate authority and an RFC 3161
timestamp server, to try every front end without an AWS account (the tutorial uses it).

It starts moto's KMS on 127.0.0.1 (``pip install 'kmssign[sandbox]'``) with a signing key,
makes a throwaway root CA, has it issue the code-signing certificate for the request that
the KMS key signs (as ``kmssign csr`` makes it), starts a timestamp server, writes
``env.sh`` and ``kmssign.toml`` into ``--dir`` and serves until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

EXIT_OK = 0
DEFAULT_DIR = "kmssign-sandbox"


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
    return parser


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Serve until Ctrl-C, SIGTERM or ``stop`` is set."""
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
        sandbox.stop()
    print("kmssign sandbox: stopped", flush=True)
    return EXIT_OK
