"""RFC 3161 timestamp client with retries and failover across an ordered list of TSAs.

Three separate jobs live here: building the request (:func:`build_request`), talking
HTTP (:func:`http_post`, replaceable through ``post=``), and reading the reply
(:func:`parse_response`). Token validation is
:func:`kmssign._internal.cms.timestamps.check_token`.
"""

from __future__ import annotations

import http.client
import secrets
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import ClassVar

from asn1crypto import algos, cms, core, tsp

from kmssign._internal.cms.algorithms import digest_bytes
from kmssign._internal.cms.structures import PARSE_ERRORS, encoded
from kmssign._internal.cms.timestamps import TokenInfo, check_token
from kmssign._internal.der import der, der_integer
from kmssign._internal.net import deadline, defaults
from kmssign._internal.net.breaker import CircuitBreaker
from kmssign._internal.timestamp.transport import http_post
from kmssign.errors import (
    ConfigError,
    TimestampError,
    TimestampUnavailableError,
    VerificationError,
    redact,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_TRIES",
    "REQUEST_DIGESTS",
    "PostFn",
    "TimestampClient",
    "TokenInfo",
    "build_request",
    "check_token",
    "http_post",
    "parse_response",
]

DEFAULT_TRIES = 3
DEFAULT_TIMEOUT = defaults.TIMESTAMP_TIMEOUT  # per request, all of it (connect, send, reply)
REQUEST_DIGESTS = ("sha256", "sha384", "sha512")
RETRY_STATUSES = frozenset({429, 502, 503, 504})  # busy or briefly unreachable: try again

PostFn = Callable[[str, bytes, float], bytes]  # (url, body, timeout) -> reply body


# -- request -------------------------------------------------------------------------


def new_nonce() -> int:
    """A random positive 64-bit nonce."""
    return secrets.randbits(63) | (1 << 62)


def build_request(signature_value: bytes, digest: str, nonce: int) -> bytes:
    """DER TimeStampReq over ``digest(signature_value)`` with ``nonce`` and certReq."""
    if digest not in REQUEST_DIGESTS:
        raise TimestampError(f"unsupported timestamp digest {digest!r}")
    # Encoded directly: asn1crypto takes longer to build it than the TSA takes to answer.
    hashed = der(0x04, digest_bytes(digest, signature_value))
    imprint = der(0x30, _IMPRINT_ALGORITHMS[digest] + hashed)
    return der(0x30, _VERSION_1 + imprint + der_integer(nonce) + _CERT_REQ_TRUE)


_VERSION_1 = der_integer(1)
_CERT_REQ_TRUE = der(0x01, b"\xff")
# AlgorithmIdentifier SEQUENCE { OID } (no parameters, as asn1crypto encodes them)
_IMPRINT_ALGORITHMS = {
    name: bytes(algos.DigestAlgorithm({"algorithm": name}).dump()) for name in REQUEST_DIGESTS
}


# HTTP is kmssign._internal.timestamp.transport.http_post (keep-alive, proxies, redirects).


# -- reply ---------------------------------------------------------------------------


class TimeStampResp(core.Sequence):  # type: ignore[misc]
    """RFC 3161 TimeStampResp; asn1crypto's own spec wrongly makes the token mandatory."""

    _fields: ClassVar[list[tuple[object, ...]]] = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def parse_response(body: bytes) -> cms.ContentInfo:
    """The token of a DER TimeStampResp whose status is granted; TimestampError otherwise."""
    try:
        response = TimeStampResp.load(body, strict=True)
        status = response["status"]["status"].native
        text = response["status"]["status_string"].native
        fail_info = response["status"]["fail_info"].native
        token = response["time_stamp_token"]
        # Re-load from the bytes it was read from (dump() could re-encode it: slow); check_token
        # parses what it needs and reports malformed content.
        token = None if isinstance(token, core.Void) else cms.ContentInfo.load(encoded(token))
    except PARSE_ERRORS as exc:
        raise TimestampError(f"reply is not a DER TimeStampResp ({exc})") from exc
    if status not in ("granted", "granted_with_mods"):
        details = [str(status)]
        if text:
            details.append(" ".join(text))
        if fail_info:
            details.append(", ".join(sorted(fail_info)))
        raise TimestampError(f"request refused: {'; '.join(details)}")
    if token is None:
        raise TimestampError(f"status {status} but the reply holds no token")
    return token


# -- client --------------------------------------------------------------------------


class _Retry(Exception):
    """A failure worth another try at the same URL."""


def _network_reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no reply within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, urllib.error.URLError):
        return f"network error: {exc.reason}"
    return f"network error: {exc}"


