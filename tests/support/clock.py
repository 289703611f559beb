"""A clock the test moves: deadlines read it, and waiting on it ends when the awaited
event is set or when the test (or the code under test) has moved the clock past the
timeout. No test waits for real time to pass."""

from __future__ import annotations

import threading

import pytest

from kmssign._internal.net import deadline


class ManualClock:
    """Monotonic time that only moves when :meth:`advance` is called."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._changed = threading.Condition()

    def monotonic(self) -> float:
        with self._changed:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._changed:
            self._now += seconds
            self._changed.notify_all()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """True once ``event`` is set; False once the clock has moved ``timeout`` on.

        Both are checked whenever the clock moves, and otherwise every millisecond for
        the event (a set Event notifies no one)."""
        with self._changed:
            end = self._now + timeout
            while not event.is_set():
                if self._now >= end:
                    return False
                self._changed.wait(0.001)
            return True

    def sleep(self, seconds: float) -> None:
        """A pause (a retry's backoff) takes no real time: the clock moves on."""
        self.advance(seconds)


def install(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """A ManualClock as the clock every deadline and retry pause of kmssign uses, for one
    test; the test's fake servers move it instead of sleeping."""
    clock = ManualClock()
    monkeypatch.setattr(deadline, "CLOCK", clock)
    return clock
