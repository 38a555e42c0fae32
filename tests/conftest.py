import os

import pytest
from hypothesis import HealthCheck, settings

# Jitted code: compile time must not count against a deadline. CI draws the same examples every
# run (derandomize) so a landing never hinges on luck; elsewhere each run explores new ones.
_COMMON = dict(
    deadline=None,
    max_examples=40,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("ci", derandomize=True, **_COMMON)
settings.register_profile("explore", **_COMMON)
settings.register_profile("quick", **{**_COMMON, "max_examples": 10})
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "explore"))


@pytest.fixture(scope="session", autouse=True)
def _numba_warm():
    """Compile every registered kernel once per session (on-disk cache makes reruns cheap)."""
    from s2pdata._jit import warmup

    warmup()
