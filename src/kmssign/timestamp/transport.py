"""HTTP for timestamp queries: a POST that keeps its connection for the next request.

Signing a few hundred files asks the same server hundreds of times; each thread keeps
one open connection per server instead of a new TCP (and TLS) handshake per file. A
connection the server closed while idle is re-opened once. Where the environment names
a proxy for the URL (``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``), urllib, which knows
proxies, carries the request instead.
"""

from __future__ import annotations

import functools
import http.client
import os
import threading
import urllib.error
import urllib.parse
import urllib.request

from kmssign.errors import TimestampError

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


def _connections() -> dict[tuple[str, str, int], http.client.HTTPConnection]:
    pool: dict[tuple[str, str, int], http.client.HTTPConnection] | None = getattr(
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


def _via_urllib(url: str, body: bytes, timeout: float) -> bytes:
    request = urllib.request.Request(url, data=body, method="POST", headers=HEADERS)
    # An opener of our own: urlopen's global one keeps the proxies of its first use.
    proxies = urllib.request.ProxyHandler(urllib.request.getproxies())
    with urllib.request.build_opener(proxies).open(request, timeout=timeout) as response:
        return _read_limited(response)


def _post_once(
    parts: urllib.parse.SplitResult, body: bytes, timeout: float
) -> http.client.HTTPResponse:
    key = _key(parts)
    https, host = key[0] == "https", key[1]
    pool = _connections()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    for attempt in range(2):
        conn = pool.get(key)
        reused = conn is not None
        if conn is None:
            cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
            conn = pool[key] = cls(host, key[2], timeout=timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
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
    """POST a timestamp query; return the reply body.

    Raises ``urllib.error.HTTPError`` for an HTTP error status and ``OSError`` (or
    ``http.client.HTTPException``) for network problems and timeouts.
    """
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise TimestampError(f"unsupported URL scheme in {url}")
        if _uses_proxy(parts):
            return _via_urllib(url, body, timeout)
        response = _post_once(parts, body, timeout)
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
    raise TimestampError(f"too many redirects from {url}")
