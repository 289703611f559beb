"""The reference pages' generated parts, from the code they describe (a MkDocs hook).

A page holds a marker line, ``<!-- kmssign:NAME -->``, that the build replaces:

- ``cli``: every command of ``kmssign``'s argparse parser, its usage, and a row per option
  (value, default, meaning from the option's help; options that set a setting link to it);
- ``settings``: every key of ``kmssign.config`` with its type (from the key's kind), its
  default (from ``Settings()``), its environment variable, the CLI flags that set it, and
  its meaning (``kmssign._internal.settingdocs``);
- ``json-report``: the ``--json`` document's fields, from ``report.schema.json``
  (tests/test_docs.py checks the schema against what the CLI prints).

Anything undocumented (an option without help, a setting without a meaning or of a kind
this page cannot name) raises :class:`Undocumented`, which fails ``mkdocs build`` and the
tests. ``python docs/_gen/reference.py DIR`` writes the generated Markdown into DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA = HERE.parent / "reference" / "report.schema.json"
MARKER = re.compile(r"^<!-- kmssign:([a-z-]+) -->$", flags=re.M)


class Undocumented(Exception):
    """Something the reference must describe has no description in the code."""


# -- the parser ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from kmssign.frontends.cli.main import build_parser

    return build_parser()


@contextlib.contextmanager
def _columns(width: int = 100) -> Iterator[None]:
    """argparse wraps usage at the terminal's width (COLUMNS): the same on every machine."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def subcommands(parser: argparse.ArgumentParser | None = None) -> dict[str, Any]:
    """Every ``kmssign`` subcommand's parser, by name, in the parser's order."""
    parser = parser or _parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise Undocumented("kmssign's parser has no subcommands")


