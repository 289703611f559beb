"""`kmssign verify` is at least as strict as osslsigncode: a differential test.

Signed files (ours with a timestamp, ours with a nested signature, osslsigncode's with a
timestamp) are mutated, deterministically: PE header bytes, the security directory entry,
the WIN_CERTIFICATE header, entries beside it, data after it, and the PKCS#7 structure
(element tags and lengths, bytes of the signed and unsigned attributes, certificates,
digest algorithms, content; SignerInfos and certificates added or dropped). For every
mutant osslsigncode rejects (with the test root as CA and TSA CA), kmssign must reject
it too, with a KmsSignError (never another exception) whose message is one line in
plain words: no library internals, no 100-digit numbers.
"""

from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kmssign._internal import der as rawder
from kmssign._internal.cms import structures
from kmssign._internal.der import der
from kmssign._internal.engine.verifying import verify_file
from kmssign._internal.pe.certtable import win_certificate
from kmssign._internal.pe.image import parse_pe
from kmssign.errors import KmsSignError
from kmssign.frontends.cli.main import main
from tests.support import peutil
from tests.support.helpers import sign_args
from tests.support.pki import TestPKI

pytestmark = pytest.mark.osslsigncode

Mutant = tuple[str, bytes]


@dataclass(frozen=True)
class Base:
    """A signed file and where its parts are."""

    name: str
    data: bytes
    table: int  # offset of the certificate table
    security_entry: int  # offset of the security directory entry
    signature: bytes  # the SignedData DER

    @property
    def sig_start(self) -> int:
        return self.table + 8


def _base(name: str, path: Path) -> Base:
    with open(path, "rb") as f:
        image = parse_pe(f)
    data = path.read_bytes()
    length = struct.unpack_from("<I", data, image.cert_table_offset)[0]
    signature = data[image.cert_table_offset + 8 : image.cert_table_offset + length]
    signature = signature[: rawder.read(signature).end]
    return Base(name, data, image.cert_table_offset, image.security_entry_offset, signature)


@pytest.fixture(scope="session")
def bases(pki: TestPKI, tsa: Any, tmp_path_factory: pytest.TempPathFactory) -> list[Base]:
    """Three signed files, made once per session."""
    directory = tmp_path_factory.mktemp("differential")
    ours, nested, theirs = (
        peutil.copy_sample(peutil.LAUNCHERS[name], directory / label)
        for name, label in (("t64.exe", "ours"), ("w32.exe", "nested"), ("t64.exe", "theirs"))
    )
    rsa = pki.identity("rsa2048")
    for argv in (
        ("sign", str(ours), *sign_args(rsa, "--timestamp-url", tsa.url("tsa"))),
        ("sign", str(nested), *sign_args(rsa)),
        ("sign", str(nested), "--append", *sign_args(pki.identity("p256"))),
    ):
        assert main(list(argv)) == 0, argv
    out = theirs.with_name("theirs.signed")
    peutil.osslsigncode_sign(theirs, out, rsa, "-ac", str(rsa.chain_path), "-ts", tsa.url("tsa"))
    shutil.move(out, theirs)
    return [_base(p.parent.name, p) for p in (ours, nested, theirs)]


