"""Each file's result says what happened as a stable code (FileResult.outcome, the JSON
report's "outcome") and keeps the exception for a library caller; library messages name
settings, and the CLI says its flags where it prints them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kmssign import api
from kmssign.config import Settings
from kmssign.errors import (
    ChainUntrustedError,
    ConfigError,
    DigestMismatchError,
    KmsSignError,
    TimestampMissingError,
    UnsignedError,
    VerificationError,
)
from tests.support import peutil
from tests.support.helpers import break_signature, run_cli, sign_args
from tests.support.pki import TestPKI, make_root, write_pem

Outcome = api.Outcome


def _settings(pki: TestPKI) -> Settings:
    identity = pki.identity("rsa2048")
    return Settings(key_file=identity.key_path, certificate=identity.cert_path,
                    chain=(identity.chain_path,), timestamp="off")


@pytest.mark.osslsigncode
def test_signing_outcomes(pki: TestPKI, samples: dict[str, Path], tmp_path: Path) -> None:
    path = samples["t64.exe"]
    text = tmp_path / "notes.txt"
    text.write_text("not a binary")
    report = api.sign_files([path, text], _settings(pki))
    by_path = {r.path: r for r in report.results}
    assert by_path[path].outcome is Outcome.SIGNED and by_path[path].error is None
    peutil.osslsigncode_verify(path, pki.root_pem)
    assert by_path[text].outcome is Outcome.NOT_SIGNABLE and by_path[text].status == "failed"
    again = api.sign_files([path], _settings(pki)).results[0]
    assert (again.status, again.outcome) == ("skipped", Outcome.SKIPPED_SIGNED)
    assert Outcome.SKIPPED_SIGNED.value == "skipped-signed"


@pytest.mark.osslsigncode
def test_verify_outcomes_and_the_exceptions(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tmp_path: Path
) -> None:
    signed, tampered, unsigned = samples["t64.exe"], samples["w32.exe"], samples["t64-arm.exe"]
    for path in (signed, tampered):
        code, _, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
        assert code == 0, err
    peutil.osslsigncode_verify(signed, pki.root_pem)
    break_signature(tampered, "content")
    paths = [signed, tampered, unsigned]
    trusted = api.verify_files(paths, roots=[pki.root_pem])
    found = {r.path: r for r in trusted.results}
    assert found[signed].outcome is Outcome.VERIFIED
    assert found[tampered].outcome is Outcome.DIGEST_MISMATCH
    assert isinstance(found[tampered].error, DigestMismatchError)
    assert found[unsigned].outcome is Outcome.UNSIGNED
    assert isinstance(found[unsigned].error, UnsignedError)
    assert found[unsigned].status == "failed"
    other_root = write_pem(tmp_path / "other.pem", make_root("Someone Else's Root").cert)
    untrusted = api.verify_files([signed], roots=[other_root]).results[0]
    assert untrusted.outcome is Outcome.CHAIN_UNTRUSTED
    assert isinstance(untrusted.error, ChainUntrustedError)
    assert isinstance(untrusted.error, VerificationError)  # the old catch still catches it
    missing = api.verify_files([signed], roots=[pki.root_pem], require_timestamp=True).results[0]
    assert missing.outcome is Outcome.TIMESTAMP_MISSING
    assert isinstance(missing.error, TimestampMissingError)
    assert missing.reason == "the signature has no timestamp (require-timestamp)"

    code, out, err = run_cli(capsys, "verify", "--json", "--ca", str(pki.root_pem),
                             *map(str, paths))
    assert code == 1
    outcomes = {Path(f["path"]): f["outcome"] for f in json.loads(out)["files"]}
    assert outcomes == {signed: "verified", tampered: "digest-mismatch", unsigned: "unsigned"}
    code, out, err = run_cli(capsys, "verify", "--require-timestamp", "--ca", str(pki.root_pem),
                             str(signed))
    assert code == 1 and "(--require-timestamp)" in out + err


def test_every_error_code_is_an_outcome() -> None:
    import kmssign.errors as errors

    classes = [getattr(errors, name) for name in errors.__all__]
    codes = {c.code for c in classes if isinstance(c, type) and issubclass(c, KmsSignError)}
    assert codes <= {o.value for o in Outcome}
    assert len(codes) >= 12


@pytest.mark.osslsigncode
def test_library_messages_name_settings_and_the_cli_its_flags(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tmp_path: Path
) -> None:
    two = [samples["t64.exe"], samples["w32.exe"]]
    with pytest.raises(ConfigError) as info:
        api.sign_files(two, _settings(pki), output=tmp_path / "out.exe")
    assert str(info.value) == "output needs exactly one input file"
    code, out, err = run_cli(capsys, "sign", *map(str, two), "-o", str(tmp_path / "out.exe"),
                             *sign_args(pki.identity("rsa2048")))
    assert code == 2 and "kmssign: error: --output needs exactly one input file" in err

    path = samples["t64.exe"]
    code, _, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    peutil.osslsigncode_verify(path, pki.root_pem)
    break_signature(path, "signature")
    result = api.sign_files([path], _settings(pki)).results[0]
    assert result.reason is not None and "--" not in result.reason
    assert "signing with skip-signed off replaces it" in result.reason
    assert result.outcome is Outcome.SIGNATURE_INVALID
    code, out, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert code == 1 and "--no-skip-signed replaces it" in out + err
