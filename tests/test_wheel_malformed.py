"""Bad wheels: one line naming the wheel (and the member), a non-zero exit, the wheel
byte-identical and nothing written into ``-w DIR`` -- for signing, and for verifying."""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from kmssign._internal.signers.local import KeyFileSigner
from kmssign.api import sign_wheels
from kmssign.config import Settings
from tests.support import peutil, wheelutil
from tests.support.helpers import DelegatingSigner, run_cli, sign_args
from tests.support.pki import TestPKI
from tests.support.tsa_server import LoopbackTSA
from tests.support.wheelutil import DIST, DIST_INFO

PYD = f"{DIST}/_ext.cp312-win_amd64.pyd"
NOTES = f"{DIST}/notes.txt"


def good_members(mingw: dict[str, Path]) -> dict[str, wheelutil.Content]:
    return {
        PYD: mingw["lib.dll"].read_bytes(),
        NOTES: b"text\n" * 40,
        f"{DIST}-1.0.data/scripts/demo.exe": peutil.LAUNCHERS["t64.exe"].read_bytes(),
    }


def not_a_zip(path: Path, mingw: dict[str, Path]) -> None:
    path.write_bytes(b"PK\x03\x04 this is no zip at all\n" * 10)


def truncated(path: Path, mingw: dict[str, Path]) -> None:
    wheelutil.write_wheel(path, good_members(mingw))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def truncated_central_directory(path: Path, mingw: dict[str, Path]) -> None:
    """The end record is there, the central directory it points to is cut short."""
    wheelutil.write_wheel(path, good_members(mingw))
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        start = archive.start_dir
    path.write_bytes(data[: start + 10] + data[-22:])


def no_record(path: Path, mingw: dict[str, Path]) -> None:
    wheelutil.write_wheel(path, good_members(mingw), record=None)


def record_disagrees(member: str) -> Callable[[Path, dict[str, Path]], None]:
    def make(path: Path, mingw: dict[str, Path]) -> None:
        members = good_members(mingw)
        record = wheelutil.record_of(wheelutil.standard_files(members))
        data = members[member]
        assert isinstance(data, bytes)
        members[member] = data[:-1] + bytes([data[-1] ^ 1])
        wheelutil.write_wheel(path, members, record=record)
    return make


def record_wrong_size(path: Path, mingw: dict[str, Path]) -> None:
    files = wheelutil.standard_files(good_members(mingw))
    record = wheelutil.record_of(files).replace(
        f",{len(files[NOTES])}\n".encode(), f",{len(files[NOTES]) + 1}\n".encode()
    )
    wheelutil.write_wheel(path, good_members(mingw), record=record)


def unlisted(name: str, data: bytes = b"x") -> Callable[[Path, dict[str, Path]], None]:
    def make(path: Path, mingw: dict[str, Path]) -> None:
        wheelutil.write_wheel(path, good_members(mingw), unlisted=[(name, data)])
    return make


def encrypted(path: Path, mingw: dict[str, Path]) -> None:
    wheelutil.write_wheel(path, good_members(mingw))
    wheelutil.set_flags(path, NOTES, 0x0001)


def corrupt_deflate(path: Path, mingw: dict[str, Path]) -> None:
    """The first byte of a deflated member's data says "reserved block type"."""
    wheelutil.write_wheel(path, good_members(mingw))
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(NOTES)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_len + extra_len] = 0xFF
    path.write_bytes(bytes(data))


def signed_wheel(signature: str) -> Callable[[Path, dict[str, Path]], None]:
    return unlisted(f"{DIST_INFO}/{signature}", b"{}")


