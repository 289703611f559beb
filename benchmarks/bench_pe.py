"""PE-layer benchmark: the one-pass digest+copy+checksum of signing vs ``openssl dgst``.

Usage: python benchmarks/bench_pe.py [SIZE_MIB [ROUNDS]]   (default 512 MiB, 3 rounds)

Makes a PE file of SIZE_MIB on the fly (a real launcher plus overlay), then measures,
each in a fresh process (wall time, peak RSS): ``openssl dgst -sha256``, kmssign's
digest alone, and kmssign's signed copy (digest + copy + checksum in one pass) with the
numpy checksum, without the hashing thread, and with the pure-Python checksum.
A benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kmssign._internal.pe.digest import authenticode_digest
from kmssign._internal.pe.image import parse_pe
from kmssign._internal.pe.signedcopy import begin_signed_copy, finish_signed_copy

ROOT = Path(__file__).resolve().parent.parent


def make_pe(path: Path, size: int) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.peutil import LAUNCHERS

    block = os.urandom(1 << 20)
    with open(path, "wb") as out:
        out.write(LAUNCHERS["t64.exe"].read_bytes())
        while out.tell() < size:
            out.write(block[: size - out.tell()])


def child(mode: str, path: Path) -> None:
    """Runs in its own process; prints 'seconds peak_rss_kib'."""
    from kmssign._internal.pe import checksum, hashing

    if mode == "sign-python":
        checksum.word_sum = checksum.word_sum_python
    if mode == "sign-inline":  # no hashing thread
        hashing.THREAD_MIN = 1 << 62
    target = path.with_suffix(".signed")
    target.unlink(missing_ok=True)  # a fresh file, as signing writes (not a truncation)
    start = time.perf_counter()
    with open(path, "rb") as f:
        image = parse_pe(f)
        if mode == "digest":
            authenticode_digest(f, image, "sha256")
        else:
            with open(target, "w+b") as out:  # read-write, as kmssign's temporary file
                _, state = begin_signed_copy(f, image, "sha256", out)
                finish_signed_copy(out, state, b"\x30\x82\x08\x00" + bytes(2048))
    elapsed = time.perf_counter() - start
    # VmHWM (not ru_maxrss, which survives exec and so includes the parent's size)
    status = Path("/proc/self/status").read_text()
    hwm = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    print(f"{elapsed:.3f} {hwm}")


GNU_TIME = shutil.which("time") if Path("/usr/bin/time").exists() else None


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of a command (kmssign children report their own)."""
    own = cmd[0] == sys.executable
    if not own and GNU_TIME:  # its child's ru_maxrss is the command's own peak
        cmd = [GNU_TIME, "-f", "%M", *cmd]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    if own:
        seconds, rss = proc.stdout.split()
        return float(seconds), int(rss)
    return elapsed, int(proc.stderr.split()[-1]) if GNU_TIME else 0


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
        return
    size = int(sys.argv[1] if len(sys.argv) > 1 else 512) << 20
    rounds = int(sys.argv[2] if len(sys.argv) > 2 else 3)
    me = [sys.executable, __file__, "--child"]
    modes = ["digest", "sign-numpy", "sign-inline", "sign-python"]
    try:
        import numpy  # noqa: F401
    except ImportError:
        modes.remove("sign-numpy")  # the default path then is the pure-Python checksum
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.exe"
        make_pe(path, size)
        with open(path, "rb") as f:  # warm the page cache for every contender alike
            while f.read(1 << 24):
                pass
        run([*me, modes[1], str(path)])  # warm-up: first touch of the output's pages
        commands = {f"kmssign {mode}": [*me, mode, str(path)] for mode in modes}
        openssl = shutil.which("openssl")
        if openssl:
            commands = {"openssl dgst -sha256": [openssl, "dgst", "-sha256", str(path)]} | commands
        results: dict[str, list[tuple[float, int]]] = {name: [] for name in commands}
        for _ in range(rounds):  # interleaved, so load changes hit every contender alike
            for name, cmd in commands.items():
                results[name].append(run(cmd))
    print(
        f"file: {size >> 20} MiB, {rounds} rounds, cpus: {os.cpu_count()}, "
        f"load average: {os.getloadavg()[0]:.2f}"
    )
    base = statistics.median(t for t, _ in results["openssl dgst -sha256"]) if openssl else 0
    for name, rows in results.items():
        times = [t for t, _ in rows]
        median = statistics.median(times)
        ratio = f"{median / base:5.2f}x" if base else "  n/a"
        rss = max(r for _, r in rows) / 1024
        print(
            f"{name:22s} median {median:6.3f} s ({ratio})  best {min(times):6.3f} s"
            f"  peak RSS {rss:6.1f} MiB"
        )
    print("(kmssign times are in-process, without interpreter start-up)")


if __name__ == "__main__":
    main()