def _elements(data: bytes, start: int = 0, end: int | None = None) -> Iterator[rawder.Tlv]:
    """Every element of a DER tree, depth first."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        found = rawder.read(data, pos, end)
        yield found
        if found.tag & 0x20:
            yield from _elements(data, found.body, found.body_end)
        pos = found.end


def _with_signature(base: Base, signature: bytes) -> bytes:
    """``base`` with its certificate table replaced by one entry holding ``signature``."""
    table = win_certificate(signature)
    data = bytearray(base.data[: base.table] + table)
    struct.pack_into("<II", data, base.security_entry, base.table, len(table))
    return bytes(data)


def _patched(base: Base, offset: int, value: bytes) -> bytes:
    data = bytearray(base.data)
    data[offset : offset + len(value)] = value
    return bytes(data)


def _flip(data: bytes, offset: int, rng: random.Random) -> bytes:
    out = bytearray(data)
    out[offset] ^= rng.randrange(1, 256)
    return bytes(out)


def _table_mutants(base: Base) -> Iterator[Mutant]:
    entry_length = struct.unpack_from("<I", base.data, base.table)[0]
    for revision in (0x0100, 0x0000, 0x0201, 0xFFFF):
        value = struct.pack("<H", revision)
        yield f"revision {revision:#06x}", _patched(base, base.table + 4, value)
    for kind in (0x0001, 0x0000, 0x0003, 0x0004):
        yield f"type {kind:#06x}", _patched(base, base.table + 6, struct.pack("<H", kind))
    for length in (entry_length - 8, entry_length + 8, entry_length - 1, entry_length + 1, 8, 0):
        yield f"dwLength {length}", _patched(base, base.table, struct.pack("<I", length))
    size = len(base.data) - base.table
    for offset, length in ((base.table, size - 8), (base.table, size + 8), (base.table + 8, size),
                           (base.table - 8, size), (base.table, 0), (0, size)):
        entry = struct.pack("<II", offset, length)
        yield f"security entry {offset:#x}+{length}", _patched(base, base.security_entry, entry)
    entry = win_certificate(base.signature)
    x509_entry = struct.pack("<IHH", 16, 0x0200, 0x0001) + bytes(8)
    for label, table in (("two PKCS#7 entries", entry * 2),
                         ("an X.509 entry after it", entry + x509_entry),
                         ("an X.509 entry before it", x509_entry + entry)):
        data = bytearray(base.data[: base.table] + table)
        struct.pack_into("<II", data, base.security_entry, base.table, len(table))
        yield label, bytes(data)
    yield "8 bytes after the table", base.data + bytes(8)
    yield "data after the table", base.data + b"MZ" * 8


def _header_mutants(base: Base, rng: random.Random) -> Iterator[Mutant]:
    with_pe = struct.unpack_from("<I", base.data, 0x3C)[0]
    checksum = with_pe + 24 + 64
    yield "checksum 0", _patched(base, checksum, bytes(4))
    yield "checksum changed", _flip(base.data, checksum + 1, rng)
    for _ in range(24):  # DOS header, PE signature, COFF and optional headers
        offset = rng.choice([rng.randrange(0, 0x40), rng.randrange(with_pe, with_pe + 0xF8)])
        yield f"header byte {offset:#x}", _flip(base.data, offset, rng)
    for _ in range(4):
        offset = rng.randrange(0x400, base.table)
        yield f"image byte {offset:#x}", _flip(base.data, offset, rng)


def _der_mutants(base: Base, rng: random.Random) -> Iterator[Mutant]:
    signature = base.signature
    elements = list(_elements(signature))
    for found in rng.sample(elements, min(24, len(elements))):
        where = f"element {found.tag:#04x} at {found.start}"
        yield f"{where}: tag", _with_signature(base, _flip(signature, found.start, rng))
        length_byte = found.body - 1
        for delta in (1, -1):
            changed = bytearray(signature)
            changed[length_byte] = (changed[length_byte] + delta) & 0xFF
            yield f"{where}: length {delta:+d}", _with_signature(base, bytes(changed))
    yield "truncated", _with_signature(base, signature[: len(signature) // 2])
    # bytes inside each part
    _, inner = structures.content_info(signature)
    signed_data = structures.signed_data(inner)
    signer_info = structures.signer_info(rawder.children(signed_data["signer_infos"])[0])
    parts = {
        "digestAlgorithms": signed_data["digest_algorithms"],
        "content": signed_data["encap_content_info"],
        "certificates": signed_data["certificates"],
        "sid": signer_info["sid"],
        "SignerInfo digestAlgorithm": signer_info["digest_algorithm"],
        "signedAttrs": signer_info["signed_attrs"],
        "signature value": signer_info["signature"],
        "unsignedAttrs": signer_info.get("unsigned_attrs", b""),
    }
    for label, part in parts.items():
        if not part:
            continue
        at = signature.index(part)
        for _ in range(6 if label in ("signedAttrs", "unsignedAttrs", "certificates") else 2):
            offset = at + rng.randrange(len(part))
            yield f"{label} byte {offset}", _with_signature(base, _flip(signature, offset, rng))
    yield from _structure_mutants(base, signature, signed_data)


def _structure_mutants(
    base: Base, signature: bytes, signed_data: dict[str, bytes]
) -> Iterator[Mutant]:
    """SignedData with fields swapped, dropped or doubled (lengths recomputed)."""
    content_type, _ = structures.content_info(signature)

    def rebuilt(**fields: bytes) -> bytes:
        merged = {**signed_data, **fields}
        body = b"".join(v for v in merged.values() if v)
        return _with_signature(base, der(0x30, content_type + der(0xA0, der(0x30, body))))

    algorithms = signed_data["digest_algorithms"]
    other = algorithms[:-3] + bytes([algorithms[-3] ^ 0x03]) + algorithms[-2:]  # sha256->sha384
    infos = rawder.children(signed_data["signer_infos"])
    certs = rawder.children(signed_data["certificates"])
    yield "digestAlgorithms disagree with the SignerInfo", rebuilt(digest_algorithms=other)
    yield "empty digestAlgorithms", rebuilt(digest_algorithms=b"\x31\x00")
    yield "two SignerInfos", rebuilt(signer_infos=der(0x31, infos[0] * 2))
    yield "no SignerInfo", rebuilt(signer_infos=b"\x31\x00")
    yield "no certificates", rebuilt(certificates=b"")
    yield "only the leaf", rebuilt(certificates=der(0xA0, certs[0]))
    yield "version 3", rebuilt(version=b"\x02\x01\x03")


MUTATORS: list[Callable[[Base, random.Random], Iterator[Mutant]]] = [
    lambda base, _rng: _table_mutants(base),
    _header_mutants,
    _der_mutants,
]


def _osslsigncode_accepts(path: Path, ca: Path) -> bool:
    assert peutil.OSSLSIGNCODE
    proc = subprocess.run(
        [peutil.OSSLSIGNCODE, "verify", "-CAfile", str(ca), "-TSA-CAfile", str(ca),
         "-in", str(path)],
        capture_output=True, check=False, timeout=60,
    )
    return proc.returncode == 0


LIBRARY_TALK = re.compile(r"asn1crypto|ParseError|codec|\d{21,}|\n")


def _kmssign_accepts(path: Path, pki: TestPKI) -> bool:
    """Whether kmssign verifies ``path``; a refusal must read as one human line."""
    try:
        verify_file(path, roots=[pki.root.cert], tsa_roots=[pki.root.cert])
    except KmsSignError as exc:
        message = str(exc)
        assert len(message) <= 240 and not LIBRARY_TALK.search(message), message
        return False
    return True


def test_kmssign_rejects_what_osslsigncode_rejects(
    bases: list[Base], pki: TestPKI, tmp_path: Path
) -> None:
    accepted_by_both = rejected_by_both = 0
    lenient: list[str] = []
    for base in bases:
        path = tmp_path / f"{base.name}.exe"
        path.write_bytes(base.data)
        assert _kmssign_accepts(path, pki) and _osslsigncode_accepts(path, pki.root_pem)
        rng = random.Random(f"kmssign-differential-{base.name}")
        mutants = [m for mutate in MUTATORS for m in mutate(base, rng)]
        for index, (label, data) in enumerate(mutants):
            path = tmp_path / f"{base.name}-{index}.exe"
            path.write_bytes(data)
            ours = _kmssign_accepts(path, pki)
            theirs = _osslsigncode_accepts(path, pki.root_pem)
            if ours and not theirs:
                lenient.append(f"{base.name}: {label}")
            accepted_by_both += ours and theirs
            rejected_by_both += not ours and not theirs
            path.unlink()
    assert lenient == [], '\n'.join(lenient)
    # the mutants reach both outcomes (the test would prove nothing otherwise): the
    # checksum is not signed, and neither tool fails a file for it
    assert accepted_by_both >= 2 * len(bases) and rejected_by_both > 300


def test_verify_names_the_structural_problems_windows_refuses(
    bases: list[Base], pki: TestPKI, tmp_path: Path, capsys: Any
) -> None:
    """The cases once accepted: a WIN_CERTIFICATE that is not revision 2.0 or not PKCS#7,
    two PKCS#7 entries side by side (not a nested signature), and digestAlgorithms that
    do not hold the SignerInfo's algorithm. One line each, in a directory run that goes
    on to the end."""
    from tests.support.helpers import run_cli

    base = bases[0]
    _, inner = structures.content_info(base.signature)
    signed_data = structures.signed_data(inner)
    expected = {
        "revision 0x0100": "WIN_CERTIFICATE revision 0x0100 is not 2.0 (0x0200)",
        "type 0x0001": "WIN_CERTIFICATE type 0x0001 is not PKCS#7 SignedData (0x0002)",
        "two PKCS#7 entries": "the certificate table holds 2 entries; Authenticode allows one",
        "digestAlgorithms disagree with the SignerInfo": (
            "the signer's digest algorithm sha256 is not among the SignedData's "
            "digestAlgorithms (sha384)"
        ),
    }
    mutants = dict(_table_mutants(base))
    mutants.update(_structure_mutants(base, base.signature, signed_data))
    directory = tmp_path / "dir"
    directory.mkdir()
    for index, label in enumerate(expected):
        (directory / f"{index}.exe").write_bytes(mutants[label])
        assert not _osslsigncode_accepts(directory / f"{index}.exe", pki.root_pem), label
    code, out, err = run_cli(capsys, "verify", str(directory), "--ca", str(pki.root_pem))
    assert code == 1 and "verified" not in out
    lines = err.splitlines()
    for index, message in enumerate(expected.values()):
        assert f"failed: {directory / f'{index}.exe'}: {message}" in lines, err
    assert out.splitlines()[-1] == "kmssign: 4 failed" and "Traceback" not in err
