"""The demo's throwaway certificate authority, made with ``cryptography``.

It plays the part a commercial CA plays for a real user: it receives the CSR that
``kmssign csr`` made with the KMS key, checks the CSR's signature (proof that the
requester holds the key), and issues a code-signing certificate for the public key in it.
It also certifies the demo's timestamp server. Keys live in memory only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kmssign demo (throwaway)"),
        ]
    )


def _key_usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class Issued:
    """A certificate and, when the CA made the key, its private key."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey | None = None


class DemoCA:
    """A self-signed root that issues code-signing and time-stamping certificates."""

    def __init__(self, common_name: str = "kmssign Demo Root CA") -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.now = dt.datetime.now(dt.timezone.utc)
        builder = self._builder(_name(common_name), self.key.public_key(), days=30)
        self.cert = (
            builder.issuer_name(_name(common_name))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(sign=False, ca=True), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def _builder(
        self, subject: x509.Name, public_key: CertificatePublicKeyTypes, *, days: int
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - dt.timedelta(hours=1))
            .not_valid_after(self.now + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )

    def _issue(
        self,
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        eku: x509.ObjectIdentifier,
        *,
        critical: bool,
    ) -> x509.Certificate:
        return (
            self._builder(subject, public_key, days=7)
            .issuer_name(self.cert.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(sign=True, ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=critical)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )

    def sign_csr(self, csr_pem: bytes) -> x509.Certificate:
        """A code-signing certificate for the subject and public key of a PEM CSR."""
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise ValueError("the CSR's signature does not match its public key")
        return self._issue(
            csr.subject, csr.public_key(), ExtendedKeyUsageOID.CODE_SIGNING, critical=False
        )

    def time_stamping_identity(self) -> Issued:
        """A key and certificate for the timestamp server (critical timeStamping EKU)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = self._issue(
            _name("kmssign Demo Timestamp Authority"),
            key.public_key(),
            ExtendedKeyUsageOID.TIME_STAMPING,
            critical=True,
        )
        return Issued(cert, key)


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path
