"""The sandbox's throwaway certificate authority: one root that issues the code-signing
certificate (from a certificate request) and the timestamp server's certificate."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT_NAME = "kmssign Sandbox Root CA"
TSA_NAME = "kmssign Sandbox Timestamp Authority"


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kmssign sandbox"),
    ])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass
class Authority:
    """A root CA whose key lives only in this process."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    @classmethod
    def create(cls, now: dt.datetime | None = None) -> Authority:
        now = now or dt.datetime.now(dt.timezone.utc)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = _name(ROOT_NAME)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def issue(
        self, subject: x509.Name, public_key: CertificatePublicKeyTypes,
        usage: x509.ObjectIdentifier, *, days: int = 365,
    ) -> x509.Certificate:
        """An end-entity certificate for ``public_key`` with one extended key usage."""
        now = dt.datetime.now(dt.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]),
                           critical=usage == ExtendedKeyUsageOID.TIME_STAMPING)
            .sign(self.key, hashes.SHA256())
        )

    def issue_from_csr(self, csr_pem: bytes) -> x509.Certificate:
        """The code-signing certificate for a request, after checking its signature (as a CA
        checks that the requester holds the key)."""
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise ValueError("the certificate request's signature does not verify")
        return self.issue(csr.subject, csr.public_key(), ExtendedKeyUsageOID.CODE_SIGNING)

    def timestamp_authority(self) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        """A TSA certificate (critical timeStamping EKU) and its key."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = self.issue(_name(TSA_NAME), key.public_key(), ExtendedKeyUsageOID.TIME_STAMPING,
                          days=3650)
        return cert, key
