"""Draft-model mistakes: a second family of synthetic drafts (docs/method.md, Draft-model mistakes).

Consumes a colour image ``(H, W, 3) uint8`` (the ground truth), its region labels ``(H, W) int32``
(trapped-ball, 1..K) and its sketch ``(H, W) uint8`` (255 paper, 0 ink); produces a flawed colour
draft ``(H, W, 3) uint8`` with the mistakes a trained draft network makes, and a plain-JSON record
of every parameter, from which ``replay_mistakes`` re-creates the identical draft.

The paper's drafts (``s2pdata.stages.drafts``) have the right colours in the wrong places. A draft
network's output is different (benchmarks/RESULTS.md, Learning and Draft realism): grey, with a
colour cast, blurred, with colour that runs over the lines and whole regions in a wrong colour.
Five mistakes, in this fixed order, each switched on by a draw (at least one is):

1. **hue**: a few regions' hue turned by a drawn angle (a region coloured wrong as a whole);
2. **desaturate**: every pixel's chroma scaled toward its luma, globally and further in a drawn
   share of the regions (grey output, faint colour; regions no hint reached nearly grey);
3. **cast**: every pixel's chroma moved toward one drawn colour (the tint an undertrained network
   lays over every picture);
4. **bleed**: a few regions' mean colour spilled into the pixels near them that are also near a
   sketch line, fading with the distance (colour over and across the lines);
5. **lowpass**: the chroma blurred with a drawn sigma, luma and the line pixels kept (the fine
   colour lost, the lines kept).

Colour arithmetic is BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B``, the chroma ``C - Y`` and its
YCbCr coordinates ``Cb = (B - Y) / 1.772``, ``Cr = (R - Y) / 1.402``. Every mistake but bleeding
changes only the chroma: a colour that leaves the RGB cube is pulled toward its grey along the
chroma (never clipped per channel), so each pixel keeps its luma within rounding (0.5). Distances
are chessboard (L-infinity) distances in pixels.
"""

from __future__ import annotations

import math

import cv2
import numba
import numpy as np

from s2pdata._check import check_array, check_gray, check_pair, check_range, check_rgb, check_rng
from s2pdata._jit import JIT, register_warmup

MISTAKES_VERSION = 1
MISTAKES = ("hue", "desaturate", "cast", "bleed", "lowpass")  # the fixed order of application
INK_BELOW = 128  # a sketch pixel darker than this is a line pixel (the sketch is 255 paper, 0 ink)
WR, WG, WB = 0.299, 0.587, 0.114  # BT.601 luma weights, as OpenCV's RGB -> gray
KR, KB = 2.0 * (1.0 - WR), 2.0 * (1.0 - WB)  # YCbCr: R - Y = KR * Cr, B - Y = KB * Cb

# The chance each mistake is on in a draft (at least one always is). Desaturation is the flaw every
# draft model measured so far shows (RESULTS, Learning: grey output, faint colour at the hints; Draft
# realism: 38-59 % of the target's chroma, 91 % of the hued regions grey after 1000 steps), so it is
# nearly always on; blur is the next most common look of a small network's output (high-frequency
# colour energy 0.72-0.82 of the target's); a cast (the 200-step model's), bleeding and wrong hues
# are less frequent.
CHANCES = {"hue": 0.3, "desaturate": 0.9, "cast": 0.3, "bleed": 0.5, "lowpass": 0.7}


# ---- shared per-pixel colour arithmetic ------------------------------------------------------------


@numba.njit(**JIT)
def _luma(r, g, b):
    """BT.601 luma of one RGB pixel, as float64."""
    return WR * r + WG * g + WB * b


