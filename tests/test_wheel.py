"""``kmssign wheel`` and ``kmssign verify`` of wheels, end to end on real win_amd64-shaped
wheels: mingw-w64 DLLs (a .pyd, a delvewheel-style mangled DLL in <pkg>.libs/), pip's
launcher in .data/scripts/, a vendor-signed DLL, non-PE members stored and deflated."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kmssign._internal.signers.local import KeyFileSigner
from kmssign.api import sign_wheels, verify_wheels
from kmssign.config import Settings
from tests.support import fixtures_build, peutil, wheelutil
from tests.support.fixtures_kms import KmsIdentity, KmsServer
from tests.support.helpers import DelegatingSigner, primary_signature, run_cli, sign_args
from tests.support.kms_proxy import KmsProxy
from tests.support.pki import TestPKI
from tests.support.tsa_server import LoopbackTSA
from tests.support.wheelutil import PE_MEMBERS, RECORD, VENDOR_MEMBER

pytestmark = [pytest.mark.mingw, pytest.mark.osslsigncode]


@pytest.fixture(scope="module")
def vendor_dll(
    pki: TestPKI, tsa: LoopbackTSA, mingw_binaries: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """lib.dll signed and timestamped by osslsigncode with another key: a vendor's DLL."""
    vendor = pki.identity("p256")
    out = tmp_path_factory.mktemp("vendor") / "vendor.dll"
    peutil.osslsigncode_sign(mingw_binaries["lib.dll"], out, vendor,
                             "-ac", str(vendor.chain_path), "-ts", tsa.url())
    return out


@pytest.fixture
def demo_wheel(
    tmp_path: Path, mingw_binaries: dict[str, Path], vendor_dll: Path
) -> Path:
    return wheelutil.write_wheel(
        tmp_path / "dist" / wheelutil.WHEEL_NAME,
        wheelutil.demo_members(mingw_binaries, vendor_dll),
    )


def infos(wheel: Path) -> list[tuple[str, tuple[int, ...], int, int, int]]:
    with zipfile.ZipFile(wheel) as archive:
        return [(i.filename, i.date_time, i.external_attr, i.compress_type, i.create_system)
                for i in archive.infolist()]


def test_wheel_signs_every_pe_member_in_place_and_keeps_the_rest_byte_for_byte(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, tsa: LoopbackTSA, demo_wheel: Path,
    tmp_path: Path,
) -> None:
    identity = pki.identity("rsa2048")
    before = wheelutil.raw_members(demo_wheel)
    layout = infos(demo_wheel)
    code, out, err = run_cli(
        capsys, "wheel", str(demo_wheel), *sign_args(identity, "--timestamp-url", tsa.url())
    )
    assert code == 0, err
    for name in PE_MEMBERS:
        assert f"signed: {demo_wheel}!{name} (" in out
    assert f"skipped: {demo_wheel}!{VENDOR_MEMBER} (already signed)" in out
    assert "4 signed, 1 skipped, 0 failed" in out
    extracted = wheelutil.check_signed_wheel(demo_wheel, pki, tmp_path, timestamped=True)
    for path in extracted.values():
        assert primary_signature(path).timestamped
    after = wheelutil.raw_members(demo_wheel)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {*PE_MEMBERS, RECORD}
    assert infos(demo_wheel) == layout  # names, order, dates, modes, methods
    code, out, err = run_cli(capsys, "verify", str(demo_wheel), "--ca", str(pki.root_pem))
    assert code == 0, err
    assert out.count("verified: ") == len(PE_MEMBERS) + 1
    assert f"verified: {demo_wheel}!{VENDOR_MEMBER} (kmssign Test Signer p256" in out


def test_wheel_dir_leaves_the_original_and_writes_into_dir(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, demo_wheel: Path, tmp_path: Path
) -> None:
    original = demo_wheel.read_bytes()
    dest = tmp_path / "wheelhouse"
    code, out, err = run_cli(
        capsys, "wheel", str(demo_wheel), "-w", str(dest), *sign_args(pki.identity())
    )
    assert code == 0, err
    assert demo_wheel.read_bytes() == original
    signed = dest / demo_wheel.name
    for name in PE_MEMBERS:  # each line says where the signed member went (#23 item 3)
        assert f"signed: {demo_wheel}!{name} -> {signed}!{name} (" in out, out
    wheelutil.check_signed_wheel(signed, pki, tmp_path)


