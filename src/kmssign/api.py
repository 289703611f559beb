"""The library API every front end calls: sign, timestamp and verify many files.

Front ends turn their world into paths and a :class:`Settings`; everything else
(discovery, skip-signed, concurrency, atomic writes, the report) happens here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kmssign.authenticode.build import add_timestamp, replace_nested
from kmssign.authenticode.tlv import encoded
from kmssign.authenticode.verify import (
    VerifiedSignature,
    intact_signatures,
    read_signatures,
    verify_file,
)
from kmssign.config import Settings
from kmssign.engine.atomic import atomic_output
from kmssign.engine.discovery import discover
from kmssign.engine.pipeline import Pipeline, run_simple
from kmssign.engine.report import FileResult, Report, Status
from kmssign.engine.signing import (
    Log,
    Prepared,
    SigningSession,
    already_signed,
    complete_file,
    create_signer,
    known_digest,
    nolog,
    open_session,
    prepare_file,
    sign_file,
)
from kmssign.errors import (
    ConfigError,
    KmsSignError,
    VerificationError,
    plain_reason,
    redact,
)
from kmssign.pe.image import parse_pe
from kmssign.pe.signedcopy import begin_signed_copy, finish_signed_copy
from kmssign.pki.certs import certificate_notes, load_roots, subject_of
from kmssign.signers import Signer

if TYPE_CHECKING:  # imported by the runs that timestamp (it brings the HTTP stack)
    from kmssign.authenticode.parse import ParsedSignature
    from kmssign.timestamp.client import TimestampClient

__all__ = [
    "FileResult",
    "Report",
    "SigningSession",
    "Status",
    "create_signer",
    "open_session",
    "sign_file",
    "sign_files",
    "timestamp_file",
    "timestamp_files",
    "verify_files",
]

OnResult = Callable[[FileResult], None]
OnStart = Callable[[int], None]


def _discovered(
    paths: Iterable[Path | str],
    include: Sequence[str],
    exclude: Sequence[str],
    report: Report,
    on_result: OnResult | None,
    on_start: OnStart | None,
) -> list[Path]:
    found = discover([Path(p) for p in paths], include, exclude)
    for path in found.missing:
        report.results.append(FileResult(path, "failed", reason="no such file or directory"))
    for path in found.not_pe:
        report.results.append(FileResult(path, "failed", reason="not a PE file (no MZ/PE header)"))
    if on_start:
        on_start(len(found.files) + len(report.results))
    if on_result:
        for r in report.results:
            on_result(r)
    return list(found.files)


def sign_files(
    paths: Iterable[Path | str],
    settings: Settings,
    *,
    signer: Signer | None = None,
    timestamper: TimestampClient | None = None,
    append: bool = False,
    output: Path | None = None,
    dry_run: bool = False,
    record_hashes: bool = False,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
    log: Log = nolog,
) -> Report:
    """Sign every PE file among ``paths`` (directories are searched by content).

    Raises KmsSignError subclasses for run-level problems (settings, key, certificate)
    before any file is touched; per-file problems are ``failed`` results in the report.
    At most ``settings.jobs`` KMS/timestamp requests are in flight at once.
    """
    report = Report()
    files = _discovered(
        paths, settings.include, settings.exclude, report, on_result, on_start
    )
    if output is not None and len(files) + len(report.results) != 1:
        raise ConfigError("--output needs exactly one input file")
    with certificate_notes(log):  # cryptography's warnings as notes, for the whole run
        if dry_run:
            report.results.extend(run_simple(
                files, lambda p: _plan(p, settings, append), jobs=1, on_result=on_result
            ))
            return report
        session = open_session(settings, signer=signer, timestamper=timestamper, log=log)

        def prepare(index: int) -> Prepared | FileResult:
            return prepare_file(
                files[index], session, append=append, skip_signed=settings.skip_signed,
                output=output, record_hashes=record_hashes,
            )

        pipeline: Pipeline[Prepared] = Pipeline(
            prepare, lambda p: complete_file(p, session), jobs=settings.jobs, on_result=on_result
        )
        report.results.extend(pipeline.run(len(files)))
    return report


def _plan(path: Path, settings: Settings, append: bool) -> FileResult:
    """What signing would do with ``path``, decided as signing decides it."""
    if settings.skip_signed and not append:
        return already_signed(path) or FileResult(path, "would-sign")
    try:
        with open(path, "rb") as f:
            parse_pe(f)
    except (KmsSignError, OSError) as exc:
        return FileResult(path, "failed").fail(exc)
    return FileResult(path, "would-sign")


def timestamp_file(path: Path, timestamper: TimestampClient) -> FileResult:
    """Add an RFC 3161 timestamp to every signature that has none, nested ones included,
    leaving the signatures otherwise intact. Only intact signatures are stamped: no token
    is bought for a signature the file no longer matches."""
    result = FileResult(path, "failed")
    try:
        with open(path, "rb") as f:
            image = parse_pe(f)
            if not image.has_certificate_table:
                raise VerificationError("not signed")
            signatures = read_signatures(f, image)
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
                file_digest, state = begin_signed_copy(f, image, primary.digest, out)
                try:
                    intact_signatures(f, image, known_digest(image, primary.digest, file_digest))
                except KmsSignError as exc:
                    raise VerificationError(f"{exc}; re-sign it instead") from exc
                content_info = _stamped(primary, timestamper, result)
                if any(not n.timestamped for n in primary.nested):
                    content_info = replace_nested(
                        content_info, [_stamped(n, timestamper, result) for n in primary.nested]
                    )
                finish_signed_copy(out, state, content_info)
        result.status = "timestamped"
    except (KmsSignError, OSError) as exc:
        result.fail(exc)
    except Exception as exc:  # one file never ends a batch
        result.reason = _unexpected(exc)
    return result


def _unexpected(exc: Exception) -> str:
    return redact(
        f"unexpected error ({type(exc).__name__}: {plain_reason(exc)}); please report it "
        "to kmssign's issue tracker"
    )


def _stamped(parsed: ParsedSignature, timestamper: TimestampClient, result: FileResult) -> bytes:
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


def timestamp_files(
    paths: Iterable[Path | str],
    settings: Settings,
    *,
    timestamper: TimestampClient | None = None,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
    log: Log = nolog,
) -> Report:
    """Timestamp every signed PE file among ``paths`` whose signature has no timestamp."""
    report = Report()
    files = _discovered(paths, settings.include, settings.exclude, report, on_result, on_start)
    if timestamper is None:
        from kmssign.timestamp.client import TimestampClient

        timestamper = TimestampClient(
            settings.timestamp_urls, timeout=settings.timestamp_timeout, log=log
        )
    client = timestamper
    with certificate_notes(log):
        report.results.extend(
            run_simple(files, lambda p: timestamp_file(p, client), jobs=settings.jobs,
                       on_result=on_result)
        )
    return report


def _nested_note(signature: VerifiedSignature) -> str:
    when = signature.timestamp
    stamp = f"timestamp {when:%Y-%m-%dT%H:%M:%SZ}" if when is not None else "no timestamp"
    return f"nested signature: {signature.signer}, {signature.digest}, {stamp}"


def verify_files(
    paths: Iterable[Path | str],
    *,
    roots: Sequence[Path] = (),
    tsa_roots: Sequence[Path] = (),
    require_timestamp: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    jobs: int = 4,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
    log: Log = nolog,
) -> Report:
    """Verify every PE file among ``paths``; unsigned files fail."""
    root_certs = load_roots(roots)
    tsa_certs = load_roots(tsa_roots)
    report = Report()
    files = _discovered(paths, include, exclude, report, on_result, on_start)

    def work(path: Path) -> FileResult:
        try:
            verified = verify_file(
                path, roots=root_certs, tsa_roots=tsa_certs, require_timestamp=require_timestamp
            )
        except KmsSignError as exc:
            return FileResult(path, "failed", reason=str(exc))
        except Exception as exc:  # one file never ends a batch
            return FileResult(path, "failed", reason=_unexpected(exc))
        primary = verified.primary
        notes = [_nested_note(s) for s in verified.signatures[1:]]
        if not primary.chain_checked:
            notes.append("chain not checked (no --ca given)")
        return FileResult(
            path, "verified", reason="; ".join(notes) or None, signer=primary.signer,
            digest=primary.digest, timestamp=primary.timestamp,
        )

    with certificate_notes(log):
        report.results.extend(run_simple(files, work, jobs=jobs, on_result=on_result))
    return report
