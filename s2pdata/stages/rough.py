"""Rough-sketch simulation: clean extracted line art -> a plausible hand-drawn rough sketch.

Consumes a sketch ``(H, W) uint8`` (255 paper, 0 ink; grey lines allowed), as ``sketch``
produces it; produces a roughened sketch of the same shape and dtype plus a plain-JSON
``params`` dict with a fixed key set, recorded in the sample's json so
``roughen_from_params(sketch, params)`` re-creates the output exactly.

Extracted line art is cleaner than what users draw at inference (users draw rough, wobbly,
broken, doubled lines over construction marks on textured paper). The effects, applied to the
ink darkness ``d = 255 - sketch`` in this order:

1. stroke jitter: ``cv2.remap`` by a smooth random displacement field (bilinear upsampling of a
   coarse uniform grid, so ``|dx|, |dy| <= jitter_amp`` everywhere);
2. width variation: a blend towards ``dilate(d)`` or ``erode(d)`` (square of side
   ``2 width_px + 1``), weighted by a smooth field in [-1, 1];
3. pressure: darkness scaled by a smooth field in [pressure_min, 1];
4. doubled / over-drawn strokes: the ink inside a smooth random mask, shifted by
   ``double_shift`` (1-3 px each way at strength 1) and scaled by ``double_alpha``, max-combined;
5. gaps: ink erased under short random disks centred on ink pixels of the input;
6. construction scribbles: a few long faint polylines and arcs (1 px, ``cv2.LINE_8``);
7. paper grain: per-pixel darkening ``grain_amp * u**3`` (u uniform; ``grain_amp`` a whole number
   of grey levels, 12 * strength rounded), blended so paper darkens by
   at most ``grain_amp`` grey levels (``grain_amp <= GRAIN_MAX = 24``).

Bound (tested): a pixel whose value changes either lies within Chebyshev distance
``max_offset = ceil(jitter_amp + 1/16) + width_px + max(|double_shift|)`` of an input ink pixel
(value < 255), or lies on a scribble polyline of ``params["scribbles"]``, or was paper (255) and
is at most ``grain_amp`` grey levels darker. The 1/16 covers OpenCV's 1/32-pixel quantisation of
remap positions. At strength 1: jitter 1.5, width 1, shift <= 3, so ``max_offset <= 6``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from s2pdata._check import check_gray, check_range, check_rng

GRAIN_MAX = 24.0  # paper grain never darkens paper by more than this (grey levels)
JITTER_CELL = 48  # px between the coarse control values of the smooth fields
MAX_STRENGTH = 2.0
_FIELD_CELL = 32  # cell of the width / pressure / doubling fields
_DOUBLE_THRESH = 0.35  # doubling mask = smooth field > this (about a third of the area)
_SEED_HI = 2**31 - 1

PARAM_KEYS = (
    "strength",
    "jitter_amp",
    "jitter_cell",
    "jitter_seed",
    "width_px",
    "width_seed",
    "pressure_min",
    "pressure_seed",
    "double_shift",
    "double_alpha",
    "double_seed",
    "gaps",
    "scribbles",
    "grain_amp",
    "grain_seed",
    "max_offset",
)


def smooth_field(shape, cell: int, seed: int) -> np.ndarray:
    """``(H, W) float32`` smooth noise in [-1, 1]: a coarse uniform grid upsampled bilinearly.

    Bilinear weights are convex, so the field never leaves the range of its control values.
    """
    h, w = int(shape[0]), int(shape[1])
    gh, gw = h // cell + 2, w // cell + 2
    coarse = np.random.default_rng(int(seed)).uniform(-1.0, 1.0, (gh, gw)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)  # dsize is (w, h)


def max_offset(jitter_amp: float, width_px: int, double_shift) -> int:
    """Chebyshev distance from input ink within which stroke effects may change pixels."""
    shift = max(abs(int(double_shift[0])), abs(int(double_shift[1])))
    return int(math.ceil(float(jitter_amp) + 1.0 / 16.0)) * (jitter_amp > 0) + int(width_px) + shift


def _scribble(h: int, w: int, rng: np.random.Generator) -> list[list[int]]:
    """Points ``[[row, col], ...]`` of one long construction stroke: a polyline or an arc."""
    side = max(h, w)
    if rng.random() < 0.5:
        n = int(rng.integers(2, 5))
        r0, c0 = rng.uniform(0, h), rng.uniform(0, w)
        ang = rng.uniform(0, 2 * np.pi)
        pts = [(r0, c0)]
        for _ in range(n - 1):
            ang += rng.normal(0.0, 0.35)
            step = rng.uniform(0.15, 0.4) * side
            r0, c0 = r0 + step * np.sin(ang), c0 + step * np.cos(ang)
            pts.append((r0, c0))
    else:
        cr, cc = rng.uniform(0, h), rng.uniform(0, w)
        rad = rng.uniform(0.2, 0.6) * side
        a0 = rng.uniform(0, 2 * np.pi)
        a = a0 + np.linspace(0.0, rng.uniform(0.5, 1.5), 16)
        pts = list(zip(cr + rad * np.sin(a), cc + rad * np.cos(a)))
    return [[int(round(r)), int(round(c))] for r, c in pts]


def make_rough_params(sketch: np.ndarray, *, rng: np.random.Generator, strength: float = 1.0) -> dict:
    """Draw every parameter of ``roughen_sketch`` (the ink decides where gaps go).

    Draw order is fixed whatever the strength, so the stream does not depend on branches.
    Returns a plain-JSON dict with the keys ``PARAM_KEYS`` and fixed types (see
    ``roughen_sketch``).
    """
    sketch = check_gray("sketch", sketch)
    check_rng(rng)
    s = check_range("strength", strength, 0.0, MAX_STRENGTH)
    h, w = sketch.shape
    seeds = [int(v) for v in rng.integers(0, _SEED_HI, 5)]
    jitter_amp = 1.5 * s
    width_px = int(round(min(1.0, s)))
    shift = [int(v) for v in rng.integers(1, 4, 2) * rng.choice([-1, 1], 2)]
    shift = [int(round(v * min(1.0, s))) for v in shift]
    double_alpha = float(rng.uniform(0.3, 0.6)) * min(1.0, s)
    if double_alpha == 0.0:
        shift = [0, 0]
    # gaps: disks of radius 1-2 centred on strong ink pixels of the input
    ink = np.flatnonzero(sketch < 128)
    if ink.size == 0:
        ink = np.flatnonzero(sketch < 255)
    n_gaps = min(int(round(40 * s)), ink.size // 150)
    picks = rng.choice(ink.size, size=n_gaps, replace=False) if n_gaps else np.zeros(0, np.int64)
    radii = rng.integers(1, 3, n_gaps)
    gaps = [[int(ink[p] // w), int(ink[p] % w), int(r)] for p, r in zip(picks, radii)]
    n_scr = int(rng.integers(0, int(round(3 * s)) + 1))
    scribbles = [{"points": _scribble(h, w, rng), "level": int(rng.integers(24, 73))} for _ in range(n_scr)]
    grain_amp = float(round(min(GRAIN_MAX, 12.0 * s)))  # whole grey levels: an exact bound
    params = {
        "strength": s,
        "jitter_amp": float(jitter_amp),
        "jitter_cell": JITTER_CELL,
        "jitter_seed": seeds[0],
        "width_px": width_px,
        "width_seed": seeds[1],
        "pressure_min": float(1.0 - 0.3 * min(1.0, s)),
        "pressure_seed": seeds[2],
        "double_shift": shift,
        "double_alpha": float(double_alpha),
        "double_seed": seeds[3],
        "gaps": gaps,
        "scribbles": scribbles,
        "grain_amp": grain_amp,
        "grain_seed": seeds[4],
        "max_offset": 0,
    }
    params["max_offset"] = max_offset(jitter_amp, width_px, shift)
    return params


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``img`` moved by (dy, dx) pixels, zeros where nothing moves in."""
    out = np.zeros_like(img)
    h, w = img.shape
    if abs(dy) >= h or abs(dx) >= w:  # moved wholly out of a tiny image
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def scribble_mask(shape, scribbles) -> np.ndarray:
    """``(H, W) uint8`` darkness layer of the scribbles (max of their levels where drawn)."""
    layer = np.zeros(shape[:2], np.uint8)
    for s in scribbles:
        pts = np.asarray(s["points"], np.int32).reshape(-1, 2)[:, ::-1].copy()  # (row, col) -> (x, y)
        stroke = np.zeros_like(layer)
        cv2.polylines(stroke, [pts], False, int(s["level"]), 1, lineType=cv2.LINE_8)
        np.maximum(layer, stroke, out=layer)
    return layer


