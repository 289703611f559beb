"""Loopback services for the benchmarks, in processes of their own (so their CPU and GIL
time is not charged to kmssign): moto's KMS server with an added latency per call (and
a call counter at ``GET /_calls``), and an RFC 3161 TSA with added latency. Prints one
JSON line with the endpoints, then serves until its standard input closes.

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

from tests.pki import TestPKI  # noqa: E402
from tests.tsa_server import LoopbackTSA  # noqa: E402

MOTO_SCRIPT = """
import json, logging, sys, threading, time
from collections import Counter
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

logging.getLogger("werkzeug").setLevel(logging.ERROR)
latency = float(sys.argv[1])
calls = Counter()
lock = threading.Lock()
moto = DomainDispatcherApplication(create_backend_app)

def app(environ, start_response):
    if environ.get("PATH_INFO") == "/_calls":
        body = json.dumps(dict(calls)).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
    with lock:
        calls[operation] += 1
    time.sleep(latency)
    return moto(environ, start_response)

server = make_server("127.0.0.1", 0, app, threaded=True)
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
