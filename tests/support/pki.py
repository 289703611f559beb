"""A throwaway test PKI made with ``cryptography``: root CA, intermediate, leaves.

Nothing here is committed as key material; every key is generated per test session.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

NOW = dt.datetime.now(dt.timezone.utc)


def make_key(kind: str) -> PrivateKey:
    """``kind`` is ``rsa2048``, ``rsa3072``, ``rsa4096``, ``p256``, ``p384`` or ``p521``."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
    return ec.generate_private_key(curves[kind])


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kmssign tests"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
        ]
    )


@dataclass
class Issued:
    cert: x509.Certificate
    key: PrivateKey | None = None

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class CA:
    cert: x509.Certificate
    key: PrivateKey

    def issue(
        self,
        cn: str | None,
        public_key: PublicKey,
        *,
        subject: x509.Name | None = None,
        eku: list[x509.ObjectIdentifier] | None = None,
        eku_critical: bool = False,
        ca: bool = False,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject or _name(cn or "kmssign test"))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - dt.timedelta(days=1))
            .not_valid_after(not_after or NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=not ca,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=ca,
                    crl_sign=ca,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=eku_critical)
        return builder.sign(self.key, hashes.SHA256())

    def issue_with_key(self, cn: str, kind: str, **kwargs: object) -> Issued:
        key = make_key(kind)
        return Issued(self.issue(cn, key.public_key(), **kwargs), key)  # type: ignore[arg-type]

    def sub_ca(self, cn: str) -> CA:
        key = make_key("rsa2048")
        return CA(self.issue(cn, key.public_key(), ca=True), key)


def make_root(cn: str = "kmssign Test Root CA") -> CA:
    key = make_key("rsa2048")
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=2))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CA(cert, key)


CODE_SIGNING = [ExtendedKeyUsageOID.CODE_SIGNING]
TIME_STAMPING = [ExtendedKeyUsageOID.TIME_STAMPING]


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def write_key(path: Path, key: PrivateKey, *, fmt: str = "pkcs8-pem") -> Path:
    encodings = {
        "pkcs8-pem": (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8),
        "pkcs8-der": (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8),
        "traditional-pem": (
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
        ),
        "traditional-der": (
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
        ),
    }
    encoding, private_format = encodings[fmt]
    path.write_bytes(
        key.private_bytes(encoding, private_format, serialization.NoEncryption())
    )
    return path


@dataclass
class SigningIdentity:
    """Files for one code-signing key: key file, leaf cert, full chain bundle."""

    kind: str
    key: PrivateKey
    key_path: Path
    cert: x509.Certificate
    cert_path: Path  # leaf only
    chain_path: Path  # intermediate(s)


@dataclass
class TestPKI:
    """The session PKI: one root, one intermediate, leaves per key kind, TSA certs."""

    __test__ = False  # not a pytest test class

    directory: Path
    root: CA
    intermediate: CA
    root_pem: Path
    tsa: Issued
    tsa_no_eku: Issued
    identities: dict[str, SigningIdentity] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path) -> TestPKI:
        directory.mkdir(parents=True, exist_ok=True)
        root = make_root()
        intermediate = root.sub_ca("kmssign Test Code Signing CA")
        tsa = root.issue_with_key(
            "kmssign Test TSA", "rsa2048", eku=TIME_STAMPING, eku_critical=True
        )
        tsa_no_eku = root.issue_with_key("kmssign Test TSA without EKU", "rsa2048")
        pki = cls(
            directory=directory,
            root=root,
            intermediate=intermediate,
            root_pem=write_pem(directory / "root.pem", root.cert),
            tsa=tsa,
            tsa_no_eku=tsa_no_eku,
        )
        write_pem(directory / "intermediate.pem", intermediate.cert)
        return pki

    def identity(self, kind: str = "rsa2048") -> SigningIdentity:
        """A code-signing leaf (issued by the intermediate) for a fresh key of ``kind``."""
        if kind not in self.identities:
            key = make_key(kind)
            cert = self.intermediate.issue(
                f"kmssign Test Signer {kind}", key.public_key(), eku=CODE_SIGNING
            )
            base = self.directory / kind
            self.identities[kind] = SigningIdentity(
                kind=kind,
                key=key,
                key_path=write_key(base.with_suffix(".key"), key),
                cert=cert,
                cert_path=write_pem(base.with_suffix(".crt"), cert),
                chain_path=write_pem(
                    base.with_name(kind + "-chain.pem"), self.intermediate.cert
                ),
            )
        return self.identities[kind]

    def leaf_for(self, public_key: PublicKey, cn: str, path: Path) -> Path:
        """Issue a code-signing certificate for a foreign public key (e.g. a KMS key).

        Writes a PEM bundle leaf-first with the intermediate, and returns its path.
        """
        cert = self.intermediate.issue(cn, public_key, eku=CODE_SIGNING)
        return write_pem(path, cert, self.intermediate.cert)
