"""The signed copy: the image streamed once (digest + copy + checksum) without its old
certificate table, then the new table appended and the headers fixed."""

from __future__ import annotations

import struct
from typing import BinaryIO, NamedTuple

from kmssign._internal.pe import hashing
from kmssign._internal.pe.certtable import unwrap_table, win_certificate
from kmssign._internal.pe.checksum import Checksum, accelerate_for
from kmssign._internal.pe.hashing import Summer
from kmssign._internal.pe.image import DIR_ENTRY, WIN_CERT, PEImage, align8
from kmssign._internal.pe.reading import LARGE, chunks, new_hash, split
from kmssign.errors import PEFormatError


class SignedCopy(NamedTuple):
    """What finish_signed_copy needs after begin_signed_copy streamed the image."""

    base: int  # position of the image's first byte in `out`
    image_length: int  # bytes written so far (image without table, padded to 8)
    checksum_offset: int
    security_entry_offset: int
    checksum: Checksum


def _copy_without_table(f: BinaryIO, image: PEImage, out: BinaryIO, summer: Summer) -> SignedCopy:
    """Copy [0, image_end) to ``out`` with CheckSum and security entry zeroed, then pad to 8."""
    base = out.tell()
    end = image.image_end
    try:
        for offset, data, lease in summer.chunks(f, 0, end):
            written, pieces = split(offset, data, image)
            summer.feed(offset, written, pieces, lease)
            out.write(written)
    finally:
        summer.close()
    padding = bytes(align8(end) - end)
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
    if align8(image.image_end) + WIN_CERT.size > 0xFFFFFFFF:
        raise PEFormatError("file is too large to sign (a PE image ends below 4 GiB)")
    end = image.image_end
    if end >= LARGE:
        from kmssign._internal.pe.kernelcopy import hash_beside_kernel_copy

        base = out.tell()
        done = hash_beside_kernel_copy(f, image, digest, out)
        if done is not None:
            file_digest, checksum = done
            state = SignedCopy(
                base, align8(end), image.checksum_offset, image.security_entry_offset, checksum
            )
            return file_digest, state
    accelerate_for(end)
    h = new_hash(digest)
    summer = Summer(h, threaded=end >= hashing.THREAD_MIN)
    state = _copy_without_table(f, image, out, summer)
    return h.digest(), state


def _write_tail(out: BinaryIO, state: SignedCopy, entry: tuple[int, int], table: bytes) -> None:
    """Append ``table``, set the security entry and the checksum of the finished file."""
    table_offset, table_size = entry
    if table_offset + table_size > 0xFFFFFFFF:
        raise PEFormatError("signed file would be larger than 4 GiB")
    out.seek(state.base + state.image_length)
    out.write(table)
    raw_entry = DIR_ENTRY.pack(table_offset, table_size)
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
    table = win_certificate(unwrap_table(signed_data))
    _write_tail(out, state, (state.image_length, len(table)), table)


def strip_copy(f: BinaryIO, image: PEImage, out: BinaryIO) -> None:
    """Copy the image without its certificate table (entry zeroed, checksum recomputed).

    The copy ends where the table started (8-aligned when the file was signed); an
    image without a table is copied as it is, only the checksum is rewritten.
    """
    base = out.tell()
    accelerate_for(image.image_end)
    summer = Summer(None, threaded=False)
    for offset, data in chunks(f, 0, image.image_end):
        written = split(offset, data, image)[0]
        summer.feed(offset, written, [])
        out.write(written)
    state = SignedCopy(
        base, image.image_end, image.checksum_offset, image.security_entry_offset, summer.checksum
    )
    _write_tail(out, state, (0, 0), b"")
