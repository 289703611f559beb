"""A signer whose private key stays on a PKCS#11 token: a USB token, a smart card, an HSM.

The only module that imports the binding, python-pkcs11 (the ``kmssign[pkcs11]`` extra);
it is imported only when the ``pkcs11`` signer is chosen.

PKCS#11's rules, and how they are kept:

- a session must not be used by two threads at once: every thread that signs opens its
  own session (kept for the signer's life), and finds the key in it;
- login state belongs to the application, not the session: the first session logs in,
  once; every later one is logged in with it. A failed login counts against the token's
  retry limit, so a wrong PIN is never tried again: the failure is remembered and every
  later call raises it without touching the token;
- python-pkcs11 initializes the module for an application that makes no concurrent
  calls (``C_Initialize(NULL)``), and some modules (SoftHSM2) then run without locks of
  their own: the calls into the module take one lock. Hashing, copying and timestamps
  of the batch stay concurrent; only the token's own work is one at a time, as a token
  does it anyway.

RSA signs with ``CKM_SHA{256,384,512}_RSA_PKCS`` (the token hashes) where the token has
it, else ``CKM_RSA_PKCS`` over a DigestInfo built here; EC signs a hash made here with
``CKM_ECDSA``, whose raw ``r||s`` becomes the DER ``ECDSA-Sig-Value`` CMS wants.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from typing import Any

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11

from kmssign._internal.signers.pkcs11uri import PIN_ENV, Pkcs11Target
from kmssign.errors import ConfigError, SigningError, one_line
from kmssign.signers import DigestName
from kmssign.signers import KeyType as SignerKeyType

# DER of the named-curve OIDs in CKA_EC_PARAMS, with the curve and its bound digest
_CURVES: dict[bytes, tuple[ec.EllipticCurve, DigestName]] = {
    bytes.fromhex("06082a8648ce3d030107"): (ec.SECP256R1(), "sha256"),
    bytes.fromhex("06052b81040022"): (ec.SECP384R1(), "sha384"),
    bytes.fromhex("06052b81040023"): (ec.SECP521R1(), "sha512"),
}
_RSA_MECHANISMS: dict[str, Mechanism] = {
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}
# DER DigestInfo prefixes (RFC 8017 section 9.2, note 1) for CKM_RSA_PKCS
_DIGEST_INFO: dict[str, bytes] = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


# Logins refused in this process, by (module, token, the PIN's hash): the same wrong PIN
# is never offered to a token twice, even by a later signer (a second build step).
_REFUSED: dict[tuple[str, str, str], SigningError] = {}


def _reason(exc: BaseException) -> str:
    return one_line(exc) or type(exc).__name__


class Pkcs11Signer:
    """Signs with a private key on a PKCS#11 token; the constructor touches nothing."""

    def __init__(self, target: Pkcs11Target) -> None:
        self._target = target
        self._lock = threading.RLock()  # every call into the module
        self._local = threading.local()
        self._token: Any = None
        self._sessions: list[Any] = []  # kept open (closing the first would log out all)
        self._logged_in = False
        self._failure: SigningError | None = None  # a login that failed: never retried
        self._public: bytes | None = None
        self._key_type: SignerKeyType | None = None
        self._curve_digest: DigestName | None = None
        self._mechanisms: set[Any] = set()

    @property
    def name(self) -> str:
        return f"PKCS#11 key {self._target.key_name} on {self._target.token_name}"

    # -- the token, once ------------------------------------------------------------

    def _open_token(self) -> Any:
        if self._token is not None:
            return self._token
        module = self._target.module
        if not module.is_file():
            raise ConfigError(f"pkcs11-module {module}: no such file")
        try:
            lib = pkcs11.lib(str(module))
        except p11.PKCS11Error as exc:
            raise SigningError(f"cannot load PKCS#11 module {module}: {_reason(exc)}") from exc
        try:
            serial = self._target.serial
            tokens = list(lib.get_tokens(token_label=self._target.token,
                                         token_serial=serial.encode() if serial else None))
        except p11.PKCS11Error as exc:
            raise SigningError(f"PKCS#11 module {module}: cannot list tokens: {_reason(exc)}"
                               ) from exc
        if not tokens:
            present = ", ".join(repr(t.label) for t in lib.get_tokens() if t.label) or "none"
            raise SigningError(
                f"no {self._target.token_name} in PKCS#11 module {module} (tokens: {present})"
            )
        if len(tokens) > 1:
            names = ", ".join(repr(t.label) for t in tokens)
            raise ConfigError(f"several tokens in {module} ({names}): set pkcs11-token")
        token = tokens[0]
        if token.flags & TokenFlag.USER_PIN_LOCKED:
            raise SigningError(
                f"{self._target.token_name} is locked (too many wrong PINs): unlock it with "
                "the security officer's PIN"
            )
        try:
            self._mechanisms = set(token.slot.get_mechanisms())
        except p11.PKCS11Error:
            self._mechanisms = set()
        self._token = token
        return token

    def _login(self, token: Any) -> Any:
        """The first session, logged in: the one login of this signer."""
        pin: Any = self._target.pin()
        if pin is None:
            if not token.flags & TokenFlag.PROTECTED_AUTHENTICATION_PATH:
                raise ConfigError(
                    f"no PIN for {self._target.token_name}: set {PIN_ENV} or pkcs11-pin-file"
                )
            pin = pkcs11.PROTECTED_AUTH  # the reader's own PIN pad
        refused = (str(self._target.module), self._target.token_name,
                   hashlib.sha256(pin.encode()).hexdigest() if isinstance(pin, str) else "")
        if refused in _REFUSED:
            raise _REFUSED[refused]
        try:
            return token.open(user_pin=pin)
        except p11.PinIncorrect as exc:
            error = SigningError(
                f"wrong PIN for {self._target.token_name} (not retried: each wrong PIN brings "
                "the token closer to locking)"
            )
            _REFUSED[refused] = error
            raise error from exc
        except p11.PinLocked as exc:
            raise SigningError(
                f"{self._target.token_name} is locked (too many wrong PINs): unlock it with "
                "the security officer's PIN"
            ) from exc
        except p11.UserAlreadyLoggedIn:
            return token.open()  # another part of this process logged in already
        except p11.PKCS11Error as exc:
            raise SigningError(f"cannot log in to {self._target.token_name}: {_reason(exc)}"
                               ) from exc

    def _session(self) -> Any:
        """This thread's session (opened, and the first one logged in, on first use)."""
        session = getattr(self._local, "session", None)
        if session is not None:
            return session
        if self._failure is not None:
            raise self._failure
        try:
            token = self._open_token()
            if not self._logged_in:
                session = self._login(token)
                self._logged_in = True
            else:
                session = token.open()
        except SigningError as exc:
            self._failure = exc
            raise
        except p11.PKCS11Error as exc:
            raise SigningError(f"cannot open a session on {self._target.token_name}: "
                               f"{_reason(exc)}") from exc
        self._sessions.append(session)
        self._local.session = session
        self._local.key = None
        return session

    def _find(self, session: Any, object_class: ObjectClass) -> list[Any]:
        attrs: dict[Attribute, Any] = {Attribute.CLASS: object_class}
        if self._target.label is not None:
            attrs[Attribute.LABEL] = self._target.label
        if self._target.key_id is not None:
            attrs[Attribute.ID] = self._target.key_id
        return list(session.get_objects(attrs))

    def _private_key(self) -> Any:
        session = self._session()
        key = self._local.key
        if key is None:
            keys = self._find(session, ObjectClass.PRIVATE_KEY)
            if not keys:
                raise SigningError(
                    f"no private key with {self._target.key_name} on {self._target.token_name}"
                )
            if len(keys) > 1:
                raise ConfigError(
                    f"{len(keys)} private keys match {self._target.key_name} on "
                    f"{self._target.token_name}: set pkcs11-key to one label, or id:HEX"
                )
            key = self._local.key = keys[0]
        return key

    # -- the public key and certificate -------------------------------------------

    def _load_public(self) -> None:
        with self._lock:
            if self._public is not None:
                return
            try:
                key = self._private_key()
                key_type = key[Attribute.KEY_TYPE]
                public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
                if key_type == KeyType.RSA:
                    public = self._rsa_public(key)
                    self._key_type = "rsa"
                elif key_type == KeyType.EC:
                    public = self._ec_public(key)
                    self._key_type = "ec"
                else:
                    raise SigningError(f"{self.name} is a {key_type.name} key: only RSA and "
                                       "EC keys can sign Authenticode")
            except p11.PKCS11Error as exc:
                raise SigningError(f"{self.name}: {_reason(exc)}") from exc
            self._public = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )

    def _partners(self, object_class: ObjectClass, key: Any) -> list[Any]:
        """Objects of ``object_class`` beside the key: same id, else same label."""
        session = self._session()
        for attribute in (Attribute.ID, Attribute.LABEL):
            try:
                value = key[attribute]
            except p11.PKCS11Error:
                continue
            if value:
                found = list(session.get_objects({Attribute.CLASS: object_class,
                                                  attribute: value}))
                if found:
                    return found
        return []

    def _rsa_public(self, key: Any) -> rsa.RSAPublicKey:
        try:
            modulus, exponent = key[Attribute.MODULUS], key[Attribute.PUBLIC_EXPONENT]
        except p11.PKCS11Error:
            publics = self._partners(ObjectClass.PUBLIC_KEY, key)
            if not publics:
                found: rsa.RSAPublicKey = self._certificate_public(key, rsa.RSAPublicKey)
                return found
            modulus = publics[0][Attribute.MODULUS]
            exponent = publics[0][Attribute.PUBLIC_EXPONENT]
        numbers = rsa.RSAPublicNumbers(int.from_bytes(exponent, "big"),
                                       int.from_bytes(modulus, "big"))
        return numbers.public_key()

    def _ec_public(self, key: Any) -> ec.EllipticCurvePublicKey:
        params = bytes(key[Attribute.EC_PARAMS])
        if params not in _CURVES:
            raise SigningError(f"{self.name}: its curve is not P-256, P-384 or P-521")
        curve, self._curve_digest = _CURVES[params]
        publics = self._partners(ObjectClass.PUBLIC_KEY, key)
        if not publics:
            found: ec.EllipticCurvePublicKey = self._certificate_public(
                key, ec.EllipticCurvePublicKey
            )
            return found
        point = bytes(publics[0][Attribute.EC_POINT])
        size = (curve.key_size + 7) // 8
        if len(point) != 1 + 2 * size:  # usually DER OCTET STRING around the point
            point = point[2:] if point[1] < 0x80 else point[2 + (point[1] & 0x7F):]
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)

    def _certificate_public(self, key: Any, kind: type) -> Any:
        for cert in self.token_certificates():
            public = cert.public_key()
            if isinstance(public, kind):
                return public
        raise SigningError(f"{self.name}: no public key or certificate beside it on the token")

    def token_certificates(self) -> list[x509.Certificate]:
        """The certificates stored beside the key (same id, else same label)."""
        with self._lock:
            try:
                found = self._partners(ObjectClass.CERTIFICATE, self._private_key())
                return [x509.load_der_x509_certificate(bytes(c[Attribute.VALUE]))
                        for c in found]
            except p11.PKCS11Error as exc:
                raise SigningError(f"{self.name}: cannot read its certificate: {_reason(exc)}"
                                   ) from exc

    # -- the Signer protocol ------------------------------------------------------

    @property
    def key_type(self) -> SignerKeyType:
        self._load_public()
        assert self._key_type is not None
        return self._key_type

    def public_key_der(self) -> bytes:
        self._load_public()
        assert self._public is not None
        return self._public

    def digest_for(self, requested: DigestName) -> DigestName:
        self._load_public()
        return self._curve_digest or requested

    def sign(self, data: bytes, digest: DigestName) -> bytes:
        self._load_public()
        with self._lock:
            key = self._private_key()
            try:
                if self._key_type == "ec":
                    raw = key.sign(hashlib.new(digest, data).digest(), mechanism=Mechanism.ECDSA)
                    half = len(raw) // 2
                    return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                                int.from_bytes(raw[half:], "big"))
                mechanism = _RSA_MECHANISMS[digest]
                if mechanism in self._mechanisms or not self._mechanisms:
                    return bytes(key.sign(data, mechanism=mechanism))
                digest_info = _DIGEST_INFO[digest] + hashlib.new(digest, data).digest()
                return bytes(key.sign(digest_info, mechanism=Mechanism.RSA_PKCS))
            except p11.PKCS11Error as exc:
                raise SigningError(f"{self.name} could not sign: {_reason(exc)}") from exc

    def close(self) -> None:
        """Close this signer's sessions, the logged-in one last (which logs out)."""
        with self._lock:
            for session in reversed(self._sessions):
                with contextlib.suppress(p11.PKCS11Error):
                    session.close()
            self._sessions.clear()
            self._local = threading.local()
            self._logged_in = False
