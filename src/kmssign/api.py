"""The library API every front end calls: sign, timestamp and verify many files.

Front ends turn their world into paths and a :class:`Settings`; everything else
(discovery, skip-signed, concurrency, atomic writes, the report) happens here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmssign._deprecated import settings_from_keywords
from kmssign._internal.engine.atomic import (
    abort_all,
    atomic_output,
)
from kmssign._internal.engine.batch import OnResult, OnStart, discovered, unusable
from kmssign._internal.engine.discovery import discover, find_wheels, is_wheel_name, selected
from kmssign._internal.engine.pipeline import Pipeline, run_simple
from kmssign._internal.engine.report import FileResult, Outcome, Report, Status
from kmssign._internal.engine.session import (
    Log,
    create_signer,
    nolog,
    open_session,
    signer_for,
)
from kmssign._internal.engine.signing import (
    Prepared,
    already_signed,
    complete_file,
    file_sha256,
    plan_file,
    prepare_file,
)
from kmssign._internal.pe.image import looks_like_pe
from kmssign._internal.pki.certs import certificate_notes
from kmssign.config import Settings
from kmssign.errors import ConfigError
from kmssign.signers import Signer, Timestamper

if TYPE_CHECKING:
    from kmssign._internal.pki.csr import build_csr, parse_subject, public_key_pem

# The library API (docs/explanation/library.md lists the same names; a test holds them
# to it): the batch functions, the result types, and helpers the front ends share.
__all__ = [
    "FileResult",
    "Outcome",
    "Report",
    "Status",
    "abort_all",
    "already_signed",
    "atomic_output",
    "attach_signatures",
    "build_csr",
    "create_signer",
    "digest_files",
    "discover",
    "file_sha256",
    "looks_like_pe",
    "parse_subject",
    "public_key_pem",
    "selected",
    "sign_digests",
    "sign_files",
    "sign_wheels",
    "timestamp_files",
    "verify_files",
    "verify_wheels",
]

# The certificate-request helpers are imported when first used (``__getattr__``): a run
# that signs files never needs them, nor asn1crypto's csr module.
_CSR_HELPERS = ("build_csr", "parse_subject", "public_key_pem")


def __getattr__(name: str) -> Any:
    if name not in _CSR_HELPERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from kmssign._internal.pki import csr

    value = getattr(csr, name)
    globals()[name] = value
    return value


def sign_files(
    paths: Iterable[Path | str],
    settings: Settings,
    *,
    signer: Signer | None = None,
    timestamper: Timestamper | None = None,
    append: bool = False,
    output: Path | None = None,
    dry_run: bool = False,
    record_hashes: bool = False,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
    log: Log = nolog,
) -> Report:
    """Sign every PE file and MSI package among ``paths`` (directories are searched by
    content); each result names the file's ``format``.

    Raises KmsSignError subclasses for run-level problems (settings, key, certificate)
    before any file is touched; per-file problems are ``failed`` results in the report.
    At most ``settings.jobs`` KMS requests are in flight at once, and as many timestamp
    requests.
    """
    report = Report()
    files = discovered(
        paths, settings.include, settings.exclude, report, on_result, on_start,
        log=log, clean=not dry_run,
    )
    if output is not None and len(files) + len(report.results) != 1:
        raise ConfigError("output needs exactly one input file")
    with certificate_notes(log):  # cryptography's warnings as notes, for the whole run
        if dry_run:
            report.results.extend(run_simple(
                files, lambda p: plan_file(p, settings.skip_signed, append), jobs=1,
                on_result=on_result,
            ))
            return report
        if not files:  # no key, certificate or KMS call for nothing
            return report
        session = open_session(settings, signer=signer, timestamper=timestamper, log=log)

        def prepare(index: int) -> Prepared | FileResult:
            return prepare_file(
                files[index], session, append=append, skip_signed=settings.skip_signed,
                output=output, record_hashes=record_hashes,
            )

        pipeline: Pipeline[Prepared] = Pipeline(
            prepare, lambda p: complete_file(p, session), jobs=session.slots.workers,
            on_result=on_result,
        )
        try:
            report.results.extend(pipeline.run(len(files)))
        finally:
            session.close()
    return report


def digest_files(
    paths: Iterable[Path | str],
    settings: Settings,
    *,
    output: Path,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
    log: Log = nolog,
) -> Report:
    """Two-step signing, step one: write to ``output`` (atomically) what signing each file
    among ``paths`` needs signed. Needs the certificate, not the key. When a file fails,
    ``output`` is not written."""
    from kmssign._internal.engine.twosteprun import digest_run

    report = Report()
    given = [Path(p) for p in paths]
    wheels = [p for p in given if is_wheel_name(p) and os.path.isfile(p)]  # named ones
    files = discovered([p for p in given if p not in wheels], settings.include,
                       settings.exclude, report, on_result,
                       (lambda n: on_start(n + len(wheels))) if on_start else None, log=log)
    with certificate_notes(log):
        requests, results = digest_run(files, settings, wheels=wheels, on_result=on_result)
    report.results.extend(results)
    if report.ok:  # a file that failed would be missing from the requests: none are written
        with atomic_output(Path(output)) as out:
            out.write(requests.dumps().encode())
    return report


def sign_digests(
    requests_file: Path, settings: Settings, *, output: Path, signer: Signer | None = None,
    log: Log = nolog,
) -> int:
    """Two-step signing, step two: sign every request with the settings' signer (or
    ``signer``) and write the signatures to ``output``; returns how many."""
    from kmssign._internal.engine.twostep import dump_signatures, load_requests
    from kmssign._internal.engine.twosteprun import sign_run

    requests = load_requests(Path(requests_file))
    with signer_for(settings, signer, log) as using:
        signatures = sign_run(requests, using, jobs=settings.jobs)
    with atomic_output(Path(output)) as out:
        out.write(dump_signatures(requests, signatures).encode())
    return len(requests.requests)


def attach_signatures(
    requests_file: Path,
    signatures_file: Path,
    settings: Settings,
    *,
    timestamper: Timestamper | None = None,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
    log: Log = nolog,
) -> Report:
    """Two-step signing, step three: check every file and signature (raising before any
    file is written), then embed and timestamp each signature, each file atomically."""
    from kmssign._internal.engine.twostep import (
        check_attachable,
        load_requests,
        load_signatures,
    )
    from kmssign._internal.engine.twosteprun import attach_session
    from kmssign._internal.engine.twostepwheels import attach_wheels

    requests = load_requests(Path(requests_file))
    signatures = load_signatures(Path(signatures_file))
    check_attachable(requests, signatures)
    session = attach_session(requests, signatures, settings, timestamper, log)
    files = [r.path for r in requests.requests if r.member is None]
    if on_start:
        on_start(len(requests.requests))

    def prepare(index: int) -> Prepared | FileResult:
        return prepare_file(files[index], session, skip_signed=False)

    pipeline: Pipeline[Prepared] = Pipeline(
        prepare, lambda p: complete_file(p, session), jobs=session.slots.workers,
        on_result=on_result,
    )
    with certificate_notes(log):
        report = Report(pipeline.run(len(files)))
        report.results.extend(attach_wheels(requests, settings, session, on_result))
    return report


def timestamp_files(
    paths: Iterable[Path | str],
    settings: Settings,
    *,
    timestamper: Timestamper | None = None,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
    log: Log = nolog,
) -> Report:
    """Timestamp every signed PE file and MSI package among ``paths`` whose signature has
    no timestamp."""
    from kmssign._internal.engine.stamping import timestamp_file  # the verifier with it

    report = Report()
    files = discovered(
        paths, settings.include, settings.exclude, report, on_result, on_start, log=log
    )
    if timestamper is None:
        from kmssign._internal.timestamp.client import TimestampClient

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


def verify_files(
    paths: Iterable[Path | str],
    settings: Settings | None = None,
    *,
    roots: Sequence[Path] | None = None,
    tsa_roots: Sequence[Path] = (),
    require_timestamp: bool = False,
    require_signed: bool = True,
    allow_unsigned: bool = False,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
    log: Log = nolog,
    **old: object,
) -> Report:
    """Verify every PE file and MSI package among ``paths``; unsigned files fail
    (``allow_unsigned``, or ``require_signed=False`` of earlier versions: reported
    ``unsigned``, not failed). Wheels (``*.whl`` given, or below a directory given) are
    verified as :func:`verify_wheels` does. Changes no file: temporary files that kmssign
    runs left are only noted. ``settings`` gives ``include``, ``exclude`` and ``jobs``, as
    for :func:`sign_files`.

    Trust: ``roots`` None (the default) checks signer and TSA chains against Microsoft's
    trusted root program, as Windows does; root certificate files replace it (and
    ``tsa_roots`` replaces them for timestamps); an empty sequence checks no chain."""
    from kmssign._internal.engine.verifying import trust_anchors, verify_one

    allow_unsigned = allow_unsigned or not require_signed
    settings = settings_from_keywords(settings, old, "verify_files")
    include, exclude, jobs = settings.include, settings.exclude, settings.jobs
    root_certs, tsa_certs = trust_anchors(roots, tsa_roots)
    given = [Path(p) for p in paths]
    named_wheels = [p for p in given if is_wheel_name(p) and os.path.isfile(p)]
    loose = [p for p in given if p not in named_wheels]
    # what cannot be used below a directory is reported by the loose files' discovery
    wheels, _ = find_wheels([*named_wheels, *(p for p in loose if os.path.isdir(p))])
    report = Report()
    files = discovered(
        loose, include, exclude, report, on_result,
        (lambda n: on_start(n + len(wheels))) if on_start else None, log=log, clean=False,
    )

    def work(path: Path) -> FileResult:
        return verify_one(path, root_certs, tsa_certs, require_timestamp=require_timestamp,
                          allow_unsigned=allow_unsigned)

    with certificate_notes(log):
        report.results.extend(run_simple(files, work, jobs=jobs, on_result=on_result))
    if wheels:
        report.results.extend(verify_wheels(
            wheels, settings, roots=roots, tsa_roots=tsa_roots,
            require_timestamp=require_timestamp, allow_unsigned=allow_unsigned,
            on_result=on_result, log=log,
        ).results)
    return report


def sign_wheels(
    paths: Iterable[Path | str],
    settings: Settings,
    *,
    dest_dir: Path | None = None,
    signer: Signer | None = None,
    timestamper: Timestamper | None = None,
    dry_run: bool = False,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
    log: Log = nolog,
) -> Report:
    """Sign every PE member of the wheels among ``paths`` (directories: the ``*.whl``
    files below them) and rewrite each wheel once, atomically: in place, or into
    ``dest_dir`` (a wheel with nothing to sign is copied there unchanged).

    Members are found by content; ``settings.include``/``exclude`` match their paths in
    the wheel. Run-level problems raise KmsSignError subclasses before any wheel is read;
    a broken wheel (zip, names, RECORD, a signature over RECORD) or a failed member is a
    ``failed`` result and leaves that wheel byte-identical, with nothing in ``dest_dir``.
    """
    from kmssign._internal.engine import wheelsign  # the wheel and zip stack: wheels only

    wheels, problems = find_wheels([Path(p) for p in paths])
    if not dry_run:  # a wheel that cannot be written costs no KMS or timestamp call
        wheels, problems = wheelsign.writable(wheels, problems, dest_dir)
    session = None
    if wheels and not dry_run:  # no key, certificate or KMS call for nothing
        session = open_session(settings, signer=signer, timestamper=timestamper, log=log)
    report = unusable(problems, on_result)
    try:
        report.results.extend(wheelsign.sign_wheels(
            wheels, settings, session, dest_dir=Path(dest_dir) if dest_dir else None,
            on_start=(lambda n: on_start(n + len(problems))) if on_start else None,
            on_result=on_result,
        ))
    finally:
        if session is not None:
            session.close()
    return report


def verify_wheels(
    paths: Iterable[Path | str],
    settings: Settings | None = None,
    *,
    roots: Sequence[Path] | None = None,
    tsa_roots: Sequence[Path] = (),
    require_timestamp: bool = False,
    require_signed: bool = True,
    allow_unsigned: bool = False,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
    log: Log = nolog,
    **old: object,
) -> Report:
    """Verify wheels: RECORD against every member's bytes, and each PE member as
    :func:`verify_files` verifies a loose file (results named ``wheel!member``). An
    unsigned member fails as an unsigned loose file does; with ``allow_unsigned`` it is
    reported ``unsigned`` without failing (``require_signed=False``, of earlier
    versions, means the same). ``roots`` and ``tsa_roots`` as for :func:`verify_files`."""
    allow_unsigned = allow_unsigned or not require_signed
    from kmssign._internal.engine import wheelverify  # the wheel and zip stack: wheels only
    from kmssign._internal.engine.verifying import trust_anchors

    settings = settings_from_keywords(settings, old, "verify_wheels")

    root_certs, tsa_certs = trust_anchors(roots, tsa_roots)
    wheels, problems = find_wheels([Path(p) for p in paths])
    if on_start:
        on_start(len(wheels) + len(problems))
    report = unusable(problems, on_result)
    with certificate_notes(log):
        report.results.extend(wheelverify.verify_wheels(
            wheels, roots=root_certs, tsa_roots=tsa_certs, require_timestamp=require_timestamp,
            allow_unsigned=allow_unsigned, include=settings.include,
            exclude=settings.exclude, jobs=settings.jobs, on_result=on_result,
        ))
    return report
