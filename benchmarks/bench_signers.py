"""Signers side by side: one batch of N PE files through a SoftHSM2 token (PKCS#11) and
through AWS KMS (moto on loopback, with --kms-latency per call, as bench_batch.py).

Timestamps are off so that the signers alone differ; both runs use the same files'
copies, the same certificate chain and ``jobs``. Prints the wall time of each and their
ratio. Needs softhsm2 and the kmssign[pkcs11] extra.

    python benchmarks/bench_signers.py [--files 100] [--jobs 16] [--kms-latency 0.08]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_batch import issue_certificate, make_files  # noqa: E402

from kmssign.api import sign_files  # noqa: E402
from kmssign.config import Settings  # noqa: E402

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "bench-pin"


def make_token(work: Path) -> bytes:
    """A SoftHSM2 token in ``work`` holding a fresh RSA 2048 key; its public key (DER)."""
    tokens = work / "tokens"
    tokens.mkdir()
    conf = work / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench",
                    "--pin", PIN, "--so-pin", "bench-so"], check=True, capture_output=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = work / "key.p8"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    subprocess.run(["softhsm2-util", "--import", str(key_file), "--token", "bench",
                    "--label", "signing", "--id", "01", "--pin", PIN],
                   check=True, capture_output=True)
    key_file.unlink()
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def timed(files: list[Path], settings: Settings) -> float:
    start = time.perf_counter()
    report = sign_files(files, settings)
    elapsed = time.perf_counter() - start
    if not report.ok or report.count("signed") != len(files):
        raise SystemExit(f"bench: signing failed: {report.failed[:3]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--kms-latency", type=float, default=0.080)
    args = parser.parse_args()
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "KMSSIGN_PKCS11_PIN": PIN,
    })
    work = Path(tempfile.mkdtemp(prefix="kmssign-bench-signers-"))
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_services.py"), "--dir", str(work),
         "--kms-latency", str(args.kms_latency), "--tsa-latency", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        services = json.loads(proc.stdout.readline())
        import boto3

        client = boto3.client("kms", endpoint_url=services["kms"])
        key_id = client.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"][
            "KeyId"
        ]
        kms_cert = issue_certificate(
            services, client.get_public_key(KeyId=key_id)["PublicKey"], work / "kms.pem"
        )
        token_cert = issue_certificate(services, make_token(work), work / "token.pem")
        hsm_files = make_files(work / "hsm", args.files)
        kms_files = make_files(work / "kms", args.files)
        hsm = timed(hsm_files, Settings(
            pkcs11_module=Path(MODULE), pkcs11_token="bench", pkcs11_key="signing",
            certificate=token_cert, timestamp="off", jobs=args.jobs,
        ))
        kms = timed(kms_files, Settings(
            key_id=key_id, certificate=kms_cert, endpoint_url=services["kms"],
            timestamp="off", jobs=args.jobs,
        ))
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {platform.system()}")
    print(f"{args.files} distinct PE files, jobs={args.jobs}, no timestamps, RSA 2048")
    print(f"PKCS#11 (SoftHSM2): {hsm:6.2f} s  ({hsm / args.files * 1000:.1f} ms per file)")
    print(f"AWS KMS (moto, {args.kms_latency * 1000:.0f} ms/call): {kms:6.2f} s  "
          f"({kms / args.files * 1000:.1f} ms per file)")
    print(f"ratio PKCS#11 / KMS: {hsm / kms:.2f}")


if __name__ == "__main__":
    main()
