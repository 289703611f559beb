"""A minimal RFC 3161 timestamp server on 127.0.0.1 for the demo.

It answers ``POST /`` with ``Content-Type: application/timestamp-query``: it reads the
TimeStampReq, builds a TSTInfo (the request's imprint and nonce, the current time, a
serial number) and returns it as a CMS SignedData token signed by the demo TSA key, with
the ESS signing-certificate-v2 attribute that binds the token to the TSA certificate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import Encoding
from demo_pki import Issued

POLICY = "1.3.6.1.4.1.55555.3161.2"  # a private-arc policy id for demo tokens
_ACCEPTED_HASHES = frozenset({"sha256", "sha384", "sha512"})


class DemoTSA:
    """The server thread and the token maker."""

    def __init__(self, identity: Issued) -> None:
        if identity.key is None:
            raise ValueError("the TSA needs its private key")
        self._key = identity.key
        self._cert = asn1_x509.Certificate.load(identity.cert.public_bytes(Encoding.DER))
        self._serials = itertools.count(1)
        self._lock = threading.Lock()
        self.requests = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.tsa = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def start(self) -> DemoTSA:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def reply(self, body: bytes) -> bytes:
        """The DER TimeStampResp for the DER TimeStampReq ``body``."""
        with self._lock:
            self.requests += 1
            serial = next(self._serials)
        try:
            request = tsp.TimeStampReq.load(body, strict=True)
            imprint = request["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
            nonce = request["nonce"].native
            want_cert = bool(request["cert_req"].native)
        except (ValueError, TypeError, KeyError):
            return _refusal("not a DER TimeStampReq")
        if algorithm not in _ACCEPTED_HASHES:
            return _refusal(f"hash algorithm {algorithm} is not accepted")
        info: dict[str, object] = {
            "version": "v1",
            "policy": POLICY,
            "message_imprint": {"hash_algorithm": {"algorithm": algorithm},
                                "hashed_message": hashed},
            "serial_number": serial,
            "gen_time": dt.datetime.now(dt.timezone.utc).replace(microsecond=0),
            "tsa": asn1_x509.GeneralName(name="directory_name", value=self._cert.subject),
        }
        if nonce is not None:
            info["nonce"] = nonce
        token = self._sign(tsp.TSTInfo(info).dump(), want_cert)
        reply = tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token})
        der: bytes = reply.dump()
        return der

    def _sign(self, tst_info: bytes, include_cert: bool) -> cms.ContentInfo:
        """Wrap the DER TSTInfo in SignedData signed with the TSA key (RSA, SHA-256)."""
        signing_certificate = {
            "certs": [{
                "hash_algorithm": {"algorithm": "sha256"},
                "cert_hash": hashlib.sha256(self._cert.dump()).digest(),
                "issuer_serial": {
                    "issuer": [asn1_x509.GeneralName(name="directory_name",
                                                     value=self._cert.issuer)],
                    "serial_number": self._cert.serial_number,
                },
            }],
        }
        attributes = cms.CMSAttributes([
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [hashlib.sha256(tst_info).digest()]},
            {"type": "signing_certificate_v2", "values": [signing_certificate]},
        ])
        # The signature covers the DER SET OF attributes (not the [0] IMPLICIT form).
        signature = self._key.sign(attributes.dump(), padding.PKCS1v15(), hashes.SHA256())
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={"issuer": self._cert.issuer, "serial_number": self._cert.serial_number},
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": attributes,
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
            "signature": signature,
        })
        signed_data: dict[str, object] = {
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "tst_info",
                                   "content": core.ParsableOctetString(tst_info)},
            "signer_infos": [signer_info],
        }
        if include_cert:
            signed_data["certificates"] = [self._cert]
        return cms.ContentInfo({"content_type": "signed_data",
                                "content": cms.SignedData(signed_data)})


def _refusal(text: str) -> bytes:
    """A TimeStampResp with status rejection and no token, DER-encoded by hand (asn1crypto's
    TimeStampResp spec insists on a token)."""
    status = {"status": "rejection", "status_string": [text], "fail_info": {"bad_request"}}
    body: bytes = tsp.PKIStatusInfo(status).dump()
    return b"\x30" + _der_length(len(body)) + body


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Type") != "application/timestamp-query":
            status, payload = 415, b"expected Content-Type application/timestamp-query\n"
        else:
            tsa: DemoTSA = self.server.tsa  # type: ignore[attr-defined]
            status, payload = 200, tsa.reply(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the demo prints its own steps
