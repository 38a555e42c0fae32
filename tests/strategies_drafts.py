"""Hypothesis strategies for warp / spray / drafts tests: small images, label drawings, pools.

Everything is built from a drawn seed and primitives (sinusoids and Gaussian bumps for smooth
images; disks and polygons for label drawings and cel pictures), never pixel by pixel.
"""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import strategies as st
from scipy import ndimage

from s2pdata.drafts import PatchPool, cut_rect_patch, cut_region_patch
from s2pdata.spray import SprayParams
from s2pdata.warp import make_affine_params
from tests.strategies_images import draw_cel_image


def draw_smooth_image(h: int, w: int, seed: int, channels: int = 3) -> np.ndarray:
    """A smooth ``(h, w, channels) uint8`` image: low-frequency sinusoids plus soft bumps."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((h, w, channels), np.float64)
    for ch in range(channels):
        v = np.full((h, w), rng.uniform(60, 190))
        for _ in range(2):
            period = rng.uniform(12, 40)
            ang = rng.uniform(0, np.pi)
            v += rng.uniform(10, 40) * np.sin((rows * np.sin(ang) + cols * np.cos(ang)) / period * 2 * np.pi
                                             + rng.uniform(0, 6.3))
        for _ in range(2):
            r0, c0, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 12)
            v += rng.uniform(-40, 40) * np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2 * s * s))
        out[..., ch] = v
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def draw_label_picture(h: int, w: int, seed: int, n_shapes: int = 5) -> np.ndarray:
    """Connected components (scipy.ndimage.label, 4-connected) of drawn disks and polygons, int32."""
    rng = np.random.default_rng(seed)
    ink = np.zeros((h, w), np.uint8)
    for _ in range(n_shapes):
        if rng.random() < 0.5:
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))  # cv2 takes (x, y)
            cv2.circle(ink, centre, int(rng.integers(1, max(2, min(h, w) // 3))), 1, -1)
        else:
            n = int(rng.integers(3, 6))
            pts = np.stack([rng.integers(0, w, n), rng.integers(0, h, n)], 1).astype(np.int32)  # (x, y)
            cv2.fillPoly(ink, [pts], 1)
    labels, _ = ndimage.label(ink)
    return labels.astype(np.int32)


def position_image(h: int, w: int) -> np.ndarray:
    """``(h, w, 3) uint8`` whose pixels spell out their own (row, col): any crop reveals where it came from."""
    rows, cols = np.mgrid[0:h, 0:w]
    return np.stack([rows % 256, cols % 256, (rows // 256) * 16 + cols // 256], -1).astype(np.uint8)


@st.composite
def smooth_images(draw, min_side: int = 24, max_side: int = 64) -> np.ndarray:
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    return draw_smooth_image(h, w, draw(st.integers(0, 2**32 - 1)))


@st.composite
def affine_params(draw, sigma: float = 0.1):
    """``make_affine_params`` at a drawn seed, sigma in [0, ``sigma``], either noise model."""
    s = draw(st.sampled_from([0.0, sigma / 4, sigma / 2, sigma]))
    one_sided = draw(st.booleans())
    return make_affine_params((8, 8), rng=np.random.default_rng(draw(st.integers(0, 2**32 - 1))),
                              sigma=s, one_sided=one_sided)


@st.composite
def label_pictures(draw, min_side: int = 4, max_side: int = 40) -> np.ndarray:
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    return draw_label_picture(h, w, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 6)))


@st.composite
def spray_params(draw, h: int, w: int) -> SprayParams:
    """A spray with 0-3 segments whose end points may lie outside the image (or coincide)."""
    n = draw(st.integers(0, 3))
    coord = st.floats(-10.0, max(h, w) + 10.0, allow_nan=False, width=32)
    paths, widths = [], []
    for _ in range(n):
        p0 = (draw(coord), draw(coord))
        p1 = p0 if draw(st.integers(0, 5)) == 0 else (draw(coord), draw(coord))
        paths.append((p0, p1))
        widths.append(draw(st.floats(0.25, 30.0, allow_nan=False)))
    return SprayParams(color=tuple(draw(st.integers(0, 255)) for _ in range(3)), paths=tuple(paths),
                       widths=tuple(widths), softness=draw(st.floats(0.0, 1.0)),
                       opacity=draw(st.floats(0.0, 1.0)))


def make_pool(seed: int, n_images: int = 3, per_image: int = 4, side: int = 48) -> PatchPool:
    """A small pool of rectangles and regions cut from toy cel pictures (small patch sides)."""
    rng = np.random.default_rng(seed)
    patches = []
    for k in range(n_images):
        img = draw_cel_image(side, side, int(rng.integers(2**32)), n_shapes=5)
        labels = draw_label_picture(side, side, int(rng.integers(2**32)))
        for _ in range(per_image):
            p = None
            if rng.random() < 0.5:
                p = cut_region_patch(img, labels, rng=rng, min_area=4, max_side=side, key=f"img-{k}")
            patches.append(p or cut_rect_patch(img, rng=rng, side=(4, 24), key=f"img-{k}"))
    return PatchPool(patches)


@st.composite
def pools(draw) -> PatchPool:
    n_images = draw(st.integers(0, 3))
    return make_pool(draw(st.integers(0, 2**32 - 1)), n_images=n_images, per_image=draw(st.integers(1, 4)))
