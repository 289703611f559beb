"""README.md stays true: its CLI reference, settings table and quick start match the code."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from kmssign import config
from kmssign.frontends.cli import main as cli
from tests.support.markdown import code_blocks, section

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
QUICK_START = ["python3 -m pip install nox && nox -s demo", "nox -s tests"]
# An option token in text: -o or --long-name, not part of a longer word.
OPTION = re.compile(r"(?<![\w-])(--?[a-z][a-z0-9-]*)")


def table_rows(text: str) -> list[list[str]]:
    """Cells of every markdown table row, header and separator rows excluded."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if all(set(c) <= set("-: ") for c in cells):
            continue
        rows.append(cells)
    return rows[1:] if rows else rows  # drop the header row


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("kmssign's parser has no subcommands")


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s not in ("-h", "--help")}


COMMANDS = subcommands()
CLI_REFERENCE = section(README, "## CLI reference")


def command_section(name: str) -> str:
    return section(CLI_REFERENCE, f"### `kmssign {name}`")


def listed_options(text: str) -> set[str]:
    """Options in the section's usage block and in the first column of its flag table."""
    blocks = code_blocks(text)
    found = set(OPTION.findall(blocks[0])) if blocks else set()
    for row in table_rows(text):
        found.update(OPTION.findall(row[0]))
    return found


def test_every_command_has_a_section() -> None:
    headings = set(re.findall(r"^### `kmssign ([a-z]+)`$", CLI_REFERENCE, flags=re.M))
    assert headings == set(COMMANDS)


def flags(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    """Each option's names: a flag and its aliases (--certificate, --cert) are one flag."""
    return [tuple(a.option_strings) for a in parser._actions
            if a.option_strings and not set(a.option_strings) & {"-h", "--help"}]


def unmentioned(parser: argparse.ArgumentParser, mentioned: set[str]) -> list[str]:
    """The flags none of whose names is mentioned, by their first name."""
    return sorted(names[0] for names in flags(parser) if not set(names) & mentioned)


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - {"pyinstaller"}))
def test_readme_documents_every_option(name: str) -> None:
    text = command_section(name)
    mentioned = set(OPTION.findall(text))
    missing = unmentioned(COMMANDS[name], mentioned)
    assert not missing, f"kmssign {name}: options missing from README.md: {missing}"
    table_flags = {f for row in table_rows(text) for f in OPTION.findall(row[0])}
    untabled = unmentioned(COMMANDS[name], table_flags)
    assert not untabled, f"kmssign {name}: options without a row in the flag table: {untabled}"


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - {"pyinstaller"}))
def test_readme_lists_only_real_options(name: str) -> None:
    text = command_section(name)
    listed = listed_options(text)
    assert listed, f"kmssign {name}: README section lists no options"
    unknown = sorted(listed - options(COMMANDS[name]))
    assert not unknown, f"kmssign {name}: README lists options the parser lacks: {unknown}"


def test_pyinstaller_command_is_documented() -> None:
    text = command_section("pyinstaller")
    assert "kmssign pyinstaller [PyInstaller arguments...]" in text
    assert "KMSSIGN_DISABLE" in text


def settings_rows() -> dict[str, list[str]]:
    rows = table_rows(section(README, "## Settings reference"))
    by_key = {}
    for cells in rows:
        match = re.fullmatch(r"`([a-z-]+)`", cells[0])
        assert match, f"settings table row without a `key` first: {cells}"
        by_key[match.group(1)] = cells
    return by_key


def test_settings_table_has_every_key_with_its_env_name() -> None:
    rows = settings_rows()
    fields = {f.replace("_", "-") for f in config.Settings.__dataclass_fields__} - {"source"}
    assert set(config.KEYS) == fields
    assert set(rows) == set(config.KEYS)
    for key, cells in rows.items():
        env = config.ENV_PREFIX + key.upper().replace("-", "_")
        assert f"`{env}`" in cells, f"{key}: env column should name {env}: {cells}"


