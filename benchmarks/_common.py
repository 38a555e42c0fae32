"""Helpers every benchmark script shares: best-of timing and the machine's name."""

from __future__ import annotations

import platform
import time

import cv2
import numpy as np


def best_of(fn, repeat: int = 3) -> float:
    """Fastest of ``repeat`` calls of ``fn()``, in seconds (the least disturbed by other jobs)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def jpeg_q95_round_trip(image: np.ndarray) -> np.ndarray:
    """The codec floor's unit of work: cv2 JPEG q95 encode, then decode, of a 3-channel image
    (cv2 order; callers convert outside or inside the timing as their floor defines)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


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


def stored_drafts(n: int, seed: int, pool, cfg) -> list[tuple[dict, np.ndarray]]:
    """``(decoded sample, its draft0.jpg bytes)`` of the first ``n`` demo pictures built with ``cfg``
    (drafts pasted from ``pool``): what an online draft is measured against (decoding the stored one)."""
    from s2pdata.demo import demo_bytes, demo_key
    from s2pdata.shards import decode_sample, encode_sample
    from s2pdata.synth import make_sample

    out = []
    for i in range(n):
        sample = make_sample(demo_bytes(i, seed=seed)[0], key=demo_key(i), seed=seed, cfg=cfg, pool=pool)
        raw = encode_sample(sample, cfg.schema())
        out.append((decode_sample(raw), np.frombuffer(raw["draft0.jpg"], np.uint8)))
    return out
