"""Settings: one frozen object used by every front end.

Sources, lowest to highest precedence: ``[tool.kmssign]`` of the nearest ``pyproject.toml``
(or a config file given), a front end's extra table (a Hatch hook table), ``KMSSIGN_<KEY>``
variables, and explicit overrides (CLI flags). Every problem comes in one ``ConfigError``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kmssign._internal.disable import DISABLE_VARIABLE, disabled
from kmssign._internal.net import defaults
from kmssign._internal.pyproject import find_pyproject, read_toml, table_at, table_in
from kmssign._internal.spelling import FLAG_ALIASES, misspelled, suggestion
from kmssign.errors import ConfigError, redact

__all__ = ["DEFAULT_JOBS", "DISABLE_VARIABLE", "Settings", "disabled", "load_settings", "table_in"]

TimestampPolicy = Literal["required", "optional", "off"]

DEFAULT_TIMESTAMP_URLS: tuple[str, ...] = (
    "http://timestamp.acs.microsoft.com",
    "http://timestamp.digicert.com",
    "http://timestamp.sectigo.com",
    "http://timestamp.globalsign.com/tsa/r6advanced1",
)
DEFAULT_JOBS = 16
DEFAULT_TIMESTAMP_TIMEOUT = defaults.TIMESTAMP_TIMEOUT  # seconds for one timestamp request
DEFAULT_KMS_TIMEOUT = defaults.KMS_TIMEOUT  # seconds for one KMS call, retries included


@dataclass(frozen=True)
class Settings:
    """Every setting of a run, with its default (docs/reference/settings.md has each)."""

    key_id: str | None = None
    key_file: Path | None = None
    certificate: Path | None = None
    chain: tuple[Path, ...] = ()
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    digest: str = "sha256"
    timestamp_urls: tuple[str, ...] = DEFAULT_TIMESTAMP_URLS
    timestamp: TimestampPolicy = "required"
    description: str | None = None
    url: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    skip_signed: bool = True
    jobs: int = DEFAULT_JOBS
    timestamp_timeout: float = DEFAULT_TIMESTAMP_TIMEOUT
    kms_timeout: float = DEFAULT_KMS_TIMEOUT
    signer: str | None = None  # by name (engine/signerchoice); default: the key setting's
    pkcs11_module: Path | None = None
    pkcs11_token: str | None = None
    pkcs11_key: str | None = None  # key label, id:HEX, or a pkcs11: URI (RFC 7512)
    pkcs11_pin_file: Path | None = None
    source: Path | None = field(default=None, compare=False)
    """The pyproject.toml the file-level settings came from, if any."""


ENV_PREFIX = "KMSSIGN_"
DIGEST_CHOICES = ("sha256", "sha384", "sha512")
TIMESTAMP_CHOICES = ("required", "optional", "off")

# kebab-case key -> kind of value
_KINDS: dict[str, str] = {
    "key-id": "str",
    "key-file": "path",
    "certificate": "path",
    "chain": "paths",
    "region": "str",
    "profile": "str",
    "endpoint-url": "url",
    "digest": "digest",
    "timestamp-urls": "urls",
    "timestamp": "timestamp",
    "description": "str",
    "url": "str",
    "include": "strs",
    "exclude": "strs",
    "skip-signed": "bool",
    "jobs": "jobs",
    "timestamp-timeout": "seconds",
    "kms-timeout": "seconds",
    "signer": "signer",
    "pkcs11-module": "path",
    "pkcs11-token": "str",
    "pkcs11-key": "str",
    "pkcs11-pin-file": "path",
}
# Settings that each choose where the key is; one source sets at most one of them.
KEY_SOURCES: tuple[str, ...] = ("key-id", "key-file", "pkcs11-key")
KEYS: tuple[str, ...] = tuple(_KINDS)
# Tables inside [tool.kmssign] that belong to a front end (its overrides), not settings.
FRONTEND_TABLES: tuple[str, ...] = ("setuptools",)
SIGNER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _field(key: str) -> str:
    return key.replace("-", "_")


def _env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace("-", "_")


class _Layer:
    """Values from one source, converted to Settings field types, with its problems."""

    def __init__(
        self, naming: str, base: Path, problems: list[str],
        names: Mapping[str, str] | None = None,
    ) -> None:
        self.naming = naming  # "toml:<table>", "env" or "cli"
        self.base = base
        self.problems = problems
        self.names = names or {}  # Settings field -> the flag typed for it
        self.values: dict[str, object] = {}

    def name(self, key: str) -> str:
        if self.naming == "env":
            return _env_name(key)
        if self.naming == "cli":
            return self.names.get(_field(key), "--" + key)
        return f"{self.naming[5:]}.{key}"

    def where(self) -> str:
        """How the whole source is named in cross-key messages."""
        if self.naming == "env":
            return "environment"
        if self.naming == "cli":
            return "command line"
        return self.naming[5:]

    def add(self, key: str, value: object) -> None:
        name = self.name(key)
        text = not self.naming.startswith("toml:")  # env and CLI values may be text
        converted = _convert(_KINDS[key], value, name, self.base, text, self.problems)
        if converted is not _INVALID:
            self.values[_field(key)] = converted

    def check_exclusive(self) -> None:
        given = [key for key in KEY_SOURCES if _field(key) in self.values]
        if len(given) < 2:
            return
        if self.naming in ("env", "cli"):
            names = " and ".join(self.name(key) for key in given)
            message = f"{names} are mutually exclusive"
        else:
            message = f"{self.where()}: {' and '.join(given)} are mutually exclusive"
        self.problems.append(message)


_INVALID = object()


def _path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _is_url(value: str) -> bool:
    scheme, sep, rest = value.partition("://")
    return bool(sep) and scheme.lower() in ("http", "https") and bool(rest.strip("/"))


def _strings(
    value: object, name: str, text: bool, problems: list[str], what: str
) -> list[str] | None:
    """A string or list of strings; from text sources a comma-separated string."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")] if text else [value]
        return [v for v in items if v]
    if isinstance(value, Sequence) and all(isinstance(v, (str, os.PathLike)) for v in value):
        return [os.fspath(v) for v in value]
    problems.append(f"{name} must be {what}, not {value!r}")
    return None


