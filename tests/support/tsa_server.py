"""A real RFC 3161 time-stamping authority over HTTP on 127.0.0.1, with fault modes.

The URL path picks the behaviour, e.g. ``http://127.0.0.1:PORT/tsa``:

``tsa``            a good reply (RSA TSA ``pki.tsa``, ESSCertIDv2, issuer+serial sid)
``ec``             a good reply signed by an ECDSA P-256 TSA certificate
``ski``            a good reply whose SignerInfo names the TSA by subject key identifier
``http500`` / ``http503`` / ``http429``   that HTTP status
``slow``           a good reply after :data:`SLOW_SECONDS` (beyond short client timeouts)
``trickle``        a reply that never ends: one byte every :data:`TRICKLE_INTERVAL` seconds
                   (so no socket read ever times out) for :data:`TRICKLE_SECONDS`, then
                   the connection is closed
``garbage``        HTTP 200 with a body that is not DER
``rejection``      TimeStampResp with status rejection
``wrong-nonce`` / ``wrong-imprint``   a signed token with the nonce/imprint changed
``bad-signature``  a token whose signature value is corrupted
``no-eku``         a token signed by ``pki.tsa_no_eku`` (no timeStamping EKU)
``flaky-N``        HTTP 503 for the first N requests on that path, then good
``legacy``         the pre-RFC 3161 Authenticode protocol (``osslsigncode sign -t URL``,
                   ``signtool /t``): base64 of a TimeStampRequest in, base64 of a PKCS#7
                   SignedData out, whose SignerInfo the client embeds as a countersignature

A POST whose Content-Type is not ``application/timestamp-query`` (``legacy``:
``application/octet-stream``) gets HTTP 415 (and is not counted). Every other request
is counted per path (:meth:`LoopbackTSA.count`).

Replies are encoded as DER directly (asn1crypto parses the request only): the batch
benchmark stamps hundreds of files, and building asn1crypto trees for every token cost
about twice the RSA signature itself. What is the same for every token of a signer
(certificate, sid, ESS attribute, ``tsa`` name) is encoded once per certificate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.clock import ManualClock

import base64
import contextlib
import datetime as dt
import functools
import hashlib
import io
import itertools
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from kmssign._internal.der import der, der_integer
from tests.support.pki import TIME_STAMPING, Issued, TestPKI

SLOW_SECONDS = 2.0
TRICKLE_INTERVAL = 0.25
TRICKLE_SECONDS = 20.0
POLICY = "1.3.6.1.4.1.55555.3161.1"  # a private-arc test policy


# -- DER building blocks ---------------------------------------------------------------


def _oid(dotted: str) -> bytes:
    """A DER OBJECT IDENTIFIER."""
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        septets = [arc & 0x7F]
        arc >>= 7
        while arc:
            septets.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(septets))
    return der(0x06, bytes(body))


def _algorithm(dotted: str, *, null_parameters: bool = True) -> bytes:
    """AlgorithmIdentifier { algorithm, NULL } (or without parameters)."""
    return der(0x30, _oid(dotted) + (b"\x05\x00" if null_parameters else b""))


# Digests and rsaEncryption with NULL parameters, ECDSA without: as asn1crypto wrote them.
_DIGEST_ALGORITHMS = {
    "sha1": _algorithm("1.3.14.3.2.26"),
    "sha256": _algorithm("2.16.840.1.101.3.4.2.1"),
    "sha384": _algorithm("2.16.840.1.101.3.4.2.2"),
    "sha512": _algorithm("2.16.840.1.101.3.4.2.3"),
}
_SHA256 = _DIGEST_ALGORITHMS["sha256"]
_RSA_PKCS1V15 = _algorithm("1.2.840.113549.1.1.1")
_ECDSA_SHA256 = _algorithm("1.2.840.10045.4.3.2", null_parameters=False)

_ID_SIGNED_DATA = _oid("1.2.840.113549.1.7.2")
_ID_CT_TST_INFO = _oid("1.2.840.113549.1.9.16.1.4")
_ID_CONTENT_TYPE = _oid("1.2.840.113549.1.9.3")
_ID_MESSAGE_DIGEST = _oid("1.2.840.113549.1.9.4")
_ID_SIGNING_CERTIFICATE_V2 = _oid("1.2.840.113549.1.9.16.2.47")
_ID_DATA = _oid("1.2.840.113549.1.7.1")
_ID_SIGNING_TIME = _oid("1.2.840.113549.1.9.5")

_V1 = der_integer(1)
_V3 = der_integer(3)
_POLICY = _oid(POLICY)
_ACCURACY = der(0x30, der_integer(1))  # Accuracy { seconds 1 }
_SIGNED_DATA_DIGEST_ALGORITHMS = der(0x31, _SHA256)
# Attribute { contentType, SET { id-ct-TSTInfo } }
_CONTENT_TYPE_ATTRIBUTE = der(0x30, _ID_CONTENT_TYPE + der(0x31, _ID_CT_TST_INFO))

_PKI_STATUS = {
    "granted": 0,
    "granted_with_mods": 1,
    "rejection": 2,
    "waiting": 3,
    "revocation_warning": 4,
    "revocation_notification": 5,
}
# PKIFailureInfo BIT STRING with only badDataFormat (bit 5): 2 unused bits, 0b00000100
_BAD_DATA_FORMAT = der(0x03, b"\x02\x04")


@functools.cache
def _digest_algorithm(name: str) -> bytes:
    """The AlgorithmIdentifier for the request's digest (asn1crypto's name or dotted OID)."""
    known = _DIGEST_ALGORITHMS.get(name)
    if known is not None:
        return known
    return bytes(algos.DigestAlgorithm({"algorithm": name}).dump())  # outside the hot path


# -- what every token of one TSA certificate shares ---------------------------------


@dataclass(frozen=True)
class _SignerParts:
    certificates: bytes  # SignedData certificates [0] IMPLICIT SET OF { the certificate }
    issuer_and_serial: bytes  # SignerInfo sid, version 1
    key_identifier: bytes | None  # SignerInfo sid [0] IMPLICIT SubjectKeyIdentifier, v3
    ess_attribute: bytes  # Attribute { signingCertificateV2, SET { SigningCertificateV2 } }
    tsa_name: bytes  # TSTInfo tsa [0] EXPLICIT GeneralName directoryName [4] EXPLICIT Name


@functools.lru_cache(maxsize=16)
def _signer_parts_of(cert_der: bytes) -> _SignerParts:
    cert = asn1_x509.Certificate.load(cert_der)
    issuer = cert.issuer.dump()  # the certificate's own bytes
    serial = der_integer(cert.serial_number)
    # ESSCertIDv2 { certHash, IssuerSerial { GeneralNames { directoryName issuer }, serial } }
    # (hashAlgorithm is the DEFAULT sha256, so DER leaves it out)
    ess_cert_id = der(
        0x30,
        der(0x04, hashlib.sha256(cert_der).digest())
        + der(0x30, der(0x30, der(0xA4, issuer)) + serial),
    )
    signing_certificate = der(0x30, der(0x30, ess_cert_id))  # SigningCertificateV2 { certs }
    ski = cert.key_identifier
    return _SignerParts(
        certificates=der(0xA0, cert_der),
        issuer_and_serial=der(0x30, issuer + serial),
        key_identifier=None if ski is None else der(0x80, ski),
        ess_attribute=der(0x30, _ID_SIGNING_CERTIFICATE_V2 + der(0x31, signing_certificate)),
        tsa_name=der(0xA0, der(0xA4, cert.subject.dump())),
    )


def _signer_parts(signer: Issued) -> _SignerParts:
    return _signer_parts_of(signer.cert.public_bytes(Encoding.DER))


# -- token and reply ---------------------------------------------------------------


def _tst_info(
    digest_algorithm: bytes, hashed: bytes, serial: int, nonce: int | None, tsa_name: bytes
) -> bytes:
    """DER TSTInfo, genTime now in whole seconds."""
    gen_time = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%SZ").encode("ascii")
    return der(
        0x30,
        _V1
        + _POLICY
        + der(0x30, digest_algorithm + der(0x04, hashed))  # messageImprint
        + der_integer(serial)
        + der(0x18, gen_time)
        + _ACCURACY
        + (b"" if nonce is None else der_integer(nonce))
        + tsa_name,
    )


def _token(
    tst_der: bytes,
    signer: Issued,
    parts: _SignerParts,
    *,
    include_cert: bool,
    by_ski: bool,
    corrupt_signature: bool,
) -> bytes:
    """DER ContentInfo { signedData }: the timestamp token over ``tst_der``."""
    assert signer.key is not None
    message_digest = der(
        0x30, _ID_MESSAGE_DIGEST + der(0x31, der(0x04, hashlib.sha256(tst_der).digest()))
    )
    # SET OF, DER-sorted: the bytes the signature covers
    signed_attrs = der(
        0x31, b"".join(sorted([_CONTENT_TYPE_ATTRIBUTE, message_digest, parts.ess_attribute]))
    )
    if isinstance(signer.key, rsa.RSAPrivateKey):
        signature = signer.key.sign(signed_attrs, padding.PKCS1v15(), hashes.SHA256())
        signature_algorithm = _RSA_PKCS1V15
    else:
        assert isinstance(signer.key, ec.EllipticCurvePrivateKey)
        signature = signer.key.sign(signed_attrs, ec.ECDSA(hashes.SHA256()))
        signature_algorithm = _ECDSA_SHA256
    if corrupt_signature:
        signature = signature[:-1] + bytes([signature[-1] ^ 0x01])
    if by_ski:
        if parts.key_identifier is None:
            raise ValueError("the TSA certificate has no subject key identifier")
        version, sid = _V3, parts.key_identifier
    else:
        version, sid = _V1, parts.issuer_and_serial
    signer_info = der(
        0x30,
        version
        + sid
        + _SHA256
        + b"\xa0" + signed_attrs[1:]  # signedAttrs [0] IMPLICIT
        + signature_algorithm
        + der(0x04, signature),
    )
    signed_data = der(
        0x30,
        _V3
        + _SIGNED_DATA_DIGEST_ALGORITHMS
        + der(0x30, _ID_CT_TST_INFO + der(0xA0, der(0x04, tst_der)))  # encapContentInfo
        + (parts.certificates if include_cert else b"")
        + der(0x31, signer_info),
    )
    return der(0x30, _ID_SIGNED_DATA + der(0xA0, signed_data))


def sign_tst_info(
    tst_info: tsp.TSTInfo,
    signer: Issued,
    *,
    include_cert: bool = True,
    by_ski: bool = False,
    corrupt_signature: bool = False,
) -> cms.ContentInfo:
    """Wrap ``tst_info`` in CMS SignedData signed by ``signer`` (a timestamp token)."""
    token = _token(
        tst_info.dump(),
        signer,
        _signer_parts(signer),
        include_cert=include_cert,
        by_ski=by_ski,
        corrupt_signature=corrupt_signature,
    )
    return cms.ContentInfo.load(token)


def make_tst_info(
    request: tsp.TimeStampReq,
    serial: int,
    signer: Issued,
    *,
    nonce_delta: int = 0,
    flip_imprint: bool = False,
) -> tsp.TSTInfo:
    imprint = request["message_imprint"]
    hashed = imprint["hashed_message"].native
    if flip_imprint:
        hashed = bytes([hashed[0] ^ 0xFF]) + hashed[1:]
    nonce = request["nonce"].native
    tst_info = _tst_info(
        _digest_algorithm(imprint["hash_algorithm"]["algorithm"].native),
        hashed,
        serial,
        None if nonce is None else nonce + nonce_delta,
        _signer_parts(signer).tsa_name,
    )
    return tsp.TSTInfo.load(tst_info)


def response(
    status: str, token: cms.ContentInfo | bytes | None = None, text: str = ""
) -> bytes:
    """DER TimeStampResp; ``token`` may be the token's DER already."""
    status_info = der_integer(_PKI_STATUS[status])
    if text:
        status_info += der(0x30, der(0x0C, text.encode("utf-8")))  # PKIFreeText
    if status == "rejection":
        status_info += _BAD_DATA_FORMAT
    if token is None:
        token = b""
    elif not isinstance(token, bytes):
        token = token.dump()
    return der(0x30, der(0x30, status_info) + token)


