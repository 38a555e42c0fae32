import os
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

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


# Tests marked ``pinned_bytes`` compare output bytes with digests recorded under the repository's lock
# (constraints.txt). Another release of one of these packages may move those bytes without anything being
# wrong, so under other versions such a test skips and names the difference; determinism within one
# environment (worker counts, Ray, replay, resume) is tested everywhere.
BYTE_DECIDING = ("numpy", "numba", "llvmlite", "opencv-python-headless", "pillow", "zlib-ng")
LOCK = Path(__file__).resolve().parents[1] / "constraints.txt"


def _installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def lock_differences() -> list[str]:
    """``["opencv-python-headless 5.1.0.95 (lock 5.0.0.93)", ...]`` for the byte-deciding packages."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", LOCK.read_text(), re.M))
    pins = {k.lower(): v for k, v in pins.items()}
    return [f"{n} {_installed(n)} (lock {pins[n]})" for n in BYTE_DECIDING if _installed(n) != pins[n]]


def pytest_runtest_setup(item):
    if item.get_closest_marker("pinned_bytes") and (diffs := lock_differences()):
        pytest.skip(f"bytes pinned under constraints.txt; here {', '.join(diffs)}")


@pytest.fixture(scope="session")
def s3_server():
    """One SeaweedFS S3 server for the session (``tests/s3server.py``); skips without the dev extra."""
    from .s3server import S3Server

    server = S3Server()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(scope="session")
def s3(s3_server):
    """``storage_options`` of the session's S3 server, which holds the bucket ``s3server.BUCKET``."""
    return s3_server.options


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory):
    """A small demo build in a local folder ``ROOT/run`` (8 samples in 4 shards, 64 px), shared by the
    storage and streaming tests; they only read it."""
    from s2pdata.build import run_build
    from s2pdata.synth import SynthConfig

    out = tmp_path_factory.mktemp("demo-build") / "run"
    run_build(src="demo:8", out=out, cfg=SynthConfig(size=64), seed=1, shard_size=2, progress=False)
    return out


@pytest.fixture
def one_torch_thread():
    """Tiny convolutions in one torch thread for the test: on a busy 2-core machine two threads
    spin-wait each other (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
