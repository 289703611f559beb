"""Flags and settings share their names (#23 item 4): a flag for every setting, a
suggestion for a near miss, and a subcommand's own usage on its errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kmssign import config
from kmssign.errors import ConfigError
from kmssign.frontends.cli.main import build_parser, main


def _subcommand(name: str) -> argparse.ArgumentParser:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise AssertionError("no subcommands")


@pytest.mark.parametrize("command", ["sign", "wheel"])
def test_every_setting_has_a_flag_of_the_same_name(command: str) -> None:
    flags = {s for a in _subcommand(command)._actions for s in a.option_strings}
    missing = [key for key in config.KEYS if f"--{key}" not in flags]
    assert missing == []
    assert "certificate" in config.KEYS and "timestamp-urls" in config.KEYS
    assert {"--cert", "--timestamp-url"} <= flags  # the short aliases stay


def test_the_alias_and_the_setting_name_set_the_same_value(tmp_path: Path) -> None:
    parser = build_parser()
    a = parser.parse_args(["sign", "x", "--cert", "c.pem", "--timestamp-url", "http://a"])
    b = parser.parse_args(["sign", "x", "--certificate", "c.pem", "--timestamp-urls", "http://a"])
    assert (a.certificate, a.timestamp_urls) == (b.certificate, b.timestamp_urls)
    assert a.certificate == Path("c.pem") and a.timestamp_urls == ["http://a"]


@pytest.mark.parametrize(("key", "suggested"), [
    ("cert", "certificate"), ("timestamp-url", "timestamp-urls"), ("key_id", "key-id"),
    ("--key-file", "key-file"), ("digets", "digest"),
])
def test_an_unknown_key_gets_a_suggestion(tmp_path: Path, key: str, suggested: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[tool.kmssign]\n"{key}" = "x"\n')
    with pytest.raises(ConfigError) as caught:
        config.load_settings(cwd=tmp_path, env={})
    assert caught.value.problems == [
        f"tool.kmssign.{key} is not a known setting (did you mean {suggested}?)"
    ]


def test_a_key_far_from_every_setting_gets_no_guess(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.kmssign]\ncolour = "x"\n')
    with pytest.raises(ConfigError) as caught:
        config.load_settings(cwd=tmp_path, env={})
    assert caught.value.problems == ["tool.kmssign.colour is not a known setting"]


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_an_unknown_flag_gets_the_subcommands_usage_and_a_suggestion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _usage_error(capsys, "verify", "x.exe", "--jbos", "3")
    assert err.startswith("usage: kmssign verify ")
    assert err.splitlines()[-1] == (
        "kmssign: error: unrecognized arguments: --jbos 3 (did you mean --jobs?)"
    )
    err = _usage_error(capsys, "sign", "x.exe", "--certifcate", "c.pem")
    assert err.startswith("usage: kmssign sign ")
    assert err.rstrip().endswith("(did you mean --certificate?)")
