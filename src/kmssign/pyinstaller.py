"""PyInstaller integration: sign bundled binaries and build outputs from a .spec file.

PyInstaller has no plugin API, but a .spec file is Python run top to bottom and every
target is built when it is constructed. So::

    a = Analysis(["app.py"], binaries=[("vendor/lib.dll", ".")])
    kmssign.pyinstaller.sign_bundled(a)      # DLLs/.pyd in a.binaries and a.datas
    pyz = PYZ(a.pure)
    exe = EXE(pyz, a.scripts, a.binaries, a.datas, name="app")
    kmssign.pyinstaller.sign_outputs(exe)    # the onefile exe (or COLLECT(...): the tree)

``sign_bundled`` swaps every PE entry for a signed copy kept under PyInstaller's work
directory (``<workpath>/kmssign-signed/<hash>/<name>``), keyed by the source's content
and the signing identity, so a rebuild re-uses it without signing again. Files that
already carry a signature (python3X.dll, vcruntime140.dll) stay as they are unless
``skip-signed`` is off. ``run_pyinstaller`` does the same for a plain PyInstaller
command line by wrapping the spec's ``Analysis``/``EXE``/``COLLECT`` for one run.

Settings come from ``[tool.kmssign]`` of the nearest pyproject.toml above the spec file,
then ``KMSSIGN_*`` variables, then keyword overrides; relative paths are taken from the
spec file's directory. ``KMSSIGN_DISABLE=1`` turns all of it into one log line. Errors
end the build with ``SystemExit("kmssign: error: ...")``: one line, no traceback.
PyInstaller itself is imported lazily, and only by this module.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from kmssign import api
from kmssign.config import DISABLE_VARIABLE, Settings, disabled, load_settings
from kmssign.errors import ConfigError, KmsSignError, SigningError, printable
from kmssign.signers import Signer, Timestamper

__all__ = ["CACHE_DIR", "disabled", "run_pyinstaller", "sign_bundled", "sign_outputs"]

logger = logging.getLogger("kmssign")

CACHE_DIR = "kmssign-signed"
# Analysis TOC typecodes that name a file to collect as it is (SYMLINK, DEPENDENCY,
# PYMODULE, ... are something else).
_FILE_TYPECODES = frozenset({"BINARY", "EXTENSION", "DATA"})

_T = TypeVar("_T")
TocEntry = tuple[str, str, str]


def _at_edge(work: Callable[[], _T]) -> _T:
    """Turn kmssign errors into a one-line SystemExit that fails the build."""
    try:
        return work()
    except KmsSignError as exc:
        raise SystemExit(f"kmssign: error: {exc}") from None


def _pyinstaller_conf() -> Mapping[str, Any]:
    """PyInstaller's build configuration (empty outside a build or without PyInstaller)."""
    try:
        from PyInstaller.config import CONF
    except ImportError:
        return {}
    conf: Mapping[str, Any] = CONF
    return conf


def _spec_dir() -> Path:
    spec = _pyinstaller_conf().get("spec")
    return Path(spec).absolute().parent if spec else Path.cwd()


def _settings(config: str | os.PathLike[str] | None, overrides: Mapping[str, object]) -> Settings:
    given = {name.replace("-", "_"): value for name, value in overrides.items()}
    return load_settings(
        config=Path(config) if config is not None else None, cwd=_spec_dir(), overrides=given
    )


def _identity(settings: Settings, signer: Signer | None) -> bytes:
    """What makes a signed copy stale besides its source: certificate, digest, texts."""
    parts: list[bytes] = []
    for path in (settings.certificate, *settings.chain):
        try:
            parts.append(path.read_bytes() if path is not None else b"")
        except OSError:
            parts.append(os.fsencode(str(path)))
    for text in (settings.digest, settings.description, settings.url, settings.timestamp):
        parts.append((text or "").encode())
    parts.append((signer.name if signer is not None else "").encode())
    return b"\0".join(parts)


def _failure_message(what: str, report: api.Report) -> str:
    failed = report.failed
    details = "; ".join(f"{r.path.name}: {r.reason}" for r in failed[:3])
    more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    return f"{len(failed)} {what} could not be signed: {details}{more}"


def sign_bundled(
    analysis: Any,
    *,
    config: str | os.PathLike[str] | None = None,
    signer: Signer | None = None,
    timestamper: Timestamper | None = None,
    **overrides: object,
) -> api.Report:
    """Replace every PE file of ``analysis.binaries`` and ``analysis.datas`` by a signed copy.

    Call it in a .spec file after ``Analysis(...)`` and before ``PYZ``/``EXE``. The TOC
    lists are changed in place. ``overrides`` are settings (``key_id=...`` or
    ``**{"key-id": ...}``); ``config`` names the pyproject.toml to read instead of the
    nearest one. ``signer``/``timestamper`` replace the ones the settings would create.
    """
    return _at_edge(lambda: _sign_bundled(analysis, config, signer, timestamper, overrides))


