"""The file formats kmssign signs, found by content, behind one idea of a signable file.

Every format the pipeline handles (discovery, skip-signed, dry run, concurrency, atomic
writes, locking, the report, timestamps, verify) is a :class:`Format`: a sniff of the
first bytes, an ``open`` that parses and validates the file into a :class:`Signable`,
and the SpcIndirectDataContent ``data`` its signatures carry. The Authenticode CMS code
is shared; a format says only how the file is digested and where its signature lives.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import BinaryIO, NamedTuple, Protocol

from kmssign._internal.authenticode.build import pe_image_data_der, sip_info_der
from kmssign._internal.authenticode.signedfile import SignedFile
from kmssign._internal.pe.image import has_pe_header
from kmssign._internal.pe.signable import PEFile


class Signable(SignedFile, Protocol):
    """An open file of a signable format (parsed and validated when opened).

    ``begin_copy`` writes the file without its signature to ``out`` and returns the
    file's digest with what ``finish_copy`` needs to add the new signature; with
    ``nesting`` the copy keeps what the existing signature covers (an MSI package's
    ``MsiDigitalSignatureEx``), as ``--append`` and ``timestamp`` need.
    """

    format: str

    @property
    def signed(self) -> bool: ...

    def begin_copy(
        self, algorithm: str, out: BinaryIO, *, nesting: bool = False
    ) -> tuple[bytes, object]: ...

    def finish_copy(self, out: BinaryIO, state: object, signature: bytes) -> None: ...

    def known_digest(
        self, algorithm: str, copy_digest: bytes, *, nesting: bool = False
    ) -> dict[str, bytes]: ...


class Format(NamedTuple):
    """A signable file format: ``sniff`` looks at an open file (from its start) cheaply,
    ``open`` parses it (the format's error for a broken file), ``content_data`` is the
    DER SpcIndirectDataContent ``data`` of its signatures."""

    name: str
    sniff: Callable[[BinaryIO], bool]
    open: Callable[[BinaryIO], Signable]
    content_data: Callable[[], bytes]


def _msi() -> ModuleType:
    """The MSI format's module (with the compound-file reader and writer), imported when
    a file is not a PE file: a run over PE files never loads it."""
    from kmssign._internal.msi import package

    return package


def _open_msi(f: BinaryIO) -> Signable:
    package: Signable = _msi().MsiPackage(f)
    return package


PE = Format("pe", has_pe_header, PEFile, pe_image_data_der)
MSI = Format(
    "msi",
    lambda f: bool(_msi().is_package(f)),
    _open_msi,
    lambda: sip_info_der(_msi().MSI_SIP_GUID),
)


def formats() -> tuple[Format, ...]:
    """Every format kmssign signs, in the order they are tried."""
    return (PE, MSI)


def refusal(f: BinaryIO) -> str | None:
    """Why a file that no format took is left alone, when it is worth saying (a compound
    file that is not a Windows Installer package); None otherwise."""
    why: str | None = _msi().refusal(f)
    return why


def sniff(f: BinaryIO) -> Format | None:
    """The format an open file is in, by its first bytes; None when it is none of them.
    OSError when it cannot be read."""
    for fmt in formats():
        f.seek(0)
        if fmt.sniff(f):
            return fmt
    return None


def format_named(name: str) -> Format:
    return next(fmt for fmt in formats() if fmt.name == name)


def open_signable(f: BinaryIO) -> Signable:
    """The open file as a signable file of its format; the format's error with the
    reason (a file of no format is parsed as a PE file, which says what is missing)."""
    fmt = sniff(f) or PE
    f.seek(0)
    return fmt.open(f)
