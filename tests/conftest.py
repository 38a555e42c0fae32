import os

import pytest
from hypothesis import HealthCheck, settings

# Jitted code: compile time must not count against a deadline.
settings.register_profile(
    "ci", deadline=None, max_examples=40, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", deadline=None, max_examples=15,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def _numba_warm():
    """Compile every registered kernel once per session (on-disk cache makes reruns cheap)."""
    from s2pdata._jit import warmup

    warmup()
