"""The ``bdist_wheel`` kmssign puts in place of the one in effect: the parent's ``run``
writes the wheel (package data, ``build_ext`` output, whatever custom commands added, all
in it by then), then every PE member of that wheel is signed in place.

The wheel is found where distutils documents a command's products: the
``(command, python version, path)`` rows the command appended to
``Distribution.dist_files``. Editable installs (``editable_wheel``) never run
``bdist_wheel``'s ``run``, and sdists are another command: both are left alone.
``KMSSIGN_DISABLE=1`` leaves the wheel unsigned with one log line. Any failure removes the
wheel and ends the build with ``SystemExit("kmssign: error: ...")``: the build backend's
process prints that one line, without a traceback, and fails (setuptools re-raises a
failing SystemExit; a distutils error would gain setuptools' own ``error: `` prefix).
This is the only module that imports setuptools.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kmssign.config import Settings, disabled, load_settings, table_in
from kmssign.errors import KmsSignError, SigningError
from kmssign.frontends import buildhooks
from kmssign.frontends.setuptools.plugin import TABLE


def install(dist: Any, pyproject: Path) -> None:
    """Make ``dist``'s ``bdist_wheel`` sign what it writes, with the settings of ``pyproject``."""
    from setuptools.errors import ModuleError

    try:
        base = dist.get_command_class("bdist_wheel")
    except ModuleError:  # setuptools < 70.1 without the wheel package: no wheels to sign
        return
    if getattr(base, "kmssign_pyproject", None) is None:
        dist.cmdclass["bdist_wheel"] = signing_bdist_wheel(base, pyproject)


def signing_bdist_wheel(base: type, pyproject: Path) -> type:
    """A subclass of ``base`` (a bdist_wheel command class) that signs the wheel it wrote."""

    class bdist_wheel(base):  # type: ignore[misc]
        __doc__ = f"{base.__doc__ or 'create a wheel distribution'} (signed by kmssign)"
        kmssign_pyproject = pyproject

        def run(self) -> None:
            before = len(self.distribution.dist_files)
            super().run()
            made = [
                Path(path) for command, _, path in self.distribution.dist_files[before:]
                if command == "bdist_wheel"
            ]
            sign_made_wheels(made, pyproject, lambda line: self.announce(line, logging.INFO))

    return bdist_wheel


def project_settings(pyproject: Path, env: Mapping[str, str]) -> Settings:
    """``[tool.kmssign]`` < ``[tool.kmssign.setuptools]`` < ``KMSSIGN_*``."""
    table = table_in(pyproject, TABLE)
    return load_settings(
        config=pyproject, cwd=pyproject.parent, env=env,
        table=table if isinstance(table, Mapping) else None, table_name=TABLE,
    )


def sign_made_wheels(wheels: list[Path], pyproject: Path, log: buildhooks.Log) -> None:
    """Sign ``wheels`` in place; on any failure remove them and fail the build in one line."""
    if disabled(os.environ):
        log(buildhooks.DISABLED_NOTE)
        return
    try:
        if not wheels:
            raise SigningError("bdist_wheel recorded no wheel in Distribution.dist_files")
        settings = project_settings(pyproject, os.environ)
        with _quiet("botocore"):
            for wheel in wheels:
                buildhooks.sign_built_wheel(wheel, settings, log, project=pyproject.parent)
    except KmsSignError as exc:
        for wheel in wheels:  # no unsigned wheel is left where one is expected
            wheel.unlink(missing_ok=True)
        raise SystemExit(f"kmssign: error: {exc}") from None


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """setuptools sends every logger's INFO lines to the build log; botocore's notes on
    where it found credentials and endpoints are not for it."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)
