"""Services that hang, trickle or are down: a total deadline per request and per KMS call,
and a circuit breaker that stops asking a service that failed for good in a run.

Real parts: the loopback TSA (``trickle``, ``http500``), moto's KMS behind the fault
proxy (``hanging``, ``dropping``). No test waits for time to pass: deadlines and retry
pauses run on a clock the test installs (tests/support/clock.py), which the trickling TSA
moves a quarter second per byte and a hanging KMS call moves past any deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kmssign._internal.net.breaker import CircuitBreaker
from kmssign._internal.net.deadline import Deadline, DeadlinePassed, call_within, stop_if_passed
from kmssign._internal.timestamp.client import TimestampClient
from kmssign.errors import TimestampError, TimestampUnavailableError
from tests.support import peutil
from tests.support.clock import ManualClock, install
from tests.support.helpers import run_cli, sign_args, snapshot
from tests.support.kms_proxy import KmsProxy
from tests.support.pki import TestPKI


@pytest.fixture
def kms_proxy(kms_server) -> Iterator[KmsProxy]:
    proxy = KmsProxy(kms_server.endpoint_url).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, tsa) -> ManualClock:
    """The test's clock, for kmssign and the loopback TSA alike."""
    manual = install(monkeypatch)
    monkeypatch.setattr(tsa, "clock", manual)
    return manual


def failures(err: str) -> list[str]:
    lines = err.splitlines()
    assert not any("Traceback" in line for line in lines), err
    return [line for line in lines if line.startswith("failed: ")]


def _kms(identity, proxy: KmsProxy, *extra: str) -> list[str]:
    return ["--key-id", identity.key_id, "--cert", str(identity.cert_path),
            "--endpoint-url", proxy.endpoint_url, *extra]


# -- the timestamp servers ------------------------------------------------------------------


def test_a_trickling_tsa_is_cut_off_at_the_deadline_and_not_asked_again(
    capsys, pki: TestPKI, samples, tsa, clock: ManualClock
) -> None:
    """One byte every 0.25 s never trips a socket timeout; the 1 s deadline does. Once the
    first file has used its tries, the others ask no server."""
    tsa.reset()
    before = snapshot(samples)
    code, out, err = run_cli(
        capsys, "sign", *map(str, samples.values()), "--jobs", "1",
        *sign_args(pki.identity("rsa2048"), "--timestamp-url", tsa.url("trickle"),
                   "--timestamp-timeout", "1"),
    )
    assert code == 1
    assert tsa.count("trickle") == 3  # the first file's three tries, nothing after
    failed = failures(err)
    assert len(failed) == len(samples)
    assert "no timestamp server answered: " in failed[0]
    assert "no reply within 1 s (try 3 of 3)" in failed[0]
    for line in failed[1:]:
        assert ": not asking the timestamp servers again in this run: no timestamp server " \
            "answered: " in line
    # one line for the file and server while it was retried, not one per try
    assert len([line for line in err.splitlines() if line.startswith("timestamp server ")]) == 1
    assert snapshot(samples) == before


def test_the_timestamp_command_keeps_the_deadline_and_the_breaker(
    capsys, pki: TestPKI, samples, tsa, clock: ManualClock
) -> None:
    paths = [str(p) for p in samples.values()]
    code, _, err = run_cli(capsys, "sign", *paths, *sign_args(pki.identity("p256")))
    assert code == 0, err
    tsa.reset()
    before = snapshot(samples)
    code, out, err = run_cli(
        capsys, "timestamp", *paths, "--jobs", "1", "--timestamp-url", tsa.url("trickle"),
        "--timestamp-timeout", "1",
    )
    assert code == 1
    assert tsa.count("trickle") == 3
    failed = failures(err)
    assert len(failed) == len(samples)
    assert all("not asking the timestamp servers again" in line for line in failed[1:])
    assert snapshot(samples) == before


def test_parallel_files_stop_retrying_once_the_servers_are_known_down(
    capsys, pki: TestPKI, samples, tsa, tmp_path: Path, clock: ManualClock
) -> None:
    files = []
    for i in range(12):
        path = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tmp_path / f"many{i}")
        files.append(str(path))
    tsa.reset()
    code, _, err = run_cli(
        capsys, "sign", *files, "--jobs", "4",
        *sign_args(pki.identity("rsa2048"), "--timestamp-url", tsa.url("trickle"),
                   "--timestamp-timeout", "1"),
    )
    assert code == 1
    assert len(failures(err)) == len(files)
    # at most 4 files were under way when the first found every server down; each of
    # them stopped at its next try, at the latest after its own three
    assert 3 <= tsa.count("trickle") <= 4 * 3


