"""The Authenticode digest of a PE image, in one streaming pass (what ``verify`` does)."""

from __future__ import annotations

from typing import BinaryIO

from kmssign._internal.pe import hashing
from kmssign._internal.pe.hashing import Summer
from kmssign._internal.pe.image import PEImage, align8
from kmssign._internal.pe.reading import new_hash, split


def authenticode_digest(f: BinaryIO, image: PEImage, digest: str) -> bytes:
    """The Authenticode digest of the image, in one streaming pass.

    The file is read through buffers, never mapped (a file cut short meanwhile is a
    PEFormatError, not SIGBUS); a large one is hashed on a worker thread while the next
    chunk is read, which hides the copy into the buffer behind the hashing.
    """
    h = new_hash(digest)
    end = image.image_end
    summer = Summer(h, threaded=end >= hashing.THREAD_MIN, checksum=False)
    try:
        for offset, data, lease in summer.chunks(f, 0, end):
            summer.feed(offset, data, split(offset, data, image)[1], lease)
    finally:
        summer.close()
    if not image.has_certificate_table:
        h.update(bytes(align8(end) - end))
    return h.digest()
