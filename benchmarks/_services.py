"""Loopback services for the benchmarks, in processes of their own (so their CPU and GIL
time is not charged to kmssign): moto's KMS server with an added latency per call (and
a call counter at ``GET /_calls``), and an RFC 3161 TSA with added latency. Prints one
JSON line with the endpoints, then serves until its standard input closes.

The stand-ins share the machine's cores with kmssign, which real services do not, so
their own overhead is kept down where it is not part of the service: moto's WSGI
application is served with keep-alive connections (as AWS keeps them; werkzeug's
development server closes each one) and without moto's per-request scan of its
package directory. KMS semantics are moto's, unchanged.

    python benchmarks/_services.py --kms-latency 0.08 --tsa-latency 0.15 --dir DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import subprocess  # noqa: E402

from tests.support.pki import TestPKI  # noqa: E402
from tests.support.tsa_server import LoopbackTSA  # noqa: E402

MOTO_SCRIPT = """
import io, json, logging, sys, threading, time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import moto.backends
from moto.server import DomainDispatcherApplication, create_backend_app

# moto's server lists its package directory on disk for every request (about 3 ms of
# CPU, more than the signature itself); on a real service that CPU is not ours.
_modules = tuple(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: iter(_modules)

latency = float(sys.argv[1])
calls = Counter()
lock = threading.Lock()
moto_app = DomainDispatcherApplication(create_backend_app)

def app(environ, start_response):
    if environ.get("PATH_INFO") == "/_calls":
        body = json.dumps(dict(calls)).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
    with lock:
        calls[operation] += 1
    time.sleep(latency)
    return moto_app(environ, start_response)

class Handler(BaseHTTPRequestHandler):
    # moto's own server (werkzeug's development server) closes every connection; AWS
    # keeps them open, so this front serves moto's WSGI application with keep-alive.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        environ = {
            "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version, "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = value
        reply = []
        def start_response(status, headers, exc_info=None):
            reply[:] = [status, headers]
        chunks = app(environ, start_response)
        try:
            payload = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        code, _, reason = reply[0].partition(" ")
        self.send_response(int(code), reason)
        for name, value in reply[1]:
            if name.lower() not in ("content-length", "connection", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST

    def log_message(self, format, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
server.shutdown()
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kms-latency", type=float, default=0.08)
    parser.add_argument("--tsa-latency", type=float, default=0.15)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    # moto in a process of its own: it and the proxy/TSA then do not share one GIL.
    moto = subprocess.Popen(
        [sys.executable, "-c", MOTO_SCRIPT, str(args.kms_latency)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert moto.stdout is not None and moto.stdin is not None
    kms_url = f"http://127.0.0.1:{moto.stdout.readline().strip()}"
    pki = TestPKI.create(args.dir / "pki")
    tsa = LoopbackTSA(pki).start()
    tsa.latency = args.tsa_latency
    # The signing PKI must be the TSA's: hand the CA to the parent as files.
    from cryptography.hazmat.primitives import serialization

    ca_key = args.dir / "pki" / "intermediate.key"
    ca_key.write_bytes(
        pki.intermediate.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    print(json.dumps({
        "kms": kms_url,
        "tsa": tsa.url("tsa"),
        "root": str(pki.root_pem),
        "intermediate": str(args.dir / "pki" / "intermediate.pem"),
        "intermediate_key": str(ca_key),
    }), flush=True)
    sys.stdin.read()
    tsa.stop()
    moto.stdin.close()
    moto.wait(timeout=30)


if __name__ == "__main__":
    main()
