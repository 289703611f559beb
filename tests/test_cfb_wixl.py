"""Compound files from another writer: MSI packages built by wixl, read by kmssign's
reader as olefile reads them, rewritten with signature streams, and still whole for
msiinfo (every table exported the same) and for osslsigncode (a signature it made still
verifies after kmssign rewrote the file around it)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from kmssign._internal.cfb.reader import CompoundFile
from kmssign._internal.cfb.writer import rewrite
from tests.support import peutil
from tests.support.cfbcheck import assert_rewritten, ole_tree
from tests.support.helpers import run_cli, sign_args
from tests.support.pki import TestPKI
from tests.support.wixlbuild import build_msi, msiinfo, tables_and_rows

pytestmark = [pytest.mark.wixl, pytest.mark.msitools]

SIG = "\x05DigitalSignature"
SIG_EX = "\x05MsiDigitalSignatureEx"
MSI_CLSID = bytes.fromhex("84100c0000000000c000000000000046")


def rewrite_file(src: Path, dst: Path, set_streams: dict[str, bytes],
                 remove: tuple[str, ...] = ()) -> None:
    with src.open("rb") as f, dst.open("wb") as out:
        rewrite(f, CompoundFile.open(f, str(src)), out, set_streams=set_streams, remove=remove)


@pytest.fixture(scope="module")
def small_msi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(1)
    files = {f"file{i}.txt": rng.randbytes(rng.randrange(0, 3000)) for i in range(12)}
    return build_msi(tmp_path_factory.mktemp("wixl-small"), files)


@pytest.fixture(scope="module")
def large_msi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12 MiB package (incompressible payload): its FAT needs DIFAT sectors."""
    rng = random.Random(2)
    files = {"payload.bin": rng.randbytes(12 << 20), "readme.txt": b"hello\n"}
    return build_msi(tmp_path_factory.mktemp("wixl-large"), files, name="Large")


def test_reader_reads_a_wixl_package_as_olefile_does(small_msi: Path) -> None:
    with small_msi.open("rb") as f:
        cf = CompoundFile.open(f, str(small_msi))
        assert (cf.version, cf.sector_size, cf.root.clsid) == (3, 512, MSI_CLSID)
        mine = {(e.name,): ("stream", bytes(16),
                            hashlib.sha256(b"".join(cf.read_stream(e))).hexdigest())
                for e in cf.children(cf.root)}
    oracle = ole_tree(small_msi)
    assert oracle.pop(()) == ("root", MSI_CLSID, "")
    assert mine == oracle
    assert ("\x05SummaryInformation",) in mine


@pytest.mark.parametrize("size", [3000, 4095, 4096, 9000])
def test_signed_package_lists_and_exports_every_table(small_msi: Path, tmp_path: Path,
                                                      size: int) -> None:
    signature = random.Random(size).randbytes(size)
    out = tmp_path / "signed.msi"
    rewrite_file(small_msi, out, {SIG: signature, SIG_EX: b"x" * 32})
    assert_rewritten(small_msi.read_bytes(), out.read_bytes(), {SIG: signature, SIG_EX: b"x" * 32})
    assert tables_and_rows(out) == tables_and_rows(small_msi)
    assert "DigitalSignature" in msiinfo("streams", str(out))


def test_large_package_with_difat(large_msi: Path, tmp_path: Path) -> None:
    data = large_msi.read_bytes()
    assert int.from_bytes(data[72:76], "little") >= 1  # wixl wrote DIFAT sectors
    out = tmp_path / "signed.msi"
    rewrite_file(large_msi, out, {SIG: b"s" * 7000})
    after = out.read_bytes()
    assert int.from_bytes(after[72:76], "little") >= 1
    assert_rewritten(data, after, {SIG: b"s" * 7000})
    assert tables_and_rows(out) == tables_and_rows(large_msi)


@pytest.mark.osslsigncode
def test_osslsigncode_signature_survives_a_rewrite(small_msi: Path, tmp_path: Path,
                                                   pki: TestPKI) -> None:
    """osslsigncode signs the package; kmssign's writer lays it out anew keeping every
    stream: osslsigncode still accepts the signature. Without its signature stream the
    package is unsigned again and lists what wixl wrote."""
    identity = pki.identity("rsa2048")
    signed = tmp_path / "signed.msi"
    peutil.osslsigncode_sign(small_msi, signed, identity, "-ac", str(identity.chain_path))
    peutil.osslsigncode_verify(signed, pki.root_pem)
    relaid = tmp_path / "relaid.msi"
    rewrite_file(signed, relaid, {})
    assert relaid.read_bytes() != signed.read_bytes()
    peutil.osslsigncode_verify(relaid, pki.root_pem)
    unsigned = tmp_path / "unsigned.msi"
    rewrite_file(relaid, unsigned, {}, remove=(SIG, SIG_EX))
    peutil.osslsigncode_verify(unsigned, pki.root_pem, expect_ok=False)
    assert ole_tree(unsigned) == ole_tree(small_msi)
    with signed.open("rb") as f:
        cf = CompoundFile.open(f, str(signed))
        signature = cf.find(cf.root, SIG)
        assert signature is not None
        moved = tmp_path / "moved.msi"
        rewrite_file(small_msi, moved, {SIG: b"".join(cf.read_stream(signature))})
    peutil.osslsigncode_verify(moved, pki.root_pem)


def _stream(path: Path, name: str) -> bytes:
    with path.open("rb") as f:
        cf = CompoundFile.open(f, str(path))
        entry = cf.find(cf.root, name)
        assert entry is not None
        return b"".join(cf.read_stream(entry))


@pytest.mark.parametrize("which", ["small", "large"])
def test_packages_kmssign_signs_read_back_through_olefile(
        capsys: pytest.CaptureFixture[str], pki: TestPKI, tmp_path: Path, which: str,
        request: pytest.FixtureRequest) -> None:
    """#26 item 2: what ``kmssign sign`` (and ``--append``) writes opens in olefile with
    wixl's entries, each stream byte for byte, plus the signature stream."""
    source: Path = request.getfixturevalue(f"{which}_msi")
    path = tmp_path / "package.msi"
    path.write_bytes(source.read_bytes())
    for extra in ([], ["--append"]):
        before = path.read_bytes()
        code, out, err = run_cli(capsys, "sign", str(path), "-q", *extra,
                                 *sign_args(pki.identity("rsa2048")))
        assert code == 0, err
        after = path.read_bytes()
        signature = _stream(path, SIG)
        assert_rewritten(before, after, {SIG: signature})
        assert ole_tree(after) == {**ole_tree(source), (SIG,): ole_tree(after)[(SIG,)]}
    assert tables_and_rows(path) == tables_and_rows(source)