def subcommand_help(parser: argparse.ArgumentParser | None = None) -> dict[str, str]:
    parser = parser or _parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's optional arguments, -h/--help left out."""
    return [a for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


# A flag whose name is not its setting's (the settings page lists it under the setting).
FLAG_SETTINGS = {"cert": "certificate", "timestamp_url": "timestamp-urls",
                 "no_timestamp": "timestamp"}


def setting_of(action: argparse.Action) -> str | None:
    """The settings key an option sets, if it sets one."""
    from kmssign import config

    key = FLAG_SETTINGS.get(action.dest, action.dest.replace("_", "-"))
    return key if key in config.KEYS else None


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices:
        return _code(" | ".join(map(str, action.choices)))
    metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    return _code(metavar)


def _default(action: argparse.Action) -> str:
    key = setting_of(action)
    if key is not None:
        return f"setting [`{key}`](settings.md#{key})"
    if action.required:
        return "required"
    default = action.default
    if default in (None, False, argparse.SUPPRESS):
        return ""
    return _code(str(default))


def _option_row(action: argparse.Action, command: str) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        raise Undocumented(f"kmssign {command} {'/'.join(action.option_strings)} has no help")
    names = ", ".join(f"`{o}`" for o in action.option_strings)
    meaning = action.help
    if isinstance(action, argparse._AppendAction):
        meaning += "" if "repeatable" in meaning else " (repeatable)"
    cells = [names, _value(action), _default(action), meaning]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def cli_markdown() -> str:
    """The command line reference: one section per subcommand."""
    with _columns():
        return _cli_markdown()


def _cli_markdown() -> str:
    parser = _parser()
    helps = subcommand_help(parser)
    out = ["```", parser.format_usage().replace("usage: ", "").strip(), "```", "",
           "| command | what it does |", "|---|---|"]
    commands = subcommands(parser)
    for name in commands:
        if not helps.get(name):
            raise Undocumented(f"kmssign {name} has no help line")
        out.append(f"| [`kmssign {name}`](#kmssign-{name}) | {_cell(helps[name])} |")
    for name, sub in commands.items():
        out += ["", f"## `kmssign {name}` {{ #kmssign-{name} }}", ""]
        description = sub.description if name != "pyinstaller" else None
        out += [description or helps[name][0].upper() + helps[name][1:] + ".", ""]
        out += ["```", sub.format_usage().replace("usage: ", "").strip(), "```", ""]
        positionals = [a for a in sub._actions if not a.option_strings]
        for action in positionals:
            what = action.help or {"paths": "files or directories (see above)"}.get(action.dest)
            if name == "pyinstaller":
                what = "passed to PyInstaller unchanged (a script with its options, or a .spec)"
            if not what:
                raise Undocumented(f"kmssign {name} {action.metavar} has no help")
            out.append(f"- `{action.metavar}`: {what}")
        if positionals:
            out.append("")
        rows = [_option_row(a, name) for a in options(sub)]
        if rows:
            out += ["| option | value | default | meaning |", "|---|---|---|---|", *rows]
        else:
            out.append("No options of its own.")
    return "\n".join(out) + "\n"


# -- the settings ----------------------------------------------------------------------


def _kind_text(kind: str) -> str:
    from kmssign import config

    choices = {"digest": config.DIGEST_CHOICES, "timestamp": config.TIMESTAMP_CHOICES}
    if kind in choices:
        return " | ".join(f"`{c}`" for c in choices[kind])
    texts = {
        "str": "string", "path": "path", "paths": "path or list of paths",
        "url": "http(s) URL", "urls": "list of http(s) URLs",
        "strs": "glob or list of globs", "bool": "boolean", "jobs": "integer ≥ 1",
        "seconds": "seconds > 0", "signer": "signer name",
    }
    if kind not in texts:
        raise Undocumented(f"settings kind {kind!r}: docs/_gen/reference.py cannot name it")
    return texts[kind]


def meanings() -> dict[str, str]:
    """What each setting means (kmssign._internal.settingdocs), by key."""
    from kmssign._internal.settingdocs import MEANINGS

    return dict(MEANINGS)


def _default_text(key: str) -> str:
    from kmssign import config

    value = getattr(config.Settings(), key.replace("-", "_"))
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`[]`" if not value else "<br>".join(f"`{v}`" for v in value)
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def setting_flags() -> dict[str, list[str]]:
    """The CLI options that set each settings key, over every subcommand."""
    from kmssign import config

    flags: dict[str, list[str]] = {key: [] for key in config.KEYS}
    for sub in subcommands().values():
        for action in options(sub):
            key = setting_of(action)
            if key is not None:
                for option in action.option_strings:
                    if option not in flags[key]:
                        flags[key].append(option)
    return flags


def settings_rows() -> Iterator[list[str]]:
    from kmssign import config

    docs = meanings()
    stale = sorted(set(docs) - set(config.KEYS))
    if stale:
        raise Undocumented(f"settingdocs.py describes settings that do not exist: {stale}")
    flags = setting_flags()
    for key in config.KEYS:
        field = key.replace("-", "_")
        meaning = docs.get(key)
        if not meaning:
            raise Undocumented(f"setting {key} has no meaning in kmssign/_internal/settingdocs.py")
        env = config.ENV_PREFIX + field.upper()
        yield [f'<span id="{key}"></span>`{key}`', _kind_text(config._KINDS[key]),
               _default_text(key), f"`{env}`", ", ".join(f"`{f}`" for f in flags[key]) or "—",
               meaning]


def settings_markdown() -> str:
    head = ["| key | type | default | environment | CLI flags | meaning |",
            "|---|---|---|---|---|---|"]
    return "\n".join(head + ["| " + " | ".join(_cell(c) if "<span" not in c else c
                                                for c in row) + " |"
                             for row in settings_rows()]) + "\n"


# -- the JSON report -------------------------------------------------------------------


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return loaded


def _type_text(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return " | ".join(f"`{json.dumps(v).strip(chr(34))}`" for v in spec["enum"])
    kinds = spec.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if "array" in kinds and "items" in spec:
        inner = spec["items"].get("type", "object")
        kinds = [f"array of {inner}s" if k == "array" else k for k in kinds]
    return " or ".join(kinds)


def _properties(spec: dict[str, Any], prefix: str) -> Iterator[str]:
    for name, field in spec["properties"].items():
        if "description" not in field:
            raise Undocumented(f"report.schema.json: {prefix}{name} has no description")
        yield (f"| `{prefix}{name}` | {_cell(_type_text(field))} | "
               f"{_cell(field['description'])} |")
        items = field.get("items", {})
        if items.get("type") == "object":
            yield from _properties(items, f"{prefix}{name}[].")


def json_report_markdown() -> str:
    rows = list(_properties(schema(), ""))
    return "\n".join(["| field | type | meaning |", "|---|---|---|", *rows]) + "\n"


GENERATORS = {"cli": cli_markdown, "settings": settings_markdown,
              "json-report": json_report_markdown}


def expand(markdown: str) -> str:
    """``markdown`` with every marker line replaced by what it names."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise Undocumented(f"unknown generated part {name!r}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)


# -- MkDocs ----------------------------------------------------------------------------


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return expand(markdown)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "generated")
    target.mkdir(parents=True, exist_ok=True)
    for name, generate in GENERATORS.items():
        (target / f"{name}.md").write_text(generate(), encoding="utf-8")
        print(f"wrote {target / name}.md")
