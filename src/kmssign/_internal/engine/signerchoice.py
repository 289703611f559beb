"""Which signer a run uses: by name, through the ``kmssign.signers`` entry points.

Every signer, kmssign's own included, is a factory registered in the entry point group
``kmssign.signers`` (kmssign's own in its ``pyproject.toml``): a callable taking the run's
:class:`~kmssign.config.Settings` and a ``log`` callable and returning a
:class:`~kmssign.signers.Signer`. The ``signer`` setting names one; without it the key
setting decides (``key-id``: ``aws-kms``, ``key-file``: ``key-file``, ``pkcs11-key`` or
``pkcs11-module``: ``pkcs11``). A factory makes no network call and touches no token
until it is asked to sign or for its public key, where it can.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kmssign.config import Settings
from kmssign.errors import ConfigError, SigningError, one_line
from kmssign.signers import Signer

if TYPE_CHECKING:
    import importlib.metadata

GROUP = "kmssign.signers"
NO_KEY = "no signing key: set key-id (an AWS KMS key) or key-file"

Log = Callable[[str], None]
Factory = Callable[[Settings, Log], Signer]


def _nolog(_message: str) -> None:
    pass


def aws_kms(settings: Settings, log: Log = _nolog) -> Signer:
    """The AWS KMS signer of ``key-id`` (boto3 is imported here, not before)."""
    if not settings.key_id:
        raise ConfigError("signer aws-kms needs key-id (a KMS key id, ARN or alias/NAME)")
    from kmssign._internal.signers.aws_kms import KmsSigner

    return KmsSigner.create(
        settings.key_id,
        region=settings.region,
        profile=settings.profile,
        endpoint_url=settings.endpoint_url,
        max_connections=settings.jobs,
        timeout=settings.kms_timeout,
    )


def key_file(settings: Settings, log: Log = _nolog) -> Signer:
    """The signer of the private key in ``key-file``."""
    if not settings.key_file:
        raise ConfigError("signer key-file needs key-file (a PEM or DER private key)")
    from kmssign._internal.signers.local import KeyFileSigner

    return KeyFileSigner.from_file(
        settings.key_file, warn=lambda message: log(f"warning: {message}")
    )


def pkcs11(settings: Settings, log: Log = _nolog) -> Signer:
    """The PKCS#11 signer of ``pkcs11-module``, ``pkcs11-token`` and ``pkcs11-key`` (or a
    ``pkcs11:`` URI); python-pkcs11, the ``kmssign[pkcs11]`` extra, is imported here."""
    from kmssign._internal.signers.pkcs11uri import Pkcs11Target

    target = Pkcs11Target.from_settings(
        module=settings.pkcs11_module,
        token=settings.pkcs11_token,
        key=settings.pkcs11_key,
        pin_file=settings.pkcs11_pin_file,
    )
    try:
        from kmssign._internal.signers.pkcs11 import Pkcs11Signer
    except ImportError as exc:
        raise ConfigError(
            f"signer pkcs11 needs python-pkcs11: pip install 'kmssign[pkcs11]' ({exc})"
        ) from exc
    return Pkcs11Signer(target)


# kmssign's own signers, as its pyproject.toml registers them; used as they are when the
# distribution's metadata is not installed (a source checkout on sys.path).
BUILT_IN: dict[str, Factory] = {"aws-kms": aws_kms, "key-file": key_file, "pkcs11": pkcs11}


def signer_name(settings: Settings) -> str | None:
    """The signer the settings choose, by name; None when they choose none."""
    if settings.signer:
        return settings.signer
    if settings.key_id:
        return "aws-kms"
    if settings.key_file:
        return "key-file"
    if settings.pkcs11_key or settings.pkcs11_module:
        return "pkcs11"
    return None


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """The registered factories by name; kmssign's own registration wins a name clash."""
    import importlib.metadata  # reads every installed distribution's metadata

    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        own = dist is not None and (dist.metadata["Name"] or "").lower() == "kmssign"
        if ep.name not in found or own:
            found[ep.name] = ep
    return found


def available() -> list[str]:
    """Every signer name that can be chosen here, sorted."""
    return sorted(set(BUILT_IN) | set(_entry_points()))


def factory(name: str) -> Factory:
    """The factory registered as ``name``; ConfigError naming the known ones otherwise.

    kmssign's own names are kmssign's factories without a look at the entry points:
    its own registration wins a clash anyway, and reading every installed distribution's
    metadata (and importing the zip and e-mail stack to do it) would cost a short run
    more than its signature.
    """
    if name in BUILT_IN:
        return BUILT_IN[name]
    ep = _entry_points().get(name)
    if ep is None:
        if name in BUILT_IN:
            return BUILT_IN[name]
        raise ConfigError(
            f"signer {name!r} is not installed (known: {', '.join(available())}); a package "
            f"provides one through the {GROUP!r} entry point group"
        )
    try:
        loaded: Any = ep.load()
    except Exception as exc:  # a third-party package: anything can go wrong in its import
        raise SigningError(
            f"signer {name!r} ({ep.value}) cannot be loaded: {one_line(exc) or type(exc).__name__}"
        ) from exc
    if not callable(loaded):
        raise SigningError(f"signer {name!r} ({ep.value}) is not a callable factory")
    return loaded  # type: ignore[no-any-return]


def create_signer(settings: Settings, log: Log = _nolog) -> Signer:
    """The signer the settings name, made by its registered factory (no network call)."""
    name = signer_name(settings)
    if name is None:
        raise ConfigError(NO_KEY)
    made = factory(name)(settings, log)
    if not isinstance(made, Signer):
        raise SigningError(
            f"signer {name!r} returned {type(made).__name__}, which is not a kmssign Signer "
            "(name, key_type, public_key_der, digest_for, sign)"
        )
    return made
