"""The worker pool of a batch: every file once, results in order, the limits on local and
network work, and an error that escapes a stage ending the batch."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from kmssign._internal.engine.pipeline import Pipeline, run_simple
from kmssign._internal.engine.report import FileResult


class Gauge:
    """How many callers are inside at once, at most."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self.now -= 1


def test_each_file_once_in_order_within_the_limits() -> None:
    local, network = Gauge(), Gauge()
    prepared: list[int] = []
    lock = threading.Lock()

    def prepare(index: int) -> int | FileResult:
        with local:
            time.sleep(0.002)  # long enough for the workers to overlap
            with lock:
                prepared.append(index)
        if index % 7 == 0:  # nothing to sign: a result without the network stage
            return FileResult(Path(f"f{index}"), "skipped")
        return index

    def complete(index: int) -> FileResult:
        with network:
            time.sleep(0.005)
        return FileResult(Path(f"f{index}"), "signed")

    seen: list[FileResult] = []
    results = Pipeline(prepare, complete, jobs=6, local_workers=2, on_result=seen.append).run(40)

    assert [r.path for r in results] == [Path(f"f{i}") for i in range(40)]
    assert [r.status for r in results] == ["skipped" if i % 7 == 0 else "signed" for i in range(40)]
    assert sorted(prepared) == list(range(40))
    assert sorted(seen, key=lambda r: int(str(r.path)[1:])) == results
    assert local.most <= 2
    assert 1 < network.most <= 6


def test_an_error_escaping_a_stage_ends_the_batch() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def prepare(index: int) -> int:
        with lock:
            started.append(index)
        return index

    def complete(index: int) -> FileResult:
        if index == 3:
            raise RuntimeError("a bug in a stage")
        time.sleep(0.01)
        return FileResult(Path(f"f{index}"), "signed")

    pipeline = Pipeline(prepare, complete, jobs=4, local_workers=2)
    with pytest.raises(RuntimeError, match="a bug in a stage"):
        pipeline.run(500)
    assert len(started) < 500  # files not yet started when it failed never start


def test_run_simple_keeps_the_order() -> None:
    items = list(range(25))
    results = run_simple(items, lambda i: FileResult(Path(f"v{i}"), "verified"), jobs=5)
    assert [r.path for r in results] == [Path(f"v{i}") for i in items]
