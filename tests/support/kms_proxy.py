"""A fault- and latency-injecting HTTP proxy in front of a KMS endpoint (moto's server).

The AWS SDK talks real HTTP to it; it forwards each request to the upstream KMS unless a
rule answers first with an AWS JSON error (as AWS would: status, ``__type``, message).
Used for errors moto cannot produce (disabled keys, AccessDenied, throttling) and for
the batch benchmark's injected latency. An operation in :attr:`KmsProxy.hanging` is
counted and never answered (until the proxy stops): a KMS that accepts connections and
then hangs; one in :attr:`KmsProxy.dropping` is counted and its connection closed
without a reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.clock import ManualClock

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Fault = tuple[int, str, str]  # HTTP status, AWS error code, message
Rule = Callable[[str, int], Fault | None]  # (operation, nth call of it, 1-based) -> fault


class KmsProxy:
    def __init__(self, upstream: str, *, latency: float = 0.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.latency = latency
        self.rules: list[Rule] = []
        self.hanging: set[str] = set()
        # a test's clock (tests/support/clock.py): a hanging call moves it an hour on,
        # past any deadline, and then hangs
        self.clock: ManualClock | None = None
        self.dropping: set[str] = set()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in separate writes: without this, Nagle and delayed
            # ACKs stall every keep-alive reply by ~40 ms
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                """``GET /_calls``: the call counts as JSON (for other processes)."""
                with proxy._lock:
                    payload = json.dumps(dict(proxy.calls)).encode()
                self._reply(200, payload, "application/json")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                with proxy._lock:
                    proxy.calls[operation] += 1
                    nth = proxy.calls[operation]
                if operation in proxy.hanging or operation in proxy.dropping:
                    if operation in proxy.hanging:
                        if proxy.clock is not None:
                            proxy.clock.advance(3600)
                        proxy._stopping.wait()
                    self.close_connection = True
                    return
                if proxy.latency:
                    time.sleep(proxy.latency)
                for rule in proxy.rules:
                    fault = rule(operation, nth)
                    if fault:
                        status, code, message = fault
                        payload = json.dumps({"__type": code, "message": message}).encode()
                        self._reply(status, payload, "application/x-amz-json-1.1")
                        return
                request = urllib.request.Request(
                    proxy.upstream + self.path, data=body, method="POST",
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        self._reply(response.status, response.read(),
                                    response.headers.get("Content-Type", ""))
                except urllib.error.HTTPError as exc:
                    self._reply(exc.code, exc.read(), exc.headers.get("Content-Type", ""))

            def _reply(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def count(self, operation: str) -> int:
        """How many calls of ``operation`` (``Sign``, ``GetPublicKey``) arrived so far."""
        with self._lock:
            return self.calls[operation]

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> KmsProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()


def fail(operation: str, status: int, code: str, message: str, *, every: int = 1) -> Rule:
    """A rule: every ``every``-th call of ``operation`` fails with this AWS error."""

    def rule(op: str, nth: int) -> Fault | None:
        if op == operation and nth % every == 0:
            return status, code, message
        return None

    return rule
