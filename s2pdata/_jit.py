"""Numba presets and the warm-up registry.

Kernels use ``@njit(**JIT)``: ``cache=True`` keeps compiled code on disk (in ``__pycache__``
beside the source, or under ``NUMBA_CACHE_DIR``), ``nogil=True`` lets threads run kernels side
by side. Jitted helpers live in the file of the kernel that calls them, because Numba's cache
does not notice edits to other files. Each kernel module registers a tiny call with
``register_warmup``; ``warmup()`` runs them all once (tests and benchmarks do, so that timings and
deadlines never include compilation). Build workers skip it: each kernel loads from the on-disk
cache on its first call, so a worker loads only the kernels its build uses. The first build on a
machine finds the cache empty (``kernel_cache_is_cold``), says so, and spends about 40 s compiling.
"""

from __future__ import annotations

from collections.abc import Callable

JIT = dict(cache=True, nogil=True)

_WARMUPS: list[Callable[[], object]] = []


def register_warmup(fn: Callable[[], object]) -> Callable[[], object]:
    """Register ``fn`` (no arguments) to be called by ``warmup``; usable as a decorator."""
    _WARMUPS.append(fn)
    return fn


def _import_stages() -> None:
    """Import every module with kernels (each registers its kernels and warm-ups on import)."""
    import importlib

    for mod in (
        "s2pdata.stages.sketch",
        "s2pdata.stages.hints",
        "s2pdata.stages.regions",
        "s2pdata.stages.warp",
        "s2pdata.stages.spray",
        "s2pdata.stages.drafts",
        "s2pdata.stages.mistakes",
        "s2pdata.stages.rough",
        "s2pdata.stages.flat",
        "s2pdata.stages.domain",
        "s2pdata.stages.refimage",
        "s2pdata.pngread",
    ):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a stage module this checkout lacks; its own failing imports still raise
            if exc.name != mod:
                raise


def warmup() -> None:
    """Compile (or load from cache) every registered kernel by calling its warm-up once."""
    _import_stages()
    for fn in list(_WARMUPS):
        fn()


def kernel_cache_is_cold() -> bool:
    """Whether Numba's on-disk cache holds none of this package's compiled kernels.

    Then the first build compiles every kernel it uses (about 40 s, in each worker). Reads the
    index file of each ``cache=True`` kernel the way Numba does on a call (an index written by
    another Numba version or for an older source file counts as empty); compiles nothing and
    takes a few milliseconds. Kernels only ever inlined into others have no entry of their own,
    so the cache is cold when every index is empty, not when any one is. Returns False when the
    cache cannot be inspected.

    Returns
    -------
    bool
        True when no kernel has a usable cache entry.
    """
    import sys

    from numba.core.dispatcher import Dispatcher

    _import_stages()
    kernels = [
        obj
        for name, mod in list(sys.modules.items())
        if name.startswith("s2pdata.")
        for obj in vars(mod).values()
        if isinstance(obj, Dispatcher) and obj.__module__ == name
    ]
    try:
        # Numba's own per-function cache objects: no public API says whether an entry exists
        return bool(kernels) and not any(k._cache._cache_file._load_index() for k in kernels)
    except Exception:  # a Numba whose cache internals differ: say nothing rather than guess
        return False


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