@numba.njit(**JIT)
def _put(out, y, x, lum, d0, d1, d2):
    """out[y, x] = rint(lum + k * d), k <= 1 the largest that keeps every channel in [0, 255]: the
    colour is pulled toward its grey, so its luma and hue stay (a per-channel clip would move both)."""
    k = 1.0
    for d in (d0, d1, d2):
        if d > 0.0:
            k = min(k, (255.0 - lum) / d)
        elif d < 0.0:
            k = min(k, lum / -d)
    k = max(k, 0.0)
    out[y, x, 0] = np.uint8(min(max(np.rint(lum + k * d0), 0.0), 255.0))
    out[y, x, 1] = np.uint8(min(max(np.rint(lum + k * d1), 0.0), 255.0))
    out[y, x, 2] = np.uint8(min(max(np.rint(lum + k * d2), 0.0), 255.0))


def _label_areas(labels: np.ndarray) -> np.ndarray:
    """Pixel count of every label 0..K."""
    return np.bincount(labels.ravel(), minlength=int(labels.max(initial=0)) + 1)


def _check_labels(labels: object, shape) -> np.ndarray:
    labels = check_array("labels", labels, dtype=np.int32, ndim=2)
    if labels.shape != tuple(shape[:2]):
        raise ValueError(f"labels shape {labels.shape} must equal color's (H, W) {tuple(shape[:2])}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0 (0 = no region), got min {labels.min()}")
    return labels


def _check_ink(ink: object, shape) -> np.ndarray:
    ink = check_array("ink", ink, dtype=np.bool_, ndim=2)
    if ink.shape != tuple(shape[:2]):
        raise ValueError(f"ink shape {ink.shape} must equal color's (H, W) {tuple(shape[:2])}")
    return ink


def _lookup(labels: np.ndarray, chosen, values, fill: float) -> np.ndarray:
    """A float64 table over labels 0..max(labels, chosen): ``values[i]`` at ``chosen[i]``, ``fill`` elsewhere."""
    chosen = [int(c) for c in chosen]
    n = max([int(labels.max(initial=0)), *chosen, 0]) + 1
    table = np.full(n, fill, np.float64)
    for lab, v in zip(chosen, values):
        if lab < 0:
            raise ValueError(f"region labels must be >= 0, got {lab}")
        table[lab] = float(v)
    return table


# ---- 1. wrong hue ------------------------------------------------------------------------------------


def rotate_hue(color: np.ndarray, labels: np.ndarray, regions, angles) -> np.ndarray:
    """Turn the hue of the pixels of ``regions`` by ``angles`` (degrees, one per region).

    The chroma (Cb, Cr) of each pixel is rotated counter-clockwise by its region's angle, its luma
    kept; a colour that leaves the RGB cube is pulled toward its grey. Pixels of other regions,
    and grey pixels, do not change. A region listed twice takes its last angle.

    Shape
    -----
    (H, W, 3) uint8, (H, W) int32 -> (H, W, 3) uint8
    """
    color = check_rgb("color", color)
    labels = _check_labels(labels, color.shape)
    regions, angles = list(regions), [float(a) for a in angles]
    if len(regions) != len(angles) or not all(math.isfinite(a) for a in angles):
        raise ValueError(f"angles must be one finite number per region ({len(regions)}), got {angles!r}")
    rad = _lookup(labels, regions, [math.radians(a) for a in angles], math.nan)  # NaN: not turned
    out = color.copy()
    _hue_kernel(color, labels, np.cos(rad), np.sin(rad), out)
    return out


@numba.njit(**JIT)
def _hue_kernel(img, labels, cos_, sin_, out):
    """Rotate the (Cb, Cr) chroma of each pixel whose label has a finite cos_ entry."""
    h, w = labels.shape
    for y in range(h):
        for x in range(w):
            lab = labels[y, x]
            c, s = cos_[lab], sin_[lab]
            if math.isnan(c):
                continue
            r, g, b = float(img[y, x, 0]), float(img[y, x, 1]), float(img[y, x, 2])
            lum = _luma(r, g, b)
            cb, cr = (b - lum) / KB, (r - lum) / KR
            cb2, cr2 = c * cb - s * cr, s * cb + c * cr
            dr, db = KR * cr2, KB * cb2
            dg = -(WR * dr + WB * db) / WG  # the weighted chroma sums to 0: the luma stays
            _put(out, y, x, lum, dr, dg, db)