class TimestampClient:
    """Gets validated RFC 3161 tokens from the first TSA in ``urls`` that delivers one.

    Each URL gets ``tries`` attempts of at most ``timeout`` seconds each (a total
    deadline per request); HTTP 429/502/503/504, network errors and timeouts are retried
    after ``backoff * 2**attempt`` seconds, any other failure moves on to the next URL at
    once. Every failed attempt is reported through ``log`` in one line.

    Once every URL has failed for one request, the client's circuit breaker opens: every
    later request (and every retry still under way in another thread) fails at once with
    :class:`TimestampUnavailableError`. A client serves one run.
    Safe to share between threads: it keeps no per-request state.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        tries: int = DEFAULT_TRIES,
        timeout: float = DEFAULT_TIMEOUT,
        backoff: float = 1.0,
        log: Callable[[str], None] | None = None,
        post: PostFn | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        problems = []
        if not urls:
            problems.append("no timestamp server URL given")
        for url in urls:
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                problems.append(f"timestamp server URL {redact(repr(url))} is not http(s)")
        if tries < 1:
            problems.append(f"timestamp tries must be at least 1, not {tries}")
        if timeout <= 0:
            problems.append(f"timestamp timeout must be positive, not {timeout:g}")
        if backoff < 0:
            problems.append(f"timestamp backoff must not be negative, not {backoff:g}")
        if problems:
            raise ConfigError(problems)
        self.urls = tuple(urls)
        self.tries = tries
        self.timeout = timeout
        self.backoff = backoff
        self._log = log or (lambda message: None)
        self._post: PostFn = post or http_post
        self._sleep = sleep or (lambda seconds: deadline.clock().sleep(seconds))
        self._log_lock = threading.Lock()
        self._breaker = CircuitBreaker()

    @property
    def available(self) -> bool:
        """``False`` once every server has failed in this run (the breaker is open)."""
        return self._breaker.reason is None

    def check_available(self) -> None:
        """Raise :class:`TimestampUnavailableError` once every server has failed in this
        run (to be asked before spending anything on a signature that needs a token)."""
        reason = self._breaker.reason
        if reason is not None:
            raise TimestampUnavailableError(
                f"not asking the timestamp servers again in this run: {reason}"
            )

    def timestamp(self, signature_value: bytes, digest: str = "sha256") -> cms.ContentInfo:
        """A validated timestamp token over ``digest(signature_value)``."""
        return self.stamp(signature_value, digest)[0]

    def stamp(
        self, signature_value: bytes, digest: str = "sha256"
    ) -> tuple[cms.ContentInfo, TokenInfo]:
        """Like :meth:`timestamp`, with what the validated token says (its time, its TSA)."""
        self.check_available()
        nonce = new_nonce()
        request = build_request(signature_value, digest, nonce)
        failures: list[str] = []
        for url in self.urls:
            reason = ""
            for attempt in range(self.tries):
                self.check_available()  # another thread may have found them all down
                try:
                    return self._attempt(url, request, signature_value, digest, nonce)
                except _Retry as exc:
                    reason = f"{exc} (try {attempt + 1} of {self.tries})"
                    if attempt == 0:  # one line per file and server while it is retried
                        again = f"; up to {self.tries} tries" if self.tries > 1 else ""
                        self._report(url, f"{exc}{again}")
                    if attempt + 1 < self.tries:
                        self._sleep(self.backoff * 2**attempt)
                except (TimestampError, VerificationError) as exc:
                    reason = str(exc)
                    self._report(url, reason)
                    break
            failures.append(f"{url}: {reason}")
        # one server's failure in full; of several, the last in full (each was reported as
        # it happened) and how many were tried; then the way out
        said = failures[-1] if len(failures) == 1 else (
            f"{len(failures)} servers tried, the last {failures[-1]}"
        )
        message = redact(
            f"no timestamp server answered: {said}; check the network (a "
            "proxy?) and timestamp-urls, or set timestamp to optional"
        )
        self._breaker.trip(message)
        error = TimestampError(message)
        error.failures = tuple(redact(failure) for failure in failures)
        raise error

    def _report(self, url: str, reason: str) -> None:
        with self._log_lock:
            self._log(redact(f"timestamp server {url} failed: {reason}"))

    def _attempt(
        self, url: str, request: bytes, signature_value: bytes, digest: str, nonce: int
    ) -> tuple[cms.ContentInfo, TokenInfo]:
        try:
            body = self._post(url, request, self.timeout)
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code} {exc.reason}".rstrip()
            if exc.code in RETRY_STATUSES:
                raise _Retry(reason) from exc
            raise TimestampError(reason) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _Retry(_network_reason(exc, self.timeout)) from exc
        token = parse_response(body)
        der = encoded(token)
        info = check_token(der, signature_value, nonce=nonce)
        if info.digest != digest:
            raise TimestampError(f"token imprint uses {info.digest}, {digest} was requested")
        # A fresh parse: asn1crypto would re-serialize the inspected tree on every dump.
        return cms.ContentInfo.load(der), info
