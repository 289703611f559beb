"""The zip layer on its own and through ``kmssign wheel``: archives written back without
replacements are byte-identical (plain, ZIP64 headers, data descriptors, more than 65535
members); ZIP64 and streamed wheels sign and verify; a signed member's middle, deflated
before signing, spliced into its new data."""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from pathlib import Path

import pytest

from kmssign._internal.wheel import rewrite, zipdir
from kmssign._internal.wheel.record import parse_record
from kmssign._internal.wheel.rewrite import pack_bytes, write_archive
from kmssign._internal.wheel.streams import Packed, deflate_range, pack, read_member
from kmssign._internal.wheel.zipdir import FLAG_DESCRIPTOR, read_archive
from kmssign.errors import WheelFormatError
from tests.support import peutil, wheelutil
from tests.support.helpers import run_cli, sign_args
from tests.support.pki import TestPKI
from tests.support.wheelutil import DIST, RECORD

LAUNCHER = f"{DIST}-1.0.data/scripts/tool.exe"


def small_members() -> dict[str, wheelutil.Content]:
    return {
        f"{DIST}/__init__.py": b"x = 1\n" * 100,
        f"{DIST}/stored.bin": (bytes(range(256)) * 40, zipfile.ZIP_STORED),
        LAUNCHER: peutil.LAUNCHERS["t64.exe"].read_bytes(),
        f"{DIST}/empty.txt": b"",
    }


def many_members(count: int) -> dict[str, wheelutil.Content]:
    members = small_members()
    members.update({f"{DIST}/m/{n:05d}.txt": (b"%d" % n, zipfile.ZIP_STORED)
                    for n in range(count)})
    return members


def rewritten(path: Path, replacements: dict[str, bytes] | None = None) -> bytes:
    with open(path, "rb") as f:
        archive = read_archive(f)
        methods = {m.name: m.method for m in archive.members}
        out = io.BytesIO()
        write_archive(f, archive, {n: pack_bytes(d, methods[n])
                                   for n, d in (replacements or {}).items()}, out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("force_zip64", "stream", "count"),
    [(False, False, 0), (True, False, 0), (False, True, 0), (True, True, 0),
     (False, False, 66_000)],
    ids=["plain", "zip64-headers", "data-descriptors", "zip64-descriptors", "66000-members"],
)
def test_written_back_without_replacements_the_archive_is_byte_identical(
    tmp_path: Path, force_zip64: bool, stream: bool, count: int
) -> None:
    wheel = wheelutil.write_wheel(tmp_path / "w.whl", many_members(count),
                                  force_zip64=force_zip64, stream=stream)
    assert rewritten(wheel) == wheel.read_bytes()
    with open(wheel, "rb") as f:
        archive = read_archive(f)
        assert len(archive.members) == count + 7
        assert all(bool(m.flags & FLAG_DESCRIPTOR) == stream for m in archive.members)
        record = next(m for m in archive.members if m.name == RECORD)
        parse_record(b"".join(read_member(f, record)), RECORD,
                     [m.name for m in archive.members])


@pytest.mark.parametrize("stream", [False, True], ids=["sizes-in-header", "data-descriptors"])
def test_a_replaced_member_gets_a_new_header_and_the_rest_is_kept(
    tmp_path: Path, stream: bool
) -> None:
    wheel = wheelutil.write_wheel(tmp_path / "w.whl", small_members(), force_zip64=True,
                                  stream=stream)
    new = b"MZ new bytes" * 1000
    result = tmp_path / "out.whl"
    result.write_bytes(rewritten(wheel, {LAUNCHER: new, f"{DIST}/stored.bin": b"stored"}))
    with zipfile.ZipFile(result) as archive:
        assert archive.testzip() is None
        assert archive.read(LAUNCHER) == new
        assert archive.read(f"{DIST}/stored.bin") == b"stored"
        assert archive.getinfo(f"{DIST}/stored.bin").compress_type == zipfile.ZIP_STORED
        assert archive.getinfo(LAUNCHER).compress_type == zipfile.ZIP_DEFLATED
        assert not archive.getinfo(LAUNCHER).flag_bits & FLAG_DESCRIPTOR
    before, after = wheelutil.raw_members(wheel), wheelutil.raw_members(result)
    assert {n for n in before if before[n] != after[n]} == {LAUNCHER, f"{DIST}/stored.bin"}


