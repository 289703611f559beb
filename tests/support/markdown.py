"""Reading Markdown pages in tests: a section under a heading, the fenced code blocks."""

from __future__ import annotations

import re

import pytest


def section(text: str, heading: str) -> str:
    """The body under ``heading`` (a whole heading line) up to the next heading of its level."""
    level = heading.split(" ", 1)[0]
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        pytest.fail(f"no heading {heading!r} in the page")
    body = []
    for line in lines[start + 1 :]:
        hashes = line.split(" ", 1)[0]
        if set(hashes) == {"#"} and len(hashes) <= len(level):
            break
        body.append(line)
    return "\n".join(body)


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
