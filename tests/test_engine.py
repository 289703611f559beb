"""Signing real PE files with key files: every sample, key kind and digest; replace and append.

Every signed file is checked by osslsigncode (the independent verifier) and by
``kmssign verify``; tampered files must be rejected by both.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from kmssign._internal.pe.certtable import read_certificates
from kmssign._internal.pe.checksum import pe_checksum
from kmssign._internal.pe.digest import authenticode_digest
from kmssign._internal.pe.image import parse_pe, stored_checksum
from tests.support import peutil
from tests.support.helpers import run_cli, sign_args
from tests.support.pki import TestPKI

KEY_KINDS = ["rsa2048", "rsa3072", "rsa4096", "p256", "p384", "p521"]


def _sign(capsys, path: Path, identity, *extra: str) -> str:
    code, out, err = run_cli(capsys, "sign", str(path), *sign_args(identity, *extra))
    assert code == 0, out + err
    assert f"signed: {path}" in out
    return out


def _kmssign_verify(capsys, path: Path, root: Path) -> tuple[int, str, str]:
    return run_cli(capsys, "verify", str(path), "--ca", str(root))


@pytest.mark.osslsigncode
@pytest.mark.parametrize("kind", KEY_KINDS)
def test_every_sample_with_every_key_kind(capsys, pki: TestPKI, samples, kind: str) -> None:
    identity = pki.identity(kind)
    for name, path in samples.items():
        _sign(capsys, path, identity, "--description", "kmssign test", "--url", "https://example.org")
        out = peutil.osslsigncode_verify(path, pki.root_pem)
        assert f"kmssign Test Signer {kind}" in out, name
        code, stdout, _ = _kmssign_verify(capsys, path, pki.root_pem)
        assert code == 0, (name, stdout)
        assert f"verified: {path}" in stdout


@pytest.mark.osslsigncode
@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_rsa_digests_match_osslsigncode(capsys, pki: TestPKI, samples, digest: str) -> None:
    identity = pki.identity("rsa2048")
    for path in samples.values():
        _sign(capsys, path, identity, "--digest", digest)
        out = peutil.osslsigncode_verify(path, pki.root_pem)
        assert f"Message digest algorithm  : {digest.upper()}" in out
        with open(path, "rb") as f:
            ours = authenticode_digest(f, parse_pe(f), digest)
        assert ours == peutil.osslsigncode_digest(path)
        code, stdout, _ = _kmssign_verify(capsys, path, pki.root_pem)
        assert code == 0 and digest in stdout


@pytest.mark.osslsigncode
def test_ec_key_digest_follows_curve(capsys, pki: TestPKI, samples) -> None:
    path = samples["t64.exe"]
    identity = pki.identity("p384")
    code, out, err = run_cli(capsys, "sign", str(path), *sign_args(identity, "--digest", "sha256"))
    assert code == 0
    assert "bound to sha384" in err
    assert "Message digest algorithm  : SHA384" in peutil.osslsigncode_verify(path, pki.root_pem)


@pytest.mark.osslsigncode
def test_digest_matches_osslsigncode_signed_file(pki: TestPKI, sample_sources, tmp_path) -> None:
    """Our digest of a file signed by osslsigncode equals the digest osslsigncode computes."""
    identity = pki.identity("rsa2048")
    for name, src in sample_sources.items():
        out = tmp_path / f"ossl-{name}"
        peutil.osslsigncode_sign(src, out, identity)
        with open(out, "rb") as f:
            image = parse_pe(f)
            ours = authenticode_digest(f, image, "sha256")
            assert ours == peutil.osslsigncode_digest(out)


@pytest.mark.osslsigncode
def test_replace_is_default_and_append_nests(capsys, pki: TestPKI, samples) -> None:
    path = samples["t64.exe"]
    first, second = pki.identity("rsa2048"), pki.identity("p256")
    _sign(capsys, path, first)
    size_once = path.stat().st_size
    # skip-signed is the default: nothing changes
    before = path.read_bytes()
    code, out, _ = run_cli(capsys, "sign", str(path), *sign_args(second))
    assert code == 0 and f"skipped: {path}" in out and path.read_bytes() == before
    # replace
    _sign(capsys, path, second, "--no-skip-signed")
    out = peutil.osslsigncode_verify(path, pki.root_pem)
    assert "Signer p256" in out and "Signer rsa2048" not in out
    assert path.stat().st_size < size_once + 4096
    # append: both signatures present and valid
    _sign(capsys, path, first, "--append")
    out = peutil.osslsigncode_verify(path, pki.root_pem)
    assert "Number of verified signatures: 2" in out
    assert "Signer p256" in out and "Signer rsa2048" in out
    code, stdout, _ = _kmssign_verify(capsys, path, pki.root_pem)
    assert code == 0


@pytest.mark.osslsigncode
def test_output_writes_elsewhere_and_keeps_input(capsys, pki: TestPKI, samples, tmp_path) -> None:
    src = samples["w32.exe"]
    before = src.read_bytes()
    dst = tmp_path / "out" / "signed.exe"
    dst.parent.mkdir()
    _sign(capsys, src, pki.identity("rsa2048"), "-o", str(dst))
    assert src.read_bytes() == before
    peutil.osslsigncode_verify(dst, pki.root_pem)


@pytest.mark.posix
def test_file_mode_is_kept(capsys, pki: TestPKI, samples) -> None:
    path = samples["t64.exe"]
    path.chmod(0o750)
    _sign(capsys, path, pki.identity("rsa2048"))
    assert path.stat().st_mode & 0o777 == 0o750
    assert not list(path.parent.glob(".*.kmssign*")), "temporary file left behind"


@pytest.mark.osslsigncode
@pytest.mark.posix
@pytest.mark.skipif(getattr(os, "geteuid", lambda: -1)() != 0,
                    reason="only root can give a file another owner")
def test_owner_and_group_are_kept_when_replacing(capsys, pki: TestPKI, samples, tmp_path) -> None:
    """Root signing a user's files (a container on a bind mount) leaves them the user's."""
    path = samples["t64.exe"]
    os.chown(path, 4321, 4322)
    path.chmod(0o4750)  # chown clears set-id bits: the mode must be set after it
    _sign(capsys, path, pki.identity("rsa2048"))
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (4321, 4322, 0o4750)
    peutil.osslsigncode_verify(path, pki.root_pem)
    # a new output file is the signer's own, as any file it writes
    out = tmp_path / "copy.exe"
    _sign(capsys, samples["w32.exe"], pki.identity("rsa2048"), "-o", str(out))
    assert (out.stat().st_uid, out.stat().st_gid) == (os.geteuid(), os.getegid())


@pytest.mark.osslsigncode
def test_tampered_files_are_rejected(capsys, pki: TestPKI, samples, tmp_path) -> None:
    path = samples["t64.exe"]
    _sign(capsys, path, pki.identity("rsa2048"))
    signed = path.read_bytes()

    # one byte changed in the code
    flipped = tmp_path / "flipped.exe"
    data = bytearray(signed)
    data[0x400] ^= 0xFF
    flipped.write_bytes(data)
    code, _, err = _kmssign_verify(capsys, flipped, pki.root_pem)
    assert code == 1 and "digest does not match" in err
    peutil.osslsigncode_verify(flipped, pki.root_pem, expect_ok=False)

    # data appended after the certificate table
    appended = tmp_path / "appended.exe"
    appended.write_bytes(signed + b"\0" * 8 + b"payload!")
    code, _, err = _kmssign_verify(capsys, appended, pki.root_pem)
    assert code == 1 and f"failed: {appended}" in err

    # a root that did not issue the chain
    other = tmp_path / "other-root.pem"
    from tests.support.pki import make_root, write_pem

    write_pem(other, make_root("Some Other Root").cert)
    code, _, err = _kmssign_verify(capsys, path, other)
    assert code == 1 and "does not chain to a trusted root" in err
    peutil.osslsigncode_verify(path, other, expect_ok=False)


def test_signature_byte_flip_is_rejected(capsys, pki: TestPKI, samples, tmp_path) -> None:
    path = samples["w32.exe"]
    _sign(capsys, path, pki.identity("rsa2048"))
    data = bytearray(path.read_bytes())
    with open(path, "rb") as f:
        image = parse_pe(f)
        entry = read_certificates(f, image)[0]
    sig_at = bytes(data).index(entry.data) + len(entry.data) - 20  # inside the RSA signature
    data[sig_at] ^= 0x01
    broken = tmp_path / "broken.exe"
    broken.write_bytes(data)
    code, _, err = _kmssign_verify(capsys, broken, pki.root_pem)
    assert code == 1 and "does not verify" in err


def test_signed_file_checksum_and_alignment(capsys, pki: TestPKI, samples) -> None:
    for path in samples.values():
        _sign(capsys, path, pki.identity("rsa2048"))
        with open(path, "rb") as f:
            image = parse_pe(f)
            assert image.cert_table_offset % 8 == 0
            assert image.cert_table_offset + image.cert_table_size == image.size
            assert pe_checksum(f, image) == stored_checksum(f, image)


@pytest.mark.osslsigncode
def test_unaligned_file_with_overlay(capsys, pki: TestPKI, samples) -> None:
    """Overlay data is hashed; a size that is not a multiple of 8 is padded first."""
    path = samples["t64.exe"]
    with open(path, "ab") as f:
        f.write(b"overlay-archive-data-xyz")  # 24 bytes + odd tail below
        f.write(b"abc")
    assert path.stat().st_size % 8 != 0
    _sign(capsys, path, pki.identity("rsa2048"))
    peutil.osslsigncode_verify(path, pki.root_pem)
    data = path.read_bytes()
    assert b"overlay-archive-data-xyzabc" in data


def test_key_that_does_not_match_certificate_touches_nothing(capsys, pki: TestPKI, samples) -> None:
    rsa, ec = pki.identity("rsa2048"), pki.identity("p256")
    before = {n: p.read_bytes() for n, p in samples.items()}
    code, out, err = run_cli(
        capsys, "sign", *map(str, samples.values()),
        "--key-file", str(rsa.key_path), "--cert", str(ec.cert_path), "--no-timestamp",
    )
    assert code == 2  # the settings' problem (exit codes: docs/reference)
    assert "does not belong to key file" in err
    assert "Traceback" not in err
    assert {n: p.read_bytes() for n, p in samples.items()} == before


def test_corrupt_private_key_is_caught_by_the_self_check(
    capsys, pki: TestPKI, samples, tmp_path
) -> None:
    """Key files are loaded without cryptography's slow RSA consistency check; a key whose
    public half matches the certificate but whose private half is broken must still never
    produce a written signature: the sign-then-check catches it."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.support.pki import write_key

    identity = pki.identity("rsa2048")
    good = identity.key.private_numbers()
    broken = rsa.RSAPrivateNumbers(
        p=good.p, q=good.q, d=good.d ^ 2, dmp1=good.dmp1 ^ 2, dmq1=good.dmq1,
        iqmp=good.iqmp, public_numbers=good.public_numbers,
    ).private_key(unsafe_skip_rsa_key_validation=True)
    key = write_key(tmp_path / "broken.key", broken)
    before = {n: p.read_bytes() for n, p in samples.items()}
    code, out, err = run_cli(
        capsys, "sign", *map(str, samples.values()), "--key-file", str(key),
        "--cert", str(identity.cert_path), "--no-timestamp",
    )
    assert code == 1
    # the certificate does match the key: the key (the signer) is what is broken
    assert err.count("returned a signature that does not verify") == len(samples), err
    assert "does not belong" not in err
    assert "Traceback" not in err
    assert {n: p.read_bytes() for n, p in samples.items()} == before


