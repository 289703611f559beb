"""Catch kmssign re-encoding what asn1crypto parsed (the cause of minutes-long runs).

asn1crypto re-encodes a loaded value on ``dump()`` when the last byte of its header is
0x80 (it takes any such header for an indefinite length), and rebuilds the contents of a
loaded value something was assigned to. kmssign's rule is stronger than "avoid those
lengths": it never dumps a value asn1crypto parsed at all, so whether a length happens
to end in 0x80 cannot matter. :func:`parsed_dumps` records every such call made from
kmssign's own code (the loopback TSA's use of asn1crypto in this process is not counted).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import core

import kmssign

SOURCE = str(Path(kmssign.__file__).parent)
# every asn1crypto class with its own dump(), and those that rebuild contents
DUMPING = (core.Asn1Value, core.Void, core.Any, core.Choice, core.Primitive,
           core.ParsableOctetString, core.Sequence, core.SequenceOf)
REBUILDING = (core.Sequence, core.SequenceOf, core.Set, core.SetOf)


def _kmssign_frame(*, direct: bool) -> str | None:
    """``file:line`` of the kmssign frame that called into asn1crypto: the direct caller
    of the wrapped method only (``direct``), or the innermost one anywhere on the stack."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(SOURCE):
            return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
        if direct:
            return None
        frame = frame.f_back
    return None


def _rebuilds(value: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether asn1crypto is about to re-encode the parsed ``value``."""
    if name == "_set_contents":
        return True
    force = kwargs.get("force", args[0] if args else False)
    return bool(force) or value._header[-1:] == b"\x80"


@contextmanager
def parsed_dumps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record ``Class.method at file:line`` for every dump() kmssign calls on a value
    asn1crypto parsed (it has the header it was read with), and every re-encoding of a
    parsed value below a kmssign call (a forced dump, a header ending in 0x80, contents
    rebuilt). Nested calls inside one dump count once."""
    found: list[str] = []
    depth = threading.local()

    def wrap(cls: type, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
            outer = getattr(depth, "n", 0) == 0
            if outer and getattr(self, "_header", None) is not None:
                # kmssign dumping a parsed value itself, or asn1crypto re-encoding one
                # anywhere below a kmssign call
                where = _kmssign_frame(direct=True) or (
                    _kmssign_frame(direct=False) if _rebuilds(self, name, args, kwargs) else None
                )
                if where is not None:
                    found.append(f"{type(self).__name__}.{name} at {where}")
            depth.n = getattr(depth, "n", 0) + 1
            try:
                return original(self, *args, **kwargs)
            finally:
                depth.n -= 1

        return counting

    for cls in DUMPING:
        if "dump" in vars(cls):
            monkeypatch.setattr(cls, "dump", wrap(cls, "dump", vars(cls)["dump"]))
    for cls in REBUILDING:
        if "_set_contents" in vars(cls):
            original = vars(cls)["_set_contents"]
            monkeypatch.setattr(cls, "_set_contents", wrap(cls, "_set_contents", original))
    yield found
