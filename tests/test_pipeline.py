"""The worker pool of a batch: every file once, results in order, the limits on local and
network work, and an error that escapes a stage ending the batch."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kmssign._internal.engine.pipeline import Pipeline, run_simple
from kmssign._internal.engine.report import FileResult
from kmssign._internal.signers.local import KeyFileSigner
from kmssign._internal.timestamp.client import TimestampClient
from kmssign.api import sign_files
from kmssign.config import Settings
from kmssign.signers import DigestName
from tests.support import peutil
from tests.support.pki import TestPKI


class Gauge:
    """How many callers are inside at once, at most, and when each was inside."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.now = 0
        self.most = 0
        self.spans: list[tuple[float, float]] = []

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        self._local.start = time.monotonic()

    def __exit__(self, *_: object) -> None:
        end = time.monotonic()
        with self._lock:
            self.now -= 1
            self.spans.append((self._local.start, end))



def most_at_once(*gauges: Gauge) -> int:
    """The most callers inside any of ``gauges`` at one moment."""
    events = sorted(
        (moment, step) for g in gauges for a, b in g.spans for moment, step in ((a, 1), (b, -1))
    )
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


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


class CountingSigner(KeyFileSigner):
    """A key file signer that takes a while and counts the signatures in flight."""

    def __init__(self, key: Any, gauge: Gauge) -> None:
        super().__init__(key, "counting signer")
        self.gauge = gauge

    def sign(self, data: bytes, digest: DigestName) -> bytes:
        with self.gauge:
            time.sleep(0.01)
            return super().sign(data, digest)


class CountingTimestamper:
    """The loopback TSA's client, counting the requests in flight."""

    def __init__(self, client: TimestampClient, gauge: Gauge) -> None:
        self.client = client
        self.gauge = gauge
        self.available = True

    def check_available(self) -> None:
        self.client.check_available()

    def stamp(self, signature_value: bytes, digest: str) -> tuple[Any, Any]:
        with self.gauge:
            time.sleep(0.02)
            return self.client.stamp(signature_value, digest)


def test_jobs_bounds_the_requests_to_each_service_not_the_files(
    pki: TestPKI, tsa: Any, tmp_path: Path
) -> None:
    identity = pki.identity("rsa2048")
    files = []
    for i in range(24):
        path = tmp_path / f"tool{i:02d}.exe"
        shutil.copyfile(peutil.LAUNCHERS["t64.exe"], path)
        with open(path, "ab") as f:
            f.write(f"overlay {i}".encode())
        files.append(path)
    signing, stamping = Gauge(), Gauge()
    settings = Settings(
        key_file=identity.key_path, certificate=identity.cert_path, jobs=3,
        timestamp_urls=(tsa.url("tsa"),),
    )
    report = sign_files(
        files, settings, signer=CountingSigner(identity.key, signing),
        timestamper=CountingTimestamper(TimestampClient((tsa.url("tsa"),)), stamping),
    )
    assert report.count("signed") == len(files)
    assert 1 < signing.most <= 3
    assert 1 < stamping.most <= 3
    # files were signed while as many others waited for their timestamps
    assert most_at_once(signing, stamping) > 3