def _parse_unused_fields(request: tsp.TimeStampReq) -> None:
    """Parse what the reply does not copy, so that a malformed request is refused whole."""
    for value in (
        request["message_imprint"]["hash_algorithm"]["parameters"],
        request["req_policy"],
        request["extensions"],
    ):
        if not isinstance(value, core.Void):
            value.native  # noqa: B018 - raises on malformed contents


class _LegacyRequest(core.Sequence):  # type: ignore[misc]
    """Authenticode TimeStampRequest (its optional attributes are never sent)."""

    _fields = [  # noqa: RUF012 - asn1crypto specs are mutable class attributes by design
        ("countersignature_type", core.ObjectIdentifier),
        ("content", cms.ContentInfo),
    ]


def legacy_reply(body: bytes, signer: Issued) -> bytes:
    """The legacy Authenticode timestamp: PKCS#7 SignedData over the signature value the
    base64 TimeStampRequest carries, signed (SHA-256, RSA) with signingTime; base64."""
    assert isinstance(signer.key, rsa.RSAPrivateKey)
    # TimeStampRequest { countersignatureType, [attributes,] ContentInfo { data, [0] blob } }
    request = _LegacyRequest.load(base64.b64decode(body))
    signature_value = request["content"]["content"].native
    signing_time = dt.datetime.now(dt.timezone.utc).strftime("%y%m%d%H%M%SZ").encode("ascii")
    digest = hashlib.sha256(signature_value).digest()
    attributes = [
        der(0x30, _ID_CONTENT_TYPE + der(0x31, _ID_DATA)),
        der(0x30, _ID_SIGNING_TIME + der(0x31, der(0x17, signing_time))),
        der(0x30, _ID_MESSAGE_DIGEST + der(0x31, der(0x04, digest))),
    ]
    signed_attrs = der(0x31, b"".join(sorted(attributes)))
    signature = signer.key.sign(signed_attrs, padding.PKCS1v15(), hashes.SHA256())
    parts = _signer_parts(signer)
    signer_info = der(
        0x30,
        _V1 + parts.issuer_and_serial + _SHA256 + b"\xa0" + signed_attrs[1:] + _RSA_PKCS1V15
        + der(0x04, signature),
    )
    signed_data = der(
        0x30,
        _V1 + _SIGNED_DATA_DIGEST_ALGORITHMS
        + der(0x30, _ID_DATA + der(0xA0, der(0x04, signature_value)))
        + parts.certificates + der(0x31, signer_info),
    )
    return base64.b64encode(der(0x30, _ID_SIGNED_DATA + der(0xA0, signed_data)))


