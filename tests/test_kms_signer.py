"""KmsSigner against moto (in-process mock_aws and the loopback server) and stubbed errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from moto import mock_aws

from kmssign._internal.signers.aws_kms import KmsSigner, resolve_digest_note
from kmssign.errors import SigningError
from kmssign.signers import DIGESTS, Signer
from tests.support.fixtures_kms import KmsIdentity, KmsServer, create_kms_key, kms_client
from tests.support.pki import TestPKI

REGION = "eu-west-1"
ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
DATA = b"\x31\x82\x01\x00" + bytes(range(256))  # shaped like a DER SET of attributes
HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}
CURVES = {"ECC_NIST_P256": "sha256", "ECC_NIST_P384": "sha384", "ECC_NIST_P521": "sha512"}
SPECS = ["RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"]


@pytest.fixture
def mocked() -> Iterator[Any]:
    """An in-process moto KMS client in eu-west-1."""
    with mock_aws():
        yield kms_client(region=REGION)


def count_calls(client: Any, operation: str) -> list[int]:
    calls: list[int] = []

    def hook(**_: Any) -> None:
        calls.append(1)

    client.meta.events.register(f"before-call.kms.{operation}", hook)
    return calls


def verify(public_der: bytes, signature: bytes, data: bytes, digest: str) -> None:
    key = serialization.load_der_public_key(public_der)
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), HASHES[digest])
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(signature, data, ec.ECDSA(HASHES[digest]))


def stubbed_signer(key_id: str = "alias/release") -> tuple[KmsSigner, Stubber]:
    client = kms_client(region=REGION)
    return KmsSigner(key_id, client), Stubber(client)


def public_key_response(spec: str = "RSA_2048", usage: str = "SIGN_VERIFY") -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "KeyId": ARN,
        "PublicKey": der,
        "KeySpec": spec,
        "KeyUsage": usage,
        "SigningAlgorithms": ["RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PSS_SHA_256"],
    }


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment without any AWS credentials, region or config files."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_RETRY_MODE",
        "AWS_MAX_ATTEMPTS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# -- signing with every key spec ----------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_signs_raw_messages_that_verify(mocked: Any, spec: str) -> None:
    key_id = create_kms_key(mocked, spec)
    signer: Signer = KmsSigner(key_id, mocked)
    der = signer.public_key_der()
    assert der == mocked.get_public_key(KeyId=key_id)["PublicKey"]
    assert signer.key_type == ("rsa" if spec.startswith("RSA") else "ec")
    for requested in DIGESTS:
        digest = signer.digest_for(requested)
        assert digest == CURVES.get(spec, requested)
        signature = signer.sign(DATA, digest)
        verify(der, signature, DATA, digest)
        with pytest.raises(InvalidSignature):
            verify(der, signature, DATA + b"\x00", digest)


def test_name_and_protocol(mocked: Any) -> None:
    signer = KmsSigner("alias/release", mocked)
    assert signer.name == "KMS key alias/release"
    assert signer.key_id == "alias/release"
    assert signer.region == REGION


def test_alias_and_arn_sign(mocked: Any) -> None:
    key_id = create_kms_key(mocked, "ECC_NIST_P256", alias="alias/release")
    arn = mocked.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    for name in ("alias/release", arn, key_id):
        signer = KmsSigner(name, mocked)
        verify(signer.public_key_der(), signer.sign(DATA, "sha256"), DATA, "sha256")


def test_one_get_public_key_for_many_signs(mocked: Any) -> None:
    key_id = create_kms_key(mocked, "RSA_2048")
    get_calls = count_calls(mocked, "GetPublicKey")
    sign_calls = count_calls(mocked, "Sign")
    signer = KmsSigner(key_id, mocked)
    assert get_calls == []  # the constructor makes no call
    for _ in range(5):
        signer.sign(DATA, "sha256")
        signer.public_key_der()
        assert signer.key_type == "rsa"
        assert signer.digest_for("sha384") == "sha384"
    assert len(get_calls) == 1
    assert len(sign_calls) == 5


def test_public_key_fetch_is_thread_safe(mocked: Any) -> None:
    key_id = create_kms_key(mocked, "ECC_NIST_P384")
    calls = count_calls(mocked, "GetPublicKey")
    signer = KmsSigner(key_id, mocked)
    barrier = threading.Barrier(8)
    results: list[bytes] = []

    def work() -> None:
        barrier.wait()
        results.append(signer.public_key_der())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert len(calls) == 1


def test_digest_note(mocked: Any) -> None:
    ec_signer = KmsSigner(create_kms_key(mocked, "ECC_NIST_P384"), mocked)
    rsa_signer = KmsSigner(create_kms_key(mocked, "RSA_2048"), mocked)
    assert resolve_digest_note(rsa_signer, "sha512") is None
    assert resolve_digest_note(ec_signer, "sha384") is None
    assert resolve_digest_note(ec_signer, "sha256") == (
        f"{ec_signer.name} is an elliptic-curve key bound to sha384; "
        "signing with sha384 instead of the requested sha256"
    )


# -- errors moto can produce ----------------------------------------------------------------


def test_alias_not_found(mocked: Any) -> None:
    signer = KmsSigner("alias/x", mocked)
    with pytest.raises(SigningError) as info:
        signer.public_key_der()
    assert str(info.value) == "KMS key alias/x not found in region eu-west-1"


def test_key_id_not_found(mocked: Any) -> None:
    key_id = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(SigningError, match=f"^KMS key {key_id} not found in region eu-west-1$"):
        KmsSigner(key_id, mocked).sign(DATA, "sha256")


@pytest.mark.parametrize(
    ("spec", "usage"), [("RSA_2048", "ENCRYPT_DECRYPT"), ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")]
)
def test_wrong_key_usage(mocked: Any, spec: str, usage: str) -> None:
    key_id = create_kms_key(mocked, spec, usage)
    sign_calls = count_calls(mocked, "Sign")
    with pytest.raises(SigningError) as info:
        KmsSigner(key_id, mocked).sign(DATA, "sha256")
    assert str(info.value) == (
        f"KMS key {key_id} has key usage ENCRYPT_DECRYPT; a SIGN_VERIFY key is needed"
    )
    assert sign_calls == []


def test_key_spec_not_usable_for_authenticode(mocked: Any) -> None:
    key_id = create_kms_key(mocked, "ECC_SECG_P256K1")
    with pytest.raises(SigningError) as info:
        KmsSigner(key_id, mocked).public_key_der()
    assert str(info.value) == (
        f"KMS key {key_id} has key spec ECC_SECG_P256K1; Authenticode needs one of RSA_2048, "
        "RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521"
    )


def test_signing_algorithm_not_supported_by_key(mocked: Any) -> None:
    key_id = create_kms_key(mocked, "ECC_NIST_P256")
    sign_calls = count_calls(mocked, "Sign")
    with pytest.raises(SigningError) as info:
        KmsSigner(key_id, mocked).sign(DATA, "sha384")
    assert str(info.value) == (
        f"KMS key {key_id} (ECC_NIST_P256) does not support signing algorithm ECDSA_SHA_384; "
        "it supports ECDSA_SHA_256"
    )
    assert sign_calls == []


def test_message_too_long_for_raw(mocked: Any) -> None:
    key_id = create_kms_key(mocked, "RSA_2048")
    with pytest.raises(SigningError, match="5000 bytes to sign exceed the KMS limit of 4096"):
        KmsSigner(key_id, mocked).sign(b"x" * 5000, "sha256")


# -- errors from real AWS that moto does not produce (botocore Stubber) --------------------


@pytest.mark.parametrize(
    ("operation", "code", "aws_message", "expected"),
    [
        (
            "get_public_key",
            "DisabledException",
            f"{ARN} is disabled.",
            "KMS key alias/release is disabled",
        ),
        (
            "get_public_key",
            "KMSInvalidStateException",
            f"{ARN} is pending deletion.",
            "KMS key alias/release is pending deletion",
        ),
        (
            "get_public_key",
            "KMSInvalidStateException",
            f"{ARN} is pending import.",
            "KMS key alias/release has no key material imported yet",
        ),
        (
            "get_public_key",
            "AccessDeniedException",
            "User: arn:aws:iam::111122223333:user/ci is not authorized to perform: "
            "kms:GetPublicKey on resource: " + ARN,
            "access denied: this AWS identity may not call kms:GetPublicKey on KMS key "
            "alias/release (kmssign needs kms:GetPublicKey and kms:Sign)",
        ),
        (
            "get_public_key",
            "UnsupportedOperationException",
            f"{ARN} key usage is ENCRYPT_DECRYPT which is not valid for GetPublicKey.",
            "KMS key alias/release is a symmetric or HMAC key; an asymmetric SIGN_VERIFY key "
            "is needed",
        ),
        (
            "get_public_key",
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            "AWS rejected the credentials used for KMS key alias/release "
            "(UnrecognizedClientException): The security token included in the request is "
            "invalid.",
        ),
        (
            "get_public_key",
            "ThrottlingException",
            "Rate exceeded",
            "KMS kept throttling kms:GetPublicKey for KMS key alias/release after retries; "
            "lower jobs or raise the KMS request quota",
        ),
        (
            "get_public_key",
            "InvalidArnException",
            "Invalid arn",
            "'alias/release' is not a valid KMS key id, key ARN or alias",
        ),
        (
            "get_public_key",
            "KMSInternalException",
            "Internal\nfailure",
            "kms:GetPublicKey failed for KMS key alias/release (KMSInternalException): "
            "Internal failure",
        ),
    ],
)
def test_get_public_key_errors(operation: str, code: str, aws_message: str, expected: str) -> None:
    signer, stubber = stubbed_signer()
    stubber.add_client_error(operation, service_error_code=code, service_message=aws_message)
    with stubber, pytest.raises(SigningError) as info:
        signer.sign(DATA, "sha256")
    assert str(info.value) == expected
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("code", "aws_message", "expected"),
    [
        (
            "AccessDeniedException",
            "User: arn:aws:iam::111122223333:user/ci is not authorized to perform: kms:Sign",
            "access denied: this AWS identity may not call kms:Sign on KMS key alias/release "
            "(kmssign needs kms:GetPublicKey and kms:Sign)",
        ),
        (
            "ThrottlingException",
            "Rate exceeded",
            "KMS kept throttling kms:Sign for KMS key alias/release after retries; lower jobs "
            "or raise the KMS request quota",
        ),
        (
            "InvalidKeyUsageException",
            "You cannot use RSASSA_PKCS1_V1_5_SHA_256 with this key.",
            "KMS key alias/release does not support signing algorithm RSASSA_PKCS1_V1_5_SHA_256",
        ),
        (
            "InvalidKeyUsageException",
            f"{ARN} key usage is ENCRYPT_DECRYPT, not SIGN_VERIFY.",
            "KMS key alias/release is not a SIGN_VERIFY key; a SIGN_VERIFY key is needed",
        ),
        ("DisabledException", f"{ARN} is disabled.", "KMS key alias/release is disabled"),
        (
            "ExpiredTokenException",
            "The security token included in the request is expired",
            "AWS rejected the credentials used for KMS key alias/release "
            "(ExpiredTokenException): The security token included in the request is expired",
        ),
    ],
)
def test_sign_errors(code: str, aws_message: str, expected: str) -> None:
    signer, stubber = stubbed_signer()
    stubber.add_response("get_public_key", public_key_response(), {"KeyId": "alias/release"})
    stubber.add_client_error("sign", service_error_code=code, service_message=aws_message)
    with stubber, pytest.raises(SigningError) as info:
        signer.sign(DATA, "sha256")
    assert str(info.value) == expected
    stubber.assert_no_pending_responses()


def test_sign_request_is_raw_with_the_right_algorithm() -> None:
    signer, stubber = stubbed_signer()
    stubber.add_response("get_public_key", public_key_response(), {"KeyId": "alias/release"})
    stubber.add_response(
        "sign",
        {"KeyId": ARN, "Signature": b"sig", "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256"},
        {
            "KeyId": "alias/release",
            "Message": DATA,
            "MessageType": "RAW",
            "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
        },
    )
    with stubber:
        assert signer.sign(DATA, "sha256") == b"sig"
    stubber.assert_no_pending_responses()


def test_key_usage_checked_from_the_same_response() -> None:
    signer, stubber = stubbed_signer()
    stubber.add_response(
        "get_public_key", public_key_response(usage="KEY_AGREEMENT"), {"KeyId": "alias/release"}
    )
    with stubber, pytest.raises(SigningError) as info:
        signer.public_key_der()
    assert str(info.value) == (
        "KMS key alias/release has key usage KEY_AGREEMENT; a SIGN_VERIFY key is needed"
    )


def test_foreign_exceptions_propagate() -> None:
    class Broken:
        def get_public_key(self, **_: Any) -> Any:
            raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        KmsSigner("k", Broken()).public_key_der()


# -- session, credentials, region, endpoint ------------------------------------------------


def test_create_configures_retries_and_makes_no_call(no_aws_env: None) -> None:
    signer = KmsSigner.create("alias/x", region="eu-central-1")
    config = signer._client.meta.config
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 8}
    assert config.connect_timeout == 10.0 and config.read_timeout == 30.0
    assert signer.region == "eu-central-1"


def test_per_attempt_timeouts_never_exceed_the_call_deadline(no_aws_env: None) -> None:
    config = KmsSigner.create("alias/x", region="eu-central-1", timeout=4)._client.meta.config
    assert config.connect_timeout == 4 and config.read_timeout == 4


def test_create_honours_aws_retry_env(no_aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    signer = KmsSigner.create("alias/x", region="eu-central-1")
    assert signer._client.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}


def test_region_comes_from_a_key_arn(no_aws_env: None) -> None:
    assert KmsSigner.create(ARN).region == "eu-west-1"
    assert KmsSigner.create(ARN, region="us-east-2").region == "us-east-2"


def test_no_region(no_aws_env: None) -> None:
    with pytest.raises(SigningError) as info:
        KmsSigner.create("alias/x")
    assert str(info.value) == (
        "no AWS region set for KMS key alias/x: set the region setting, AWS_REGION or "
        "AWS_DEFAULT_REGION, or use the key's ARN"
    )


def test_unknown_profile(no_aws_env: None) -> None:
    with pytest.raises(SigningError) as info:
        KmsSigner.create("alias/x", profile="release", region="eu-west-1")
    assert str(info.value) == "AWS profile 'release' not found (needed for KMS key alias/x)"


def test_invalid_endpoint_url(no_aws_env: None) -> None:
    with pytest.raises(SigningError, match=r"^invalid KMS endpoint URL 'localhost:4566': "):
        KmsSigner.create("alias/x", region="eu-west-1", endpoint_url="localhost:4566")


def test_no_credentials(no_aws_env: None) -> None:
    signer = KmsSigner.create(
        "alias/x", region="eu-west-1", endpoint_url=f"http://127.0.0.1:{closed_port()}"
    )
    with pytest.raises(SigningError) as info:
        signer.public_key_der()
    assert str(info.value) == (
        "no AWS credentials found for KMS key alias/x: configure a profile, "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO or a web identity (OIDC) role"
    )


def test_endpoint_unreachable(no_aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    port = closed_port()
    signer = KmsSigner.create(
        "alias/x", region="eu-west-1", endpoint_url=f"http://127.0.0.1:{port}"
    )
    with pytest.raises(SigningError) as info:
        signer.public_key_der()
    message = str(info.value)
    assert message.startswith(
        f"cannot reach the KMS endpoint http://127.0.0.1:{port}/ for KMS key alias/x: "
    )
    assert "Could not connect to the endpoint URL" in message


# -- the loopback moto server (real HTTP) ---------------------------------------------------


@pytest.mark.parametrize("spec", ["RSA_3072", "ECC_NIST_P384"])
def test_server_via_endpoint_url(kms_server: KmsServer, aws_env: dict[str, str], spec: str) -> None:
    key_id = kms_server.create_key(spec)
    signer = KmsSigner.create(key_id, endpoint_url=kms_server.endpoint_url)
    digest = signer.digest_for("sha256")
    verify(signer.public_key_der(), signer.sign(DATA, digest), DATA, digest)


def test_server_via_aws_endpoint_url_env(kms_server: KmsServer, aws_env: dict[str, str]) -> None:
    key_id = kms_server.create_key("RSA_2048", alias="alias/env-endpoint")
    signer = KmsSigner.create("alias/env-endpoint")  # endpoint and region from the env
    assert signer._client.meta.endpoint_url == kms_server.endpoint_url
    verify(signer.public_key_der(), signer.sign(DATA, "sha256"), DATA, "sha256")
    assert signer.public_key_der() == kms_server.public_key_der(key_id)


def _throttled(url: str) -> AWSResponse:
    class Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield b'{"__type":"ThrottlingException","message":"Rate exceeded"}'

    headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "t"}
    return AWSResponse(url, 400, headers, Raw())


def test_throttled_sign_is_retried_and_succeeds(
    kms_server: KmsServer, aws_env: dict[str, str]
) -> None:
    key_id = kms_server.create_key("ECC_NIST_P256")
    signer = KmsSigner.create(key_id, endpoint_url=kms_server.endpoint_url)
    signer.public_key_der()
    attempts: list[int] = []

    def throttle_once(request: Any, **_: Any) -> AWSResponse | None:
        attempts.append(1)
        return _throttled(request.url) if len(attempts) == 1 else None

    signer._client.meta.events.register_first("before-send.kms.Sign", throttle_once)
    signature = signer.sign(DATA, "sha256")
    assert len(attempts) == 2
    verify(signer.public_key_der(), signature, DATA, "sha256")


def test_throttling_that_outlasts_retries(
    kms_server: KmsServer, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    key_id = kms_server.create_key("RSA_2048")
    signer = KmsSigner.create(key_id, endpoint_url=kms_server.endpoint_url)
    signer.public_key_der()
    attempts: list[int] = []

    def always_throttle(request: Any, **_: Any) -> AWSResponse:
        attempts.append(1)
        return _throttled(request.url)

    signer._client.meta.events.register_first("before-send.kms.Sign", always_throttle)
    with pytest.raises(SigningError, match=r"^KMS kept throttling kms:Sign for KMS key "):
        signer.sign(DATA, "sha256")
    assert len(attempts) == 2


def test_importing_kmssign_does_not_import_boto3() -> None:
    code = (
        "import sys, kmssign, kmssign.config, kmssign._internal.pki.csr, "
        "kmssign._internal.signers.aws_kms; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("spec", ["RSA_2048", "ECC_NIST_P256"])
def test_kms_identity_fixture(
    kms_identity: Callable[..., KmsIdentity],
    kms_server: KmsServer,
    pki: TestPKI,
    aws_env: dict[str, str],
    spec: str,
) -> None:
    key_id, cert_path = kms_identity(spec)
    assert kms_identity(spec) == (key_id, cert_path)  # cached for the session
    leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    signer = KmsSigner.create(key_id)
    assert (
        leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == signer.public_key_der()
    )


def test_subprocess_reaches_the_server_through_aws_env(
    kms_server: KmsServer, aws_env: dict[str, str]
) -> None:
    key_id = kms_server.create_key("ECC_NIST_P256", alias="alias/subprocess")
    code = (
        "from kmssign._internal.signers.aws_kms import KmsSigner; "
        "print(KmsSigner.create('alias/subprocess').public_key_der().hex())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=aws_env
    )
    assert result.returncode == 0, result.stderr
    assert bytes.fromhex(result.stdout.strip()) == kms_server.public_key_der(key_id)
