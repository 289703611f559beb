"""Advisory file locks: one run per file at a time, and telling a live run's temporary
file from one a killed run left behind.

The locks are ``flock`` locks (whole file, exclusive, tied to the open file and dropped
by the kernel when the process ends, however it ends). Every kmssign run takes them, so
runs wait for each other; other programs are not held back. Where there are none
(Windows; a network filesystem without lock support) nothing is locked: the functions
below say so and the callers go on as kmssign did before it locked. Windows refuses to
delete or replace a file another process holds open, which keeps a live run's
temporary file from being taken for a leftover there.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

Log = Callable[[str], None]

POLL_SECONDS = 0.1  # how often a run waiting for another one's file looks again
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def _nolog(_message: str) -> None:
    pass


if sys.platform == "win32":

    def try_lock(fd: int) -> bool | None:
        """Always None: kmssign does not lock files on Windows."""
        return None

    def wait_lock(fd: int) -> bool:
        return False

else:
    import errno
    import fcntl

    def try_lock(fd: int) -> bool | None:
        """Lock ``fd``'s file exclusively if nobody holds it: True when locked, False when
        another open file holds the lock, None when the filesystem has no such locks."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            return None  # ENOLCK, EOPNOTSUPP, EINVAL: this filesystem does not lock
        return True

    def wait_lock(fd: int) -> bool:
        """Lock ``fd``'s file exclusively, waiting for it; False when it cannot be locked."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            return False
        return True


def same_file(fd: int, path: Path | str, *, follow: bool = True) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (it may have been replaced)."""
    try:
        now = os.stat(path, follow_symlinks=follow)
    except OSError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


class TargetLock:
    """The lock a run holds on a file it is about to replace, from before it reads the
    file until the new one is in its place (see :func:`lock_target`)."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def lock_target(path: Path, *, check: Callable[[], None], log: Log = _nolog) -> TargetLock:
    """Wait until no other kmssign run works on ``path``, then hold it until released.

    Another run holding the file is waited for (one note is logged); when it let go
    because it replaced the file, the new file is locked instead, so this run reads what
    the other one wrote. ``check()`` is called while waiting and raises to stop waiting
    (a run being interrupted). OSError when ``path`` cannot be opened.
    """
    if sys.platform == "win32":
        return TargetLock(None)
    waited = False
    while True:
        fd = os.open(path, _OPEN_FLAGS)
        try:
            while (locked := try_lock(fd)) is False:
                if not waited:
                    log(f"note: {path}: another kmssign run is working on this file; waiting")
                    waited = True
                check()
                time.sleep(POLL_SECONDS)
            if locked is None:  # no locks on this filesystem
                os.close(fd)
                return TargetLock(None)
            if same_file(fd, path):
                return TargetLock(fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the other run replaced the file meanwhile: lock the new one