@pytest.mark.osslsigncode
def test_bundle_and_p7b_certificates(capsys, pki: TestPKI, samples, tmp_path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

    identity = pki.identity("rsa2048")
    p7b = tmp_path / "chain.p7b"
    # .p7b in DER with the intermediate first: the leaf is found by its key, not by order
    p7b.write_bytes(
        pkcs7.serialize_certificates([pki.intermediate.cert, identity.cert], Encoding.DER)
    )
    path = samples["t64.exe"]
    code, out, err = run_cli(
        capsys, "sign", str(path), "--key-file", str(identity.key_path), "--cert", str(p7b),
        "--no-timestamp",
    )
    assert code == 0, err
    peutil.osslsigncode_verify(path, pki.root_pem)
    # a single PEM bundle, leaf first, no --chain
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(identity.cert_path.read_bytes() + identity.chain_path.read_bytes())
    path2 = samples["w32.exe"]
    code, _, err = run_cli(
        capsys, "sign", str(path2), "--key-file", str(identity.key_path), "--cert", str(bundle),
        "--no-timestamp",
    )
    assert code == 0, err
    peutil.osslsigncode_verify(path2, pki.root_pem)


@pytest.mark.osslsigncode
@pytest.mark.parametrize("fmt", ["pkcs8-der", "traditional-pem", "traditional-der"])
def test_key_file_formats(capsys, pki: TestPKI, samples, tmp_path, fmt: str) -> None:
    from tests.support.pki import write_key

    identity = pki.identity("p256")
    key = write_key(tmp_path / f"key-{fmt}", identity.key, fmt=fmt)
    path = samples["t64.exe"]
    code, _, err = run_cli(
        capsys, "sign", str(path), "--key-file", str(key), "--cert", str(identity.cert_path),
        "--chain", str(identity.chain_path), "--no-timestamp",
    )
    assert code == 0, err
    peutil.osslsigncode_verify(path, pki.root_pem)


@pytest.mark.osslsigncode
def test_key_password_for_a_key_without_one_is_a_warning(
    capsys, pki: TestPKI, samples, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives import serialization

    identity = pki.identity("rsa2048")
    path = samples["t64.exe"]
    monkeypatch.setenv("KMSSIGN_KEY_PASSWORD", "not needed")
    code, out, err = run_cli(capsys, "sign", str(path), *sign_args(identity))
    assert code == 0, err
    assert err == (
        f"warning: KMSSIGN_KEY_PASSWORD is set but key file {identity.key_path} is not "
        "encrypted; the password is ignored\n"
    )
    peutil.osslsigncode_verify(path, pki.root_pem)
    # an encrypted key still needs the right password
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(identity.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right"),
    ))
    args = ["--key-file", str(encrypted), "--cert", str(identity.cert_path), "--no-timestamp"]
    code, _, err = run_cli(capsys, "sign", str(path), "--no-skip-signed", *args)
    assert code == 2 and "wrong password" in err
    monkeypatch.setenv("KMSSIGN_KEY_PASSWORD", "right")
    code, _, err = run_cli(capsys, "sign", str(path), "--no-skip-signed", *args)
    assert code == 0 and err == "", err
    monkeypatch.delenv("KMSSIGN_KEY_PASSWORD")
    code, _, err = run_cli(capsys, "sign", str(path), "--no-skip-signed", *args)
    assert code == 2 and "the key is encrypted; set KMSSIGN_KEY_PASSWORD" in err


@pytest.mark.osslsigncode
def test_directory_is_searched_by_content(capsys, pki: TestPKI, samples, tmp_path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    shutil.copyfile(samples["t64.exe"], tree / "sub" / "no-extension")
    shutil.copyfile(samples["w32.exe"], tree / "app.bin")
    (tree / "readme.exe").write_text("not a PE file despite the name")
    code, out, err = run_cli(capsys, "sign", str(tree), *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    assert out.count("signed: ") == 2
    peutil.osslsigncode_verify(tree / "sub" / "no-extension", pki.root_pem)
    peutil.osslsigncode_verify(tree / "app.bin", pki.root_pem)
    assert (tree / "readme.exe").read_text() == "not a PE file despite the name"


def test_struct_of_signed_file_has_one_win_certificate(capsys, pki: TestPKI, samples) -> None:
    path = samples["t64.exe"]
    _sign(capsys, path, pki.identity("rsa2048"))
    with open(path, "rb") as f:
        image = parse_pe(f)
        f.seek(image.cert_table_offset)
        length, revision, cert_type = struct.unpack("<IHH", f.read(8))
    assert (revision, cert_type) == (0x0200, 0x0002)
    assert length <= image.cert_table_size


@pytest.mark.osslsigncode
@pytest.mark.posix
def test_signing_through_a_symlink_keeps_the_link(capsys, pki: TestPKI, samples, tmp_path) -> None:
    target = samples["t64.exe"]
    link = tmp_path / "link.exe"
    link.symlink_to(target)
    _sign(capsys, link, pki.identity("rsa2048"))
    assert link.is_symlink() and link.resolve() == target.resolve()
    peutil.osslsigncode_verify(target, pki.root_pem)


@pytest.mark.osslsigncode
def test_signing_without_timestamps_never_loads_the_http_stack(
    pki: TestPKI, samples: dict[str, Path], tmp_path: Path
) -> None:
    """The timestamp client, and urllib/http.client with it, is imported by runs that
    timestamp only (a fresh interpreter: this test process has them loaded already)."""
    import subprocess
    import sys

    target = tmp_path / "t64.exe"
    shutil.copyfile(samples["t64.exe"], target)
    script = (
        "import sys\n"
        "from kmssign.frontends.cli.main import main\n"
        "code = main(sys.argv[1:])\n"
        "print(code, *(m in sys.modules for m in "
        "('kmssign._internal.timestamp.client', 'urllib.request', 'http.client')))\n"
    )
    argv = ["sign", str(target), *sign_args(pki.identity("rsa2048")), "--quiet"]
    result = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["0", "False", "False", "False"], result.stderr
    peutil.osslsigncode_verify(target, pki.root_pem)
