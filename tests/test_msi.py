"""MSI packages (wixl's, osslsigncode's) signed, nested, timestamped and verified like PE
files, checked by osslsigncode and msiinfo (#21)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import olefile
import pytest

from tests.support import msiutil, peutil
from tests.support.helpers import run_cli, sign_args
from tests.support.pki import TestPKI

pytestmark = [pytest.mark.wixl, pytest.mark.msitools, pytest.mark.osslsigncode]

SIGNATURE, SIGNATURE_EX = "\x05DigitalSignature", "\x05MsiDigitalSignatureEx"


def _payload(directory: Path, count: int) -> dict[str, Path]:
    directory.mkdir()
    files = {}
    for index in range(count):
        source = directory / f"file{index}.bin"
        source.write_bytes(os.urandom(50 + index * 397))
        files[f"file{index}.bin"] = source
    return files


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A wixl package: an embedded cabinet of many files."""
    return msiutil.build_msi(tmp_path / "demo.msi", _payload(tmp_path / "payload", 40))


def _verify(capsys, pki: TestPKI, path: Path, *, timestamped: bool = False,
            count: int = 1) -> None:
    """osslsigncode and kmssign both accept ``path``; its tables still read."""
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem if timestamped else None)
    code, out, err = run_cli(capsys, "verify", str(path), "--ca", str(pki.root_pem), "--json")
    assert code == 0, err
    (entry,) = json.loads(out)["files"]
    assert entry["status"] == "verified" and entry["format"] == "msi"
    assert bool(entry["timestamp"]) == timestamped
    assert (entry["reason"] or "").count("nested signature") == count - 1
    assert msiutil.tables(path)


def _both_refuse(capsys, pki: TestPKI, path: Path) -> None:
    peutil.osslsigncode_verify(path, pki.root_pem, expect_ok=False)
    code, out, err = run_cli(capsys, "verify", str(path), "--ca", str(pki.root_pem))
    assert code == 1 and "does not match" in err, (out, err)


def _streams(path: Path) -> list[list[str]]:
    with olefile.OleFileIO(str(path)) as ole:
        return ole.listdir(streams=True, storages=False)


