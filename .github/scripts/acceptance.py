"""Helpers of the Windows acceptance job that need no Windows: find PE files, spoil one.

    python .github/scripts/acceptance.py collect --out LIST PATH...   # every PE file below
    python .github/scripts/acceptance.py tamper SRC DST               # one byte changed
    python .github/scripts/acceptance.py unpack WHEEL_DIR DEST        # unzip the wheels there

``collect`` finds Windows binaries by content (``MZ`` + ``PE\\0\\0``, as kmssign does),
writes their absolute paths to LIST one a line, and fails when a PATH holds none.
``tamper`` copies SRC to DST with one byte of the signed content changed (half-way
between the start of the file and its certificate table), so every verifier must
report a bad digest; the signature itself is left as it was. ``unpack`` extracts every
wheel in WHEEL_DIR into DEST (and fails when there is none).

Standalone on purpose: it reads the PE header itself and imports nothing of kmssign,
so it checks kmssign's output without trusting kmssign's code.
"""

from __future__ import annotations

import argparse
import struct
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

SECURITY_DIRECTORY = 4  # IMAGE_DIRECTORY_ENTRY_SECURITY


def pe_header_offset(data: bytes) -> int | None:
    """``e_lfanew`` when ``data`` (the start of a file) is a PE image, else None."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        return None
    (offset,) = struct.unpack_from("<I", data, 0x3C)
    if data[offset : offset + 4] != b"PE\0\0":
        return None
    return int(offset)


def is_pe(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096)
    return pe_header_offset(head) is not None


def pe_files(root: Path) -> Iterator[Path]:
    candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return (p.resolve() for p in candidates if is_pe(p))


def certificate_table(data: bytes) -> tuple[int, int]:
    """(file offset, size) of the certificate table; (0, 0) when the file has none."""
    offset = pe_header_offset(data)
    if offset is None:
        raise ValueError("not a PE file")
    optional = offset + 4 + 20
    (magic,) = struct.unpack_from("<H", data, optional)
    directories = optional + {0x10B: 96, 0x20B: 112}[magic]
    start, size = struct.unpack_from("<II", data, directories + 8 * SECURITY_DIRECTORY)
    return int(start), int(size)


def tamper(src: Path, dst: Path) -> int:
    """Write ``src`` with one signed byte flipped to ``dst``; return the byte's offset."""
    data = bytearray(src.read_bytes())
    start, size = certificate_table(bytes(data))
    if not size:
        raise ValueError(f"{src} carries no signature")
    position = start // 2
    optional = (pe_header_offset(bytes(data)) or 0) + 4 + 20
    if optional <= position < optional + 256:  # the checksum and directories are not hashed
        raise ValueError(f"{src} is too small to spoil safely")
    data[position] ^= 0xFF
    dst.write_bytes(bytes(data))
    return position


def unpack(wheel_dir: Path, dest: Path) -> list[Path]:
    wheels = sorted(wheel_dir.glob("*.whl"))
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(dest)
    return wheels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    collect_parser = commands.add_parser("collect", help="list the PE files below PATHs")
    collect_parser.add_argument("--out", type=Path, required=True)
    collect_parser.add_argument("paths", type=Path, nargs="+")
    tamper_parser = commands.add_parser("tamper", help="copy a signed file, one byte changed")
    tamper_parser.add_argument("src", type=Path)
    tamper_parser.add_argument("dst", type=Path)
    unpack_parser = commands.add_parser("unpack", help="extract every wheel of a directory")
    unpack_parser.add_argument("wheel_dir", type=Path)
    unpack_parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)

    if args.command == "unpack":
        wheels = unpack(args.wheel_dir, args.dest)
        if not wheels:
            print(f"acceptance: no wheel in {args.wheel_dir}", file=sys.stderr)
            return 1
        print(f"{args.dest}: {', '.join(w.name for w in wheels)} unpacked")
        return 0
    if args.command == "tamper":
        position = tamper(args.src, args.dst)
        print(f"{args.dst}: byte at offset {position} of {args.src} changed")
        return 0
    found: list[Path] = []
    for root in args.paths:
        files = list(pe_files(root))
        if not files:
            print(f"acceptance: no PE file in {root}", file=sys.stderr)
            return 1
        print(f"{root}: {len(files)} PE files")
        found += files
    args.out.write_text("".join(f"{path}\n" for path in found), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
