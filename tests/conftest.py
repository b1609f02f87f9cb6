"""Test-session settings shared by every test module.

Hypothesis runs under a deterministic profile: examples are derived from each test's source
(``derandomize=True``), no example database is read or written, and there is no per-example
deadline (the first example of a test pays for XLA compilation). Set
``HYPOTHESIS_PROFILE=explore`` to draw fresh random examples locally.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "deterministic",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