def test_verify_fails_unsigned_members_as_loose_files_and_allow_unsigned_reports_them(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, demo_wheel: Path
) -> None:
    """Unsigned means failed, in a wheel as for a loose file (#23 item 2)."""
    code, out, err = run_cli(capsys, "verify", str(demo_wheel.parent), "--ca", str(pki.root_pem))
    assert code == 1
    for name in PE_MEMBERS:
        assert f"failed: {demo_wheel}!{name}: not signed" in err.splitlines()
    assert "1 verified, 4 failed" in out
    code, out, err = run_cli(
        capsys, "verify", str(demo_wheel), "--ca", str(pki.root_pem), "--allow-unsigned"
    )
    assert code == 0, err
    for name in PE_MEMBERS:
        assert f"unsigned: {demo_wheel}!{name} (not signed)" in out
    assert "1 verified, 4 unsigned, 0 failed" in out
    code, out, err = run_cli(
        capsys, "verify", str(demo_wheel), "--ca", str(pki.root_pem),
        "--include", f"*/{VENDOR_MEMBER.rsplit('/', 1)[1]}",
    )
    assert code == 0, err
    assert out.splitlines()[-1] == "kmssign: 1 verified, 0 failed"
    code, out, err = run_cli(
        capsys, "verify", str(demo_wheel), "--ca", str(pki.root_pem), "--exclude", "*",
    )
    assert out.splitlines()[-1] == "kmssign: 1 verified, 0 failed"  # RECORD only


def test_sign_given_a_wheel_names_the_wheel_command(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, demo_wheel: Path
) -> None:
    original = demo_wheel.read_bytes()
    code, out, err = run_cli(capsys, "sign", str(demo_wheel), *sign_args(pki.identity()))
    assert code == 1
    assert err.strip() == (
        f"failed: {demo_wheel}: a wheel, not a PE file: `kmssign wheel {demo_wheel}` "
        "signs the PE files in it"
    )
    assert demo_wheel.read_bytes() == original


def test_library_signs_one_member_per_sign_call_and_verify_agrees(
    pki: TestPKI, demo_wheel: Path, tmp_path: Path
) -> None:
    identity = pki.identity("rsa2048")
    calls: list[bytes] = []

    class Counting(DelegatingSigner):
        def sign(self, data: bytes, digest: str) -> bytes:  # type: ignore[override]
            calls.append(data)
            return super().sign(data, digest)  # type: ignore[arg-type]

    settings = Settings(certificate=identity.cert_path, chain=(identity.chain_path,),
                        timestamp="off", jobs=4)
    signer = Counting(KeyFileSigner.from_file(identity.key_path))
    report = sign_wheels([demo_wheel], settings, signer=signer)
    assert report.ok, report.results
    assert len(calls) == len(PE_MEMBERS)
    assert sorted(str(r.path).split("!")[1] for r in report.results if r.status == "signed") \
        == sorted(PE_MEMBERS)
    verified = verify_wheels([demo_wheel], roots=[pki.root_pem], require_signed=True)
    assert verified.ok, verified.results
    assert verified.count("verified") == len(PE_MEMBERS) + 1


def test_json_report_names_members(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, demo_wheel: Path
) -> None:
    code, out, err = run_cli(
        capsys, "wheel", str(demo_wheel), "--json", *sign_args(pki.identity())
    )
    assert code == 0, err
    report = json.loads(out)
    assert {f["path"] for f in report["files"]} == {
        f"{demo_wheel}!{name}" for name in (*PE_MEMBERS, VENDOR_MEMBER)
    }


