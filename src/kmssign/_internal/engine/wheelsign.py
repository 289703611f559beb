"""Signing the PE members of wheels.

Three steps: every wheel is scanned (zip structure, RECORD against every member's bytes,
PE members extracted to a work directory outside any project), and refused whole before
anything is signed if it is broken; the extracted members of all wheels go through the
loose-file pipeline (``prepare_file``/``complete_file``: one KMS ``Sign`` each, members
signed concurrently) and are compressed again with their old method; then each wheel
whose members all came through is written once, atomically, in place or into
``dest_dir``, with RECORD updated. A wheel with a failed member stays byte-identical and
nothing is written for it.

Compressing a signed member is most of what signing adds to the check, so most of it is
done during the scan: as soon as an unsigned, deflated PE member is extracted, the part
that signing will not change (from after its CheckSum field and certificate table
entry to its end; the table is appended after it) is deflated in pieces of 8 MiB, each
on its own and in parallel, beside the reading of the other members. Once signed, only
the member's head and the new table are deflated, the middle is compared byte for byte
with what was deflated and spliced in (and the whole member deflated again, should it
differ).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kmssign._internal.engine.atomic import AtomicFile, check_writable
from kmssign._internal.engine.discovery import selected
from kmssign._internal.engine.pipeline import Pipeline, local_threads
from kmssign._internal.engine.report import FileResult
from kmssign._internal.engine.session import SigningSession
from kmssign._internal.engine.signing import Prepared, complete_file, plan_file, prepare_file
from kmssign._internal.engine.wheelscan import PEMember, ScannedWheel, scan_wheel
from kmssign._internal.pe.image import parse_pe
from kmssign._internal.wheel.record import encode_digest
from kmssign._internal.wheel.rewrite import Replacement, copy_range, pack_bytes, write_archive
from kmssign._internal.wheel.streams import Middle, deflate_range, pack
from kmssign._internal.wheel.zipdir import DEFLATED
from kmssign.config import Settings
from kmssign.errors import ConfigError, FileAccessError, PEFormatError, WheelFormatError

OnResult = Callable[[FileResult], None]
_PIECE = 8 << 20  # a signed member's kept middle is deflated in pieces of this, in parallel


@dataclass
class _Job:
    """One PE member on its way through the pipeline."""

    wheel: int  # index into the scanned wheels
    pe: PEMember
    middle: list[Future[Middle]]  # its pieces, deflated during the scan
    result: FileResult | None = None
    replacement: Replacement | None = None
    row: tuple[str, int] | None = None  # RECORD's new hash and size


def _refusal(wheel: ScannedWheel, skip_signed: bool) -> str | None:
    """Why signing must leave a wheel alone before anything is signed: a signature over
    RECORD (RECORD.jws, RECORD.p7s) that changing a member would invalidate."""
    if not wheel.signatures:
        return None
    changing = [pe for pe in wheel.pe_members
                if plan_file(pe.extracted, skip_signed).status != "skipped"]
    if not changing:
        return None
    names = " and ".join(s.rsplit("/", 1)[1] for s in wheel.signatures)
    return (f"the wheel carries {names}, a signature over RECORD that signing "
            f"{changing[0].member.name!r} would invalidate; sign the members before "
            "signing the wheel")


def _middle(pe: PEMember) -> tuple[int, int] | None:
    """What signing keeps of an unsigned, deflated PE member: from after its CheckSum
    field and certificate table entry to its end (None for any other member)."""
    if pe.member.method != DEFLATED:
        return None
    try:
        with open(pe.extracted, "rb") as f:
            image = parse_pe(f)
    except PEFormatError:  # signing will say what is wrong with it
        return None
    start = max(image.checksum_offset + 4, image.security_entry_offset + 8)
    if image.has_certificate_table or start >= image.size:
        return None  # a signed member is mostly skipped; re-signing replaces its table
    return start, image.size


def _signed_path(pe: PEMember) -> Path:
    """Where a member is signed to (beside its extracted bytes, which stay as read)."""
    return pe.extracted.with_name(pe.extracted.name + ".signed")


def _pack(job: _Job, wheel: ScannedWheel, signed: Path) -> None:
    """Compress the signed member with its old method; note RECORD's new row."""
    member = job.pe.member
    expected = wheel.record.expected(member.name)
    middle = [piece.result() for piece in job.middle]
    hasher = expected.new_hash()
    packed_path = job.pe.extracted.with_name(job.pe.extracted.name + ".packed")
    with open(signed, "rb") as src, open(packed_path, "wb") as out:
        packed = pack(src, out, member.method, hasher=hasher, middle=middle)
        if packed is None:  # signing changed the middle after all: deflate it whole
            src.seek(0)
            out.seek(0)
            out.truncate()
            hasher = expected.new_hash()
            packed = pack(src, out, member.method, hasher=hasher)
            assert packed is not None
    job.replacement = Replacement(packed_path, packed)
    job.row = (encode_digest(hasher.name, hasher.digest()), packed.file_size)


