"""Real win_amd64-shaped wheels for tests, written with zipfile, and ways to look into them."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import struct
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from tests.support import peutil
from tests.support.fixtures_build import assert_record_matches

DIST = "demo_pkg"
VERSION = "1.0"
WHEEL_NAME = f"{DIST}-{VERSION}-cp312-cp312-win_amd64.whl"
DIST_INFO = f"{DIST}-{VERSION}.dist-info"
RECORD = f"{DIST_INFO}/RECORD"

Content = bytes | tuple[bytes, int]  # the bytes, or (bytes, zipfile compression)


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(
        b"="
    ).decode()


def record_of(files: Mapping[str, bytes], record_name: str = RECORD) -> bytes:
    """RECORD listing ``files`` (give METADATA and WHEEL too: see standard_files)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for name, data in files.items():
        writer.writerow([name, record_hash(data), len(data)])
    writer.writerow([record_name, "", ""])
    return out.getvalue().encode()


def standard_files(members: Mapping[str, Content]) -> dict[str, bytes]:
    """``members`` as bytes, with the METADATA and WHEEL every wheel has."""
    plain = {name: c if isinstance(c, bytes) else c[0] for name, c in members.items()}
    metadata = f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n".encode()
    wheel = b"Wheel-Version: 1.0\nGenerator: kmssign-tests\nRoot-Is-Purelib: false\n" \
            b"Tag: cp312-cp312-win_amd64\n"
    return {**plain, f"{DIST_INFO}/METADATA": metadata, f"{DIST_INFO}/WHEEL": wheel}


def write_wheel(
    path: Path,
    members: Mapping[str, Content],
    *,
    record: bytes | Literal["auto"] | None = "auto",
    unlisted: Sequence[tuple[str, Content]] = (),
    force_zip64: bool = False,
    stream: bool = False,
) -> Path:
    """A wheel holding ``members`` (deflated unless a compression is given), METADATA,
    WHEEL, then ``unlisted`` members (not in RECORD; a name may repeat one before it),
    and RECORD: of them all (``"auto"``), as given, or none (None). ``stream`` writes it
    through an unseekable file, so every member gets a data descriptor."""
    files = standard_files(members)
    everything: list[tuple[str, Content]] = [
        *members.items(), *((n, d) for n, d in files.items() if n not in members), *unlisted,
    ]
    if record == "auto":
        record = record_of(files)
    if record is not None:
        everything.append((RECORD, record))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names asked for
        target = _Unseekable(raw) if stream else raw
        with zipfile.ZipFile(target, "w") as archive:  # type: ignore[arg-type]
            for n, (name, content) in enumerate(everything):
                data, method = (content, zipfile.ZIP_DEFLATED) if isinstance(
                    content, bytes) else content
                info = zipfile.ZipInfo(name, date_time=(2024, 1 + n % 12, 2, 3, 4, 6))
                info.compress_type = method
                info.external_attr = (0o100755 if name.endswith((".exe", ".dll", ".pyd"))
                                      else 0o100644) << 16
                with archive.open(info, "w", force_zip64=force_zip64) as out:
                    out.write(data)
    return path


def set_flags(path: Path, name: str, bits: int) -> None:
    """Set general-purpose flag ``bits`` of member ``name`` in its local header and its
    central directory entry (zipfile cannot write an encrypted member)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
        position = archive.start_dir
        for other in archive.infolist():
            if other.filename == name:
                struct.pack_into("<H", data, position + 8,
                                 struct.unpack_from("<H", data, position + 8)[0] | bits)
            lengths = struct.unpack_from("<HHH", data, position + 28)
            position += 46 + sum(lengths)
    offset = info.header_offset + 6
    struct.pack_into("<H", data, offset, struct.unpack_from("<H", data, offset)[0] | bits)
    path.write_bytes(bytes(data))


class _Unseekable(io.RawIOBase):
    def __init__(self, inner: io.BufferedWriter) -> None:
        self.inner = inner

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()


def demo_members(
    samples: Mapping[str, Path], vendor_signed: Path, *, seed: int = 1
) -> dict[str, Content]:
    """The members of a win_amd64 wheel as a setuptools build with delvewheel makes it:
    a .pyd, a mangled DLL in <pkg>.libs/, a launcher in .data/scripts/, an exe in
    .data/data/, a vendor-signed DLL, and non-PE members stored and deflated."""
    lib = samples["lib.dll"].read_bytes()
    rng = __import__("random").Random(seed)
    return {
        f"{DIST}/__init__.py": b"from ._ext import *  # noqa\n" * 3,
        f"{DIST}/_ext.cp312-win_amd64.pyd": lib,
        f"{DIST}.libs/libdemo-5f3c2a1e.dll": (lib, zipfile.ZIP_STORED),
        f"{DIST}/vendor.dll": vendor_signed.read_bytes(),
        f"{DIST}/data.bin": (rng.randbytes(70_000), zipfile.ZIP_STORED),
        f"{DIST}/notes.txt": b"plain text, deflated\n" * 50,
        f"{DIST}/fake.exe": b"MZ" + bytes(200),
        f"{DIST}-{VERSION}.data/scripts/demo.exe": peutil.LAUNCHERS["t64.exe"].read_bytes(),
        f"{DIST}-{VERSION}.data/data/share/demo/hello.exe": samples["hello.exe"].read_bytes(),
    }


PE_MEMBERS = (
    f"{DIST}/_ext.cp312-win_amd64.pyd",
    f"{DIST}.libs/libdemo-5f3c2a1e.dll",
    f"{DIST}-{VERSION}.data/scripts/demo.exe",
    f"{DIST}-{VERSION}.data/data/share/demo/hello.exe",
)
VENDOR_MEMBER = f"{DIST}/vendor.dll"


def raw_members(path: Path) -> dict[str, bytes]:
    """Each member's local header, compressed data and data descriptor, as stored."""
    with zipfile.ZipFile(path) as archive:
        infos = sorted(archive.infolist(), key=lambda i: i.header_offset)
        starts = [i.header_offset for i in infos] + [archive.start_dir]
    data = path.read_bytes()
    return {info.filename: data[starts[n] : starts[n + 1]] for n, info in enumerate(infos)}


def check_signed_wheel(
    wheel: Path, pki: object, tmp: Path, *, members: tuple[str, ...] = PE_MEMBERS,
    timestamped: bool = False, unpack: bool = True,
) -> dict[str, Path]:
    """Every given PE member extracted and accepted by osslsigncode; RECORD right; every
    CRC right; ``wheel unpack``, which hashes every member against RECORD, accepts it
    (``unpack=False`` spares a wheel of many thousand members the two unpackings)."""
    assert_record_matches(wheel)
    out = tmp / f"extracted-{wheel.stem}"
    with zipfile.ZipFile(wheel) as archive:
        assert archive.testzip() is None
        archive.extractall(out, members=members if not unpack else None)
    root = pki.root_pem  # type: ignore[attr-defined]
    for name in members:
        peutil.osslsigncode_verify(out / name, root, tsa_ca=root if timestamped else None)
    if unpack:
        unpacked = tmp / f"unpacked-{wheel.stem}"
        proc = subprocess.run(
            [sys.executable, "-m", "wheel", "unpack", "-d", str(unpacked), str(wheel)],
            capture_output=True, text=True, check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return {name: out / name for name in members}


def same_bytes(a: Path, b: Path) -> bool:
    return os.path.getsize(a) == os.path.getsize(b) and a.read_bytes() == b.read_bytes()
