"""Only an intact signature is "already signed": the skip-signed decision, --append,
`kmssign timestamp`, the dry run and the build plugins all ask the same question (does
every signature match the file's digest and verify against its signed attributes?),
with one pass over the file per digest algorithm."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from kmssign._internal.pe import digest as pe_digest
from kmssign.config import Settings
from kmssign.errors import SigningError
from kmssign.frontends import buildhooks
from tests.support import peutil, wheelutil
from tests.support.helpers import break_signature, run_cli, sign_args
from tests.support.pki import TestPKI

HOW = ["signature", "content", "nested"]
REASONS = {
    "signature": "the signature does not verify with the signer's certificate",
    "content": "the file's digest does not match its signature",
    "nested": "nested signature 1: the signature does not verify",
}


def _signed(capsys: Any, pki: TestPKI, path: Path, how: str) -> bytes:
    """``path`` signed (twice, nested, for ``nested``), then damaged ``how``."""
    code, _, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    if how == "nested":
        code, _, err = run_cli(
            capsys, "sign", str(path), "--append", *sign_args(pki.identity("p256"))
        )
        assert code == 0, err
    return break_signature(path, how)


@pytest.mark.osslsigncode
@pytest.mark.parametrize("how", HOW)
def test_a_broken_signature_is_not_already_signed(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tsa: Any, how: str
) -> None:
    path = samples["t64.exe"]
    before = _signed(capsys, pki, path, how)
    if how != "nested":  # osslsigncode 2.9 passes a file when any one signature verifies
        peutil.osslsigncode_verify(path, pki.root_pem, expect_ok=False)
    calls = tsa.count("tsa")
    for argv in (
        ("sign", str(path), *sign_args(pki.identity("rsa2048"))),
        ("sign", str(path), "--dry-run", *sign_args(pki.identity("rsa2048"))),
    ):
        code, out, err = run_cli(capsys, *argv)
        assert code == 1, out + err
        assert f"failed: {path}: its existing signature is broken (" in err
        assert REASONS[how] in err and "--no-skip-signed replaces it" in err
        assert "already signed" not in out + err and path.read_bytes() == before
    code, out, err = run_cli(capsys, "sign", str(path), "--append",
                             *sign_args(pki.identity("p384")))
    assert code == 1 and REASONS[how] in err
    assert "sign without --append to replace it" in err and path.read_bytes() == before
    code, _, err = run_cli(capsys, "timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
    assert code == 1 and REASONS[how] in err and "re-sign it instead" in err
    assert path.read_bytes() == before and tsa.count("tsa") == calls  # no token bought
    # the way out the message names
    code, out, err = run_cli(capsys, "sign", str(path), "--no-skip-signed",
                             *sign_args(pki.identity("rsa2048")))
    assert code == 0 and f"signed: {path}" in out, err
    peutil.osslsigncode_verify(path, pki.root_pem)


@pytest.mark.osslsigncode
def test_another_tools_broken_signature_is_not_already_signed(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tsa: Any
) -> None:
    path = samples["w32.exe"]
    out = path.with_name("ossl.exe")
    identity = pki.identity("p256")
    peutil.osslsigncode_sign(path, out, identity, "-ts", tsa.url("tsa"))
    shutil.move(out, path)
    code, stdout, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert code == 0 and "(already signed)" in stdout, err  # intact: kept
    before = break_signature(path, "content")
    code, _, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert code == 1 and REASONS["content"] in err and path.read_bytes() == before


@pytest.mark.osslsigncode
def test_one_digest_pass_per_algorithm(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tsa: Any, monkeypatch: Any
) -> None:
    """A dual-signed file (SHA-256, SHA-1 nested) costs the skip-signed decision two
    passes; --append and timestamp reuse their copy's pass for the primary's algorithm."""
    passes: list[str] = []
    original = pe_digest.authenticode_digest

    def counting(f: Any, image: Any, digest: str) -> bytes:
        passes.append(digest)
        return original(f, image, digest)

    monkeypatch.setattr(pe_digest, "authenticode_digest", counting)
    path = samples["t64.exe"]
    for extra in (("-h", "sha256"), ("-nest", "-h", "sha1")):
        out = path.with_name("ossl.exe")
        peutil.osslsigncode_sign(path, out, pki.identity("rsa2048"), *extra)
        shutil.move(out, path)
    code, out, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("p256")))
    assert code == 0 and "(already signed)" in out, err
    assert sorted(passes) == ["sha1", "sha256"]
    passes.clear()
    code, _, err = run_cli(capsys, "sign", str(path), "--append",
                           *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    assert passes == ["sha1"]  # sha256: the signed copy's own pass
    passes.clear()
    code, _, err = run_cli(capsys, "timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
    assert code == 0, err
    assert passes == ["sha1"]
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)


def test_the_build_plugins_decide_the_same_way(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tmp_path: Path
) -> None:
    """The Hatch hook and the setuptools plugin sign the wheel they built through
    buildhooks.sign_built_wheel: an intact member is skipped, a broken one fails the
    build and the wheel is left as it was."""
    identity = pki.identity("rsa2048")
    intact, broken = samples["t64.exe"], samples["w32.exe"]
    for path in (intact, broken):
        run_cli(capsys, "sign", str(path), *sign_args(identity))
    break_signature(broken, "signature")
    wheel = wheelutil.write_wheel(tmp_path / wheelutil.WHEEL_NAME, {
        "demo_pkg/intact.exe": intact.read_bytes(),
        "demo_pkg/broken.exe": broken.read_bytes(),
    })
    before = wheel.read_bytes()
    settings = Settings(key_file=identity.key_path, certificate=identity.cert_path,
                        chain=(identity.chain_path,), timestamp="off")
    lines: list[str] = []
    with pytest.raises(SigningError) as failure:
        buildhooks.sign_built_wheel(wheel, settings, lines.append)
    assert "demo_pkg/broken.exe" in str(failure.value)
    assert REASONS["signature"] in str(failure.value)
    assert "demo_pkg/intact.exe" not in str(failure.value)
    assert any("demo_pkg/intact.exe" in line and "already signed" in line for line in lines)
    assert wheel.read_bytes() == before


@pytest.mark.osslsigncode
def test_build_log_lines_escape_member_names(
    pki: TestPKI, samples: dict[str, Path], tmp_path: Path
) -> None:
    """A member name holding a newline cannot forge a line of the build's log (or of the
    error that fails it): the plugins' lines are escaped as the CLI's are."""
    identity = pki.identity("rsa2048")
    forged = "kmssign: signed: demo_pkg/forged.exe (Someone Trusted, sha256, timestamp x)"
    name = f"demo_pkg/a\n{forged}\n.exe"
    wheel = wheelutil.write_wheel(tmp_path / wheelutil.WHEEL_NAME, {
        name: samples["t64.exe"].read_bytes(),
    })
    settings = Settings(key_file=identity.key_path, certificate=identity.cert_path,
                        chain=(identity.chain_path,), timestamp="off")
    lines: list[str] = []
    buildhooks.sign_built_wheel(wheel, settings, lines.append)
    assert lines == [
        f"kmssign: signed: demo_pkg/a\\n{forged}\\n.exe (kmssign Test Signer rsa2048, sha256, "
        "no timestamp)",
        "kmssign: 1 signed, 0 skipped",
    ]
    out = tmp_path / "member.exe"
    with zipfile.ZipFile(wheel) as archive:
        out.write_bytes(archive.read(name))
    peutil.osslsigncode_verify(out, pki.root_pem)
    failing = wheelutil.write_wheel(tmp_path / "bad" / wheelutil.WHEEL_NAME, {
        name: samples["w32.exe"].read_bytes()[:1024],  # a PE file cut short: refused
    })
    with pytest.raises(SigningError) as failure:
        buildhooks.sign_built_wheel(failing, settings, lines.append)
    assert "\n" not in str(failure.value) and f"\\n{forged}\\n" in str(failure.value)
