"""Timestamps end to end: sign with the loopback TSA, policies, `kmssign timestamp`, verify."""

from __future__ import annotations

from pathlib import Path

from tests import peutil
from tests.helpers import run_cli, sign_args
from tests.pki import TestPKI


def _ts_args(identity, *urls: str, policy: str | None = None) -> list[str]:
    extra: list[str] = []
    for url in urls:
        extra += ["--timestamp-url", url]
    if policy:
        extra += ["--timestamp", policy]
    return sign_args(identity, *extra)


def test_signed_and_timestamped_files_pass_osslsigncode(capsys, pki: TestPKI, samples, tsa) -> None:
    for kind in ("rsa2048", "p256"):
        identity = pki.identity(kind)
        for path in samples.values():
            code, out, err = run_cli(
                capsys, "sign", str(path), "--no-skip-signed", *_ts_args(identity, tsa.url("tsa"))
            )
            assert code == 0, err
            assert "timestamp 20" in out
            peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
            code, out, err = run_cli(
                capsys, "verify", str(path), "--ca", str(pki.root_pem), "--require-timestamp"
            )
            assert code == 0, err
            assert "timestamp 20" in out


def test_failover_to_next_server_is_logged(capsys, pki: TestPKI, samples, tsa) -> None:
    path = samples["t64.exe"]
    bad = [tsa.refused_url(), tsa.url("http500"), tsa.url("garbage"), tsa.url("wrong-nonce"),
           tsa.url("wrong-imprint"), tsa.url("no-eku"), tsa.url("rejection")]
    code, out, err = run_cli(
        capsys, "sign", str(path), *_ts_args(pki.identity("rsa2048"), *bad, tsa.url("tsa"))
    )
    assert code == 0, err
    for url in bad:
        assert f"timestamp server {url} failed" in err
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)


def test_required_timestamp_outage_leaves_file_unchanged(
    capsys, pki: TestPKI, samples, tsa
) -> None:
    path = samples["w32.exe"]
    before = path.read_bytes()
    code, out, err = run_cli(
        capsys, "sign", str(path),
        *_ts_args(pki.identity("rsa2048"), tsa.url("http500"), tsa.url("rejection")),
    )
    assert code == 1
    assert f"failed: {path}: no timestamp server answered" in err
    assert "Traceback" not in err
    assert path.read_bytes() == before
    assert not list(path.parent.glob(".*.kmssign"))


def test_optional_timestamp_signs_and_warns(capsys, pki: TestPKI, samples, tsa) -> None:
    path = samples["w32.exe"]
    code, out, err = run_cli(
        capsys, "sign", str(path),
        *_ts_args(pki.identity("rsa2048"), tsa.url("http500"), policy="optional"),
    )
    assert code == 0, err
    assert "warning:" in err and "signed without a timestamp" in err
    assert "no timestamp" in out
    peutil.osslsigncode_verify(path, pki.root_pem)
    code, _, err = run_cli(
        capsys, "verify", str(path), "--ca", str(pki.root_pem), "--require-timestamp"
    )
    assert code == 1 and "has no timestamp" in err


def test_mismatched_certificate_spends_no_timestamp_quota(
    capsys, pki: TestPKI, samples, tsa
) -> None:
    tsa.reset()
    rsa, ec = pki.identity("rsa2048"), pki.identity("p256")
    path = samples["t64.exe"]
    before = path.read_bytes()
    code, _, err = run_cli(
        capsys, "sign", str(path), "--key-file", str(rsa.key_path), "--cert", str(ec.cert_path),
        "--timestamp-url", tsa.url("tsa"),
    )
    assert code == 1 and "does not belong" in err
    assert tsa.count("tsa") == 0
    assert path.read_bytes() == before


def test_timestamp_command_adds_a_timestamp(capsys, pki: TestPKI, samples, tsa) -> None:
    path = samples["t64.exe"]
    code, _, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("p384")))
    assert code == 0, err
    out = peutil.osslsigncode_verify(path, pki.root_pem)
    assert "Timestamp Server Signature verification: ok" not in out
    code, out, err = run_cli(
        capsys, "timestamp", str(path), "--timestamp-url", tsa.url("http503"),
        "--timestamp-url", tsa.url("tsa"),
    )
    assert code == 0, err
    assert f"timestamped: {path}" in out
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    # a second run leaves it alone
    after = path.read_bytes()
    code, out, _ = run_cli(capsys, "timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
    assert code == 0 and "already timestamped" in out and path.read_bytes() == after


def test_timestamp_command_refuses_unsigned_and_stale_signatures(
    capsys, pki: TestPKI, samples, tsa, tmp_path: Path
) -> None:
    unsigned = samples["w32.exe"]
    before = unsigned.read_bytes()
    code, _, err = run_cli(capsys, "timestamp", str(unsigned), "--timestamp-url", tsa.url("tsa"))
    assert code == 1 and "not signed" in err and unsigned.read_bytes() == before
    # a signature that no longer matches the file is not timestamped
    path = samples["t64.exe"]
    run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    data = bytearray(path.read_bytes())
    data[0x400] ^= 0xFF
    path.write_bytes(data)
    code, _, err = run_cli(capsys, "timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
    assert code == 1 and "does not match the file" in err
    assert path.read_bytes() == bytes(data)


def test_verify_checks_tsa_roots(capsys, pki: TestPKI, samples, tsa, tmp_path: Path) -> None:
    from tests.pki import make_root, write_pem

    path = samples["t64.exe"]
    code, _, _ = run_cli(
        capsys, "sign", str(path), *_ts_args(pki.identity("rsa2048"), tsa.url("tsa"))
    )
    assert code == 0
    other = write_pem(tmp_path / "other.pem", make_root("Unrelated TSA Root").cert)
    code, _, err = run_cli(
        capsys, "verify", str(path), "--ca", str(pki.root_pem), "--tsa-ca", str(other)
    )
    assert code == 1 and "does not chain" in err
    code, _, err = run_cli(
        capsys, "verify", str(path), "--ca", str(pki.root_pem), "--tsa-ca", str(pki.root_pem)
    )
    assert code == 0, err