def _convert(
    kind: str, value: object, name: str, base: Path, text: bool, problems: list[str]
) -> object:
    """Convert one raw value; on failure record a problem and return ``_INVALID``."""
    if isinstance(value, os.PathLike) and kind in ("path", "str"):
        value = os.fspath(value)
    if kind in ("str", "url", "path", "digest", "timestamp", "signer"):
        if not isinstance(value, str):
            problems.append(f"{name} must be a string, not {value!r}")
            return _INVALID
        value = value.strip()
        if not value:
            problems.append(f"{name} must not be empty")
            return _INVALID
    if kind == "str":
        return value
    if kind == "signer":
        if SIGNER_NAME.fullmatch(str(value)):
            return value
        problems.append(f"{name} must be a signer name (letters, digits, '-', '_', '.'), "
                        f"not {value!r}")
        return _INVALID
    if kind == "path":
        return _path(str(value), base)
    if kind == "url":
        if not _is_url(str(value)):
            problems.append(f"{name} must be an http:// or https:// URL, not {value!r}")
            return _INVALID
        return value
    if kind in ("digest", "timestamp"):
        choices = DIGEST_CHOICES if kind == "digest" else TIMESTAMP_CHOICES
        lowered = str(value).lower()
        if lowered not in choices:
            problems.append(f"{name} must be one of {', '.join(choices)}, not {value!r}")
            return _INVALID
        return lowered
    if kind == "paths":
        items = _strings(value, name, text, problems, "a path or a list of paths")
        return _INVALID if items is None else tuple(_path(v, base) for v in items)
    if kind == "strs":
        items = _strings(value, name, text, problems, "a string or a list of strings")
        return _INVALID if items is None else tuple(items)
    if kind == "urls":
        items = _strings(value, name, text, problems, "a list of URLs")
        if items is None:
            return _INVALID
        bad = [v for v in items if not _is_url(v)]
        if bad:
            problems.append(
                f"{name} must contain http:// or https:// URLs, not {', '.join(map(repr, bad))}"
            )
            return _INVALID
        return tuple(items)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if text and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            problems.append(f"{name} must be one of true, false, 1, 0, yes, no, not {value!r}")
            return _INVALID
        problems.append(f"{name} must be true or false, not {value!r}")
        return _INVALID
    if kind == "jobs":
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif text and isinstance(value, str) and value.strip().lstrip("+").isdigit():
            number = int(value)
        if number is None or number < 1:
            problems.append(f"{name} must be an integer >= 1, not {value!r}")
            return _INVALID
        return number
    if kind == "seconds":
        seconds: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif text and isinstance(value, str):
            try:
                seconds = float(value)
            except ValueError:
                seconds = None
        if seconds is None or not math.isfinite(seconds) or seconds <= 0:
            problems.append(f"{name} must be a number of seconds > 0, not {value!r}")
            return _INVALID
        return seconds
    raise AssertionError(kind)  # pragma: no cover - _KINDS is closed


