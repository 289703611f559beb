"""Broken inputs through the CLI: exit 1, one line naming the file and the reason, no
traceback, and every file byte-for-byte unchanged (sign and verify alike)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import malformed, peutil
from tests.support.helpers import run_cli
from tests.support.pki import TestPKI


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("corpus")
    return malformed.build_corpus(peutil.LAUNCHERS["t64.exe"], out)


def _check_each(capsys, corpus: dict[str, Path], argv_for) -> None:
    assert len(corpus) >= 20
    for name, path in corpus.items():
        before = path.read_bytes()
        code, out, err = run_cli(capsys, *argv_for(path))
        assert code == 1, (name, out, err)
        assert "Traceback" not in out + err, name
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, (name, err)
        assert lines[0].startswith(f"failed: {path}: ") and len(lines[0]) > len(str(path)) + 10
        assert path.read_bytes() == before, name


def test_sign_refuses_every_malformed_input(capsys, corpus, pki: TestPKI) -> None:
    identity = pki.identity("rsa2048")
    _check_each(
        capsys, corpus,
        lambda p: ["sign", str(p), "--key-file", str(identity.key_path),
                   "--cert", str(identity.cert_path), "--no-timestamp"],
    )


def test_verify_refuses_every_malformed_input(capsys, corpus, pki: TestPKI) -> None:
    _check_each(capsys, corpus, lambda p: ["verify", str(p), "--ca", str(pki.root_pem)])


@pytest.mark.osslsigncode
def test_garbage_signature_is_replaced_only_on_request(capsys, corpus, pki: TestPKI) -> None:
    identity = pki.identity("rsa2048")
    path = corpus["garbage_pkcs7"]
    code, out, err = run_cli(
        capsys, "sign", str(path), "--key-file", str(identity.key_path),
        "--cert", str(identity.cert_path), "--chain", str(identity.chain_path),
        "--no-timestamp", "--no-skip-signed",
    )
    assert code == 0, err
    peutil.osslsigncode_verify(path, pki.root_pem)


def test_certificate_warnings(capsys, pki: TestPKI, samples, tmp_path) -> None:
    """An expired leaf or one without codeSigning signs, with a warning naming the problem."""
    import datetime as dt

    from tests.support.pki import make_key, write_key, write_pem

    key = make_key("rsa2048")
    now = dt.datetime.now(dt.timezone.utc)
    expired = pki.intermediate.issue(
        "kmssign Expired Signer", key.public_key(),
        not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1),
    )
    key_path = write_key(tmp_path / "k.pem", key)
    cert_path = write_pem(tmp_path / "c.pem", expired, pki.intermediate.cert)
    code, out, err = run_cli(
        capsys, "sign", str(samples["t64.exe"]), "--key-file", str(key_path),
        "--cert", str(cert_path), "--no-timestamp",
    )
    assert code == 0, err
    assert "warning: certificate kmssign Expired Signer expired on" in err
    assert "has no codeSigning extended key usage" in err
