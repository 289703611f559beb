"""A total deadline for one network exchange: connect, send, every read and every retry.

A socket timeout bounds each read on its own, so a server that trickles a byte now and
then never trips it, and a client that retries multiplies it. A :class:`Deadline` is one
moment on the monotonic clock: callers ask it what is left before each blocking step and
make that the step's timeout, or run a whole call within it (:func:`call_within`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

_current = threading.local()  # the deadline of the call_within() running on this thread


class DeadlinePassed(TimeoutError):
    """The deadline of a network exchange passed before it was done."""


class Clock(Protocol):
    """Where a deadline reads the time and waits: the system's monotonic clock, or one a
    test moves by hand."""

    def monotonic(self) -> float: ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """``event.wait(timeout)`` on this clock: True once set, False once timed out."""

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The monotonic clock, and real waiting."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(timeout)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
CLOCK: Clock = SYSTEM_CLOCK  # what deadlines and retry pauses use unless given one


def clock() -> Clock:
    """The clock in use (tests replace :data:`CLOCK` with one they move)."""
    return CLOCK


class Deadline:
    """``seconds`` from now; what is left of it shrinks with every blocking step."""

    def __init__(self, seconds: float, *, clock: Clock | None = None) -> None:
        self.seconds = seconds
        self.clock = clock or CLOCK
        self._end = self.clock.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left (zero or less once it has passed)."""
        return self._end - self.clock.monotonic()

    @property
    def passed(self) -> bool:
        return self.remaining() <= 0

    def left(self) -> float:
        """Seconds left, for the next step's timeout; :class:`DeadlinePassed` once none are."""
        left = self.remaining()
        if left <= 0:
            raise DeadlinePassed(f"deadline of {self.seconds:g} s passed")
        return left


Job = Callable[[], None]
# Inboxes of the runner threads waiting for a call. A runner serves one call at a time
# and comes back here when it has returned; one whose call outlives its deadline comes
# back only once that call ends by itself.
_idle: queue.SimpleQueue[queue.SimpleQueue[Job]] = queue.SimpleQueue()


IDLE = "kmssign-idle"  # an idle runner's thread name; a busy one carries its call's name


def _serve(inbox: queue.SimpleQueue[Job]) -> None:
    while True:
        inbox.get()()
        _idle.put(inbox)


def _hand_off(job: Job, name: str) -> None:
    """Run ``job`` on an idle runner thread, or on a new one when none is idle.

    Starting a thread for every call cost more CPU than the call's own work in a batch
    (and waits for the scheduler to run the new thread); runners are kept instead, as
    many as calls were ever in flight at once.
    """
    try:
        inbox = _idle.get_nowait()
    except queue.Empty:
        inbox = queue.SimpleQueue()
        threading.Thread(target=_serve, args=(inbox,), name=name, daemon=True).start()
    inbox.put(job)


def call_within(deadline: Deadline, call: Callable[[], T], *, name: str) -> T:
    """``call()``'s result (or exception), or :class:`DeadlinePassed` once ``deadline``
    passes, whatever ``call`` is blocked on.

    The call runs on a daemon runner thread, not the caller's. One still running at the
    deadline is left to end by itself, so it must be bounded too (socket timeouts, and
    :func:`stop_if_passed` before each retry); as a daemon thread it never holds up the
    process's exit.
    """
    results: list[T] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        threading.current_thread().name = name
        _current.deadline = deadline
        try:
            results.append(call())
        except BaseException as exc:  # handed to the caller
            errors.append(exc)
        finally:
            threading.current_thread().name = IDLE
            done.set()

    _hand_off(run, name)
    if not deadline.clock.wait(done, max(0.0, deadline.remaining())):
        raise DeadlinePassed(f"deadline of {deadline.seconds:g} s passed")
    if errors:
        raise errors[0]
    return results[0]


def stop_if_passed(**_: Any) -> None:
    """Raise :class:`DeadlinePassed` if the deadline of the :func:`call_within` running
    on this thread has passed: a hook for a client library's "before each attempt"
    event, so that nothing is retried after the deadline."""
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None and deadline.passed:
        raise DeadlinePassed(f"deadline of {deadline.seconds:g} s passed")
