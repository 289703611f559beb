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


class CircuitBreaker:
    """Closed until :meth:`trip`; then open for good, remembering the first reason.

    Thread-safe: the pipeline's network threads share one.
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
