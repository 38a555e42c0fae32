"""Numba presets and the warm-up registry.

Kernels use ``@njit(**JIT)``. Each kernel module registers a tiny call with ``register_warmup``;
``warmup()`` runs them all once (the build does this in the parent before spawning workers so
children load compiled code from the on-disk cache).
"""

from __future__ import annotations

from typing import Callable

JIT = dict(cache=True, nogil=True)

_WARMUPS: list[Callable[[], object]] = []


def register_warmup(fn: Callable[[], object]) -> Callable[[], object]:
    """Register ``fn`` (no arguments) to be called by ``warmup``; usable as a decorator."""
    _WARMUPS.append(fn)
    return fn


def warmup() -> None:
    """Compile (or load from cache) every registered kernel by calling its warm-up once."""
    import importlib

    for mod in ("s2pdata.sketch", "s2pdata.hints", "s2pdata.regions", "s2pdata.warp", "s2pdata.spray",
                "s2pdata.drafts", "s2pdata.rough", "s2pdata.flat", "s2pdata.domain", "s2pdata.refimage"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a stage not written yet
            if exc.name != mod:
                raise
    for fn in list(_WARMUPS):
        fn()


def single_thread() -> None:
    """One level of parallelism: inside a build worker, OpenCV and Numba use one thread."""
    import cv2
    import numba

    cv2.setNumThreads(1)
    numba.set_num_threads(1)
