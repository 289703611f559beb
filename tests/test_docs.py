"""The documentation site stays true: the reference tables are generated from the code and
refuse anything undocumented, the pages say what the code does, every page is in the
navigation, and every runnable shell block of the tutorial and the how-to guides is run by
some test (tests/test_tutorial.py, tests/test_aws_runbook.py, tests/test_recipes.py)."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmssign import config
from kmssign._internal.engine.report import FileResult, Report
from kmssign.frontends.cli import main as cli
from kmssign.frontends.cli.output import as_json
from tests.support.docs import DOCS, ROOT, fenced, page, pages, reference
from tests.support.markdown import code_blocks, section

REF = reference()
OPTION = re.compile(r"(?<![\w-])(--?[a-z][a-z0-9-]*)")

# Pages whose ```sh blocks are run, and the test module that runs them.
RUN_BY = {
    "tutorial.md": "tests/test_tutorial.py",
    "how-to/aws-kms.md": "tests/test_aws_runbook.py",
    "how-to/wheels.md": "tests/test_recipes.py",
    "how-to/msi.md": "tests/test_msi_recipes.py",
    "how-to/pkcs11.md": "tests/test_signer_docs.py",
}
# Pages with shell blocks that cannot run here as written, and why.
NOT_RUN = {
    "how-to/two-step.md": "aws kms sign --message-type DIGEST (moto ignores DIGEST) and a "
    "GitHub workflow; the commands themselves are tests/test_twostep.py's",
}
SHELLS = ("sh", "bash")


# -- the command line reference ------------------------------------------------------


def test_cli_reference_has_every_command_and_option() -> None:
    text = REF.cli_markdown()
    commands = REF.subcommands()
    assert set(commands) >= {"sign", "wheel", "verify", "timestamp", "csr", "pubkey",
                             "pyinstaller", "sandbox"}
    for name, sub in commands.items():
        body = section(text, f"## `kmssign {name}` {{ #kmssign-{name} }}")
        rows = [line for line in body.splitlines() if line.startswith("| `-")]
        documented = {o for row in rows for o in OPTION.findall(row.split(" | ")[0])}
        expected = {o for a in REF.options(sub) for o in a.option_strings}
        assert documented == expected, name


def test_an_option_without_help_fails_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    real = cli.build_parser

    def with_undocumented_flag() -> argparse.ArgumentParser:
        parser = real()
        REF.subcommands(parser)["sign"].add_argument("--colour", action="store_true")
        return parser

    monkeypatch.setattr(cli, "build_parser", with_undocumented_flag)
    with pytest.raises(REF.Undocumented, match="kmssign sign --colour has no help"):
        REF.cli_markdown()


def test_options_that_set_a_setting_link_it() -> None:
    text = REF.cli_markdown()
    sign = section(text, "## `kmssign sign` { #kmssign-sign }")
    (row,) = [line for line in sign.splitlines() if "`--cert`" in line.split(" | ")[0]]
    assert "[`certificate`](settings.md#certificate)" in row
    (row,) = [line for line in sign.splitlines() if "`--timestamp-url`" in line.split(" | ")[0]]
    assert "[`timestamp-urls`](settings.md#timestamp-urls)" in row


# -- the settings reference ----------------------------------------------------------


def settings_table() -> dict[str, list[str]]:
    rows = {}
    for line in REF.settings_markdown().splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        key = re.search(r"`([a-z0-9-]+)`", cells[0])
        assert key, line
        rows[key.group(1)] = cells
    return rows


def test_settings_reference_has_every_key_with_env_flag_and_default() -> None:
    rows = settings_table()
    fields = {f.replace("_", "-") for f in config.Settings.__dataclass_fields__} - {"source"}
    assert set(config.KEYS) == fields == set(rows)
    known = {o for sub in REF.subcommands().values() for a in REF.options(sub)
             for o in a.option_strings}
    defaults = config.Settings()
    for key, (_, _kind, default, env, flags, meaning) in rows.items():
        assert env == f"`{config.ENV_PREFIX}{key.upper().replace('-', '_')}`"
        listed = set(OPTION.findall(flags))
        assert listed and listed <= known, key
        assert meaning
        value = getattr(defaults, key.replace("-", "_"))
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            assert f"`{value}`" in default.replace(".0`", "`"), key
    assert rows["skip-signed"][2] == "`true`"
    assert rows["timestamp"][4] == "`--timestamp`, `--no-timestamp`"
    assert rows["timestamp-urls"][2].split("<br>") == [
        f"`{url}`" for url in config.DEFAULT_TIMESTAMP_URLS]


def test_a_setting_without_a_meaning_fails_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config, "KEYS", (*config.KEYS, "colour"))
    monkeypatch.setitem(config._KINDS, "colour", "str")
    with pytest.raises(REF.Undocumented, match=r"setting colour has no meaning"):
        REF.settings_markdown()


def test_a_setting_of_an_unknown_kind_fails_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(config._KINDS, "jobs", "percent")
    with pytest.raises(REF.Undocumented, match="settings kind 'percent'"):
        REF.settings_markdown()


def test_settings_env_names_are_read_by_config(tmp_path: Path) -> None:
    """The documented variables really set their keys (one value each, all at once)."""
    env = {
        "KMSSIGN_KEY_ID": "alias/docs",
        "KMSSIGN_REGION": "eu-west-1",
        "KMSSIGN_DIGEST": "sha384",
        "KMSSIGN_TIMESTAMP_URLS": "http://a.example,http://b.example",
        "KMSSIGN_SKIP_SIGNED": "no",
        "KMSSIGN_JOBS": "3",
    }
    assert {cells[3].strip("`") for cells in settings_table().values()} >= set(env)
    (tmp_path / "pyproject.toml").write_text("[tool.kmssign]\n")
    settings = config.load_settings(config=tmp_path / "pyproject.toml", cwd=tmp_path, env=env)
    assert settings.key_id == "alias/docs"
    assert settings.region == "eu-west-1"
    assert settings.digest == "sha384"
    assert settings.timestamp_urls == ("http://a.example", "http://b.example")
    assert settings.skip_signed is False
    assert settings.jobs == 3


def test_default_timestamp_servers_are_listed_in_order() -> None:
    text = page("how-to/timestamp-servers.md")
    listed = re.findall(r"^\d+\. `(https?://[^`]+)`$", text, flags=re.M)
    assert tuple(listed) == config.DEFAULT_TIMESTAMP_URLS


# -- the JSON report -----------------------------------------------------------------


def full_report() -> dict[str, Any]:
    result = FileResult(Path("dist/app.exe"), "signed", reason=None, signer="Example Ltd",
                        digest="sha256", timestamp=dt.datetime(2025, 1, 31, 12, tzinfo=dt.UTC),
                        sha256_before="ab" * 32, sha256_after="cd" * 32,
                        warnings=["certificate expires soon"], output=Path("dist/app.exe"),
                        format="pe")
    return as_json(Report(results=[result], notes=["a note"]))


JSON_TYPES = {"string": str, "boolean": bool, "array": list, "object": dict,
              "null": type(None)}


def check(value: Any, spec: dict[str, Any], where: str) -> None:
    if "enum" in spec:
        assert value in spec["enum"], where
        return
    kinds = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    assert isinstance(value, tuple(JSON_TYPES[k] for k in kinds)), where
    if isinstance(value, dict):
        assert set(value) == set(spec["properties"]) == set(spec["required"]), where
        for name, item in value.items():
            check(item, spec["properties"][name], f"{where}.{name}")
    if isinstance(value, list):
        for item in value:
            check(item, spec["items"], f"{where}[]")


def test_the_schema_describes_every_field_of_the_report() -> None:
    check(full_report(), REF.schema(), "report")
    check(as_json(Report(), error="nothing to sign"), REF.schema(), "empty report")
    table = REF.json_report_markdown()
    for name in (*full_report(), *(f"files[].{f}" for f in full_report()["files"][0])):
        assert f"| `{name}` |" in table


def test_the_schema_lists_every_status_and_outcome() -> None:
    from kmssign._internal.engine.report import STATUS_ORDER, Outcome

    fields = REF.schema()["properties"]["files"]["items"]["properties"]
    assert set(fields["status"]["enum"]) == set(STATUS_ORDER)
    assert fields["outcome"]["enum"] == [o.value for o in Outcome]


# -- the Python API ------------------------------------------------------------------

PUBLIC = ("kmssign.api", "kmssign.config", "kmssign.errors", "kmssign.signers",
          "kmssign.pyinstaller")


@pytest.mark.parametrize("name", PUBLIC)
def test_public_names_have_docstrings_and_are_on_the_api_page(name: str) -> None:
    module = importlib.import_module(name)
    assert f"::: {name}" in page("reference/api.md")
    exported = getattr(module, "__all__", None) or [
        n for n, v in vars(module).items()
        if not n.startswith("_") and getattr(v, "__module__", None) == name
        and (inspect.isclass(v) or inspect.isfunction(v))]
    undocumented = [n for n in exported
                    if (inspect.isclass(getattr(module, n)) or inspect.isfunction(
                        getattr(module, n))) and not inspect.getdoc(getattr(module, n))]
    assert not undocumented, f"{name}: {undocumented}"


def test_import_lines_of_the_pages_run() -> None:
    lines = {
        line.strip() for text in pages().values() for block in fenced(text, "python")
        for line in block.splitlines()
        if re.match(r"\s*(from kmssign[\w.]* import|import kmssign)", line)
    }
    assert "from kmssign.pyinstaller import sign_bundled, sign_outputs" in lines
    for line in sorted(lines):
        exec(line, {})


# -- the site ------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """mkdocs.yml's !!python/name tags, read as plain strings."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/",
                              lambda loader, suffix, node: str(node.value))


