"""Colour domains: colour image -> a few-colour layout map (PI-REC's "colour domain").

Consumes a colour image ``(H, W, 3) uint8`` RGB; produces a colour-domain map of the same shape
(a handful of flat colours laid out where the image has them, detail removed) and a plain-JSON
``params`` dict with a fixed key set, from which ``domain_from_params`` re-creates the map.

Method (after You, Wang, Li, Zhang, Zhang, "PI-REC: Progressive Image Reconstruction Network With
Edge and Color Domain", 2019): k-means to ``k`` colours in CIELAB (a small Lloyd loop on a random
pixel subsample, k-means++ seeding, all draws from the explicit ``rng``), every pixel assigned to
its nearest centre; then a mode filter of the cluster-index map (majority in a square window,
repeated) so only the colour layout remains; cluster indices map back to palette colours (the
mean RGB of each cluster's pixels); an optional Gaussian blur softens the borders.
"""

from __future__ import annotations

import math

import cv2
import numba
import numpy as np

from s2pdata._check import check_range, check_rgb, check_rng
from s2pdata._jit import JIT, register_warmup

SAMPLE = 4096  # pixels the Lloyd loop fits on
ITERS = 20  # Lloyd iterations (stops early when no assignment changes)
MODE_PASSES = 2  # mode-filter passes

PARAM_KEYS = ("k", "centers_lab", "palette", "smooth", "passes", "blur")


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= 64:
        raise ValueError(f"k must be an int in 1..64, got {k!r}")
    return int(k)