def _sign_bundled(
    analysis: Any,
    config: str | os.PathLike[str] | None,
    signer: Signer | None,
    timestamper: Timestamper | None,
    overrides: Mapping[str, object],
) -> api.Report:
    report = api.Report()
    if disabled():
        logger.info("kmssign: %s is set; bundled binaries are not signed", DISABLE_VARIABLE)
        return report
    workpath = _pyinstaller_conf().get("workpath")
    if not workpath:
        raise ConfigError("sign_bundled() must be called from a .spec file in a PyInstaller build")
    settings = _settings(config, overrides)
    cache = Path(workpath) / CACHE_DIR
    identity = _identity(settings, signer)

    swaps: list[tuple[list[TocEntry], int, Path]] = []
    pending: dict[Path, Path] = {}  # signed copy to make -> its source
    for toc in (analysis.binaries, analysis.datas):
        for index, (dest, src, typecode) in enumerate(toc):
            source = Path(src) if src else None
            if typecode not in _FILE_TYPECODES or source is None or not source.is_file():
                continue
            if not api.looks_like_pe(source):
                continue
            if not api.selected(dest.replace("\\", "/"), settings.include, settings.exclude):
                continue
            if settings.skip_signed and (kept := api.already_signed(source)) is not None:
                report.results.append(kept)  # skipped, or failed: a broken signature
                continue
            content = api.file_sha256(source).encode()
            key = hashlib.sha256(content + b"\0" + identity).hexdigest()[:32]
            copy = cache / key / Path(dest.replace("\\", "/")).name
            swaps.append((toc, index, copy))
            if copy.is_file():
                report.results.append(api.FileResult(copy, "skipped", reason="signed copy re-used"))
            else:
                pending[copy] = source

    if not report.ok:
        raise SigningError(_failure_message("bundled file(s)", report))
    if pending:
        report.results.extend(_sign_copies(pending, settings, signer, timestamper).results)
    for toc, index, copy in swaps:
        dest, _src, typecode = toc[index]
        toc[index] = (dest, str(copy), typecode)

    reused = sum(1 for r in report.results if r.reason == "signed copy re-used")
    already = report.count("skipped") - reused
    logger.info(
        "kmssign: bundled binaries: %d signed, %d signed copies re-used, %d already signed",
        report.count("signed"), reused, already,
    )
    return report


