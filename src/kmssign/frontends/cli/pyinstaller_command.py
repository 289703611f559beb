"""``kmssign pyinstaller [PyInstaller arguments...]``: build with PyInstaller, signed.

Every argument goes to PyInstaller unchanged (a script with options, or a .spec file);
this parser does not treat ``-x``/``--x`` as its own options. PyInstaller runs in this
process; the spec's ``Analysis``/``EXE``/``COLLECT`` sign bundled binaries and outputs
as they are built (see :mod:`kmssign.pyinstaller`). Settings: ``[tool.kmssign]`` of the
nearest pyproject.toml above the spec file and ``KMSSIGN_*`` variables.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from kmssign.frontends.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE

_HELP = (
    "usage: kmssign pyinstaller [PyInstaller arguments...]\n\n"
    "Run PyInstaller with these arguments and sign every bundled DLL/.pyd and the built\n"
    "executables. Settings: [tool.kmssign] of the nearest pyproject.toml above the spec\n"
    "file, KMSSIGN_* environment variables; KMSSIGN_DISABLE=1 builds without signing.\n"
    "PyInstaller's own help follows.\n"
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``pyinstaller`` subcommand to the ``kmssign`` parser's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "pyinstaller",
        help="run PyInstaller and sign the bundled binaries and the outputs",
        description=_HELP,
        prefix_chars="+",  # so that PyInstaller's -x/--x options are not ours
        add_help=False,
    )
    parser.add_argument("pyinstaller_args", nargs=argparse.REMAINDER, metavar="ARGS")
    return parser


_MISSING = "PyInstaller is not installed here: pip install pyinstaller (in this environment)"


def _pyinstaller_missing() -> bool:
    """Whether importing PyInstaller fails because it is not installed (and only that)."""
    try:
        import PyInstaller  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "PyInstaller":
            return True
        raise
    return False


def run(args: argparse.Namespace) -> int:
    """Run the build; print a one-line error and return non-zero when it fails."""
    argv = list(args.pyinstaller_args)
    if argv and argv[0] == "--":
        argv = argv[1:]
    own = argv[: argv.index("--")] if "--" in argv else argv
    wants_help = not own or "-h" in own or "--help" in own
    if wants_help:
        sys.stdout.write(_HELP + "\n")
        sys.stdout.flush()
    if _pyinstaller_missing():
        if wants_help:  # our own help is all there is to show
            print(f"kmssign: {_MISSING}")
            return EXIT_OK
        print(f"kmssign: error: {_MISSING}", file=sys.stderr)
        return EXIT_USAGE
    from kmssign.pyinstaller import run_pyinstaller  # the public .spec helpers

    # Like PyInstaller's own console script: the scripts folder is no import root.
    if sys.path and os.path.basename(sys.path[0]) in ("bin", "Scripts"):
        sys.path.pop(0)
    try:
        return run_pyinstaller(argv)
    except SystemExit as exc:
        if exc.code is None:
            return EXIT_OK
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return EXIT_FAILED
