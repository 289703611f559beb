"""Batch signing throughput: jobs=1 against jobs=16 with realistic service latency.

Starts moto's KMS server (its server-mode WSGI application, on loopback) adding
--kms-latency per call and an RFC 3161 TSA adding --tsa-latency per request (both in
other processes; see benchmarks/_services.py for how their own overhead is kept off the
shared cores), makes N distinct PE files, and prints in one run: the sequential wall
time (a sample of files, scaled to N), the wall time at jobs=16 (median of --repeat
batches, fresh files each), the floor N x (kms + tsa latency) / 16 and the ratio to it
(target: 1.2x), the floor of kmssign's pipeline (jobs requests in flight to each service:
the slower service's N x latency / 16, plus one call of the other) and the ratio to that,
kmssign's CPU per file, and the number of KMS Sign calls (target: == N). The last line,
``RESULT {...}``, is for benchmarks/compare.py.

    python benchmarks/bench_batch.py [--files 300] [--jobs 16] [--sample 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pip
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kmssign.api import sign_files
from kmssign.config import Settings

HERE = Path(__file__).resolve().parent
LAUNCHER = Path(pip.__file__).parent / "_vendor" / "distlib" / "t64.exe"


def make_files(directory: Path, count: int) -> list[Path]:
    directory.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = directory / f"module{i:04d}.dll"
        shutil.copyfile(LAUNCHER, path)
        with open(path, "ab") as f:
            f.write(os.urandom(64) + f"#{i}".encode())
        paths.append(path)
    return paths


def issue_certificate(services: dict[str, str], public_der: bytes, out: Path) -> Path:
    import datetime as dt

    ca_cert = x509.load_pem_x509_certificate(Path(services["intermediate"]).read_bytes())
    ca_key = serialization.load_pem_private_key(
        Path(services["intermediate_key"]).read_bytes(), None
    )
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench signer")]))
        .issuer_name(ca_cert.subject)
        .public_key(serialization.load_der_public_key(public_der))  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    out.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    return out


def calls(kms: str) -> dict[str, int]:
    with urllib.request.urlopen(kms + "/_calls") as reply:
        return dict(json.load(reply))


def timed_run(paths: list[Path], settings: Settings) -> float:
    return timed_run_cpu(paths, settings)[0]


def timed_run_cpu(paths: list[Path], settings: Settings) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of signing ``paths``."""
    start, cpu = time.perf_counter(), time.process_time()
    report = sign_files(paths, settings)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if not report.ok or report.count("signed") != len(paths):
        raise SystemExit(f"bench: signing failed: {report.failed[:3]}")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--sample", type=int, default=20, help="files signed at jobs=1")
    parser.add_argument("--kms-latency", type=float, default=0.080)
    parser.add_argument("--tsa-latency", type=float, default=0.150)
    parser.add_argument("--repeat", type=int, default=3,
                        help="batches signed at --jobs (fresh files each); the median counts")
    parser.add_argument("--services-python", default=sys.executable,
                        help="interpreter with moto[server] for the stand-in services")
    args = parser.parse_args()

    os.environ.update({
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    })
    work = Path(tempfile.mkdtemp(prefix="kmssign-bench-"))
    proc = subprocess.Popen(
        [args.services_python, str(HERE / "_services.py"), "--dir", str(work),
         "--kms-latency", str(args.kms_latency), "--tsa-latency", str(args.tsa_latency)],
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
        public_der = client.get_public_key(KeyId=key_id)["PublicKey"]
        cert = issue_certificate(services, public_der, work / "signer.pem")
        settings = Settings(
            key_id=key_id, certificate=cert, endpoint_url=services["kms"],
            timestamp_urls=(services["tsa"],), jobs=args.jobs,
        )
        sample = make_files(work / "sample", args.sample)
        before = calls(services["kms"])
        sequential = timed_run(sample, Settings(**{**settings.__dict__, "jobs": 1}))
        runs: list[tuple[float, float]] = []
        counts: list[int] = []
        for n in range(args.repeat):
            files = make_files(work / f"batch{n}", args.files)
            mid = calls(services["kms"])
            runs.append(timed_run_cpu(files, settings))
            counts.append(calls(services["kms"]).get("Sign", 0) - mid.get("Sign", 0))
        after = calls(services["kms"])
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    n = args.files
    per_file = args.kms_latency + args.tsa_latency
    floor = n * per_file / args.jobs
    scaled = sequential / args.sample * n
    parallel = statistics.median(wall for wall, _ in runs)
    cpu_per_file = statistics.median(cpu for _, cpu in runs) / n
    gpk = after.get("GetPublicKey", 0) - before.get("GetPublicKey", 0)
    ratio = parallel / floor
    # jobs requests in flight to each service: the slower one bounds the batch, the other
    # adds one call (the first file's Sign before any timestamp, or the last timestamp)
    slower, faster = sorted((args.kms_latency, args.tsa_latency), reverse=True)
    pipeline_floor = n * slower / args.jobs + faster
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {platform.system()}")
    print(f"latency injected: KMS {args.kms_latency * 1000:.0f} ms/call, "
          f"TSA {args.tsa_latency * 1000:.0f} ms/request; {n} distinct PE files")
    print(f"jobs=1:  {scaled:7.2f} s for {n} files (measured {sequential:.2f} s "
          f"for {args.sample}, scaled)")
    print(f"jobs={args.jobs}: {parallel:7.2f} s for {n} files (median of {args.repeat} batches: "
          f"{', '.join(f'{wall:.2f}' for wall, _ in runs)})")
    print(f"floor N x {per_file * 1000:.0f} ms / {args.jobs}: {floor:7.2f} s")
    print(f"ratio to floor: {ratio:.2f}x (target <= 1.2x): {'OK' if ratio <= 1.2 else 'MISSED'}")
    print(f"pipeline floor N x {slower * 1000:.0f} ms / {args.jobs} + {faster * 1000:.0f} ms: "
          f"{pipeline_floor:5.2f} s; ratio to it: {parallel / pipeline_floor:.2f}x")
    print(f"speed-up over jobs=1: {scaled / parallel:.1f}x")
    print(f"kmssign's CPU per file (this process, session included): "
          f"{cpu_per_file * 1000:.1f} ms")
    print(f"KMS Sign calls per batch: {counts} for {n} files each (target == N): "
          f"{'OK' if set(counts) == {n} else 'MISSED'}; GetPublicKey calls: {gpk} "
          f"for {args.repeat + 1} runs (one per run)")
    print("RESULT " + json.dumps({
        "bench": "batch", "files": n, "jobs": args.jobs, "wall_s": parallel, "floor_s": floor,
        "ratio": ratio, "pipeline_floor_s": pipeline_floor,
        "pipeline_ratio": parallel / pipeline_floor, "cpu_per_file_ms": cpu_per_file * 1000,
        "sign_calls": counts,
    }))


if __name__ == "__main__":
    main()
