"""A signer whose private key stays in AWS KMS.

This is the only module that talks to boto3/botocore, and it imports them lazily so
that ``import kmssign`` stays light. Per signer object there is exactly one
``GetPublicKey`` call (cached, thread-safe) and one ``Sign`` per signature, with
``MessageType=RAW``: KMS hashes the message itself. The identity only needs
``kms:GetPublicKey`` and ``kms:Sign``; no ``DescribeKey`` or ``ListKeys``.

Every call has a total deadline (``timeout``, the ``kms-timeout`` setting), retries
included: botocore's connect and read timeouts bound one attempt each, and its retries
multiply them. Once KMS could not be reached (connection refused, no answer, the
deadline), the signer's circuit breaker opens and every later call fails at once.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from kmssign._internal.net import defaults
from kmssign._internal.net.breaker import CircuitBreaker
from kmssign._internal.net.deadline import Deadline, DeadlinePassed, call_within, stop_if_passed
from kmssign.errors import KmsUnavailableError, SigningError, one_line, redact
from kmssign.signers import DigestName, KeyType, Signer

# Key specs Authenticode can use, with their key type and (for EC) the bound digest.
KEY_SPECS: dict[str, tuple[KeyType, DigestName | None]] = {
    "RSA_2048": ("rsa", None),
    "RSA_3072": ("rsa", None),
    "RSA_4096": ("rsa", None),
    "ECC_NIST_P256": ("ec", "sha256"),
    "ECC_NIST_P384": ("ec", "sha384"),
    "ECC_NIST_P521": ("ec", "sha512"),
}
_ALGORITHMS: dict[tuple[KeyType, DigestName], str] = {
    ("rsa", "sha256"): "RSASSA_PKCS1_V1_5_SHA_256",
    ("rsa", "sha384"): "RSASSA_PKCS1_V1_5_SHA_384",
    ("rsa", "sha512"): "RSASSA_PKCS1_V1_5_SHA_512",
    ("ec", "sha256"): "ECDSA_SHA_256",
    ("ec", "sha384"): "ECDSA_SHA_384",
    ("ec", "sha512"): "ECDSA_SHA_512",
}
RAW_MESSAGE_LIMIT = 4096  # bytes KMS accepts with MessageType=RAW

# Retry policy. AWS_RETRY_MODE / AWS_MAX_ATTEMPTS in the environment win over these.
RETRY_MODE = "adaptive"
MAX_ATTEMPTS = 8  # total attempts, first try included
CONNECT_TIMEOUT = 10.0  # per attempt, at most the deadline
READ_TIMEOUT = 30.0  # per attempt, at most the deadline
DEFAULT_TIMEOUT = defaults.KMS_TIMEOUT  # seconds for one call, retries included

_THROTTLING = {
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
}
_BAD_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "SignatureDoesNotMatch",
    "MissingAuthenticationToken",
}


@dataclass(frozen=True)
class _KeyInfo:
    der: bytes
    spec: str
    key_type: KeyType
    curve_digest: DigestName | None
    algorithms: tuple[str, ...]


def _one_line(text: object) -> str:
    return one_line(redact(text))


class KmsSigner:
    """Signs with an asymmetric ``SIGN_VERIFY`` key in AWS KMS.

    ``key_id`` is a key id, key ARN, alias name (``alias/x``) or alias ARN. ``client``
    is a boto3 KMS client; the constructor makes no network call. ``timeout`` bounds
    each call, retries included. A signer serves one run: once KMS could not be
    reached, it is not called again (:class:`KmsUnavailableError`).
    """

    def __init__(self, key_id: str, client: Any, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._key_id = key_id
        self._client = client
        self._timeout = timeout
        self._lock = threading.Lock()
        self._info: _KeyInfo | None = None
        self._breaker = CircuitBreaker()
        events = getattr(getattr(client, "meta", None), "events", None)
        if events is not None:  # no attempt (retry) starts after a call's deadline
            events.register_first("before-send.kms", stop_if_passed, unique_id="kmssign")

    @classmethod
    def create(
        cls,
        key_id: str,
        *,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        max_connections: int = 16,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> KmsSigner:
        """A signer with a boto3 client from the default credential chain (no network).

        ``max_connections`` should be at least the number of threads that sign at once
        (``jobs``), or connections are dropped and re-opened under load. ``timeout`` is
        the total deadline of one call in seconds, retries included.
        """
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, NoRegionError, ProfileNotFound

        if region is None and key_id.startswith("arn:"):
            parts = key_id.split(":")
            if len(parts) > 3 and parts[3]:
                region = parts[3]  # a key ARN names its region; KMS wants that one
        if region is None:  # AWS's order: the setting, AWS_REGION, then botocore's own
            region = os.environ.get("AWS_REGION", "").strip() or None  # (it skips AWS_REGION)
        retries: Any = {}  # botocore's retry dict
        if not os.environ.get("AWS_RETRY_MODE"):
            retries["mode"] = RETRY_MODE
        if not os.environ.get("AWS_MAX_ATTEMPTS"):
            retries["total_max_attempts"] = MAX_ATTEMPTS
        config = Config(
            retries=retries or None,
            connect_timeout=min(CONNECT_TIMEOUT, timeout),
            read_timeout=min(READ_TIMEOUT, timeout),
            max_pool_connections=max(10, max_connections),
            # the parameters are built here, never taken from users: checking them
            # against the service model again costs time on every Sign call
            parameter_validation=False,
        )
        try:
            session = boto3.Session(profile_name=profile, region_name=region)
            client = session.client("kms", endpoint_url=endpoint_url, config=config)
        except ProfileNotFound as exc:
            raise SigningError(
                f"AWS profile {profile!r} not found (needed for KMS key {key_id})"
            ) from exc
        except NoRegionError as exc:
            raise SigningError(
                f"no AWS region set for KMS key {key_id}: set the region setting, "
                "AWS_REGION or AWS_DEFAULT_REGION, or use the key's ARN"
            ) from exc
        except ValueError as exc:
            raise SigningError(
                redact(f"invalid KMS endpoint URL {endpoint_url!r}: {_one_line(exc)}")
            ) from exc
        except BotoCoreError as exc:
            raise SigningError(
                f"cannot set up AWS access for KMS key {key_id}: {_one_line(exc)}"
            ) from exc
        return cls(key_id, client, timeout=timeout)

    # -- Signer protocol -------------------------------------------------------------

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def region(self) -> str | None:
        """The AWS region of the client (``None`` for clients without one)."""
        region = getattr(getattr(self._client, "meta", None), "region_name", None)
        return str(region) if region else None

    @property
    def name(self) -> str:
        return f"KMS key {self._key_id}"

    @property
    def key_spec(self) -> str:
        return self._key_info().spec

    @property
    def key_type(self) -> KeyType:
        return self._key_info().key_type

    def public_key_der(self) -> bytes:
        return self._key_info().der

    def digest_for(self, requested: DigestName) -> DigestName:
        info = self._key_info()
        return info.curve_digest or requested

    def sign(self, data: bytes, digest: DigestName) -> bytes:
        info = self._key_info()
        algorithm = _ALGORITHMS.get((info.key_type, digest))
        if algorithm is None or algorithm not in info.algorithms:
            offered = ", ".join(info.algorithms) or "none"
            raise SigningError(
                f"{self.name} ({info.spec}) does not support signing algorithm "
                f"{algorithm or digest}; it supports {offered}"
            )
        if len(data) > RAW_MESSAGE_LIMIT:
            raise SigningError(
                f"{self.name}: {len(data)} bytes to sign exceed the KMS limit of "
                f"{RAW_MESSAGE_LIMIT} bytes for raw messages"
            )
        response = self._call(
            "Sign",
            KeyId=self._key_id,
            Message=data,
            MessageType="RAW",
            SigningAlgorithm=algorithm,
        )
        signature = response.get("Signature")
        if not isinstance(signature, bytes) or not signature:
            raise SigningError(f"{self.name}: KMS returned no signature")
        return signature

    # -- internals -------------------------------------------------------------------

    def _key_info(self) -> _KeyInfo:
        info = self._info
        if info is not None:
            return info
        with self._lock:
            if self._info is None:
                self._info = self._fetch_key_info()
            return self._info

    def _fetch_key_info(self) -> _KeyInfo:
        response = self._call("GetPublicKey", KeyId=self._key_id)
        usage = response.get("KeyUsage")
        if usage != "SIGN_VERIFY":
            raise SigningError(f"{self.name} has key usage {usage}; a SIGN_VERIFY key is needed")
        spec = str(response.get("KeySpec") or response.get("CustomerMasterKeySpec") or "")
        if spec not in KEY_SPECS:
            raise SigningError(
                f"{self.name} has key spec {spec or 'unknown'}; Authenticode needs "
                f"one of {', '.join(KEY_SPECS)}"
            )
        der = response.get("PublicKey")
        if not isinstance(der, bytes) or not der:
            raise SigningError(f"{self.name}: KMS returned no public key")
        key_type, curve_digest = KEY_SPECS[spec]
        algorithms = tuple(str(a) for a in response.get("SigningAlgorithms") or ())
        return _KeyInfo(der, spec, key_type, curve_digest, algorithms)

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        unreachable = self._breaker.reason
        if unreachable is not None:
            raise KmsUnavailableError(f"not calling KMS again in this run: {unreachable}")
        method = getattr(self._client, "get_public_key" if operation == "GetPublicKey" else "sign")
        try:
            response: dict[str, Any] = call_within(
                Deadline(self._timeout), lambda: method(**params), name=f"kmssign-{operation}"
            )
            return response
        except DeadlinePassed as exc:
            late = SigningError(
                f"kms:{operation} for {self.name} did not complete within "
                f"{self._timeout:g} s (kms-timeout; retries included)"
            )
            self._breaker.trip(str(late))
            raise late from exc
        except Exception as exc:
            error = kms_error(exc, operation, self._key_id, self._client, params)
            if error is None:
                raise
            if _unreachable(exc):
                self._breaker.trip(str(error))
            raise error from exc


def _unreachable(exc: BaseException) -> bool:
    """Whether botocore could not reach the endpoint (refused, reset, no answer)."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    return isinstance(exc, (BotoConnectionError, HTTPClientError))


