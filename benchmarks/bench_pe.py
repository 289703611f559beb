"""PE-layer benchmark: the one-pass digest+copy+checksum of signing vs ``openssl dgst``.

Usage: python benchmarks/bench_pe.py [SIZE_MIB]   (default 512)

Makes a PE file of SIZE_MIB on the fly (a real launcher plus overlay), then measures,
each in a fresh process (wall time, peak RSS): ``openssl dgst -sha256``, kmssign's
digest alone, and kmssign's signed copy with the numpy and the pure-Python checksum.
A benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_pe(path: Path, size: int) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.peutil import LAUNCHERS

    block = os.urandom(1 << 20)
    with open(path, "wb") as out:
        out.write(LAUNCHERS["t64.exe"].read_bytes())
        while out.tell() < size:
            out.write(block[: size - out.tell()])


def child(mode: str, path: Path) -> None:
    """Runs in its own process; prints 'seconds peak_rss_kib'."""
    from kmssign import checksum, pe

    if mode == "sign-python":
        checksum.word_sum = checksum.word_sum_python
    start = time.perf_counter()
    with open(path, "rb") as f:
        image = pe.parse_pe(f)
        if mode == "digest":
            pe.authenticode_digest(f, image, "sha256")
        else:
            with open(path.with_suffix(".signed"), "wb") as out:
                _, state = pe.begin_signed_copy(f, image, "sha256", out)
                pe.finish_signed_copy(out, state, b"\x30\x82\x08\x00" + bytes(2048))
    elapsed = time.perf_counter() - start
    print(f"{elapsed:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of a command."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    if cmd[0] == sys.executable:
        seconds, rss = proc.stdout.split()
        return float(seconds), int(rss)
    return elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
        return
    size = int(sys.argv[1] if len(sys.argv) > 1 else 512) << 20
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.exe"
        make_pe(path, size)
        with open(path, "rb") as f:  # warm the page cache for every contender alike
            while f.read(1 << 24):
                pass
        rows = []
        openssl = shutil.which("openssl")
        if openssl:
            rows.append(("openssl dgst -sha256", run([openssl, "dgst", "-sha256", str(path)])))
        base = rows[0][1][0] if rows else None
        me = [sys.executable, __file__, "--child"]
        try:
            import numpy  # noqa: F401

            modes = ["digest", "sign-numpy", "sign-python"]
        except ImportError:
            modes = ["digest", "sign-python"]
        for mode in modes:
            rows.append((f"kmssign {mode}", run([*me, mode, str(path)])))
        print(f"file: {size >> 20} MiB")
        for name, (seconds, rss) in rows:
            ratio = f"{seconds / base:5.2f}x" if base else "  n/a"
            print(f"{name:24s} {seconds:7.3f} s  {ratio}  peak RSS {rss / 1024:6.1f} MiB")
        print("(openssl's RSS is the peak of this process's children so far; kmssign's is its own)")


if __name__ == "__main__":
    main()
