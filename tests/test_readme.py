"""README.md stays short and true: the two commands first, one example per front end that
matches the code, and links that lead somewhere. The reference it links to is generated
and checked in tests/test_docs.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tomllib

from kmssign import config
from tests.support.docs import README, ROOT, fenced, page, reference
from tests.support.markdown import code_blocks, section

QUICK_START = ["python3 -m pip install nox && nox -s demo", "nox -s tests"]
MAX_LINES = 250


def test_readme_is_short() -> None:
    assert len(README.splitlines()) < MAX_LINES


def test_quick_start_is_exactly_the_two_commands() -> None:
    blocks = code_blocks(section(README, "## Quick start"))
    assert blocks, "Quick start has no code block"
    lines = [line.strip() for line in blocks[0].splitlines() if line.strip()]
    assert lines == QUICK_START
    # first: no other code block comes before it
    assert README.index("```") == README.index("## Quick start\n\n```") + len("## Quick start\n\n")


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [
        line.strip() for line in script.splitlines() if line.strip() and not line.startswith("#")
    ]
    assert any(re.search(r"(^|\s)nox -s tests$", c) for c in commands), commands


def sessions_of(noxfile: Path) -> set[str]:
    tree = ast.parse(noxfile.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any("session" in ast.unparse(d) for d in node.decorator_list)
    }


def test_every_nox_session_named_in_the_readme_and_the_docs_exists() -> None:
    sessions = sessions_of(ROOT / "noxfile.py")
    # the release check a user adds to their own noxfile, as sample_app has it
    user_sessions = sessions_of(ROOT / "sample_app" / "noxfile.py")
    assert user_sessions == {"verify_signatures"}
    named_in_readme = set(re.findall(r"nox -s (\w+)", README))
    assert {"tests", "demo", "sample", "lint", "bench", "docs"} <= named_in_readme <= sessions
    named = set(re.findall(r"nox -s (\w+)", "\n".join(reference_pages())))
    assert named <= sessions | user_sessions, named - sessions - user_sessions


def reference_pages() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in (ROOT / "docs").rglob("*.md")]


def test_readme_links_lead_to_files() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if "://" not in link]
    assert "docs/tutorial.md" in local and "docs/reference/cli.md" in local
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing


def test_readme_commands_exist() -> None:
    """Every `kmssign WORD` in the README's code and inline code is a subcommand."""
    commands = set(reference().subcommands())
    code = "\n".join(code_blocks(README))
    named = set(re.findall(r"^(?:pip install .*\n)?kmssign ([a-z]+)", code, flags=re.M))
    named |= set(re.findall(r"`kmssign ([a-z]+)", README))
    assert not named - commands, named - commands
    assert {"sign", "wheel", "verify", "csr", "pyinstaller", "sandbox"} <= named


def test_readme_options_exist() -> None:
    """Every --option in the README's code blocks is an option of some subcommand."""
    ref = reference()
    known = {o for sub in ref.subcommands().values() for a in ref.options(sub)
             for o in a.option_strings}
    text = "\n".join(code_blocks(README))
    used = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text))
    used -= {"--strict"}  # mypy's, in the list of nox sessions
    assert used and used <= known, used - known


def test_one_example_per_front_end() -> None:
    text = section(README, "## One example per front end")
    for front_end in ("**Hatch**", "**setuptools**", "**Wheels from any backend**",
                      "**PyInstaller**", "**Command line**", "**Library**"):
        assert front_end in text
    tomls = [tomllib.loads(block) for block in fenced(text, "toml")]
    settings = tomls[0]["tool"]["kmssign"]
    assert set(settings) <= set(config.KEYS)
    hatch, setuptools, cibuildwheel = tomls[1:4]
    assert "kmssign" in hatch["build-system"]["requires"]
    assert "kmssign" in hatch["tool"]["hatch"]["build"]["hooks"]
    assert "setuptools" in setuptools["tool"]["kmssign"]
    command = cibuildwheel["tool"]["cibuildwheel"]["windows"]["repair-wheel-command"]
    assert command in page("how-to/wheels.md")  # the recipe tests/test_recipes.py runs


def test_readme_spec_example_is_the_pyinstaller_pages() -> None:
    """The README's .spec lines are the how-to's (whose helpers tests/test_pyinstaller.py
    runs), line for line."""
    (spec,) = [b for b in fenced(README, "python") if "sign_bundled" in b]
    how_to = "\n".join(fenced(page("how-to/pyinstaller.md"), "python"))
    for line in spec.splitlines():
        if line.strip() and not line.startswith("a = Analysis"):
            assert line.split("#")[0].strip() in how_to, line
