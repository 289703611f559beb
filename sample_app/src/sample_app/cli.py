"""``sample-app``: greet, and run the bundled Windows helper where it can run."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

BIN = Path(__file__).parent / "bin"


def helpers() -> list[Path]:
    """The Windows binaries installed with the package (built and signed at build time)."""
    return sorted(p for p in BIN.iterdir() if p.suffix in (".exe", ".dll")) if BIN.is_dir() else []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sample-app", description=__doc__)
    parser.add_argument("name", nargs="?", default="world")
    parser.add_argument("--list", action="store_true", help="list the bundled Windows helpers")
    args = parser.parse_args(argv)
    if args.list:
        for path in helpers():
            print(path)
        return 0
    hello = BIN / "hello.exe"
    if sys.platform == "win32" and hello.is_file():
        return subprocess.run([str(hello), args.name], check=False).returncode
    print(f"Hello, {args.name}! (the Windows helper is {hello})")
    return 0
