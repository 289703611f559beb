"""Atomic file replacement: write a temporary file beside the target, then rename.

Readers see the old file or the new one, never a half-written one. The data is not
fsync'ed before the rename (neither signtool nor osslsigncode does; on a 512 MiB file
it would double the time): a crash right after signing can cost the fresh signature,
which the next build makes again. Replacing by rename also leaves a file's other hard
links as they were: a file that a package cache links into an environment (uv does so
by default on Linux) is not rewritten inside the cache.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


class AtomicFile:
    """A temporary file in ``target``'s directory that either replaces ``target`` or vanishes.

    The new file takes the permission bits of ``mode_from`` (default: ``target`` when it
    exists) and, where allowed, the owner and group of the ``target`` it replaces. Until
    :meth:`commit`, ``target`` is untouched.
    """

    def __init__(self, target: Path, *, mode_from: Path | None = None) -> None:
        self.target = target
        self.mode_from = mode_from
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".kmssign", dir=target.parent
        )
        self.path = Path(name)
        self.handle: BinaryIO = os.fdopen(fd, "w+b")

    def commit(self) -> None:
        try:
            self.handle.close()
            _keep_owner(self.path, self.target)
            source = self.mode_from if self.mode_from is not None else self.target
            try:
                mode = stat.S_IMODE(source.stat().st_mode)
            except FileNotFoundError:
                mode = 0o666 & ~_umask()
            os.chmod(self.path, mode)  # after the chown, which may clear set-id bits
            os.replace(self.path, self.target)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@contextlib.contextmanager
def atomic_output(target: Path, *, mode_from: Path | None = None) -> Iterator[BinaryIO]:
    """Yield a temporary file in ``target``'s directory; on success it replaces ``target``.

    On any exception the temporary file is removed and ``target`` is untouched.
    """
    atomic = AtomicFile(target, mode_from=mode_from)
    try:
        yield atomic.handle
    except BaseException:
        atomic.abort()
        raise
    atomic.commit()


def _keep_owner(new: Path, target: Path) -> None:
    """Give the replacement ``target``'s owner and group where this process may (root
    signing a user's files in a container, say), as editing the file in place would.
    Elsewhere the new file stays the caller's, as any file it writes."""
    chown = getattr(os, "chown", None)
    if chown is None:  # Windows
        return
    try:
        old = target.stat()
    except FileNotFoundError:
        return
    current = new.stat()
    if (current.st_uid, current.st_gid) == (old.st_uid, old.st_gid):
        return
    try:
        chown(new, old.st_uid, old.st_gid)
    except PermissionError:  # not root: a group this user is in can still be kept
        if current.st_gid != old.st_gid:
            with contextlib.suppress(PermissionError):
                chown(new, -1, old.st_gid)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
