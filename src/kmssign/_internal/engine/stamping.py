"""Timestamping one signed file later (``kmssign timestamp``): every signature without a
timestamp gets one, nested ones included; everything else keeps its bytes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kmssign._internal.authenticode.build import add_timestamp, replace_nested
from kmssign._internal.authenticode.verify import check_intact, read_signatures
from kmssign._internal.cms.structures import encoded
from kmssign._internal.engine.atomic import atomic_output, check_running
from kmssign._internal.engine.formats import open_signable
from kmssign._internal.engine.locking import lock_target
from kmssign._internal.engine.report import FileResult
from kmssign._internal.pki.certs import subject_of
from kmssign.errors import KmsSignError, VerificationError
from kmssign.signers import Timestamper

if TYPE_CHECKING:
    from kmssign._internal.authenticode.parse import ParsedSignature


def timestamp_file(path: Path, timestamper: Timestamper) -> FileResult:
    """Add an RFC 3161 timestamp to every signature that has none, nested ones included,
    leaving the signatures otherwise intact. Only intact signatures are stamped: no token
    is bought for a signature the file no longer matches. Another kmssign run working on
    the file is waited for."""
    try:
        lock = lock_target(path, check=check_running)
    except Exception as exc:  # anything: one file never ends a batch
        return FileResult(path, "failed").fail(exc)
    try:
        result = _timestamp_locked(path, timestamper)
    finally:
        lock.release()
    if result.status == "timestamped":
        result.output = path
    return result


def _timestamp_locked(path: Path, timestamper: Timestamper) -> FileResult:
    result = FileResult(path, "failed")
    try:
        with open(path, "rb") as f:
            signable = open_signable(f)
            result.format = signable.format
            if not signable.signed:
                raise VerificationError("not signed")
            signatures = read_signatures(signable)
            primary = signatures[0]
            unstamped = [s for s in signatures if not s.timestamped]
            # the signer(s) this run stamps, not whoever signed first
            named = unstamped or [primary]
            result.signer = ", ".join(dict.fromkeys(subject_of(s.signer_cert) for s in named))
            result.digest = named[0].digest
            if not unstamped:
                result.status = "skipped"
                result.reason = "already timestamped"
                return result
            with atomic_output(path.resolve() if path.is_symlink() else path) as out:
                file_digest, state = signable.begin_copy(primary.digest, out, nesting=True)
                known = signable.known_digest(primary.digest, file_digest, nesting=True)
                try:
                    check_intact(signable, signatures, known)
                except KmsSignError as exc:
                    raise VerificationError(f"{exc}; re-sign it instead") from exc
                content_info = _stamped(primary, timestamper, result)
                if any(not n.timestamped for n in primary.nested):
                    content_info = replace_nested(
                        content_info, [_stamped(n, timestamper, result) for n in primary.nested]
                    )
                signable.finish_copy(out, state, content_info)
        result.status = "timestamped"
    except Exception as exc:  # anything: one file never ends a batch
        result.fail(exc)
    return result


def _stamped(parsed: ParsedSignature, timestamper: Timestamper, result: FileResult) -> bytes:
    """``parsed``'s signature (DER) with a timestamp: as it is if it has one, else a new one."""
    if parsed.timestamped:
        return parsed.der
    # A SHA-1 signature (another tool's, dual-signed) gets a SHA-256 imprint, as
    # `signtool timestamp /td sha256` gives it: the imprint need not match the signature.
    digest = "sha256" if parsed.digest == "sha1" else parsed.digest
    token, info = timestamper.stamp(parsed.signature, digest)
    if result.timestamp is None:
        result.timestamp = info.gen_time
    return add_timestamp(parsed.der, encoded(token))
