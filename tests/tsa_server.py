"""A real RFC 3161 time-stamping authority over HTTP on 127.0.0.1, with fault modes.

The URL path picks the behaviour, e.g. ``http://127.0.0.1:PORT/tsa``:

``tsa``            a good reply (RSA TSA ``pki.tsa``, ESSCertIDv2, issuer+serial sid)
``ec``             a good reply signed by an ECDSA P-256 TSA certificate
``ski``            a good reply whose SignerInfo names the TSA by subject key identifier
``http500`` / ``http503`` / ``http429``   that HTTP status
``slow``           a good reply after :data:`SLOW_SECONDS` (beyond short client timeouts)
``garbage``        HTTP 200 with a body that is not DER
``rejection``      TimeStampResp with status rejection
``wrong-nonce`` / ``wrong-imprint``   a signed token with the nonce/imprint changed
``bad-signature``  a token whose signature value is corrupted
``no-eku``         a token signed by ``pki.tsa_no_eku`` (no timeStamping EKU)
``flaky-N``        HTTP 503 for the first N requests on that path, then good

A POST whose Content-Type is not ``application/timestamp-query`` gets HTTP 415 (and is
not counted). Every other request is counted per path (:meth:`LoopbackTSA.count`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from kmssign.asn1 import der
from kmssign.timestamp import TimeStampResp
from tests.pki import TIME_STAMPING, Issued, TestPKI

SLOW_SECONDS = 2.0
POLICY = "1.3.6.1.4.1.55555.3161.1"  # a private-arc test policy
_HASHES = ("sha1", "sha256", "sha384", "sha512")


def _asn1_cert(issued: Issued) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(issued.cert.public_bytes(Encoding.DER))


# The test TSA answers many requests in benchmarks: parts that are the same for every
# token are encoded once (asn1crypto is slow at rebuilding trees).


@functools.lru_cache(maxsize=1)
def _content_type_attribute() -> bytes:
    return bytes(cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}).dump())


@functools.lru_cache(maxsize=8)
def _ess_attribute(cert_der: bytes) -> bytes:
    cert = asn1_x509.Certificate.load(cert_der)
    ess_cert_id = {
        "hash_algorithm": {"algorithm": "sha256"},
        "cert_hash": hashlib.sha256(cert_der).digest(),
        "issuer_serial": {
            "issuer": [asn1_x509.GeneralName(name="directory_name", value=cert.issuer)],
            "serial_number": cert.serial_number,
        },
    }
    attr = cms.CMSAttribute(
        {"type": "signing_certificate_v2", "values": [{"certs": [ess_cert_id]}]}
    )
    return bytes(attr.dump())


def sign_tst_info(
    tst_info: tsp.TSTInfo,
    signer: Issued,
    *,
    include_cert: bool = True,
    by_ski: bool = False,
    corrupt_signature: bool = False,
) -> cms.ContentInfo:
    """Wrap ``tst_info`` in CMS SignedData signed by ``signer`` (a timestamp token)."""
    assert signer.key is not None
    cert_der = signer.cert.public_bytes(Encoding.DER)
    cert = asn1_x509.Certificate.load(cert_der)
    tst_der = tst_info.dump()
    signed_attrs = cms.CMSAttributes.load(
        der(0x31, b"".join(sorted([
            _content_type_attribute(),
            cms.CMSAttribute(
                {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]}
            ).dump(),
            _ess_attribute(cert_der),
        ])))
    )
    to_sign = signed_attrs.dump()  # SET OF, DER-sorted: the bytes the signature covers
    if isinstance(signer.key, rsa.RSAPrivateKey):
        signature = signer.key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
        signature_algorithm = "rsassa_pkcs1v15"
    else:
        assert isinstance(signer.key, ec.EllipticCurvePrivateKey)
        signature = signer.key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        signature_algorithm = "sha256_ecdsa"
    if corrupt_signature:
        signature = signature[:-1] + bytes([signature[-1] ^ 0x01])
    if by_ski:
        sid = cms.SignerIdentifier(name="subject_key_identifier", value=cert.key_identifier)
    else:
        sid = cms.SignerIdentifier(
            name="issuer_and_serial_number",
            value=cms.IssuerAndSerialNumber.load(
                der(0x30, cert.issuer.dump() + core.Integer(cert.serial_number).dump())
            ),
        )
    signer_info = cms.SignerInfo(
        {
            "version": "v3" if by_ski else "v1",
            "sid": sid,
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": signature_algorithm},
            "signature": signature,
        }
    )
    fields: dict[str, object] = {
        "version": "v3",
        "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {
            "content_type": "tst_info",
            "content": core.ParsableOctetString(tst_der),
        },
        "signer_infos": [signer_info],
    }
    if include_cert:
        # a fresh, uninspected copy: asn1crypto re-serializes inspected trees (slow)
        fields["certificates"] = [asn1_x509.Certificate.load(cert_der)]
    signed_data = cms.SignedData(fields)
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data})


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
    fields = {
        "version": "v1",
        "policy": POLICY,
        "message_imprint": {
            "hash_algorithm": {"algorithm": imprint["hash_algorithm"]["algorithm"].native},
            "hashed_message": hashed,
        },
        "serial_number": serial,
        "gen_time": dt.datetime.now(dt.timezone.utc).replace(microsecond=0),
        "accuracy": {"seconds": 1},
        "tsa": asn1_x509.GeneralName(name="directory_name", value=_asn1_cert(signer).subject),
    }
    if request["nonce"].native is not None:
        fields["nonce"] = request["nonce"].native + nonce_delta
    return tsp.TSTInfo(fields)


def response(status: str, token: cms.ContentInfo | None = None, text: str = "") -> bytes:
    status_info: dict[str, object] = {"status": status}
    if text:
        status_info["status_string"] = [text]
    if status == "rejection":
        status_info["fail_info"] = {"bad_data_format"}
    reply: dict[str, object] = {"status": status_info}
    if token is not None:
        reply["time_stamp_token"] = token
    return TimeStampResp(reply).dump()


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
        try:
            request = tsp.TimeStampReq.load(body, strict=True)
            algorithm = request["message_imprint"]["hash_algorithm"]["algorithm"].native
            request.native  # noqa: B018 - parse everything now
        except (ValueError, TypeError, KeyError):
            return 200, response("rejection", text="request is not a DER TimeStampReq")
        if algorithm not in _HASHES or mode == "rejection":
            return 200, response("rejection", text=f"refusing {mode} request")
        signer = self.signers["no-eku" if mode == "no-eku" else "ec" if mode == "ec" else "good"]
        tst_info = make_tst_info(
            request,
            next(self._serials),
            signer,
            nonce_delta=1 if mode == "wrong-nonce" else 0,
            flip_imprint=mode == "wrong-imprint",
        )
        token = sign_tst_info(
            tst_info,
            signer,
            include_cert=bool(request["cert_req"].native),
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
        if self.headers.get("Content-Type") != "application/timestamp-query":
            status, payload = 415, b"expected Content-Type application/timestamp-query\n"
        else:
            status, payload = tsa.handle(self.path.strip("/"), body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout tests)
            self.close_connection = True
        # Otherwise the connection stays open for the client's next request, as public
        # TSAs keep it (HTTP/1.1 keep-alive).

    def log_message(self, format: str, *args: object) -> None:
        pass
