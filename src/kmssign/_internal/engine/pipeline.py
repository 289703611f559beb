"""The worker pool that signs (or verifies) a batch: one task per file, on ``jobs`` threads.

Each worker takes the next file and runs its stages in order on its own thread: the local
work (hashing, copying, DER), then the network work (KMS and timestamp round trips, then
the final write). At most ``jobs`` files are under way, so at most ``jobs`` requests are in
flight; the local work of at most about as many files as there are cores runs at once (a
semaphore), so a batch of large files does not hash sixteen of them side by side. A file
is handed to no other thread between its stages: a handover (a queue, a future, a thread
woken) cost a batch of small files more CPU than the file's own DER work.

When the batch ends early (Ctrl-C, SIGTERM, or an error escaping a stage), files not yet
started are never started, every temporary file is removed at once
(:func:`~kmssign._internal.engine.atomic.abort_all`), the files being worked on stay as they
were, and nothing more is reported.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from kmssign._internal.engine.atomic import abort_all
from kmssign._internal.engine.report import FileResult

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
        self._next = 0

    def run(self, count: int) -> list[FileResult]:
        """Process items ``0..count-1``; results come back in item order."""
        results: list[FileResult | None] = [None] * count
        self._stopped = False
        self._next = 0
        try:
            if self.jobs == 1 or count <= 1:
                for index in range(count):
                    self._deliver(results, index, self._both(index))
            else:
                self._run_workers(results, count)
        except BaseException:
            self._stopped = True
            abort_all()
            raise
        return [r for r in results if r is not None]

    def _run_workers(self, results: list[FileResult | None], count: int) -> None:
        local = threading.BoundedSemaphore(self.local_workers)
        failed: list[BaseException] = []
        finished = threading.Semaphore(0)  # released by each worker as it ends

        def work() -> None:
            try:
                while (index := self._take(count)) is not None:
                    with local:
                        prepared = self.prepare(index)
                    if not isinstance(prepared, FileResult):
                        prepared = self.complete(prepared)
                    self._deliver(results, index, prepared)
            except BaseException as exc:  # handed to the thread that runs the batch
                self._stopped = True  # the other workers start no new file
                failed.append(exc)
            finally:
                finished.release()

        workers = [
            threading.Thread(target=work, name=f"kmssign-worker-{n}")
            for n in range(min(self.jobs, count))
        ]
        for worker in workers:
            worker.start()
        # Not waiting for the files in progress once one failed (or on Ctrl-C here): their
        # temporary files are removed (by run), so they end without writing.
        for _ in workers:
            finished.acquire()
            if failed:
                raise failed[0]

    def _take(self, count: int) -> int | None:
        """The next file to start, or None once all have started (or the batch stopped)."""
        with self._lock:
            if self._stopped or self._next >= count:
                return None
            self._next += 1
            return self._next - 1

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
