"""Atomic file replacement: write a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_output(target: Path, *, mode_from: Path | None = None) -> Iterator[BinaryIO]:
    """Yield a temporary file in ``target``'s directory; on success it replaces ``target``.

    The new file takes the permission bits of ``mode_from`` (default: ``target`` when it
    exists). On any exception the temporary file is removed and ``target`` is untouched.
    """
    directory = target.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".kmssign", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        source = mode_from if mode_from is not None else target
        try:
            mode = stat.S_IMODE(source.stat().st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
