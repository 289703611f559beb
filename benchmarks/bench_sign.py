"""Signing one large file: kmssign against ``openssl dgst -sha256`` and ``osslsigncode sign``.

Usage: python benchmarks/bench_sign.py [SIZE_MIB [ROUNDS]]   (default 512 MiB, 3 rounds)

Makes a PE file of SIZE_MIB on the fly (a real launcher plus overlay data, which
Authenticode hashes), then measures each tool as a whole process, in interleaved
rounds, and prints the median wall time and the peak RSS of each, and kmssign's ratios.
kmssign runs its real CLI: ``kmssign sign FILE --key-file K --cert C --no-timestamp -o
OUT`` (a key file, so no network is timed). Targets (issue 24): no slower than
``osslsigncode sign``, on the default install too, and 64 MiB peak RSS. It also times
the same command on a small file: the fixed cost of a run (Python start, imports, exit),
a bare ``python -c pass``: what any Python program pays here before its first line,
and the "Python floor" (benchmarks/_floor.py): a process that only hashes the file
while the kernel copies it, the least any Python signer pays for these bytes, and
that floor plus the PE checksum summed as this install can (numpy with ``[fast]``, the
standard library without). The last line, ``RESULT {...}``, is for benchmarks/compare.py.
kmssign's modules are compiled to bytecode first, as installing the package does (a
development checkout under PYTHONDONTWRITEBYTECODE would otherwise recompile them on
every run).
A benchmark, not a test: it prints numbers, asserts nothing.
"""

from __future__ import annotations

import compileall
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR = Path(__file__).resolve().parent / "_floor.py"
sys.path.insert(0, str(ROOT))

from tests.support.peutil import LAUNCHERS  # noqa: E402
from tests.support.pki import TestPKI  # noqa: E402


def make_pe(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as out:
        out.write(LAUNCHERS["t64.exe"].read_bytes())
        while out.tell() < size:
            out.write(block[: size - out.tell()])


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one process run to completion."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"bench: {cmd[0]} failed ({proc.returncode}): {err}")
    return wall, usage.ru_maxrss / 1024


def compile_kmssign() -> None:
    """Write kmssign's bytecode caches, as ``pip install`` does for an installed package."""
    import kmssign

    for folder in kmssign.__path__:
        compileall.compile_dir(folder, quiet=1)


def have_numpy() -> bool:
    # Looked up, not imported: a child's peak RSS starts from this process's size at
    # the fork, so importing numpy here would inflate every row's figure.
    return importlib.util.find_spec("numpy") is not None


def main() -> None:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    work = Path(tempfile.mkdtemp(prefix="kmssign-bench-sign-"))
    try:
        pki = TestPKI.create(work / "pki")
        identity = pki.identity("rsa2048")
        src = work / "big.exe"
        make_pe(src, size_mib << 20)
        small = work / "small.exe"
        shutil.copyfile(LAUNCHERS["t64.exe"], small)
        out = work / "signed.exe"

        def kmssign(path: Path) -> list[str]:
            return [
                sys.executable, "-m", "kmssign", "sign", str(path),
                "--key-file", str(identity.key_path), "--cert", str(identity.cert_path),
                "--no-timestamp", "-o", str(out), "--quiet",
            ]

        tools: dict[str, list[str]] = {
            "openssl dgst -sha256": ["openssl", "dgst", "-sha256", str(src)],
            "kmssign sign": kmssign(src),
            # the same command on a 100 KiB launcher: what every run costs before and
            # after the file's bytes (interpreter start, imports, key, exit)
            "kmssign sign (small)": kmssign(small),
            "python -c pass": [sys.executable, "-c", "pass"],
            # the least a Python signer can pay for these bytes (see _floor.py)
            "Python floor": [sys.executable, str(FLOOR), str(src), str(out)],
        }
        # the same with the PE checksum summed as this install can (numpy or not)
        tools["Python floor+checksum"] = [
            sys.executable, str(FLOOR), str(src), str(out), "--checksum",
        ]
        if shutil.which("osslsigncode"):
            tools["osslsigncode sign"] = [
                "osslsigncode", "sign", "-certs", str(identity.cert_path),
                "-key", str(identity.key_path), "-in", str(src), "-out", str(out),
            ]
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
        compile_kmssign()
        measure(tools["openssl dgst -sha256"])  # warm the page cache
        for _ in range(rounds):
            for name, cmd in tools.items():
                out.unlink(missing_ok=True)  # osslsigncode refuses to overwrite
                # Flush what the previous tool wrote, so no run pays for another's writeback.
                os.sync()
                results[name].append(measure(cmd))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    accel = "numpy present (fast PE checksum)" if have_numpy() else (
        "numpy absent (pure-Python PE checksum)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {platform.system()}; {accel}")
    print(f"file: {size_mib} MiB PE (launcher + overlay), median of {rounds} interleaved rounds")
    base = statistics.median(w for w, _ in results["openssl dgst -sha256"])
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        rss = max(r for _, r in runs)
        print(f"{name:22s} {wall:7.3f} s  {wall / base:5.2f}x openssl  peak RSS {rss:6.1f} MiB")
    ours = results["kmssign sign"]
    ratio = statistics.median(w for w, _ in ours) / base
    fixed = statistics.median(w for w, _ in results["kmssign sign (small)"])
    print(f"kmssign's fixed cost per run (small file) is {fixed / base:.2f}x openssl's whole "
          f"time; {size_mib} MiB add {statistics.median(w for w, _ in ours) - fixed:.3f} s")
    floor = statistics.median(w for w, _ in results["Python floor"])
    line = (f"Python floor (hash beside the kernel's copy, nothing else) is "
            f"{floor / base:.2f}x openssl")
    floor_sum = statistics.median(w for w, _ in results["Python floor+checksum"])
    how = "numpy" if have_numpy() else "standard library"
    line += f"; with the PE checksum ({how}) {floor_sum / base:.2f}x"
    print(line)
    rss = max(r for _, r in ours)
    wall = statistics.median(w for w, _ in ours)
    figures = {
        "bench": "sign", "size_mib": size_mib, "numpy": have_numpy(),
        "kmssign_s": wall, "openssl_s": base, "rss_mib": rss,
        "floor_s": floor, "floor_checksum_s": floor_sum,
        "small_file_s": fixed,
    }
    if "osslsigncode sign" in results:
        ossl = statistics.median(w for w, _ in results["osslsigncode sign"])
        figures["osslsigncode_s"] = ossl
        print(f"kmssign targets: time <= 1.0x osslsigncode: {wall / ossl:.2f}x "
              f"{'OK' if wall <= ossl else 'MISSED'}; peak RSS <= 64 MiB: {rss:.1f} MiB "
              f"{'OK' if rss <= 64 else 'MISSED'}")
    print(f"kmssign / openssl dgst: {ratio:.2f}x")
    print("RESULT " + json.dumps(figures))


if __name__ == "__main__":
    main()