class LoopbackTSA:
    """The TSA: per-path request counts, the HTTP server thread, and the reply logic."""

    def __init__(self, pki: TestPKI) -> None:
        self.signers = {
            "good": pki.tsa,
            "no-eku": pki.tsa_no_eku,
            "ec": pki.root.issue_with_key(
                "kmssign Test ECDSA TSA", "p256", eku=TIME_STAMPING, eku_critical=True
            ),
        }
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._serials = itertools.count(1)
        self._stop_sleeping = threading.Event()
        self.latency = 0.0  # seconds added to every reply (benchmarks)
        # a test's clock (tests/support/clock.py): ``trickle`` then moves it a
        # TRICKLE_INTERVAL per byte instead of waiting
        self.clock: ManualClock | None = None
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.tsa = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- fixture API --
    def start(self) -> LoopbackTSA:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_sleeping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, mode: str = "tsa") -> str:
        return f"http://127.0.0.1:{self.port}/{mode}"

    def trickle(self, wfile: io.BufferedIOBase) -> None:
        """Send the start of a reply and then a header that never ends, a byte at a time."""
        with self._lock:
            self._counts["trickle"] += 1
        reply = itertools.chain(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\nX-Trickle: ",
            itertools.repeat(ord("."))
        )
        clock = self.clock
        if clock is not None:  # a byte per TRICKLE_INTERVAL of the test's clock
            end = clock.monotonic() + TRICKLE_SECONDS
            for byte in reply:
                if clock.monotonic() > end or self._stop_sleeping.is_set():
                    return
                wfile.write(bytes([byte]))
                wfile.flush()
                clock.advance(TRICKLE_INTERVAL)
            return
        end = time.monotonic() + TRICKLE_SECONDS
        for byte in reply:
            if time.monotonic() > end or self._stop_sleeping.wait(TRICKLE_INTERVAL):
                return
            wfile.write(bytes([byte]))
            wfile.flush()

    def count(self, mode: str = "tsa") -> int:
        with self._lock:
            return self._counts[mode]

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    @staticmethod
    def refused_url() -> str:
        """A loopback URL where nothing listens (the port was just bound and released)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return f"http://127.0.0.1:{port}/tsa"

    # -- behaviour --
    def handle(self, mode: str, body: bytes) -> tuple[int, bytes]:
        """HTTP status and body for a POST of ``body`` to ``/mode``."""
        with self._lock:
            self._counts[mode] += 1
            seen = self._counts[mode]
        if self.latency:
            time.sleep(self.latency)
        if mode.startswith("http") and mode[4:].isdigit():
            return int(mode[4:]), b"fault injected\n"
        if mode.startswith("flaky-") and seen <= int(mode[6:]):
            return 503, b"busy\n"
        if mode == "garbage":
            return 200, b"this is not DER at all\n"
        if mode == "slow":
            self._stop_sleeping.wait(SLOW_SECONDS)
        if mode == "legacy":
            return 200, legacy_reply(body, self.signers["good"])
        try:
            request = tsp.TimeStampReq.load(body, strict=True)
            imprint = request["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
            nonce = request["nonce"].native
            cert_req = bool(request["cert_req"].native)
            _parse_unused_fields(request)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
            return 200, response("rejection", text="request is not a DER TimeStampReq")
        if algorithm not in _DIGEST_ALGORITHMS or mode == "rejection":
            return 200, response("rejection", text=f"refusing {mode} request")
        if mode == "wrong-imprint":
            if not hashed:
                return 200, response("rejection", text="no message imprint to change")
            hashed = bytes([hashed[0] ^ 0xFF]) + hashed[1:]
        if mode == "wrong-nonce" and nonce is not None:
            nonce += 1
        signer = self.signers["no-eku" if mode == "no-eku" else "ec" if mode == "ec" else "good"]
        parts = _signer_parts(signer)
        tst_info = _tst_info(
            _DIGEST_ALGORITHMS[algorithm], hashed, next(self._serials), nonce, parts.tsa_name
        )
        token = _token(
            tst_info,
            signer,
            parts,
            include_cert=cert_req,
            by_ski=mode == "ski",
            corrupt_signature=mode == "bad-signature",
        )
        return 200, response("granted", token)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without this, Nagle and delayed
    # ACKs stall every keep-alive reply by ~40 ms
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        tsa: LoopbackTSA = self.server.tsa  # type: ignore[attr-defined]
        expected = (
            "application/octet-stream" if self.path.strip("/") == "legacy"
            else "application/timestamp-query"
        )
        if self.headers.get("Content-Type") != expected:
            status, payload = 415, f"expected Content-Type {expected}\n".encode()
        elif self.path.strip("/") == "trickle":
            self.close_connection = True
            with contextlib.suppress(OSError):  # the client gave up, as it should
                tsa.trickle(self.wfile)
            return
        else:
            status, payload = tsa.handle(self.path.strip("/"), body)
        try:
            self.send_response(status)
            reply_type = (
                "application/octet-stream" if expected == "application/octet-stream"
                else "application/timestamp-reply"
            )
            self.send_header("Content-Type", reply_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout tests)
            self.close_connection = True
        # Otherwise the connection stays open for the client's next request, as public
        # TSAs keep it (HTTP/1.1 keep-alive).

    def log_message(self, format: str, *args: object) -> None:
        pass