def test_a_deflate_bomb_stops_at_the_stated_size(tmp_path: Path) -> None:
    wheel = wheelutil.write_wheel(tmp_path / "w.whl", {f"{DIST}/big.txt": bytes(1 << 20)})
    with open(wheel, "rb") as f:
        archive = read_archive(f)
        member = next(m for m in archive.members if m.name == f"{DIST}/big.txt")
        member.file_size = 1000  # what a lying directory would say
        with pytest.raises(WheelFormatError, match="larger than its stated size"):
            for _ in read_member(f, member):
                pass


@pytest.mark.osslsigncode
@pytest.mark.parametrize(
    ("force_zip64", "stream", "count"),
    [(True, False, 0), (False, True, 0), (False, False, 66_000)],
    ids=["zip64-headers", "data-descriptors", "66000-members"],
)
def test_zip64_and_streamed_wheels_sign_and_verify(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, tmp_path: Path,
    force_zip64: bool, stream: bool, count: int,
) -> None:
    wheel = wheelutil.write_wheel(tmp_path / "dist" / wheelutil.WHEEL_NAME, many_members(count),
                                  force_zip64=force_zip64, stream=stream)
    before = wheelutil.raw_members(wheel)
    code, out, err = run_cli(capsys, "wheel", str(wheel), "-q", *sign_args(pki.identity()))
    assert code == 0, err
    wheelutil.check_signed_wheel(wheel, pki, tmp_path, members=(LAUNCHER,), unpack=count == 0)
    after = wheelutil.raw_members(wheel)
    assert {n for n in before if before[n] != after[n]} == {LAUNCHER, RECORD}
    with open(wheel, "rb") as f:
        assert len(read_archive(f).members) == count + 7
    code, out, err = run_cli(capsys, "verify", str(wheel), "--ca", str(pki.root_pem),
                             "--require-signed")
    assert code == 0, err
    assert f"verified: {wheel}!{LAUNCHER} (" in out


def test_a_wheel_without_pe_members_gets_one_note_and_is_copied_into_the_dir(
    capsys: pytest.CaptureFixture[str], pki: TestPKI, tmp_path: Path
) -> None:
    wheel = wheelutil.write_wheel(tmp_path / "dist" / "pure-1.0-py3-none-any.whl",
                                  {"pure/__init__.py": b"x = 1\n"})
    before = wheel.read_bytes()
    stat = wheel.stat()
    dest = tmp_path / "wheelhouse"
    code, out, err = run_cli(capsys, "wheel", str(wheel), "-w", str(dest),
                             *sign_args(pki.identity()))
    assert code == 0, err
    assert out.splitlines()[0] == f"skipped: {wheel} (no PE member to sign; copied unchanged " \
        f"into {dest})"
    assert (dest / wheel.name).read_bytes() == before
    code, out, err = run_cli(capsys, "wheel", str(tmp_path / "dist"), *sign_args(pki.identity()))
    assert code == 0, err
    assert out.splitlines()[0] == f"skipped: {wheel} (no PE member to sign)"
    assert wheel.stat().st_mtime_ns == stat.st_mtime_ns
    code, out, err = run_cli(capsys, "verify", str(tmp_path / "dist"))
    assert code == 0, err
    assert out.splitlines()[0] == f"verified: {wheel} (RECORD matches; no PE member)"


