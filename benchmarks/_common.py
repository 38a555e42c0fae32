"""Helpers every benchmark script shares: best-of timing and the machine's name."""

from __future__ import annotations

import platform
import time


def best_of(fn, repeat: int = 3) -> float:
    """Fastest of ``repeat`` calls of ``fn()``, in seconds (the least disturbed by other jobs)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else platform's machine string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
