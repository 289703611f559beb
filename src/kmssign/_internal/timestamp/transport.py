"""HTTP for timestamp queries: a POST that keeps its connection for the next request.

Signing a few hundred files asks the same server hundreds of times; each thread keeps
one open connection per server instead of a new TCP (and TLS) handshake per file. A
connection the server closed while idle is re-opened once. Where the environment names
a proxy for the URL (``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``), urllib, which knows
proxies, carries the request instead.

``timeout`` is a total deadline for the request (connect, send, every read, redirects),
not a socket timeout: a server that trickles its reply a byte at a time would otherwise
keep a socket timeout from ever firing. Before every blocking step the socket's timeout
is set to what is left of the deadline.
"""

from __future__ import annotations

import functools
import http.client
import io
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any, cast

from kmssign._internal.net.deadline import Deadline
from kmssign.errors import TimestampError, redact

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    _ConnectionBase = http.client.HTTPConnection
    _HandlerBase = urllib.request.AbstractHTTPHandler
else:
    _ConnectionBase = _HandlerBase = object

MAX_REPLY_BYTES = 1 << 20
MAX_REDIRECTS = 3
HEADERS = {
    "Content-Type": "application/timestamp-query",
    "Accept": "application/timestamp-reply",
    "User-Agent": "kmssign",
}
_STALE = (
    http.client.RemoteDisconnected,
    http.client.CannotSendRequest,
    ConnectionResetError,
    BrokenPipeError,
)

_local = threading.local()


class _DeadlineReader(io.RawIOBase):
    """A socket's receiving side that sets the socket's timeout to what is left of the
    deadline before each receive."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        # the socket's own reader, which it counts: a socket closed while a response
        # still reads from it stays open until the reader closes (urllib relies on it)
        self._raw = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int | None:
        self._sock.settimeout(self._deadline.left())
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _ReceivingSide:
    """What an ``HTTPResponse`` sees of the socket: it only calls ``makefile("rb")``."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, _mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


class _DeadlineConnection(_ConnectionBase):
    """An ``http.client`` connection whose connect, sends and reads end by ``deadline``
    (set anew for each request on a kept-alive connection)."""

    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        # http.client builds every response, the proxy's CONNECT reply included, this way
        self.response_class = self._response  # type: ignore[assignment]

    def connect(self) -> None:
        self.timeout = self.deadline.left()
        super().connect()

    def send(self, data: Any) -> None:
        if self.sock is not None:
            self.sock.settimeout(self.deadline.left())
        super().send(data)

    def _response(self, sock: socket.socket, *args: Any, **kwargs: Any) -> http.client.HTTPResponse:
        receiving = cast(socket.socket, _ReceivingSide(sock, self.deadline))
        return http.client.HTTPResponse(receiving, *args, **kwargs)


class _HTTPConnection(_DeadlineConnection, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


class _DeadlineHandler(_HandlerBase):
    """urllib's HTTP(S) handler with the connections above (for requests via a proxy)."""

    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def do_open(self, http_class: Any, req: urllib.request.Request, **kwargs: Any) -> Any:
        https = issubclass(http_class, http.client.HTTPSConnection)
        connection = _HTTPSConnection if https else _HTTPConnection
        return super().do_open(
            functools.partial(connection, deadline=self.deadline), req, **kwargs
        )


class _HTTPHandler(_DeadlineHandler, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_DeadlineHandler, urllib.request.HTTPSHandler):
    pass


def _connections() -> dict[tuple[str, str, int], _DeadlineConnection]:
    pool: dict[tuple[str, str, int], _DeadlineConnection] | None = getattr(
        _local, "pool", None
    )
    if pool is None:
        pool = _local.pool = {}
    return pool


def _key(parts: urllib.parse.SplitResult) -> tuple[str, str, int]:
    https = parts.scheme == "https"
    return parts.scheme, parts.hostname or "", parts.port or (443 if https else 80)


def _drop(parts: urllib.parse.SplitResult) -> None:
    conn = _connections().pop(_key(parts), None)
    if conn is not None:
        conn.close()


# The variables that decide whether urllib sends an http(s) request through a proxy.
_PROXY_VARIABLES = (
    "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY",
    "REQUEST_METHOD",  # under CGI, urllib ignores HTTP_PROXY
)


def _uses_proxy(parts: urllib.parse.SplitResult) -> bool:
    # urllib reads the whole environment for this (half a millisecond per request):
    # decide once per proxy setting and host.
    setting = tuple(os.environ.get(name) for name in _PROXY_VARIABLES)
    return _proxy_decision(setting, parts.scheme, parts.hostname or "")


@functools.lru_cache(maxsize=64)
def _proxy_decision(_setting: tuple[str | None, ...], scheme: str, host: str) -> bool:
    proxies = urllib.request.getproxies()
    return scheme in proxies and not urllib.request.proxy_bypass(host)


def _read_limited(response: http.client.HTTPResponse) -> bytes:
    data = response.read(MAX_REPLY_BYTES + 1)
    if len(data) > MAX_REPLY_BYTES:
        raise TimestampError(f"reply larger than {MAX_REPLY_BYTES} bytes")
    return bytes(data)


def _via_urllib(url: str, body: bytes, deadline: Deadline) -> bytes:
    request = urllib.request.Request(url, data=body, method="POST", headers=HEADERS)
    # An opener of our own: urlopen's global one keeps the proxies of its first use.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler(urllib.request.getproxies()),
        _HTTPHandler(deadline),
        _HTTPSHandler(deadline),
    )
    with opener.open(request, timeout=deadline.left()) as response:
        return _read_limited(response)


def _post_once(
    parts: urllib.parse.SplitResult, body: bytes, deadline: Deadline
) -> http.client.HTTPResponse:
    key = _key(parts)
    https, host = key[0] == "https", key[1]
    pool = _connections()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    for attempt in range(2):
        conn = pool.get(key)
        reused = conn is not None
        if conn is None:
            cls = _HTTPSConnection if https else _HTTPConnection
            conn = pool[key] = cls(host, key[2], deadline=deadline)
        conn.deadline = deadline
        try:
            conn.request("POST", path, body, HEADERS)
            return conn.getresponse()
        except _STALE:
            conn.close()
            del pool[key]
            if not reused or attempt:
                raise
        except BaseException:
            conn.close()
            del pool[key]
            raise
    raise AssertionError("unreachable")


def http_post(url: str, body: bytes, timeout: float) -> bytes:
    """POST a timestamp query; return the reply body, all of it within ``timeout`` seconds.

    Raises ``urllib.error.HTTPError`` for an HTTP error status and ``OSError`` (or
    ``http.client.HTTPException``) for network problems and timeouts (``TimeoutError``
    once the deadline has passed).
    """
    deadline = Deadline(timeout)
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise TimestampError(f"unsupported URL scheme in {redact(url)}")
        if _uses_proxy(parts):
            return _via_urllib(url, body, deadline)
        response = _post_once(parts, body, deadline)
        try:
            data = _read_limited(response)
        except BaseException:
            _drop(parts)  # a half-read reply leaves the connection unusable
            raise
        if response.will_close:
            _drop(parts)
        location = response.getheader("Location")
        if response.status in (301, 302, 303, 307, 308) and location:
            url = urllib.parse.urljoin(url, location)
            continue
        if response.status != 200:
            raise urllib.error.HTTPError(
                url, response.status, response.reason, response.headers, None
            )
        return data
    raise TimestampError(f"too many redirects from {redact(url)}")
