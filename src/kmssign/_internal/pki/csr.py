"""PKCS#10 certificate requests and public keys for a signer (e.g. a KMS key).

The request is built natively: the CertificationRequestInfo is encoded with asn1crypto
and signed by the signer itself, so the private key never exists outside it.
"""

from __future__ import annotations

from asn1crypto import core as asn1_core
from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.oid import NameOID

from kmssign.errors import ConfigError, SigningError
from kmssign.signers import DigestName, Signer

# Attribute types accepted in a subject string (case-insensitive), RFC 4514 names first.
ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "EMAIL": NameOID.EMAIL_ADDRESS,
    "E": NameOID.EMAIL_ADDRESS,
    "TITLE": NameOID.TITLE,
    "GN": NameOID.GIVEN_NAME,
    "GIVENNAME": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
    "SURNAME": NameOID.SURNAME,
    "ORGANIZATIONIDENTIFIER": NameOID.ORGANIZATION_IDENTIFIER,
}
_HEX = "0123456789abcdefABCDEF"


def _is_hex_pair(text: str) -> bool:
    return len(text) == 2 and all(c in _HEX for c in text)


def _split(dn: str) -> list[list[tuple[str, str]]]:
    """Split an RFC 4514-style string into RDNs of (type, value), honouring escapes."""
    rdns: list[list[tuple[str, str]]] = [[]]
    key: str | None = None
    chars: list[tuple[str, bool]] = []  # (character, escaped)
    i = 0

    def finish() -> None:
        nonlocal key, chars
        if key is None:
            text = "".join(c for c, _ in chars).strip() or "an empty part"
            raise ConfigError(f"subject {dn!r}: {text!r} is not TYPE=value")
        while chars and chars[0] == (" ", False):
            chars.pop(0)
        while chars and chars[-1] == (" ", False):
            chars.pop()
        rdns[-1].append((key, "".join(c for c, _ in chars)))
        key, chars = None, []

    while i < len(dn):
        ch = dn[i]
        if ch == "\\":
            if _is_hex_pair(dn[i + 1 : i + 3]):
                raw = bytearray()
                while dn[i : i + 1] == "\\" and _is_hex_pair(dn[i + 1 : i + 3]):
                    raw.append(int(dn[i + 1 : i + 3], 16))
                    i += 3
                try:
                    chars.extend((c, True) for c in raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise ConfigError(f"subject {dn!r}: hex escapes are not UTF-8") from exc
                continue
            if i + 1 >= len(dn):
                raise ConfigError(f"subject {dn!r}: ends with a lone backslash")
            chars.append((dn[i + 1], True))
            i += 2
            continue
        if ch == "=" and key is None:
            key = "".join(c for c, _ in chars).strip()
            chars = []
        elif ch in ",+":
            finish()
            if ch == ",":
                rdns.append([])
        else:
            chars.append((ch, False))
        i += 1
    finish()
    return rdns


def parse_subject(dn: str) -> x509.Name:
    """Parse ``CN=...,O=...,OU=...,L=...,ST=...,C=...`` into a name.

    The string follows RFC 4514: the most specific part (CN) comes first, and a
    backslash escapes ``,``, ``+``, ``=``, ``\\`` or starts a two-digit hex byte.
    """
    if not dn.strip():
        raise ConfigError("subject is empty")
    problems: list[str] = []
    rdns: list[x509.RelativeDistinguishedName] = []
    for parts in _split(dn):
        attributes: list[x509.NameAttribute[str]] = []
        for key, value in parts:
            oid = ATTRIBUTES.get(key.upper())
            if oid is None and key and all(p.isdigit() for p in key.split(".")):
                oid = x509.ObjectIdentifier(key)
            if oid is None:
                known = ", ".join(k for k in ATTRIBUTES if k not in ("S", "E", "EMAIL"))
                problems.append(f"subject: unknown attribute {key!r} (known: {known})")
                continue
            if not value:
                problems.append(f"subject: {key} has an empty value")
                continue
            if oid == NameOID.COUNTRY_NAME and not (
                len(value) == 2 and value.isascii() and value.isalpha()
            ):
                problems.append(f"subject: C must be a two-letter country code, not {value!r}")
                continue
            attributes.append(x509.NameAttribute(oid, value))
        if attributes:
            rdns.append(x509.RelativeDistinguishedName(attributes))
    if problems:
        raise ConfigError(problems)
    rdns.reverse()  # RFC 4514 writes the last RDN of the sequence first
    return x509.Name(rdns)


def build_csr(signer: Signer, subject: x509.Name, digest: DigestName = "sha256") -> bytes:
    """A PEM PKCS#10 request for ``subject`` with the signer's key, signed by the signer."""
    public_key = asn1_keys.PublicKeyInfo.load(signer.public_key_der())
    info = asn1_csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": asn1_x509.Name.load(subject.public_bytes()),
            "subject_pk_info": public_key,
            "attributes": [],
        }
    )
    actual = signer.digest_for(digest)
    signature = signer.sign(info.dump(), actual)
    algorithm: dict[str, object]
    if signer.key_type == "rsa":
        algorithm = {"algorithm": f"{actual}_rsa", "parameters": asn1_core.Null()}
    else:
        algorithm = {"algorithm": f"{actual}_ecdsa"}  # ECDSA: parameters absent
    request = asn1_csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": algorithm,
            "signature": signature,
        }
    )
    der = request.dump()
    try:
        valid = x509.load_der_x509_csr(der).is_signature_valid
    except ValueError as exc:
        raise SigningError(f"{signer.name}: the certificate request is malformed: {exc}") from exc
    if not valid:
        raise SigningError(f"{signer.name} returned a signature that does not match its public key")
    pem: bytes = asn1_pem.armor("CERTIFICATE REQUEST", der)
    return pem


def public_key_pem(signer: Signer) -> bytes:
    """The signer's public key as a PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo)."""
    pem: bytes = asn1_pem.armor("PUBLIC KEY", signer.public_key_der())
    return pem
