"""Hypothesis strategies for small line drawings (edge maps), built from a seed + primitives."""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import strategies as st


def draw_lines(seed: int, h: int, w: int, *, gaps: bool = True, n_shapes: int | None = None) -> np.ndarray:
    """``(h, w) bool`` edge map: closed shapes (rectangles, circles, polygons) and open strokes.

    With ``gaps=True`` some closed shapes get short gaps cut into their outline and open
    strokes are added; with ``gaps=False`` every shape is closed and there are no strokes.
    """
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.uint8)
    n = int(rng.integers(1, 6)) if n_shapes is None else n_shapes
    for _ in range(n):
        kind = int(rng.integers(0, 3))
        th = int(rng.integers(1, 3))
        # cv2 points are (x, y)
        if kind == 0:
            x0, x1 = sorted(rng.integers(0, w, 2).tolist())
            y0, y1 = sorted(rng.integers(0, h, 2).tolist())
            cv2.rectangle(img, (x0, y0), (x1, y1), 1, th)
        elif kind == 1:
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.circle(img, c, int(rng.integers(2, max(3, min(h, w) // 2))), 1, th)
        else:
            k = int(rng.integers(3, 7))
            pts = np.stack([rng.integers(0, w, k), rng.integers(0, h, k)], axis=1).astype(np.int32)
            cv2.polylines(img, [pts], True, 1, th)
        if gaps and rng.random() < 0.5:  # cut a short gap somewhere on what is drawn
            ys, xs = np.nonzero(img)
            if ys.size:
                t = int(rng.integers(0, ys.size))
                g = int(rng.integers(1, 4))
                img[max(0, ys[t] - g):ys[t] + g, max(0, xs[t] - g):xs[t] + g] = 0
    if gaps:
        for _ in range(int(rng.integers(0, 3))):
            p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p0, p1, 1, int(rng.integers(1, 3)))
    return img.astype(bool)


@st.composite
def line_drawings(draw, min_side: int = 8, max_side: int = 48, gaps: bool | None = None):
    """Small edge maps: drawn seed, size and gap flag, then primitives from ``draw_lines``."""
    seed = draw(st.integers(0, 2**32 - 1))
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    g = draw(st.booleans()) if gaps is None else gaps
    return draw_lines(seed, h, w, gaps=g)


def draw_blobs(seed: int, h: int, w: int) -> np.ndarray:
    """``(h, w) bool`` edge map with thick ink: filled disks and wide strokes (edge pixels far
    from any free pixel, so the growth runs many rounds) plus small specks."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))   # cv2 points are (x, y)
        cv2.circle(img, c, int(rng.integers(2, max(3, min(h, w) // 3))), 1, -1)
    for _ in range(int(rng.integers(0, 3))):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p0, p1, 1, int(rng.integers(3, 8)))
    for _ in range(int(rng.integers(0, h * w // 40 + 1))):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(img, c, int(rng.integers(0, 2)), 1, -1)
    return img.astype(bool)


@st.composite
def blob_drawings(draw, min_side: int = 8, max_side: int = 48):
    """Small thick-ink edge maps from a drawn seed and size (``draw_blobs``)."""
    seed = draw(st.integers(0, 2**32 - 1))
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    return draw_blobs(seed, h, w)
