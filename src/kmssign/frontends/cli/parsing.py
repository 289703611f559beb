"""The command line's parser: argparse with kmssign's usage errors (the subcommand's own
usage, a did-you-mean for an unknown flag) and flags that remember which of their names
was typed, so that a message about a value names the flag as the user wrote it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from kmssign.frontends.cli.exits import EXIT_USAGE

FLAGS_GIVEN = "flags_given"
"""Namespace attribute: Settings field -> the flag the user typed for it (``--cert`` or
``--certificate``), so that a message about the value names the flag as typed."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's usage errors exit 2, like ours
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"kmssign: error: {message}{self._suggestion(message)}\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, but a subcommand's unknown argument is reported with that
        subcommand's usage (argparse reports it with the top-level one)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            where: argparse.ArgumentParser = self
            for action in self._actions:
                if isinstance(action, argparse._SubParsersAction):
                    where = action.choices.get(str(getattr(parsed, action.dest, "")), self)
            where.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _suggestion(self, message: str) -> str:
        """``(did you mean --certificate?)`` for an unknown flag close to one of ours."""
        prefix = "unrecognized arguments: "
        if not message.startswith(prefix):
            return ""
        import difflib

        known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        for word in message[len(prefix):].split():
            flag = word.split("=", 1)[0]
            if flag.startswith("-"):
                close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
                if close:
                    return f" (did you mean {close[0]}?)"
        return ""


def _record(namespace: argparse.Namespace, dest: str, option_string: str | None) -> None:
    if option_string is not None:
        given = getattr(namespace, FLAGS_GIVEN, None) or {}
        given[dest] = option_string
        setattr(namespace, FLAGS_GIVEN, given)


class Store(argparse._StoreAction):
    """``store``, remembering which of the flag's names was used."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _record(namespace, self.dest, option_string)


class Append(argparse._AppendAction):
    """``append``, remembering which of the flag's names was used."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _record(namespace, self.dest, option_string)
