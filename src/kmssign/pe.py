"""PE32/PE32+ images: header parsing, the Authenticode digest, the certificate table.

Everything streams with a bounded buffer; nothing here loads a whole image. Parsing is
defensive: any structural problem raises :class:`~kmssign.errors.PEFormatError` whose
message is the reason only (callers add the file name).

Authenticode hashes the file linearly except three ranges: the 4-byte CheckSum field,
the 8-byte certificate-table directory entry and the certificate table itself (which
must be the last thing in the file). An image without a table whose size is not a
multiple of 8 is hashed as if zero-padded to 8.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kmssign.checksum import Checksum
from kmssign.errors import ConfigError, PEFormatError

WIN_CERT_REVISION_1_0 = 0x0100
WIN_CERT_REVISION_2_0 = 0x0200
WIN_CERT_TYPE_X509 = 0x0001
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002

PE32_MAGIC = 0x10B
PE32_PLUS_MAGIC = 0x20B
DIGESTS = ("sha1", "sha256", "sha384", "sha512")

CHUNK = 1 << 20  # read size; at most a few of these are alive at once
MAX_CERT_TABLE = 64 << 20  # read_certificates refuses larger tables (memory bound)
_THREAD_MIN = 4 * CHUNK  # below this, hashing in a worker thread does not pay
_QUEUE_DEPTH = 8  # chunks in flight to the hashing thread (bounded memory)

_COFF = struct.Struct("<HHIIIHH")  # Machine .. Characteristics
_SECTION = struct.Struct("<8sIIIIIIHHI")
_DIR_ENTRY = struct.Struct("<II")
_WIN_CERT = struct.Struct("<IHH")
_SECURITY_DIR = 4


@dataclass(frozen=True)
class PEImage:
    """Where the parts Authenticode cares about are, as file offsets."""

    size: int
    pe32_plus: bool
    machine: int
    checksum_offset: int
    security_entry_offset: int
    cert_table_offset: int
    cert_table_size: int
    headers_end: int = 0  # end of the section table
    number_of_sections: int = 0

    @property
    def has_certificate_table(self) -> bool:
        return self.cert_table_size != 0

    @property
    def image_end(self) -> int:
        """End of the hashed image: the table's start, or the file's end without one."""
        return self.cert_table_offset if self.has_certificate_table else self.size


@dataclass(frozen=True)
class WinCertificate:
    revision: int
    cert_type: int
    data: bytes


def _align8(n: int) -> int:
    return (n + 7) & ~7


def _file_size(f: BinaryIO) -> int:
    return f.seek(0, 2)


def _read_at(f: BinaryIO, offset: int, length: int, reason: str) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise PEFormatError(reason)
    return data


def looks_like_pe(path: Path) -> bool:
    """Cheap sniff by content: 'MZ', e_lfanew inside the file, 'PE\\0\\0' there.

    Only regular files qualify (opening a FIFO found in a directory walk would block).
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:2] != b"MZ":
                return False
            (e_lfanew,) = struct.unpack_from("<I", head, 0x3C)
            f.seek(e_lfanew)
            return bool(f.read(4) == b"PE\0\0")
    except (OSError, ValueError, OverflowError):
        return False


