"""Verifying one file: its signatures checked, and the result line that says so."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from kmssign._internal.authenticode.verify import VerifiedSignature, verify_file
from kmssign._internal.engine.report import FileResult


def _nested_note(signature: VerifiedSignature) -> str:
    when = signature.timestamp
    stamp = f"timestamp {when:%Y-%m-%dT%H:%M:%SZ}" if when is not None else "no timestamp"
    return f"nested signature: {signature.signer}, {signature.digest}, {stamp}"


def verify_one(
    path: Path,
    roots: Sequence[x509.Certificate],
    tsa_roots: Sequence[x509.Certificate],
    *,
    require_timestamp: bool = False,
) -> FileResult:
    """``verified`` with the signer, digest, timestamp and notes, or ``failed`` with why."""
    try:
        verified = verify_file(
            path, roots=roots, tsa_roots=tsa_roots, require_timestamp=require_timestamp
        )
    except Exception as exc:  # anything: one file never ends a batch
        return FileResult(path, "failed").fail(exc)
    primary = verified.primary
    notes = [_nested_note(s) for s in verified.signatures[1:]]
    if not primary.chain_checked:
        notes.append("chain not checked (no --ca given)")
    return FileResult(
        path, "verified", reason="; ".join(notes) or None, signer=primary.signer,
        digest=primary.digest, timestamp=primary.timestamp,
    )