def nav_pages(nav: Any) -> set[str]:
    found: set[str] = set()
    items = nav if isinstance(nav, list) else [nav]
    for item in items:
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            for value in item.values():
                found |= nav_pages(value)
    return found


def test_every_page_is_in_the_navigation_and_every_entry_exists() -> None:
    site = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader)
    assert site["strict"] is True
    listed, present = nav_pages(site["nav"]), set(pages())
    assert not present - listed, f"add these pages to mkdocs.yml's nav: {present - listed}"
    assert not listed - present, f"mkdocs.yml's nav names missing pages: {listed - present}"


def test_every_generated_part_is_named_by_a_page() -> None:
    named = {m for text in pages().values() for m in REF.MARKER.findall(text)}
    assert named == set(REF.GENERATORS)
    for text in pages().values():  # and expands without an error
        REF.expand(text)


def test_the_mermaid_diagrams_are_there() -> None:
    diagrams = [b for text in pages().values() for b in fenced(text, "mermaid")]
    assert len(diagrams) >= 4
    assert all(b.split(None, 1)[0] in ("flowchart", "sequenceDiagram") for b in diagrams)


def test_every_page_with_shell_blocks_is_run_by_a_test() -> None:
    """A ```sh (or bash) block is run by a test, or its page says in NOT_RUN why not;
    other languages (or none) are shown only."""
    with_blocks = {name for name, text in pages().items()
                   if any(fenced(text, shell) for shell in SHELLS)}
    assert with_blocks == set(RUN_BY) | set(NOT_RUN)
    for name, runner in RUN_BY.items():
        assert name.split("/")[-1] in (ROOT / runner).read_text(encoding="utf-8"), runner


