"""The timestamp HTTP client: one kept-alive connection per server and thread, recovery
from connections the server dropped, redirects, proxies from the environment, and a
total deadline per request."""

from __future__ import annotations

import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kmssign._internal.net import deadline
from kmssign._internal.timestamp import transport as tsahttp
from tests.support.clock import ManualClock


class _WatchedClock(ManualClock):
    """A clock the test moves, which tells when the client has read it."""

    def __init__(self) -> None:
        super().__init__()
        self.looked = threading.Event()
        self.closed = False

    def monotonic(self) -> float:
        self.looked.set()
        return super().monotonic()


class _Server:
    """Answers POSTs with their body reversed; counts connections and requests."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[str] = []
        self.drop_after_reply = False  # close idle connections without saying so
        self.clock: _WatchedClock | None = None  # the clock a trickled reply moves
        self.trickled = 0  # bytes of the trickled reply sent
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                server.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append(self.path)
                if self.path == "/moved":
                    self.send_response(307)
                    self.send_header("Location", "/tsa")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path.endswith("/trickle"):
                    server.trickle(self)
                    return
                if self.path == "/busy":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                assert self.headers["Content-Type"] == "application/timestamp-query"
                reply = body[::-1]
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                if server.drop_after_reply:
                    self.close_connection = True

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def trickle(self, handler: BaseHTTPRequestHandler) -> None:
        """A reply of 50 bytes, one every 0.25 s of the test's clock: before each byte the
        server waits until the client has looked at the clock again (it does before every
        receive), then moves the clock on and writes the byte."""
        assert self.clock is not None
        handler.send_response(200)
        handler.send_header("Content-Length", "50")
        handler.end_headers()
        handler.wfile.flush()
        try:
            for _ in range(50):
                if not self.clock.looked.wait(30):
                    return  # the client stopped reading without closing: the test fails
                self.clock.looked.clear()
                if self.clock.closed:
                    return
                self.trickled += 1  # counted first: the client may give up at once
                self.clock.advance(0.25)
                handler.wfile.write(b".")
                handler.wfile.flush()
        except OSError:  # the client gave up, as it should
            handler.close_connection = True

    def url(self, path: str = "/tsa") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_one_connection_serves_many_requests(server: _Server) -> None:
    for i in range(5):
        assert tsahttp.http_post(server.url(), bytes([i, 1, 2]), 5.0) == bytes([2, 1, i])
    assert server.connections == 1
    assert len(server.requests) == 5


def test_connection_closed_by_the_server_is_reopened(server: _Server) -> None:
    server.drop_after_reply = True
    for i in range(3):
        assert tsahttp.http_post(server.url(), bytes([i, 9]), 5.0) == bytes([9, i])
    assert server.connections == 3


def test_redirect_is_followed_and_errors_are_http_errors(server: _Server) -> None:
    assert tsahttp.http_post(server.url("/moved"), b"ab", 5.0) == b"ba"
    assert server.requests[-2:] == ["/moved", "/tsa"]
    with pytest.raises(urllib.error.HTTPError) as caught:
        tsahttp.http_post(server.url("/busy"), b"ab", 5.0)
    assert caught.value.code == 503


def test_proxy_from_the_environment_is_used(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test server plays the proxy: it receives the absolute URL of the real target.
    monkeypatch.setenv("http_proxy", server.url(""))
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    target = "http://tsa.example.invalid/path"
    assert tsahttp.http_post(target, b"xy", 5.0) == b"yx"
    assert server.requests[-1] == target


def test_proxy_decision_follows_the_environment(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy decision is cached, but per proxy setting: a changed variable counts."""
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    target = "http://tsa.example.invalid/path"
    with pytest.raises(OSError):  # no proxy: a direct connection to a name that never resolves
        tsahttp.http_post(target, b"xy", 5.0)
    monkeypatch.setenv("http_proxy", server.url(""))
    assert tsahttp.http_post(target, b"xy", 5.0) == b"yx"
    assert server.requests[-1] == target
    monkeypatch.setenv("no_proxy", "tsa.example.invalid")
    with pytest.raises(OSError):
        tsahttp.http_post(target, b"xy", 5.0)
    assert server.requests[-1] == target  # the bypassed request never reached the proxy
    monkeypatch.delenv("no_proxy")
    assert tsahttp.http_post(target, b"xz", 5.0) == b"zx"


@pytest.mark.parametrize("via_proxy", [False, True], ids=["direct", "proxy"])
def test_a_trickled_reply_ends_at_the_deadline(
    server: _Server, monkeypatch: pytest.MonkeyPatch, via_proxy: bool
) -> None:
    """No read waits long, but the whole reply would take 12.5 s of the clock: the 1 s
    deadline ends it after four bytes (a socket timeout alone never would)."""
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    clock = server.clock = _WatchedClock()
    monkeypatch.setattr(deadline, "CLOCK", clock)
    target = server.url("/trickle")
    if via_proxy:
        monkeypatch.setenv("http_proxy", server.url(""))
        target = "http://tsa.example.invalid/trickle"
    start = clock.monotonic()
    try:
        with pytest.raises(OSError) as caught:
            tsahttp.http_post(target, b"xy", 1.0)
    finally:
        clock.closed = True
        clock.looked.set()  # let the server's loop see it
    error = caught.value
    assert isinstance(getattr(error, "reason", error), TimeoutError), repr(error)
    assert server.requests[-1].endswith("/trickle")
    # it ended by the deadline on the test's clock, not by reading the whole reply (the
    # fifth byte may be on its way when the client reads the clock and gives up)
    assert 1.0 <= clock.monotonic() - start <= 1.25
    assert 4 <= server.trickled <= 5
