"""Random colour spray for colour drafts (Two-stage Sketch Colorization, TOG 2018; docs/method.md, Colour spray).

Consumes a colour image ``(H, W, 3) uint8``; produces a ``SprayParams`` record (one colour picked
from the image, a few straight paths with widths, softness and opacity) and, from it, a soft
stroke-coverage mask ``(H, W) float32`` and the image with the colour bled along the strokes.
The paper fixes only "several random linear paths, width r ~ U[64, 128] px"; the colour rule,
the fall-off shape, softness and opacity are s2pdata's choices, recorded in every sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from s2pdata._check import check_hw, check_pair, check_rgb, check_rng
from s2pdata._jit import JIT, register_warmup

#: Pixels with HSV saturation (max - min) / max at least this count as "saturated" colour sources.
SATURATION_MIN = 0.25
#: Candidate pixels examined when picking the colour (cheap, deterministic, resolution-free).
N_CANDIDATES = 64


@dataclass(frozen=True)
class SprayParams:
    """One colour spray: a colour sprayed along straight paths.

    Attributes
    ----------
    color : tuple of 3 int
        RGB colour, 0-255.
    paths : tuple of ((r0, c0), (r1, c1))
        Segment end points in pixel coordinates (row, col) of the image drawn for.
    widths : tuple of float
        Full stroke width in pixels, one per path (paper: U[64, 128] at 512^2).
    softness : float in [0, 1]
        Fraction of the half-width over which coverage falls from 1 (core) to 0 (edge);
        0 is a hard-edged stroke, 1 falls off from the centre line.
    opacity : float in [0, 1]
        Coverage in the stroke core.
    """

    color: tuple[int, int, int]
    paths: tuple
    widths: tuple
    softness: float
    opacity: float

    def __post_init__(self):
        color = tuple(int(c) for c in self.color)
        if len(color) != 3 or not all(0 <= c <= 255 for c in color):
            raise ValueError(f"color must be 3 ints in 0..255, got {self.color!r}")
        paths = tuple(tuple((float(p[0]), float(p[1])) for p in seg) for seg in self.paths)
        if any(len(seg) != 2 for seg in paths):
            raise ValueError(f"paths must be ((r0, c0), (r1, c1)) pairs, got {self.paths!r}")
        if not all(np.isfinite(v) for seg in paths for p in seg for v in p):
            raise ValueError(f"paths must hold finite coordinates, got {self.paths!r}")
        widths = tuple(float(w) for w in self.widths)
        if len(widths) != len(paths) or not all(np.isfinite(w) and w > 0 for w in widths):
            raise ValueError(f"widths must be one positive float per path ({len(paths)}), got {self.widths!r}")
        if not 0.0 <= float(self.softness) <= 1.0:
            raise ValueError(f"softness must be in [0, 1], got {self.softness!r}")
        if not 0.0 <= float(self.opacity) <= 1.0:
            raise ValueError(f"opacity must be in [0, 1], got {self.opacity!r}")
        object.__setattr__(self, "color", color)
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "softness", float(self.softness))
        object.__setattr__(self, "opacity", float(self.opacity))

    def to_json(self) -> dict:
        """Plain-JSON record (floats round-trip exactly)."""
        return {
            "color": list(self.color),
            "paths": [[list(p) for p in seg] for seg in self.paths],
            "widths": list(self.widths),
            "softness": self.softness,
            "opacity": self.opacity,
        }

    @classmethod
    def from_json(cls, d: dict) -> SprayParams:
        """Inverse of ``to_json``."""
        return cls(
            color=tuple(d["color"]),
            paths=tuple(tuple(tuple(p) for p in seg) for seg in d["paths"]),
            widths=tuple(d["widths"]),
            softness=d["softness"],
            opacity=d["opacity"],
        )


def pick_color(color: np.ndarray, *, rng: np.random.Generator) -> tuple[int, int, int]:
    """Pick the spray colour: a random pixel of a saturated part of the image.

    ``N_CANDIDATES`` pixels are drawn uniformly; one of those with HSV saturation
    >= ``SATURATION_MIN`` is chosen uniformly; if none is saturated, the most saturated candidate
    (first on ties). A random pixel rather than a dominant colour keeps minority colours in play,
    and sampling a fixed number of candidates costs the same at any resolution.

    Shape
    -----
    (H, W, 3) uint8 -> 3 ints
    """
    color = check_rgb("color", color)
    h, w = color.shape[:2]
    rows = rng.integers(0, h, size=N_CANDIDATES)
    cols = rng.integers(0, w, size=N_CANDIDATES)
    cand = color[rows, cols].astype(np.float64)  # (N, 3)
    mx, mn = cand.max(axis=1), cand.min(axis=1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1.0), 0.0)
    ok = np.flatnonzero(sat >= SATURATION_MIN)
    i = int(ok[rng.integers(len(ok))]) if len(ok) else int(np.argmax(sat))
    return tuple(int(v) for v in color[rows[i], cols[i]])


def make_spray_params(
    color: np.ndarray,
    *,
    rng: np.random.Generator,
    n_paths=(1, 3),
    width=(64, 128),
    ref_size: int = 512,
    softness=(0.3, 1.0),
    opacity=(0.5, 0.9),
) -> SprayParams:
    """Draw one random colour spray for ``color``.

    Two-stage Sketch Colorization (Zhang et al., TOG 2018) §"random colour spray": a colour
    picked from the image is sprayed along several random linear paths with width
    r ~ U[64, 128] px (at 512^2; scaled here by ``min(H, W) / ref_size``).

    Parameters
    ----------
    color : ndarray, (H, W, 3) uint8
    rng : numpy.random.Generator
    n_paths : (int, int)
        Number of paths ~ U{lo..hi}.
    width : (float, float)
        Full stroke width ~ U[lo, hi) px at ``ref_size``.
    ref_size : int
    softness, opacity : (float, float)
        Uniform ranges (s2pdata choices; the paper gives none).

    Returns
    -------
    SprayParams

    Shape
    -----
    (H, W, 3) uint8 -> record; end points are uniform over the image in (row, col).
    """
    color = check_rgb("color", color)
    check_rng(rng)
    lo_n, hi_n = check_pair("n_paths", n_paths, low=1, integer=True)
    w_lo, w_hi = check_pair("width", width)
    if w_lo <= 0:
        raise ValueError(f"width must be positive, got {width!r}; pass e.g. (4.0, 16.0)")
    if int(ref_size) <= 0:
        raise ValueError(f"ref_size must be a positive int, got {ref_size!r}")
    s_lo, s_hi = check_pair("softness", softness)
    o_lo, o_hi = check_pair("opacity", opacity)
    h, w = color.shape[:2]
    rgb = pick_color(color, rng=rng)
    n = int(rng.integers(lo_n, hi_n + 1))
    ends = rng.uniform(0.0, 1.0, size=(n, 2, 2)) * np.array([h - 1, w - 1], dtype=np.float64)
    scale = min(h, w) / float(ref_size)
    widths = rng.uniform(w_lo, w_hi, size=n) * scale
    return SprayParams(
        color=rgb,
        paths=tuple(tuple(map(tuple, seg)) for seg in ends),
        widths=tuple(float(v) for v in widths),
        softness=float(rng.uniform(s_lo, s_hi)),
        opacity=float(rng.uniform(o_lo, o_hi)),
    )


@numba.njit(**JIT)
def _coverage(d, half, core):
    """Coverage at distance ``d`` from the centre line: 1 inside ``core``, smoothstep to 0 at ``half``."""
    if d >= half:
        return 0.0
    if d <= core:
        return 1.0
    t = (half - d) / (half - core)
    return t * t * (3.0 - 2.0 * t)


@numba.njit(**JIT)
def _segment_box(r0, c0, r1, c1, half, h, w):
    """Inclusive rows top..bot and columns lef..rig of an (h, w) image within ``half`` of the segment's
    bounding box (empty when top > bot or lef > rig). Clamped in float before int(): far-off end points
    must not overflow the conversion."""
    top = int(np.floor(min(max(min(r0, r1) - half, 0.0), float(h))))
    bot = int(np.ceil(min(max(max(r0, r1) + half, -1.0), float(h - 1))))
    lef = int(np.floor(min(max(min(c0, c1) - half, 0.0), float(w))))
    rig = int(np.ceil(min(max(max(c0, c1) + half, -1.0), float(w - 1))))
    return top, bot, lef, rig


@numba.njit(**JIT)
def _cut(lo, hi, a, b, c):
    """Narrow [lo, hi] to the x with |a + b x| <= c; a near-zero ``b`` leaves it alone (a superset)."""
    if abs(b) > 1e-3:
        x0, x1 = (-c - a) / b, (c - a) / b
        lo, hi = max(lo, min(x0, x1)), min(hi, max(x0, x1))
    return lo, hi


@numba.njit(**JIT)
def _row_span(i, r0, c0, r1, c1, half, lef, rig):
    """Columns jlo..jhi (within lef..rig) of row ``i`` that may lie closer than ``half`` to the segment.

    A superset: the row's cut through the rectangle of length |segment| + 2 half and width 2 half
    centred on the segment (it holds every such point), widened by 2 px against rounding; lef..rig
    for a point segment or coordinates beyond 1e6 px. Pixels left out have coverage exactly 0.
    """
    dr, dc = r1 - r0, c1 - c0
    length = np.sqrt(dr * dr + dc * dc)
    if not (0.0 < length < 1e6 and half < 1e6 and max(abs(r0), abs(c0), abs(r1), abs(c1)) < 1e6):
        return lef, rig
    ur, uc = dr / length, dc / length
    y, xm = i - 0.5 * (r0 + r1), 0.5 * (c0 + c1)
    lo, hi = _cut(-np.inf, np.inf, y * ur, uc, 0.5 * length + half)  # along the segment
    lo, hi = _cut(lo, hi, -y * uc, ur, half)  # across it
    flo, fhi = xm + lo - 2.0, xm + hi + 2.0
    if flo > fhi:
        return lef, lef - 1
    jlo = lef if flo <= lef else int(np.floor(min(flo, rig + 1.0)))
    jhi = rig if fhi >= rig else int(np.ceil(max(fhi, lef - 1.0)))
    return jlo, jhi


@numba.njit(**JIT)
def _spray_window(h, w, segs, halfs):
    """Union (top, bot, lef, rig), inclusive, of the segments' boxes (``_segment_box``); top > bot if none."""
    top, bot, lef, rig = h, -1, w, -1
    for k in range(segs.shape[0]):
        t, b, le, ri = _segment_box(segs[k, 0], segs[k, 1], segs[k, 2], segs[k, 3], halfs[k], h, w)
        if t <= b and le <= ri:
            top, bot, lef, rig = min(top, t), max(bot, b), min(lef, le), max(rig, ri)
    return top, bot, lef, rig


