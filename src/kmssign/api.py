"""The library API every front end calls: sign, timestamp and verify many files.

Front ends turn their world into paths and a :class:`Settings`; everything else
(discovery, skip-signed, concurrency, atomic writes, the report) happens here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from asn1crypto import cms

from kmssign import authenticode, pe
from kmssign.certs import (
    SigningCertificates,
    leaf_warnings,
    load_roots,
    select_signing_certificates,
)
from kmssign.certs import subject_of
from kmssign.config import Settings
from kmssign.discovery import discover
from kmssign.errors import ConfigError, KmsSignError, TimestampError, VerificationError
from kmssign.fileio import atomic_output
from kmssign.signers import DIGESTS, DigestName, Signer
from kmssign.timestamp import TimestampClient
from kmssign.verify import read_signatures, verify_file

Status = Literal["signed", "skipped", "failed", "verified", "timestamped", "would-sign"]
Log = Callable[[str], None]
OnResult = Callable[["FileResult"], None]
OnStart = Callable[[int], None]


@dataclass
class FileResult:
    path: Path
    status: Status
    reason: str | None = None
    signer: str | None = None
    digest: str | None = None
    timestamp: dt.datetime | None = None
    sha256_before: str | None = None
    sha256_after: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Report:
    results: list[FileResult] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        order: tuple[Status, ...] = (
            "signed",
            "timestamped",
            "verified",
            "would-sign",
            "skipped",
            "failed",
        )
        parts = [f"{self.count(s)} {s}" for s in order if self.count(s) or s == "failed"]
        return ", ".join(parts)


def _nolog(_message: str) -> None:
    pass


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class SigningSession:
    """Everything resolved once per run: key, certificates, digest, timestamp client."""

    signer: Signer
    certificates: SigningCertificates
    digest: DigestName
    timestamper: TimestampClient | None
    timestamp_policy: str
    description: str | None
    url: str | None

    @property
    def signer_subject(self) -> str:
        return subject_of(self.certificates.leaf)


def create_signer(settings: Settings) -> Signer:
    """The signer the settings name: a KMS key (key-id) or a key file (key-file)."""
    if settings.key_id:
        from kmssign.signers.aws_kms import KmsSigner

        return KmsSigner.create(
            settings.key_id,
            region=settings.region,
            profile=settings.profile,
            endpoint_url=settings.endpoint_url,
        )
    if settings.key_file:
        from kmssign.signers.local import KeyFileSigner

        return KeyFileSigner.from_file(settings.key_file)
    raise ConfigError("no signing key: set key-id (an AWS KMS key) or key-file")


def open_session(
    settings: Settings,
    *,
    signer: Signer | None = None,
    timestamper: TimestampClient | None = None,
    log: Log = _nolog,
) -> SigningSession:
    """Resolve the key and certificates once; fail before any file is touched."""
    problems = []
    if not settings.key_id and not settings.key_file and signer is None:
        problems.append("no signing key: set key-id (an AWS KMS key) or key-file")
    if settings.certificate is None:
        problems.append("no certificate: set certificate (PEM, DER or .p7b)")
    if settings.digest not in DIGESTS:
        problems.append(f"digest must be one of {', '.join(DIGESTS)}")
    if problems:
        raise ConfigError(problems)
    assert settings.certificate is not None
    signer = signer or create_signer(settings)
    certificates = select_signing_certificates(
        settings.certificate, settings.chain, signer.public_key_der(), signer.name
    )
    for warning in leaf_warnings(certificates.leaf):
        log(f"warning: {warning}")
    requested: DigestName = settings.digest  # type: ignore[assignment]
    digest = signer.digest_for(requested)
    if digest != requested:
        log(f"note: {signer.name} is an EC key bound to {digest}; using {digest}, not {requested}")
    if timestamper is None and settings.timestamp != "off":
        timestamper = TimestampClient(settings.timestamp_urls, log=log)
    return SigningSession(
        signer=signer,
        certificates=certificates,
        digest=digest,
        timestamper=timestamper if settings.timestamp != "off" else None,
        timestamp_policy=settings.timestamp,
        description=settings.description,
        url=settings.url,
    )


def _first_signature(f: pe.BinaryIO, image: pe.PEImage) -> cms.ContentInfo:
    return read_signatures(f, image)[0].content_info


def _timestamp(
    session: SigningSession, content_info: cms.ContentInfo, result: FileResult, log: Log
) -> cms.ContentInfo:
    if session.timestamper is None:
        return content_info
    try:
        token = session.timestamper.timestamp(
            authenticode.signature_value(content_info), session.digest
        )
    except TimestampError as exc:
        if session.timestamp_policy == "required":
            raise
        message = f"{result.path}: signed without a timestamp ({exc})"
        result.warnings.append(message)
        log(f"warning: {message}")
        return content_info
    from kmssign.tsp import check_token

    token_der = token.dump()
    signature = authenticode.signature_value(content_info)
    result.timestamp = check_token(cms.ContentInfo.load(token_der), signature).gen_time
    return authenticode.add_timestamp(content_info, cms.ContentInfo.load(token_der))


def sign_file(
    path: Path,
    session: SigningSession,
    *,
    append: bool = False,
    skip_signed: bool = True,
    output: Path | None = None,
    record_hashes: bool = False,
    log: Log = _nolog,
) -> FileResult:
    """Sign one file (atomically); never raises for problems with this file."""
    result = FileResult(path, "failed")
    try:
        if record_hashes:
            result.sha256_before = _file_sha256(path)
        with open(path, "rb") as f:
            image = pe.parse_pe(f)
            existing = None
            if image.has_certificate_table:
                if append:
                    existing = _first_signature(f, image)
                elif skip_signed:
                    result.status = "skipped"
                    result.reason = "already signed"
                    return result
            target = output or path
            with atomic_output(target, mode_from=path) as out:
                file_digest, state = pe.begin_signed_copy(f, image, session.digest, out)
                content_info = authenticode.build_signed_data(
                    file_digest=file_digest,
                    digest=session.digest,
                    signer=session.signer,
                    leaf=session.certificates.leaf,
                    chain=session.certificates.chain,
                    description=session.description,
                    url=session.url,
                )
                content_info = _timestamp(session, content_info, result, log)
                if existing is not None:
                    content_info = authenticode.add_nested(existing, content_info)
                pe.finish_signed_copy(out, state, content_info.dump())
        result.status = "signed"
        result.signer = session.signer_subject
        result.digest = session.digest
        if record_hashes:
            result.sha256_after = _file_sha256(output or path)
    except KmsSignError as exc:
        result.reason = str(exc)
    except OSError as exc:
        result.reason = f"{exc.strerror or exc}"
    return result


def _run(
    paths: Sequence[Path],
    work: Callable[[Path], FileResult],
    jobs: int,
    on_result: OnResult | None,
) -> list[FileResult]:
    results: list[FileResult] = []
    if jobs <= 1 or len(paths) <= 1:
        for path in paths:
            results.append(work(path))
            if on_result:
                on_result(results[-1])
        return results
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="kmssign") as pool:
        futures = {pool.submit(work, path): path for path in paths}
        for future in as_completed(futures):
            results.append(future.result())
            if on_result:
                on_result(results[-1])
    order = {p: i for i, p in enumerate(paths)}
    results.sort(key=lambda r: order.get(r.path, len(order)))
    return results


def _discovered(
    paths: Iterable[Path | str],
    settings: Settings,
    report: Report,
    on_result: OnResult | None,
    on_start: OnStart | None = None,
) -> list[Path]:
    found = discover([Path(p) for p in paths], settings.include, settings.exclude)
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
    log: Log = _nolog,
) -> Report:
    """Sign every PE file among ``paths`` (directories are searched by content).

    Raises KmsSignError subclasses for run-level problems (settings, key, certificate)
    before any file is touched; per-file problems are ``failed`` results in the report.
    """
    report = Report()
    files = _discovered(paths, settings, report, on_result, on_start)
    if output is not None and len(files) + len(report.results) != 1:
        raise ConfigError("--output needs exactly one input file")
    if dry_run:
        report.results.extend(_run(files, lambda p: _plan(p, settings, append), 1, on_result))
        return report
    session = open_session(settings, signer=signer, timestamper=timestamper, log=log)

    def work(path: Path) -> FileResult:
        return sign_file(
            path,
            session,
            append=append,
            skip_signed=settings.skip_signed,
            output=output,
            record_hashes=record_hashes,
            log=log,
        )

    report.results.extend(_run(files, work, settings.jobs, on_result))
    return report


def _plan(path: Path, settings: Settings, append: bool) -> FileResult:
    try:
        with open(path, "rb") as f:
            image = pe.parse_pe(f)
    except (KmsSignError, OSError) as exc:
        return FileResult(path, "failed", reason=str(exc))
    if image.has_certificate_table and settings.skip_signed and not append:
        return FileResult(path, "skipped", reason="already signed")
    return FileResult(path, "would-sign")


def timestamp_file(path: Path, timestamper: TimestampClient, log: Log = _nolog) -> FileResult:
    """Add an RFC 3161 timestamp to a signature that has none, leaving it otherwise intact."""
    result = FileResult(path, "failed")
    try:
        with open(path, "rb") as f:
            image = pe.parse_pe(f)
            if not image.has_certificate_table:
                raise VerificationError("not signed")
            parsed = read_signatures(f, image)[0]
            result.signer = subject_of(parsed.signer_cert)
            result.digest = parsed.digest
            if parsed.timestamp_token is not None:
                result.status = "skipped"
                result.reason = "already timestamped"
                return result
            with atomic_output(path) as out:
                file_digest, state = pe.begin_signed_copy(f, image, parsed.digest, out)
                if file_digest != parsed.file_digest:
                    raise VerificationError("the signature does not match the file; re-sign it")
                token = timestamper.timestamp(parsed.signature, parsed.digest)
                from kmssign.tsp import check_token

                token_der = token.dump()
                result.timestamp = check_token(token, parsed.signature).gen_time
                content_info = authenticode.add_timestamp(
                    parsed.content_info, cms.ContentInfo.load(token_der)
                )
                pe.finish_signed_copy(out, state, content_info.dump())
        result.status = "timestamped"
    except KmsSignError as exc:
        result.reason = str(exc)
    except OSError as exc:
        result.reason = f"{exc.strerror or exc}"
    return result


def timestamp_files(
    paths: Iterable[Path | str],
    settings: Settings,
    *,
    timestamper: TimestampClient | None = None,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
    log: Log = _nolog,
) -> Report:
    report = Report()
    files = _discovered(paths, settings, report, on_result, on_start)
    client = timestamper or TimestampClient(settings.timestamp_urls, log=log)
    report.results.extend(
        _run(files, lambda p: timestamp_file(p, client, log), settings.jobs, on_result)
    )
    return report


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
) -> Report:
    """Verify every PE file among ``paths``; unsigned files fail."""
    root_certs = load_roots(roots)
    tsa_certs = load_roots(tsa_roots)
    report = Report()
    files = _discovered(
        paths, Settings(include=tuple(include), exclude=tuple(exclude)), report, on_result, on_start
    )

    def work(path: Path) -> FileResult:
        try:
            verified = verify_file(
                path, roots=root_certs, tsa_roots=tsa_certs, require_timestamp=require_timestamp
            )
        except KmsSignError as exc:
            return FileResult(path, "failed", reason=str(exc))
        primary = verified.primary
        reason = None if primary.chain_checked else "chain not checked (no --ca given)"
        return FileResult(
            path,
            "verified",
            reason=reason,
            signer=primary.signer,
            digest=primary.digest,
            timestamp=primary.timestamp,
        )

    report.results.extend(_run(files, work, jobs, on_result))
    return report
