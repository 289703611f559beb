"""Small helpers shared by the CLI-level tests."""

from __future__ import annotations

from pathlib import Path

from kmssign.cli import main
from tests.pki import SigningIdentity


def sign_args(identity: SigningIdentity, *extra: str) -> list[str]:
    """Arguments of ``kmssign sign`` for a key-file identity (no timestamp unless given)."""
    args = [
        "--key-file", str(identity.key_path),
        "--cert", str(identity.cert_path),
        "--chain", str(identity.chain_path),
    ]
    if "--timestamp-url" not in extra and "--timestamp" not in extra:
        args.append("--no-timestamp")
    return [*args, *extra]


def run_cli(capsys: object, *argv: str) -> tuple[int, str, str]:
    """Run ``kmssign`` in-process; return (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()  # type: ignore[attr-defined]
    return code, captured.out, captured.err


def snapshot(paths: dict[str, Path]) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in paths.items()}
