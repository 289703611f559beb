"""verify, skip-signed sign and timestamp on vendor signatures with a header ending in 0x80.

asn1crypto re-encodes a value it loaded when ``dump()`` is called on it and its header ends
in 0x80 (tests/support/der_lengths.py). In three corpus files, Microsoft's timestamp attribute has
its values SET on ``31 82 17 80``. A vendor-like file is also made here: a vendor's
unsigned DLL signed by osslsigncode, with a timestamp from the loopback TSA, and its
ContentInfo on ``30 82 xx 80``. On such a file verify, the skip-signed check, ``--append``
and timestamp once ran for minutes each. Each command runs in-process within
:data:`BUDGET`, while tests/support/reencode.py records every value kmssign dumps or re-encodes
after parsing it: there must be none. A command with nothing to change leaves every byte.
(``--append`` at such lengths onto Microsoft's files: tests/test_vendor_files.py.)
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import der_lengths, peutil
from tests.support.helpers import budget, run_cli, sign_args
from tests.support.pki import SigningIdentity, TestPKI
from tests.support.reencode import parsed_dumps

pytestmark = pytest.mark.posix  # budget() uses SIGALRM

BUDGET = 20.0  # seconds per command: each takes well under one

#: Microsoft-signed corpus files whose timestamp attribute's values SET is ``31 82 17 80``
#: (in the delvewheel copies of msvcp140, in the nested signature's attribute as well)
TIMESTAMP_SET_0X80 = (
    "pydevd_cython.cp312-win_amd64.pyd",
    "msvcp140-0fa7eb792d3fbcf2233e4ea47e9144b9.dll",
    "msvcp140-a4c2229bdc2a2a630acdc095b4d86008.dll",
)
TIMESTAMP_VALUES = f"{der_lengths.SI}/unsigned_attrs/timestamp/values"


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    with budget(f"kmssign {argv[0]}", BUDGET):
        return run_cli(capsys, *argv)


def nothing_changes(
    capsys: Any, path: Path, roots: Path, identity: SigningIdentity, tsa: Any
) -> None:
    """verify, the default skip-signed sign and timestamp on ``path``: each succeeds, none
    changes a byte of it, and the TSA is not asked."""
    before, calls = path.read_bytes(), tsa.count("tsa")
    steps = (
        (("verify", str(path), "--ca", str(roots), "--tsa-ca", str(roots),
          "--require-timestamp"), f"verified: {path}"),
        (("sign", str(path), *sign_args(identity)), f"skipped: {path} (already signed)"),
        (("timestamp", str(path), "--timestamp-url", tsa.url("tsa")), "already timestamped"),
    )
    for argv, expected in steps:
        code, out, err = run(capsys, *argv)
        assert code == 0 and expected in out, out + err
    assert path.read_bytes() == before and tsa.count("tsa") == calls


@pytest.mark.parametrize("name", TIMESTAMP_SET_0X80)
def test_microsoft_timestamp_values_set_ending_in_0x80(
    name: str, vendor_copy: Callable[[str], Path], microsoft_roots: Path, pki: TestPKI,
    tsa: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = vendor_copy(name)
    (vendor_der,) = der_lengths.signatures_in(path)
    values = der_lengths.find(vendor_der, TIMESTAMP_VALUES)
    assert values.header == bytes.fromhex("31821780"), values
    with parsed_dumps(monkeypatch) as found:
        nothing_changes(capsys, path, microsoft_roots, pki.identity("rsa2048"), tsa)
    assert found == []


@pytest.mark.osslsigncode
def test_a_timestamped_signature_whose_content_info_header_ends_in_0x80(
    vendor_copy: Callable[[str], Path], pki: TestPKI, tsa: Any, capsys: Any,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    identity = pki.identity("rsa2048")
    sign = der_lengths.osslsigncode_signer(
        identity.cert_path, identity.key_path, "-ac", str(identity.chain_path),
        "-ts", tsa.url("tsa"),
    )
    made = der_lengths.make_signed(
        vendor_copy("winpty.dll"), tmp_path / "winpty.dll", target="content_info",
        low_byte=0x80, sign=sign,
    )
    assert made.node.header[:2] == b"\x30\x82" and made.node.low_byte == 0x80, made.node
    der_lengths.find(made.der, "timestamp_token")  # an RFC 3161 token under it
    appended = tmp_path / "appended.dll"
    shutil.copyfile(made.path, appended)
    with parsed_dumps(monkeypatch) as found:
        nothing_changes(capsys, made.path, pki.root_pem, identity, tsa)
        code, _, err = run(capsys, "sign", str(appended), "--append",
                           *sign_args(pki.identity("p256")))
        assert code == 0, err
        code, out, err = run(capsys, "verify", str(appended), "--ca", str(pki.root_pem),
                             "--tsa-ca", str(pki.root_pem))
        assert code == 0 and "nested signature: kmssign Test Signer p256" in out, out + err
    assert found == []
    (after,) = der_lengths.signatures_in(appended)
    assert len(der_lengths.nested_signatures(after)) == 1
    for part in ("encap_content_info", "certificates", "signed_attrs", "timestamp_attr"):
        was, now = der_lengths.find(made.der, part), der_lengths.find(after, part)
        assert made.der[was.offset : was.end] == after[now.offset : now.end], part
    out = peutil.osslsigncode_verify(appended, pki.root_pem, tsa_ca=pki.root_pem)
    assert len(re.findall(r"^Signature verification: ok", out, flags=re.M)) == 2, out