@numba.njit(**JIT)
def _spray_mask_kernel(out, spans, top0, lef0, h, w, segs, halfs, softness, opacity):
    """Max over segments of the soft coverage into ``out``, the window of an (h, w) image whose
    top-left pixel is (top0, lef0) and which holds every segment's box; segs (P, 4) float64 as
    r0, c0, r1, c1. Only pixels of each row's span are visited, and ``spans`` (rows of ``out``, 2)
    grows to the union of the visited columns (window coordinates; start it at (width, -1)). The
    arithmetic per pixel is in image coordinates, so a window gives the same bits as the image."""
    for k in range(segs.shape[0]):
        r0, c0, r1, c1 = segs[k, 0], segs[k, 1], segs[k, 2], segs[k, 3]
        half = halfs[k]
        core = half * (1.0 - softness)
        dr, dc = r1 - r0, c1 - c0
        len2 = dr * dr + dc * dc
        top, bot, lef, rig = _segment_box(r0, c0, r1, c1, half, h, w)
        dist = np.empty(max(rig - lef + 1, 0), np.float64)
        for i in range(top, bot + 1):
            jlo, jhi = _row_span(i, r0, c0, r1, c1, half, lef, rig)
            _row_distances(dist, i, jlo, jhi, r0, c0, dr, dc, len2)
            if jlo <= jhi:
                spans[i - top0, 0] = min(spans[i - top0, 0], jlo - lef0)
                spans[i - top0, 1] = max(spans[i - top0, 1], jhi - lef0)
            for j in range(jlo, jhi + 1):
                a = _coverage(dist[j - jlo], half, core) * opacity
                if a > out[i - top0, j - lef0]:
                    out[i - top0, j - lef0] = a
    return out


