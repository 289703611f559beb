"""Every benchmark on the default install and on ``kmssign[fast]``, side by side, in one run.

Usage:
    python benchmarks/compare.py --default /path/to/venv/bin/python \\
        --fast /path/to/venv-fast/bin/python [--quick]

``--default`` is an interpreter where kmssign is installed without extras (``pip install
kmssign``: no numpy, no isal), ``--fast`` one with ``kmssign[fast]`` (or ``[test]``, which
includes it). Both run this checkout's code (``src/`` first on ``PYTHONPATH``). The batch
benchmark's stand-in services (moto's KMS server, the TSA) need ``moto[server]``: they run
under ``--services`` (default: the ``--fast`` interpreter), since they are not what is
measured. Each benchmark runs for one install, then the other; each compares its
contenders in interleaved rounds and prints medians (see each script). ``--quick`` makes
the files smaller and the rounds fewer, for a check that everything runs; its figures
are not the ones to quote.

The machine is shared when it has other work: ratios between the two installs move with
the load, the ratios inside one benchmark (kmssign against osslsigncode, against the
floor) less so. The load average is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def run(python: str, script: str, args: list[str]) -> tuple[dict[str, object], str]:
    """The RESULT figures of one benchmark run, and everything it printed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([python, str(HERE / script), *args], env=env,
                          capture_output=True, text=True, check=False)
    result: dict[str, object] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    if proc.returncode != 0 or not result:
        print(f"compare: {script} under {python} failed ({proc.returncode}):\n"
              f"{proc.stdout}{proc.stderr}", file=sys.stderr)
    return result, proc.stdout


def extras(python: str) -> str:
    code = ("import importlib.util as u; print(','.join(m for m in ('numpy', 'isal') "
            "if u.find_spec(m)) or 'none')")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


ROWS: list[tuple[str, str, str, str]] = [
    # (benchmark, key, label, format)
    ("sign", "kmssign_s", "one large file: kmssign sign", "{:.2f} s"),
    ("sign", "osslsigncode_s", "one large file: osslsigncode sign", "{:.2f} s"),
    ("sign", "vs_osslsigncode", "  kmssign / osslsigncode (target <= 1.0x)", "{:.2f}x"),
    ("sign", "openssl_s", "one large file: openssl dgst -sha256", "{:.2f} s"),
    ("sign", "floor_checksum_s", "  Python floor: hash + copy + checksum", "{:.2f} s"),
    ("sign", "rss_mib", "  kmssign peak RSS", "{:.0f} MiB"),
    ("batch", "wall_s", "batch of 300 files (--quick: 48), --jobs 16", "{:.2f} s"),
    ("batch", "floor_s", "  latency floor: files x 230 ms / 16", "{:.2f} s"),
    ("batch", "ratio", "  to the floor (target <= 1.2x)", "{:.2f}x"),
    ("batch", "pipeline_floor_s", "  pipeline floor: files x 150 ms / 16 + 80 ms", "{:.2f} s"),
    ("batch", "pipeline_ratio", "  to the pipeline floor", "{:.2f}x"),
    ("batch", "cpu_per_file_ms", "  kmssign's CPU per file", "{:.1f} ms"),
    ("batch", "sign_calls", "  KMS Sign calls per batch (target: files)", "{}"),
    ("startup", "sign_s", "short run: kmssign sign (100 KiB)", "{:.3f} s"),
    ("startup", "libraries_s", "  Python importing the same libraries", "{:.3f} s"),
    ("startup", "ratio", "  ratio (target <= 1.3x)", "{:.2f}x"),
    ("startup", "version_s", "  kmssign --version", "{:.3f} s"),
    ("wheel", "wheel_s", "wheel (mixed, 174 MiB): kmssign wheel", "{:.2f} s"),
    ("wheel", "cp_s", "  cp of the wheel", "{:.2f} s"),
    ("wheel", "sign_s", "  kmssign sign of its 5 PE files, loose", "{:.2f} s"),
    ("wheel", "ratio", "  to cp + loose signing (target <= 1.6x)", "{:.2f}x"),
    ("wheel", "verify_s", "  kmssign verify (RECORD's check)", "{:.2f} s"),
    ("wheel", "floor_s", "  floor: inflate + hash all, deflate PE, write", "{:.2f} s"),
    ("wheel", "floor_ratio", "  floor to cp + loose signing", "{:.2f}x"),
    ("wheel", "rss_mib", "  kmssign wheel peak RSS (target < 100)", "{:.0f} MiB"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--default", required=True, help="Python of the default install")
    parser.add_argument("--fast", required=True, help="Python of a kmssign[fast] install")
    parser.add_argument("--services", help="Python with moto[server] (default: --fast)")
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    parser.add_argument("--only", nargs="*", default=["sign", "batch", "startup", "wheel"])
    args = parser.parse_args()
    services = args.services or args.fast
    benches = {
        "sign": ("bench_sign.py", ["64", "1"] if args.quick else ["512", "5"]),
        "batch": ("bench_batch.py", ["--services-python", services]
                  + (["--files", "48", "--repeat", "1", "--sample", "4"] if args.quick
                     else ["--repeat", "3"])),
        "startup": ("bench_startup.py", ["3"] if args.quick else ["20"]),
        "wheel": ("bench_wheel.py", ["1"] if args.quick else ["3"]),
    }
    installs = {"default": args.default, "[fast]": args.fast}
    figures: dict[str, dict[str, dict[str, object]]] = {name: {} for name in installs}
    for bench in args.only:
        script, bench_args = benches[bench]
        for install, python in installs.items():
            print(f"== {bench} on the {install} install ({extras(python)})", flush=True)
            result, output = run(python, script, bench_args)
            print(output, flush=True)
            figures[install][bench] = result
    for install in installs:
        sign = figures[install].get("sign", {})
        if sign.get("osslsigncode_s"):
            sign["vs_osslsigncode"] = float(sign["kmssign_s"]) / float(  # type: ignore[arg-type]
                sign["osslsigncode_s"])  # type: ignore[arg-type]

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"default: {extras(args.default)}, [fast]: {extras(args.fast)}")
    print(f"{'':48s} {'default':>12s} {'[fast]':>12s}")
    for bench, key, label, fmt in ROWS:
        if bench not in args.only:
            continue
        cells = []
        for install in installs:
            value = figures[install].get(bench, {}).get(key)
            cells.append(fmt.format(value) if value is not None else "-")
        print(f"{label:48s} {cells[0]:>12s} {cells[1]:>12s}")


if __name__ == "__main__":
    main()
