"""The Authenticode digest of a PE image, in one streaming pass (what ``verify`` does)."""

from __future__ import annotations

from typing import BinaryIO

from kmssign.pe.image import PEImage, align8
from kmssign.pe.reading import new_hash, pieces, split


def authenticode_digest(f: BinaryIO, image: PEImage, digest: str) -> bytes:
    """The Authenticode digest of the image, in one streaming pass."""
    h = new_hash(digest)
    end = image.image_end
    for offset, data in pieces(f, end):
        for piece in split(offset, data, image)[1]:
            h.update(piece)
    if not image.has_certificate_table:
        h.update(bytes(align8(end) - end))
    return h.digest()

