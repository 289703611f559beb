"""Running kmssign held to file permission bits, even as root (CI containers run as root,
and root's capabilities would let it write where a user could not)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

import pytest

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def without_permission_override() -> None:
    """preexec_fn: as root, drop the capabilities that let root read and list anything
    (from the bounding set, so the command runs without them); the child is then held
    to the owner's permission bits like any user. Not root: chmod applies already."""
    if os.geteuid() != 0:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def kmssign_held_to_permissions(
    *argv: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m kmssign ARGV`` in a process held to permission bits."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "kmssign", *argv], capture_output=True, text=True,
            preexec_fn=without_permission_override, timeout=120, check=False,
            env=dict(env) if env is not None else None,
        )
    except subprocess.SubprocessError as exc:  # prctl refused: a root without CAP_SETPCAP
        pytest.skip(f"cannot run a process that root's permissions do not cover: {exc}")
