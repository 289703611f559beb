"""A run builds only the parser of the command it names (main.build_parser(command)):
what a user sees from it (help, usage errors, parsed values) must be what the parser
with every command gives."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io

import pytest

from kmssign.frontends.cli import main as cli
from kmssign.frontends.cli.arguments import SUBCOMMANDS


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def described(parser: argparse.ArgumentParser) -> list[tuple[object, ...]]:
    """Everything about each argument that parsing or help depends on."""
    return [
        (type(a), a.option_strings, a.dest, a.nargs, a.const, a.default, a.type, a.choices,
         a.required, a.help, a.metavar)
        for a in parser._actions
    ]


def outcome(argv: list[str], only: str | None) -> tuple[object, str, str]:
    """(exit code or parsed namespace, stdout, stderr) of parsing ``argv``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result: object = vars(cli.build_parser(only).parse_args(argv))
        except SystemExit as exc:
            result = exc.code
    return result, out.getvalue(), err.getvalue()


def test_the_table_lists_every_command_in_the_order_help_shows() -> None:
    assert list(subparsers(cli.build_parser())) == list(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        assert list(subparsers(cli.build_parser(name))) == [name]


def test_every_command_has_a_function_to_run_it() -> None:
    from kmssign.frontends.cli import commands

    assert sorted({*commands.COMMANDS, *commands.ELSEWHERE}) == sorted(SUBCOMMANDS)
    for name, (module, function) in commands.ELSEWHERE.items():
        assert callable(getattr(importlib.import_module(f"kmssign.frontends.cli.{module}"),
                                function)), name


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_a_command_alone_has_the_same_parser_as_with_every_command(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    full, alone = subparsers(cli.build_parser())[name], subparsers(cli.build_parser(name))[name]
    assert alone.prog == full.prog == f"kmssign {name}"
    assert described(alone) == described(full)
    assert alone._defaults == full._defaults
    assert alone.format_help() == full.format_help()


@pytest.mark.parametrize("argv", [
    ["sign"],
    ["sign", "--help"],
    ["sign", "a.exe", "--cerificate", "c.pem"],
    ["sign", "a.exe", "--digest", "md5"],
    ["sign", "a.exe", "--jobs", "many"],
    ["sign", "a.exe", "b.exe", "--cert", "c.pem", "--timestamp-url", "http://t", "-q"],
    ["sign", "--version"],
    ["verify", "--no-chain", "a.exe", "--extra"],
    ["csr", "--subject", "CN=x"],
    ["digest", "a.exe", "-o", "r.json"],
    ["attach", "r.json"],
    ["pyinstaller", "--onefile", "app.py"],
])
def test_parsing_with_the_command_alone_gives_what_every_command_gives(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    alone = outcome(argv, argv[0])
    assert alone == outcome(argv, None)
    assert alone[0] != {}  # a namespace or an exit code: something was parsed


def test_a_run_builds_the_parser_of_the_command_it_names_or_of_every_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built: list[str | None] = []
    real = cli.build_parser

    def recording(command: str | None = None) -> argparse.ArgumentParser:
        built.append(command)
        return real(command)

    monkeypatch.setattr(cli, "build_parser", recording)
    with pytest.raises(SystemExit, match="2"):
        cli.main(["sign"])  # no file: a usage error, from sign's own parser
    assert "usage: kmssign sign " in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):
        cli.main(["sig"])
    err = capsys.readouterr().err
    assert "invalid choice: 'sig' (choose from 'sign', 'wheel', 'verify'," in err
    with pytest.raises(SystemExit, match="0"):
        cli.main(["--help"])
    listing = capsys.readouterr().out
    assert all(f"\n    {name}" in listing for name in SUBCOMMANDS)
    assert built == ["sign", None, None]
