"""Subject parsing, PKCS#10 requests signed by KMS (checked by openssl), public key PEM."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import csr as asn1_csr
from asn1crypto import pem as asn1_pem
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from kmssign._internal.pki.csr import build_csr, parse_subject, public_key_pem
from kmssign._internal.signers.aws_kms import KmsSigner
from kmssign.errors import ConfigError, SigningError
from kmssign.signers import DigestName
from tests.support.fixtures_kms import KmsServer, create_kms_key, kms_client
from tests.support.helpers import DelegatingSigner

SUBJECT = "CN=Example Code Signing,O=Example\\, Inc.,OU=Release,L=Berlin,ST=Berlin,C=DE"


@pytest.fixture
def mocked() -> Iterator[Any]:
    with mock_aws():
        yield kms_client(region="eu-west-1")


def openssl_verify(path: Path) -> str:
    result = subprocess.run(
        ["openssl", "req", "-verify", "-noout", "-in", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


# -- parse_subject ---------------------------------------------------------------------------


def test_parse_subject_in_rfc4514_order() -> None:
    name = parse_subject(SUBJECT + ",emailAddress=release@example.com")
    assert [(a.oid, a.value) for a in name] == [
        (NameOID.EMAIL_ADDRESS, "release@example.com"),
        (NameOID.COUNTRY_NAME, "DE"),
        (NameOID.STATE_OR_PROVINCE_NAME, "Berlin"),
        (NameOID.LOCALITY_NAME, "Berlin"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Release"),
        (NameOID.ORGANIZATION_NAME, "Example, Inc."),
        (NameOID.COMMON_NAME, "Example Code Signing"),
    ]
    assert name.rfc4514_string().startswith("CN=Example Code Signing,O=Example\\, Inc.,")


@pytest.mark.parametrize(
    ("dn", "expected"),
    [
        ("CN=a\\+b\\=c\\\\d", "a+b=c\\d"),
        ("CN=caf\\C3\\A9", "café"),
        ("CN=x=y", "x=y"),
        ("cn = spaced out  ", "spaced out"),
        ("CN=\\ kept\\ ", " kept "),
        ("CN=\\#hash", "#hash"),
        ("2.5.4.3=by oid", "by oid"),
    ],
)
def test_parse_subject_escapes(dn: str, expected: str) -> None:
    assert parse_subject(dn).get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == expected


def test_parse_subject_multi_valued_rdn() -> None:
    name = parse_subject("CN=a+UID=b,O=c")
    assert len(name.rdns) == 2
    assert {a.oid for a in name.rdns[1]} == {NameOID.COMMON_NAME, NameOID.USER_ID}


def test_parse_subject_reports_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        parse_subject("CN=x,FOO=y,C=Germany,O=")
    assert len(info.value.problems) == 3
    assert info.value.problems[0].startswith("subject: unknown attribute 'FOO' (known: CN, O,")
    assert info.value.problems[1:] == [
        "subject: C must be a two-letter country code, not 'Germany'",
        "subject: O has an empty value",
    ]


@pytest.mark.parametrize(
    ("dn", "message"),
    [
        ("", "subject is empty"),
        ("CN", "subject 'CN': 'CN' is not TYPE=value"),
        ("CN=x,", "subject 'CN=x,': 'an empty part' is not TYPE=value"),
        ("CN=x\\", "subject 'CN=x\\\\': ends with a lone backslash"),
        ("CN=\\FF", "subject 'CN=\\\\FF': hex escapes are not UTF-8"),
    ],
)
def test_parse_subject_syntax_errors(dn: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_subject(dn)
    assert str(info.value) == message


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=16)


@settings(max_examples=200, deadline=None)
@given(cn=_TEXT, org=_TEXT, unit=_TEXT)
def test_parse_subject_round_trips_rfc4514(cn: str, org: str, unit: str) -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    assert parse_subject(name.rfc4514_string()) == name


# -- build_csr -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "requested", "digest"),
    [
        ("RSA_2048", "sha256", "sha256"),
        ("RSA_4096", "sha384", "sha384"),
        ("ECC_NIST_P256", "sha256", "sha256"),
        ("ECC_NIST_P384", "sha256", "sha384"),  # the curve decides
        ("ECC_NIST_P521", "sha512", "sha512"),
    ],
)
def test_csr_verifies_with_openssl(
    mocked: Any, tmp_path: Path, spec: str, requested: DigestName, digest: str
) -> None:
    signer = KmsSigner(create_kms_key(mocked, spec), mocked)
    subject = parse_subject(SUBJECT)
    pem = build_csr(signer, subject, requested)
    path = tmp_path / "req.csr"
    path.write_bytes(pem)
    assert "verify OK" in openssl_verify(path)

    request = x509.load_pem_x509_csr(pem)
    assert request.is_signature_valid
    assert request.subject == subject
    assert request.signature_hash_algorithm is not None
    assert request.signature_hash_algorithm.name == digest
    assert (
        request.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == signer.public_key_der()
    )
    info = asn1_csr.CertificationRequest.load(asn1_pem.unarmor(pem)[2])
    assert len(info["certification_request_info"]["attributes"]) == 0
    parameters = info["signature_algorithm"]["parameters"]
    if spec.startswith("RSA"):
        assert parameters.dump() == b"\x05\x00"  # NULL, as RFC 4055 asks for
    else:
        assert parameters.native is None and not parameters.contents


def test_csr_from_the_kms_server(
    kms_server: KmsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    key_id = kms_server.create_key("RSA_3072")
    signer = KmsSigner.create(key_id, endpoint_url=kms_server.endpoint_url)
    path = tmp_path / "req.csr"
    path.write_bytes(build_csr(signer, parse_subject("CN=kmssign server test,C=DE")))
    openssl_verify(path)
    pubkey = subprocess.run(
        ["openssl", "req", "-pubkey", "-noout", "-in", str(path)],
        capture_output=True,
        check=True,
    ).stdout
    assert pubkey == public_key_pem(signer)
    der = kms_server.public_key_der(key_id)
    assert (
        serialization.load_pem_public_key(pubkey).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == der
    )


class LyingSigner(DelegatingSigner):
    """A signer whose signature does not belong to its public key."""

    @property
    def name(self) -> str:
        return "lying signer"

    def sign(self, data: bytes, digest: DigestName) -> bytes:
        return self.inner.sign(data + b"!", digest)


def test_csr_self_check_rejects_a_wrong_signature(mocked: Any) -> None:
    signer = LyingSigner(KmsSigner(create_kms_key(mocked, "RSA_2048"), mocked))
    with pytest.raises(SigningError) as info:
        build_csr(signer, parse_subject("CN=x"))
    assert str(info.value) == "lying signer returned a signature that does not match its public key"


def test_public_key_pem(mocked: Any) -> None:
    signer = KmsSigner(create_kms_key(mocked, "ECC_NIST_P256"), mocked)
    pem = public_key_pem(signer)
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    key = serialization.load_pem_public_key(pem)
    assert (
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == signer.public_key_der()
    )
