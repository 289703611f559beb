"""Where a PKCS#11 key is: module, token and key from settings or a ``pkcs11:`` URI.

RFC 7512: ``pkcs11:token=Code%20Signing;object=release;type=private?module-path=/usr/
lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/pin``. Path attributes are
separated by ``;``, query attributes by ``&``; values are percent-encoded (``id`` is raw
bytes). A PIN never comes from a URI's ``pin-value``: URIs end up in settings, logs and
``ps`` output. Nothing here loads a module or touches a token.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from kmssign.errors import ConfigError

PIN_ENV = "KMSSIGN_PKCS11_PIN"

# RFC 7512's path attributes that only narrow the search; kmssign accepts and ignores them
_IGNORED = {
    "library-manufacturer", "library-description", "library-version", "manufacturer",
    "model", "slot-description", "slot-manufacturer", "slot-id",
}
_USED = {"token", "object", "id", "type", "serial"}
_HEX_ID = re.compile(r"(?:[0-9A-Fa-f]{2})+")


@dataclass(frozen=True)
class Pkcs11Target:
    """The module, the token and the private key to sign with."""

    module: Path
    token: str | None = None
    serial: str | None = None
    label: str | None = None
    key_id: bytes | None = None
    pin_file: Path | None = None

    @property
    def key_name(self) -> str:
        parts = []
        if self.label is not None:
            parts.append(f"label {self.label!r}")
        if self.key_id is not None:
            parts.append(f"id {self.key_id.hex()}")
        return " and ".join(parts) or "the only private key"

    @property
    def token_name(self) -> str:
        if self.token is not None:
            return f"token {self.token!r}"
        return f"token with serial {self.serial}" if self.serial else "the token"

    @classmethod
    def from_settings(
        cls,
        *,
        module: Path | None,
        token: str | None,
        key: str | None,
        pin_file: Path | None,
    ) -> Pkcs11Target:
        """The target the ``pkcs11-*`` settings describe; ``key`` is a label, ``id:HEX``
        or a ``pkcs11:`` URI (whose attributes the other settings may fill in or
        override)."""
        fields: dict[str, object] = {}
        if key is not None and key.lower().startswith("pkcs11:"):
            fields = parse_uri(key)
        elif key is not None and key.lower().startswith("id:"):
            hex_id = key[3:].replace(":", "")
            if not _HEX_ID.fullmatch(hex_id):
                raise ConfigError(f"pkcs11-key {key!r}: id: must be followed by hex bytes")
            fields["key_id"] = bytes.fromhex(hex_id)
        elif key is not None:
            fields["label"] = key
        if module is not None:
            fields["module"] = module
        if token is not None:
            fields["token"] = token
        if pin_file is not None:
            fields["pin_file"] = pin_file
        if "module" not in fields:
            raise ConfigError(
                "signer pkcs11 needs pkcs11-module (the path of the token's PKCS#11 library) "
                "or a pkcs11: URI with module-path"
            )
        return cls(**fields)  # type: ignore[arg-type]

    def pin(self) -> str | None:
        """The user PIN: ``KMSSIGN_PKCS11_PIN``, else the PIN file; None when neither is
        given (a token with a PIN pad of its own asks for it)."""
        value = os.environ.get(PIN_ENV)
        if value:
            return value
        if self.pin_file is None:
            return None
        try:
            text = self.pin_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"pkcs11-pin-file {self.pin_file}: cannot read it: {reason}") from exc
        pin = text.rstrip("\r\n")
        if not pin:
            raise ConfigError(f"pkcs11-pin-file {self.pin_file} is empty")
        return pin


def _attributes(text: str, separator: str, what: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in filter(None, text.split(separator)):
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise ConfigError(f"pkcs11: URI {what} attribute {part!r} is not NAME=VALUE")
        if name in found:
            raise ConfigError(f"pkcs11: URI names {name} twice")
        found[name] = value
    return found


def parse_uri(uri: str) -> dict[str, object]:
    """The :class:`Pkcs11Target` fields a ``pkcs11:`` URI (RFC 7512) gives."""
    split = urlsplit(uri)
    if split.scheme.lower() != "pkcs11" or split.netloc or split.fragment:
        raise ConfigError("pkcs11-key: not a pkcs11: URI (RFC 7512)")
    path = _attributes(split.path, ";", "path")
    query = _attributes(split.query, "&", "query")
    unknown = sorted(set(path) - _USED - _IGNORED)
    if unknown:
        raise ConfigError(f"pkcs11: URI has unknown attributes: {', '.join(unknown)}")
    if "pin-value" in query:
        raise ConfigError(
            f"pkcs11: URI carries pin-value: a PIN does not belong in settings; set {PIN_ENV} "
            "or pin-source=file:PATH (or pkcs11-pin-file)"
        )
    if path.get("type", "private") != "private":
        raise ConfigError(f"pkcs11: URI type={path['type']}: the signing key is type=private")
    fields: dict[str, object] = {}
    if "token" in path:
        fields["token"] = unquote(path["token"])
    if "serial" in path:
        fields["serial"] = unquote(path["serial"])
    if "object" in path:
        fields["label"] = unquote(path["object"])
    if "id" in path:
        fields["key_id"] = unquote_to_bytes(path["id"])
    if "module-path" in query:
        fields["module"] = Path(unquote(query["module-path"]))
    if "pin-source" in query:
        source = unquote(query["pin-source"])
        fields["pin_file"] = Path(source[5:] if source.startswith("file:") else source)
    return fields
