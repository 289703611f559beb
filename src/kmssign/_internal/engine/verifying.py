"""Verifying one file: its signatures checked, and the result line that says so."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from kmssign._internal.authenticode.verify import VerifiedFile, VerifiedSignature, verify_signed
from kmssign._internal.engine.formats import open_signable
from kmssign._internal.engine.report import FileResult
from kmssign._internal.pki.certs import Anchors, load_roots
from kmssign.errors import UnsignedError, VerificationError


def _nested_note(signature: VerifiedSignature) -> str:
    when = signature.timestamp
    stamp = f"timestamp {when:%Y-%m-%dT%H:%M:%SZ}" if when is not None else "no timestamp"
    return f"nested signature: {signature.signer}, {signature.digest}, {stamp}"


def trust_anchors(
    roots: Sequence[Path] | None, tsa_roots: Sequence[Path] = ()
) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(signer roots, TSA roots): Microsoft's root program for code signing and for
    timestamping when ``roots`` is None; else the roots in those files (``tsa_roots``
    for timestamps when given); none at all (no chain check) for an empty ``roots``."""
    if roots is None and not tsa_roots:
        from kmssign._internal.pki.msroots import (
            CODE_SIGNING,
            TIME_STAMPING,
            microsoft_anchors,
        )

        return microsoft_anchors(CODE_SIGNING), microsoft_anchors(TIME_STAMPING)
    if roots is None:
        from kmssign._internal.pki.msroots import CODE_SIGNING, microsoft_anchors

        signer: list[x509.Certificate] = microsoft_anchors(CODE_SIGNING)
    else:
        signer = Anchors(load_roots(roots)) if roots else []
    return signer, (Anchors(load_roots(tsa_roots)) if tsa_roots else [])


def _trust_note(roots: Sequence[x509.Certificate]) -> str:
    if not roots:
        return "chain not checked (no trusted roots given)"
    return f"trust: {roots.label if isinstance(roots, Anchors) else Anchors.label}"


class NotSigned(UnsignedError):
    """The file carries no signature at all."""


def verify_file(
    path: Path,
    *,
    roots: Sequence[x509.Certificate] = (),
    tsa_roots: Sequence[x509.Certificate] = (),
    require_timestamp: bool = False,
    found: FileResult | None = None,
) -> VerifiedFile:
    """Verify every signature of ``path`` (any format kmssign signs); raise a
    KmsSignError subclass with the reason. ``found`` learns the file's format."""
    try:
        with open(path, "rb") as f:
            signable = open_signable(f)
            if found is not None:
                found.format = signable.format
            if not signable.signed:
                raise NotSigned("not signed")
            return verify_signed(
                signable, roots=roots, tsa_roots=tsa_roots, require_timestamp=require_timestamp
            )
    except OSError as exc:
        error = VerificationError(f"cannot read file: {exc.strerror or exc}")
        error.code = "io-error"
        raise error from exc


def verify_one(
    path: Path,
    roots: Sequence[x509.Certificate],
    tsa_roots: Sequence[x509.Certificate],
    *,
    require_timestamp: bool = False,
    allow_unsigned: bool = False,
) -> FileResult:
    """``verified`` with the signer, digest, timestamp and notes, or ``failed`` with why.
    A file without any signature fails, or is ``unsigned`` with ``allow_unsigned``."""
    found = FileResult(path, "failed")
    try:
        verified = verify_file(
            path, roots=roots, tsa_roots=tsa_roots, require_timestamp=require_timestamp,
            found=found,
        )
    except NotSigned as exc:
        found.reason = "not signed"
        found.error = exc
        if allow_unsigned:
            found.status = "unsigned"
        return found
    except Exception as exc:  # anything: one file never ends a batch
        return found.fail(exc)
    primary = verified.primary
    notes = [_nested_note(s) for s in verified.signatures[1:]]
    notes.append(_trust_note(roots))
    return FileResult(
        path, "verified", reason="; ".join(notes) or None, signer=primary.signer,
        digest=primary.digest, timestamp=primary.timestamp, format=found.format,
    )
