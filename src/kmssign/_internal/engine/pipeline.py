"""A two-stage worker pipeline: local work on a few threads, network work on many.

Stage one (hashing, copying, DER) runs on about as many threads as there are cores;
stage two (KMS and timestamp round trips, then the final write) on ``jobs`` threads,
so network slots are never held by hashing and at most ``jobs`` requests are in flight.
A window bounds how many files are between the stages (open temporary files, memory).

When the batch ends early (Ctrl-C, SIGTERM, or an error escaping a stage), files not yet
started are never started, every temporary file is removed at once
(:func:`~kmssign._internal.engine.atomic.abort_all`), the files being worked on stay as they
were, and nothing more is reported.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from kmssign._internal.engine.atomic import abort_all
from kmssign._internal.engine.report import FileResult

if TYPE_CHECKING:
    from concurrent.futures import Future

P = TypeVar("P")  # what stage one hands to stage two


def local_threads() -> int:
    """Threads for local work (hashing, copying, reading wheels): the cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


class Pipeline(Generic[P]):
    def __init__(
        self,
        prepare: Callable[[int], P | FileResult],
        complete: Callable[[P], FileResult],
        *,
        jobs: int,
        on_result: Callable[[FileResult], None] | None = None,
        local_workers: int | None = None,
    ) -> None:
        self.prepare = prepare
        self.complete = complete
        self.jobs = max(1, jobs)
        self.local_workers = local_workers or local_threads()
        self.on_result = on_result
        self._lock = threading.Lock()
        self._stopped = False

    def run(self, count: int) -> list[FileResult]:
        """Process items ``0..count-1``; results come back in item order."""
        results: list[FileResult | None] = [None] * count
        self._stopped = False
        try:
            if self.jobs == 1 or count <= 1:
                for index in range(count):
                    self._deliver(results, index, self._both(index))
            else:
                self._run_staged(results, count)
        except BaseException:
            self._stopped = True
            abort_all()
            raise
        return [r for r in results if r is not None]

    def _run_staged(self, results: list[FileResult | None], count: int) -> None:
        # imported here: one file runs inline, and concurrent.futures loads logging
        from concurrent.futures import ThreadPoolExecutor

        window = threading.BoundedSemaphore(self.jobs + self.local_workers)
        pending: list[Future[None]] = []
        local = ThreadPoolExecutor(self.local_workers, thread_name_prefix="kmssign-local")
        net = ThreadPoolExecutor(self.jobs, thread_name_prefix="kmssign-net")

        def stage_one(index: int) -> None:
            try:
                prepared = self.prepare(index)
                if isinstance(prepared, FileResult):
                    self._deliver(results, index, prepared)
                    window.release()
                    return
                pending.append(net.submit(stage_two, index, prepared))
            except BaseException:
                window.release()
                raise

        def stage_two(index: int, prepared: P) -> None:
            try:
                self._deliver(results, index, self.complete(prepared))
            finally:
                window.release()

        try:
            for index in range(count):
                window.acquire()
                pending.append(local.submit(stage_one, index))
            # Every stage-one future is in `pending` before the loop below starts; the
            # stage-two futures they add are appended while we wait.
            position = 0
            while position < len(pending):
                pending[position].result()
                position += 1
        except BaseException:
            # Not waiting for the files in progress: their temporary files are removed
            # (by run), so they end without writing; queued files never start.
            for executor in (local, net):
                executor.shutdown(wait=False, cancel_futures=True)
            raise
        local.shutdown()
        net.shutdown()

    def _both(self, index: int) -> FileResult:
        prepared = self.prepare(index)
        if isinstance(prepared, FileResult):
            return prepared
        return self.complete(prepared)

    def _deliver(self, results: list[FileResult | None], index: int, result: FileResult) -> None:
        with self._lock:
            if self._stopped:  # a file that ended after the batch was given up
                return
            results[index] = result
            if self.on_result is not None:
                self.on_result(result)


def run_simple(
    items: Sequence[P],
    work: Callable[[P], FileResult],
    *,
    jobs: int,
    on_result: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """One stage only (verification, planning): ``work`` on ``jobs`` threads, in order."""
    pipeline: Pipeline[P] = Pipeline(
        lambda i: items[i], work, jobs=jobs, on_result=on_result, local_workers=1
    )
    return pipeline.run(len(items))
