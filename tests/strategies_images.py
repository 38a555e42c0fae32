"""Hypothesis strategies: small RGB images built from a drawn seed and drawing primitives.

Images are cel-shaded toys: a flat background, flat-colour disks and polygons with dark
outlines, and a few dark lines; or a blank (constant) image. Pixels are never drawn one by one,
so Hypothesis shrinks over (size, seed, primitive count), which stays readable.
"""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import strategies as st


def draw_cel_image(h: int, w: int, seed: int, n_shapes: int = 4, n_lines: int = 2,
                   outline: bool = True) -> np.ndarray:
    """A toy cel-shaded ``(h, w, 3) uint8`` image from ``seed`` (numpy only + cv2 drawing)."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(120, 256, 3, dtype=np.uint8)  # light paper-ish background
    dark = (int(rng.integers(0, 60)),) * 3
    thick = 1 if min(h, w) < 64 else int(rng.integers(1, 4))
    for _ in range(n_shapes):
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            # cv2 takes the centre as (x, y) = (col, row)
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            rad = int(rng.integers(1, max(2, min(h, w) // 2)))
            cv2.circle(img, centre, rad, fill, -1, lineType=cv2.LINE_8)
            if outline:
                cv2.circle(img, centre, rad, dark, thick, lineType=cv2.LINE_8)
        else:
            n = int(rng.integers(3, 7))
            pts = np.stack([rng.integers(0, w, n), rng.integers(0, h, n)], 1).astype(np.int32)
            cv2.fillPoly(img, [pts], fill)  # pts as (x, y)
            if outline:
                cv2.polylines(img, [pts], True, dark, thick)
    for _ in range(n_lines):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))  # (x, y) for cv2
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p0, p1, dark, thick)
    return img


@st.composite
def cel_images(draw, min_side: int = 1, max_side: int = 40) -> np.ndarray:
    """A toy cel-shaded image of random size in [min_side, max_side]^2."""
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    n_shapes = draw(st.integers(0, 5))
    n_lines = draw(st.integers(0, 3))
    return draw_cel_image(h, w, seed, n_shapes, n_lines)


@st.composite
def blank_images(draw, min_side: int = 1, max_side: int = 40) -> np.ndarray:
    """A constant image of any colour (black and white included)."""
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    rgb = draw(st.tuples(*[st.sampled_from([0, 1, 127, 254, 255]) | st.integers(0, 255)] * 3))
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rgb
    return img


def images(min_side: int = 1, max_side: int = 40):
    """Cel-shaded images, or (one time in five or so) blank ones."""
    return st.one_of(cel_images(min_side, max_side), cel_images(min_side, max_side),
                     cel_images(min_side, max_side), cel_images(min_side, max_side),
                     blank_images(min_side, max_side))


@st.composite
def hint_records(draw, h: int, w: int, max_n: int = 6) -> list[dict]:
    """Hint records (``Hints.to_json`` form) for an ``h x w`` image: centres anywhere inside the
    image, sides 1..9 (a patch may stick out of the image; rendering clips it)."""
    n = draw(st.integers(0, max_n))
    return [{"row": draw(st.integers(0, h - 1)), "col": draw(st.integers(0, w - 1)),
             "side": draw(st.integers(1, 9)),
             "rgb": list(draw(st.tuples(*[st.integers(0, 255)] * 3)))} for _ in range(n)]
