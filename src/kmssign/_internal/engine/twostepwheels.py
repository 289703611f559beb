"""Two-step signing of the PE members of wheels: requests per member (named in the wheel,
with the wheel's sha256), checked again from the wheel's bytes, attached through the
wheel signing of ``kmssign wheel`` (each wheel written once, atomically)."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from kmssign._internal.engine.discovery import selected
from kmssign._internal.engine.report import FileResult
from kmssign._internal.engine.session import SigningSession
from kmssign._internal.engine.signing import file_sha256, plan_file
from kmssign._internal.engine.twostep import Request, Requests, make_request, relative_path
from kmssign._internal.engine.wheelscan import ScannedWheel, scan_wheel
from kmssign._internal.engine.wheelsign import _refusal, sign_wheels
from kmssign.config import Settings
from kmssign.errors import VerificationError, WheelFormatError
from kmssign.signers import DigestName


def _requests(
    scanned: ScannedWheel, digest: DigestName, description: str | None, url: str | None,
    skip_signed: bool,
) -> tuple[list[Request], list[FileResult]]:
    refusal = _refusal(scanned, skip_signed)
    if refusal is not None:
        raise WheelFormatError(refusal)
    sha256 = file_sha256(scanned.path)
    requests: list[Request] = []
    results: list[FileResult] = []
    for pe in scanned.pe_members:
        if skip_signed and plan_file(pe.extracted, True).status == "skipped":
            results.append(FileResult(pe.display, "skipped", reason="already signed"))
            continue
        made = make_request(pe.extracted, digest, description, url)
        requests.append(dataclasses.replace(
            made, path=relative_path(scanned.path), sha256=sha256, member=pe.member.name
        ))
        results.append(FileResult(pe.display, "would-sign", digest=digest, format=made.format))
    return requests, results


def wheel_requests(
    wheel: Path, settings: Settings, digest: DigestName
) -> tuple[list[Request], list[FileResult]]:
    """A request for every selected PE member of ``wheel`` to sign."""
    with tempfile.TemporaryDirectory(prefix="kmssign-digest-") as work:
        scanned = scan_wheel(wheel, Path(work),
                             lambda name: selected(name, settings.include, settings.exclude))
        return _requests(scanned, digest, settings.description, settings.url,
                         settings.skip_signed)


def check_wheel(wheel: Path, members: Sequence[Request], requests: Requests) -> None:
    """The wheel is as it was, and its members need signed what was requested."""
    if file_sha256(wheel) != members[0].sha256:
        raise VerificationError(f"{wheel}: the wheel changed since kmssign digest")
    names = {r.member for r in members}
    with tempfile.TemporaryDirectory(prefix="kmssign-attach-") as work:
        scanned = scan_wheel(wheel, Path(work), lambda name: name in names)
        again, _ = _requests(scanned, requests.digest, requests.description, requests.url,
                             requests.skip_signed)
    found = {(r.member, r.signed_attributes) for r in again}
    for request in members:
        if (request.member, request.signed_attributes) not in found:
            raise VerificationError(f"{wheel}!{request.member}: the request was edited (its "
                                    "signed attributes are not the member's)")


def attach_wheels(
    requests: Requests, settings: Settings, session: SigningSession,
    on_result: Callable[[FileResult], None] | None,
) -> list[FileResult]:
    """Each wheel with requests signed through ``kmssign wheel``'s path, in place."""
    by_wheel: dict[Path, list[str]] = {}
    for request in requests.requests:
        if request.member is not None:
            by_wheel.setdefault(request.path, []).append(request.member)
    results: list[FileResult] = []
    for wheel, names in by_wheel.items():
        chosen = dataclasses.replace(settings, include=tuple(names), exclude=(),
                                     skip_signed=requests.skip_signed)
        results.extend(sign_wheels([wheel], chosen, session, dest_dir=None,
                                   on_result=on_result))
    return results
