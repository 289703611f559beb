"""The PKCS#11 signer against a real token: SoftHSM2, made in the session's fixtures.

Errors are checked in subprocesses: PKCS#11 login state belongs to the process, so a
wrong PIN must meet a process that has not logged in yet. Calls into the token are
counted by OpenSC's pkcs11-spy, a real module that logs every call and forwards it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kmssign._internal.signers.pkcs11uri import Pkcs11Target, parse_uri
from kmssign.errors import ConfigError
from tests.support import peutil
from tests.support.fixtures_pkcs11 import KEY_IDS, MODULE, SPY, TOKEN, USER_PIN, SoftHsm
from tests.support.helpers import run_cli
from tests.support.pki import TestPKI

pytestmark = [pytest.mark.softhsm]


def _args(kind: str, *extra: str, module: Path = MODULE) -> list[str]:
    return ["--pkcs11-module", str(module), "--pkcs11-token", TOKEN,
            "--pkcs11-key", f"sign-{kind}", *extra]


def _kmssign(hsm: SoftHsm, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    env.setdefault("KMSSIGN_PKCS11_PIN", USER_PIN)
    return subprocess.run([sys.executable, "-m", "kmssign", *argv], env=hsm.env(**env),
                          capture_output=True, text=True, check=False)


def _calls(log: Path, name: str) -> int:
    """How many times the spy saw ``name`` called."""
    return len(re.findall(rf"^\d+: {name}$", log.read_text(errors="replace"), flags=re.M))


@pytest.mark.osslsigncode
@pytest.mark.parametrize(
    ("kind", "digest", "cert_from"),
    [
        ("rsa2048", "sha256", "token"),
        ("rsa2048", "sha512", "file"),
        ("rsa4096", "sha384", "token"),
        ("p256", "sha256", "file"),
        ("p384", "sha384", "token"),
    ],
)
def test_token_keys_sign_real_files(
    capsys, monkeypatch: pytest.MonkeyPatch, softhsm: SoftHsm, pki: TestPKI, samples, tsa,
    kind: str, digest: str, cert_from: str,
) -> None:
    monkeypatch.setenv("KMSSIGN_PKCS11_PIN", USER_PIN)
    identity = pki.identity(kind)
    cert = ["--cert", str(identity.cert_path)] if cert_from == "file" else []
    paths = [str(p) for p in samples.values()]
    code, out, err = run_cli(
        capsys, "sign", *paths, *_args(kind, *cert, "--chain", str(identity.chain_path)),
        "--digest", digest, "--timestamp-url", tsa.url("tsa"),
    )
    assert code == 0, err
    assert out.count("signed: ") == len(paths)
    assert USER_PIN not in out + err
    for path in samples.values():
        result = peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
        assert f"kmssign Test Signer {kind}" in result
        assert f"Message digest algorithm: {digest.upper()}" in result
    code, out, err = run_cli(
        capsys, "verify", *paths, "--ca", str(pki.root_pem), "--require-timestamp"
    )
    assert code == 0, err


@pytest.mark.osslsigncode
def test_a_pkcs11_uri_with_a_pin_file(
    softhsm: SoftHsm, pki: TestPKI, samples, tmp_path: Path
) -> None:
    """One RFC 7512 URI names module, token and key (by id); the PIN comes from a file."""
    pin_file = tmp_path / "pin"
    pin_file.write_text(USER_PIN + "\n")
    uri = (f"pkcs11:token={TOKEN.replace('-', '%2D')};id=%{KEY_IDS['p256']};type=private"
           f"?module-path={MODULE}&pin-source=file:{pin_file}")
    path = samples["t64.exe"]
    proc = _kmssign(softhsm, "sign", str(path), "--pkcs11-key", uri, "--no-timestamp",
                    "--chain", str(pki.identity("p256").chain_path), KMSSIGN_PKCS11_PIN="")
    assert proc.returncode == 0, proc.stderr
    peutil.osslsigncode_verify(path, pki.root_pem)
    assert USER_PIN not in proc.stdout + proc.stderr


@pytest.mark.osslsigncode
@pytest.mark.skipif(SPY is None, reason="OpenSC's pkcs11-spy.so is not installed (opensc)")
def test_a_batch_of_100_files_signs_100_times_with_one_login(
    softhsm: SoftHsm, pki: TestPKI, sample_sources, tmp_path: Path
) -> None:
    files = [peutil.copy_sample(sample_sources["t64.exe"], tmp_path / "batch", f"f{i:03}.exe")
             for i in range(100)]
    log = tmp_path / "spy.log"
    proc = _kmssign(
        softhsm, "sign", str(tmp_path / "batch"), *_args("rsa2048", module=SPY),
        "--chain", str(pki.identity("rsa2048").chain_path), "--no-timestamp", "--jobs", "8",
        PKCS11SPY=str(MODULE), PKCS11SPY_OUTPUT=str(log),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("signed: ") == 100
    # one signing operation per file; python-pkcs11 makes each in two C_Sign calls (the
    # first, with no buffer, asks for the signature's length, as PKCS#11 prescribes)
    assert _calls(log, "C_SignInit") == 100
    assert _calls(log, "C_Sign") == 200
    sessions = _calls(log, "C_OpenSession")
    # the main thread's (it logs in and reads the public key), then one per worker thread:
    # 2 x jobs of them (a file waits for its timestamp while the next is signed)
    assert 2 <= sessions <= 1 + 2 * 8
    assert _calls(log, "C_Login") == 1  # login state is the process's: every session has it
    # the run closes what it opened (the logged-in session last), not the process's exit
    assert _calls(log, "C_CloseSession") == sessions
    assert _calls(log, "C_Logout") == 1
    for path in files[::33]:
        peutil.osslsigncode_verify(path, pki.root_pem)


def _refused(proc: subprocess.CompletedProcess[str], path: Path, before: bytes) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert path.read_bytes() == before
    assert USER_PIN not in proc.stdout + proc.stderr
    return lines[0]


def test_a_missing_module_is_one_line(softhsm: SoftHsm, samples, tmp_path: Path) -> None:
    path = samples["t64.exe"]
    before = path.read_bytes()
    proc = _kmssign(softhsm, "sign", str(path), *_args("rsa2048", module=tmp_path / "no.so"),
                    "--no-timestamp")
    line = _refused(proc, path, before)
    assert line == f"kmssign: error: pkcs11-module {tmp_path / 'no.so'}: no such file"


@pytest.mark.skipif(SPY is None, reason="OpenSC's pkcs11-spy.so is not installed (opensc)")
def test_a_wrong_pin_is_tried_once(softhsm: SoftHsm, samples, tmp_path: Path) -> None:
    paths = [samples["t64.exe"], samples["w32.exe"]]
    before = [p.read_bytes() for p in paths]
    log = tmp_path / "spy.log"
    proc = _kmssign(softhsm, "sign", *map(str, paths), *_args("rsa2048", module=SPY),
                    "--no-timestamp", KMSSIGN_PKCS11_PIN="0000-wrong",
                    PKCS11SPY=str(MODULE), PKCS11SPY_OUTPUT=str(log))
    line = _refused(proc, paths[0], before[0])
    assert paths[1].read_bytes() == before[1]
    assert line == (f"kmssign: error: wrong PIN for token '{TOKEN}' (not retried: each wrong "
                    "PIN brings the token closer to locking)")
    assert "0000-wrong" not in proc.stderr
    assert _calls(log, "C_Login") == 1
    assert _calls(log, "C_SignInit") == 0


@pytest.mark.skipif(SPY is None, reason="OpenSC's pkcs11-spy.so is not installed (opensc)")
def test_a_locked_token_is_one_line_and_no_login(
    softhsm: SoftHsm, samples, tmp_path: Path
) -> None:
    softhsm.new_token("locked-token")
    softhsm.import_key("locked-token", "rsa2048")
    softhsm.lock("locked-token")
    path = samples["t64.exe"]
    before = path.read_bytes()
    log = tmp_path / "spy.log"
    proc = _kmssign(softhsm, "sign", str(path), "--pkcs11-module", str(SPY),
                    "--pkcs11-token", "locked-token", "--pkcs11-key", "sign-rsa2048",
                    "--no-timestamp", PKCS11SPY=str(MODULE), PKCS11SPY_OUTPUT=str(log))
    line = _refused(proc, path, before)
    assert line == ("kmssign: error: token 'locked-token' is locked (too many wrong PINs): "
                    "unlock it with the security officer's PIN")
    assert _calls(log, "C_Login") == 0


def test_a_missing_key_is_one_line(softhsm: SoftHsm, samples) -> None:
    path = samples["t64.exe"]
    before = path.read_bytes()
    proc = _kmssign(softhsm, "sign", str(path), "--pkcs11-module", str(MODULE),
                    "--pkcs11-token", TOKEN, "--pkcs11-key", "id:ff", "--no-timestamp")
    line = _refused(proc, path, before)
    assert line == f"kmssign: error: no private key with id ff on token '{TOKEN}'"


def test_a_missing_token_is_one_line(softhsm: SoftHsm, samples) -> None:
    path = samples["t64.exe"]
    before = path.read_bytes()
    proc = _kmssign(softhsm, "sign", str(path), "--pkcs11-module", str(MODULE),
                    "--pkcs11-token", "elsewhere", "--pkcs11-key", "sign-p256",
                    "--no-timestamp")
    line = _refused(proc, path, before)
    assert line.startswith(f"kmssign: error: no token 'elsewhere' in PKCS#11 module {MODULE} "
                           "(tokens: ")
    assert f"'{TOKEN}'" in line and "''" not in line


def test_a_certificate_of_another_key_is_one_line(
    softhsm: SoftHsm, pki: TestPKI, samples
) -> None:
    path = samples["t64.exe"]
    before = path.read_bytes()
    other = pki.identity("p384")
    proc = _kmssign(softhsm, "sign", str(path), *_args("p256", "--cert", str(other.cert_path)),
                    "--no-timestamp")
    line = _refused(proc, path, before)
    assert line == (
        f"kmssign: error: certificate kmssign Test Signer p384 "
        f"({other.cert_path}) does not belong to PKCS#11 key label 'sign-p256' on token "
        f"'{TOKEN}'"
    )


def test_no_pin_is_one_line(softhsm: SoftHsm, samples) -> None:
    path = samples["t64.exe"]
    before = path.read_bytes()
    proc = _kmssign(softhsm, "sign", str(path), *_args("p256"), "--no-timestamp",
                    KMSSIGN_PKCS11_PIN="")
    line = _refused(proc, path, before)
    assert line == (f"kmssign: error: no PIN for token '{TOKEN}': set KMSSIGN_PKCS11_PIN "
                    "or pkcs11-pin-file")


def test_kmssign_and_a_kms_signing_run_never_import_the_binding(
    aws_env, kms_identity, samples, tmp_path: Path
) -> None:
    identity = kms_identity("RSA_2048")
    code = (
        "import sys\n"
        "import kmssign, kmssign.api, kmssign.config, kmssign.signers\n"
        "assert 'pkcs11' not in sys.modules, 'import kmssign'\n"
        "from kmssign.frontends.cli.main import main\n"
        f"rc = main(['sign', {str(samples['t64.exe'])!r}, '--key-id', {identity.key_id!r},"
        f" '--cert', {str(identity.cert_path)!r}, '--no-timestamp'])\n"
        "assert rc == 0, rc\n"
        "assert 'pkcs11' not in sys.modules, 'kms sign'\n"
        "print('clean')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=aws_env, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("clean")


def test_uri_attributes_are_read_as_rfc_7512_spells_them(tmp_path: Path) -> None:
    fields = parse_uri(
        "pkcs11:token=Code%20Signing;object=release%3Bkey;id=%01%ff;type=private;"
        "manufacturer=Yubico?module-path=/usr/lib/x.so&pin-source=file:/run/pin"
    )
    assert fields == {"token": "Code Signing", "label": "release;key",
                      "key_id": b"\x01\xff", "module": Path("/usr/lib/x.so"),
                      "pin_file": Path("/run/pin")}
    target = Pkcs11Target.from_settings(module=tmp_path / "m.so", token=None,
                                        key="id:0A:0b", pin_file=None)
    assert (target.key_id, target.label) == (b"\x0a\x0b", None)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("pkcs11:object=k?pin-value=1234&module-path=/x.so",
         "pkcs11: URI carries pin-value: a PIN does not belong in settings; set "
         "KMSSIGN_PKCS11_PIN or pin-source=file:PATH (or pkcs11-pin-file)"),
        ("pkcs11:object=k;type=cert?module-path=/x.so",
         "pkcs11: URI type=cert: the signing key is type=private"),
        ("pkcs11:object=k;colour=red?module-path=/x.so",
         "pkcs11: URI has unknown attributes: colour"),
        ("pkcs11:object=k", "signer pkcs11 needs pkcs11-module (the path of the token's "
         "PKCS#11 library) or a pkcs11: URI with module-path"),
        ("id:xyz", "pkcs11-key 'id:xyz': id: must be followed by hex bytes"),
    ],
)
def test_bad_key_settings_are_one_line(key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Pkcs11Target.from_settings(module=None, token=None, key=key, pin_file=None)
    assert str(info.value) == message


def test_the_tools_the_fixture_needs_are_found() -> None:
    """softhsm2-util and pkcs11-tool, which .ci/run installs (softhsm2, opensc)."""
    assert shutil.which("softhsm2-util") and shutil.which("pkcs11-tool")
    assert MODULE.is_file()


@pytest.mark.skipif(SPY is None, reason="OpenSC's pkcs11-spy.so is not installed (opensc)")
def test_a_later_signer_in_the_process_does_not_offer_the_wrong_pin_again(
    softhsm: SoftHsm, tmp_path: Path
) -> None:
    """Two runs in one process (a build's two signing steps) with the same wrong PIN: one
    C_Login, both refused with the same line."""
    log = tmp_path / "spy.log"
    code = (
        "from pathlib import Path\n"
        "from kmssign.api import create_signer\n"
        "from kmssign.config import Settings\n"
        "from kmssign.errors import SigningError\n"
        f"settings = Settings(pkcs11_module=Path({str(SPY)!r}), pkcs11_token={TOKEN!r},"
        " pkcs11_key='sign-p256')\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        create_signer(settings).public_key_der()\n"
        "    except SigningError as exc:\n"
        "        print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=softhsm.env(KMSSIGN_PKCS11_PIN="0000-wrong", PKCS11SPY=str(MODULE),
                                          PKCS11SPY_OUTPUT=str(log)), check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(f"wrong PIN for token '{TOKEN}'") == 2, proc.stdout
    assert _calls(log, "C_Login") == 1
