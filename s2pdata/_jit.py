"""Numba presets and the warm-up registry.

Kernels use ``@njit(**JIT)``. Each kernel module registers a tiny call with ``register_warmup``;
``warmup()`` runs them all once (tests and benchmarks do, so that timings and deadlines never
include compilation). Build workers skip it: each kernel loads from Numba's on-disk cache on its
first call, so a worker loads only the kernels its build uses.
"""

from __future__ import annotations

from collections.abc import Callable

JIT = dict(cache=True, nogil=True)

_WARMUPS: list[Callable[[], object]] = []


def register_warmup(fn: Callable[[], object]) -> Callable[[], object]:
    """Register ``fn`` (no arguments) to be called by ``warmup``; usable as a decorator."""
    _WARMUPS.append(fn)
    return fn


def warmup() -> None:
    """Compile (or load from cache) every registered kernel by calling its warm-up once."""
    import importlib

    for mod in (
        "s2pdata.stages.sketch",
        "s2pdata.stages.hints",
        "s2pdata.stages.regions",
        "s2pdata.stages.warp",
        "s2pdata.stages.spray",
        "s2pdata.stages.drafts",
        "s2pdata.stages.rough",
        "s2pdata.stages.flat",
        "s2pdata.stages.domain",
        "s2pdata.stages.refimage",
    ):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a stage not written yet
            if exc.name != mod:
                raise
    for fn in list(_WARMUPS):
        fn()


SINGLE_THREAD = False  # set by single_thread(): this process is one of a build's workers


def single_thread() -> None:
    """One level of parallelism: inside a build worker, OpenCV, Numba (and torch, for a learned
    line extractor) use one thread."""
    import cv2
    import numba

    global SINGLE_THREAD
    SINGLE_THREAD = True
    cv2.setNumThreads(1)
    numba.set_num_threads(1)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def steady_heap() -> bool:
    """Keep freed image buffers in the C heap instead of returning them to the kernel.

    A sample allocates and frees many arrays of about a megabyte. glibc serves those with fresh
    ``mmap`` pages unless the process has already freed a few such blocks (its threshold adapts),
    so a newly spawned worker faults in and zeroes about 5 MB of pages per sample (over a
    thousand page faults), measured at 15 % of the shard phase with two workers. Fixed
    thresholds make every worker reuse its heap from the first sample. Returns False where the C
    library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 64 << 20) and mallopt(_M_TRIM_THRESHOLD, 256 << 20))


def worker_setup() -> None:
    """What every build worker does first: one thread per library and a heap that stays put."""
    single_thread()
    steady_heap()