@numba.njit(**JIT)
def _row_distances(dist, i, jlo, jhi, r0, c0, dr, dc, len2):
    """dist[j - jlo] = distance of pixel (i, j) to the segment, jlo <= j <= jhi (a loop LLVM vectorises)."""
    if len2 > 0.0:
        di = (i - r0) * dr
        for j in range(jlo, jhi + 1):
            t = min(1.0, max(0.0, (di + (j - c0) * dc) / len2))
            pr = i - (r0 + t * dr)
            pc = j - (c0 + t * dc)
            dist[j - jlo] = np.sqrt(pr * pr + pc * pc)
    else:
        pr = i - r0
        for j in range(jlo, jhi + 1):
            pc = j - c0
            dist[j - jlo] = np.sqrt(pr * pr + pc * pc)


def _spray_arrays(shape, params: SprayParams) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(h, w, segs (P, 4) float64, half widths (P,) float64) of a spray on an image of ``shape``."""
    if not isinstance(params, SprayParams):
        raise TypeError(f"params must be SprayParams, got {type(params).__name__}; use make_spray_params")
    h, w = check_hw("shape", shape)
    segs = np.array([[s[0][0], s[0][1], s[1][0], s[1][1]] for s in params.paths], dtype=np.float64).reshape(-1, 4)
    halfs = np.array(params.widths, dtype=np.float64) / 2.0
    return h, w, segs, halfs


def spray_mask(shape, params: SprayParams) -> np.ndarray:
    """Soft stroke coverage of a spray: max over its paths, ``opacity`` in the core.

    Coverage at distance ``d`` from a path segment, with half-width ``h = width / 2`` and core
    ``c = h (1 - softness)``: 1 for ``d <= c``, smoothstep ``t^2 (3 - 2t)`` with
    ``t = (h - d) / (h - c)`` between, 0 for ``d >= h``; times ``opacity``.

    Parameters
    ----------
    shape : tuple
        ``(H, W, ...)`` of the target image.
    params : SprayParams

    Returns
    -------
    ndarray, float32 (H, W) in [0, 1]; > 0 exactly on pixels closer than h to a path
    (when opacity > 0).

    Shape
    -----
    (H, W) float32
    """
    h, w, segs, halfs = _spray_arrays(shape, params)
    out, spans = np.zeros((h, w), np.float32), _empty_spans(h, w)
    return _spray_mask_kernel(out, spans, 0, 0, h, w, segs, halfs, params.softness, params.opacity)


def _empty_spans(rows: int, width: int) -> np.ndarray:
    """(rows, 2) int64 column spans, each empty: (width, -1)."""
    spans = np.empty((rows, 2), np.int64)
    spans[:, 0], spans[:, 1] = width, -1
    return spans


@numba.njit(**JIT)
def _blend_kernel(out, alpha, spans, top0, lef0, c0, c1, c2):
    """In place on the window of ``out`` at (top0, lef0): v = rint(v + a (colour - v)) per channel
    where a > 0, looking only at each window row's span (a > 0 nowhere else)."""
    col = (np.float32(c0), np.float32(c1), np.float32(c2))
    for i in range(alpha.shape[0]):
        for j in range(spans[i, 0], spans[i, 1] + 1):
            a = alpha[i, j]
            if a > 0.0:
                for ch in range(3):
                    v = np.float32(out[top0 + i, lef0 + j, ch])
                    out[top0 + i, lef0 + j, ch] = np.uint8(np.rint(v + a * (col[ch] - v)))


