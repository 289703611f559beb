"""Signing one file: resolve the key once per run, then prepare and complete each file.

``prepare`` is local work (parse, hash, copy into a temporary file); ``complete`` is the
network part (KMS Sign, then the timestamp) and the final atomic rename. A file is
written only when everything succeeded; otherwise it stays byte-for-byte as it was.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO, NamedTuple

from kmssign._internal.authenticode.build import (
    add_nested,
    add_timestamp,
    build_signed_data,
    signature_value,
)
from kmssign._internal.cms.structures import encoded
from kmssign._internal.engine.atomic import AtomicFile, check_running
from kmssign._internal.engine.formats import Signable, format_named, open_signable
from kmssign._internal.engine.locking import TargetLock, lock_target
from kmssign._internal.engine.report import FileResult, Outcome, same_kind
from kmssign._internal.engine.session import SigningSession
from kmssign.errors import (
    KmsSignError,
    TimestampError,
    TimestampUnavailableError,
)


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path``, in hex (read in 1 MiB pieces)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def plan_file(path: Path, skip_signed: bool, append: bool = False) -> FileResult:
    """What signing would do to ``path``, decided as signing decides it, touching nothing:
    ``would-sign``, ``skipped`` (intact signatures), or ``failed`` with the reason."""
    if skip_signed and not append:
        kept = already_signed(path)
        if kept is not None:
            return kept
    result = FileResult(path, "failed")
    try:
        with open(path, "rb") as f:
            result.format = open_signable(f).format
    except Exception as exc:  # anything: one file never ends a batch
        return result.fail(exc)
    result.status = "would-sign"
    return result


class Prepared(NamedTuple):
    """A file hashed and copied (without its old signature) into a temporary file.

    ``source`` stays open until the signed file is written: a format whose signature
    lives inside the file (an MSI package's stream) copies the rest of it then."""

    result: FileResult
    output: AtomicFile
    source: BinaryIO
    signable: Signable
    state: object
    file_digest: bytes
    existing: bytes | None  # the primary signature to nest under (--append), as found
    record_hashes: bool
    lock: TargetLock | None = None  # held until the signed file is in place

    def close(self) -> None:
        self.source.close()
        if self.lock is not None:
            self.lock.release()


ALREADY_SIGNED = "already signed"


def _kept_as_signed(signable: Signable, result: FileResult) -> FileResult | None:
    """The skip-signed decision on an open file: None to sign it (no signature),
    ``result`` marked skipped when every signature in it matches the file and verifies
    against its own signed attributes; otherwise raise, naming the problem and the way
    out."""
    if not signable.signed:
        return None
    from kmssign._internal.authenticode.verify import intact_signatures  # signed files only
    try:
        intact_signatures(signable)
    except KmsSignError as exc:
        raise same_kind(
            exc, f"its existing signature is broken ({exc}); signing with skip-signed off "
            "replaces it"
        ) from exc
    result.status = "skipped"
    result.code = Outcome.SKIPPED_SIGNED
    result.reason = ALREADY_SIGNED
    return result


def already_signed(path: Path) -> FileResult | None:
    """The skip-signed decision for ``path`` alone (build plugins ask before copying):
    None to sign it, ``skipped`` for a file whose signatures are intact, ``failed`` with
    the reason for a signature that no longer matches or a table holding none."""
    result = FileResult(path, "failed")
    try:
        with open(path, "rb") as f:
            signable = open_signable(f)
            result.format = signable.format
            return _kept_as_signed(signable, result)
    except Exception as exc:  # anything: one file never ends a batch
        return result.fail(exc)


def _nest_target(signable: Signable, digest: str, copy_digest: bytes) -> bytes:
    """The primary signature ``--append`` nests under, once it is found intact."""
    from kmssign._internal.authenticode.verify import intact_signatures
    known = signable.known_digest(digest, copy_digest, nesting=True)
    try:
        return intact_signatures(signable, known)[0].der
    except KmsSignError as exc:
        raise same_kind(
            exc, f"cannot nest under its signature ({exc}); signing without append replaces it"
        ) from exc



def prepare_file(
    path: Path,
    session: SigningSession,
    *,
    append: bool = False,
    skip_signed: bool = True,
    output: Path | None = None,
    record_hashes: bool = False,
) -> Prepared | FileResult:
    """Local work for one file; returns a finished FileResult when there is nothing to sign.

    From before the file is read until :func:`complete_file` has replaced it, no other
    kmssign run works on it: one that does is waited for, and then this run reads what
    it wrote (and, by default, skips it as signed).
    """
    try:
        lock = lock_target(path, check=check_running, log=session.log)
    except Exception as exc:  # anything: one file never ends a batch
        return FileResult(path, "failed").fail(exc)
    try:
        prepared = _prepare_locked(
            path, session, append=append, skip_signed=skip_signed, output=output,
            record_hashes=record_hashes,
        )
    except BaseException:
        lock.release()
        raise
    if isinstance(prepared, Prepared):
        return prepared._replace(lock=lock)
    lock.release()
    return prepared


def _prepare_locked(
    path: Path,
    session: SigningSession,
    *,
    append: bool,
    skip_signed: bool,
    output: Path | None,
    record_hashes: bool,
) -> Prepared | FileResult:
    result = FileResult(path, "failed")
    try:
        if record_hashes:
            result.sha256_before = file_sha256(path)
        f = open(path, "rb")  # noqa: SIM115 (open until complete_file wrote the file)
    except Exception as exc:  # anything: one file never ends a batch
        return result.fail(exc)
    try:
        signable = open_signable(f)
        result.format = signable.format
        existing = None
        # Only an intact signature counts as "signed": a table of garbage, or a
        # signature the file no longer matches, is reported, not kept.
        if skip_signed and not append and _kept_as_signed(signable, result):
            f.close()
            return result
        # Through a symbolic link, sign the file it points to and keep the link.
        target = output or (path.resolve() if path.is_symlink() else path)
        atomic = AtomicFile(target, mode_from=path)
        nesting = append and signable.signed
        try:
            file_digest, state = signable.begin_copy(
                session.digest, atomic.handle, nesting=nesting
            )
            if nesting:
                existing = _nest_target(signable, session.digest, file_digest)
        except BaseException:
            atomic.abort()
            raise
        return Prepared(result, atomic, f, signable, state, file_digest, existing, record_hashes)
    except Exception as exc:  # anything: one file never ends a batch
        f.close()
        return result.fail(exc)
    except BaseException:
        f.close()
        raise


def _timestamp(session: SigningSession, content_info: bytes, result: FileResult) -> bytes:
    if session.timestamper is None:
        return content_info
    signature = signature_value(content_info)
    try:
        token, info = session.timestamper.stamp(signature, session.digest)
    except TimestampError as exc:
        if session.timestamp_policy == "required":
            raise
        message = f"{result.path}: signed without a timestamp ({exc})"
        result.warnings.append(message)
        if not isinstance(exc, TimestampUnavailableError):  # said once, when they failed
            later = "" if session.timestamper.available else (
                "; the remaining files are signed without one too"
            )
            session.log(f"warning: {message}{later}")
        return content_info
    result.timestamp = info.gen_time
    return add_timestamp(content_info, encoded(token))


def complete_file(prepared: Prepared, session: SigningSession) -> FileResult:
    """Network work for one prepared file (sign, self-check, timestamp), then the write."""
    try:
        return _complete_locked(prepared, session)
    finally:
        prepared.close()


def _complete_locked(prepared: Prepared, session: SigningSession) -> FileResult:
    result = prepared.result
    probe = False
    try:
        if session.timestamper is not None and session.timestamp_policy == "required":
            # no KMS Sign without its token: one file at a time until a token came back
            probe = session.first_stamp.enter(check_running, session.timestamper.check_available)
        with session.slots.sign:
            content_info = build_signed_data(
                file_digest=prepared.file_digest,
                digest=session.digest,
                signer=session.signer,
                leaf=session.certificates.leaf, chain=session.certificates.chain,
                description=session.description, url=session.url,
                content_data=format_named(prepared.signable.format).content_data(),
            )
        with session.slots.stamp:
            content_info = _timestamp(session, content_info, result)
        if prepared.existing is not None:
            content_info = add_nested(prepared.existing, content_info)
        prepared.signable.finish_copy(prepared.output.handle, prepared.state, content_info)
        if prepared.record_hashes:  # of the bytes renamed into place, as nobody can change them
            prepared.output.handle.flush()
            result.sha256_after = file_sha256(prepared.output.path)
        prepared.output.commit()
    except Exception as exc:  # anything: one file never ends a batch
        prepared.output.abort()
        return result.fail(exc)
    except BaseException:
        prepared.output.abort()
        raise
    finally:
        session.first_stamp.leave(probe, result.timestamp is not None)
    result.status = "signed"
    result.output = prepared.output.target
    result.signer = session.signer_subject
    result.digest = session.digest
    return result


def sign_file(
    path: Path,
    session: SigningSession,
    *,
    append: bool = False,
    skip_signed: bool = True,
    output: Path | None = None,
    record_hashes: bool = False,
) -> FileResult:
    """Sign one file (atomically); never raises for problems with this file."""
    prepared = prepare_file(
        path, session, append=append, skip_signed=skip_signed, output=output,
        record_hashes=record_hashes,
    )
    if isinstance(prepared, FileResult):
        return prepared
    return complete_file(prepared, session)
