"""call_within: a call on a runner thread, bounded by a deadline; runners are reused
once their call returned, never while a call outlives its deadline."""

from __future__ import annotations

import threading

import pytest

from kmssign._internal.net import deadline
from kmssign._internal.net.deadline import Deadline, DeadlinePassed, call_within
from tests.support.clock import ManualClock


def test_runners_serve_one_call_after_another(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[threading.Thread] = []

    class Counted(threading.Thread):
        def start(self) -> None:
            started.append(self)
            super().start()

    monkeypatch.setattr(deadline.threading, "Thread", Counted)
    call_within(Deadline(5), threading.get_ident, name="t")
    started.clear()
    idents = {call_within(Deadline(5), threading.get_ident, name="t") for _ in range(20)}
    assert threading.get_ident() not in idents
    assert started == []  # no thread started per call


def test_results_and_exceptions_come_back_to_the_caller() -> None:
    assert call_within(Deadline(5), lambda: 42, name="t") == 42

    def fail() -> None:
        raise ValueError("from the runner")

    with pytest.raises(ValueError, match="from the runner"):
        call_within(Deadline(5), fail, name="t")
    assert call_within(Deadline(5), lambda: "still serving", name="t") == "still serving"


def test_a_call_past_its_deadline_keeps_its_runner_until_it_ends() -> None:
    clock = ManualClock()
    release = threading.Event()
    stuck: list[int] = []

    def hang() -> None:
        stuck.append(threading.get_ident())
        clock.advance(1)  # past the deadline, still in the call
        release.wait()

    with pytest.raises(DeadlinePassed):
        call_within(Deadline(0.2, clock=clock), hang, name="t")
    meanwhile = call_within(Deadline(5), threading.get_ident, name="t")
    assert meanwhile != stuck[0]  # not handed to the runner still in the call
    release.set()
    # once it ended, that runner serves again (alongside the other one)
    seen = set()
    for _ in range(100_000):
        seen.add(call_within(Deadline(5), threading.get_ident, name="t"))
        if stuck[0] in seen:
            break
    assert stuck[0] in seen
