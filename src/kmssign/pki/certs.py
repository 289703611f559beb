"""Certificates: load leaf and chain, match them to a key, check them, build paths."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID

from kmssign.errors import CertificateError, VerificationError

MAX_CHAIN_DEPTH = 10


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


def spki_der(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class SigningCertificates:
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
    certificate: Path, chain: Sequence[Path], public_key_der: bytes, key_name: str
) -> SigningCertificates:
    """Load ``certificate`` (+ ``chain`` files) and pick the leaf whose key is the signer's.

    Raises CertificateError "certificate <subject> does not belong to <key>" when no
    certificate carries the signing key.
    """
    primary = load_certificates(certificate)
    extra = [c for path in chain for c in load_certificates(path)]
    every = _dedupe([*primary, *extra])
    leaves = [c for c in every if spki_der(c) == public_key_der]
    if not leaves:
        raise CertificateError(
            f"certificate {subject_of(primary[0])} ({certificate}) does not belong to {key_name}"
        )
    leaf = leaves[0]
    others = [c for c in every if c is not leaf]
    return SigningCertificates(leaf, tuple(order_chain(leaf, others)))


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
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
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        warnings.append(f"certificate {subject} has no codeSigning extended key usage")
    else:
        if ExtendedKeyUsageOID.CODE_SIGNING not in eku:
            warnings.append(f"certificate {subject} lacks the codeSigning extended key usage")
    return warnings


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        # X.509 v1 roots carry no extensions; accept them only when self-signed.
        return cert.version == x509.Version.v1


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
        try:
            eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound as exc:
            raise VerificationError(f"certificate {subject} has no extended key usage") from exc
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
            return path
        parent = next(
            (c for c in candidates if c not in path and _issued_by(current, c) and _is_ca(c)), None
        )
        if parent is None:
            raise VerificationError(
                f"certificate {subject_of(current)} does not chain to a trusted root"
            )
        path.append(parent)
        current = parent
    raise VerificationError(f"certificate chain of {subject} is too long")


def load_roots(paths: Sequence[Path]) -> list[x509.Certificate]:
    roots: list[x509.Certificate] = []
    for path in paths:
        roots.extend(load_certificates(path))
    return roots