def writable(
    wheels: list[Path], problems: Sequence[tuple[Path, str]], dest_dir: Path | None
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The wheels whose signed copy can be written (``dest_dir`` made first), and the
    problems, those that cannot added."""
    if dest_dir is not None:
        try:
            Path(dest_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {dest_dir}: {exc.strerror or exc}") from exc
    kept, problems = [], list(problems)
    for wheel in wheels:
        try:
            check_writable(target_of(wheel, dest_dir))
            kept.append(wheel)
        except FileAccessError as exc:
            problems.append((wheel, str(exc)))
    return kept, problems


def target_of(wheel: Path, dest_dir: Path | None) -> Path:
    """The file a signed ``wheel`` is written to."""
    if dest_dir is not None:
        return dest_dir / wheel.name
    return wheel.resolve() if wheel.is_symlink() else wheel


def _write(wheel: ScannedWheel, jobs: list[_Job], dest_dir: Path | None) -> None:
    """Write the signed wheel (or, with nothing signed, copy it into ``dest_dir``)."""
    target = target_of(wheel.path, dest_dir)
    signed = [j for j in jobs if j.replacement is not None]
    if not signed and target.resolve() == wheel.path.resolve():
        return
    replacements = {j.pe.member.name: j.replacement for j in signed if j.replacement}
    if signed:
        rows = {j.pe.member.name: j.row for j in signed if j.row}
        replacements[wheel.record.name] = pack_bytes(
            wheel.record.updated(rows), wheel.record_member.method
        )
    atomic = AtomicFile(target, mode_from=wheel.path)
    try:
        with open(wheel.path, "rb") as src:
            now = os.fstat(src.fileno())
            if (now.st_size, now.st_mtime_ns) != (wheel.stat.st_size, wheel.stat.st_mtime_ns):
                raise WheelFormatError("the wheel changed while its members were being signed")
            if replacements:
                write_archive(src, wheel.archive, replacements, atomic.handle)
            else:
                copy_range(src, atomic.handle, 0, wheel.archive.size)
    except BaseException:
        atomic.abort()
        raise
    atomic.commit()


def _finish(
    wheel: ScannedWheel, jobs: list[_Job], dest_dir: Path | None
) -> list[FileResult]:
    """The wheel written, or left alone with the reason; its members' results."""
    results = [j.result for j in jobs if j.result is not None]
    failed = [r for r in results if r.status == "failed"]
    problem = None
    if failed:
        problem = f"{len(failed)} of its PE members failed"
    else:
        try:
            _write(wheel, jobs, dest_dir)
        except Exception as exc:  # anything: one wheel never ends a batch
            problem = FileResult(wheel.path, "failed").fail(exc).reason
    if not jobs:
        where = f"; copied unchanged into {dest_dir}" if dest_dir else ""
        note = FileResult(wheel.path, "skipped", reason=f"no PE member to sign{where}")
        return [FileResult(wheel.path, "failed", reason=problem) if problem else note]
    if problem is None:
        target = target_of(wheel.path, dest_dir)
        if dest_dir is not None:  # each member's line names the wheel it went into (-w)
            for result in results:
                member = str(result.path).partition("!")[2]
                if result.status == "signed" and member:
                    result.output = Path(f"{target}!{member}")
        return results
    for result in results:
        if result.status == "signed":  # its signature went nowhere
            result.status = "skipped"
            result.reason = "signed, but the wheel was left unchanged"
            result.signer = result.digest = result.timestamp = None
    return [*results, FileResult(wheel.path, "failed", reason=f"left unchanged: {problem}")]


def sign_wheels(
    wheels: Sequence[Path],
    settings: Settings,
    session: SigningSession | None,
    *,
    dest_dir: Path | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: OnResult | None = None,
) -> list[FileResult]:
    """Sign every selected PE member of ``wheels``; ``session`` None means a dry run."""
    results: list[FileResult] = []

    def deliver(new: list[FileResult]) -> None:
        results.extend(new)
        if on_result is not None:
            for result in new:
                on_result(result)

    with tempfile.TemporaryDirectory(prefix="kmssign-wheel-") as work:
        _sign_in(Path(work), wheels, settings, session, dest_dir, on_start, deliver)
    return results


Middles = dict[Path, list["Future[Middle]"]]  # by extracted member


def _scan(
    work: Path, wheels: Sequence[Path], settings: Settings, deflaters: ThreadPoolExecutor | None
) -> tuple[list[ScannedWheel], list[FileResult], Middles]:
    """The wheels scanned, or why not; each PE member's middle being deflated (unless
    ``deflaters`` is None), a piece per thread, while the rest of its wheel is read."""
    scanned: list[ScannedWheel] = []
    early: list[FileResult] = []
    middles: Middles = {}
    for n, path in enumerate(wheels):
        mine: list[Future[Middle]] = []

        def deflate_middle(pe: PEMember, mine: list[Future[Middle]] = mine) -> None:
            assert deflaters is not None
            kept = _middle(pe)
            if kept is None:
                return
            start, end = kept
            pieces = [deflaters.submit(deflate_range, pe.extracted, offset,
                                       min(offset + _PIECE, end),
                                       pe.extracted.with_name(f"{pe.extracted.name}.{offset}"))
                      for offset in range(start, end, _PIECE)]
            mine.extend(pieces)
            middles[pe.extracted] = pieces

        try:
            wheel = scan_wheel(
                path, work / str(n), lambda name: selected(name, settings.include,
                                                           settings.exclude),
                deflate_middle if deflaters is not None else None,
            )
            refusal = _refusal(wheel, settings.skip_signed)
            if refusal is not None:
                raise WheelFormatError(refusal)
            scanned.append(wheel)
        except Exception as exc:  # anything: one wheel never ends a batch
            for future in mine:
                future.cancel()
            early.append(FileResult(path, "failed").fail(exc))
    return scanned, early, middles


def _sign_in(
    work: Path,
    wheels: Sequence[Path],
    settings: Settings,
    session: SigningSession | None,
    dest_dir: Path | None,
    on_start: Callable[[int], None] | None,
    deliver: Callable[[list[FileResult]], None],
) -> None:
    deflaters = ThreadPoolExecutor(local_threads(), thread_name_prefix="kmssign-deflate")
    try:
        scanned, early, middles = _scan(work, wheels, settings,
                                        deflaters if session is not None else None)
        if on_start is not None:
            on_start(len(early) + sum(max(1, len(w.pe_members)) for w in scanned))
        deliver(early)
        jobs = [_Job(n, pe, middles.get(pe.extracted, []))
                for n, w in enumerate(scanned) for pe in w.pe_members]
        if session is None:
            for job in jobs:
                job.result = plan_file(job.pe.extracted, settings.skip_signed)
                job.result.path = job.pe.display
            for n, wheel in enumerate(scanned):
                planned = [j.result for j in jobs if j.wheel == n and j.result is not None]
                deliver(planned or [FileResult(wheel.path, "skipped", reason="no PE member")])
            return
        _run(jobs, scanned, settings, session)
        for n, wheel in enumerate(scanned):
            deliver(_finish(wheel, [j for j in jobs if j.wheel == n], dest_dir))
    finally:  # no deflater still writing into the work directory when it is removed
        deflaters.shutdown(wait=True, cancel_futures=True)


def _run(
    jobs: list[_Job], scanned: list[ScannedWheel], settings: Settings, session: SigningSession
) -> None:
    """Every member through the loose-file pipeline, then compressed again."""

    def prepare(index: int) -> tuple[_Job, Prepared] | FileResult:
        job = jobs[index]
        prepared = prepare_file(job.pe.extracted, session, skip_signed=settings.skip_signed,
                                output=_signed_path(job.pe))
        if isinstance(prepared, FileResult):
            prepared.path = job.pe.display
            job.result = prepared
            return prepared
        prepared.result.path = job.pe.display
        return job, prepared

    def complete(item: tuple[_Job, Prepared]) -> FileResult:
        job, prepared = item
        result = complete_file(prepared, session)
        result.output = None  # the member goes back into its wheel, not to a file of its own
        if result.status == "signed":
            try:
                _pack(job, scanned[job.wheel], _signed_path(job.pe))
            except Exception as exc:  # anything: one file never ends a batch
                result.fail(exc)
        job.result = result
        return result

    pipeline: Pipeline[tuple[_Job, Prepared]] = Pipeline(
        prepare, complete, jobs=session.slots.workers
    )
    pipeline.run(len(jobs))