def roughen_from_params(sketch: np.ndarray, params: dict) -> np.ndarray:
    """Apply recorded rough-sketch parameters (``make_rough_params``) to ``sketch``.

    Shape: ``(H, W) uint8 -> (H, W) uint8``.
    """
    sketch = check_gray("sketch", sketch)
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(f"params lacks keys {missing}; pass the dict make_rough_params returned")
    h, w = sketch.shape
    d = 255.0 - sketch.astype(np.float32)  # darkness: 0 paper, 255 ink
    amp = float(params["jitter_amp"])
    if amp > 0:
        cell = int(params["jitter_cell"])
        fx = smooth_field((h, w), cell, params["jitter_seed"])
        fy = smooth_field((h, w), cell, params["jitter_seed"] + 1)
        rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
        # cv2.remap takes map_x (columns) then map_y (rows)
        d = cv2.remap(
            d,
            cols + np.float32(amp) * fx,
            rows + np.float32(amp) * fy,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
    wp = int(params["width_px"])
    if wp > 0:
        f = smooth_field((h, w), _FIELD_CELL, params["width_seed"])
        kern = np.ones((2 * wp + 1, 2 * wp + 1), np.uint8)
        dil, ero = cv2.dilate(d, kern), cv2.erode(d, kern)
        d = d + np.maximum(f, 0) * (dil - d) + np.maximum(-f, 0) * (ero - d)
    pmin = float(params["pressure_min"])
    if pmin < 1.0:
        f = smooth_field((h, w), _FIELD_CELL, params["pressure_seed"])
        d = d * (pmin + (1.0 - pmin) * 0.5 * (f + 1.0))
    alpha = float(params["double_alpha"])
    dy, dx = (int(v) for v in params["double_shift"])
    if alpha > 0 and (dy or dx):
        part = smooth_field((h, w), _FIELD_CELL, params["double_seed"]) > _DOUBLE_THRESH
        d = np.maximum(d, np.float32(alpha) * _shift(np.where(part, d, 0.0).astype(np.float32), dy, dx))
    if params["gaps"]:
        erase = np.zeros((h, w), np.uint8)
        for r, c, rad in params["gaps"]:
            cv2.circle(erase, (int(c), int(r)), int(rad), 1, -1, lineType=cv2.LINE_8)  # centre (x, y)
        d = np.where(erase > 0, np.float32(0.0), d)
    if params["scribbles"]:
        d = np.maximum(d, scribble_mask((h, w), params["scribbles"]).astype(np.float32))
    g_amp = float(params["grain_amp"])
    if g_amp > 0:
        u = np.random.default_rng(int(params["grain_seed"])).random((h, w), dtype=np.float32)
        grain = np.float32(g_amp) * u * u * u
        d = d + grain * (1.0 - np.clip(d, 0.0, 255.0) / 255.0)
    return (255 - np.rint(np.clip(d, 0.0, 255.0))).astype(np.uint8)


def roughen_sketch(sketch: np.ndarray, *, rng: np.random.Generator, strength: float = 1.0) -> tuple[np.ndarray, dict]:
    """Simulate a hand-drawn rough sketch from clean extracted line art.

    Stroke jitter, width variation, pressure, doubled strokes, gaps, construction scribbles and
    paper grain (module docstring); the training-time counterpart of users' rough drawings.
    Deterministic given ``rng``; ``strength=0`` returns an exact copy.

    Parameters
    ----------
    sketch : (H, W) uint8, 255 paper, 0 ink.
    rng : numpy Generator (the sample's).
    strength : float in [0, 2]; amplitudes and counts scale with it.

    Returns
    -------
    rough : (H, W) uint8.
    params : plain-JSON dict, keys ``PARAM_KEYS``: floats ``strength``, ``jitter_amp``,
        ``pressure_min``, ``double_alpha``, ``grain_amp``; ints ``jitter_cell``, ``*_seed``,
        ``width_px``, ``max_offset``; ``double_shift`` [dy, dx] ints; ``gaps`` list of
        [row, col, radius] ints; ``scribbles`` list of {"points": [[row, col], ...] ints,
        "level": int darkness}.

    Shape: ``(H, W) uint8 -> (H, W) uint8``.
    """
    params = make_rough_params(sketch, rng=rng, strength=strength)
    return roughen_from_params(sketch, params), params