def test_settings_env_names_are_read_by_config(tmp_path: Path) -> None:
    """The documented variables really set their keys (one value each, all at once)."""
    env = {
        "KMSSIGN_KEY_ID": "alias/readme",
        "KMSSIGN_REGION": "eu-west-1",
        "KMSSIGN_DIGEST": "sha384",
        "KMSSIGN_TIMESTAMP_URLS": "http://a.example,http://b.example",
        "KMSSIGN_SKIP_SIGNED": "no",
        "KMSSIGN_JOBS": "3",
    }
    (tmp_path / "pyproject.toml").write_text("[tool.kmssign]\n")
    settings = config.load_settings(config=tmp_path / "pyproject.toml", cwd=tmp_path, env=env)
    assert settings.key_id == "alias/readme"
    assert settings.region == "eu-west-1"
    assert settings.digest == "sha384"
    assert settings.timestamp_urls == ("http://a.example", "http://b.example")
    assert settings.skip_signed is False
    assert settings.jobs == 3


def test_settings_table_cli_flags_exist() -> None:
    known = set().union(*(options(p) for p in COMMANDS.values()))
    for key, cells in settings_rows().items():
        flags = set(OPTION.findall(cells[4]))
        assert flags, f"{key}: no CLI flag in the settings table"
        assert flags <= known, f"{key}: unknown flags {sorted(flags - known)}"


def test_settings_table_defaults_match_code() -> None:
    rows = settings_rows()
    defaults = config.Settings()
    assert f"`{defaults.digest}`" in rows["digest"][2]
    assert f"`{defaults.timestamp}`" in rows["timestamp"][2]
    assert f"`{defaults.jobs}`" in rows["jobs"][2]
    assert f"`{str(defaults.skip_signed).lower()}`" in rows["skip-signed"][2]


def test_default_timestamp_servers_are_documented_in_order() -> None:
    text = section(README, "## Timestamping")
    listed = re.findall(r"^\d+\. `(https?://[^`]+)`$", text, flags=re.M)
    assert tuple(listed) == config.DEFAULT_TIMESTAMP_URLS


def test_quick_start_is_exactly_the_two_commands() -> None:
    blocks = code_blocks(section(README, "## Quick start"))
    assert blocks, "Quick start has no code block"
    lines = [line.strip() for line in blocks[0].splitlines() if line.strip()]
    assert lines == QUICK_START


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [
        line.strip() for line in script.splitlines() if line.strip() and not line.startswith("#")
    ]
    assert any(re.search(r"(^|\s)nox -s tests$", c) for c in commands), commands


def test_every_nox_session_named_in_the_readme_exists() -> None:
    import ast

    def sessions_of(noxfile: Path) -> set[str]:
        tree = ast.parse(noxfile.read_text(encoding="utf-8"))
        return {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef)
            and any("session" in ast.unparse(d) for d in node.decorator_list)
        }

    sessions = sessions_of(ROOT / "noxfile.py")
    # the release check a user adds to their own noxfile, as sample_app has it
    user_sessions = sessions_of(ROOT / "sample_app" / "noxfile.py")
    named = set(re.findall(r"nox -s (\w+)", README))
    assert named, "the README names no nox session"
    assert named <= sessions | user_sessions, named - sessions - user_sessions
    assert {"tests", "demo", "sample", "lint", "bench"} <= sessions
    assert user_sessions == {"verify_signatures"}


def test_installation_names_the_wheel_this_version_builds() -> None:
    """The commands test_install.py runs: a wheel of this version, find-links for isolated
    builds (pip's and uv's variable), or a direct reference to the wheel file."""
    import kmssign

    text = section(README, "## Installation")
    wheel = f"kmssign-{kmssign.__version__}-py3-none-any.whl"
    blocks = code_blocks(text)
    assert blocks[1].splitlines() == [
        "python -m pip wheel --no-deps -w wheels .", f"pip install wheels/{wheel}"]
    assert f'"kmssign @ file:///abs/path/wheels/{wheel}"' in blocks[2]
    assert "PIP_FIND_LINKS=" in text and "UV_FIND_LINKS=" in text


def test_ci_section_uses_the_action_with_its_inputs_and_links_the_runbook() -> None:
    import yaml

    text = section(README, "## CI: GitHub Actions")
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    (block,) = [b for b in code_blocks(text) if "uses:" in b]
    steps = yaml.safe_load(block)["steps"]
    (step,) = [s for s in steps if s["uses"].startswith("ORG/kmssign@")]
    assert set(step["with"]) == set(action["inputs"])
    for other in steps:
        if other is not step:
            assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", other["uses"]), other["uses"]
    for name in action["inputs"]:
        assert f"`{name}`" in text
    assert "(docs/aws.md)" in text and (ROOT / "docs" / "aws.md").is_file()
    for output in action["outputs"]:
        assert f"`{output}`" in text