def test_once_every_tsa_failed_no_kms_sign_is_spent(
    capsys, aws_env, kms_identity, kms_proxy: KmsProxy, samples, tsa
) -> None:
    identity = kms_identity("RSA_2048")
    tsa.reset()
    before = snapshot(samples)
    code, _, err = run_cli(
        capsys, "sign", *map(str, samples.values()), "--jobs", "1",
        *_kms(identity, kms_proxy, "--timestamp-url", tsa.url("http500")),
    )
    assert code == 1
    failed = failures(err)
    assert len(failed) == len(samples)
    assert "no timestamp server answered: " in failed[0] and "HTTP 500" in failed[0]
    assert all("not asking the timestamp servers again in this run" in x for x in failed[1:])
    assert tsa.count("http500") == 1
    assert kms_proxy.count("Sign") == 1  # the first file's; the others were never signed
    assert snapshot(samples) == before


@pytest.mark.osslsigncode
def test_optional_timestamps_warn_once_and_sign_the_rest_without_asking(
    capsys, pki: TestPKI, samples, tsa
) -> None:
    tsa.reset()
    code, out, err = run_cli(
        capsys, "sign", *map(str, samples.values()), "--jobs", "1",
        *sign_args(pki.identity("rsa2048"), "--timestamp-url", tsa.url("http500"),
                   "--timestamp", "optional"),
    )
    assert code == 0, err
    assert out.count(", no timestamp)") == len(samples)
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, err
    assert "signed without a timestamp (no timestamp server answered: " in warnings[0]
    assert warnings[0].endswith("; the remaining files are signed without one too")
    assert tsa.count("http500") == 1
    for path in samples.values():
        peutil.osslsigncode_verify(path, pki.root_pem)


def test_the_client_asks_no_server_once_all_have_failed(tsa) -> None:
    tsa.reset()
    client = TimestampClient([tsa.url("http500"), tsa.url("rejection")], tries=1)
    assert client.available
    with pytest.raises(TimestampError) as first:
        client.stamp(b"\x01" * 256)
    assert not isinstance(first.value, TimestampUnavailableError)
    assert not client.available
    for _ in range(3):
        with pytest.raises(TimestampUnavailableError) as later:
            client.stamp(b"\x02" * 256)
        assert str(later.value) == (
            f"not asking the timestamp servers again in this run: {first.value}"
        )
    assert (tsa.count("http500"), tsa.count("rejection")) == (1, 1)


