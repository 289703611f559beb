"""``KMSSIGN_DISABLE``: set to a true value, the build plugins and the PyInstaller helpers
sign nothing (one log line instead)."""

from __future__ import annotations

import os
from collections.abc import Mapping

DISABLE_VARIABLE = "KMSSIGN_DISABLE"


def disabled(env: Mapping[str, str] | None = None) -> bool:
    """``KMSSIGN_DISABLE`` set to 1, true, yes or on (any case)."""
    env = os.environ if env is None else env
    return env.get(DISABLE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")