def test_signed_wheel_installs_with_pip(
    pki: TestPKI, demo_wheel: Path, tmp_path: Path
) -> None:
    """pip installs the signed wheel (a win_amd64 one, so into a target directory for that
    platform) and writes an installed RECORD whose hashes match what it installed."""
    identity = pki.identity("rsa2048")
    settings = Settings(key_file=identity.key_path, certificate=identity.cert_path,
                        chain=(identity.chain_path,), timestamp="off")
    assert sign_wheels([demo_wheel], settings).ok
    target = tmp_path / "site-packages"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile",
         "--disable-pip-version-check", "--platform", "win_amd64", "--python-version", "3.12",
         "--implementation", "cp", "--abi", "cp312", "--only-binary=:all:",
         "--target", str(target), str(demo_wheel)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    members = fixtures_build.members(demo_wheel)
    pyd = "demo_pkg/_ext.cp312-win_amd64.pyd"
    assert (target / pyd).read_bytes() == members[pyd]
    assert (target / "bin" / "demo.exe").read_bytes() == members[PE_MEMBERS[2]]
    record = target / "demo_pkg-1.0.dist-info" / "RECORD"
    rows = list(csv.reader(record.read_text().splitlines()))
    hashed = {name: digest for name, digest, _size in rows if digest}
    # scripts and data went through pip's temporary home; their rows point there
    assert hashed.pop("../../bin/demo.exe") == wheelutil.record_hash(members[PE_MEMBERS[2]])
    assert hashed.pop("../../share/demo/hello.exe") == wheelutil.record_hash(
        members[PE_MEMBERS[3]]
    )
    for name, digest in hashed.items():
        assert wheelutil.record_hash((target / name).read_bytes()) == digest, name
    assert pyd in hashed and PE_MEMBERS[1] in hashed


def test_kms_key_one_sign_call_per_member_timestamped(
    capsys: pytest.CaptureFixture[str], aws_env: dict[str, str], kms_server: KmsServer,
    kms_identity: Callable[..., KmsIdentity], pki: TestPKI, tsa: LoopbackTSA,
    demo_wheel: Path, tmp_path: Path,
) -> None:
    """Through moto's KMS over HTTP (a counting proxy in front): one GetPublicKey for the
    run and one Sign per PE member, and every member accepted by osslsigncode."""
    identity = kms_identity("RSA_2048")
    proxy = KmsProxy(kms_server.endpoint_url).start()
    try:
        code, out, err = run_cli(
            capsys, "wheel", str(demo_wheel), "--key-id", identity.key_id,
            "--cert", str(identity.cert_path), "--endpoint-url", proxy.endpoint_url,
            "--timestamp-url", tsa.url(), "--jobs", "3",
        )
        assert code == 0, err
        assert proxy.count("Sign") == len(PE_MEMBERS)
        assert proxy.count("GetPublicKey") == 1
    finally:
        proxy.stop()
    extracted = wheelutil.check_signed_wheel(demo_wheel, pki, tmp_path, timestamped=True)
    for path in extracted.values():
        assert "kmssign Test KMS Signer RSA_2048" in peutil.osslsigncode_verify(
            path, pki.root_pem, tsa_ca=pki.root_pem
        )
    code, out, err = run_cli(capsys, "verify", str(demo_wheel), "--ca", str(pki.root_pem),
                             "--require-timestamp", "--require-signed")
    assert code == 0, err


def test_globs_match_paths_in_the_wheel_and_no_skip_signed_resigns_the_vendor_dll(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, demo_wheel: Path, tmp_path: Path
) -> None:
    before = wheelutil.raw_members(demo_wheel)
    code, out, err = run_cli(
        capsys, "wheel", str(demo_wheel), "--include", "demo_pkg/*", "--exclude", "*.pyd",
        "--no-skip-signed", *sign_args(pki.identity()),
    )
    assert code == 0, err
    assert out.splitlines() == [
        f"signed: {demo_wheel}!{VENDOR_MEMBER} (kmssign Test Signer rsa2048, sha256, "
        "no timestamp)",
        "kmssign: 1 signed, 0 failed",
    ]
    after = wheelutil.raw_members(demo_wheel)
    assert {n for n in before if before[n] != after[n]} == {VENDOR_MEMBER, RECORD}
    wheelutil.check_signed_wheel(demo_wheel, pki, tmp_path, members=(VENDOR_MEMBER,))


