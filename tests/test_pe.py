"""The PE layer against real files and an independent tool (osslsigncode)."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from kmssign._internal.pe import checksum, hashing
from kmssign._internal.pe.certtable import (
    WIN_CERT_REVISION_2_0,
    WIN_CERT_TYPE_PKCS_SIGNED_DATA,
    WinCertificate,
    read_certificates,
)
from kmssign._internal.pe.checksum import pe_checksum
from kmssign._internal.pe.digest import authenticode_digest
from kmssign._internal.pe.image import CHUNK, PEImage, looks_like_pe, parse_pe, stored_checksum
from kmssign._internal.pe.signedcopy import begin_signed_copy, finish_signed_copy, strip_copy
from kmssign.errors import ConfigError
from tests.support import peutil
from tests.support.pki import TestPKI

EXPECTED = {  # name: (pe32_plus, machine)
    "t64.exe": (True, 0x8664),
    "w32.exe": (False, 0x14C),
    "t64-arm.exe": (True, 0xAA64),
    "hello.exe": (True, 0x8664),
    "lib.dll": (True, 0x8664),
}


@pytest.fixture(scope="session")
def signer_bundle(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(leaf + intermediate PEM bundle, key) for osslsigncode sign."""
    ident = pki.identity("rsa2048")
    bundle = tmp_path_factory.mktemp("bundle") / "bundle.pem"
    bundle.write_bytes(ident.cert_path.read_bytes() + ident.chain_path.read_bytes())
    return bundle, ident.key_path