def parse_pe(f: BinaryIO) -> PEImage:
    """Parse the headers of an open, seekable binary file; PEFormatError for anything broken."""
    size = _file_size(f)
    if size == 0:
        raise PEFormatError("file is empty")
    f.seek(0)
    if f.read(2) != b"MZ":
        raise PEFormatError("not a PE file (no MZ header)")
    dos = _read_at(f, 0, 64, "truncated DOS header")
    (e_lfanew,) = struct.unpack_from("<I", dos, 0x3C)
    if e_lfanew + 4 > size:
        raise PEFormatError(f"e_lfanew 0x{e_lfanew:x} points outside the file")
    if _read_at(f, e_lfanew, 4, "truncated PE signature") != b"PE\0\0":
        raise PEFormatError(f"no PE signature at e_lfanew 0x{e_lfanew:x}")
    coff = _read_at(f, e_lfanew + 4, _COFF.size, "truncated COFF header")
    machine, n_sections, _, _, _, opt_size, _ = _COFF.unpack(coff)

    opt = e_lfanew + 4 + _COFF.size
    magic_raw = _read_at(f, opt, 2, "truncated optional header")
    (magic,) = struct.unpack("<H", magic_raw)
    if magic == PE32_MAGIC:
        pe32_plus, fixed = False, 96
    elif magic == PE32_PLUS_MAGIC:
        pe32_plus, fixed = True, 112
    else:
        raise PEFormatError(f"unknown optional header magic 0x{magic:x}")
    if opt_size < fixed + 8 * (_SECURITY_DIR + 1):
        raise PEFormatError(
            f"SizeOfOptionalHeader {opt_size} is too small to hold the certificate table entry"
        )
    header = _read_at(f, opt, opt_size, "truncated optional header")
    (n_dirs,) = struct.unpack_from("<I", header, fixed - 4)
    if n_dirs <= _SECURITY_DIR:
        raise PEFormatError(f"no certificate table directory entry (NumberOfRvaAndSizes={n_dirs})")
    if n_dirs > 16:
        raise PEFormatError(f"NumberOfRvaAndSizes {n_dirs} is absurd (at most 16)")
    if fixed + 8 * n_dirs > opt_size:
        raise PEFormatError(
            f"SizeOfOptionalHeader {opt_size} does not hold {n_dirs} data directory entries"
        )
    security_entry = fixed + 8 * _SECURITY_DIR
    cert_offset, cert_size = _DIR_ENTRY.unpack_from(header, security_entry)

    sections_at = opt + opt_size
    headers_end = sections_at + _SECTION.size * n_sections
    if headers_end > size:
        raise PEFormatError(f"section table ({n_sections} sections) extends past end of file")
    table = _read_at(f, sections_at, headers_end - sections_at, "truncated section table")
    raw_end = _check_sections(table, size)
    image = PEImage(
        size=size,
        pe32_plus=pe32_plus,
        machine=machine,
        checksum_offset=opt + 64,
        security_entry_offset=opt + security_entry,
        cert_table_offset=cert_offset,
        cert_table_size=cert_size,
        headers_end=headers_end,
        number_of_sections=n_sections,
    )
    _check_cert_table(image, raw_end)
    return image


def _check_sections(table: bytes, size: int) -> int:
    """Check each section's raw data lies inside the file; return where the last one ends."""
    raw_end = 0
    for index, fields in enumerate(_SECTION.iter_unpack(table)):
        name = fields[0].rstrip(b"\0").decode("ascii", "replace")
        raw_size, raw_ptr = fields[3], fields[4]
        if raw_size == 0:
            continue
        if raw_ptr + raw_size > size:
            raise PEFormatError(f"section {index} ({name!r}) raw data extends past end of file")
        raw_end = max(raw_end, raw_ptr + raw_size)
    return raw_end


def _check_cert_table(image: PEImage, raw_end: int) -> None:
    offset, length = image.cert_table_offset, image.cert_table_size
    if offset == 0 and length == 0:
        return
    if length == 0:
        raise PEFormatError(f"certificate table at 0x{offset:x} has size 0")
    if offset == 0:
        raise PEFormatError(f"certificate table of {length} bytes has offset 0")
    if offset >= image.size:
        raise PEFormatError("certificate table starts past end of file")
    if offset + length > image.size:
        raise PEFormatError("certificate table extends past end of file")
    if offset % 8:
        raise PEFormatError(f"certificate table offset 0x{offset:x} is not 8-byte aligned")
    if offset < image.headers_end:
        raise PEFormatError("certificate table overlaps the PE headers")
    if offset < raw_end:
        raise PEFormatError("certificate table overlaps section data")
    if length < _WIN_CERT.size:
        raise PEFormatError(f"certificate table is too small ({length} bytes)")
    if offset + length < image.size:
        trailing = image.size - offset - length
        raise PEFormatError(f"{trailing} bytes of data after the certificate table")


def stored_checksum(f: BinaryIO, image: PEImage) -> int:
    raw = _read_at(f, image.checksum_offset, 4, "truncated optional header")
    return int(struct.unpack("<I", raw)[0])


# --------------------------------------------------------------------- certificate table


def read_certificates(f: BinaryIO, image: PEImage) -> list[WinCertificate]:
    """The entries of the certificate table (empty without one)."""
    if not image.has_certificate_table:
        return []
    if image.cert_table_size > MAX_CERT_TABLE:
        raise PEFormatError(f"certificate table is too large ({image.cert_table_size} bytes)")
    table = _read_at(
        f,
        image.cert_table_offset,
        image.cert_table_size,
        "certificate table extends past end of file",
    )
    entries: list[WinCertificate] = []
    pos = 0
    while pos < len(table):
        if len(table) - pos < _WIN_CERT.size:
            raise PEFormatError(f"truncated WIN_CERTIFICATE header at table offset {pos}")
        length, revision, cert_type = _WIN_CERT.unpack_from(table, pos)
        if length < _WIN_CERT.size:
            raise PEFormatError(f"WIN_CERTIFICATE length {length} is too small")
        if pos + length > len(table):
            raise PEFormatError(f"WIN_CERTIFICATE length {length} runs past the certificate table")
        data = table[pos + _WIN_CERT.size : pos + length]
        if cert_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA:
            data = _trim_der_padding(data)
        entries.append(WinCertificate(revision, cert_type, data))
        pos += _align8(length)
    return entries


