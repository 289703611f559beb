"""The exit codes of the ``kmssign`` command, defined once, one per class of problem
(docs/reference/exit-codes.md is this table; a test keeps the two the same)."""

from __future__ import annotations

import signal

from kmssign.errors import CertificateError, ConfigError, KeyFileError, KmsSignError

EXIT_OK = 0  # every file done (signed, verified, skipped)
EXIT_FAILED = 1  # a file failed, or none was found
EXIT_USAGE = 2  # the command line, the settings, or a file or tool they name

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "every file was signed, verified, timestamped or skipped",
    EXIT_FAILED: "at least one file failed (or no file was found), or a service failed the run",
    EXIT_USAGE: "the command line or the settings are wrong, or a file or tool they name "
    "cannot be used (key, certificate, chain, CA, config file, PyInstaller)",
    128 + signal.SIGINT: "interrupted by Ctrl-C (SIGINT)",
    128 + signal.SIGTERM: "stopped by SIGTERM",
}
"""Exit code -> when it is returned; 128 + N for any other signal N that stops a run."""

# Problems the user fixes in the command line or the settings, not in the files.
_SETUP = (ConfigError, CertificateError, KeyFileError)


def exit_code_for(exc: KmsSignError) -> int:
    """The exit code of a run that ``exc`` ended."""
    return EXIT_USAGE if isinstance(exc, _SETUP) else EXIT_FAILED
