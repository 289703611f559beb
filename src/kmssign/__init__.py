"""kmssign: Authenticode signing of Windows files with keys held in AWS KMS (or a key
file, a PKCS#11 token, a signer package).

The public API is what :data:`__all__` names, importable from here and from the public
modules that define it: :mod:`kmssign.api` (the batch functions and result types),
:mod:`kmssign.config` (``Settings``), :mod:`kmssign.errors`, :mod:`kmssign.signers` (the
``Signer`` and ``Timestamper`` protocols) and :mod:`kmssign.pyinstaller` (the ``.spec``
helpers). Everything under :mod:`kmssign._internal` may change in any release.

Importing ``kmssign`` loads nothing else: each name is imported when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kmssign import _deprecated

__version__ = "0.1.0"

_deprecated.install()

# The public names: the one list (docs/explanation/library.md shows the same, and a test
# holds both to it), each importable from here and from the public module named below.
__all__ = [
    "DIGESTS",
    "CertificateError",
    "ChainUntrustedError",
    "CompoundFileError",
    "ConfigError",
    "DigestMismatchError",
    "DigestName",
    "FileAccessError",
    "FileResult",
    "KeyType",
    "KmsSignError",
    "KmsUnavailableError",
    "MalformedFileError",
    "MalformedSignatureError",
    "Outcome",
    "PEFormatError",
    "Report",
    "Settings",
    "Signer",
    "SigningError",
    "Status",
    "TimestampError",
    "TimestampInfo",
    "TimestampInvalidError",
    "TimestampMissingError",
    "TimestampUnavailableError",
    "Timestamper",
    "UnsignedError",
    "VerificationError",
    "WheelFormatError",
    "__version__",
    "attach_signatures",
    "create_signer",
    "digest_files",
    "load_settings",
    "run_pyinstaller",
    "sign_bundled",
    "sign_digests",
    "sign_files",
    "sign_outputs",
    "sign_wheels",
    "timestamp_files",
    "verify_files",
    "verify_wheels",
]

_HOMES = ("kmssign.api", "kmssign.config", "kmssign.errors", "kmssign.signers",
          "kmssign.pyinstaller")


def home_of(name: str) -> str:
    """The public module that defines the public name ``name``."""
    for module in _HOMES:
        if name in importlib.import_module(module).__all__:
            return module
    raise AttributeError(f"module 'kmssign' has no attribute {name!r}")


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'kmssign' has no attribute {name!r}")
    value = getattr(importlib.import_module(home_of(name)), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from kmssign.api import (
        FileResult,
        Outcome,
        Report,
        Status,
        attach_signatures,
        create_signer,
        digest_files,
        sign_digests,
        sign_files,
        sign_wheels,
        timestamp_files,
        verify_files,
        verify_wheels,
    )
    from kmssign.config import Settings, load_settings
    from kmssign.errors import (
        CertificateError,
        ChainUntrustedError,
        CompoundFileError,
        ConfigError,
        DigestMismatchError,
        FileAccessError,
        KmsSignError,
        KmsUnavailableError,
        MalformedFileError,
        MalformedSignatureError,
        PEFormatError,
        SigningError,
        TimestampError,
        TimestampInvalidError,
        TimestampMissingError,
        TimestampUnavailableError,
        UnsignedError,
        VerificationError,
        WheelFormatError,
    )
    from kmssign.pyinstaller import run_pyinstaller, sign_bundled, sign_outputs
    from kmssign.signers import (
        DIGESTS,
        DigestName,
        KeyType,
        Signer,
        Timestamper,
        TimestampInfo,
    )
