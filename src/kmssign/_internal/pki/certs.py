"""Certificates: load leaf and chain, match them to a key, check them, build paths."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID

from kmssign.errors import CertificateError, VerificationError, plain_reason

MAX_CHAIN_DEPTH = 10

_E = TypeVar("_E", bound=x509.ExtensionType)


def subject_of(cert: x509.Certificate) -> str:
    """A short, readable subject: the CN when there is one, else the whole RFC 4514 name."""
    cns = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    if cns:
        return str(cns[0].value)
    return cert.subject.rfc4514_string()


def parse_certificates(data: bytes, name: str) -> list[x509.Certificate]:
    """Certificates from PEM (one or a bundle), DER, or PKCS#7 (.p7b, PEM or DER)."""
    try:
        if b"-----BEGIN PKCS7-----" in data:
            return list(pkcs7.load_pem_pkcs7_certificates(data))
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
            if certs:
                return certs
        else:
            try:
                return [x509.load_der_x509_certificate(data)]
            except ValueError:
                return list(pkcs7.load_der_pkcs7_certificates(data))
    except ValueError:
        pass
    raise CertificateError(f"{name}: not a certificate (PEM, DER or PKCS#7 expected)")


def load_certificates(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{path}: cannot read certificate: {exc.strerror or exc}") from exc
    return parse_certificates(data, str(path))


def extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    """The value of one extension of ``cert``, None when it has none.

    cryptography parses every extension on first access; a malformed one (an EKU that is
    not a SEQUENCE of OIDs, say) raises CertificateError naming the certificate.
    """
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        reason = plain_reason(exc).removeprefix("certificate: ")
        raise CertificateError(
            f"certificate {subject_of(cert)} has a malformed extension ({reason})"
        ) from exc


def spki_der(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class SigningCertificates(NamedTuple):
    """The leaf that matches the signing key, and the certificates that lead to a root."""

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def all(self) -> tuple[x509.Certificate, ...]:
        return (self.leaf, *self.chain)


def _dedupe(certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    seen: set[bytes] = set()
    out = []
    for cert in certs:
        der = cert.public_bytes(serialization.Encoding.DER)
        if der not in seen:
            seen.add(der)
            out.append(cert)
    return out


def select_signing_certificates(
    certificate: Path | Sequence[x509.Certificate],
    chain: Sequence[Path],
    public_key_der: bytes,
    key_name: str,
) -> SigningCertificates:
    """Load ``certificate`` (+ ``chain`` files) and pick the leaf whose key is the signer's.
    ``certificate`` may be the certificates themselves (read from a token beside the key).

    Raises CertificateError "certificate <subject> does not belong to <key>" when no
    certificate carries the signing key.
    """
    if isinstance(certificate, Path):
        primary = load_certificates(certificate)
        where = str(certificate)
    else:
        primary = list(certificate)
        where = "stored beside the key"
        if not primary:
            raise CertificateError(
                f"no certificate is stored beside {key_name}: set certificate"
            )
    extra = [c for path in chain for c in load_certificates(path)]
    every = _dedupe([*primary, *extra])
    leaves = [c for c in every if spki_der(c) == public_key_der]
    if not leaves:
        raise CertificateError(
            f"certificate {subject_of(primary[0])} ({where}) does not belong to {key_name}"
        )
    leaf = leaves[0]
    others = [c for c in every if c is not leaf]
    return SigningCertificates(leaf, tuple(order_chain(leaf, others)))


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except ValueError:  # "Unsupported signature algorithm": SHA-1, among others
        return _sha1_signed_by(cert, issuer)
    except (InvalidSignature, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _sha1_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """A certificate signature over SHA-1, which cryptography's own check refuses: Windows
    accepts it in Authenticode and timestamp chains (Microsoft Time-Stamp PCA, COMODO's
    and VeriSign's timestamp chains of the 2000s and 2010s are SHA-1 throughout), so
    kmssign does too. MD5 and MD2, which Windows refuses, stay refused."""
    try:
        algorithm = cert.signature_hash_algorithm
        if not isinstance(algorithm, hashes.SHA1):
            return False
        key = issuer.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    return _issued_by(cert, cert)


def order_chain(leaf: x509.Certificate, pool: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates of ``pool`` from the leaf's issuer upwards, then any left over."""
    ordered: list[x509.Certificate] = []
    remaining = list(pool)
    current = leaf
    while remaining and len(ordered) < MAX_CHAIN_DEPTH:
        parent = next((c for c in remaining if _issued_by(current, c)), None)
        if parent is None:
            break
        ordered.append(parent)
        remaining.remove(parent)
        if is_self_signed(parent):
            break
        current = parent
    return ordered + remaining


def leaf_warnings(leaf: x509.Certificate, now: dt.datetime | None = None) -> list[str]:
    """Problems with a signing certificate that deserve a warning, not a refusal."""
    now = now or dt.datetime.now(dt.timezone.utc)
    subject = subject_of(leaf)
    warnings = []
    if now > leaf.not_valid_after_utc:
        warnings.append(f"certificate {subject} expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    if now < leaf.not_valid_before_utc:
        warnings.append(
            f"certificate {subject} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}"
        )
    eku = extension(leaf, x509.ExtendedKeyUsage)
    if eku is None:
        warnings.append(f"certificate {subject} has no codeSigning extended key usage")
    elif ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        warnings.append(f"certificate {subject} lacks the codeSigning extended key usage")
    return warnings


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = extension(cert, x509.BasicConstraints)
    if constraints is None:
        # X.509 v1 roots carry no extensions; accept them only when self-signed.
        return cert.version == x509.Version.v1
    return bool(constraints.ca)


class Anchors(list[x509.Certificate]):
    """Trust anchors with a name, and the conditions of the program they come from
    (:mod:`~kmssign._internal.pki.msroots`); a plain list of roots has neither."""

    label = "the given roots"
    described = "a trusted root"

    def refusal(
        self, root: x509.Certificate, leaf: x509.Certificate, at: dt.datetime
    ) -> str | None:
        """Why the program does not trust a path from ``leaf`` to ``root`` at ``at``."""
        return None


def validate_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: dt.datetime,
    *,
    required_eku: x509.ObjectIdentifier | None = None,
) -> list[x509.Certificate]:
    """Build and check a path from ``leaf`` to one of ``roots``; return it (leaf first).

    Checks each signature, each certificate's validity at ``at``, that issuers are CAs,
    and ``required_eku`` on the leaf when given. Raises VerificationError with the reason.
    """
    subject = subject_of(leaf)
    if required_eku is not None:
        eku = extension(leaf, x509.ExtendedKeyUsage)
        if eku is None:
            raise VerificationError(f"certificate {subject} has no extended key usage")
        if required_eku not in eku:
            raise VerificationError(
                f"certificate {subject} lacks the {required_eku._name} extended key usage"
            )
    root_ders = {r.public_bytes(serialization.Encoding.DER) for r in roots}
    path = [leaf]
    current = leaf
    candidates = _dedupe([*intermediates, *roots])
    for _ in range(MAX_CHAIN_DEPTH):
        if not current.not_valid_before_utc <= at <= current.not_valid_after_utc:
            raise VerificationError(
                f"certificate {subject_of(current)} is not valid at {at:%Y-%m-%d %H:%M:%S} UTC"
            )
        if current.public_bytes(serialization.Encoding.DER) in root_ders:
            refusal = roots.refusal(current, leaf, at) if isinstance(roots, Anchors) else None
            if refusal is not None:
                raise VerificationError(refusal)
            return path
        parent = next(
            (c for c in candidates if c not in path and _issued_by(current, c) and _is_ca(c)), None
        )
        if parent is None:
            trusted = roots.described if isinstance(roots, Anchors) else Anchors.described
            raise VerificationError(
                f"certificate {subject_of(current)} does not chain to {trusted}"
            )
        path.append(parent)
        current = parent
    raise VerificationError(f"certificate chain of {subject} is too long")


def load_roots(paths: Sequence[Path]) -> list[x509.Certificate]:
    """Trust anchors from certificate files (PEM bundles such as the system's too)."""
    roots: list[x509.Certificate] = []
    with warnings.catch_warnings():
        # Real bundles hold roots whose serial number is 0 (Debian's has nine); a trust
        # anchor is known by its name and key, its serial plays no part in a chain check.
        warnings.filterwarnings(
            "ignore", message="Parsed a serial number", category=CryptographyDeprecationWarning
        )
        for path in paths:
            roots.extend(load_certificates(path))
    return roots


def _note(warning: warnings.WarningMessage) -> str | None:
    """Our note for a warning cryptography gives about a certificate; None for others."""
    text = str(warning.message)
    if issubclass(warning.category, CryptographyDeprecationWarning) and "serial" in text:
        return "note: a certificate has a serial number that is not positive (RFC 5280 " \
            "forbids it; cryptography will refuse it in a future release)"
    if issubclass(warning.category, UserWarning) and text.startswith("Attribute's length"):
        return f"note: a certificate has a name attribute of a length RFC 5280 forbids ({text})"
    return None


@contextmanager
def certificate_notes(log: Callable[[str], None]) -> Iterator[None]:
    """Run a batch with cryptography's warnings about odd certificates turned into one
    note line each (once per run) through ``log``, not Python warnings on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", category=CryptographyDeprecationWarning)
        warnings.filterwarnings("always", message="Attribute's length", category=UserWarning)
        yield
    seen: set[str] = set()
    for warning in caught:
        note = _note(warning)
        if note is None:  # someone else's warning: shown as it would have been
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        elif note not in seen:
            seen.add(note)
            log(note)