# -- KMS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 3])
def test_a_hung_kms_sign_is_cut_off_at_the_deadline_and_not_called_again(
    capsys, aws_env, kms_identity, kms_proxy: KmsProxy, samples, jobs: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kms_proxy.clock = install(monkeypatch)
    identity = kms_identity("RSA_2048")
    kms_proxy.hanging.add("Sign")
    before = snapshot(samples)
    code, _, err = run_cli(
        capsys, "sign", *map(str, samples.values()), "--jobs", str(jobs), "--no-timestamp",
        *_kms(identity, kms_proxy, "--kms-timeout", "2"),
    )
    assert code == 1
    failed = failures(err)
    assert len(failed) == len(samples)
    message = (f"kms:Sign for KMS key {identity.key_id} did not complete within 2 s "
               "(kms-timeout; retries included)")
    late = [x for x in failed if x.endswith(f".exe: {message}") or x.endswith(f".dll: {message}")]
    stopped = [x for x in failed if x.endswith(f": not calling KMS again in this run: {message}")]
    assert len(late) + len(stopped) == len(samples), failed
    signs = kms_proxy.count("Sign")
    # only the calls already under way end late (each one that reached KMS among them; a
    # call still sending when the hung one moved the clock past its deadline is late too)
    assert 1 <= signs <= len(late) <= jobs
    assert kms_proxy.count("GetPublicKey") == 1
    assert snapshot(samples) == before


def test_a_kms_that_drops_connections_is_given_up_once(
    capsys, aws_env, kms_identity, kms_proxy: KmsProxy, samples,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    identity = kms_identity("RSA_2048")
    kms_proxy.dropping.add("Sign")
    code, _, err = run_cli(
        capsys, "sign", *map(str, samples.values()), "--jobs", "1", "--no-timestamp",
        *_kms(identity, kms_proxy),
    )
    assert code == 1
    failed = failures(err)
    assert len(failed) == len(samples)
    assert f"cannot reach the KMS endpoint {kms_proxy.endpoint_url}/ for KMS key" in failed[0]
    assert all("not calling KMS again in this run: cannot reach" in x for x in failed[1:])
    assert kms_proxy.count("Sign") == 2  # the first file's two attempts, nothing after


def test_a_hung_get_public_key_ends_the_run_in_one_line(
    capsys, aws_env, kms_identity, kms_proxy: KmsProxy, samples,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kms_proxy.clock = install(monkeypatch)
    identity = kms_identity("RSA_2048")
    kms_proxy.hanging.add("GetPublicKey")
    code, out, err = run_cli(
        capsys, "sign", *map(str, samples.values()), "--no-timestamp",
        *_kms(identity, kms_proxy, "--kms-timeout", "1.5"),
    )
    assert code == 1
    assert err == (
        f"kmssign: error: kms:GetPublicKey for KMS key {identity.key_id} did not complete "
        "within 1.5 s (kms-timeout; retries included)\n"
    )


# -- the parts ------------------------------------------------------------------------------


def test_a_deadline_counts_down_and_then_refuses() -> None:
    clock = ManualClock()
    deadline = Deadline(0.2, clock=clock)
    assert deadline.left() == pytest.approx(0.2) and not deadline.passed
    clock.advance(0.15)
    assert deadline.left() == pytest.approx(0.05) and not deadline.passed
    clock.advance(0.1)
    assert deadline.passed
    with pytest.raises(DeadlinePassed, match=r"^deadline of 0\.2 s passed$") as caught:
        deadline.left()
    assert isinstance(caught.value, TimeoutError)


def test_call_within_returns_raises_and_gives_up_on_a_blocked_call() -> None:
    assert call_within(Deadline(5), lambda: 42, name="t") == 42

    def broken() -> None:
        raise ValueError("inner")

    with pytest.raises(ValueError, match="inner"):
        call_within(Deadline(5), broken, name="t")
    clock = ManualClock()
    release = threading.Event()
    seen: list[threading.Thread] = []

    def blocked() -> None:
        seen.append(threading.current_thread())
        clock.advance(0.31)  # the call's deadline passes while it is still blocked
        release.wait()

    with pytest.raises(DeadlinePassed, match=r"deadline of 0\.3 s passed"):
        call_within(Deadline(0.3, clock=clock), blocked, name="kmssign-test")
    assert not release.is_set()  # given up on while the call still blocked
    assert seen[0].daemon  # a call that never returns cannot hold up the exit
    release.set()
    # once its call ended, the runner serves other calls again
    for _ in range(100_000):
        if call_within(Deadline(5), threading.current_thread, name="t") is seen[0]:
            break
    else:
        raise AssertionError("the runner of the blocked call never served again")


def test_no_retry_starts_after_the_deadline_of_its_call() -> None:
    stop_if_passed()  # outside any call: nothing to stop
    clock = ManualClock()
    attempts: list[float] = []
    stopped = threading.Event()

    def retrying() -> None:
        try:
            while True:  # a client library's retry loop, asking before each attempt
                stop_if_passed()
                attempts.append(clock.monotonic())
                clock.advance(0.0625)  # each attempt takes 1/16 s of the call's clock
        finally:
            stopped.set()

    with pytest.raises(DeadlinePassed):
        call_within(Deadline(0.25, clock=clock), retrying, name="t")
    assert stopped.wait(30)  # it stopped by itself (the test fails, not hangs, otherwise)
    # attempts at 0, 1/16, 2/16 and 3/16 s of the 1/4 s deadline, none at or after it
    assert [t - attempts[0] for t in attempts] == [0, 0.0625, 0.125, 0.1875]


def test_the_breaker_opens_once_whoever_trips_it() -> None:
    breaker = CircuitBreaker()
    assert breaker.reason is None
    opened: list[bool] = []
    barrier = threading.Barrier(8)

    def trip(i: int) -> None:
        barrier.wait()
        opened.append(breaker.trip(f"reason {i}"))

    threads = [threading.Thread(target=trip, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened.count(True) == 1
    assert breaker.reason is not None and breaker.reason.startswith("reason ")
    assert not breaker.trip("another")


def test_a_wheel_whose_tsa_is_down_spends_one_kms_sign(
    capsys, aws_env, kms_identity, kms_proxy: KmsProxy, tsa, tmp_path: Path
) -> None:
    """Members sign concurrently (default jobs); until one token came back they go one at a
    time, so the first member's failure leaves the others unsigned and KMS unasked (#23)."""
    from tests.support import wheelutil

    launcher = peutil.LAUNCHERS["t64.exe"].read_bytes()
    members = {f"demo_pkg/tool{i}.exe": launcher + f"overlay {i}".encode() for i in range(8)}
    wheel = wheelutil.write_wheel(tmp_path / wheelutil.WHEEL_NAME, members)
    before = wheel.read_bytes()
    identity = kms_identity("RSA_2048")
    tsa.reset()
    code, _, err = run_cli(
        capsys, "wheel", str(wheel), *_kms(identity, kms_proxy, "--timestamp-url",
                                           tsa.url("http500")),
    )
    assert code == 1
    assert kms_proxy.count("Sign") == 1  # the first member's; the others never signed
    assert tsa.count("http500") == 1
    assert wheel.read_bytes() == before
    failed = failures(err)
    assert len(failed) == len(members) + 1  # each member, and the wheel left unchanged
