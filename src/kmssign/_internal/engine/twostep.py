"""Signing in two steps: what must be signed leaves the build, signatures come back.

``digest`` needs only the certificate: per file it records the DER SET of signed
attributes (what a signer signs), its hash (what a digest-signing service such as
``aws kms sign --message-type DIGEST`` signs), the file's path, sha256 and Authenticode
digest, and the settings that shaped the attributes. The request file carries a
checksum over all of it. ``attach`` trusts nothing it reads back: it checks the
checksum, each file's sha256, and each signature against the certificate over the
attributes it derives again from the file and the recorded settings, for every file
before it writes any; then each file is signed through the ordinary pipeline with a
signer that hands out the signatures received.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kmssign._internal.authenticode.build import indirect_data_der, signed_attributes_der
from kmssign._internal.cms.algorithms import verify_raw_signature
from kmssign._internal.engine.formats import format_named, open_signable
from kmssign._internal.engine.signing import file_sha256
from kmssign._internal.pki.certs import SigningCertificates, spki_der, subject_of
from kmssign.errors import ConfigError, KmsSignError, VerificationError
from kmssign.signers import DigestName, KeyType

KIND = "kmssign signing requests"
VERSION = 1
_CURVE_DIGESTS: dict[str, DigestName] = {
    "secp256r1": "sha256", "secp384r1": "sha384", "secp521r1": "sha512",
}
# AWS KMS's names of the algorithm each request is to be signed with (DIGEST mode)
_KMS_ALGORITHMS = {"rsa": "RSASSA_PKCS1_V1_5_SHA_", "ec": "ECDSA_SHA_"}


def key_type_of(cert: x509.Certificate) -> tuple[KeyType, DigestName | None]:
    """The certificate key's type, and for EC keys the digest its curve binds."""
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return "rsa", None
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name in _CURVE_DIGESTS:
        return "ec", _CURVE_DIGESTS[public.curve.name]
    raise ConfigError("the certificate's key is neither RSA nor EC P-256/P-384/P-521")


@dataclass(frozen=True)
class Request:
    """One file to sign; a wheel's PE member has ``member`` (its name in the wheel at
    ``path``), and ``sha256`` is then the wheel's."""

    path: Path
    format: str
    sha256: str
    file_digest: bytes
    signed_attributes: bytes
    member: str | None = None

    def hash(self, digest: str) -> bytes:
        return hashlib.new(digest, self.signed_attributes).digest()


@dataclass(frozen=True)
class Requests:
    """A request file's content (see the module's doc)."""

    digest: DigestName
    certificates: SigningCertificates
    description: str | None
    url: str | None
    requests: tuple[Request, ...]
    skip_signed: bool = True  # which PE members of a wheel were left out as signed

    @property
    def key_type(self) -> KeyType:
        return key_type_of(self.certificates.leaf)[0]

    def body(self) -> dict[str, Any]:
        pems = [c.public_bytes(serialization.Encoding.PEM).decode()
                for c in self.certificates.all]
        return {
            "kind": KIND,
            "version": VERSION,
            "settings": {"digest": self.digest, "description": self.description,
                         "url": self.url, "skip-signed": self.skip_signed},
            "certificates": pems,
            "signature_algorithm": _KMS_ALGORITHMS[self.key_type] + self.digest[3:],
            "requests": [
                {"path": str(r.path), **({"member": r.member} if r.member else {}),
                 "format": r.format, "sha256": r.sha256,
                 "file_digest": r.file_digest.hex(),
                 "signed_attributes": base64.b64encode(r.signed_attributes).decode(),
                 "hash": r.hash(self.digest).hex()}
                for r in self.requests
            ],
        }

    def dumps(self) -> str:
        body = self.body()
        return json.dumps({**body, "checksum": checksum(body)}, indent=2) + "\n"


