"""A PE image as a signable file: what the engine's format-neutral pipeline asks of it."""

from __future__ import annotations

from typing import BinaryIO

from kmssign._internal.pe import digest as pe_digest
from kmssign._internal.pe.certtable import read_signature_entry
from kmssign._internal.pe.image import PEImage, align8, parse_pe
from kmssign._internal.pe.signedcopy import SignedCopy, begin_signed_copy, finish_signed_copy
from kmssign.errors import VerificationError

SPC_PE_IMAGE_DATA = "1.3.6.1.4.1.311.2.1.15"


class PEFile:
    """An open PE file: its signature, its digest, and the signed copy of it.

    The signature is a WIN_CERTIFICATE in the certificate table at the end of the file;
    the copy streams the image without it, and appends the new one.
    """

    format = "pe"
    kind = "a PE image"
    data_type = SPC_PE_IMAGE_DATA

    def __init__(self, f: BinaryIO, image: PEImage | None = None) -> None:
        self.f = f
        self.image = image if image is not None else parse_pe(f)

    @property
    def signed(self) -> bool:
        return self.image.has_certificate_table

    def signature(self) -> bytes:
        if not self.signed:
            raise VerificationError("not signed")
        return read_signature_entry(self.f, self.image)

    def digest(self, algorithm: str) -> bytes:
        return pe_digest.authenticode_digest(self.f, self.image, algorithm)

    def begin_copy(
        self, algorithm: str, out: BinaryIO, *, nesting: bool = False
    ) -> tuple[bytes, SignedCopy]:
        """The file's digest, and the image written to ``out`` without its signature."""
        return begin_signed_copy(self.f, self.image, algorithm, out)

    def finish_copy(self, out: BinaryIO, state: object, signature: bytes) -> None:
        assert isinstance(state, SignedCopy)
        finish_signed_copy(out, state, signature)

    def known_digest(
        self, algorithm: str, copy_digest: bytes, *, nesting: bool = False
    ) -> dict[str, bytes]:
        """The copy's digest as the file's Authenticode digest for ``algorithm``, where
        they are the same (the copy pads to 8 what the signature did not cover)."""
        end = self.image.image_end
        return {algorithm: copy_digest} if align8(end) == end else {}
