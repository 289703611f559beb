"""WinVerifyTrust, the Windows API that checks Authenticode signatures (Wine's
implementation of it), on files kmssign signed: a third verifier beside osslsigncode
and ``kmssign verify``, and the only one written against Windows's own interface.

Wine's WinVerifyTrust recomputes the file's digest and checks the PKCS#7 signature over
the signed attributes. Two limits of Wine 8 (Debian 12) shape these tests: it does not
verify ECDSA signatures, whichever tool made them (osslsigncode's are refused alike, so
for ECDSA the test asks for the same verdict as osslsigncode's signature gets), and it
does not insist on a trusted root.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import peutil
from tests.support.fixtures_pyinstaller import OK, TRUST_E_BAD_DIGEST, TRUST_E_NOSIGNATURE, Check
from tests.support.helpers import run_cli, sign_args
from tests.support.pki import TestPKI

pytestmark = [pytest.mark.slow, pytest.mark.osslsigncode, pytest.mark.wine, pytest.mark.mingw]


def _sign(capsys: Any, path: Path, *argv: str) -> None:
    code, out, err = run_cli(capsys, "sign", str(path), *argv)
    assert code == 0, err


def test_windows_trust_api_accepts_rsa_signatures(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tsa: Any, tmp_path: Path,
    win_verify_trust: Check,
) -> None:
    rsa = pki.identity("rsa2048")
    digests = ("sha256", "sha384", "sha512")
    signed: list[Path] = []
    # Every sample (PE32, PE32+, ARM64; mingw's .exe and .dll), the digests in turn.
    for index, name in enumerate(sorted(samples)):
        path = samples[name]
        _sign(capsys, path, *sign_args(rsa, "--digest", digests[index % len(digests)]))
        signed.append(path)
    launcher = samples["t64.exe"]
    timestamped = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tmp_path / "stamped")
    _sign(capsys, timestamped, *sign_args(rsa, "--timestamp-url", tsa.url()))
    nested = peutil.copy_sample(launcher, tmp_path / "nested")  # signed above: nest in it
    _sign(capsys, nested, *sign_args(pki.identity("rsa4096"), "--append", "--digest", "sha512"))
    signed += [timestamped, nested]

    for path in signed:
        peutil.osslsigncode_verify(path, pki.root_pem)
    code, out, err = run_cli(capsys, "verify", *map(str, signed), "--ca", str(pki.root_pem))
    assert code == 0, out + err

    tampered = peutil.copy_sample(launcher, tmp_path / "tampered")
    data = bytearray(tampered.read_bytes())
    data[0x2000] ^= 0x01  # inside the hashed image
    tampered.write_bytes(bytes(data))
    unsigned = peutil.LAUNCHERS["t64.exe"]

    files = [*signed, tampered, unsigned]
    verdicts = win_verify_trust(files)
    expected = [OK] * len(signed) + [TRUST_E_BAD_DIGEST, TRUST_E_NOSIGNATURE]
    named = {f"{p.parent.name}/{p.name}": v for p, v in zip(files, verdicts, strict=False)}
    assert verdicts == expected, named


@pytest.mark.parametrize("kind", ["p256", "p384"])
def test_ecdsa_signatures_get_the_verdict_osslsigncode_signatures_get(
    capsys: Any, pki: TestPKI, samples: dict[str, Path], tmp_path: Path,
    win_verify_trust: Check, kind: str,
) -> None:
    identity = pki.identity(kind)
    ours = samples["t64.exe"]
    _sign(capsys, ours, *sign_args(identity))
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(identity.cert_path.read_bytes() + identity.chain_path.read_bytes())
    theirs = tmp_path / "osslsigncode.exe"
    assert peutil.OSSLSIGNCODE
    subprocess.run(
        [peutil.OSSLSIGNCODE, "sign", "-certs", str(bundle), "-key", str(identity.key_path),
         "-h", "sha384" if kind == "p384" else "sha256",
         "-in", str(peutil.LAUNCHERS["t64.exe"]), "-out", str(theirs)],
        check=True, capture_output=True,
    )
    for path in (ours, theirs):
        peutil.osslsigncode_verify(path, pki.root_pem)
    code, out, err = run_cli(capsys, "verify", str(ours), "--ca", str(pki.root_pem))
    assert code == 0, out + err
    mine, reference = win_verify_trust([ours, theirs])
    assert mine == reference