CASES: dict[str, tuple[Callable[[Path, dict[str, Path]], None], str]] = {
    "not-a-zip": (not_a_zip, "not a zip file (no end of central directory record; truncated?)"),
    "truncated": (truncated, "not a zip file (no end of central directory record; truncated?)"),
    "truncated-directory": (
        truncated_central_directory, "the central directory is not where the end record says"
    ),
    "no-record": (no_record, "no .dist-info/RECORD member (not a wheel?)"),
    "record-disagrees-pe": (
        record_disagrees(PYD), f"RECORD's sha256 hash of member '{PYD}' does not match its bytes"
    ),
    "record-disagrees-text": (
        record_disagrees(NOTES),
        f"RECORD's sha256 hash of member '{NOTES}' does not match its bytes",
    ),
    "record-size": (record_wrong_size, f"RECORD gives member '{NOTES}' 201 bytes; it has 200"),
    "not-in-record": (unlisted(f"{DIST}/extra.txt"), f"member '{DIST}/extra.txt' is not in RECORD"),
    "dot-dot": (unlisted("../evil.dll"), "member '../evil.dll' escapes the wheel's root (a '..'"),
    "dot-dot-inside": (
        unlisted(f"{DIST}/../../evil.dll"),
        f"member '{DIST}/../../evil.dll' escapes the wheel's root (a '..' component)",
    ),
    "absolute": (unlisted("/etc/evil.dll"), "member '/etc/evil.dll' escapes the wheel's root "
                 "(an absolute path)"),
    "backslash": (unlisted("..\\evil.dll"), "member '..\\\\evil.dll' escapes the wheel's root "
                  "(a backslash)"),
    "drive": (unlisted("C:/evil.dll"), "member 'C:/evil.dll' escapes the wheel's root "
              "(a drive letter)"),
    "duplicate": (unlisted(PYD, b"MZ other"), f"duplicate member name '{PYD}'"),
    "encrypted": (encrypted, f"member '{NOTES}' is encrypted"),
    "corrupt-deflate": (corrupt_deflate, f"member '{NOTES}' is corrupt ("),
    "jws": (signed_wheel("RECORD.jws"), "the wheel carries RECORD.jws, a signature over RECORD "
            f"that signing '{PYD}' would invalidate"),
    "p7s": (signed_wheel("RECORD.p7s"), "the wheel carries RECORD.p7s, a signature over RECORD"),
}


