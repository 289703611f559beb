"""The digest algorithms CMS signatures may use here, and the one raw signature check.

sha1 is only read (old tokens and signatures that ``verify`` meets); kmssign signs with
the SHA-2 family (:data:`kmssign.signers.DIGESTS`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from asn1crypto import algos
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from kmssign._internal.cms.structures import algorithm
from kmssign._internal.digests import HASHES
from kmssign.errors import VerificationError


def digest_bytes(name: str, data: bytes) -> bytes:
    """Hash ``data`` with one of the supported algorithms (``sha256``, ...)."""
    if name not in HASHES:
        raise VerificationError(f"unsupported hash algorithm {name}")
    return hashlib.new(name, data).digest()


def digest_name(element: bytes) -> str:
    """The name (``sha256``) or dotted OID of a digest AlgorithmIdentifier element."""
    return str(algos.DigestAlgorithmId.load(algorithm(element)).native)


def signature_kind(element: bytes) -> str:
    """``rsassa_pkcs1v15``, ``ecdsa``, ... for a signature AlgorithmIdentifier element
    (ValueError for one asn1crypto does not know)."""
    return str(algos.SignedDigestAlgorithm.load(element).signature_algo)


def key_fits(kind: str, public_key: Any) -> bool:
    """Whether a signature of ``kind`` can be made by ``public_key``'s private key."""
    if kind == "rsassa_pkcs1v15":
        return isinstance(public_key, rsa.RSAPublicKey)
    if kind == "ecdsa":
        return isinstance(public_key, ec.EllipticCurvePublicKey)
    return False


def verify_raw_signature(public_key: Any, signature: bytes, data: bytes, digest: str) -> bool:
    """True when ``signature`` over ``data`` verifies with an RSA (PKCS#1 v1.5) or EC
    public key, ``data`` hashed with ``digest``."""
    hash_algorithm = HASHES[digest]()
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True
