"""Hashing and checksumming a stream of chunks: inline for small files, on two worker
threads for large ones (hashlib and numpy drop the GIL on large buffers)."""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO

from kmssign._internal.pe.checksum import Checksum, holds_gil
from kmssign._internal.pe.image import CHUNK
from kmssign._internal.pe.reading import Data, chunks, read_into

if TYPE_CHECKING:
    import queue

THREAD_MIN = 4 * CHUNK  # below this, hashing in worker threads does not pay
_QUEUE_DEPTH = 8  # chunks in flight to each worker thread (bounded memory)
_MAPPED_DEPTH = 1  # mapped windows queued for each worker thread


# While the pure-Python checksum runs on one worker thread, it holds the GIL almost all the
# time. hashlib drops the GIL while it hashes a window, but each time the hashing thread
# wants it back it waits for the running thread's time slice to end: 5 ms by default,
# longer than hashing the window took. With slices of 0.2 ms the hashing thread no longer
# waits behind the checksum. The interval is the process's: the first pass that needs it
# shortens it, the last one puts the old value back.
_SHORT_SLICE = 0.0002
_slices_lock = threading.Lock()
_slices_users = 0
_slices_saved = 0.0


def _short_slices(enter: bool) -> None:
    global _slices_users, _slices_saved
    with _slices_lock:
        if enter:
            _slices_users += 1
            if _slices_users == 1:
                _slices_saved = sys.getswitchinterval()
                sys.setswitchinterval(min(_slices_saved, _SHORT_SLICE))
        else:
            _slices_users -= 1
            if _slices_users == 0:
                sys.setswitchinterval(_slices_saved)


class _Lease:
    """A pooled buffer that returns to its pool once every holder is done with it."""

    __slots__ = ("_buffer", "_holders", "_lock", "_pool")

    def __init__(self, pool: queue.SimpleQueue[bytearray], buffer: bytearray, holders: int):
        self._pool, self._buffer, self._holders = pool, buffer, holders
        self._lock = threading.Lock()

    def done(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders:
                return
        self._pool.put(self._buffer)



class Summer:
    """Hashes the Authenticode pieces and (unless ``checksum`` is False) checksums the
    written bytes of each chunk.

    With ``threaded``, one worker thread hashes and another checksums (hashlib and numpy
    drop the GIL on large buffers) while the calling thread only reads and writes, so the
    pass costs about the largest of the three instead of their sum. Bounded queues
    bound the memory.
    """

    def __init__(
        self,
        h: hashlib._Hash | None,
        threaded: bool,
        *,
        mapped: bool = False,
        checksum: bool = True,
    ) -> None:
        self.h = h
        self.checksum = Checksum()
        self._summing = checksum
        self._queues: list[queue.Queue[_Item | None]] = []
        self._threads: list[threading.Thread] = []
        self._short_slices = threaded and checksum and holds_gil()
        if self._short_slices:
            _short_slices(True)
        if threaded:
            import queue  # worker threads only: a small file is hashed inline

            self._pool: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
            depth = _QUEUE_DEPTH
            if mapped:  # the pieces are mapped windows (reading.mapped_windows): no buffers
                depth = _MAPPED_DEPTH
            else:
                # enough buffers for both full queues, one in each worker and one being read
                for _ in range(_QUEUE_DEPTH + 3):
                    self._pool.put(bytearray(CHUNK))
            work = [self._hash_pieces, self._sum_written] if checksum else [self._hash_pieces]
            for target in work:
                q: queue.Queue[_Item | None] = queue.Queue(maxsize=depth)
                thread = threading.Thread(
                    target=self._drain, args=(q, target), name="kmssign-hash", daemon=True
                )
                self._queues.append(q)
                self._threads.append(thread)
                thread.start()

    @staticmethod
    def _drain(
        q: queue.Queue[_Item | None], work: Callable[[int, Data, list[memoryview]], None]
    ) -> None:
        while (item := q.get()) is not None:
            offset, written, pieces, lease = item
            work(offset, written, pieces)
            if lease is not None:
                lease.done()
            # Drop this item's views now, not at the next get(): a mapped window is
            # unmapped only when its last view is gone.
            del item, written, pieces

    def chunks(
        self, f: BinaryIO, start: int, end: int
    ) -> Iterator[tuple[int, memoryview, _Lease | None]]:
        """Like :func:`_chunks`, for feeding: with workers, each piece has a buffer of its
        own that goes back to the pool when the workers and the caller are done with it
        (pass the lease to :meth:`feed`; the caller's hold ends when it asks for more)."""
        if not self._queues:
            for offset, data in chunks(f, start, end):
                yield offset, data, None
            return
        f.seek(start)
        offset = start
        while offset < end:
            buffer = self._pool.get()
            data = read_into(f, buffer, min(CHUNK, end - offset))
            lease = _Lease(self._pool, buffer, len(self._queues) + 1)
            yield offset, data, lease
            lease.done()
            offset += len(data)

    def _hash_pieces(self, _offset: int, _written: Data, pieces: list[memoryview]) -> None:
        if self.h is not None:
            for piece in pieces:
                self.h.update(piece)

    def _sum_written(self, offset: int, written: Data, _pieces: list[memoryview]) -> None:
        self.checksum.add(written, offset)

    def feed(
        self, offset: int, written: Data, pieces: list[memoryview], lease: _Lease | None = None
    ) -> None:
        if not self._queues:
            self._hash_pieces(offset, written, pieces)
            if self._summing:
                self._sum_written(offset, written, pieces)
        else:
            for q in self._queues:
                q.put((offset, written, pieces, lease))

    def close(self) -> None:
        """Wait for the workers; afterwards feed() works inline."""
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join()
        self._queues, self._threads = [], []
        if self._short_slices:
            self._short_slices = False
            _short_slices(False)


_Item = tuple[int, "Data", list[memoryview], _Lease | None]

