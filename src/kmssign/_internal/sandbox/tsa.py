"""The sandbox's RFC 3161 timestamp server over HTTP on 127.0.0.1: every well-formed
request (``application/timestamp-query``) gets a granted token signed by the TSA
certificate, with the request's imprint and nonce, and the certificate when asked for."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

POLICY = "1.3.6.1.4.1.55555.3161.2"  # a private-arc policy: the sandbox's tokens only
DIGESTS = ("sha256", "sha384", "sha512")
QUERY_TYPE = "application/timestamp-query"


def _rejection(text: str) -> bytes:
    status = tsp.PKIStatusInfo({"status": "rejection", "status_string": [text],
                                "fail_info": {"bad_data_format"}})
    return bytes(tsp.TimeStampResp({"status": status}).dump())


class Stamper:
    """Makes the replies: one TSA certificate and key, serial numbers counted up."""

    def __init__(self, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> None:
        self.key = key
        self.cert = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
        self._serials = itertools.count(1)
        self._lock = threading.Lock()
        self.issued = 0  # tokens handed out

    def reply(self, body: bytes) -> bytes:
        """The DER TimeStampResp for the DER TimeStampReq ``body``."""
        try:
            request = tsp.TimeStampReq.load(body, strict=True)
            imprint = request["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
            nonce = request["nonce"].native
            cert_req = bool(request["cert_req"].native)
        except (ValueError, TypeError, KeyError):
            return _rejection("not a DER TimeStampReq")
        if algorithm not in DIGESTS or len(hashed) != hashlib.new(algorithm).digest_size:
            return _rejection(f"unsupported message imprint ({algorithm})")
        with self._lock:
            serial = next(self._serials)
            self.issued = serial
        info: dict[str, object] = {
            "version": "v1",
            "policy": POLICY,
            "message_imprint": {"hash_algorithm": {"algorithm": algorithm},
                                "hashed_message": hashed},
            "serial_number": serial,
            "gen_time": dt.datetime.now(dt.timezone.utc).replace(microsecond=0),
            "accuracy": {"seconds": 1},
            "tsa": asn1_x509.GeneralName(name="directory_name", value=self.cert.subject),
        }
        if nonce is not None:
            info["nonce"] = nonce
        token = self._token(tsp.TSTInfo(info), cert_req)
        return bytes(tsp.TimeStampResp({"status": {"status": "granted"},
                                        "time_stamp_token": token}).dump())

    def _token(self, tst_info: tsp.TSTInfo, cert_req: bool) -> cms.ContentInfo:
        content = tst_info.dump()
        ess = tsp.SigningCertificateV2({"certs": [
            {"cert_hash": hashlib.sha256(self.cert.dump()).digest()}]})
        attributes = [
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute({"type": "message_digest",
                              "values": [hashlib.sha256(content).digest()]}),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [ess]}),
        ]
        attributes.sort(key=lambda a: a.dump())  # DER orders a SET OF by encoding
        signed_attrs = cms.CMSAttributes(attributes)
        signature = self.key.sign(signed_attrs.dump(), padding.PKCS1v15(), hashes.SHA256())
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value={
                "issuer": self.cert.issuer, "serial_number": self.cert.serial_number}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm(
                {"algorithm": "rsassa_pkcs1v15", "parameters": core.Null()}),
            "signature": signature,
        })
        signed_data = cms.SignedData({
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "tst_info", "content": tst_info},
            "certificates": [self.cert] if cert_req else [],
            "signer_infos": [signer_info],
        })
        if not cert_req:
            del signed_data["certificates"]
        return cms.ContentInfo({"content_type": "signed_data", "content": signed_data})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        stamper: Stamper = self.server.stamper  # type: ignore[attr-defined]
        if self.headers.get("Content-Type") != QUERY_TYPE:
            status, kind, payload = 415, "text/plain", f"expected {QUERY_TYPE}\n".encode()
        else:
            status, kind, payload = 200, "application/timestamp-reply", stamper.reply(body)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


class TimestampServer:
    """``start()`` serves on 127.0.0.1 (``port`` 0: any free port) in a thread; ``url``."""

    def __init__(self, stamper: Stamper, port: int = 0) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.stamper = stamper  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="kmssign-sandbox-tsa")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/tsa"

    def start(self) -> TimestampServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
