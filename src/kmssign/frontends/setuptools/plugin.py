"""The entry point setuptools calls with every Distribution it makes (group
``setuptools.finalize_distribution_options``), in every build whose environment has
kmssign installed.

Without a ``[tool.kmssign.setuptools]`` table in the project's pyproject.toml it returns
at once: it changes nothing and logs nothing. With one, ``bdist_wheel`` becomes a subclass
of the class in effect (setuptools' own, the ``wheel`` package's on setuptools < 70.1, or
one given in setup.py's ``cmdclass``) that signs the wheel after writing it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kmssign.config import table_in

TABLE = "tool.kmssign.setuptools"


def finalize_distribution_options(dist: Any) -> None:
    # setuptools reads the same file: pyproject.toml in src_root or the working directory.
    pyproject = Path(dist.src_root or os.curdir, "pyproject.toml").absolute()
    if table_in(pyproject, TABLE) is None:
        return
    from kmssign.frontends.setuptools import command

    command.install(dist, pyproject)
