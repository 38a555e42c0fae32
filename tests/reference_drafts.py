"""Slow, obviously-correct references for s2pdata.warp, s2pdata.spray and s2pdata.drafts.

numpy / scipy only, written from the formulas in REFERENCE.md §3.4-§3.6 and the modules'
docstrings, never from the fast code:

- ``ref_warp_image``: spatial-transformer bilinear sampling (``align_corners=False``) in float64,
  one explicit formula per step; borders "reflect" (mirror about pixel edges), "replicate",
  "constant" (zeros).
- ``ref_warp_labels``: the same sampling positions, nearest pixel centre, 0 outside.
- ``ref_spray_mask`` / ``ref_apply_spray``: the soft-stroke formula with plain Python loops.
- ``ref_paste_patches``: pixel-by-pixel paste of already-rotated patches.
- ``ref_eligible_regions``: which labels ``cut_region_patch`` may choose, label by label.
"""

from __future__ import annotations

import math

import numpy as np


def _sample_positions(theta, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Input pixel coordinates (px, py) sampled at every output pixel, float64 (h, w) each."""
    t = np.asarray(theta, dtype=np.float64).reshape(2, 3)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    x = (2.0 * cols + 1.0) / w - 1.0  # output pixel centre, normalised, edges at -1 / +1
    y = (2.0 * rows + 1.0) / h - 1.0
    xs = t[0, 0] * x + t[0, 1] * y + t[0, 2]
    ys = t[1, 0] * x + t[1, 1] * y + t[1, 2]
    px = ((xs + 1.0) * w - 1.0) / 2.0  # normalised -> pixel index (centres at integers)
    py = ((ys + 1.0) * h - 1.0) / 2.0
    return px, py


def _border_index(i: np.ndarray, n: int, border: str) -> tuple[np.ndarray, np.ndarray]:
    """(index into 0..n-1, valid) for integer pixel indices ``i`` under a border rule."""
    if border == "replicate":
        return np.clip(i, 0, n - 1), np.ones(i.shape, bool)
    if border == "reflect":  # ... c b a | a b c ... : mirror about the pixel edge, period 2n
        m = np.mod(i, 2 * n)
        return np.where(m >= n, 2 * n - 1 - m, m), np.ones(i.shape, bool)
    if border == "constant":
        ok = (i >= 0) & (i < n)
        return np.clip(i, 0, n - 1), ok
    raise ValueError(border)


def ref_warp_image(image: np.ndarray, theta, border: str = "reflect") -> np.ndarray:
    """Bilinear spatial-transformer warp, float64 ``(H, W)`` or ``(H, W, C)`` output."""
    img = image.astype(np.float64)
    if img.ndim == 2:
        img = img[..., None]
    h, w = img.shape[:2]
    px, py = _sample_positions(theta, h, w)
    x0, y0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    fx, fy = (px - x0)[..., None], (py - y0)[..., None]
    out = np.zeros(img.shape, np.float64)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            xi, okx = _border_index(x0 + dx, w, border)
            yi, oky = _border_index(y0 + dy, h, border)
            val = img[yi, xi] * (okx & oky)[..., None]
            out += wy * wx * val
    return out.reshape(image.shape)


def ref_warp_labels(labels: np.ndarray, theta) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-centre warp of a label map (0 outside) and a bool map of near-tie pixels.

    A tie (sampling position within 1e-6 of halfway between two centres) may round either way
    in another floating-point evaluation order; callers ignore those pixels.
    """
    h, w = labels.shape
    px, py = _sample_positions(theta, h, w)
    out = np.zeros((h, w), np.int32)
    for i in range(h):
        for j in range(w):
            c, r = math.floor(px[i, j] + 0.5), math.floor(py[i, j] + 0.5)
            if 0 <= r < h and 0 <= c < w:
                out[i, j] = labels[r, c]
    tie = (np.abs((px + 0.5) - np.round(px + 0.5)) < 1e-6) | (np.abs((py + 0.5) - np.round(py + 0.5)) < 1e-6)
    return out, tie


def _stroke_coverage(d: float, half: float, softness: float) -> float:
    core = half * (1.0 - softness)
    if d >= half:
        return 0.0
    if d <= core:
        return 1.0
    t = (half - d) / (half - core)
    return t * t * (3.0 - 2.0 * t)


def _distance_to_segment(r: float, c: float, r0: float, c0: float, r1: float, c1: float) -> float:
    dr, dc = r1 - r0, c1 - c0
    len2 = dr * dr + dc * dc
    t = 0.0 if len2 == 0.0 else min(1.0, max(0.0, ((r - r0) * dr + (c - c0) * dc) / len2))
    return math.hypot(r - (r0 + t * dr), c - (c0 + t * dc))


def ref_spray_mask(shape, paths, widths, softness: float, opacity: float) -> np.ndarray:
    """Max over paths of opacity * coverage(distance to the segment), every pixel, every path."""
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((h, w), np.float64)
    for ((r0, c0), (r1, c1)), width in zip(paths, widths):
        for i in range(h):
            for j in range(w):
                d = _distance_to_segment(i, j, r0, c0, r1, c1)
                out[i, j] = max(out[i, j], opacity * _stroke_coverage(d, width / 2.0, softness))
    return out


def ref_apply_spray(image: np.ndarray, alpha: np.ndarray, color) -> np.ndarray:
    """``rint(v + a (colour - v))`` per channel in float32; a == 0 leaves the pixel alone."""
    v = image.astype(np.float32)
    a = alpha.astype(np.float32)[..., None]
    c = np.asarray(color, np.float32)
    out = np.rint(v + a * (c - v)).astype(np.uint8)
    return np.where(a > 0, out, image)


def ref_paste_patches(image: np.ndarray, placed) -> np.ndarray:
    """Paste ``[(rgb, mask, row, col), ...]`` pixel by pixel (later ones on top), clipped."""
    out = image.copy()
    h, w = image.shape[:2]
    for rgb, mask, row, col in placed:
        for i in range(mask.shape[0]):
            for j in range(mask.shape[1]):
                r, c = row + i, col + j
                if mask[i, j] and 0 <= r < h and 0 <= c < w:
                    out[r, c] = rgb[i, j]
    return out


def ref_eligible_regions(labels: np.ndarray, min_area: int, max_side: int) -> list[int]:
    """Labels > 0 with at least ``min_area`` pixels and a bounding box at most ``max_side``."""
    ok = []
    for lab in range(1, int(labels.max(initial=0)) + 1):
        rr, cc = np.nonzero(labels == lab)
        if len(rr) < min_area or len(rr) == 0:
            continue
        if rr.max() - rr.min() + 1 <= max_side and cc.max() - cc.min() + 1 <= max_side:
            ok.append(lab)
    return ok