@pytest.mark.posix  # a sparse file
def test_offsets_and_sizes_past_4_gib_get_zip64_fields_and_end_records(tmp_path: Path) -> None:
    """A member past 4 GiB, larger than 4 GiB, in an archive whose central directory
    starts past 4 GiB: the headers written carry ZIP64 fields and end records, and read
    back as they were meant (a sparse file, so nothing is written out for real)."""
    big = 5 << 30
    member = zipdir.Member(
        name="pkg/huge.dll", raw_name=b"pkg/huge.dll", version_made=0x031E, version_needed=20,
        flags=0, method=zipfile.ZIP_DEFLATED, time=0x6000, date=0x5821, crc=0x12345678,
        compress_size=big + 1, file_size=big + 2, internal_attr=0, external_attr=0o644 << 16,
        header_offset=0, extra=b"\xfe\xca\x00\x00", comment=b"note",
    )
    new = Packed(crc=0x9ABCDEF0, compress_size=big + 3, file_size=big + 4)
    entry = rewrite._central(member, big + 5, new)
    archive = zipdir.Archive(size=0, members=[member], comment=b"archive comment", cd_offset=0)
    path = tmp_path / "sparse.zip"
    with open(path, "wb") as out:
        out.seek(big + 6)
        out.write(entry)
        rewrite._write_end(out, archive, big + 6, len(entry))
    with open(path, "rb") as f:
        entries, cd_offset, cd_size, comment = zipdir._directory_location(f, path.stat().st_size)
    assert (entries, cd_offset, cd_size, comment) == (1, big + 6, len(entry), b"archive comment")
    parsed, end = zipdir._member(entry, 0, "entry")
    assert end == len(entry)
    assert (parsed.crc, parsed.compress_size, parsed.file_size, parsed.header_offset) == (
        new.crc, big + 3, big + 4, big + 5
    )
    assert parsed.version_needed == 45
    assert (parsed.extra, parsed.comment, parsed.external_attr) == (
        member.extra, b"note", member.external_attr
    )


@pytest.mark.parametrize("isal", [True, False], ids=["isal-if-installed", "zlib"])
def test_a_middle_deflated_apart_is_spliced_between_a_new_head_and_tail(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isal: bool
) -> None:
    """A signed member's unchanged middle, deflated before signing in two pieces, joins
    the head and tail deflated after into one stream that zlib inflates to the signed
    bytes; a middle that no longer matches is refused (None), not spliced."""
    if not isal:
        monkeypatch.setattr("kmssign._internal.wheel.codec._isal", None)
    launcher = peutil.LAUNCHERS["t64.exe"].read_bytes()
    original = tmp_path / "original.exe"
    original.write_bytes(launcher * 40 + bytes(range(256)) * 9000 + b"odd")  # > 3 chunks
    before = original.read_bytes()
    start, end = 0x200, len(before)
    split = start + 3_000_001  # two pieces, deflated apart
    middle = [deflate_range(original, start, split, tmp_path / "piece0"),
              deflate_range(original, split, end, tmp_path / "piece1")]
    signed = tmp_path / "signed.exe"
    signed.write_bytes(b"MZ new head" + before[11:start] + before[start:] + bytes(5) + b"table")
    out = io.BytesIO()
    hasher = hashlib.sha256()
    with open(signed, "rb") as src:
        packed = pack(src, out, zipfile.ZIP_DEFLATED, hasher=hasher, middle=middle)
    data = signed.read_bytes()
    assert packed == Packed(zlib.crc32(data), len(out.getvalue()), len(data))
    assert hasher.digest() == hashlib.sha256(data).digest()
    inflater = zlib.decompressobj(-15)
    assert inflater.decompress(out.getvalue()) == data
    assert inflater.eof and not inflater.unused_data
    pieces = sum(piece.data.stat().st_size for piece in middle)
    assert pieces < packed.compress_size < len(data) // 2

    changed = bytearray(data)
    changed[end - 1] ^= 1  # the middle's last byte
    signed.write_bytes(changed)
    with open(signed, "rb") as src:
        assert pack(src, io.BytesIO(), zipfile.ZIP_DEFLATED, middle=middle) is None
    signed.write_bytes(data[: end - 1])  # cut short inside the middle
    with open(signed, "rb") as src:
        assert pack(src, io.BytesIO(), zipfile.ZIP_DEFLATED, middle=middle) is None
    signed.write_bytes(data)
    with open(signed, "rb") as src:  # pieces that do not follow one another
        assert pack(src, io.BytesIO(), zipfile.ZIP_DEFLATED, middle=middle[::-1]) is None
