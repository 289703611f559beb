"""Atomic file replacement: write a temporary file beside the target, then rename.

Readers see the old file or the new one, never a half-written one. The data is not
fsync'ed before the rename (neither signtool nor osslsigncode does; on a 512 MiB file
it would double the time): a crash right after signing can cost the fresh signature,
which the next build makes again. Replacing by rename also leaves a file's other hard
links as they were: a file that a package cache links into an environment (uv does so
by default on Linux) is not rewritten inside the cache.

The temporary file is ``.NAME.XXXXXXXX.kmssign-tmp`` beside the target (NAME cut to
64 characters); :func:`is_temporary` knows the pattern (and ``.NAME.XXXXXXXX.kmssign``
of earlier versions), and discovery never selects such a file. While it lives, the
temporary file is locked (:mod:`~kmssign._internal.engine.locking`) and registered here:
:func:`abort_all` removes every live one (the CLI on Ctrl-C and SIGTERM, the pipeline
when a batch ends early). One left by a killed process is unlocked, which proves it
stale: :func:`clear_leftover` removes it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from kmssign._internal.engine import locking
from kmssign.errors import FileAccessError

TEMP_SUFFIX = ".kmssign-tmp"
NAME_ROOM = 64  # characters of the target's name kept in its temporary file's name
# ".NAME.RANDOM.kmssign-tmp"; earlier versions wrote ".NAME.RANDOM.kmssign" (mkstemp's
# eight random characters)
_TEMPORARY = re.compile(r"\..+\.(?:[^.]+\.kmssign-tmp|[a-z0-9_]{8}\.kmssign)", re.DOTALL)


def is_temporary(name: str) -> bool:
    """Whether a file name is that of a kmssign temporary file."""
    return _TEMPORARY.fullmatch(name) is not None


class RunInterrupted(BaseException):
    """Raised in worker threads of a run that was interrupted (Ctrl-C, SIGTERM): the
    file they work on is left as it was, and their result is not reported."""


_live: set[AtomicFile] = set()
_registry = threading.Lock()
_stopped = False


def check_running() -> None:
    """Raise RunInterrupted once :func:`abort_all` ended the run."""
    if _stopped:
        raise RunInterrupted


def resume() -> None:
    """Allow temporary files again after :func:`abort_all` (a new run in this process)."""
    global _stopped
    with _registry:
        _stopped = False


def abort_all() -> int:
    """Remove every live temporary file and refuse new ones until :func:`resume`.

    Called from the thread that handles an interrupt while workers may still be writing
    those files: they find their file gone and their commit refused. Returns how many
    files were removed.
    """
    global _stopped
    with _registry:
        _stopped = True
        live = list(_live)
    removed = 0
    for atomic in live:
        removed += atomic.discard()
    return removed


_LEFTOVER = "a temporary file left by an interrupted kmssign run"


def clear_leftover(path: Path, *, remove: bool) -> str | None:
    """One note on a kmssign temporary file found on disk: removed when ``remove`` and no
    run holds its lock, which proves it stale; left alone when a running kmssign holds
    it. None when it is gone meanwhile (its run finished)."""
    if sys.platform == "win32":  # there a file open in another process cannot be deleted
        if not remove:
            return f"note: {path}: {_LEFTOVER}, unless a kmssign run is using it"
        try:
            path.unlink()
        except FileNotFoundError:
            return None
        except PermissionError:
            return f"note: {path}: temporary file of a kmssign run in progress; left alone"
        except OSError as exc:
            return f"note: cannot remove {path}, {_LEFTOVER}: {exc.strerror or exc}"
        return f"note: removed {path}, {_LEFTOVER}"
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"note: cannot check {path}, {_LEFTOVER}: {exc.strerror or exc}"
    try:
        locked = locking.try_lock(fd)
        if locked is False:
            return f"note: {path}: temporary file of a kmssign run in progress; left alone"
        if locked is None:
            return (f"note: {path}: {_LEFTOVER}, or of one still running (this filesystem "
                    "has no file locks to tell); left alone")
        if not locking.same_file(fd, path, follow=False):
            return None  # renamed into place by its run meanwhile
        if not remove:
            return f"note: {path}: {_LEFTOVER}; sign or timestamp removes it"
        try:
            os.unlink(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"note: cannot remove {path}, {_LEFTOVER}: {exc.strerror or exc}"
        return f"note: removed {path}, {_LEFTOVER}"
    finally:
        os.close(fd)


@atexit.register
def _remove_leftovers() -> None:  # worker threads have ended before atexit handlers run
    abort_all()


READ_ONLY = "read-only file; left unchanged (make it writable, e.g. chmod u+w, to sign it)"


def check_writable(target: Path) -> None:
    """Raise :class:`FileAccessError` when ``target`` cannot be replaced: it exists and is
    read-only (no write bit, as Windows' read-only attribute; even root leaves it alone,
    as signtool and osslsigncode refuse to write one), or its directory cannot be written.
    Asked before any KMS or timestamp call is spent on the file."""
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise FileAccessError(f"cannot check {target}: {exc.strerror or exc}") from exc
    if mode is not None and stat.S_ISREG(mode) and (
        not mode & 0o222 or not os.access(target, os.W_OK)
    ):
        raise FileAccessError(READ_ONLY)
    directory = target.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        raise FileAccessError(
            f"cannot write into {directory} (permission denied); left unchanged"
        )


class AtomicFile:
    """A temporary file in ``target``'s directory that either replaces ``target`` or vanishes.

    The new file takes the permission bits of ``mode_from`` (default: ``target`` when it
    exists) and, where allowed, the owner and group of the ``target`` it replaces. Until
    :meth:`commit`, ``target`` is untouched.
    """

    def __init__(self, target: Path, *, mode_from: Path | None = None) -> None:
        self.target = target
        self.mode_from = mode_from
        self._lock = threading.RLock()
        self._state = "open"  # then "committed" or "aborted"
        check_running()
        check_writable(target)
        fd, self.path = _locked_temporary(target)
        self.handle: BinaryIO = os.fdopen(fd, "w+b")
        with _registry:
            if not _stopped:
                _live.add(self)
                return
        self.abort()  # abort_all ran while the file was being made
        raise RunInterrupted

    def commit(self) -> None:
        with self._lock:
            try:
                if self._state != "open":
                    raise RunInterrupted
                self.handle.flush()
                _keep_owner(self.path, self.target)
                source = self.mode_from if self.mode_from is not None else self.target
                try:
                    mode = stat.S_IMODE(source.stat().st_mode)
                except FileNotFoundError:
                    mode = 0o666 & ~_umask()
                os.chmod(self.path, mode)  # after the chown, which may clear set-id bits
                if sys.platform == "win32":  # Windows renames no open file
                    self.handle.close()
                # Still open (and locked) here elsewhere: no other run can take the file
                # for a leftover between its last write and the rename.
                os.replace(self.path, self.target)
                self._state = "committed"
            except BaseException:
                self.abort()
                raise
            finally:
                self._forget()

    def abort(self) -> None:
        """Remove the temporary file; ``target`` stays as it was."""
        with self._lock:
            if self._state != "committed":
                self._state = "aborted"
                with contextlib.suppress(OSError):
                    self.handle.close()
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self._forget()

    def discard(self) -> int:
        """Abort from another thread than the one writing: remove the file, and make the
        writer's next write fail without closing its descriptor under it (a closed
        descriptor's number could be reused by a file opened meanwhile). 1 if removed."""
        with self._lock:
            if self._state != "open":
                return 0
            self._state = "aborted"
            if sys.platform == "win32":  # an open file cannot be deleted there
                with contextlib.suppress(OSError):
                    self.handle.close()
            else:
                with contextlib.suppress(OSError, ValueError):
                    _disable(self.handle.fileno())
            try:
                self.path.unlink()
            except OSError:
                return 0
            finally:
                self._forget()
            return 1

    def _forget(self) -> None:
        if self._state != "open":
            with _registry:
                _live.discard(self)
            if self._state == "committed":
                with contextlib.suppress(OSError):
                    self.handle.close()  # lets go of the lock


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


def _locked_temporary(target: Path) -> tuple[int, Path]:
    """Create ``target``'s temporary file and lock it (see :mod:`locking`)."""
    while True:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name[:NAME_ROOM]}.", suffix=TEMP_SUFFIX, dir=target.parent
        )
        # Another run may have found the file unlocked in the instant before this lock
        # and removed it as a leftover: then make another.
        if not locking.wait_lock(fd) or locking.same_file(fd, name, follow=False):
            return fd, Path(name)
        os.close(fd)


def _disable(fd: int) -> None:
    """Point ``fd`` at /dev/null, read-only: every later write through it fails."""
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


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
