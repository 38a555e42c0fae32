"""Flat-colour maps: colour image + trapped-ball regions -> one robust colour per region.

Consumes a colour image ``(H, W, 3) uint8`` RGB and its region labels ``(H, W) int32`` (1..K,
``regions.propose_regions``); produces a flat-colour map ``(H, W, 3) uint8`` where every region
holds a single colour (per-channel median, or a trimmed mean) and a plain-JSON ``params`` dict.
A flat map is the cel-style target of flat-colourisation models and a clean colour layout.

Label 0 (pixels no region owns, e.g. edge pixels with ``trapped_ball(assign_edges=False)``)
keeps its colour from ``color``: there is no honest region colour for a line pixel, and the
build's labels cover every pixel anyway.
"""

from __future__ import annotations

import numba
import numpy as np

from s2pdata._check import check_array, check_choice, check_rgb
from s2pdata._jit import JIT, register_warmup

FLAT_STATS = ("median", "trimmed")
TRIM = 0.1  # trimmed mean drops floor(TRIM * n) values from each end


def flat_fill(
    color: np.ndarray, labels: np.ndarray, *, stat: str = "median", trim: float = TRIM
) -> tuple[np.ndarray, dict]:
    """Fill every region with a robust average of its colours, per channel.

    ``"median"``: ``floor(m + 1/2)`` where ``m`` is ``np.median`` of the region's values (the
    mean of the two middle values when the count is even, rounded half up). ``"trimmed"``: sort
    the region's values, drop ``t = floor(trim * n)`` from each end, and take the mean of the
    rest rounded half up (``(2 sum + c) // (2 c)``). Integer arithmetic throughout, so the
    result equals the plain-numpy reference exactly. Label 0 pixels keep ``color``.

    Parameters
    ----------
    color : (H, W, 3) uint8 RGB.
    labels : (H, W) int32, 0 = unassigned, regions 1..K (gaps in the numbering are fine).
    stat : "median" or "trimmed".
    trim : fraction in [0, 0.5) dropped from each end by "trimmed" (recorded for both).

    Returns
    -------
    flat : (H, W, 3) uint8, constant on every region.
    params : {"stat": str, "trim": float, "regions": int (labels.max()), "unassigned": "keep"}.

    Shape: ``(H, W, 3), (H, W) -> (H, W, 3)``.

    Cost: two passes over the pixels (a counting sort by label, then one 256-bin histogram per
    region and channel, cleared by revisiting the region's pixels), O(H W + 256 * 3 * K).
    """
    color = check_rgb("color", color)
    labels = check_array("labels", labels, dtype=np.int32, ndim=2)
    if labels.shape != color.shape[:2]:
        raise ValueError(f"labels must have color's (H, W) = {color.shape[:2]}, got {labels.shape}")
    check_choice("stat", stat, FLAT_STATS)
    trim = float(trim)
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim!r}")
    k = int(labels.max(initial=0))
    if labels.min(initial=0) < 0:
        raise ValueError(f"labels must be >= 0, got min {int(labels.min())}; 0 marks unassigned pixels")
    out = np.ascontiguousarray(color).copy()
    if k > 0:
        _flat_fill_kernel(
            np.ascontiguousarray(color).reshape(-1, 3),
            np.ascontiguousarray(labels).ravel(),
            k,
            stat == "trimmed",
            trim,
            out.reshape(-1, 3),
        )
    return out, {"stat": stat, "trim": trim, "regions": k, "unassigned": "keep"}


def flat_from_params(color: np.ndarray, labels: np.ndarray, params: dict) -> np.ndarray:
    """Re-create ``flat_fill``'s output from its params (no randomness is involved).

    Shape: ``(H, W, 3), (H, W) -> (H, W, 3)``.
    """
    return flat_fill(color, labels, stat=params["stat"], trim=params["trim"])[0]


@numba.njit(**JIT)
def _flat_fill_kernel(color, labels, k, trimmed, trim, out):
    """color (N, 3) uint8, labels (N,) int32 -> out (N, 3) rows of labelled pixels overwritten."""
    n = labels.size
    start = np.zeros(k + 2, np.int64)
    for i in range(n):
        start[labels[i] + 1] += 1
    for a in range(1, k + 2):
        start[a] += start[a - 1]
    order = np.empty(n, np.int64)
    fill = start[:-1].copy()
    for i in range(n):
        a = labels[i]
        order[fill[a]] = i
        fill[a] += 1
    hist = np.zeros(256, np.int64)
    val = np.zeros(3, np.uint8)
    for a in range(1, k + 1):
        lo, hi = start[a], start[a + 1]
        cnt = hi - lo
        if cnt == 0:
            continue
        for ch in range(3):
            for j in range(lo, hi):
                hist[color[order[j], ch]] += 1
            if trimmed:
                t = np.int64(np.floor(trim * cnt))
                keep_lo, keep_hi = t, cnt - t  # ranks [keep_lo, keep_hi) are averaged
                total = np.int64(0)
                rank = np.int64(0)
                for v in range(256):
                    h = hist[v]
                    if h:
                        a0 = max(rank, keep_lo)
                        a1 = min(rank + h, keep_hi)
                        if a1 > a0:
                            total += (a1 - a0) * v
                        rank += h
                c = keep_hi - keep_lo
                val[ch] = (2 * total + c) // (2 * c)
            else:
                r0, r1 = (cnt - 1) // 2, cnt // 2  # the two middle ranks (equal when cnt is odd)
                v0 = -1
                v1 = -1
                rank = np.int64(0)
                for v in range(256):
                    rank += hist[v]
                    if v0 < 0 and rank > r0:
                        v0 = v
                    if rank > r1:
                        v1 = v
                        break
                val[ch] = (v0 + v1 + 1) // 2
            for j in range(lo, hi):
                hist[color[order[j], ch]] = 0
        for j in range(lo, hi):
            p = order[j]
            out[p, 0] = val[0]
            out[p, 1] = val[1]
            out[p, 2] = val[2]


@register_warmup
def _warmup() -> np.ndarray:
    c = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    lab = np.array([[0, 1, 1, 2]] * 4, np.int32)
    flat_fill(c, lab, stat="trimmed")
    return flat_fill(c, lab)[0]
