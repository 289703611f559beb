"""MSI digests over the structures wixl never writes: nested storages with class ids,
names that are prefixes of others, lower case before and after upper case, version 4
(4096-byte sectors), DIFAT sectors, scattered chains. The generator is
tests/support/cfbgen.py (another writer than kmssign's); osslsigncode checks kmssign's
digests and signatures. (Its own writer mangles some of these trees, so its signatures
are checked on wixl's packages, in tests/test_msi.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import peutil
from tests.support.cfbgen import Storage, Stream, generate
from tests.support.helpers import run_cli, sign_args
from tests.support.pki import TestPKI

pytestmark = pytest.mark.osslsigncode


def _tree() -> list[Stream | Storage]:
    big = os.urandom(70_000)
    return [
        Stream("\x05SummaryInformation", os.urandom(400)),
        Stream("A", b"a" * 10), Stream("AB", b"ab" * 3000), Stream("b", os.urandom(5000)),
        Stream("_", b"_"),
        Stream("\u4840\u3b3f\u43f2", os.urandom(90)),  # a packed table name
        Storage("Sub", [
            Stream("x", os.urandom(17)), Stream("X2", big),
            Storage("Deeper", [Stream("leaf", b"leaf")], clsid=os.urandom(16)),
        ], clsid=os.urandom(16)),
        Storage("Empty", [], clsid=os.urandom(16)),
        Stream("zero", b""),
    ]


@pytest.mark.parametrize(("version", "seed", "extra_fat"), [
    (3, None, 0), (3, 7, 0), (4, 11, 0), (3, 5, 120),
])
def test_kmssign_and_osslsigncode_agree_on_every_structure(
    capsys, pki: TestPKI, tmp_path: Path, version: int, seed: int | None, extra_fat: int
) -> None:
    layout = generate(_tree(), version=version, seed=seed, extra_fat=extra_fat)
    path = tmp_path / "generated.msi"
    path.write_bytes(layout.data)
    code, out, err = run_cli(capsys, "sign", str(path), *sign_args(pki.identity("rsa2048")),
                             "--json")
    assert code == 0, out
    assert json.loads(out)["files"][0]["format"] == "msi"
    peutil.osslsigncode_verify(path, pki.root_pem)
    code, _, err = run_cli(capsys, "sign", str(path), "--append",
                           *sign_args(pki.identity("p256")))
    assert code == 0, err
    peutil.osslsigncode_verify(path, pki.root_pem)
    code, out, err = run_cli(capsys, "verify", str(path), "--ca", str(pki.root_pem))
    assert code == 0 and "nested signature" in out, err