@pytest.fixture(params=["isal", "zlib"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Members inflated and deflated by ISA-L (when installed), or by zlib alone."""
    if request.param == "zlib":
        monkeypatch.setattr("kmssign._internal.wheel.codec._isal", None)
    else:
        pytest.importorskip("isal")
    return str(request.param)


@pytest.mark.mingw
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_wheel_is_refused_and_left_byte_identical(
    case: str, codec: str, capsys: pytest.CaptureFixture[str], pki: TestPKI,
    mingw_binaries: dict[str, Path], tmp_path: Path,
) -> None:
    make, message = CASES[case]
    wheel = tmp_path / "dist" / wheelutil.WHEEL_NAME
    wheel.parent.mkdir()
    make(wheel, mingw_binaries)
    before = wheel.read_bytes()
    dest = tmp_path / "wheelhouse"
    for extra in ((), ("-w", str(dest))):
        code, out, err = run_cli(capsys, "wheel", str(wheel), *extra, *sign_args(pki.identity()))
        assert code == 1, out + err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"failed: {wheel}: "), err
        assert message in lines[0], err
        assert out.strip() == "kmssign: 1 failed"
        assert wheel.read_bytes() == before
        assert not dest.exists() or not any(dest.iterdir())
    if case in ("jws", "p7s"):  # a signed wheel is fine to verify
        return
    code, out, err = run_cli(capsys, "verify", str(wheel), "--ca", str(pki.root_pem))
    assert code == 1, out + err
    assert err.strip() == lines[0], err
    assert wheel.read_bytes() == before


@pytest.mark.osslsigncode
def test_signed_wheel_with_nothing_to_sign_is_left_alone(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, tmp_path: Path
) -> None:
    """RECORD.jws stays valid when every PE member already carries a signature."""
    identity = pki.identity()
    signed = tmp_path / "signed.exe"
    peutil.osslsigncode_sign(peutil.LAUNCHERS["t64.exe"], signed, identity,
                             "-ac", str(identity.chain_path))
    wheel = wheelutil.write_wheel(
        tmp_path / "dist" / wheelutil.WHEEL_NAME,
        {f"{DIST}/tool.exe": signed.read_bytes()},
        unlisted=[(f"{DIST_INFO}/RECORD.jws", b"{}")],
    )
    before = wheel.read_bytes()
    code, out, err = run_cli(capsys, "wheel", str(wheel), *sign_args(identity))
    assert code == 0, err
    assert f"skipped: {wheel}!{DIST}/tool.exe (already signed)" in out
    assert wheel.read_bytes() == before


@pytest.mark.mingw
def test_a_member_that_fails_leaves_the_wheel_unchanged(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, mingw_binaries: dict[str, Path],
    tmp_path: Path,
) -> None:
    """A PE member whose headers point past its end cannot be signed: the others are
    signed, but the wheel is not written, and the lines say so."""
    members = good_members(mingw_binaries)
    members[f"{DIST}/broken.dll"] = mingw_binaries["lib.dll"].read_bytes()[:1024]
    wheel = wheelutil.write_wheel(tmp_path / "dist" / wheelutil.WHEEL_NAME, members)
    before = wheel.read_bytes()
    dest = tmp_path / "wheelhouse"
    code, out, err = run_cli(
        capsys, "wheel", str(wheel), "-w", str(dest), *sign_args(pki.identity())
    )
    assert code == 1
    failures = err.strip().splitlines()
    assert len(failures) == 2, err
    assert failures[0].startswith(f"failed: {wheel}!{DIST}/broken.dll: ")
    assert failures[1] == f"failed: {wheel}: left unchanged: 1 of its PE members failed"
    assert f"skipped: {wheel}!{PYD} (signed, but the wheel was left unchanged)" in out
    assert wheel.read_bytes() == before
    assert not any(dest.iterdir())


@pytest.mark.mingw
def test_a_timestamp_outage_leaves_the_wheel_unchanged(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, tsa: LoopbackTSA,
    mingw_binaries: dict[str, Path], tmp_path: Path,
) -> None:
    wheel = wheelutil.write_wheel(
        tmp_path / "dist" / wheelutil.WHEEL_NAME, good_members(mingw_binaries)
    )
    before = wheel.read_bytes()
    code, out, err = run_cli(
        capsys, "wheel", str(wheel),
        *sign_args(pki.identity(), "--timestamp-url", tsa.url("http500")),
    )
    assert code == 1
    # whichever member asks first gets the servers' answer, the other is not let ask again
    (line,) = [line for line in err.splitlines() if line.startswith(f"failed: {wheel}!{PYD}: ")]
    assert "no timestamp server answered" in line
    assert err.strip().splitlines()[-1] == (
        f"failed: {wheel}: left unchanged: 2 of its PE members failed"
    )
    assert wheel.read_bytes() == before


def test_missing_wheel(capsys: pytest.CaptureFixture[str], pki: TestPKI, tmp_path: Path) -> None:
    code, out, err = run_cli(
        capsys, "wheel", str(tmp_path / "nope.whl"), *sign_args(pki.identity())
    )
    assert code == 1
    assert err.strip() == f"failed: {tmp_path / 'nope.whl'}: no such file or directory"


@pytest.mark.mingw
def test_a_wheel_changed_while_its_members_are_signed_is_not_overwritten(
    pki: TestPKI, mingw_binaries: dict[str, Path], tmp_path: Path
) -> None:
    """A rebuild that replaces the wheel while kmssign signs its members wins: the new
    wheel is not overwritten with one made from the old."""
    wheel = wheelutil.write_wheel(
        tmp_path / "dist" / wheelutil.WHEEL_NAME, good_members(mingw_binaries)
    )
    rebuilt = b"a rebuilt wheel"
    identity = pki.identity()

    class Rebuilding(DelegatingSigner):
        def sign(self, data: bytes, digest: str) -> bytes:  # type: ignore[override]
            wheel.write_bytes(rebuilt)
            return super().sign(data, digest)  # type: ignore[arg-type]

    settings = Settings(certificate=identity.cert_path, chain=(identity.chain_path,),
                        timestamp="off", jobs=1)
    report = sign_wheels([wheel], settings,
                         signer=Rebuilding(KeyFileSigner.from_file(identity.key_path)))
    assert [(r.path, r.reason) for r in report.failed] == [
        (wheel, "left unchanged: the wheel changed while its members were being signed")
    ]
    assert wheel.read_bytes() == rebuilt
