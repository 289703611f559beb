"""A short run: ``kmssign sign`` of one small file against a Python process that imports
the same third-party libraries and does nothing else.

Usage: python benchmarks/bench_startup.py [ROUNDS]   (default 20 rounds)

Installer build tools (Inno Setup's ``SignTool=``, NSIS's ``!finalize``) and build hooks
run ``kmssign sign`` once per file, so each run's fixed cost counts. The "same
libraries" process imports exactly the third-party modules a ``kmssign sign`` run holds
at its end (asked of a run first), so the difference is kmssign's own modules, the
standard-library modules only it uses, and its work on the file (key, certificate,
signature, self-check, atomic write). Both are started as the console script starts
``kmssign``. Prints the median wall and CPU (user + system) time of each, in
interleaved rounds, and the ratio (target: 1.3x); ``kmssign --version`` and ``python -c
pass`` for scale. Wall times on a shared machine are noisy; the CPU times less so. The
last line, ``RESULT {...}``, is for benchmarks/compare.py.
A benchmark, not a test: it prints numbers, asserts nothing.
"""

from __future__ import annotations

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
sys.path.insert(0, str(ROOT))

from tests.support.peutil import LAUNCHERS  # noqa: E402
from tests.support.pki import TestPKI  # noqa: E402

CLI = "import sys; from kmssign.frontends.cli.main import main; sys.exit(main())"
THIRD_PARTY = (
    "import json, sys; from kmssign.frontends.cli.main import main; code = main(); "
    "print(json.dumps(sorted(m for m in sys.modules if m.partition('.')[0] not in "
    "sys.stdlib_module_names and not m.startswith(('kmssign', '_')))))"
)


# An installed package has its bytecode compiled (pip does it at install time); with
# PYTHONDONTWRITEBYTECODE set, a checkout's modules would be compiled again by every run.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process run to completion."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd,
                            env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"bench: {cmd[:4]} failed: {err}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    work = Path(tempfile.mkdtemp(prefix="kmssign-bench-startup-"))
    try:
        identity = TestPKI.create(work / "pki").identity("rsa2048")
        small = work / "small.exe"
        out = work / "signed.exe"
        shutil.copyfile(LAUNCHERS["t64.exe"], small)
        sign = ["sign", str(small), "--key-file", str(identity.key_path), "--cert",
                str(identity.cert_path), "--no-timestamp", "-o", str(out), "--quiet"]
        listing = subprocess.run([sys.executable, "-c", THIRD_PARTY, *sign], cwd=work,
                                 capture_output=True, text=True, check=True, env=ENV)
        libraries = json.loads(listing.stdout.strip().splitlines()[-1])
        out.unlink()
        imports = "; ".join(f"import {name}" for name in libraries)
        tools = {
            "kmssign sign (small file)": [sys.executable, "-c", CLI, *sign],
            "the same libraries imported": [sys.executable, "-c", imports],
            "kmssign --version": [sys.executable, "-c", CLI, "--version"],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
        for _ in range(2):  # warm the page cache and the bytecode caches
            for cmd in tools.values():
                out.unlink(missing_ok=True)
                measure(cmd, work)
        for _ in range(rounds):
            for name, cmd in tools.items():
                out.unlink(missing_ok=True)
                results[name].append(measure(cmd, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    tops = sorted({name.partition(".")[0] for name in libraries})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {platform.system()}; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"one 100 KiB PE file, key file, no timestamp; median of {rounds} interleaved rounds; "
          f"third-party libraries a sign run imports: {', '.join(tops)} "
          f"({len(libraries)} modules)")
    wall = {n: statistics.median(w for w, _ in r) for n, r in results.items()}
    cpu = {n: statistics.median(c for _, c in r) for n, r in results.items()}
    base = "the same libraries imported"
    for name in tools:
        print(f"{name:30s} wall {wall[name] * 1000:7.1f} ms ({wall[name] / wall[base]:4.2f}x)  "
              f"CPU {cpu[name] * 1000:7.1f} ms ({cpu[name] / cpu[base]:4.2f}x)")
    ratio = wall["kmssign sign (small file)"] / wall[base]
    print(f"kmssign sign of one small file / the same libraries imported: {ratio:.2f}x "
          f"(target <= 1.3x): {'OK' if ratio <= 1.3 else 'MISSED'}")
    print("RESULT " + json.dumps({
        "bench": "startup", "sign_s": wall["kmssign sign (small file)"], "libraries_s": wall[base],
        "version_s": wall["kmssign --version"], "python_s": wall["python -c pass"],
        "ratio": ratio, "cpu_ratio": cpu["kmssign sign (small file)"] / cpu[base],
    }))


if __name__ == "__main__":
    main()
