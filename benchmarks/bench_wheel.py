"""Signing a large wheel: ``kmssign wheel`` against copying the wheel plus signing its PE
files as loose files.

Usage: python benchmarks/bench_wheel.py [ROUNDS [CONTENT]]   (default 3 rounds, "mixed")

Makes a wheel of about 200 MiB on the fly: 150 MiB of compressed non-PE members (15
members of 10 MiB as stored in the archive) and five PE members of 10 MiB (pip's x64
launcher followed by overlay data, which Authenticode hashes), all deflated. CONTENT
chooses what the bytes are, since deflate's speed depends on it:

``random``  incompressible bytes (data files that are compressed already)
``text``    Python-source-like text, which deflate shrinks to about a third
``mixed``   (default) non-PE members half random, half text; PE overlays repeat real
            machine code (the launcher's bytes), which deflate shrinks to about half,
            as it does real DLLs

Then measures, as whole processes in interleaved rounds (page cache warm, dirty pages
written back before each run): ``cp`` of the wheel (no reflink), ``kmssign sign`` of the
five PE files as loose files, and ``kmssign wheel WHEEL -w DIR`` (all with a key file and
no timestamp), and prints the median wall times, kmssign's peak RSS, and the ratio of
``kmssign wheel`` to the sum of the two others. Targets (issue 24): at most 1.6x that
sum, at most 100 MiB peak RSS. ``kmssign verify`` of the wheel (which reads and hashes
every member) is timed too, to show what checking RECORD costs, and so is
benchmarks/_wheel_floor.py: a stdlib-only process doing only what signing a wheel must
add to signing its PE files loose (every member inflated and hashed, the PE members
deflated, the output written), in parallel, with no signing; kmssign wheel can come no
closer to cp + loose signing than it does. Whether ISA-L (the
``isal`` package of ``kmssign[fast]``) or zlib inflates and deflates is the install's:
benchmarks/compare.py runs this on the default install and on ``[fast]``. The last
line, ``RESULT {...}``, is for compare.py. The wheel is made in a child process: a
child's peak RSS starts from its parent's size, so this process stays small.
A benchmark, not a test: it prints numbers, asserts nothing.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sign import compile_kmssign, measure  # noqa: E402
from tests.support.peutil import LAUNCHERS  # noqa: E402
from tests.support.pki import TestPKI  # noqa: E402

MIB = 1 << 20
PE_COUNT, PE_SIZE = 5, 10 * MIB
DATA_COUNT, DATA_COMPRESSED = 15, 10 * MIB
WORDS = [
    "def", "return", "self", "import", "from", "class", "for", "in", "if", "else", "None",
    "value", "result", "index", "items", "name", "path", "data", "True", "False", "len",
]


def record_of(files: dict[str, bytes], record_name: str) -> bytes:
    """RECORD listing ``files`` (tests/support/wheelutil's needs pytest; the default
    install this also runs on has none)."""
    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")

    rows = [f"{name},sha256={digest(data)},{len(data)}" for name, data in files.items()]
    return "".join(f"{row}\n" for row in [*rows, f"{record_name},,"]).encode()


def text_block(rng: random.Random, size: int) -> bytes:
    """Python-like lines of words, names and numbers (deflate: about a third)."""
    lines = []
    total = 0
    while total < size:
        words = [rng.choice(WORDS) if rng.random() < 0.6 else f"x{rng.randrange(1 << 20):x}"
                 for _ in range(rng.randrange(3, 12))]
        line = "    " * rng.randrange(4) + " ".join(words) + f"  # {rng.randrange(10**6)}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def text(rng: random.Random, size: int) -> bytes:
    """``size`` bytes of text: a few distinct 1 MiB blocks in turn (deflate looks back
    32 KiB only, so it compresses them as it would all-new text)."""
    blocks = [text_block(rng, MIB) for _ in range(4)]
    return b"".join(blocks[n % 4] for n in range(size // MIB + 1))[:size]


def data_member(rng: random.Random, kind: str) -> bytes:
    """Bytes whose deflated size is about DATA_COMPRESSED."""
    if kind == "random":
        return rng.randbytes(DATA_COMPRESSED)
    sample = text(rng, MIB)
    return text(rng, int(DATA_COMPRESSED * len(sample) / len(zlib.compress(sample))))


def pe_member(rng: random.Random, kind: str, index: int) -> bytes:
    launcher = LAUNCHERS["t64.exe"].read_bytes()
    out = bytearray(launcher)
    while len(out) < PE_SIZE:
        if kind == "random":
            out += rng.randbytes(MIB)
        elif kind == "text":
            out += text(rng, MIB)
        else:  # machine code: the launcher's bytes, one more per member so they differ
            out += launcher + bytes([index])
    return bytes(out[:PE_SIZE])


def make_wheel(path: Path, loose: Path, content: str) -> None:
    rng = random.Random(14)
    files: dict[str, bytes] = {}
    for n in range(DATA_COUNT):
        kind = content if content != "mixed" else ("random" if n % 2 else "text")
        files[f"bigpkg/data/part{n:02d}.bin"] = data_member(rng, kind)
    for n in range(PE_COUNT):
        data = pe_member(rng, "code" if content == "mixed" else content, n)
        pyd, dll = f"bigpkg/_ext{n}.cp312-win_amd64.pyd", f"bigpkg.libs/lib{n}-0a1b2c.dll"
        files[pyd if n < 3 else dll] = data
        (loose / f"{n}.dll").write_bytes(data)
    files["bigpkg-1.0.dist-info/METADATA"] = (
        b"Metadata-Version: 2.1\nName: bigpkg\nVersion: 1.0\n"
    )
    files["bigpkg-1.0.dist-info/WHEEL"] = b"Wheel-Version: 1.0\nTag: cp312-cp312-win_amd64\n"
    record_name = "bigpkg-1.0.dist-info/RECORD"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(record_name, record_of(files, record_name))


def have_isal() -> bool:
    return importlib.util.find_spec("isal") is not None


def main() -> None:
    if sys.argv[1:2] == ["--make"]:
        make_wheel(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
        return
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    content = sys.argv[2] if len(sys.argv) > 2 else "mixed"
    work = Path(tempfile.mkdtemp(prefix="kmssign-bench-wheel-"))
    try:
        pki = TestPKI.create(work / "pki")
        identity = pki.identity("rsa2048")
        key = ["--key-file", str(identity.key_path), "--cert", str(identity.cert_path),
               "--no-timestamp", "--quiet"]
        originals = work / "originals"
        originals.mkdir()
        wheel = work / "bigpkg-1.0-cp312-cp312-win_amd64.whl"
        subprocess.run([sys.executable, __file__, "--make", str(wheel), str(originals), content],
                       check=True)
        loose = work / "loose"
        out_dir = work / "wheelhouse"
        kmssign = [sys.executable, "-m", "kmssign"]
        tools: dict[str, list[str]] = {
            "cp (the wheel)": ["cp", "--reflink=never", str(wheel), str(work / "copy.whl")],
            "kmssign sign (5 PE files)": [
                *kmssign, "sign", *(str(loose / f"{n}.dll") for n in range(PE_COUNT)), *key,
            ],
            "kmssign wheel": [*kmssign, "wheel", str(wheel), "-w", str(out_dir), *key],
            # RECORD and every member checked; the members are not signed yet
            "kmssign verify (wheel)": [*kmssign, "verify", str(wheel), "--allow-unsigned",
                                       "--quiet"],
            "floor (check, deflate, write)": [
                sys.executable, str(Path(__file__).with_name("_wheel_floor.py")), str(wheel),
                str(work / "floor.whl"),
            ],
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
        compile_kmssign()
        measure(["cat", str(wheel), *(str(p) for p in originals.iterdir())])  # warm the cache
        for _ in range(rounds):
            for name, cmd in tools.items():
                shutil.rmtree(loose, ignore_errors=True)
                shutil.copytree(originals, loose)  # unsigned again for every round
                shutil.rmtree(out_dir, ignore_errors=True)
                (work / "copy.whl").unlink(missing_ok=True)
                (work / "floor.whl").unlink(missing_ok=True)
                os.sync()  # no run pays for another's writeback
                results[name].append(measure(cmd))
        size = wheel.stat().st_size
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {platform.system()}")
    print(f"wheel: {size / MIB:.0f} MiB ({content}): {DATA_COUNT} non-PE members of about "
          f"{DATA_COMPRESSED // MIB} MiB compressed, {PE_COUNT} PE members of "
          f"{PE_SIZE // MIB} MiB; median of {rounds} interleaved rounds")
    wall = {name: statistics.median(w for w, _ in runs) for name, runs in results.items()}
    for name, runs in results.items():
        rss = max(r for _, r in runs)
        print(f"{name:30s} {wall[name]:7.3f} s  peak RSS {rss:6.1f} MiB")
    floor = wall["cp (the wheel)"] + wall["kmssign sign (5 PE files)"]
    ratio = wall["kmssign wheel"] / floor
    rss = max(r for _, r in results["kmssign wheel"])
    print(f"kmssign wheel targets: time <= 1.6x (cp + sign) = {1.6 * floor:.3f} s: "
          f"{ratio:.2f}x {'OK' if ratio <= 1.6 else 'MISSED'}; peak RSS <= 100 MiB: "
          f"{rss:.1f} MiB {'OK' if rss <= 100 else 'MISSED'}")
    print(f"RECORD's check alone (kmssign verify of the wheel) is "
          f"{wall['kmssign verify (wheel)'] / floor:.2f}x (cp + sign)")
    floor_ratio = wall["floor (check, deflate, write)"] / floor
    print(f"the floor (inflate + hash every member, deflate the PE members, write; no "
          f"signing, no start-up) is {floor_ratio:.2f}x (cp + sign)")
    print("RESULT " + json.dumps({
        "bench": "wheel", "content": content, "isal": have_isal(), "wheel_s": wall["kmssign wheel"],
        "cp_s": wall["cp (the wheel)"], "sign_s": wall["kmssign sign (5 PE files)"],
        "verify_s": wall["kmssign verify (wheel)"], "ratio": ratio, "rss_mib": rss,
        "floor_s": wall["floor (check, deflate, write)"], "floor_ratio": floor_ratio,
    }))


if __name__ == "__main__":
    main()
