"""PyInstaller ``.spec`` helpers: ``sign_bundled(a)`` after ``Analysis(...)``,
``sign_outputs(coll_or_exe)`` at the end (the import path ``.spec`` files use).

The implementation lives in :mod:`kmssign.frontends.pyinstaller`.
"""

from kmssign.frontends.pyinstaller import (
    CACHE_DIR,
    disabled,
    run_pyinstaller,
    sign_bundled,
    sign_outputs,
)

__all__ = ["CACHE_DIR", "disabled", "run_pyinstaller", "sign_bundled", "sign_outputs"]
