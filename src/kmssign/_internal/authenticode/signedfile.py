"""What verifying a file's Authenticode signatures needs of the file, whatever its format
(PE images and MSI packages implement it in their own packages). A module of its own so
that the file formats name it without loading the verifier: signing an unsigned file
never verifies one."""

from __future__ import annotations

from typing import Protocol


class SignedFile(Protocol):
    """A file of a signable format, open, as verification needs it (PE images and MSI
    packages implement it in their own packages)."""

    @property
    def data_type(self) -> str:
        """The SpcIndirectDataContent data type this format's signatures carry (OID)."""

    @property
    def kind(self) -> str:
        """What the file is, in words: ``a PE image``, ``an MSI package``."""

    def signature(self) -> bytes:
        """The primary signature (DER ContentInfo) as stored; a KmsSignError without one."""

    def digest(self, algorithm: str) -> bytes:
        """The file's Authenticode digest (one pass over the file)."""