def _sign_copies(
    pending: Mapping[Path, Path],
    settings: Settings,
    signer: Signer | None,
    timestamper: Timestamper | None,
) -> api.Report:
    """Sign copies in ``<hash>.partial`` folders; a folder is renamed when its copy is done."""
    staged: dict[Path, Path] = {}
    for copy, source in pending.items():
        partial = copy.parent.with_name(copy.parent.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        shutil.copyfile(source, partial / copy.name)
        shutil.copymode(source, partial / copy.name)
        staged[partial / copy.name] = copy
    # The globs were applied to the bundle names; the copies are signed whatever they hold.
    settings = replace(settings, include=(), exclude=(), skip_signed=False)
    report = api.sign_files(
        list(staged), settings, signer=signer, timestamper=timestamper, log=logger.info
    )
    if not report.ok:
        for result in report.failed:
            result.path = pending[staged[result.path]]
        raise SigningError(_failure_message("bundled file(s)", report))
    for result in report.results:
        copy = staged[result.path]
        shutil.rmtree(copy.parent, ignore_errors=True)
        os.replace(result.path.parent, copy.parent)
        result.path = result.output = copy
        logger.info("kmssign: %s", printable(result.line(pending[copy].name)))
    return report


def _output_path(target: Any) -> Path:
    if isinstance(target, (str, os.PathLike)):
        return _spec_dir() / target  # relative paths: from the spec file, as in PyInstaller
    if getattr(target, "exclude_binaries", False):
        raise ConfigError(
            "this EXE is part of a onedir build (exclude_binaries=True): "
            "call sign_outputs() on the COLLECT(...) target instead"
        )
    name = getattr(target, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"sign_outputs() needs an EXE(...) or COLLECT(...) target or a path, not {target!r}"
        )
    return Path(name)


def sign_outputs(
    target: Any,
    *,
    config: str | os.PathLike[str] | None = None,
    signer: Signer | None = None,
    timestamper: Timestamper | None = None,
    **overrides: object,
) -> api.Report:
    """Sign what a build produced: a onefile ``EXE(...)``, a ``COLLECT(...)`` tree or a path.

    Call it after the target in a .spec file. In a tree every PE file is signed (those
    already signed are skipped unless ``skip-signed`` is off); other files are counted in
    one log line. A single output that is not a PE file (a Linux or macOS build) is left
    as it is, with one log line.
    """
    return _at_edge(lambda: _sign_outputs(target, config, signer, timestamper, overrides))


def _sign_outputs(
    target: Any,
    config: str | os.PathLike[str] | None,
    signer: Signer | None,
    timestamper: Timestamper | None,
    overrides: Mapping[str, object],
) -> api.Report:
    if disabled():
        logger.info("kmssign: %s is set; build outputs are not signed", DISABLE_VARIABLE)
        return api.Report()
    path = _output_path(target)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if path.is_file() and not api.looks_like_pe(path):
        logger.info("kmssign: %s is not a PE file (not a Windows build); left unsigned", path)
        return api.Report()
    settings = _settings(config, overrides)
    found = api.discover([path], settings.include, settings.exclude)
    if found.problems:  # an output that cannot be read (or listed) is not left unsigned
        failed = api.Report([api.FileResult(p, "failed", reason=r) for p, r in found.problems])
        raise SigningError(_failure_message("output file(s)", failed))
    if not found.files:
        logger.info("kmssign: no Windows binaries in %s; nothing to sign", path)
        return api.Report()
    if path.is_dir():
        others = sum(
            1
            for root, _dirs, names in os.walk(path)
            for name in names
            if not api.looks_like_pe(Path(root, name))
        )
        if others:
            logger.info("kmssign: %d files in %s are not PE files; left as they are", others, path)
    report = api.Report()
    todo: list[Path] = []
    for file in found.files:
        if settings.skip_signed and (kept := api.already_signed(file)) is not None:
            report.results.append(kept)  # skipped, or failed: a broken signature
        else:
            todo.append(file)
    if not report.ok:
        raise SigningError(_failure_message("output file(s)", report))
    if todo:  # no key, certificate or KMS call when everything is signed already
        signed = api.sign_files(
            todo, replace(settings, include=(), exclude=()), signer=signer,
            timestamper=timestamper, log=logger.info,
        )
        if not signed.ok:
            raise SigningError(_failure_message("output file(s)", signed))
        for result in signed.results:
            logger.info("kmssign: %s", printable(result.line()))
        report.results.extend(signed.results)
    logger.info("kmssign: %s: %s", path, report.summary())
    return report


@contextmanager
def _signing_targets(
    signer: Signer | None, timestamper: Timestamper | None, overrides: Mapping[str, object]
) -> Iterator[None]:
    """For one build, make the spec's Analysis/EXE/COLLECT sign as they are constructed.

    The spec namespace is built from ``PyInstaller.building.build_main``'s globals when
    the build starts; the subclasses keep the class names, so PyInstaller's cached
    ``Analysis-00.toc`` files stay the same as in a plain build.
    """
    from PyInstaller.building import build_main

    options: dict[str, Any] = {"signer": signer, "timestamper": timestamper, **overrides}
    originals = (build_main.Analysis, build_main.EXE, build_main.COLLECT)

    class Analysis(originals[0]):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            sign_bundled(self, **options)

    class EXE(originals[1]):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not self.exclude_binaries:  # onedir executables are signed in COLLECT
                sign_outputs(self, **options)

    class COLLECT(originals[2]):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            sign_outputs(self, **options)

    build_main.Analysis, build_main.EXE, build_main.COLLECT = Analysis, EXE, COLLECT
    try:
        yield
    finally:
        build_main.Analysis, build_main.EXE, build_main.COLLECT = originals


def run_pyinstaller(
    argv: Sequence[str],
    *,
    signer: Signer | None = None,
    timestamper: Timestamper | None = None,
    **overrides: object,
) -> int:
    """Run PyInstaller in this process with ``argv``, signing as ``sign_bundled`` and
    ``sign_outputs`` would in the spec (a given .spec or the one PyInstaller generates).

    Returns 0 on success; PyInstaller's and kmssign's failures raise ``SystemExit``
    carrying a one-line message (or an exit code).
    """
    import PyInstaller.__main__

    if disabled():
        logger.info("kmssign: %s is set; running PyInstaller without signing", DISABLE_VARIABLE)
        PyInstaller.__main__.run(list(argv))
        return 0
    with _signing_targets(signer, timestamper, overrides):
        PyInstaller.__main__.run(list(argv))
    return 0