def ossl_sign(src: Path, dst: Path, bundle: tuple[Path, Path], digest: str = "sha256") -> Path:
    assert peutil.OSSLSIGNCODE
    certs, key = bundle
    cmd = [peutil.OSSLSIGNCODE, "sign", "-h", digest, "-certs", str(certs), "-key", str(key)]
    proc = subprocess.run(
        [*cmd, "-in", str(src), "-out", str(dst)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dst


def parse(path: Path) -> PEImage:
    with open(path, "rb") as f:
        return parse_pe(f)


def digest_of(path: Path, algorithm: str = "sha256") -> bytes:
    with open(path, "rb") as f:
        return authenticode_digest(f, parse_pe(f), algorithm)


def checksums(path: Path) -> tuple[int, int]:
    """(computed, stored)"""
    with open(path, "rb") as f:
        image = parse_pe(f)
        return pe_checksum(f, image), stored_checksum(f, image)


def certificates(path: Path) -> list[WinCertificate]:
    with open(path, "rb") as f:
        return read_certificates(f, parse_pe(f))


def signed_copy(src: Path, dst: Path, signed_data: bytes, algorithm: str = "sha256") -> bytes:
    with open(src, "rb") as f, open(dst, "wb") as out:
        digest, state = begin_signed_copy(f, parse_pe(f), algorithm, out)
        finish_signed_copy(out, state, signed_data)
    return digest


def test_parse_real_files(samples: dict[str, Path]) -> None:
    assert {"t64.exe", "w32.exe", "t64-arm.exe"} <= samples.keys()
    for name, path in samples.items():
        image = parse(path)
        pe32_plus, machine = EXPECTED[name]
        assert (image.pe32_plus, image.machine) == (pe32_plus, machine), name
        assert image.size == path.stat().st_size
        assert not image.has_certificate_table
        assert (image.cert_table_offset, image.cert_table_size) == (0, 0)
        assert image.number_of_sections > 0
        # CheckSum is at optional header + 64; the security entry 32 bytes into the data
        # directories, which start at +96 (PE32) or +112 (PE32+).
        dirs = 112 if pe32_plus else 96
        assert image.security_entry_offset - image.checksum_offset == dirs - 64 + 32


@pytest.mark.mingw
def test_mingw_samples_present(mingw_binaries: dict[str, Path]) -> None:
    assert set(mingw_binaries) == {"hello.exe", "lib.dll"}


def test_checksum_matches_linker(sample_sources: dict[str, Path]) -> None:
    """MSVC wrote real checksums into the x86/x64 launchers; ours must agree."""
    for name in ("t64.exe", "w32.exe"):
        computed, stored = checksums(sample_sources[name])
        assert stored != 0
        assert computed == stored, name


@pytest.mark.osslsigncode
@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512", "sha1"])
def test_digest_matches_osslsigncode(
    samples: dict[str, Path], signer_bundle: tuple[Path, Path], tmp_path: Path, algorithm: str
) -> None:
    names = list(samples) if algorithm == "sha256" else ["t64.exe", "w32.exe"]
    for name in names:
        unsigned = samples[name]
        signed = ossl_sign(unsigned, tmp_path / f"signed-{name}", signer_bundle, algorithm)
        ours = digest_of(signed, algorithm)
        assert ours == peutil.osslsigncode_digest(signed), name
        assert len(ours) == {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}[algorithm]
        # Signing does not change the digest: the table and its entry are excluded.
        assert digest_of(unsigned, algorithm) == ours
        computed, stored = checksums(signed)
        assert computed == stored != 0, name


@pytest.mark.osslsigncode
def test_read_certificates_returns_osslsigncode_signed_data(
    samples: dict[str, Path], signer_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    assert peutil.OSSLSIGNCODE
    signed = ossl_sign(samples["w32.exe"], tmp_path / "signed.exe", signer_bundle)
    extracted = tmp_path / "sig.der"
    subprocess.run(
        [peutil.OSSLSIGNCODE, "extract-signature", "-in", str(signed), "-out", str(extracted)],
        check=True,
        capture_output=True,
    )
    (cert,) = certificates(signed)
    assert cert.revision == WIN_CERT_REVISION_2_0
    assert cert.cert_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA
    assert cert.data == extracted.read_bytes()
    image = parse(signed)
    assert image.has_certificate_table
    assert image.cert_table_offset % 8 == 0
    assert image.cert_table_offset + image.cert_table_size == image.size
    assert certificates(samples["w32.exe"]) == []


@pytest.mark.osslsigncode
def test_signed_copy_is_byte_identical_to_osslsigncode(
    samples: dict[str, Path], signer_bundle: tuple[Path, Path], tmp_path: Path, pki: TestPKI
) -> None:
    for name, unsigned in samples.items():
        reference = ossl_sign(unsigned, tmp_path / f"ossl-{name}", signer_bundle)
        (cert,) = certificates(reference)
        ours = tmp_path / f"ours-{name}"
        digest = signed_copy(unsigned, ours, cert.data)
        assert digest == peutil.osslsigncode_digest(reference)
        assert ours.read_bytes() == reference.read_bytes(), name
        assert digest_of(ours) == digest
        computed, stored = checksums(ours)
        assert computed == stored
        peutil.osslsigncode_verify(ours, pki.root_pem)


@pytest.mark.osslsigncode
def test_resign_replaces_table_and_accepts_whole_table(
    samples: dict[str, Path], signer_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    reference = ossl_sign(samples["t64.exe"], tmp_path / "ref.exe", signer_bundle)
    image = parse(reference)
    with open(reference, "rb") as f:
        f.seek(image.cert_table_offset)
        table = f.read()
    (cert,) = certificates(reference)
    # Signing a signed file drops its table: one entry, same bytes as before.
    again = tmp_path / "again.exe"
    signed_copy(reference, again, cert.data)
    assert again.read_bytes() == reference.read_bytes()
    # Passing the whole certificate table is the same operation.
    whole = tmp_path / "whole.exe"
    signed_copy(samples["t64.exe"], whole, table)
    assert whole.read_bytes() == reference.read_bytes()
    assert len(certificates(whole)) == 1


@pytest.mark.osslsigncode
def test_unaligned_overlay_is_hashed_and_padded(
    samples: dict[str, Path], signer_bundle: tuple[Path, Path], tmp_path: Path, pki: TestPKI
) -> None:
    base = samples["w32.exe"]
    odd = tmp_path / "odd.exe"
    odd.write_bytes(base.read_bytes() + b"overlay")  # 7 bytes: size no longer a multiple of 8
    assert odd.stat().st_size % 8 == 7
    assert digest_of(odd) != digest_of(base)  # overlay data is hashed
    # Hashed as if zero-padded to 8, and no further.
    padded = tmp_path / "padded.exe"
    padded.write_bytes(odd.read_bytes() + b"\0")
    assert digest_of(padded) == digest_of(odd)
    longer = tmp_path / "longer.exe"
    longer.write_bytes(padded.read_bytes() + bytes(8))
    assert digest_of(longer) != digest_of(odd)

    reference = ossl_sign(odd, tmp_path / "odd-signed.exe", signer_bundle)
    assert digest_of(reference) == peutil.osslsigncode_digest(reference) == digest_of(odd)
    (cert,) = certificates(reference)
    ours = tmp_path / "odd-ours.exe"
    signed_copy(odd, ours, cert.data)
    assert ours.read_bytes() == reference.read_bytes()
    assert parse(ours).cert_table_offset == odd.stat().st_size + 1
    peutil.osslsigncode_verify(ours, pki.root_pem)


@pytest.mark.osslsigncode
def test_large_overlay_uses_threaded_path(
    samples: dict[str, Path], signer_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    big = tmp_path / "big.exe"
    rng = random.Random(7)
    overlay = rng.randbytes(5 * CHUNK + 13)
    big.write_bytes(samples["t64.exe"].read_bytes() + overlay)
    assert big.stat().st_size >= hashing.THREAD_MIN
    reference = ossl_sign(big, tmp_path / "big-signed.exe", signer_bundle, "sha384")
    (cert,) = certificates(reference)
    ours = tmp_path / "big-ours.exe"
    digest = signed_copy(big, ours, cert.data, "sha384")
    assert digest == peutil.osslsigncode_digest(reference) == digest_of(big, "sha384")
    assert ours.read_bytes() == reference.read_bytes()


def test_signed_copy_writes_at_stream_position(samples: dict[str, Path]) -> None:
    data = samples["w32.exe"].read_bytes()
    plain = io.BytesIO()
    with open(samples["w32.exe"], "rb") as f:
        _, state = begin_signed_copy(f, parse_pe(f), "sha256", plain)
        finish_signed_copy(plain, state, b"\x30\x03\x02\x01\x05")
    shifted = io.BytesIO()
    shifted.write(b"prefix!")
    with open(samples["w32.exe"], "rb") as f:
        _, state = begin_signed_copy(f, parse_pe(f), "sha256", shifted)
        finish_signed_copy(shifted, state, b"\x30\x03\x02\x01\x05")
    assert shifted.getvalue() == b"prefix!" + plain.getvalue()
    assert plain.getvalue()[408 : len(data)] == data[408:]
    image = parse_pe(io.BytesIO(plain.getvalue()))
    assert image.cert_table_size == 16
    (cert,) = read_certificates(io.BytesIO(plain.getvalue()), image)
    assert cert.data == b"\x30\x03\x02\x01\x05"  # padding trimmed by DER length


@pytest.mark.osslsigncode
def test_strip_copy(
    samples: dict[str, Path], signer_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    unsigned = samples["hello.exe"] if "hello.exe" in samples else samples["t64.exe"]
    reference = ossl_sign(unsigned, tmp_path / "ref.exe", signer_bundle)
    stripped = tmp_path / "stripped.exe"
    with open(reference, "rb") as f, open(stripped, "wb") as out:
        strip_copy(f, parse_pe(f), out)
    image = parse(stripped)
    assert not image.has_certificate_table
    assert image.size == parse(reference).cert_table_offset
    assert digest_of(stripped) == digest_of(reference) == digest_of(unsigned)
    computed, stored = checksums(stripped)
    assert computed == stored != 0
    # osslsigncode's own remove-signature gives the same bytes.
    assert peutil.OSSLSIGNCODE
    theirs = tmp_path / "theirs.exe"
    subprocess.run(
        [peutil.OSSLSIGNCODE, "remove-signature", "-in", str(reference), "-out", str(theirs)],
        check=True,
        capture_output=True,
    )
    assert stripped.read_bytes() == theirs.read_bytes()


def test_unsupported_digest(samples: dict[str, Path]) -> None:
    with open(samples["t64.exe"], "rb") as f, pytest.raises(ConfigError, match="md5"):
        authenticode_digest(f, parse_pe(f), "md5")


def test_looks_like_pe(samples: dict[str, Path], tmp_path: Path) -> None:
    for path in samples.values():
        assert looks_like_pe(path)
    text = tmp_path / "readme.exe"
    text.write_text("MZ but not really a PE file, just some text that is long enough" * 2)
    (tmp_path / "empty").write_bytes(b"")
    cut = tmp_path / "cut.exe"
    cut.write_bytes(samples["t64.exe"].read_bytes()[:64])
    for path in (text, tmp_path / "empty", cut, tmp_path / "missing", tmp_path):
        assert not looks_like_pe(path), path


@pytest.mark.posix  # a FIFO
def test_looks_like_pe_does_not_block_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.exe"
    os.mkfifo(fifo)  # must not block
    assert not looks_like_pe(fifo)


# ------------------------------------------------------------------------------ checksum


def test_checksum_paths_agree(sample_sources: dict[str, Path]) -> None:
    if not checksum.numpy_available():
        pytest.skip("numpy not installed: only the pure-Python path exists")
    rng = random.Random(1)
    buffers = [path.read_bytes() for path in sample_sources.values()]
    buffers += [rng.randbytes(n) for n in (0, 1, 2, 3, 5, 4097, 1 << 20)]
    buffers += [b"\xff" * 131070, b"\xff" * 131071, bytes(1000)]
    for buf in buffers:
        assert checksum.word_sum_numpy(buf) == checksum.word_sum_python(buf)
        assert checksum.word_sum_numpy(memoryview(buf)) == checksum.word_sum_python(buf)


@pytest.mark.parametrize("impl", ["python", "numpy"])
def test_checksum_matches_reference(
    sample_sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch, impl: str
) -> None:
    if impl == "numpy" and not checksum.numpy_available():
        pytest.skip("numpy not installed")
    func = checksum.word_sum_numpy if impl == "numpy" else checksum.word_sum_python
    monkeypatch.setattr(checksum, "word_sum", func)
    for path in sample_sources.values():
        data = path.read_bytes()
        image = parse_pe(io.BytesIO(data))
        expected = checksum.reference_checksum(data, image.checksum_offset)
        assert pe_checksum(io.BytesIO(data), image) == expected, path.name
    # Pieces added out of order and at odd offsets.
    rng = random.Random(2)
    for _ in range(20):
        data = rng.randbytes(rng.randrange(1, 3000))
        cuts = sorted({*rng.sample(range(1, len(data) + 1), min(len(data), 6)), len(data)})
        acc = checksum.Checksum()
        pieces = list(zip([0, *cuts], cuts, strict=False))
        rng.shuffle(pieces)
        for a, b in pieces:
            acc.add(data[a:b], a)
        assert acc.value(len(data)) == checksum.reference_checksum(data + bytes(4), len(data)) - 4


def test_checksum_fold_edge_cases() -> None:
    # A non-zero word sum that is a multiple of 0xFFFF folds to 0xFFFF, not 0.
    data = b"\xff\xff" + bytes(6)
    assert checksum.reference_checksum(data + bytes(4), 8) == 0xFFFF + 12
    acc = checksum.Checksum()
    acc.add(data, 0)
    assert acc.value(12) == 0xFFFF + 12
    acc = checksum.Checksum()
    acc.add(b"\x01\x00" * 0xFFFF, 0)
    assert acc.value(0) == 0xFFFF
    empty = checksum.Checksum()
    empty.add(bytes(64), 0)
    assert empty.value(64) == 64


def test_numpy_absent_path_is_used_when_patched(
    samples: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The whole signing path with the pure-Python checksum gives the same file."""
    big = tmp_path / "big.exe"
    big.write_bytes(samples["t64.exe"].read_bytes() + os.urandom(hashing.THREAD_MIN))
    fast = tmp_path / "fast.exe"
    with monkeypatch.context() as patch:
        patch.setattr(checksum, "ACCELERATE_MIN", 0)  # numpy (when installed) for this file
        signed_copy(big, fast, b"\x30\x00")
    monkeypatch.setattr(checksum, "word_sum", checksum.word_sum_python)
    slow = tmp_path / "slow.exe"
    signed_copy(big, slow, b"\x30\x00")
    assert fast.read_bytes() == slow.read_bytes()
    computed, stored = checksums(slow)
    assert computed == stored


def test_numpy_is_imported_only_for_files_that_repay_it(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    """Importing numpy costs more than checksumming a small file without it."""
    if not checksum.numpy_available():
        pytest.skip("numpy not installed: only the pure-Python path exists")
    big = tmp_path / "big.exe"
    with open(big, "wb") as out:
        out.write(samples["t64.exe"].read_bytes())
        out.truncate(checksum.ACCELERATE_MIN + 4096)  # zeros: an overlay
    script = (
        "import io, sys\n"
        "from kmssign._internal.pe.image import parse_pe\n"
        "from kmssign._internal.pe.signedcopy import begin_signed_copy\n"
        "for name in sys.argv[1:]:\n"
        "    with open(name, 'rb') as f:\n"
        "        begin_signed_copy(f, parse_pe(f), 'sha256', io.BytesIO())\n"
        "    print('numpy' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(samples["t64.exe"]), str(big)],
        capture_output=True, text=True, check=True,
    )
    assert result.stdout.split() == ["False", "True"]


def test_cli_keeps_numpy_to_one_blas_thread(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands that checksum files cap OpenBLAS (started by numpy's import) at one
    thread; a value the user set wins, and ``kmssign pyinstaller`` (the user's build) and
    ``verify`` (which never imports numpy) leave it alone."""
    from kmssign.frontends.cli import main as cli

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "undo me")  # restored after the test
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    assert cli.main(["verify", str(tmp_path / "missing.exe")]) == 1
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    assert cli.main(["timestamp", str(tmp_path / "missing.exe")]) == 1
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert cli.main(["sign", str(tmp_path / "missing.exe"), "--dry-run"]) == 1
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    cli._one_blas_thread("pyinstaller")
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    capsys.readouterr()