# ---- 2. desaturation -----------------------------------------------------------------------------


def desaturate(color: np.ndarray, labels: np.ndarray, amount: float, regions=(), region_amount: float = 0.0):
    """Move every pixel's colour toward its luma: by ``amount`` (0 keeps the colour, 1 makes it grey),
    and the pixels of ``regions`` further by ``region_amount`` of what is left.

    A pixel keeps ``(1 - amount)`` of its chroma, or ``(1 - amount) * (1 - region_amount)`` in a
    listed region; its luma stays within rounding and its chroma (max - min of the channels) never
    grows.

    Shape
    -----
    (H, W, 3) uint8, (H, W) int32 -> (H, W, 3) uint8
    """
    color = check_rgb("color", color)
    labels = _check_labels(labels, color.shape)
    keep = 1.0 - check_range("amount", amount, 0.0, 1.0)
    extra = 1.0 - check_range("region_amount", region_amount, 0.0, 1.0)
    regions = list(regions)
    table = _lookup(labels, regions, [keep * extra] * len(regions), keep)
    out = np.empty_like(color)
    _desaturate_kernel(color, labels, table, out)
    return out


@numba.njit(**JIT)
def _desaturate_kernel(img, labels, keep, out):
    """out = Y + keep[label] * (C - Y) per pixel."""
    h, w = labels.shape
    for y in range(h):
        for x in range(w):
            k = keep[labels[y, x]]
            r, g, b = float(img[y, x, 0]), float(img[y, x, 1]), float(img[y, x, 2])
            lum = _luma(r, g, b)
            _put(out, y, x, lum, k * (r - lum), k * (g - lum), k * (b - lum))


# ---- 3. colour cast ----------------------------------------------------------------------------------


def cast_color(color: np.ndarray, angle: float, chroma: float, amount: float) -> np.ndarray:
    """Move every pixel's chroma toward one colour: ``(Cb, Cr) <- (1 - amount) (Cb, Cr) + amount *
    chroma * (cos angle, sin angle)`` (``angle`` in degrees, ``chroma`` in 8-bit Cb/Cr levels).

    The luma stays (within rounding); a colour that leaves the RGB cube is pulled toward its grey.
    ``amount`` 0 keeps the picture, 1 paints it in the cast's colour at every pixel's own luma.

    Shape
    -----
    (H, W, 3) uint8 -> (H, W, 3) uint8
    """
    color = check_rgb("color", color)
    angle = check_range("angle", angle, -1e6, 1e6)
    chroma = check_range("chroma", chroma, 0.0, 255.0)
    amount = check_range("amount", amount, 0.0, 1.0)
    rad = math.radians(angle)
    out = np.empty_like(color)
    _cast_kernel(color, chroma * math.cos(rad), chroma * math.sin(rad), amount, out)
    return out


@numba.njit(**JIT)
def _cast_kernel(img, cb0, cr0, t, out):
    """(Cb, Cr) <- (1 - t) (Cb, Cr) + t (cb0, cr0) per pixel, the luma kept."""
    h, w = img.shape[:2]
    for y in range(h):
        for x in range(w):
            r, g, b = float(img[y, x, 0]), float(img[y, x, 1]), float(img[y, x, 2])
            lum = _luma(r, g, b)
            cb = (1.0 - t) * ((b - lum) / KB) + t * cb0
            cr = (1.0 - t) * ((r - lum) / KR) + t * cr0
            dr, db = KR * cr, KB * cb
            _put(out, y, x, lum, dr, -(WR * dr + WB * db) / WG, db)


# ---- 4. bleeding across lines ----------------------------------------------------------------------