def test_dry_run_checks_the_wheel_and_lists_members_writing_nothing(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, demo_wheel: Path, tmp_path: Path
) -> None:
    before = demo_wheel.read_bytes()
    dest = tmp_path / "wheelhouse"
    code, out, err = run_cli(capsys, "wheel", str(demo_wheel), "--dry-run", "-w", str(dest),
                             "--cert", str(tmp_path / "no-such.pem"))
    assert code == 0, err
    for name in PE_MEMBERS:
        assert f"would-sign: {demo_wheel}!{name}" in out
    assert f"skipped: {demo_wheel}!{VENDOR_MEMBER} (already signed)" in out
    assert demo_wheel.read_bytes() == before
    assert not dest.exists()


def test_verify_fails_a_signed_member_changed_afterwards(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, mingw_binaries: dict[str, Path],
    tmp_path: Path,
) -> None:
    """A member changed after signing, with RECORD made to match (as a careless repack
    would): the signature check names it."""
    signed = tmp_path / "signed.dll"
    identity = pki.identity()
    peutil.osslsigncode_sign(mingw_binaries["lib.dll"], signed, identity,
                             "-ac", str(identity.chain_path))
    data = bytearray(signed.read_bytes())
    data[0x400] ^= 1  # a byte of the first section
    wheel = wheelutil.write_wheel(tmp_path / wheelutil.WHEEL_NAME, {"pkg/a.dll": bytes(data)})
    code, out, err = run_cli(capsys, "verify", str(wheel), "--ca", str(pki.root_pem))
    assert code == 1
    assert err.strip() == (
        f"failed: {wheel}!pkg/a.dll: the file's digest does not match its signature "
        "(the file was changed after signing)"
    )


def test_without_isal_zlib_reads_and_compresses_the_members(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pki: TestPKI,
    demo_wheel: Path, tmp_path: Path,
) -> None:
    """The pure path (kmssign without the `fast` extra) signs the same members right."""
    monkeypatch.setattr("kmssign._internal.wheel.codec._isal", None)
    code, out, err = run_cli(capsys, "wheel", str(demo_wheel), *sign_args(pki.identity()))
    assert code == 0, err
    assert "4 signed, 1 skipped, 0 failed" in out
    wheelutil.check_signed_wheel(demo_wheel, pki, tmp_path)
    code, out, err = run_cli(capsys, "verify", str(demo_wheel), "--ca", str(pki.root_pem),
                             "--require-signed")
    assert code == 0, err


@pytest.mark.parametrize("middle", ["kept", "changed by signing"])
def test_a_signed_members_middle_is_deflated_while_the_wheel_is_read_and_spliced_in(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pki: TestPKI,
    demo_wheel: Path, tmp_path: Path, middle: str,
) -> None:
    """Each unsigned, deflated PE member (three of the four; one is stored) has its
    middle deflated during the scan, in pieces, and spliced into its new data; a middle
    that signing changed after all (here one whose first piece starts before the
    CheckSum field) is not used, and that member is deflated whole. The wheel is right
    either way."""
    from kmssign._internal.engine import wheelsign

    packs: list[tuple[bool, bool]] = []  # (a middle was given, it was spliced)
    real_pack, real_deflate = wheelsign.pack, wheelsign.deflate_range

    def spy(src: Any, out: Any, method: int, *, hasher: Any = None, middle: Any = ()) -> Any:
        packed = real_pack(src, out, method, hasher=hasher, middle=middle)
        packs.append((bool(middle), bool(middle) and packed is not None))
        return packed

    monkeypatch.setattr(wheelsign, "pack", spy)
    monkeypatch.setattr(wheelsign, "_PIECE", 4096)  # each middle in many pieces
    if middle != "kept":
        monkeypatch.setattr(
            wheelsign, "deflate_range",
            lambda source, start, end, data: real_deflate(source, start - 0x100, end, data),
        )
    code, out, err = run_cli(capsys, "wheel", str(demo_wheel), *sign_args(pki.identity()))
    assert code == 0, err
    assert "4 signed, 1 skipped, 0 failed" in out
    wheelutil.check_signed_wheel(demo_wheel, pki, tmp_path)
    if middle == "kept":
        assert sorted(packs) == [(False, False), (True, True), (True, True), (True, True)]
    else:  # tried, refused, packed again without
        assert sorted(packs) == [(False, False)] * 4 + [(True, False)] * 3
