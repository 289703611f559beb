"""Many files at once: concurrency, exact KMS call counts, throttling, reports, progress."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest

from kmssign._internal.engine.report import FileResult, Report
from kmssign.frontends.cli.output import Printer
from tests.support import peutil
from tests.support.helpers import run_cli
from tests.support.kms_proxy import KmsProxy, fail
from tests.support.pki import TestPKI


def make_distinct(src: Path, directory: Path, count: int) -> list[Path]:
    """``count`` different PE files: a real launcher with a unique overlay each."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"tool{i:03d}.exe"
        shutil.copyfile(src, path)
        with open(path, "ab") as f:
            f.write(f"overlay {i}".encode())
        paths.append(path)
    return paths


@pytest.fixture
def proxy(kms_server):
    p = KmsProxy(kms_server.endpoint_url).start()
    yield p
    p.stop()


def _kms(identity, proxy: KmsProxy) -> list[str]:
    return ["--key-id", identity.key_id, "--cert", str(identity.cert_path),
            "--endpoint-url", proxy.endpoint_url]


@pytest.mark.osslsigncode
def test_one_get_public_key_and_one_sign_per_file(
    capsys, aws_env, kms_identity, proxy, pki: TestPKI, tsa, tmp_path
) -> None:
    files = make_distinct(peutil.LAUNCHERS["t64.exe"], tmp_path / "many", 24)
    identity = kms_identity("RSA_2048")
    tsa.reset()
    code, out, err = run_cli(
        capsys, "sign", str(tmp_path / "many"), *_kms(identity, proxy), "--jobs", "8",
        "--timestamp-url", tsa.url("tsa"),
    )
    assert code == 0, err
    assert out.count("signed: ") == len(files)
    assert proxy.calls["GetPublicKey"] == 1
    assert proxy.calls["Sign"] == len(files)
    assert set(proxy.calls) == {"GetPublicKey", "Sign"}  # no DescribeKey, no ListKeys
    assert tsa.count("tsa") == len(files)
    for path in files[::6]:
        peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)


@pytest.mark.osslsigncode
def test_throttling_on_every_fifth_sign_still_signs_everything(
    capsys, aws_env, kms_identity, proxy, pki: TestPKI, tmp_path
) -> None:
    files = make_distinct(peutil.LAUNCHERS["w32.exe"], tmp_path / "many", 20)
    identity = kms_identity("ECC_NIST_P256")
    proxy.rules.append(fail("Sign", 400, "ThrottlingException", "Rate exceeded", every=5))
    code, out, err = run_cli(
        capsys, "sign", *map(str, files), *_kms(identity, proxy), "--jobs", "8", "--no-timestamp"
    )
    assert code == 0, err
    assert out.count("signed: ") == len(files)
    assert proxy.calls["Sign"] > len(files)
    for path in files:
        peutil.osslsigncode_verify(path, pki.root_pem)


def test_one_malformed_file_fails_alone(capsys, pki: TestPKI, tmp_path) -> None:
    from tests.support.helpers import sign_args

    files = make_distinct(peutil.LAUNCHERS["t64.exe"], tmp_path / "many", 10)
    broken = files[4]
    data = bytearray(broken.read_bytes())
    data[0x3C:0x40] = (0x7FFFFFF0).to_bytes(4, "little")  # e_lfanew far outside the file
    broken.write_bytes(data)
    code, out, err = run_cli(
        capsys, "sign", *map(str, files), *sign_args(pki.identity("rsa2048"), "--jobs", "4")
    )
    assert code == 1
    assert out.count("signed: ") == len(files) - 1
    failed = [line for line in err.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and str(broken) in failed[0]
    assert broken.read_bytes() == bytes(data)
    assert "0 failed" not in out and "1 failed" in out


def test_json_report_matches_the_files(capsys, pki: TestPKI, tmp_path) -> None:
    from tests.support.helpers import sign_args

    files = make_distinct(peutil.LAUNCHERS["t64.exe"], tmp_path / "many", 6)
    before = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    shutil.copyfile(tmp_path / "many" / "tool000.exe", tmp_path / "signed-already.exe")
    code, out, err = run_cli(
        capsys, "sign", *map(str, files), *sign_args(pki.identity("p256"), "--json")
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True
    assert {f["path"] for f in report["files"]} == set(before)
    for entry in report["files"]:
        path = Path(entry["path"])
        assert entry["status"] == "signed"
        assert entry["sha256_before"] == before[entry["path"]]
        assert entry["sha256_after"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["sha256_after"] != entry["sha256_before"]
        assert entry["signer"] == "kmssign Test Signer p256"
    # a second run reports every file as skipped, JSON still valid
    code, out, _ = run_cli(
        capsys, "sign", *map(str, files), *sign_args(pki.identity("p256"), "--json")
    )
    assert code == 0
    assert {f["status"] for f in json.loads(out)["files"]} == {"skipped"}


def test_no_progress_noise_without_a_terminal(capsys, pki: TestPKI, tmp_path) -> None:
    from tests.support.helpers import sign_args

    files = make_distinct(peutil.LAUNCHERS["t64.exe"], tmp_path / "many", 5)
    code, out, err = run_cli(capsys, "sign", *map(str, files), *sign_args(pki.identity("rsa2048")))
    assert code == 0
    assert "\x1b" not in out + err and "\r" not in out + err
    code, out, err = run_cli(
        capsys, "verify", *map(str, files), "--ca", str(pki.root_pem), "--quiet"
    )
    assert code == 0 and out == "" and err == ""


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_on_a_terminal() -> None:
    out, err = io.StringIO(), _Tty()
    printer = Printer(out=out, err=err)
    printer.start(3)
    for i in range(3):
        printer.result(FileResult(Path(f"f{i}.exe"), "signed", signer="S", digest="sha256"))
    printer.finish(Report())
    assert "[1/3]" in err.getvalue() and "[2/3]" in err.getvalue()
    assert "ETA" in err.getvalue() and "\r\x1b[K" in err.getvalue()
    assert out.getvalue().count("signed: ") == 3
    quiet_err = _Tty()
    quiet = Printer(out=io.StringIO(), err=quiet_err, quiet=True)
    quiet.start(2)
    quiet.result(FileResult(Path("a.exe"), "signed"))
    assert quiet_err.getvalue() == ""


def test_dry_run_calls_no_service(
    capsys, aws_env, kms_identity, proxy, tsa, tmp_path, samples
) -> None:
    """Every real sample (PE32, PE32+, ARM64, ...) and a batch: planned, nothing asked of
    KMS or the TSA, nothing written."""
    files = [*make_distinct(peutil.LAUNCHERS["t64.exe"], tmp_path / "many", 4),
             *samples.values()]
    before = {p: p.read_bytes() for p in files}
    identity = kms_identity("RSA_2048")
    tsa.reset()
    code, out, err = run_cli(
        capsys, "sign", *map(str, files), *_kms(identity, proxy), "--dry-run",
        "--timestamp-url", tsa.url("tsa"),
    )
    assert code == 0, err
    assert out.count("would-sign: ") == len(files)
    assert sum(proxy.calls.values()) == 0 and tsa.count("tsa") == 0
    assert {p: p.read_bytes() for p in files} == before