def _flip_a_byte(path: Path, stream: list[str]) -> None:
    """One byte of ``stream`` changed in place (olefile rewrites a stream of equal size)."""
    with olefile.OleFileIO(str(path), write_mode=True) as ole:
        data = bytearray(ole.openstream(stream).read())
        data[len(data) // 2] ^= 0x01
        ole.write_stream(stream, bytes(data))


def test_signed_plain_nested_and_timestamped_later(capsys, pki: TestPKI, package: Path,
                                                   tsa) -> None:
    before = msiutil.tables(package)
    code, out, err = run_cli(
        capsys, "sign", str(package), *sign_args(pki.identity("rsa2048")), "--json"
    )
    assert code == 0, err
    (entry,) = json.loads(out)["files"]
    assert entry["status"] == "signed" and entry["format"] == "msi"
    _verify(capsys, pki, package)
    assert msiutil.tables(package) == before
    # signed again: skipped (its signature is intact), byte for byte
    signed = package.read_bytes()
    code, out, err = run_cli(capsys, "sign", str(package), *sign_args(pki.identity("p256")))
    assert code == 0 and "(already signed)" in out and package.read_bytes() == signed, err
    code, out, err = run_cli(
        capsys, "sign", str(package), "--append", "--digest", "sha384",
        *sign_args(pki.identity("p384")),
    )
    assert code == 0, err
    _verify(capsys, pki, package, count=2)
    code, out, err = run_cli(capsys, "timestamp", str(package), "--timestamp-url", tsa.url("tsa"))
    assert code == 0 and f"timestamped: {package}" in out, err
    _verify(capsys, pki, package, timestamped=True, count=2)
    assert msiutil.tables(package) == before


def test_one_changed_byte_in_any_stream_fails_both(capsys, pki: TestPKI, package: Path) -> None:
    code, _, err = run_cli(capsys, "sign", str(package), *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    signed = package.read_bytes()
    streams = [s for s in _streams(package) if s != [SIGNATURE]]
    assert len(streams) > 10  # the tables, the cabinet, the summary information
    for stream in streams:
        package.write_bytes(signed)
        _flip_a_byte(package, stream)
        assert package.read_bytes() != signed
        _both_refuse(capsys, pki, package)
    # skip-signed keeps only a valid signature: this one is reported, the file unchanged
    broken = package.read_bytes()
    code, out, err = run_cli(capsys, "sign", str(package), *sign_args(pki.identity("p256")))
    assert code == 1 and "its existing signature is broken" in err, (out, err)
    assert package.read_bytes() == broken
    code, _, err = run_cli(capsys, "sign", str(package), "--no-skip-signed",
                           *sign_args(pki.identity("p256")))
    assert code == 0, err
    _verify(capsys, pki, package)


def test_an_osslsigncode_signature_verifies_and_nests(capsys, pki: TestPKI, package: Path,
                                                      tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.msi"
    identity = pki.identity("rsa2048")
    peutil.osslsigncode_sign(package, theirs, identity, "-ac", str(identity.chain_path))
    _verify(capsys, pki, theirs)
    code, _, err = run_cli(
        capsys, "sign", str(theirs), "--append", *sign_args(pki.identity("p256"))
    )
    assert code == 0, err
    _verify(capsys, pki, theirs, count=2)


def test_msi_digital_signature_ex_kept_when_nesting_removed_when_replacing(
    capsys, pki: TestPKI, package: Path, tmp_path: Path
) -> None:
    """osslsigncode's -add-msi-dse writes MsiDigitalSignatureEx: kmssign checks it,
    keeps it (and nests under the signature it serves) with --append, and drops it when
    it replaces the signature: kmssign never writes one."""
    dse = tmp_path / "dse.msi"
    identity = pki.identity("rsa2048")
    peutil.osslsigncode_sign(package, dse, identity, "-ac", str(identity.chain_path),
                             "-add-msi-dse")
    assert [SIGNATURE_EX] in _streams(dse)
    _verify(capsys, pki, dse)
    nested = tmp_path / "nested.msi"
    shutil.copy(dse, nested)
    code, _, err = run_cli(capsys, "sign", str(nested), "--append",
                           *sign_args(pki.identity("p256")))
    assert code == 0, err
    assert [SIGNATURE_EX] in _streams(nested)
    _verify(capsys, pki, nested, count=2)
    code, _, err = run_cli(capsys, "sign", str(dse), "--no-skip-signed",
                           *sign_args(pki.identity("p256")))
    assert code == 0, err
    assert [SIGNATURE_EX] not in _streams(dse)
    _verify(capsys, pki, dse)


def test_a_package_of_signed_pe_files(capsys, pki: TestPKI, samples, tmp_path: Path) -> None:
    """The order Windows wants: the PE files first, then the package holding them."""
    payload = tmp_path / "app"
    payload.mkdir()
    for name in ("t64.exe", "w32.exe"):
        shutil.copy(samples[name], payload / name)
    code, _, err = run_cli(capsys, "sign", str(payload), *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    package = msiutil.build_msi(
        tmp_path / "app.msi", {p.name: p for p in sorted(payload.iterdir())}, name="App"
    )
    code, out, err = run_cli(capsys, "sign", str(tmp_path), *sign_args(pki.identity("rsa2048")),
                             "--include", "*.msi", "--json")
    assert code == 0, err
    assert [(f["path"], f["format"]) for f in json.loads(out)["files"]] == [
        (str(package), "msi")
    ]
    _verify(capsys, pki, package)
    code, out, err = run_cli(capsys, "verify", str(payload), "--ca", str(pki.root_pem))
    assert code == 0 and out.count("verified: ") == 2, err


@pytest.mark.slow
def test_a_package_with_a_file_over_100_mib(capsys, pki: TestPKI, tmp_path: Path) -> None:
    files = _payload(tmp_path / "payload", 3)
    big = tmp_path / "payload" / "big.bin"
    with open(big, "wb") as f:
        for _ in range(101):
            f.write(os.urandom(1 << 20))
    files["big.bin"] = big
    package = msiutil.build_msi(tmp_path / "big.msi", files)
    assert package.stat().st_size > 100 << 20
    code, _, err = run_cli(capsys, "sign", str(package), *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    _verify(capsys, pki, package)


def test_dry_run_names_the_format_and_touches_nothing(capsys, pki: TestPKI,
                                                      package: Path) -> None:
    before = package.read_bytes()
    code, out, err = run_cli(capsys, "sign", "--dry-run", str(package),
                             *sign_args(pki.identity("rsa2048")), "--json")
    assert code == 0, err
    (entry,) = json.loads(out)["files"]
    assert (entry["status"], entry["format"]) == ("would-sign", "msi")
    assert package.read_bytes() == before


def _set_root_clsid(path: Path, clsid: bytes) -> None:
    data = bytearray(path.read_bytes())
    shift = int.from_bytes(data[0x1E:0x20], "little")
    root = (int.from_bytes(data[0x30:0x34], "little") + 1) << shift
    data[root + 0x50 : root + 0x60] = clsid
    path.write_bytes(bytes(data))


WORD_CLSID = bytes.fromhex("0609020000000000c000000000000046")  # {00020906-...}: a .doc
MST_CLSID = bytes.fromhex("82100c0000000000c000000000000046")


def test_other_compound_files_are_left_alone(capsys, pki: TestPKI, package: Path,
                                             tmp_path: Path) -> None:
    doc, mst = tmp_path / "letter.doc", tmp_path / "change.mst"
    for path, clsid in ((doc, WORD_CLSID), (mst, MST_CLSID)):
        shutil.copy(package, path)
        _set_root_clsid(path, clsid)
    before = {p: p.read_bytes() for p in (doc, mst)}
    code, out, err = run_cli(capsys, "sign", str(doc), str(mst),
                             *sign_args(pki.identity("rsa2048")))
    assert code == 1
    assert f"failed: {doc}: a compound file, but not a Windows Installer package (its root " \
           "class id is {00020906-0000-0000-C000-000000000046})" in err
    assert f"failed: {mst}: a Windows Installer transform (.mst)" in err
    assert all(p.read_bytes() == b for p, b in before.items())
    # below a directory they are not signable files at all
    code, out, err = run_cli(capsys, "sign", str(tmp_path), "--include", "*.doc",
                             "--include", "*.mst", *sign_args(pki.identity("rsa2048")))
    assert code == 1 and "nothing to sign" in err, err
    assert all(p.read_bytes() == b for p, b in before.items())


@pytest.mark.parametrize("damage", ["truncated", "trailing", "header"])
def test_bad_packages_fail_in_one_line_unchanged(capsys, pki: TestPKI, package: Path,
                                                 damage: str) -> None:
    data = package.read_bytes()
    broken = {
        "truncated": data[: len(data) - 700],
        "trailing": data + b"extra bytes",
        "header": data[:200],
    }[damage]
    package.write_bytes(broken)
    for command in (["sign", *sign_args(pki.identity("rsa2048"))], ["verify"],
                    ["timestamp", "--timestamp-url", "http://127.0.0.1:9/"]):
        code, out, err = run_cli(capsys, command[0], str(package), *command[1:])
        assert code == 1, (out, err)
        failures = [line for line in (out + err).splitlines() if line.startswith("failed: ")]
        assert failures == [failures[0]] and failures[0].startswith(
            f"failed: {package}: compound file: "
        ), (out, err)
        assert "Traceback" not in out + err
        assert package.read_bytes() == broken


MSP_CLSID = bytes.fromhex("86100c0000000000c000000000000046")


def test_a_patch_is_signed_as_a_package(capsys, pki: TestPKI, package: Path,
                                        tmp_path: Path) -> None:
    """.msp patches (root class id {000C1086-...}) are hashed and signed as packages."""
    patch = tmp_path / "update.msp"
    shutil.copy(package, patch)
    _set_root_clsid(patch, MSP_CLSID)
    code, out, err = run_cli(capsys, "sign", str(tmp_path), "--include", "*.msp",
                             *sign_args(pki.identity("rsa2048")), "--json")
    assert code == 0, err
    assert [(f["path"], f["format"]) for f in json.loads(out)["files"]] == [(str(patch), "msi")]
    peutil.osslsigncode_verify(patch, pki.root_pem)
    code, out, err = run_cli(capsys, "verify", str(patch), "--ca", str(pki.root_pem))
    assert code == 0, err


def test_the_library_names_the_format(pki: TestPKI, package: Path, samples) -> None:
    from kmssign import api
    from kmssign.config import Settings

    identity = pki.identity("rsa2048")
    settings = Settings(
        key_file=identity.key_path, certificate=identity.cert_path,
        chain=(identity.chain_path,), timestamp="off",
    )
    exe = samples["t64.exe"]
    report = api.sign_files([package, exe], settings)
    assert [(r.path, r.status, r.format) for r in report.results] == [
        (package, "signed", "msi"), (exe, "signed", "pe")
    ]
    report = api.verify_files([package, exe], roots=[pki.root_pem])
    assert [(r.status, r.format) for r in report.results] == [("verified", "msi"),
                                                              ("verified", "pe")]


def test_changed_metadata_breaks_msi_digital_signature_ex(capsys, pki: TestPKI, package: Path,
                                                          tmp_path: Path) -> None:
    """With MsiDigitalSignatureEx, an entry's modification time is signed too: changed,
    both verifiers refuse, and kmssign says what changed."""
    dse = tmp_path / "dse.msi"
    identity = pki.identity("rsa2048")
    peutil.osslsigncode_sign(package, dse, identity, "-ac", str(identity.chain_path),
                             "-add-msi-dse")
    data = bytearray(dse.read_bytes())
    name = "\x05SummaryInformation".encode("utf-16-le")
    entry = data.index(name + b"\0\0")
    assert entry % 128 == 0  # a directory entry (they are 128-byte aligned in the file)
    data[entry + 0x6C] ^= 0x01  # its modification time (FILETIME), in no stream
    dse.write_bytes(bytes(data))
    peutil.osslsigncode_verify(dse, pki.root_pem, expect_ok=False)
    code, out, err = run_cli(capsys, "verify", str(dse), "--ca", str(pki.root_pem))
    assert code == 1 and "metadata (names, sizes, times) changed after signing" in err, err
