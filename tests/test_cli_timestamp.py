"""Timestamps end to end: sign with the loopback TSA, policies, `kmssign timestamp`, verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmssign._internal.pe.certtable import read_certificates
from kmssign._internal.pe.image import parse_pe
from kmssign._internal.pe.signable import PEFile
from kmssign._internal.pe.signedcopy import begin_signed_copy, finish_signed_copy
from tests.support import peutil
from tests.support.helpers import primary_signature, run_cli, sign_args, signature_states
from tests.support.pki import TestPKI


def _ts_args(identity, *urls: str, policy: str | None = None) -> list[str]:
    extra: list[str] = []
    for url in urls:
        extra += ["--timestamp-url", url]
    if policy:
        extra += ["--timestamp", policy]
    return sign_args(identity, *extra)


@pytest.mark.osslsigncode
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


@pytest.mark.osslsigncode
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
    assert not list(path.parent.glob(".*.kmssign*"))


@pytest.mark.osslsigncode
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
    assert code == 2 and "does not belong" in err
    assert tsa.count("tsa") == 0
    assert path.read_bytes() == before


@pytest.mark.osslsigncode
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
    assert code == 1 and "the file's digest does not match its signature" in err
    assert path.read_bytes() == bytes(data)


def test_verify_checks_tsa_roots(capsys, pki: TestPKI, samples, tsa, tmp_path: Path) -> None:
    from tests.support.pki import make_root, write_pem

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


def _sign_twice(capsys, pki: TestPKI, path: Path, *primary_extra: str) -> None:
    """A primary RSA/SHA-256 signature and a nested P-384/SHA-384 one without a timestamp."""
    code, _, err = run_cli(
        capsys, "sign", str(path), *sign_args(pki.identity("rsa2048"), *primary_extra)
    )
    assert code == 0, err
    code, _, err = run_cli(
        capsys, "sign", str(path), "--append", *sign_args(pki.identity("p384"))
    )
    assert code == 0, err


@pytest.mark.osslsigncode
def test_timestamp_command_stamps_nested_signatures_too(
    capsys, pki: TestPKI, samples, tsa
) -> None:
    path = samples["t64.exe"]
    _sign_twice(capsys, pki, path)
    assert signature_states(path, pki) == [("sha256", False), ("sha384", False)]
    code, out, _ = run_cli(capsys, "verify", "--no-chain", str(path))
    assert code == 0
    assert "nested signature: " in out and ", sha384, no timestamp; chain not checked" in out
    before = tsa.count("tsa")
    code, out, err = run_cli(capsys, "timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
    assert code == 0, err
    assert f"timestamped: {path}" in out
    assert tsa.count("tsa") == before + 2
    assert signature_states(path, pki) == [("sha256", True), ("sha384", True)]
    out = peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    assert out.count("Timestamp Server Signature verification: ok") == 2, out
    code, out, err = run_cli(capsys, "verify", str(path), "--ca", str(pki.root_pem))
    assert code == 0, err
    line = out.splitlines()[0]
    assert line.startswith(f"verified: {path} (") and ", sha256, timestamp 20" in line
    assert "chain not checked" not in line and ", sha384, timestamp 20" in line
    assert line.count("nested signature: ") == 1
    # nothing left to stamp: no request, no change
    after = path.read_bytes()
    code, out, _ = run_cli(capsys, "timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
    assert code == 0 and "already timestamped" in out
    assert path.read_bytes() == after and tsa.count("tsa") == before + 2


@pytest.mark.osslsigncode
def test_timestamp_command_keeps_an_existing_primary_token(
    capsys, pki: TestPKI, samples, tsa
) -> None:
    def primary_token(p: Path) -> bytes:
        token = primary_signature(p).timestamp_token
        assert token is not None
        return token

    path = samples["w32.exe"]
    _sign_twice(capsys, pki, path, "--timestamp-url", tsa.url("tsa"))
    token = primary_token(path)
    assert signature_states(path, pki) == [("sha256", True), ("sha384", False)]
    before = tsa.count("tsa")
    code, _, err = run_cli(capsys, "timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
    assert code == 0, err
    assert tsa.count("tsa") == before + 1  # the nested signature's only
    assert primary_token(path) == token
    assert signature_states(path, pki) == [("sha256", True), ("sha384", True)]
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)


def test_timestamp_command_refuses_a_nested_signature_of_another_file(
    capsys, pki: TestPKI, samples, tsa
) -> None:
    from kmssign._internal.authenticode import build as authenticode
    from kmssign._internal.authenticode.verify import read_signatures
    from kmssign._internal.engine.atomic import atomic_output

    path, other = samples["t64.exe"], samples["w32.exe"]
    for target, kind in ((path, "rsa2048"), (other, "p256")):
        code, _, err = run_cli(capsys, "sign", str(target), *sign_args(pki.identity(kind)))
        assert code == 0, err
    foreign = primary_signature(other).der
    with open(path, "rb") as f:
        image = parse_pe(f)
        own = read_signatures(PEFile(f, image))[0].der
        with atomic_output(path) as out:
            _, state = begin_signed_copy(f, image, "sha256", out)
            finish_signed_copy(out, state, authenticode.add_nested(own, foreign))
    before, calls = path.read_bytes(), tsa.count("tsa")
    code, _, err = run_cli(capsys, "timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
    assert code == 1
    assert f"{path}" in err and "nested signature 1: the file's digest does not match" in err
    assert path.read_bytes() == before and tsa.count("tsa") == calls


def test_a_timestamped_signature_is_never_re_encoded(
    capsys, pki: TestPKI, samples, tsa, monkeypatch
) -> None:
    """Reading a timestamped signature and nesting another under it keeps every byte of
    it as found: asn1crypto re-encodes nothing (it did once, after `.native` was asked of
    the unsigned attributes: 20-70 s per file for a token, and bytes it might change)."""
    from asn1crypto import core

    from kmssign._internal.authenticode import build as authenticode
    from kmssign._internal.authenticode.verify import read_signatures

    path, other = samples["t64.exe"], samples["w32.exe"]
    code, _, err = run_cli(
        capsys, "sign", str(path), *_ts_args(pki.identity("rsa2048"), tsa.url("tsa"))
    )
    assert code == 0, err
    run_cli(capsys, "sign", str(other), *sign_args(pki.identity("p256")))
    inner = primary_signature(other).der
    re_encoded: list[str] = []
    for cls in (core.Sequence, core.SequenceOf):
        original = cls._set_contents

        def counting(self, *args, _original=original, **kwargs):
            re_encoded.append(type(self).__name__)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "_set_contents", counting)
    with open(path, "rb") as f:
        image = parse_pe(f)
        found = read_certificates(f, image)[0].data
        outer = read_signatures(PEFile(f, image))[0]
    assert outer.timestamp_token is not None
    assert found == outer.der
    nested = authenticode.add_nested(outer.der, inner)
    assert re_encoded == []
    # the outer SignedData's certificates, signed attributes and token are all still there
    assert outer.signed_attrs is not None
    for part in (outer.signed_attrs, outer.timestamp_token, inner):
        assert part in nested