def near(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within chessboard distance ``radius`` of a set pixel of ``mask`` (a (2r+1)^2 dilation).

    Shape
    -----
    (H, W) bool -> (H, W) bool
    """
    side = 2 * int(radius) + 1
    return cv2.dilate(mask.view(np.uint8), np.ones((side, side), np.uint8)).view(np.bool_)


def bleed_color(color: np.ndarray, labels: np.ndarray, ink: np.ndarray, regions, radius: int, strength: float):
    """Spill each listed region's mean colour over the lines next to it.

    For each region R in order, its mean colour c (over the stage's input, rounded) is blended into
    every pixel outside R at chessboard distance ``1 <= d <= radius`` from R that is also within
    ``radius`` of an ink pixel: ``out += strength * (radius + 1 - d) / radius * (c - out)``, which
    fades from ``strength`` next to the region to ``strength / radius`` at the rim. No other pixel
    changes.

    Shape
    -----
    (H, W, 3) uint8, (H, W) int32, (H, W) bool -> (H, W, 3) uint8
    """
    color = check_rgb("color", color)
    labels = _check_labels(labels, color.shape)
    ink = _check_ink(ink, color.shape)
    radius = int(radius)
    if radius < 1:
        raise ValueError(f"radius must be an int >= 1, got {radius!r}")
    strength = check_range("strength", strength, 0.0, 1.0)
    out = color.copy()
    regions = [int(r) for r in regions]
    if not regions or not ink.any():
        return out
    by_line = near(ink, radius)
    H, W = labels.shape
    means = {}
    for lab in regions:  # every region's colour from the stage's input, not from earlier spills
        if lab not in means:
            means[lab] = _region_mean(color, labels, lab)
    for lab in regions:
        mean = means[lab]
        if mean is None:
            continue
        ys, xs = np.nonzero(labels == lab)
        r0, r1 = max(int(ys.min()) - radius, 0), min(int(ys.max()) + radius + 1, H)
        c0, c1 = max(int(xs.min()) - radius, 0), min(int(xs.max()) + radius + 1, W)
        inside = (labels[r0:r1, c0:c1] != lab).view(np.uint8)
        # chessboard distance to the region (DIST_C with a 3x3 mask is exact); window edges are not
        # region, and a pixel past them would be farther than ``radius`` anyway
        dist = cv2.distanceTransform(np.pad(inside, 1, constant_values=1), cv2.DIST_C, 3)[1:-1, 1:-1]
        _bleed_kernel(out, dist, by_line[r0:r1, c0:c1], r0, c0, radius, strength, mean)
    return out


def _region_mean(color: np.ndarray, labels: np.ndarray, lab: int) -> np.ndarray | None:
    """Rounded mean colour of region ``lab``, (3,) float64; None for an empty region."""
    px = color[labels == lab]
    if not len(px):
        return None
    return np.rint(px.astype(np.float64).mean(axis=0))


@numba.njit(**JIT)
def _bleed_kernel(out, dist, by_line, r0, c0, radius, strength, mean):
    """Blend ``mean`` (3,) into out[r0 + y, c0 + x] where 1 <= dist <= radius and by_line."""
    h, w = dist.shape
    for y in range(h):
        for x in range(w):
            d = dist[y, x]
            if d < 1.0 or d > radius or not by_line[y, x]:
                continue
            a = strength * (radius + 1.0 - d) / radius
            for ch in range(3):
                v = float(out[r0 + y, c0 + x, ch])
                out[r0 + y, c0 + x, ch] = np.uint8(np.rint(v + a * (mean[ch] - v)))


# ---- 5. low-pass chroma ----------------------------------------------------------------------------


def gaussian_side(sigma: float) -> int:
    """Odd kernel side ``2 * ceil(3 sigma) + 1`` of the chroma blur (at least 3)."""
    return 2 * max(1, math.ceil(3.0 * sigma)) + 1


def lowpass_chroma(color: np.ndarray, sigma: float, ink: np.ndarray | None = None) -> np.ndarray:
    """Blur the chroma ``C - Y`` with a Gaussian of ``sigma`` px and add it back to each pixel's own
    luma; the pixels of ``ink`` keep their colour.

    The blur is ``cv2.GaussianBlur`` on float32 with side ``gaussian_side(sigma)`` and a mirrored
    border (reflect-101). A colour that leaves the RGB cube is pulled toward its grey, so every
    pixel keeps its luma within rounding.

    Shape
    -----
    (H, W, 3) uint8, (H, W) bool -> (H, W, 3) uint8
    """
    color = check_rgb("color", color)
    sigma = check_range("sigma", sigma, 0.0, 1e3)
    keep = np.zeros(color.shape[:2], np.bool_) if ink is None else _check_ink(ink, color.shape)
    if sigma == 0.0:
        return color.copy()
    f = color.astype(np.float32)
    lum = WR * f[..., 0] + WG * f[..., 1] + WB * f[..., 2]
    side = gaussian_side(sigma)
    chroma = cv2.GaussianBlur(f - lum[..., None], (side, side), sigma, borderType=cv2.BORDER_REFLECT_101)
    out = np.empty_like(color)
    _lowpass_kernel(color, chroma, keep, out)
    return out


@numba.njit(**JIT)
def _lowpass_kernel(img, chroma, keep, out):
    """out = Y + blurred chroma per pixel (the luma in float64 from the pixel), img where keep."""
    h, w = keep.shape
    for y in range(h):
        for x in range(w):
            if keep[y, x]:
                for ch in range(3):
                    out[y, x, ch] = img[y, x, ch]
                continue
            lum = _luma(float(img[y, x, 0]), float(img[y, x, 1]), float(img[y, x, 2]))
            _put(out, y, x, lum, float(chroma[y, x, 0]), float(chroma[y, x, 1]), float(chroma[y, x, 2]))


# ---- the family: draw, record, apply -----------------------------------------------------------------


def region_edges(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another label: the lines where no sketch is given.

    Shape
    -----
    (H, W) int32 -> (H, W) bool
    """
    edge = np.zeros(labels.shape, np.bool_)
    dy = labels[1:] != labels[:-1]
    dx = labels[:, 1:] != labels[:, :-1]
    edge[1:] |= dy
    edge[:-1] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    return edge


def _inputs(color: np.ndarray, regions, sketch) -> tuple[np.ndarray, str, np.ndarray, str]:
    """(labels, where from, ink, where from): the given maps, else trapped-ball regions of ``color``
    and their edges."""
    if regions is None:
        from s2pdata.stages.regions import propose_regions

        labels, lab_from = propose_regions(color), "color"
    else:
        labels, lab_from = _check_labels(regions, color.shape), "regions"
    if sketch is None:
        return labels, lab_from, region_edges(labels), "regions"
    sketch = check_gray("sketch", sketch)
    if sketch.shape != color.shape[:2]:
        raise ValueError(f"sketch shape {sketch.shape} must equal color's (H, W) {color.shape[:2]}")
    return labels, lab_from, sketch < INK_BELOW, "sketch"


def make_mistake_params(
    labels: np.ndarray,
    *,
    rng: np.random.Generator,
    chances: dict | None = None,
    hue_regions=(1, 3),
    hue_angle=(30.0, 150.0),
    desaturate_amount=(0.3, 0.9),
    desaturate_share=(0.0, 0.9),
    desaturate_region_amount=(0.6, 1.0),
    cast_chroma=(4.0, 16.0),
    cast_amount=(0.2, 0.8),
    bleed_regions=(1, 6),
    bleed_radius=(2, 8),
    bleed_strength=(0.3, 0.8),
    lowpass_sigma=(1.5, 6.0),
    min_area: int = 64,
    ref_size: int = 512,
) -> dict:
    """Draw the five mistakes' parameters for an image with region ``labels`` (s2pdata's ranges).

    Every parameter is drawn whether or not its mistake is on, so the stream of draws (and so each
    parameter) does not depend on the switches. Ranges are at ``ref_size`` px and scaled by
    ``min(H, W) / ref_size`` (radius, sigma, ``min_area`` by its square). Regions are drawn among
    those of at least ``min_area`` pixels (all regions when none is that large), uniformly but for
    the wrong hues.

    Parameters
    ----------
    labels : ndarray, (H, W) int32
        Regions 1..K (0: no region).
    rng : numpy.random.Generator
    chances : dict, optional
        Chance that each of ``MISTAKES`` is on (default ``CHANCES``); when none is drawn on, one is
        chosen uniformly among those with a chance above 0.
    hue_regions : (int, int)
        Regions turned ~ U{lo..hi}, drawn with chances in proportion to their areas: a draft
        network keeps most regions' hint hue, and the wrong ones that matter are large areas it
        colours as a whole.
    hue_angle : (float, float)
        |angle| ~ U[lo, hi] degrees, either sign: far enough to be another colour, not a tint.
    desaturate_amount : (float, float)
        Global move toward grey ~ U[lo, hi]: 10-70 % of the chroma kept, around the 38-59 % that
        RESULTS' Draft realism measured for two draft models.
    desaturate_share, desaturate_region_amount : (float, float)
        Each region is made greyer with probability ~ U[share], by ~ U[amount] of what is left:
        regions far from every hint come out nearly grey (91 % of the hued regions, for the longer
        trained model there).
    cast_chroma, cast_amount : (float, float)
        The cast's colour: hue ~ U[0, 360) degrees, strength ~ U[lo, hi] Cb/Cr levels (a faint
        tint, as the 200-step model there lays over every picture), and the share of each pixel's
        chroma it replaces ~ U[lo, hi].
    bleed_regions, bleed_radius, bleed_strength : (int, int), (int, int), (float, float)
        Regions that spill ~ U{lo..hi}, how far ~ U{lo..hi} px, and how strongly ~ U[lo, hi]: a
        few pixels over the line, as a network's halo, not the paper's 64-128 px sprays.
    lowpass_sigma : (float, float)
        Chroma blur ~ U[lo, hi] px: the smoothing of a small network's upsampling path.
    min_area, ref_size : int

    Returns
    -------
    dict
        Plain JSON: ``version``, ``style`` ("model"), ``order`` and one entry per mistake with
        ``on`` and its parameters (``hue``: regions, angles; ``desaturate``: amount, regions,
        region_amount; ``cast``: angle, chroma, amount; ``bleed``: regions, radius, strength;
        ``lowpass``: sigma).

    Shape
    -----
    (H, W) int32 -> record
    """
    labels = check_array("labels", labels, dtype=np.int32, ndim=2)
    check_rng(rng)
    chances = dict(CHANCES if chances is None else chances)
    if set(chances) != set(MISTAKES):
        raise ValueError(f"chances must give each of {list(MISTAKES)} a probability, got {sorted(chances)}")
    for name in MISTAKES:
        chances[name] = check_range(f"chances[{name!r}]", chances[name], 0.0, 1.0)
    if not any(chances.values()):
        raise ValueError(f"chances must give at least one mistake a chance above 0, got {chances}")
    hr = check_pair("hue_regions", hue_regions, low=0, integer=True)
    ha = check_pair("hue_angle", hue_angle, low=0.0, high=180.0)
    da = check_pair("desaturate_amount", desaturate_amount, low=0.0, high=1.0)
    ds = check_pair("desaturate_share", desaturate_share, low=0.0, high=1.0)
    dr = check_pair("desaturate_region_amount", desaturate_region_amount, low=0.0, high=1.0)
    cc = check_pair("cast_chroma", cast_chroma, low=0.0, high=255.0)
    ca = check_pair("cast_amount", cast_amount, low=0.0, high=1.0)
    br = check_pair("bleed_regions", bleed_regions, low=0, integer=True)
    brad = check_pair("bleed_radius", bleed_radius, low=1, integer=True)
    bs = check_pair("bleed_strength", bleed_strength, low=0.0, high=1.0)
    ls = check_pair("lowpass_sigma", lowpass_sigma, low=0.0, high=1e3)
    if int(ref_size) <= 0:
        raise ValueError(f"ref_size must be a positive int, got {ref_size!r}")
    scale = min(labels.shape) / float(ref_size)

    areas = _label_areas(labels)
    big = np.flatnonzero(areas >= max(1, round(min_area * scale * scale)))
    eligible = big[big > 0] if (big > 0).any() else np.flatnonzero(areas)[np.flatnonzero(areas) > 0]

    on = {name: bool(rng.random() < chances[name]) for name in MISTAKES}
    if not any(on.values()):
        live = [name for name in MISTAKES if chances[name] > 0]
        on[live[int(rng.integers(len(live)))]] = True

    def pick(n: int, by_area: bool = False) -> list[int]:
        """n distinct eligible labels in drawn order (all of them when fewer); uniform, or with
        chances in proportion to their areas."""
        n = min(n, len(eligible))
        if not n:
            return []
        if by_area:
            weights = areas[eligible] / areas[eligible].sum()
            return [int(v) for v in rng.choice(eligible, size=n, replace=False, p=weights)]
        return [int(v) for v in rng.permutation(eligible)[:n]]

    hue_labels = pick(int(rng.integers(hr[0], hr[1] + 1)), by_area=True)
    hue_angles = [
        float(a) for a in rng.uniform(ha[0], ha[1], len(hue_labels)) * rng.choice([-1.0, 1.0], len(hue_labels))
    ]
    amount = float(rng.uniform(*da))
    share = float(rng.uniform(*ds))
    grey = [int(v) for v in eligible[rng.random(len(eligible)) < share]]
    region_amount = float(rng.uniform(*dr))
    cast = {
        "angle": float(rng.uniform(0.0, 360.0)),
        "chroma": float(rng.uniform(*cc)),
        "amount": float(rng.uniform(*ca)),
    }
    bleed_labels = pick(int(rng.integers(br[0], br[1] + 1)))
    radius = max(1, int(round(int(rng.integers(brad[0], brad[1] + 1)) * scale)))
    strength = float(rng.uniform(*bs))
    sigma = float(rng.uniform(*ls)) * scale
    return {
        "version": MISTAKES_VERSION,
        "style": "model",
        "order": list(MISTAKES),
        "hue": {"on": on["hue"], "regions": hue_labels, "angles": hue_angles},
        "desaturate": {"on": on["desaturate"], "amount": amount, "regions": grey, "region_amount": region_amount},
        "cast": {"on": on["cast"], **cast},
        "bleed": {"on": on["bleed"], "regions": bleed_labels, "radius": radius, "strength": strength},
        "lowpass": {"on": on["lowpass"], "sigma": sigma},
    }


def apply_mistakes(color: np.ndarray, labels: np.ndarray, ink: np.ndarray, params: dict) -> np.ndarray:
    """Apply a ``make_mistake_params`` record: the mistakes that are on, in ``MISTAKES`` order.

    Shape
    -----
    (H, W, 3) uint8, (H, W) int32, (H, W) bool -> (H, W, 3) uint8
    """
    out = color
    p = params["hue"]
    if p["on"] and p["regions"]:
        out = rotate_hue(out, labels, p["regions"], p["angles"])
    p = params["desaturate"]
    if p["on"]:
        out = desaturate(out, labels, p["amount"], p["regions"], p["region_amount"])
    p = params["cast"]
    if p["on"]:
        out = cast_color(out, p["angle"], p["chroma"], p["amount"])
    p = params["bleed"]
    if p["on"] and p["regions"]:
        out = bleed_color(out, labels, ink, p["regions"], p["radius"], p["strength"])
    p = params["lowpass"]
    if p["on"]:
        out = lowpass_chroma(out, p["sigma"], ink)
    return out.copy() if out is color else out


def make_mistakes(
    color: np.ndarray,
    *,
    rng: np.random.Generator,
    regions: np.ndarray | None = None,
    sketch: np.ndarray | None = None,
    **options,
) -> tuple[np.ndarray, dict]:
    """A draft with a draft network's mistakes (s2pdata; docs/method.md, Draft-model mistakes).

    Parameters
    ----------
    color : ndarray, (H, W, 3) uint8
    rng : numpy.random.Generator
    regions : ndarray, (H, W) int32, optional
        The sample's trapped-ball labels; None: ``propose_regions(color)``.
    sketch : ndarray, (H, W) uint8, optional
        The sample's line art; its pixels below ``INK_BELOW`` are the lines. None: the edges
        between regions.
    **options
        Ranges and chances of ``make_mistake_params``.

    Returns
    -------
    draft : ndarray, (H, W, 3) uint8
    params : dict
        ``make_mistake_params``'s record, plus where the regions (``regions``: from "regions" or
        "color", and their count) and the lines (``lines``: from "sketch" or "regions") came from;
        ``replay_mistakes(color, params, regions=..., sketch=...)`` with the same maps rebuilds
        ``draft`` byte for byte.

    Shape
    -----
    (H, W, 3) uint8 -> (H, W, 3) uint8
    """
    color = check_rgb("color", color)
    check_rng(rng)
    labels, lab_from, ink, ink_from = _inputs(color, regions, sketch)
    params = make_mistake_params(labels, rng=rng, **options)
    params["regions"] = {"from": lab_from, "count": int(labels.max(initial=0))}
    params["lines"] = {"from": ink_from, "ink_below": INK_BELOW}
    return apply_mistakes(color, labels, ink, params), params


def replay_mistakes(
    color: np.ndarray, params: dict, *, regions: np.ndarray | None = None, sketch: np.ndarray | None = None
) -> np.ndarray:
    """Re-create a ``make_mistakes`` draft from its record, byte for byte.

    ``regions`` and ``sketch`` must be the maps the draft was made with (the sample's ``regions``
    and ``sketch`` fields, when the record says it used them).

    Raises
    ------
    ValueError
        An unknown record version, or a map the record needs that is missing or of another
        region count.

    Shape
    -----
    (H, W, 3) uint8 -> (H, W, 3) uint8
    """
    color = check_rgb("color", color)
    if not isinstance(params, dict) or params.get("version") != MISTAKES_VERSION or params.get("style") != "model":
        raise ValueError(
            f"params must be a make_mistakes record (style 'model', version {MISTAKES_VERSION}), "
            f"got {str(params)[:120]}"
        )
    made, lines = params["regions"], params["lines"]["from"]
    if made["from"] == "regions" and regions is None:
        raise ValueError("this draft was made from the sample's regions map: pass regions=sample['regions']")
    if lines == "sketch" and sketch is None:
        raise ValueError("this draft was made with the sample's sketch as its lines: pass sketch=sample['sketch']")
    labels, _, ink, _ = _inputs(
        color, regions if made["from"] == "regions" else None, sketch if lines == "sketch" else None
    )
    if int(labels.max(initial=0)) != made["count"]:
        raise ValueError(
            f"regions has {int(labels.max(initial=0))} regions, the draft record {made['count']}; pass the "
            "regions map the draft was made with"
        )
    return apply_mistakes(color, labels, ink, params)


@register_warmup
def _warmup() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    img[:2] = (200, 40, 40)
    labels = np.ones((4, 4), np.int32)
    labels[2:] = 2
    ink = np.zeros((4, 4), np.bool_)
    ink[2] = True
    rotate_hue(img, labels, [1], [90.0])
    desaturate(img, labels, 0.5, [2], 0.5)
    cast_color(img, 30.0, 8.0, 0.5)
    bleed_color(img, labels, ink, [1], 1, 0.5)
    lowpass_chroma(img, 1.0, ink)