def kms_error(
    exc: BaseException,
    operation: str,
    key_id: str,
    client: Any = None,
    params: dict[str, Any] | None = None,
) -> SigningError | None:
    """Translate a boto3/botocore error into a one-line :class:`SigningError`.

    Returns ``None`` for exceptions that are not from boto3/botocore.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        CredentialRetrievalError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
        SSOError,
        TokenRetrievalError,
    )

    meta = getattr(client, "meta", None)
    region = getattr(meta, "region_name", None) or "(no region)"
    endpoint = getattr(meta, "endpoint_url", None)
    key = f"KMS key {key_id}"
    action = f"kms:{operation}"

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = _one_line(err.get("Message", ""))
        lowered = message.lower()
        if code == "NotFoundException":
            return SigningError(f"{key} not found in region {region}")
        if code == "DisabledException":
            return SigningError(f"{key} is disabled")
        if code == "KMSInvalidStateException":
            if "pending deletion" in lowered or "pendingdeletion" in lowered:
                return SigningError(f"{key} is pending deletion")
            if "pending import" in lowered or "pendingimport" in lowered:
                return SigningError(f"{key} has no key material imported yet")
            return SigningError(f"{key} is not in a usable state: {message}")
        if code in ("AccessDeniedException", "AccessDenied"):
            return SigningError(
                f"access denied: this AWS identity may not call {action} on {key} "
                "(kmssign needs kms:GetPublicKey and kms:Sign)"
            )
        if code == "UnsupportedOperationException" and operation == "GetPublicKey":
            return SigningError(
                f"{key} is a symmetric or HMAC key; an asymmetric SIGN_VERIFY key is needed"
            )
        if code in ("InvalidKeyUsageException", "ValidationException") and (
            "usage" in lowered and "sign_verify" in lowered
        ):
            return SigningError(f"{key} is not a SIGN_VERIFY key; a SIGN_VERIFY key is needed")
        if code in ("InvalidKeyUsageException", "ValidationException") and (
            "algorithm" in lowered or code == "InvalidKeyUsageException"
        ):
            algorithm = (params or {}).get("SigningAlgorithm", "the requested algorithm")
            return SigningError(f"{key} does not support signing algorithm {algorithm}")
        if code in _THROTTLING:
            return SigningError(
                f"KMS kept throttling {action} for {key} after retries; lower jobs or "
                "raise the KMS request quota"
            )
        if code in _BAD_CREDENTIALS:
            return SigningError(f"AWS rejected the credentials used for {key} ({code}): {message}")
        if code == "InvalidArnException":
            return SigningError(f"{key_id!r} is not a valid KMS key id, key ARN or alias")
        return SigningError(f"{action} failed for {key} ({code or 'error'}): {message}")

    if isinstance(exc, NoCredentialsError):
        return SigningError(
            f"no AWS credentials found for {key}: configure a profile, "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO or a web identity (OIDC) role"
        )
    if isinstance(
        exc, (PartialCredentialsError, CredentialRetrievalError, TokenRetrievalError, SSOError)
    ):
        return SigningError(f"cannot load AWS credentials for {key}: {_one_line(exc)}")
    if isinstance(exc, NoRegionError):
        return SigningError(
            f"no AWS region set for {key}: set the region setting, "
            "AWS_REGION or AWS_DEFAULT_REGION, or use the key's ARN"
        )
    if _unreachable(exc):
        url = getattr(exc, "kwargs", {}).get("endpoint_url") or endpoint or "(unknown)"
        return SigningError(
            redact(f"cannot reach the KMS endpoint {url} for {key}: {_one_line(exc)}")
        )
    if isinstance(exc, ParamValidationError):
        return SigningError(f"invalid KMS request for {key}: {_one_line(exc)}")
    if isinstance(exc, BotoCoreError):
        return SigningError(f"{action} failed for {key}: {_one_line(exc)}")
    return None


def resolve_digest_note(signer: Signer, requested: DigestName) -> str | None:
    """A message when the signer's key overrides the requested digest, else ``None``."""
    actual = signer.digest_for(requested)
    if actual == requested:
        return None
    return (
        f"{signer.name} is an elliptic-curve key bound to {actual}; "
        f"signing with {actual} instead of the requested {requested}"
    )