def apply_spray(image: np.ndarray, params: SprayParams, *, inplace: bool = False) -> np.ndarray:
    """Bleed the spray colour into ``image``: ``image (1 - a) + colour a`` with ``a = spray_mask``.

    Rounded to nearest, so every channel moves towards the colour and never past it; pixels with
    ``a == 0`` are left unchanged. The coverage is computed only on the window that holds the
    strokes.

    Parameters
    ----------
    image : ndarray, (H, W, 3) uint8
    params : SprayParams
    inplace : bool
        Write into ``image`` (which must be writeable) instead of a copy.

    Returns
    -------
    ndarray, (H, W, 3) uint8: a new array, or ``image`` itself when ``inplace``.

    Shape
    -----
    (H, W, 3) -> (H, W, 3)
    """
    image = check_rgb("image", image)
    h, w, segs, halfs = _spray_arrays(image.shape, params)
    if inplace and not image.flags.writeable:
        raise ValueError("image must be writeable for inplace=True; pass a copy or use inplace=False")
    out = image if inplace else image.copy()
    top, bot, lef, rig = _spray_window(h, w, segs, halfs)
    if top > bot:
        return out
    alpha, spans = np.zeros((bot - top + 1, rig - lef + 1), np.float32), _empty_spans(bot - top + 1, rig - lef + 1)
    _spray_mask_kernel(alpha, spans, top, lef, h, w, segs, halfs, params.softness, params.opacity)
    c = params.color
    _blend_kernel(out, alpha, spans, top, lef, c[0], c[1], c[2])
    return out


@register_warmup
def _warmup() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    p = SprayParams(color=(255, 0, 0), paths=(((1.0, 1.0), (6.0, 5.0)),), widths=(3.0,), softness=0.5, opacity=0.8)
    apply_spray(img, p)