def to_lab(color: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB -> ``(H * W, 3) float32`` CIELAB (L in 0..100)."""
    lab = cv2.cvtColor(color.astype(np.float32) * np.float32(1.0 / 255.0), cv2.COLOR_RGB2Lab)  # RGB input
    return lab.reshape(-1, 3)


def nearest_center(lab: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """``(N,) int64`` index of the nearest centre in squared Euclidean distance.

    Distances are summed in float32, first index on ties; where two centres are within float32
    rounding of equidistant either may win. Shape: ``(N, 3), (k, 3) -> (N,)``.
    """
    return _nearest_kernel(np.ascontiguousarray(lab, np.float32), np.ascontiguousarray(centers, np.float32))


@numba.njit(**JIT)
def _nearest_kernel(lab, centers):
    """lab (N, 3) float32, centers (k, 3) float32 -> (N,) int64 nearest index."""
    n, k = lab.shape[0], centers.shape[0]
    out = np.zeros(n, np.int64)
    for i in range(n):
        a, b, c = lab[i, 0], lab[i, 1], lab[i, 2]
        best = np.float32(np.inf)
        for j in range(k):
            d0 = a - centers[j, 0]
            d1 = b - centers[j, 1]
            d2 = c - centers[j, 2]
            d = d0 * d0 + d1 * d1 + d2 * d2
            if d < best:
                best = d
                out[i] = j
    return out


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding then Lloyd on ``x`` (n, 3) float32 -> ``(k, 3) float32`` centres."""
    n = x.shape[0]
    centers = np.empty((k, 3), np.float32)
    centers[0] = x[int(rng.integers(n))]
    d2 = np.sum((x - centers[0]) ** 2, axis=1, dtype=np.float64)
    for j in range(1, k):
        u = rng.random()
        tot = d2.sum()
        # all points coincide with chosen centres: repeat one (an empty cluster, never a new colour)
        idx = int(np.searchsorted(np.cumsum(d2), u * tot, side="right")) if tot > 0 else int(u * n)
        centers[j] = x[min(idx, n - 1)]
        d2 = np.minimum(d2, np.sum((x - centers[j]) ** 2, axis=1, dtype=np.float64))
    assign = None
    for _ in range(ITERS):
        new = nearest_center(x, centers)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = x[assign == j]
            if len(members):
                centers[j] = members.mean(axis=0, dtype=np.float64)
    return centers


def _palette(color: np.ndarray, idx: np.ndarray, k: int, centers: np.ndarray) -> np.ndarray:
    """``(k, 3) uint8`` mean RGB per cluster (rounded half up); an empty cluster gets its centre's RGB."""
    sums, counts = _sums_kernel(np.ascontiguousarray(color).reshape(-1, 3), idx, k)
    pal = ((2 * sums + counts[:, None]) // np.maximum(2 * counts[:, None], 1)).astype(np.uint8)
    empty = counts == 0
    if empty.any():
        rgb = cv2.cvtColor(centers[empty].reshape(1, -1, 3), cv2.COLOR_Lab2RGB)  # to RGB order
        pal[empty] = np.clip(np.rint(rgb.reshape(-1, 3) * 255.0), 0, 255).astype(np.uint8)
    return pal


@numba.njit(**JIT)
def _sums_kernel(color, idx, k):
    """color (N, 3) uint8, idx (N,) int64 -> per-cluster channel sums (k, 3) and counts (k,)."""
    sums = np.zeros((k, 3), np.int64)
    counts = np.zeros(k, np.int64)
    for i in range(idx.size):
        j = idx[i]
        counts[j] += 1
        sums[j, 0] += color[i, 0]
        sums[j, 1] += color[i, 1]
        sums[j, 2] += color[i, 2]
    return sums, counts


def _fit(color: np.ndarray, rng: np.random.Generator, k: int) -> tuple[np.ndarray, dict]:
    """Cluster-index map ``(H, W) int64`` and the quantisation params (k, centres, palette)."""
    lab = to_lab(color)
    n = lab.shape[0]
    pick = np.sort(rng.choice(n, size=min(SAMPLE, n), replace=False))
    centers = _kmeans(lab[pick], k, rng)
    idx = nearest_center(lab, centers)
    pal = _palette(color, idx, k, centers)
    params = {
        "k": k,
        "centers_lab": centers.astype(np.float64).tolist(),
        "palette": pal.tolist(),
        "smooth": 0,
        "passes": 0,
        "blur": 0.0,
    }
    return idx.reshape(color.shape[:2]), params


def _render(idx: np.ndarray, params: dict) -> np.ndarray:
    """Mode-filter the index map, paint the palette, blur: the smoothing half of a domain."""
    k = int(params["k"])
    pal = np.asarray(params["palette"], np.uint8).reshape(k, 3)
    for _ in range(int(params["passes"])):
        idx = mode_filter(idx, k, int(params["smooth"]))
    out = pal[idx]
    blur = float(params["blur"])
    if blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    return out


def quantize(color: np.ndarray, *, rng: np.random.Generator, k: int = 8) -> tuple[np.ndarray, dict]:
    """k-means colour quantisation in CIELAB: at most ``k`` distinct colours.

    Fits on ``min(SAMPLE, H W)`` pixels drawn without replacement from ``rng`` (k-means++
    seeding, up to ``ITERS`` Lloyd iterations), assigns every pixel to its nearest centre and
    paints it with the cluster's mean RGB.

    Parameters
    ----------
    color : (H, W, 3) uint8 RGB.
    rng : numpy Generator.
    k : number of clusters, 1..64.

    Returns
    -------
    quantised : (H, W, 3) uint8 with at most k distinct colours.
    params : {"k": int, "centers_lab": k x [L, a, b] floats, "palette": k x [r, g, b] ints,
        "smooth": 0, "passes": 0, "blur": 0.0} (the same keys as ``color_domain``).

    Shape: ``(H, W, 3) -> (H, W, 3)``.
    """
    color = check_rgb("color", color)
    check_rng(rng)
    k = _check_k(k)
    idx, params = _fit(color, rng, k)
    return _render(idx, params), params


def mode_filter(idx: np.ndarray, k: int, size: int) -> np.ndarray:
    """Majority index in each ``size x size`` window (mirror border, lowest index on ties).

    Shape: ``(H, W) int -> (H, W) int64``.
    """
    best = np.zeros(idx.shape, np.int64)
    best_count = np.full(idx.shape, -1.0, np.float32)
    for j in range(k):
        ind = (idx == j).astype(np.float32)
        # unnormalised box sum = count of index j in the window; BORDER_REFLECT_101 = scipy 'mirror'
        cnt = cv2.boxFilter(ind, -1, (size, size), normalize=False, borderType=cv2.BORDER_REFLECT_101)
        np.copyto(best, j, where=cnt > best_count)  # strict: the lower index keeps a tie
        np.maximum(best_count, cnt, out=best_count)
    return best


def domain_from_params(color: np.ndarray, params: dict) -> np.ndarray:
    """Re-create ``color_domain`` (or ``quantize``, where ``passes`` is 0) from its params.

    Shape: ``(H, W, 3) -> (H, W, 3)``.
    """
    color = check_rgb("color", color)
    missing = [key for key in PARAM_KEYS if key not in params]
    if missing:
        raise ValueError(f"params lacks keys {missing}; pass the dict color_domain returned")
    centers = np.asarray(params["centers_lab"], np.float32).reshape(int(params["k"]), 3)
    idx = nearest_center(to_lab(color), centers).reshape(color.shape[:2])
    return _render(idx, params)


def color_domain(
    color: np.ndarray,
    *,
    rng: np.random.Generator,
    k: int = 8,
    smooth: int = 0,
    passes: int = MODE_PASSES,
    blur: float = 0.0,
) -> tuple[np.ndarray, dict]:
    """PI-REC-style colour domain: k-means colours in CIELAB, then a mode filter of the layout.

    Parameters
    ----------
    color : (H, W, 3) uint8 RGB.
    rng : numpy Generator (the sample's).
    k : number of colours, 1..64.
    smooth : odd mode-filter window side; 0 picks ``max(3, min(H, W) // 32)`` made odd
        (15 at 512^2).
    passes : mode-filter passes (0 gives ``quantize``'s image).
    blur : Gaussian sigma of a final blur in pixels; 0 keeps hard borders (and <= k colours).

    Returns
    -------
    domain : (H, W, 3) uint8; with ``blur == 0`` at most k distinct colours, all from the palette.
    params : {"k": int, "centers_lab": k x 3 floats, "palette": k x 3 ints, "smooth": int,
        "passes": int, "blur": float}; ``domain_from_params(color, params)`` re-creates it.

    Shape: ``(H, W, 3) -> (H, W, 3)``.

    Notes
    -----
    You et al., "PI-REC: Progressive Image Reconstruction Network With Edge and Color Domain",
    arXiv:1903.10146, 2019 (colour domain as a k-means + median-filtered layout).
    """
    color = check_rgb("color", color)
    if smooth == 0:
        smooth = max(3, min(color.shape[:2]) // 32) | 1
    if isinstance(smooth, bool) or not isinstance(smooth, (int, np.integer)) or smooth < 1 or smooth % 2 == 0:
        raise ValueError(f"smooth must be an odd int >= 1 (or 0 for automatic), got {smooth!r}")
    if isinstance(passes, bool) or not isinstance(passes, (int, np.integer)) or passes < 0:
        raise ValueError(f"passes must be an int >= 0, got {passes!r}")
    blur = check_range("blur", blur, 0.0, math.inf)
    check_rng(rng)
    idx, params = _fit(color, rng, _check_k(k))
    params.update(smooth=int(smooth), passes=int(passes), blur=blur)
    return _render(idx, params), params


@register_warmup
def _warmup() -> np.ndarray:
    return color_domain(np.arange(48, dtype=np.uint8).reshape(4, 4, 3), rng=np.random.default_rng(0), k=2)[0]
