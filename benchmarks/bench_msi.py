"""Signing one large MSI package: ``kmssign sign`` against ``osslsigncode sign``.

Usage: python benchmarks/bench_msi.py [SIZE_MIB [ROUNDS]]   (default 300 MiB, 3 rounds)

Builds a package of SIZE_MIB with wixl (three files of random bytes in its embedded
cabinet), then runs both tools as whole processes in interleaved rounds, a key file and
no timestamp, and prints the median wall time and peak RSS of each and kmssign's ratio.
Targets (issue 21): no slower than osslsigncode (ratio <= 1.0), peak RSS under 100 MiB.
Each round's output is checked by ``osslsigncode verify``. A benchmark, not a test: it
prints numbers, asserts nothing else.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_sign import compile_kmssign, measure  # noqa: E402
from tests.support import msiutil  # noqa: E402
from tests.support.pki import TestPKI  # noqa: E402


def make_package(work: Path, size_mib: int) -> Path:
    payload = work / "payload"
    payload.mkdir()
    files = {}
    block = os.urandom(1 << 20)
    for index in range(3):
        path = payload / f"part{index}.bin"
        with open(path, "wb") as f:
            for _ in range(size_mib // 3):
                f.write(os.urandom(64) + block[64:])  # no two MiB alike
        files[path.name] = path
    return msiutil.build_msi(work / "big.msi", files, name="Bench")


def main() -> None:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    osslsigncode = shutil.which("osslsigncode")
    if not osslsigncode or not msiutil.WIXL:
        raise SystemExit("bench: needs osslsigncode and wixl (apt-get install osslsigncode wixl)")
    work = Path(tempfile.mkdtemp(prefix="kmssign-bench-msi-"))
    try:
        pki = TestPKI.create(work / "pki")
        identity = pki.identity("rsa2048")
        src = make_package(work, size_mib)
        out = work / "signed.msi"
        tools = {
            "kmssign sign": [
                sys.executable, "-m", "kmssign", "sign", str(src),
                "--key-file", str(identity.key_path), "--cert", str(identity.cert_path),
                "--chain", str(identity.chain_path), "--no-timestamp", "-o", str(out), "--quiet",
            ],
            "osslsigncode sign": [
                osslsigncode, "sign", "-certs", str(identity.cert_path),
                "-ac", str(identity.chain_path), "-key", str(identity.key_path),
                "-in", str(src), "-out", str(out),
            ],
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
        compile_kmssign()
        measure(["cat", str(src)])  # warm the page cache
        for _ in range(rounds):
            for name, cmd in tools.items():
                out.unlink(missing_ok=True)  # osslsigncode refuses to overwrite
                os.sync()
                results[name].append(measure(cmd))
                subprocess.run(
                    [osslsigncode, "verify", "-CAfile", str(pki.root_pem), "-in", str(out)],
                    check=True, capture_output=True,
                )
        size = src.stat().st_size
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {platform.system()}")
    print(f"file: {size / (1 << 20):.0f} MiB MSI (wixl, embedded cabinet), median of "
          f"{rounds} interleaved rounds")
    base = statistics.median(w for w, _ in results["osslsigncode sign"])
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        rss = max(r for _, r in runs)
        print(f"{name:18s} {wall:7.3f} s  {wall / base:5.2f}x osslsigncode  "
              f"peak RSS {rss:6.1f} MiB")
    ours = results["kmssign sign"]
    ratio = statistics.median(w for w, _ in ours) / base
    rss = max(r for _, r in ours)
    print(f"kmssign targets: time <= 1.0x osslsigncode: {ratio:.2f}x "
          f"{'OK' if ratio <= 1.0 else 'MISSED'}; peak RSS < 100 MiB: {rss:.1f} MiB "
          f"{'OK' if rss < 100 else 'MISSED'}")


if __name__ == "__main__":
    main()