def _der_length(data: bytes) -> int | None:
    """Total length of the DER element at the start of ``data``; None if it is not one."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        return None
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def _trim_der_padding(data: bytes) -> bytes:
    """Drop the zero padding some signers count in dwLength; refuse anything else after the DER.

    Bytes hidden after the SignedData inside the entry are the CVE-2013-3900 trick. Data
    that is not DER at all is returned unchanged: the PKCS#7 layer rejects it.
    """
    end = _der_length(data)
    if end is None or end >= len(data):
        return data
    extra = data[end:]
    if len(extra) >= 8 or extra.count(0) != len(extra):
        raise PEFormatError(
            f"{len(extra)} bytes of data after the SignedData in its certificate entry"
        )
    return data[:end]


def win_certificate(signed_data: bytes) -> bytes:
    """One WIN_CERTIFICATE (revision 2.0, PKCS#7 SignedData) holding ``signed_data``.

    Padded to 8 with zeros, and dwLength counts the padding, as signtool and
    osslsigncode write it.
    """
    length = _align8(_WIN_CERT.size + len(signed_data))
    entry = _WIN_CERT.pack(length, WIN_CERT_REVISION_2_0, WIN_CERT_TYPE_PKCS_SIGNED_DATA)
    return entry + signed_data + bytes(length - _WIN_CERT.size - len(signed_data))


def _unwrap_table(data: bytes) -> bytes:
    """The SignedData of a single-entry certificate table given whole; other bytes unchanged."""
    if len(data) < _WIN_CERT.size or data[0] == 0x30:
        return data
    length, revision, cert_type = _WIN_CERT.unpack_from(data, 0)
    if (
        revision == WIN_CERT_REVISION_2_0
        and cert_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA
        and _WIN_CERT.size < length <= len(data) <= _align8(length)
    ):
        return _trim_der_padding(data[_WIN_CERT.size : length])
    return data


# --------------------------------------------------------------------------- streaming


def _new_hash(digest: str) -> hashlib._Hash:
    if digest not in DIGESTS:
        raise ConfigError(f"unsupported digest algorithm {digest!r} (use sha256, sha384 or sha512)")
    return hashlib.new(digest)


def _chunks(f: BinaryIO, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) pieces of [start, end), each at most CHUNK long."""
    f.seek(start)
    offset = start
    while offset < end:
        data = f.read(min(CHUNK, end - offset))
        if not data:
            raise PEFormatError("file is shorter than its headers say (changed while reading?)")
        yield offset, data
        offset += len(data)


def _holes(image: PEImage) -> tuple[tuple[int, int], tuple[int, int]]:
    return (
        (image.checksum_offset, image.checksum_offset + 4),
        (image.security_entry_offset, image.security_entry_offset + 8),
    )


def _split(offset: int, data: bytes, image: PEImage) -> tuple[bytes, list[memoryview]]:
    """``data`` with the CheckSum and security entry zeroed, and the pieces Authenticode hashes."""
    end = offset + len(data)
    holes = [(a, b) for a, b in _holes(image) if a < end and b > offset]
    view = memoryview(data)
    if not holes:
        return data, [view]
    zeroed = bytearray(data)
    pieces: list[memoryview] = []
    pos = offset
    for a, b in holes:
        lo, hi = max(a, offset), min(b, end)
        if lo > pos:
            pieces.append(view[pos - offset : lo - offset])
        zeroed[lo - offset : hi - offset] = bytes(hi - lo)
        pos = max(pos, hi)
    if pos < end:
        pieces.append(view[pos - offset :])
    return bytes(zeroed), pieces


def authenticode_digest(f: BinaryIO, image: PEImage, digest: str) -> bytes:
    """The Authenticode digest of the image, in one streaming pass."""
    h = _new_hash(digest)
    end = image.image_end
    for offset, data in _chunks(f, 0, end):
        for piece in _split(offset, data, image)[1]:
            h.update(piece)
    if not image.has_certificate_table:
        h.update(bytes(_align8(end) - end))
    return h.digest()


def pe_checksum(f: BinaryIO, image: PEImage) -> int:
    """The PE checksum of the file as it is (CheckSum field counted as zero)."""
    acc = Checksum()
    cks = image.checksum_offset
    for offset, data in _chunks(f, 0, image.size):
        if offset < cks + 4 and cks < offset + len(data):
            zeroed = bytearray(data)
            lo, hi = max(cks, offset) - offset, min(cks + 4, offset + len(data)) - offset
            zeroed[lo:hi] = bytes(hi - lo)
            data = bytes(zeroed)
        acc.add(data, offset)
    return acc.value(image.size)


class _Summer:
    """Hashes the Authenticode pieces and checksums the written bytes of each chunk.

    With ``threaded``, one worker thread hashes and another checksums (hashlib and numpy
    drop the GIL on large buffers) while the calling thread only reads and writes, so the
    pass costs about the largest of the three instead of their sum. Bounded queues
    bound the memory.
    """

    def __init__(self, h: hashlib._Hash | None, threaded: bool) -> None:
        self.h = h
        self.checksum = Checksum()
        self._queues: list[queue.Queue[_Item | None]] = []
        self._threads: list[threading.Thread] = []
        if threaded:
            for target in (self._hash_pieces, self._sum_written):
                q: queue.Queue[_Item | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
                thread = threading.Thread(
                    target=self._drain, args=(q, target), name="kmssign-hash", daemon=True
                )
                self._queues.append(q)
                self._threads.append(thread)
                thread.start()

    @staticmethod
    def _drain(
        q: queue.Queue[_Item | None], work: Callable[[int, bytes, list[memoryview]], None]
    ) -> None:
        while (item := q.get()) is not None:
            work(*item)

    def _hash_pieces(self, _offset: int, _written: bytes, pieces: list[memoryview]) -> None:
        if self.h is not None:
            for piece in pieces:
                self.h.update(piece)

    def _sum_written(self, offset: int, written: bytes, _pieces: list[memoryview]) -> None:
        self.checksum.add(written, offset)

    def feed(self, offset: int, written: bytes, pieces: list[memoryview]) -> None:
        if not self._queues:
            self._hash_pieces(offset, written, pieces)
            self._sum_written(offset, written, pieces)
        else:
            for q in self._queues:
                q.put((offset, written, pieces))

    def close(self) -> None:
        """Wait for the workers; afterwards feed() works inline."""
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join()
        self._queues, self._threads = [], []


_Item = tuple[int, bytes, list[memoryview]]


@dataclass
class SignedCopy:
    """What finish_signed_copy needs after begin_signed_copy streamed the image."""

    base: int  # position of the image's first byte in `out`
    image_length: int  # bytes written so far (image without table, padded to 8)
    checksum_offset: int
    security_entry_offset: int
    checksum: Checksum


def _copy_without_table(f: BinaryIO, image: PEImage, out: BinaryIO, summer: _Summer) -> SignedCopy:
    """Copy [0, image_end) to ``out`` with CheckSum and security entry zeroed, then pad to 8."""
    base = out.tell()
    end = image.image_end
    try:
        for offset, data in _chunks(f, 0, end):
            written, pieces = _split(offset, data, image)
            summer.feed(offset, written, pieces)
            out.write(written)
    finally:
        summer.close()
    padding = bytes(_align8(end) - end)
    if padding:
        summer.feed(end, padding, [memoryview(padding)])
        out.write(padding)
    return SignedCopy(
        base,
        end + len(padding),
        image.checksum_offset,
        image.security_entry_offset,
        summer.checksum,
    )


def begin_signed_copy(
    f: BinaryIO, image: PEImage, digest: str, out: BinaryIO
) -> tuple[bytes, SignedCopy]:
    """Stream the image once: return its Authenticode digest and write it, without its old
    certificate table and zero-padded to 8, to ``out`` (from its current position)."""
    if _align8(image.image_end) + _WIN_CERT.size > 0xFFFFFFFF:
        raise PEFormatError("file is too large to sign (a PE image ends below 4 GiB)")
    if image.image_end >= _KERNEL_COPY_MIN:
        done = _hash_beside_kernel_copy(f, image, digest, out)
        if done is not None:
            return done
    h = _new_hash(digest)
    summer = _Summer(h, threaded=image.image_end >= _THREAD_MIN)
    state = _copy_without_table(f, image, out, summer)
    return h.digest(), state


_KERNEL_COPY_MIN = 8 * CHUNK  # below this, a plain read/write copy is as fast
# copy_file_range cannot serve these files or filesystems: use the plain copy instead
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}


def _hash_beside_kernel_copy(
    f: BinaryIO, image: PEImage, digest: str, out: BinaryIO
) -> tuple[bytes, SignedCopy] | None:
    """Hash in this process while the kernel copies the file (``copy_file_range``).

    Writing a large copy through user space costs more than hashing it; the kernel copy
    runs beside the hashing pass on another core. Returns None (and leaves ``out`` as it
    was) where the kernel cannot copy, so the caller falls back to the streaming copy.
    """
    copy_file_range = getattr(os, "copy_file_range", None)
    try:
        src_fd, dst_fd = f.fileno(), out.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    if copy_file_range is None:
        return None
    out.flush()
    base = out.tell()
    end = image.image_end
    before = os.fstat(src_fd)
    failures: list[OSError] = []

    def kernel_copy() -> None:
        copied = 0
        try:
            while copied < end:
                n = copy_file_range(src_fd, dst_fd, end - copied, copied, base + copied)
                if n == 0:
                    raise OSError(errno.EIO, "file is shorter than its headers say")
                copied += n
        except OSError as exc:
            failures.append(exc)

    copier = threading.Thread(target=kernel_copy, name="kmssign-copy", daemon=True)
    copier.start()
    h = _new_hash(digest)
    summer = _Summer(h, threaded=True)
    try:
        for offset, data in _chunks(f, 0, end):
            written, pieces = _split(offset, data, image)
            summer.feed(offset, written, pieces)
    finally:
        summer.close()
        copier.join()
    if failures:
        if failures[0].errno in _NO_KERNEL_COPY:
            out.seek(base)
            out.truncate()
            return None
        raise failures[0]
    after = os.fstat(src_fd)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise PEFormatError("the file changed while it was being signed")
    # The copy holds the original CheckSum and security entry: zero them as the
    # streaming copy does (finish_signed_copy writes the final values).
    out.seek(base + image.checksum_offset)
    out.write(bytes(4))
    out.seek(base + image.security_entry_offset)
    out.write(bytes(8))
    out.seek(base + end)
    padding = bytes(_align8(end) - end)
    if padding:
        summer.feed(end, padding, [memoryview(padding)])
        out.write(padding)
    state = SignedCopy(
        base,
        end + len(padding),
        image.checksum_offset,
        image.security_entry_offset,
        summer.checksum,
    )
    return h.digest(), state


def _write_tail(out: BinaryIO, state: SignedCopy, entry: tuple[int, int], table: bytes) -> None:
    """Append ``table``, set the security entry and the checksum of the finished file."""
    table_offset, table_size = entry
    if table_offset + table_size > 0xFFFFFFFF:
        raise PEFormatError("signed file would be larger than 4 GiB")
    out.seek(state.base + state.image_length)
    out.write(table)
    raw_entry = _DIR_ENTRY.pack(table_offset, table_size)
    state.checksum.add(raw_entry, state.security_entry_offset)
    state.checksum.add(table, state.image_length)
    total = state.image_length + len(table)
    out.seek(state.base + state.security_entry_offset)
    out.write(raw_entry)
    out.seek(state.base + state.checksum_offset)
    out.write(struct.pack("<I", state.checksum.value(total)))
    out.seek(state.base + total)


def finish_signed_copy(out: BinaryIO, state: SignedCopy, signed_data: bytes) -> None:
    """Append one WIN_CERTIFICATE holding ``signed_data`` (DER SignedData, or a one-entry
    certificate table given whole), point the security entry at it, write the checksum."""
    table = win_certificate(_unwrap_table(signed_data))
    _write_tail(out, state, (state.image_length, len(table)), table)


def strip_copy(f: BinaryIO, image: PEImage, out: BinaryIO) -> None:
    """Copy the image without its certificate table (entry zeroed, checksum recomputed).

    The copy ends where the table started (8-aligned when the file was signed); an
    image without a table is copied as it is, only the checksum is rewritten.
    """
    base = out.tell()
    summer = _Summer(None, threaded=False)
    for offset, data in _chunks(f, 0, image.image_end):
        written = _split(offset, data, image)[0]
        summer.feed(offset, written, [])
        out.write(written)
    state = SignedCopy(
        base, image.image_end, image.checksum_offset, image.security_entry_offset, summer.checksum
    )
    _write_tail(out, state, (0, 0), b"")
