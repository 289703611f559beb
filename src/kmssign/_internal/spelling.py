"""Help with misspelled names: a setting's key in a table, and ``KMSSIGN_`` variables
(those that are not settings, and the check that catches a misspelled one before it
is silently ignored)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

PREFIX = "KMSSIGN_"
# Short flag names that are not setting names: a key spelled as one gets a suggestion.
FLAG_ALIASES = {"cert": "certificate", "timestamp-url": "timestamp-urls"}
# Read where they are used, not settings: the switch, the secrets (never settings: they
# would be quoted back in messages), the GitHub Action's signer packages.
OTHER_VARIABLES: tuple[str, ...] = (
    "KMSSIGN_DISABLE", "KMSSIGN_KEY_PASSWORD", "KMSSIGN_PKCS11_PIN", "KMSSIGN_ACTION_PACKAGES",
)


def misspelled(
    env: Mapping[str, str], settings: Sequence[str], aliases: Mapping[str, str]
) -> list[str]:
    """A problem for each set ``KMSSIGN_`` variable of ``env`` that kmssign does not read
    (neither one of ``settings``, the settings' variables, nor one of OTHER_VARIABLES) but
    whose name is close to one it does, or is one of ``aliases`` (a flag's short name:
    ``KMSSIGN_CERT``). Other names, such as a signer package's own, pass."""
    known = [*settings, *OTHER_VARIABLES]
    unread = [name for name in sorted(env)
              if name.startswith(PREFIX) and name not in known and env[name].strip()]
    if not unread:
        return []  # most runs end here, without importing difflib
    import difflib

    problems = []
    for name in unread:
        alias = aliases.get(name)
        close = [alias] if alias else difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if close:
            problems.append(f"{name} is not a kmssign variable (did you mean {close[0]}?)")
    return problems


def suggestion(key: str, keys: Sequence[str]) -> str:
    """`` (did you mean certificate?)`` for an unknown key close to one of ``keys`` (the
    settings' names): a flag's name (``cert``, ``--key-id``), snake_case, or a
    misspelling; else ``""``."""
    import difflib

    plain = key.strip().lstrip("-").replace("_", "-").lower()
    guess = plain if plain in keys else FLAG_ALIASES.get(plain)
    if guess is None:
        close = difflib.get_close_matches(plain, keys, n=1, cutoff=0.6)
        guess = close[0] if close else None
    return f" (did you mean {guess}?)" if guess else ""
