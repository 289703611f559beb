"""The ``kmssign`` command: the only place that prints and exits."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Sequence

# Nothing heavy is imported here: main() catches Ctrl-C from its first line on, and
# everything else (settings, the engine, cryptography) is imported inside it.
from kmssign import __version__
from kmssign.frontends.cli.arguments import SUBCOMMANDS
from kmssign.frontends.cli.exits import EXIT_USAGE
from kmssign.frontends.cli.interrupts import interrupted, signals_interrupt
from kmssign.frontends.cli.parsing import Parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``kmssign`` parser: with every subcommand, or with ``command``'s alone.

    A run of one command needs no other command's parser, and building all of them is
    most of what argparse costs a short run. Whichever is built, the top level parses
    alike and each subcommand's parser is the same (tests/test_cli_parser.py checks it).
    """
    parser = Parser(
        prog="kmssign",
        description="Authenticode-sign Windows PE files and MSI packages with a key in AWS KMS "
        "(or a key file), timestamp them (RFC 3161) and verify them.",
    )
    parser.add_argument("--version", action="version", version=f"kmssign {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, add in SUBCOMMANDS.items():
        if command is None or name == command:
            add(sub)
    return parser


# Commands that may checksum large files, in a process that is all ours.
_CHECKSUMMING_COMMANDS = {"sign", "timestamp", "wheel"}


def _one_blas_thread(command: str) -> None:
    """Keep numpy, which large files import to checksum them, from starting a BLAS pool.

    Importing numpy starts OpenBLAS's worker threads, one per core; this process never
    multiplies matrices, and on a small machine those threads take CPU from the hashing
    (a tenth of a second of it on 2 cores). A value the user set is kept.
    """
    if command in _CHECKSUMMING_COMMANDS:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _escaping_output() -> None:
    """Never fail on printing: what the output encoding lacks is written escaped."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``kmssign`` command; Ctrl-C at any point, the imports included, ends in
    one line and exit 130."""
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:
        return interrupted(exc)


def _main(argv_given: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv_given is None else list(argv_given)
    # The first argument names the command (the top level has no option that takes a
    # value); anything else (--help, --version, a mistyped command) gets every command.
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    args = build_parser(command).parse_args(argv)
    _one_blas_thread(args.command)
    _escaping_output()
    from kmssign.errors import ConfigError, KmsSignError, printable
    from kmssign.frontends.cli import commands
    from kmssign.frontends.cli.exits import exit_code_for
    from kmssign.frontends.cli.output import flag_wording
    if argv_given is None:  # the kmssign process itself, not a caller of main(argv):
        gc.freeze()  # what the imports made lives until exit; no collection looks at it again

    with signals_interrupt():
        try:
            return int(commands.run(args))
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"kmssign: error: {printable(flag_wording(problem))}", file=sys.stderr)
            return EXIT_USAGE
        except KmsSignError as exc:
            print(f"kmssign: error: {printable(flag_wording(str(exc)))}", file=sys.stderr)
            return exit_code_for(exc)
        except KeyboardInterrupt as exc:  # cleaned up while SIGTERM still interrupts
            return interrupted(exc)
