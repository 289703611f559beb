"""The one error hierarchy of kmssign.

Everything kmssign raises on purpose derives from :class:`KmsSignError`; front ends
(CLI, build hooks) catch it once and turn it into a one-line message.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = [
    "CertificateError",
    "ChainUntrustedError",
    "CompoundFileError",
    "ConfigError",
    "DigestMismatchError",
    "FileAccessError",
    "KmsSignError",
    "KmsUnavailableError",
    "MalformedFileError",
    "MalformedSignatureError",
    "PEFormatError",
    "SigningError",
    "TimestampError",
    "TimestampInvalidError",
    "TimestampMissingError",
    "TimestampUnavailableError",
    "UnsignedError",
    "VerificationError",
    "WheelFormatError",
    "one_line",
    "plain_reason",
    "printable",
    "redact",
]


class KmsSignError(Exception):
    """Root of every error kmssign reports to a user.

    ``code`` is what went wrong as a stable word (a file result's ``outcome``, the JSON
    report's ``outcome``): each subclass names its own.
    """

    code: str = "error"


class ConfigError(KmsSignError):
    """Invalid settings. Holds every problem found, so all are reported at once."""

    def __init__(self, problems: Iterable[str] | str) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems: list[str] = list(problems)
        super().__init__("; ".join(self.problems))

    code = "config-error"


class PEFormatError(KmsSignError):
    """The file is not a PE image kmssign can sign, or its structure is broken."""

    code = "malformed"


class WheelFormatError(KmsSignError):
    """The file is not a wheel kmssign can sign or verify: a broken or unsafe zip, or a
    RECORD that is missing or does not match the members."""

    code = "malformed"


class MalformedFileError(KmsSignError):
    """A file's structure is broken: truncated, inconsistent, or holding bytes that belong
    to nothing. The message is one line naming the file and the reason."""

    code = "malformed"


class CompoundFileError(MalformedFileError):
    """The file is not a compound file ([MS-CFB]: MSI, MSM, MSP) kmssign can read or
    rewrite, or its sectors, chains or directory are broken."""


class CertificateError(KmsSignError):
    """A certificate or chain cannot be loaded or does not fit the signing key."""

    code = "certificate-invalid"


class SigningError(KmsSignError):
    """Producing a signature failed (key file, KMS, self-check)."""

    code = "signing-failed"


class KeyFileError(SigningError):
    """The key file cannot be read, or holds no key kmssign can sign with."""


class TimestampError(KmsSignError):
    """No acceptable RFC 3161 timestamp could be obtained."""

    code = "service-error"
    # each server's failure ("URL: reason"), in the order they were asked, where known
    failures: tuple[str, ...] = ()


class TimestampUnavailableError(TimestampError):
    """Every timestamp server failed earlier in this run, so none is asked again."""


class KmsUnavailableError(SigningError):
    """KMS could not be reached earlier in this run, so it is not called again."""

    code = "service-error"


class FileAccessError(KmsSignError):
    """A file kmssign must replace is read-only, or its directory cannot be written."""

    code = "io-error"


class VerificationError(KmsSignError):
    """A signature, digest, chain or timestamp did not verify (the subclasses say which;
    this class itself: the signature or its signed attributes)."""

    code = "signature-invalid"


class UnsignedError(VerificationError):
    """The file carries no signature at all."""

    code = "unsigned"


class DigestMismatchError(VerificationError):
    """The file's digest does not match its signature: it changed after signing."""

    code = "digest-mismatch"


class MalformedSignatureError(VerificationError):
    """The signature's bytes are not a well-formed Authenticode SignedData."""

    code = "malformed"


class ChainUntrustedError(VerificationError):
    """The signer's certificate does not chain to a trusted root (or is not valid)."""

    code = "chain-untrusted"


class TimestampInvalidError(VerificationError):
    """The signature's timestamp (token or countersignature) does not verify."""

    code = "timestamp-invalid"


class TimestampMissingError(VerificationError):
    """A timestamp is required and the signature has none."""

    code = "timestamp-missing"


def one_line(text: object) -> str:
    """``text`` with every run of white space (newlines included) folded to one space."""
    return " ".join(str(text).split())


# scheme://userinfo@ : the user information ends at the netloc's last "@". Blanks in
# it are not valid, but a password may hold them: one counts as part of it when an "@"
# follows before the netloc (or the quoted value) ends. When in doubt, hide.
# (The patterns here are compiled when first used, by the re module's cache: most runs
# never print a message, and compiling them all costs a short run a millisecond or two.)
_URL_USERINFO = r"""([A-Za-z][A-Za-z0-9+.-]*://)(?:[^/?#\s]|[ \t](?=[^/?#'"\n]*@))*@"""


def redact(text: object) -> str:
    """``text`` with the user information (``user:password@``) of every URL in it
    replaced by ``***@``, so that credentials never reach a message, log line or report."""
    return re.sub(_URL_USERINFO, r"\1***@", str(text))


_LONG_NUMBER = r"\d{21,}"
# What asn1crypto and cryptography say, in fewer words and none of their internals.
_PLAIN = [
    (r"Error parsing asn1crypto\.\w+\.(\w+) - (.*)", r"\1: \2"),
    (r"Value .* did not match .* alternatives in asn1crypto\.\w+\.(\w+)\b.*",
     r"\1: unexpected tag"),
    (r"Insufficient data - .*", "truncated data"),
    (r"error parsing asn1 value: ParseError \{ kind: (\w+).*?(\w+)\"[^\"]*\] \}",
     r"certificate: \1 in \2"),
    (r"error parsing asn1 value: ParseError \{ kind: (\w+).*", r"certificate: \1"),
    (r"'[\w-]+' codec can't decode.*", "a string in an unexpected encoding"),
    (r"Could not deserialize key data.*", "unreadable public key"),
]


def _words(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", camel).lower()


def plain_reason(exc: BaseException) -> str:
    """A parser's complaint fit for a one-line message: its first line in plain words,
    no library internals, long numbers cut."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for pattern, plain in _PLAIN:
        if re.match(pattern, text):
            text = re.sub(pattern, plain, text, count=1)
            break
    # cryptography's error kinds: "ShortData" -> "short data"
    text = re.sub(r"^certificate: (\w+)", lambda m: "certificate: " + _words(m.group(1)), text)
    text = re.sub(_LONG_NUMBER, lambda m: f"{m.group()[:8]}...({len(m.group())} digits)", text)
    return text if len(text) <= 160 else text[:157] + "..."


# Characters shown escaped in text output: a file name may hold any of them, and a
# newline, carriage return or terminal escape in a name must not forge or hide a line;
# the bidirectional controls could make a name read as another.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """``text`` safe to print as part of one line.

    Control characters become ``\\n``, ``\\x1b``, ``\\u2028`` ...; bytes of a file name
    that are not valid in the file system's encoding (``os.fsdecode`` keeps them as lone
    surrogates, which no encoder accepts) become ``\\xNN``, the byte itself.
    """
    if text.isprintable() and not _BIDI.intersection(text):
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _SHORT:
            out.append(_SHORT[ch])
        elif (ch.isprintable() and ch not in _BIDI) or unicodedata.category(ch) == "Zs":
            out.append(ch)  # (Python counts spaces other than " " as unprintable)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
