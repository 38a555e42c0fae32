"""Slow, obviously-correct references for rough, flat, domain and refimage (numpy/scipy/cv2 only).

Self-contained: nothing here imports s2pdata, so a bug in a kernel cannot hide in its reference.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


# ---------------------------------------------------------------- rough sketches

def ref_scribble_pixels(shape, scribbles) -> np.ndarray:
    """``(H, W) bool`` pixels on the scribbles, one ``cv2.line`` (8-connected, 1 px) per segment."""
    mask = np.zeros(shape[:2], np.uint8)
    for s in scribbles:
        pts = s["points"]
        for (r0, c0), (r1, c1) in zip(pts[:-1], pts[1:]):
            cv2.line(mask, (int(c0), int(r0)), (int(c1), int(r1)), 1, 1, lineType=cv2.LINE_8)  # (x, y)
    return mask > 0


def ref_rough_violations(sketch: np.ndarray, rough: np.ndarray, params: dict) -> np.ndarray:
    """``(H, W) bool`` changed pixels that none of the documented effects explains.

    Allowed: within Chebyshev distance ``max_offset`` of input ink (value < 255), on a scribble,
    or input paper darkened by at most ``grain_amp`` grey levels.
    """
    d = int(params["max_offset"])
    ink = sketch < 255
    near = ndimage.binary_dilation(ink, structure=np.ones((2 * d + 1, 2 * d + 1), bool)) if d else ink
    changed = rough != sketch
    grain_ok = (sketch == 255) & (rough.astype(int) >= 255 - int(np.floor(params["grain_amp"])))
    return changed & ~near & ~ref_scribble_pixels(sketch.shape, params["scribbles"]) & ~grain_ok


# ---------------------------------------------------------------- flat fill

def ref_flat_fill(color: np.ndarray, labels: np.ndarray, stat: str = "median", trim: float = 0.1) -> np.ndarray:
    """Per-label, per-channel median (np.median, rounded half up) or trimmed mean; label 0 kept."""
    out = color.copy()
    for a in np.unique(labels):
        if a == 0:
            continue
        m = labels == a
        for ch in range(3):
            v = np.sort(color[..., ch][m].astype(np.int64))
            if stat == "median":
                val = int(np.floor(np.median(v) + 0.5))
            else:
                t = int(np.floor(trim * len(v)))
                kept = v[t:len(v) - t]
                val = (2 * int(kept.sum()) + len(kept)) // (2 * len(kept))  # mean rounded half up
            out[..., ch][m] = val
    return out


# ---------------------------------------------------------------- colour domains

def ref_mode_filter(idx: np.ndarray, k: int, size: int) -> np.ndarray:
    """Majority value in each size x size window (scipy 'mirror' border), lowest on ties."""
    def mode(values):
        return float(np.argmax(np.bincount(values.astype(np.int64), minlength=k)))
    return ndimage.generic_filter(idx.astype(np.float64), mode, size=size, mode="mirror").astype(np.int64)


def ref_lab(color: np.ndarray) -> np.ndarray:
    """``(H * W, 3) float64`` CIELAB through OpenCV's float conversion (the defining one)."""
    lab = cv2.cvtColor(color.astype(np.float32) / np.float32(255.0), cv2.COLOR_RGB2Lab)  # RGB input
    return lab.reshape(-1, 3).astype(np.float64)


def ref_sq_dists(lab: np.ndarray, centers) -> np.ndarray:
    """``(N, k) float64`` exact squared distances, by loops over centres."""
    c = np.asarray(centers, np.float64)
    return np.stack([((lab - c[j]) ** 2).sum(axis=1) for j in range(len(c))], axis=1)


# ---------------------------------------------------------------- reference images

def ref_bilinear(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear sample of ``img`` (H, W, C) at float (rows, cols) inside the image."""
    h, w = img.shape[:2]
    r0 = np.clip(np.floor(rows).astype(int), 0, h - 1)
    c0 = np.clip(np.floor(cols).astype(int), 0, w - 1)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    f = img.astype(np.float64)
    return ((1 - fr) * (1 - fc) * f[r0, c0] + (1 - fr) * fc * f[r0, c1]
            + fr * (1 - fc) * f[r1, c0] + fr * fc * f[r1, c1])


# ---------------------------------------------------------------- params schema

def schema(x):
    """JSON type skeleton: dict -> {key: schema}, list -> [element schemas merged], scalar -> type."""
    if isinstance(x, dict):
        return {k: schema(v) for k, v in x.items()}
    if isinstance(x, list):
        kinds = {repr(schema(v)) for v in x}
        return ["list", sorted(kinds)]
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int"
    if isinstance(x, float):
        return "float"
    if isinstance(x, str):
        return "str"
    return type(x).__name__


def compatible(a, b) -> bool:
    """Two schemas agree; an empty list agrees with any list."""
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(
            compatible(a[k], b[k]) for k in a)
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and (not a[1] or not b[1] or a[1] == b[1])
    return a == b


# ---------------------------------------------------------------- test pictures (cv2 drawing)

def draw_cel(h: int, w: int, seed: int, n_shapes: int = 4, n_lines: int = 2) -> np.ndarray:
    """A toy cel-shaded ``(h, w, 3) uint8`` RGB picture: flat disks/polygons, dark outlines, lines."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(120, 256, 3, dtype=np.uint8)
    dark = (int(rng.integers(0, 60)),) * 3
    for _ in range(n_shapes):
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))  # cv2 point (x, y)
            rad = int(rng.integers(1, max(2, min(h, w) // 2)))
            cv2.circle(img, centre, rad, fill, -1)
            cv2.circle(img, centre, rad, dark, 1)
        else:
            n = int(rng.integers(3, 7))
            pts = np.stack([rng.integers(0, w, n), rng.integers(0, h, n)], 1).astype(np.int32)  # (x, y)
            cv2.fillPoly(img, [pts], fill)
            cv2.polylines(img, [pts], True, dark, 1)
    for _ in range(n_lines):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))  # (x, y)
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p0, p1, dark, 1)
    return img


def draw_smooth(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth ``(h, w, 3) uint8`` picture: upsampled coarse random colours (good for warps)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (4, 4, 3)).astype(np.float32)
    return np.clip(np.rint(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)), 0, 255).astype(np.uint8)
