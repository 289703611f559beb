"""What kmssign 0.1 offered and 0.2 changed keeps working for one more release, with a
:class:`DeprecationWarning`: the import paths of the modules that moved under
:mod:`kmssign._internal`, and the ``include``/``exclude``/``jobs`` keywords of
``verify_files`` and ``verify_wheels`` (now taken from ``Settings`` as ``sign_files`` does).

``import kmssign.pe.image`` gives a stand-in module whose attributes are the new
module's (the same objects: classes compare and ``isinstance`` works); nothing is loaded
twice. The finder answers only for the names below, so every other import is untouched.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.abc import Loader as _LoaderBase
    from importlib.abc import MetaPathFinder as _FinderBase

    from kmssign.config import Settings
else:  # the import system asks for the methods only; importlib.abc costs every run's start
    _LoaderBase = _FinderBase = object

REMOVED_IN = "0.3"

# old package -> where it lives now; every module below an old package moved with it
PACKAGES = {
    "kmssign.pe": "kmssign._internal.pe",
    "kmssign.authenticode": "kmssign._internal.authenticode",
    "kmssign.timestamp": "kmssign._internal.timestamp",
    "kmssign.pki": "kmssign._internal.pki",
    "kmssign.wheel": "kmssign._internal.wheel",
    "kmssign.engine": "kmssign._internal.engine",
    "kmssign.net": "kmssign._internal.net",
}
# old module -> the modules its names are in now (first one that has a name wins)
MODULES: dict[str, tuple[str, ...]] = {
    "kmssign.pyproject": ("kmssign._internal.pyproject",),
    "kmssign.engine.signing": (
        "kmssign._internal.engine.signing", "kmssign._internal.engine.session",
    ),
    "kmssign.signers.local": ("kmssign._internal.signers.local",),
    "kmssign.signers.aws_kms": ("kmssign._internal.signers.aws_kms",),
    "kmssign.frontends.pyinstaller": ("kmssign.pyinstaller",),
    "kmssign.authenticode.tlv": ("kmssign._internal.cms.structures", "kmssign._internal.der"),
    "kmssign.authenticode.asn1": (
        "kmssign._internal.authenticode.asn1", "kmssign._internal.der",
        "kmssign._internal.cms.structures",
    ),
    "kmssign.authenticode.parse": (
        "kmssign._internal.authenticode.parse", "kmssign._internal.cms.structures",
    ),
    "kmssign.authenticode.build": (
        "kmssign._internal.authenticode.build", "kmssign._internal.cms.algorithms",
    ),
    "kmssign.timestamp.tokens": (
        "kmssign._internal.cms.timestamps", "kmssign._internal.cms.algorithms",
    ),
}


def targets(name: str) -> tuple[str, ...] | None:
    """Where the names of the old module ``name`` are now (None: not an old path)."""
    if name in MODULES:
        return MODULES[name]
    for old, new in PACKAGES.items():
        if name == old or name.startswith(old + "."):
            return (new + name[len(old):],)
    return None


class _Moved(types.ModuleType):
    """The old module: every attribute is read from the new modules."""

    def __init__(self, name: str, modules: Sequence[types.ModuleType]) -> None:
        super().__init__(name, modules[0].__doc__)
        self.__dict__["_kmssign_targets"] = tuple(modules)
        if hasattr(modules[0], "__path__"):
            self.__path__: list[str] = []  # a package: its submodules come through the finder

    def __getattr__(self, attribute: str) -> Any:
        for module in self.__dict__["_kmssign_targets"]:
            if hasattr(module, attribute):
                return getattr(module, attribute)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attribute!r}")

    def __dir__(self) -> list[str]:
        names: set[str] = set()
        for module in self.__dict__["_kmssign_targets"]:
            names.update(dir(module))
        return sorted(names)


class _Loader(_LoaderBase):
    def __init__(self, modules: tuple[str, ...]) -> None:
        self._modules = modules

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        warnings.warn(
            f"{spec.name} is deprecated and goes away in kmssign {REMOVED_IN}; use "
            "kmssign's public modules (kmssign, kmssign.api, kmssign.config, "
            "kmssign.errors, kmssign.signers, kmssign.pyinstaller)",
            DeprecationWarning,
            stacklevel=_caller_level(),
        )
        return _Moved(spec.name, [importlib.import_module(m) for m in self._modules])

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def _caller_level() -> int:
    """The stack level of the first frame outside the import machinery."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and (
        frame.f_code.co_filename.startswith("<frozen importlib") or frame.f_globals.get(
            "__name__") == __name__
    ):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


class _Finder(_FinderBase):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        modules = targets(fullname)
        if modules is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader(modules))


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


_OLD_KEYWORDS = {"include": tuple, "exclude": tuple, "jobs": int}


def settings_from_keywords(
    settings: Settings | None, old: Mapping[str, object], function: str
) -> Settings:
    """``settings`` (default: ``Settings()``) with kmssign 0.1's keywords of ``function``
    applied, each with a DeprecationWarning; TypeError for any other keyword."""
    from kmssign.config import Settings

    unknown = sorted(set(old) - set(_OLD_KEYWORDS))
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")
    if old:
        warnings.warn(
            f"{function}({', '.join(f'{k}=' for k in old)}) is deprecated and goes away in "
            f"kmssign {REMOVED_IN}: pass a Settings with them instead",
            DeprecationWarning,
            stacklevel=3,
        )
    values = {k: _OLD_KEYWORDS[k](v) for k, v in old.items()}
    return replace(settings or Settings(), **values)
