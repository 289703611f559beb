"""Loopback services for the benchmarks, in a process of their own (so their CPU and GIL
time is not charged to kmssign): moto's KMS server behind a latency proxy, and an
RFC 3161 TSA with added latency. Prints one JSON line with the endpoints, then serves
until its standard input closes.

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

from tests.kms_proxy import KmsProxy  # noqa: E402
from tests.pki import TestPKI  # noqa: E402
from tests.tsa_server import LoopbackTSA  # noqa: E402

MOTO_SCRIPT = """
import logging, sys
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kms-latency", type=float, default=0.08)
    parser.add_argument("--tsa-latency", type=float, default=0.15)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    # moto in a process of its own: it and the proxy/TSA then do not share one GIL.
    moto = subprocess.Popen(
        [sys.executable, "-c", MOTO_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )
    assert moto.stdout is not None and moto.stdin is not None
    moto_port = moto.stdout.readline().strip()
    kms = KmsProxy(f"http://127.0.0.1:{moto_port}", latency=args.kms_latency)
    kms.start()
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
        "kms": kms.endpoint_url,
        "tsa": tsa.url("tsa"),
        "root": str(pki.root_pem),
        "intermediate": str(args.dir / "pki" / "intermediate.pem"),
        "intermediate_key": str(ca_key),
    }), flush=True)
    sys.stdin.read()
    tsa.stop()
    kms.stop()
    moto.stdin.close()
    moto.wait(timeout=30)


if __name__ == "__main__":
    main()
