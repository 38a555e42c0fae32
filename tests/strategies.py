"""Hypothesis strategies: small images built from a drawn seed and primitives (lines, disks,
polygons), never pixel by pixel, plus parameter and pool strategies for the draft kernels."""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import strategies as st
from scipy import ndimage

from s2pdata.pool import PatchPool
from s2pdata.stages.drafts import cut_rect_patch, cut_region_patch
from s2pdata.stages.spray import SprayParams
from s2pdata.stages.warp import make_affine_params

# -----------------------------------------------------------------------------------------------
# Colour pictures and hint records


def draw_cel_image(h: int, w: int, seed: int, n_shapes: int = 4, n_lines: int = 2, outline: bool = True) -> np.ndarray:
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
    return st.one_of(
        cel_images(min_side, max_side),
        cel_images(min_side, max_side),
        cel_images(min_side, max_side),
        cel_images(min_side, max_side),
        blank_images(min_side, max_side),
    )


@st.composite
def hint_records(draw, h: int, w: int, max_n: int = 6) -> list[dict]:
    """Hint records (``Hints.to_json`` form) for an ``h x w`` image: centres anywhere inside the
    image, sides 1..9 (a patch may stick out of the image; rendering clips it)."""
    n = draw(st.integers(0, max_n))
    return [
        {
            "row": draw(st.integers(0, h - 1)),
            "col": draw(st.integers(0, w - 1)),
            "side": draw(st.integers(1, 9)),
            "rgb": list(draw(st.tuples(*[st.integers(0, 255)] * 3))),
        }
        for _ in range(n)
    ]


# -----------------------------------------------------------------------------------------------
# Line drawings and edge maps


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
                img[max(0, ys[t] - g) : ys[t] + g, max(0, xs[t] - g) : xs[t] + g] = 0
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
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))  # cv2 points are (x, y)
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


# -----------------------------------------------------------------------------------------------
# Warps, sprays, label pictures and patch pools


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
            v += rng.uniform(10, 40) * np.sin(
                (rows * np.sin(ang) + cols * np.cos(ang)) / period * 2 * np.pi + rng.uniform(0, 6.3)
            )
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
    return make_affine_params(
        (8, 8), rng=np.random.default_rng(draw(st.integers(0, 2**32 - 1))), sigma=s, one_sided=one_sided
    )


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
    return SprayParams(
        color=tuple(draw(st.integers(0, 255)) for _ in range(3)),
        paths=tuple(paths),
        widths=tuple(widths),
        softness=draw(st.floats(0.0, 1.0)),
        opacity=draw(st.floats(0.0, 1.0)),
    )


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