def _table_layer(
    table: Mapping[str, object], table_name: str, base: Path, problems: list[str]
) -> _Layer:
    layer = _Layer("toml:" + table_name, base, problems)
    for key, value in table.items():
        if key not in _KINDS:
            problems.append(f"{table_name}.{key} is not a known setting{suggestion(key, KEYS)}")
            continue
        layer.add(key, value)
    layer.check_exclusive()
    return layer


def _env_layer(env: Mapping[str, str], cwd: Path, problems: list[str]) -> _Layer:
    layer = _Layer("env", cwd, problems)
    for key in _KINDS:
        value = env.get(_env_name(key))
        if value is not None and value.strip():  # empty means unset (e.g. a missing CI secret)
            layer.add(key, value)
    problems.extend(misspelled(
        env, [_env_name(key) for key in _KINDS],
        {_env_name(name): _env_name(key) for name, key in FLAG_ALIASES.items()},
    ))
    layer.check_exclusive()
    return layer


def _override_layer(
    overrides: Mapping[str, object], cwd: Path, problems: list[str],
    names: Mapping[str, str] | None,
) -> _Layer:
    layer = _Layer("cli", cwd, problems, names)
    known = {_field(k): k for k in _KINDS}
    for name, value in overrides.items():
        if value is None:
            continue
        key = known.get(name)
        if key is None:
            problems.append(f"override {name} is not a known setting")
            continue
        layer.add(key, value)
    layer.check_exclusive()
    return layer


def load_settings(
    *,
    config: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    table: Mapping[str, object] | None = None,
    table_name: str = "tool.kmssign",
    override_names: Mapping[str, str] | None = None,
) -> Settings:
    """Merge every source into one :class:`Settings`, or raise one ``ConfigError``.

    ``config`` is a TOML file (or a directory holding ``pyproject.toml``) read instead
    of the nearest ``pyproject.toml`` from ``cwd``. ``table`` holds extra keys from a
    front end (same kebab-case keys, paths relative to the same pyproject); its keys are
    named ``table_name.<key>`` in messages. ``overrides`` uses Settings field names;
    ``None`` values mean "not given". Paths from the environment and overrides are
    relative to ``cwd``. ``override_names`` maps a Settings field to the name its
    override is given in messages (the flag as typed; ``--<key>`` otherwise). A missing
    key-id/key-file is not checked here.
    """
    cwd = (cwd or Path.cwd()).absolute()
    env = os.environ if env is None else env
    problems: list[str] = []
    layers: list[_Layer] = []
    pyproject: Path | None
    if config is not None:
        pyproject = _path(os.fspath(config), cwd)
        if pyproject.is_dir():
            pyproject = pyproject / "pyproject.toml"
        if not pyproject.is_file():
            problems.append(f"{pyproject}: config file not found")
            pyproject = None
    else:
        pyproject = find_pyproject(cwd)
    base = pyproject.parent if pyproject is not None else cwd
    if pyproject is not None:
        data = read_toml(pyproject, problems)
        if data is not None:
            file_table = dict(table_at(data, "tool.kmssign", problems))
            for name in FRONTEND_TABLES:
                if not isinstance(file_table.pop(name, {}), Mapping):
                    problems.append(f"tool.kmssign.{name} must be a table")
            layers.append(_table_layer(file_table, "tool.kmssign", base, problems))
    if table:
        layers.append(_table_layer(table, table_name, base, problems))
    layers.append(_env_layer(env, cwd, problems))
    if overrides:
        layers.append(_override_layer(overrides, cwd, problems, override_names))
    merged: dict[str, object] = {}
    sources = [_field(key) for key in KEY_SOURCES]
    for layer in layers:  # a higher source choosing a key source drops the others'
        if any(name in layer.values for name in sources):
            merged = {k: v for k, v in merged.items() if k not in sources}
        merged.update(layer.values)
    if merged.get("timestamp", "required") == "required" and merged.get("timestamp_urls") == ():
        problems.append("timestamp-urls is empty but timestamp is 'required'")
    if problems:
        # values are quoted back; a URL's user:password@ must not be
        raise ConfigError([redact(problem) for problem in problems])
    return Settings(source=pyproject, **merged)  # type: ignore[arg-type]
