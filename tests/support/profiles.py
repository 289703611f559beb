"""Hypothesis profiles: ``fast`` (the default, for ``nox -s tests``) and ``fuzz`` (``nox -s
fuzz``, or ``HYPOTHESIS_PROFILE=fuzz`` / ``pytest --hypothesis-profile=fuzz``).

A property test asks :func:`examples` for its count: the count it names in the fast
profile, twenty times that under ``fuzz``. Tests that shell out to osslsigncode keep
their fast counts in single digits (tests/test_pe_properties.py).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FAST_MAX_EXAMPLES = 100  # Hypothesis' own default: the unit :func:`examples` scales
FUZZ_FACTOR = 20

_COMMON = {
    "deadline": None,  # timings vary on shared CI machines; no test asserts time
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,  # a failure prints the @reproduce_failure blob
}
settings.register_profile("fast", max_examples=FAST_MAX_EXAMPLES, **_COMMON)
settings.register_profile("fuzz", max_examples=FAST_MAX_EXAMPLES * FUZZ_FACTOR, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


def examples(fast: int) -> int:
    """How many examples a test runs: ``fast`` in the fast profile, scaled with the loaded
    profile's max_examples (read when the test module is imported, after pytest's
    ``--hypothesis-profile`` took effect)."""
    return max(1, fast * settings.default.max_examples // FAST_MAX_EXAMPLES)
