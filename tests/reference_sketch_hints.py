"""Slow, obviously-correct references for s2pdata.sketch and s2pdata.hints (numpy / scipy only).

Written from the formulas of REFERENCE.md 3.1 and 3.8, not from the fast code:

* luma is ITU-R 601 in the 15-bit fixed point OpenCV 5 uses (``(9798 R + 19235 G + 3735 B +
  2^14) >> 15``; it equals ``round(0.299 R + 0.587 G + 0.114 B)`` to within one grey level, which
  ``test_sketch`` checks), so that the extractors can be compared exactly downstream of it;
* Gaussians are ``scipy.ndimage.gaussian_filter`` in float64 with ``truncate=4`` and the
  ``mirror`` border (the same mirror, d c b | a b c d | c b a, as OpenCV's REFLECT_101);
* XDoG's threshold, the dilation, the hint patches and the hint squares are plain Python loops.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import ndimage


def ref_gray(color: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 ITU-R 601 luma (OpenCV 5's 15-bit fixed point)."""
    c = color.astype(np.int64)
    return ((9798 * c[..., 0] + 19235 * c[..., 1] + 3735 * c[..., 2] + (1 << 14)) >> 15).astype(np.uint8)


def ref_gray_float(color: np.ndarray) -> np.ndarray:
    """The textbook 601 luma, rounded half up (for the within-one-level check)."""
    c = color.astype(np.float64)
    return np.floor(0.299 * c[..., 0] + 0.587 * c[..., 1] + 0.114 * c[..., 2] + 0.5).astype(np.int64)


def ref_sketch_dilate(color: np.ndarray) -> np.ndarray:
    """255 - (max over the in-image 3x3 neighbourhood of g - g), one pixel at a time."""
    g = ref_gray(color).astype(np.int64)
    H, W = g.shape
    out = np.empty((H, W), np.uint8)
    for i in range(H):
        for j in range(W):
            d = max(g[y, x] for y in range(max(0, i - 1), min(H, i + 2))
                    for x in range(max(0, j - 1), min(W, j + 2)))
            out[i, j] = 255 - (d - g[i, j])
    return out


def ref_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """float64 Gaussian per 2-D plane, radius int(4 sigma + 0.5), mirror border."""
    img = np.asarray(img, np.float64)
    if img.ndim == 2:
        return ndimage.gaussian_filter(img, sigma, mode="mirror", truncate=4.0)
    return np.stack([ref_blur(img[..., c], sigma) for c in range(img.shape[2])], axis=-1)


def ref_xdog_dog(color: np.ndarray, *, sigma: float, k: float, tau: float) -> np.ndarray:
    """D = G_sigma(g) - tau G_{k sigma}(g) on g = luma / 255, float64."""
    g = ref_gray(color).astype(np.float64) / 255.0
    return ref_blur(g, sigma) - tau * ref_blur(g, k * sigma)


def ref_xdog_threshold(u: float, *, phi: float, eps: float) -> float:
    """The paper's soft threshold: T(u) = 1 if u >= eps else 1 + tanh(phi (u - eps))."""
    if u >= eps:
        return 1.0
    return 1.0 + math.tanh(phi * (u - eps))


def ref_sketch_xdog(color: np.ndarray, *, sigma: float = 0.4, k: float = 4.5, tau: float = 0.95,
                    phi: float = 1e9, eps: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(sketch uint8, D float64): 255 * clip(T(D), 0, 1) rounded, pixel by pixel."""
    d = ref_xdog_dog(color, sigma=sigma, k=k, tau=tau)
    out = np.empty(d.shape, np.uint8)
    for i in range(d.shape[0]):
        for j in range(d.shape[1]):
            t = min(1.0, max(0.0, ref_xdog_threshold(float(d[i, j]), phi=phi, eps=eps)))
            out[i, j] = int(math.floor(255.0 * t + 0.5))
    return out, d


def ref_sketch_highpass(color: np.ndarray, *, sigma: float = 3.0, tol: float = 1e-2) -> np.ndarray:
    """Ink = max over channels of (G_sigma(c) - c), below ``tol`` grey levels is 0, divided by
    its global max; sketch = 255 (1 - ink). No positive ink: all paper."""
    c = color.astype(np.float64)
    ink = (ref_blur(c, sigma) - c).max(axis=2)
    ink[ink < tol] = 0.0
    top = ink.max()
    if top <= 0:
        return np.full(ink.shape, 255, np.uint8)
    return np.floor(255.0 * (1.0 - ink / top) + 0.5).astype(np.uint8)


# ---------------------------------------------------------------- hints


def ref_patch_mean(color: np.ndarray, row: int, col: int, side: int) -> list[int]:
    """Mean colour of the side x side patch whose centre is (row, col) (top-left = centre -
    side // 2), each channel rounded half to even exactly (Python's ``round`` of a Fraction)."""
    top, left = row - side // 2, col - side // 2
    out = []
    for ch in range(3):
        total = 0
        for y in range(top, top + side):
            for x in range(left, left + side):
                assert 0 <= y < color.shape[0] and 0 <= x < color.shape[1], "patch leaves the image"
                total += int(color[y, x, ch])
        out.append(round(Fraction(total, side * side)))
    return out


def ref_render_hints(records: list[dict], shape, radius: int | None) -> np.ndarray:
    """RGBA map from hint records: each pixel takes the colour of the last hint whose square
    (side 2 radius + 1 on the centre, or the hint's own patch when radius is None) covers it."""
    H, W = int(shape[0]), int(shape[1])
    out = np.zeros((H, W, 4), np.uint8)
    for i in range(H):
        for j in range(W):
            for rec in records:
                if radius is None:
                    top, left = rec["row"] - rec["side"] // 2, rec["col"] - rec["side"] // 2
                    inside = top <= i < top + rec["side"] and left <= j < left + rec["side"]
                else:
                    inside = abs(i - rec["row"]) <= radius and abs(j - rec["col"]) <= radius
                if inside:
                    out[i, j, :3] = rec["rgb"]
                    out[i, j, 3] = 255
    return out