def test_install_page_names_the_wheel_this_version_builds() -> None:
    """The commands test_install.py runs: a wheel of this version, find-links for isolated
    builds (pip's and uv's variable), or a direct reference to the wheel file."""
    import kmssign

    text = page("how-to/install.md")
    wheel = f"kmssign-{kmssign.__version__}-py3-none-any.whl"
    blocks = code_blocks(text)
    assert blocks[1].splitlines() == [
        "python -m pip wheel --no-deps -w wheels .", f"pip install wheels/{wheel}"]
    assert f'"kmssign @ file:///abs/path/wheels/{wheel}"' in blocks[2]
    assert "PIP_FIND_LINKS=" in text and "UV_FIND_LINKS=" in text


def test_github_actions_page_uses_the_action_with_its_inputs() -> None:
    text = page("how-to/github-actions.md")
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    (block,) = [b for b in code_blocks(text) if "uses:" in b]
    steps = yaml.safe_load(block)["steps"]
    (step,) = [s for s in steps if s["uses"].startswith("ORG/kmssign@")]
    assert set(step["with"]) == set(action["inputs"])
    for other in steps:
        if other is not step:
            assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", other["uses"]), other["uses"]
    for name in (*action["inputs"], *action["outputs"]):
        assert f"`{name}`" in text
    assert "(aws-kms.md" in text and (DOCS / "how-to" / "aws-kms.md").is_file()


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    """KMSSIGN_* names in the source: the settings' (generated) and the others, which the
    settings page names in its prose."""
    source = "\n".join(p.read_text(encoding="utf-8")
                       for p in (ROOT / "src" / "kmssign").rglob("*.py"))
    names = set(re.findall(r"\bKMSSIGN_[A-Z][A-Z0-9_]*[A-Z0-9]\b", source))
    settings_env = {config.ENV_PREFIX + key.upper().replace("-", "_") for key in config.KEYS}
    others = names - settings_env
    assert {"KMSSIGN_DISABLE", "KMSSIGN_KEY_PASSWORD"} <= others
    text = page("reference/settings.md")
    assert not [name for name in others if f"`{name}" not in text]