def checksum(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def relative_path(path: Path) -> Path:
    absolute = path.absolute()
    try:
        return absolute.relative_to(Path.cwd())
    except ValueError:
        return absolute


def make_request(
    path: Path, digest: DigestName, description: str | None, url: str | None
) -> Request:
    """What signing ``path`` needs signed, derived as the signing pipeline derives it."""
    with open(path, "rb") as f:
        signable = open_signable(f)
        with tempfile.TemporaryFile() as scratch:
            file_digest, _ = signable.begin_copy(digest, scratch)
    content = indirect_data_der(digest, file_digest,
                                format_named(signable.format).content_data())
    attributes = signed_attributes_der(content, digest, description=description, url=url)
    return Request(relative_path(path), signable.format, file_sha256(path), file_digest, attributes)


def _field(entry: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in entry:
        raise VerificationError(f"{where}: {name} is missing")
    return entry[name]


def load_requests(path: Path) -> Requests:
    """A request file, checked: its checksum, certificates and every entry's fields."""
    where = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise VerificationError(f"{where}: not a kmssign request file (not JSON)") from exc
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise VerificationError(f"{where}: not a kmssign request file")
    body = {k: v for k, v in data.items() if k != "checksum"}
    if data.get("checksum") != checksum(body):
        raise VerificationError(f"{where} was edited after kmssign digest wrote it "
                                "(its checksum does not match); run kmssign digest again")
    try:
        settings = body["settings"]
        certs = [x509.load_pem_x509_certificate(p.encode()) for p in body["certificates"]]
        requests = tuple(
            Request(Path(e["path"]), e["format"], e["sha256"], bytes.fromhex(e["file_digest"]),
                    base64.b64decode(e["signed_attributes"], validate=True), e.get("member"))
            for e in body["requests"]
        )
        return Requests(settings["digest"], SigningCertificates(certs[0], tuple(certs[1:])),
                        settings["description"], settings["url"], requests,
                        bool(settings["skip-signed"]))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise VerificationError(f"{where}: a field is missing or malformed ({exc})") from exc


def dump_signatures(requests: Requests, signatures: Mapping[bytes, bytes]) -> str:
    """A signatures file: each request's hash (hex) -> its signature (base64)."""
    return json.dumps({
        "kind": "kmssign signatures",
        "signatures": {h.hex(): base64.b64encode(s).decode() for h, s in signatures.items()},
    }, indent=2) + "\n"


def load_signatures(path: Path) -> dict[bytes, bytes]:
    """Signatures by the hash they sign: kmssign's JSON, or lines of ``HASH SIGNATURE``
    (hex, base64) as a loop around another tool writes them."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    pairs: Iterable[tuple[str, str]]
    try:
        data = json.loads(text)
        pairs = dict(data["signatures"]).items()
    except (ValueError, KeyError, TypeError):
        pairs = [tuple(line.split()) for line in text.splitlines() if line.strip()]  # type: ignore[misc]
    found: dict[bytes, bytes] = {}
    for number, pair in enumerate(pairs, 1):
        try:
            hash_hex, signature = pair
            found[bytes.fromhex(hash_hex)] = base64.b64decode(signature, validate=True)
        except ValueError as exc:
            raise VerificationError(
                f"{path}: entry {number} is not a hash (hex) and a signature (base64)"
            ) from exc
    return found


def check_attachable(requests: Requests, signatures: Mapping[bytes, bytes]) -> None:
    """Every request's file is as it was and its signature verifies with the certificate
    over the attributes derived again; otherwise one VerificationError naming the first
    problem (and how many there are). Writes nothing."""
    from kmssign._internal.engine.twostepwheels import check_wheel

    leaf = requests.certificates.leaf
    problems: list[str] = []
    wheels: dict[Path, list[Request]] = {}
    for request in requests.requests:
        if request.member is not None:
            wheels.setdefault(request.path, []).append(request)
            continue
        try:
            _check_one(request, requests, signatures, leaf)
        except KmsSignError as exc:
            problems.append(str(exc))
        except OSError as exc:
            problems.append(f"{request.path}: {exc.strerror or exc}")
    for wheel, members in wheels.items():
        try:
            check_wheel(wheel, members, requests)
            for request in members:
                _check_signature(request, requests, signatures, leaf)
        except KmsSignError as exc:
            problems.append(str(exc))
        except OSError as exc:
            problems.append(f"{wheel}: {exc.strerror or exc}")
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise VerificationError(f"{problems[0]}{more}; nothing was written")


def _check_one(request: Request, requests: Requests, signatures: Mapping[bytes, bytes],
               leaf: x509.Certificate) -> None:
    path = request.path
    if file_sha256(path) != request.sha256:
        raise VerificationError(f"{path}: the file changed since kmssign digest")
    again = make_request(path, requests.digest, requests.description, requests.url)
    if again.signed_attributes != request.signed_attributes or again.format != request.format:
        raise VerificationError(f"{path}: the request was edited (its signed attributes are "
                                "not the file's)")
    _check_signature(request, requests, signatures, leaf)


def _check_signature(request: Request, requests: Requests, signatures: Mapping[bytes, bytes],
                     leaf: x509.Certificate) -> None:
    path = f"{request.path}!{request.member}" if request.member else str(request.path)
    signature = signatures.get(request.hash(requests.digest))
    if signature is None:
        raise VerificationError(f"{path}: no signature for it")
    if not verify_raw_signature(leaf.public_key(), signature, request.signed_attributes,
                                requests.digest):
        raise VerificationError(f"{path}: its signature does not verify with the certificate "
                                f"{subject_of(leaf)}")


class PresetSigner:
    """A Signer that hands out signatures made elsewhere, by the attributes they sign."""

    def __init__(self, requests: Requests, signatures: Mapping[bytes, bytes]) -> None:
        self._leaf = requests.certificates.leaf
        self._digest = requests.digest
        self._signatures = dict(signatures)
        self._key_type = key_type_of(self._leaf)[0]
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"signatures for {subject_of(self._leaf)}"

    @property
    def key_type(self) -> KeyType:
        return self._key_type

    def public_key_der(self) -> bytes:
        return spki_der(self._leaf)

    def digest_for(self, requested: DigestName) -> DigestName:
        return self._digest

    def sign(self, data: bytes, digest: DigestName) -> bytes:
        with self._lock:
            signature = self._signatures.get(hashlib.new(digest, data).digest())
        if signature is None:
            raise VerificationError("the file changed since it was checked: no signature "
                                    "was made for what it now needs signed")
        return signature
