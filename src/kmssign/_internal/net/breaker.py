"""A circuit breaker: once a service has failed for good in a run, stop asking it.

Without it, a batch whose timestamp servers are all down (or whose KMS endpoint is
unreachable) retries every server for every file, and spends minutes per file finding
out what the first file already showed. The client that owns a breaker trips it when a
call has failed for good (every server, every retry, or the deadline); after that the
client fails at once with the first failure as the reason. It never closes again: a
client, and its breaker, lives for one run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class CircuitBreaker:
    """Closed until :meth:`trip`; then open for good, remembering the first reason.

    Thread-safe: the pipeline's workers share one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: str | None = None

    @property
    def reason(self) -> str | None:
        """Why it is open (the first failure), or ``None`` while it is closed."""
        return self._reason

    def trip(self, reason: str) -> bool:
        """Open it; ``True`` for the call that opened it, ``False`` if it already was."""
        with self._lock:
            if self._reason is not None:
                return False
            self._reason = reason
            return True


class FirstSuccess:
    """Until a service has answered once in a run, one caller at a time may spend on it.

    A batch signs files concurrently; without this, every file under way spends its KMS
    ``Sign`` before the first one learns that every timestamp server is down. The first
    caller goes ahead (the probe); the others wait until it is done: its success lets
    them all through for the rest of the run, its failure (which trips the breaker) lets
    them find the breaker open, and a failure before the service was asked lets the next
    one probe. Checks are called while waiting (one raises to give up: the breaker is
    open, the run was interrupted).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._succeeded = False
        self._probing = False

    def enter(self, *checks: Callable[[], None]) -> bool:
        """Wait for the right to go ahead; ``True`` for the probe, which must :meth:`leave`."""
        with self._cond:
            while not self._succeeded:
                for check in checks:
                    check()
                if not self._probing:
                    self._probing = True
                    return True
                self._cond.wait(0.2)
            return False

    def leave(self, probe: bool, succeeded: bool) -> None:
        if not probe:
            return
        with self._cond:
            self._probing = False
            self._succeeded = self._succeeded or succeeded
            self._cond.notify_all()
