"""Ctrl-C, SIGTERM and SIGHUP: one way out for all three, through the same cleanup
(every temporary file removed, one line said), and exit 128 + the signal's number."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP), taking the way out Ctrl-C takes."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


_TERMINATING = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` in the main thread while the command
    runs, as SIGINT raises KeyboardInterrupt, so both end through the same cleanup."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (main() called from a thread)
        return
    previous = {signum: signal.signal(signum, _terminate) for signum in _TERMINATING}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ignore SIGINT, SIGTERM and SIGHUP while cleaning up after one of them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = [signal.SIGINT, *_TERMINATING]
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupted(exc: KeyboardInterrupt) -> int:
    """Remove every temporary file still there, say so in one line; exit 128 + signal."""
    signum = exc.signum if isinstance(exc, Terminated) else int(signal.SIGINT)
    with _signals_held():
        # A run interrupted while still importing has made no temporary file yet.
        api = sys.modules.get("kmssign.api")  # what made the temporary files
        abort_all = getattr(api, "abort_all", None)
        if abort_all is not None:
            abort_all()
        name = signal.Signals(signum).name
        print(f"kmssign: interrupted ({name}); files not finished are left as they were",
              file=sys.stderr)
    return 128 + signum
