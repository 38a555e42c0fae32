"""Slow, obviously-correct references for every kernel (tests and benchmarks only).

Each function is written from the method's description (docs/method.md), with plain loops, scipy.ndimage
or cv2, for clarity rather than speed; the tests compare the fast kernels in ``s2pdata`` against them
with Hypothesis properties on small images.
"""

from __future__ import annotations

import math
from fractions import Fraction

import cv2
import numpy as np
from scipy import ndimage

# ===============================================================================================
# Sketch extraction and hint simulation (docs/method.md, Sketch extraction; User hints)
#
# Slow, obviously-correct references for s2pdata.stages.sketch and s2pdata.stages.hints (numpy / scipy only).
#
# Written from the formulas of docs/method.md (Sketch extraction, User hints), not from the fast code:
#
# * luma is ITU-R 601 in the 15-bit fixed point OpenCV 5 uses (``(9798 R + 19235 G + 3735 B +
#   2^14) >> 15``; it equals ``round(0.299 R + 0.587 G + 0.114 B)`` to within one grey level, which
#   ``test_sketch`` checks), so that the extractors can be compared exactly downstream of it;
# * Gaussians are ``scipy.ndimage.gaussian_filter`` in float64 with ``truncate=4`` and the
#   ``mirror`` border (the same mirror, d c b | a b c d | c b a, as OpenCV's REFLECT_101);
# * XDoG's threshold, the dilation, the hint patches and the hint squares are plain Python loops.
# ===============================================================================================


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
            d = max(g[y, x] for y in range(max(0, i - 1), min(H, i + 2)) for x in range(max(0, j - 1), min(W, j + 2)))
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


def ref_sketch_xdog(
    color: np.ndarray, *, sigma: float = 0.4, k: float = 4.5, tau: float = 0.95, phi: float = 1e9, eps: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
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


# ===============================================================================================
# Edge map and trapped-ball segmentation (docs/method.md, Edge map; Trapped-ball segmentation)
#
# Slow, obviously-correct references for s2pdata.stages.regions (numpy / scipy / cv2 only).
#
# ``ref_trapped_ball`` follows the per-fill reference semantics (LineFiller; docs/method.md, Trapped-ball segmentation):
# for each radius, repeatedly take the first free pixel in raster order that the ball fits
# around, fill its 4-connected component, erode by the ball, keep the part still connected to the
# seed, dilate back inside the component, keep the part connected to the seed; then the size
# filter, the leftover components, and the same edge-assignment / sliver rules as the fast code.
# Every fill costs several whole-image operations, as in the original.
# ===============================================================================================


SLIVER_AREA, SLIVER_LONE_AREA, SLIVER_THIN_AREA = 50, 250, 500


def ref_edge_map(image: np.ndarray) -> np.ndarray:
    """The edge map of docs/method.md written out with float64 numpy and cv2's 3x3 Gaussian."""
    if image.ndim == 3:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    else:
        gray = image
    o = gray.astype(np.float64)
    b = cv2.GaussianBlur(o, (3, 3), 0)
    y = 1.0 - np.clip(o - b + 255.0, 0, 255) / 255.0
    if y.max() == y.min():
        return np.zeros(gray.shape, bool)
    y = (y - y.min()) / (y.max() - y.min())
    return y >= y.mean()


def _ball(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _component(mask: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """The 4-connected component of ``mask`` containing ``seed`` (row, col)."""
    img = mask.astype(np.uint8)
    ff = np.zeros((img.shape[0] + 2, img.shape[1] + 2), np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    cv2.floodFill(img, ff, (int(seed[1]), int(seed[0])), 1, 0, 0, flags)  # cv2 seed is (x, y)
    return ff[1:-1, 1:-1].astype(bool)


def ref_fill_once(work: np.ndarray, seed, r: int) -> np.ndarray:
    """One trapped-ball fill from ``seed`` in the free mask ``work``."""
    se = _ball(r)
    comp = _component(work, seed)
    core = cv2.erode(comp.astype(np.uint8), se).astype(bool)  # outside the image counts as free
    core = _component(core, seed)
    grown = cv2.dilate(core.astype(np.uint8), se).astype(bool) & comp
    return _component(grown, seed)


def ref_fills(edges: np.ndarray, radii=(3, 2, 1), keep=("max", None, None), max_fills=None):
    """Provisional labels (H, W) int32 (0 on edges) and their count n: kept fills in creation
    order, then leftover components in raster order. ``max_fills`` = LineFiller's cap (1,000)."""
    h, w = edges.shape
    free = ~edges
    labels = np.zeros((h, w), np.int32)
    n = 0
    for r, k in zip(radii, keep):
        se = _ball(r)
        work = free.copy()
        fills = []
        while max_fills is None or len(fills) < max_fills:
            seeds = np.flatnonzero(cv2.erode(work.astype(np.uint8), se))
            if seeds.size == 0:
                break
            seed = divmod(int(seeds[0]), w)
            fill = ref_fill_once(work, seed, r)
            fills.append(fill)
            work &= ~fill
        sizes = np.array([f.sum() for f in fills], dtype=np.int64)
        for f, s in zip(fills, sizes):
            if k == "max" and s != sizes.max():
                continue
            if k == "mean" and s * len(sizes) < sizes.sum():
                continue
            n += 1
            labels[f] = n
            free &= ~f
    left, m = ndimage.label(free)  # default structure: 4-connected, raster order of first pixel
    labels[left > 0] = left[left > 0] + n
    return labels, n + m


def ref_fills_passes(edges: np.ndarray, radii=(3, 2, 1), keep=("max", None, None)):
    """The whole-image-pass semantics that s2pdata.stages.regions documents, written with cv2, scipy
    and ``ref_grow``: per radius, erode the free space (outside counts as free: cv2's default
    border), label the 4-connected seed components in raster order (ndimage.label), grow them
    into the rest of the opening by breadth-first rounds, filter by size, then leftovers.
    Returns the same (H, W) provisional labels and n as the fast code, bit for bit."""
    free = ~edges
    labels = np.zeros(edges.shape, np.int64)
    n = 0
    for r, k in zip(radii, keep):
        se = _ball(r)
        eroded = cv2.erode(free.astype(np.uint8), se).astype(bool)
        seeds, m = ndimage.label(eroded)
        if m == 0:
            continue
        opening = cv2.dilate(eroded.astype(np.uint8), se).astype(bool)
        grown = ref_grow(seeds.astype(np.int64), opening & ~eroded)
        sizes = np.bincount(grown.ravel(), minlength=m + 1)[1:]
        if k == "max":
            kept = sizes == sizes.max()
        elif k == "mean":
            kept = sizes * m >= sizes.sum()
        else:
            kept = np.ones(m, bool)
        newid = np.zeros(m + 1, np.int64)
        newid[1:][kept] = n + np.arange(1, kept.sum() + 1)
        mapped = newid[grown]
        labels[mapped > 0] = mapped[mapped > 0]
        free &= mapped == 0
        n += int(kept.sum())
    left, m = ndimage.label(free)
    labels[left > 0] = left[left > 0] + n
    return labels, n + m


def _neighbour_pairs(lab: np.ndarray) -> np.ndarray:
    """(K, 2) label pairs of 4-adjacent pixels with different positive labels, both orders."""
    a = np.concatenate([lab[:, :-1].ravel(), lab[:-1, :].ravel()])
    b = np.concatenate([lab[:, 1:].ravel(), lab[1:, :].ravel()])
    keep = (a > 0) & (b > 0) & (a != b)
    pairs = np.stack([a[keep], b[keep]], axis=1)
    return np.unique(np.concatenate([pairs, pairs[:, ::-1]]), axis=0)


def ref_grow(lab: np.ndarray, open_mask: np.ndarray) -> np.ndarray:
    """BFS rounds: each open 0-pixel next to positive labels (as they stood at the start of the
    round) takes the smallest of them; repeated until nothing changes."""
    lab = lab.copy()
    h, w = lab.shape
    while True:
        todo = open_mask & (lab == 0)
        big = np.iinfo(np.int64).max
        src = np.where(lab > 0, lab.astype(np.int64), big)
        pad = np.pad(src, 1, constant_values=big)
        best = np.minimum.reduce([pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]])
        take = todo & (best < big)
        if not take.any():
            return lab
        lab[take] = best[take]


def ref_finish(prov: np.ndarray, n: int, edges: np.ndarray, assign_edges: bool) -> np.ndarray:
    """Edge assignment, sliver dissolving and renumbering, written with whole-array numpy."""
    h, w = edges.shape
    if n == 0:
        return np.full((h, w), 1 if assign_edges else 0, np.int32)
    lab = prov.astype(np.int64)
    area = np.bincount(lab[lab > 0], minlength=n + 1)
    pad = np.pad(lab, 1, constant_values=-2)
    inner_px = (
        (lab > 0) & (pad[:-2, 1:-1] == lab) & (pad[2:, 1:-1] == lab) & (pad[1:-1, :-2] == lab) & (pad[1:-1, 2:] == lab)
    )
    inner = np.zeros(n + 1, bool)
    inner[lab[inner_px]] = True
    if assign_edges:
        lab = ref_grow(lab, edges)
    else:
        lab[edges] = -1
    nbrs: dict[int, set[int]] = {}
    for a, b in _neighbour_pairs(lab):
        nbrs.setdefault(int(a), set()).add(int(b))
    slivers = [
        a
        for a in range(1, n + 1)
        if nbrs.get(a)
        and (
            area[a] < SLIVER_AREA
            or (area[a] < SLIVER_LONE_AREA and len(nbrs[a]) == 1)
            or (area[a] < SLIVER_THIN_AREA and not inner[a])
        )
    ]
    if slivers:
        opened = np.isin(lab, slivers)
        orig = lab.copy()
        lab[opened] = 0
        lab = ref_grow(lab, opened)
        stuck, m = ndimage.label(opened & (lab == 0))
        for c in range(1, m + 1):
            px = np.flatnonzero(stuck == c)
            lab.ravel()[px] = orig.ravel()[px[0]]
    out = np.zeros((h, w), np.int32)
    flat = lab.ravel()
    order = {}
    for a in flat[flat > 0]:
        if a not in order:
            order[a] = len(order) + 1
    for a, k in order.items():
        out.ravel()[flat == a] = k
    return out


def ref_trapped_ball(
    edges: np.ndarray, radii=(3, 2, 1), keep=("max", None, None), assign_edges: bool = True, max_fills=None
) -> np.ndarray:
    """Per-fill trapped-ball segmentation with the same finishing rules as s2pdata.stages.regions."""
    prov, n = ref_fills(edges, radii, keep, max_fills)
    return ref_finish(prov, n, edges, assign_edges)


def adjusted_rand_index(x: np.ndarray, y: np.ndarray) -> float:
    """Adjusted Rand index (Hubert and Arabie 1985) of two labelings of the same pixels."""
    x = np.unique(np.asarray(x).ravel(), return_inverse=True)[1]
    y = np.unique(np.asarray(y).ravel(), return_inverse=True)[1]
    table = np.zeros((x.max() + 1, y.max() + 1), np.int64)
    np.add.at(table, (x, y), 1)

    def pairs(v):
        v = v.astype(np.float64)
        return (v * (v - 1) / 2).sum()

    index = pairs(table)
    a, b = pairs(table.sum(1)), pairs(table.sum(0))
    total = x.size * (x.size - 1) / 2
    expected = a * b / total if total else 0.0
    top = (a + b) / 2
    if top == expected:
        return 1.0
    return float((index - expected) / (top - expected))


# ===============================================================================================
# Drafts: warp, spray, pasting (docs/method.md, Region pasting, Spatial warp, Colour spray)
#
# Slow, obviously-correct references for s2pdata.stages.warp, s2pdata.stages.spray and s2pdata.stages.drafts.
#
# numpy / scipy only, written from the formulas in docs/method.md (Region pasting to Colour spray) and the modules'
# docstrings, never from the fast code:
#
# - ``ref_warp_image``: spatial-transformer bilinear sampling (``align_corners=False``) in float64,
#   one explicit formula per step; borders "reflect" (mirror about pixel edges), "replicate",
#   "constant" (zeros).
# - ``ref_warp_labels``: the same sampling positions, nearest pixel centre, 0 outside.
# - ``ref_spray_mask`` / ``ref_apply_spray``: the soft-stroke profile as a clipped ramp over whole-image
#   numpy arrays, the distance to a segment by cases (perpendicular foot or nearer end point).
# - ``ref_spray_mask_bits``: the same profile at every pixel with the kernel's float64 operation order,
#   for bit-exact comparison (the stroke kernels visit only rows' spans inside bounding boxes).
# - ``ref_paste_patches``: pixel-by-pixel paste of already-rotated patches.
# - ``ref_eligible_regions``: which labels ``cut_region_patch`` may choose, label by label.
# ===============================================================================================


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


def _segment_distance(shape, r0: float, c0: float, r1: float, c1: float) -> np.ndarray:
    """``(H, W) float64`` Euclidean distance of every pixel centre to the segment, by cases:
    the perpendicular distance |cross| / |b - a| where the foot of the perpendicular falls on
    the segment (both end angles acute: the two dot products >= 0), else the nearer end point."""
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    to_a = np.hypot(rr - r0, cc - c0)
    to_b = np.hypot(rr - r1, cc - c1)
    ends = np.minimum(to_a, to_b)
    length = math.hypot(r1 - r0, c1 - c0)
    if length == 0.0:
        return ends
    cross = np.abs((rr - r0) * (c1 - c0) - (cc - c0) * (r1 - r0))
    foot_inside = ((rr - r0) * (r1 - r0) + (cc - c0) * (c1 - c0) >= 0) & (
        (rr - r1) * (r0 - r1) + (cc - c1) * (c0 - c1) >= 0
    )
    return np.where(foot_inside, cross / length, ends)


def _coverage_of(d: np.ndarray, half: float, softness: float) -> np.ndarray:
    """The docstring's profile, written as a clipped ramp: t = clip((h - d) / (h - c), 0, 1),
    coverage 3 t^2 - 2 t^3; a hard edge (c == h) is the step d < h."""
    core = half * (1.0 - softness)
    if half - core <= 0.0:
        return (d < half).astype(np.float64)
    with np.errstate(over="ignore"):
        t = np.clip((half - d) / (half - core), 0.0, 1.0)
    return 3.0 * t**2 - 2.0 * t**3


def ref_spray_mask(shape, paths, widths, softness: float, opacity: float, slack: float = 0.0) -> np.ndarray:
    """Max over paths of opacity * coverage(distance to the segment + ``slack``), whole-image
    numpy over every pixel for every path (no bounding box). Coverage falls with distance, so
    ``slack`` > 0 gives a lower and < 0 an upper bound that absorbs rounding of the distance
    where a steep or hard edge passes through a pixel centre."""
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((h, w), np.float64)
    for ((r0, c0), (r1, c1)), width in zip(paths, widths):
        d = _segment_distance((h, w), r0, c0, r1, c1) + slack
        out = np.maximum(out, opacity * _coverage_of(d, width / 2.0, softness))
    return out


def ref_spray_mask_bits(shape, paths, widths, softness: float, opacity: float) -> np.ndarray:
    """``spray_mask``'s exact bits: the docstring's profile evaluated at every pixel of the image (no
    bounding box, no row spans), in whole-image numpy float64 with the kernel's operation order: t =
    clip(((i - r0) dr + (j - c0) dc) / |d|^2, 0, 1), distance to (r0 + t dr, c0 + t dc), 1 inside the
    core, smoothstep between, 0 from the half-width on, times opacity; max over paths, then float32.
    Each numpy operation rounds like the scalar one, so the fast kernel must match bit for bit."""
    h, w = int(shape[0]), int(shape[1])
    ii, jj = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((h, w), np.float64)
    for ((r0, c0), (r1, c1)), width in zip(paths, widths):
        half = width / 2.0
        core = half * (1.0 - softness)
        dr, dc = r1 - r0, c1 - c0
        len2 = dr * dr + dc * dc
        t = np.clip(((ii - r0) * dr + (jj - c0) * dc) / len2, 0.0, 1.0) if len2 > 0.0 else np.zeros_like(ii)
        pr, pc = ii - (r0 + t * dr), jj - (c0 + t * dc)
        d = np.sqrt(pr * pr + pc * pc)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = (half - d) / (half - core)
            cov = np.where(d >= half, 0.0, np.where(d <= core, 1.0, u * u * (3.0 - 2.0 * u)))
        out = np.maximum(out, cov * opacity)
    return out.astype(np.float32)


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


def ref_label_boxes(labels: np.ndarray) -> dict[int, tuple[int, int, int, int]]:
    """{label: (area, row0, row1, col0, col1)} for every label present; boxes are half-open."""
    out = {}
    for lab in np.unique(labels):
        rr, cc = np.nonzero(labels == lab)
        out[int(lab)] = (len(rr), int(rr.min()), int(rr.max()) + 1, int(cc.min()), int(cc.max()) + 1)
    return out


# ===============================================================================================
# Beyond the paper: rough sketches, flat colours, colour domains, references
#
# Slow, obviously-correct references for rough, flat, domain and refimage (numpy/scipy/cv2 only).
#
# Self-contained: nothing here imports s2pdata, so a bug in a kernel cannot hide in its reference.
# ===============================================================================================


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
                kept = v[t : len(v) - t]
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
    return (1 - fr) * (1 - fc) * f[r0, c0] + (1 - fr) * fc * f[r0, c1] + fr * (1 - fc) * f[r1, c0] + fr * fc * f[r1, c1]


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
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(compatible(a[k], b[k]) for k in a)
        )
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


# ===============================================================================================
# PNG row filters (s2pdata.pngread)
# ===============================================================================================


def ref_png_unfilter(rows: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG's five row filters, byte by byte as the PNG specification defines them: ``rows`` is
    (H, 1 + stride) uint8, each row's filter type in column 0; returns the (H, stride) image bytes."""
    h, stride = rows.shape[0], rows.shape[1] - 1
    out = np.zeros((h, stride), np.int64)
    for r in range(h):
        f = int(rows[r, 0])
        for c in range(stride):
            a = int(out[r, c - bpp]) if c >= bpp else 0  # left
            b = int(out[r - 1, c]) if r > 0 else 0  # above
            d = int(out[r - 1, c - bpp]) if r > 0 and c >= bpp else 0  # above left
            if f == 0:
                pred = 0
            elif f == 1:
                pred = a
            elif f == 2:
                pred = b
            elif f == 3:
                pred = (a + b) // 2
            else:
                p = a + b - d
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - d)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else d)
            out[r, c] = (int(rows[r, 1 + c]) + pred) % 256
    return out.astype(np.uint8)


# ===============================================================================================
# Draft realism statistics (s2pdata.realism)
#
# Written from the definitions in s2pdata.realism's docstring: one region at a time with boolean
# masks and Python's math, the Gaussian residual through scipy.ndimage, and the ROC AUC by
# counting every (positive, negative) pair.
# ===============================================================================================


def ref_hf_energy(planes: np.ndarray, sigma: float) -> float:
    """Mean square of ``planes`` (float) minus their scipy Gaussian blur (mirror border, radius 4 sigma)."""
    planes = np.asarray(planes, np.float64)
    return float(np.mean((planes - ref_blur(planes, sigma)) ** 2))


def ref_region_statistics(
    draft_lab: np.ndarray,
    target_lab: np.ndarray,
    labels: np.ndarray,
    *,
    min_area: int,
    chroma_min: float,
    hue_wrong: float,
) -> dict:
    """Region by region: mean Lab colour in draft and target, their Euclidean distance, and the hue test."""
    errors, hue_regions, wrong, grey = [], 0, 0, 0
    for k in range(1, int(labels.max()) + 1 if labels.size else 1):
        mask = labels == k
        if mask.sum() < min_area:
            continue
        d = [float(np.mean(draft_lab[..., c][mask].astype(np.float64))) for c in range(3)]
        t = [float(np.mean(target_lab[..., c][mask].astype(np.float64))) for c in range(3)]
        errors.append(math.sqrt(sum((a - b) ** 2 for a, b in zip(d, t))))
        if math.hypot(t[1], t[2]) >= chroma_min:
            hue_regions += 1
            if math.hypot(d[1], d[2]) < chroma_min:
                grey += 1
            else:
                gap = abs(math.degrees(math.atan2(d[2], d[1])) - math.degrees(math.atan2(t[2], t[1])))
                gap = min(gap % 360, 360 - gap % 360)
                wrong += gap > hue_wrong
    return {
        "regions": len(errors),
        "region_error": sum(errors) / len(errors) if errors else None,
        "hue_regions": hue_regions,
        "wrong_hue": wrong / hue_regions if hue_regions else None,
        "grey_regions": grey / hue_regions if hue_regions else None,
    }


def ref_roc_auc(scores, positive) -> float:
    """Share of (positive, negative) pairs where the positive scores higher, ties counting one half."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


# ===============================================================================================
# Draft-model mistakes (s2pdata.stages.mistakes; docs/method.md, Draft-model mistakes)
#
# Written from the module's definitions, one pixel at a time in Python floats: BT.601 luma, the
# chroma C - Y, a colour out of the RGB cube pulled toward its grey along its chroma, chessboard
# distances by brute force over the region's and the ink's pixels, and the chroma blur as a
# separable float64 convolution with OpenCV's Gaussian weights and the mirror border (REFLECT_101).
# ===============================================================================================

_W601 = (0.299, 0.587, 0.114)


def ref_luma(rgb) -> float:
    """BT.601 luma of one pixel (any three numbers)."""
    return _W601[0] * float(rgb[0]) + _W601[1] * float(rgb[1]) + _W601[2] * float(rgb[2])


def ref_put(lum: float, d) -> list[int]:
    """lum + k d rounded, k <= 1 the largest that keeps all three channels in [0, 255]."""
    k = 1.0
    for v in d:
        if v > 0:
            k = min(k, (255.0 - lum) / v)
        elif v < 0:
            k = min(k, lum / -v)
    k = max(k, 0.0)
    return [int(min(max(round(lum + k * v), 0), 255)) for v in d]


def ref_rotate_hue(color: np.ndarray, labels: np.ndarray, regions, angles) -> np.ndarray:
    """Each pixel of a listed region: (Cb, Cr) = ((B - Y) / 1.772, (R - Y) / 1.402) turned by the
    region's angle, then back with G from the kept luma; other pixels copied."""
    turn = {int(r): math.radians(float(a)) for r, a in zip(regions, angles)}
    kr, kb = 2 * (1 - _W601[0]), 2 * (1 - _W601[2])
    out = color.copy()
    for y in range(color.shape[0]):
        for x in range(color.shape[1]):
            lab = int(labels[y, x])
            if lab not in turn:
                continue
            r, g, b = (float(v) for v in color[y, x])
            lum = ref_luma((r, g, b))
            cb, cr = (b - lum) / kb, (r - lum) / kr
            c, s = math.cos(turn[lab]), math.sin(turn[lab])
            dr, db = kr * (s * cb + c * cr), kb * (c * cb - s * cr)
            dg = -(_W601[0] * dr + _W601[2] * db) / _W601[1]
            out[y, x] = ref_put(lum, (dr, dg, db))
    return out


def ref_cast_color(color: np.ndarray, angle: float, chroma: float, amount: float) -> np.ndarray:
    """Each pixel's (Cb, Cr) = ((B - Y) / 1.772, (R - Y) / 1.402) blended toward chroma * (cos, sin)
    of the angle by amount, then back with G from the kept luma."""
    kr, kb = 2 * (1 - _W601[0]), 2 * (1 - _W601[2])
    cb0, cr0 = chroma * math.cos(math.radians(angle)), chroma * math.sin(math.radians(angle))
    out = np.empty_like(color)
    for y in range(color.shape[0]):
        for x in range(color.shape[1]):
            r, g, b = (float(v) for v in color[y, x])
            lum = ref_luma((r, g, b))
            cb = (1.0 - amount) * ((b - lum) / kb) + amount * cb0
            cr = (1.0 - amount) * ((r - lum) / kr) + amount * cr0
            dr, db = kr * cr, kb * cb
            out[y, x] = ref_put(lum, (dr, -(_W601[0] * dr + _W601[2] * db) / _W601[1], db))
    return out


def ref_desaturate(color: np.ndarray, labels: np.ndarray, amount: float, regions, region_amount: float):
    """Each pixel keeps (1 - amount) of its chroma, times (1 - region_amount) in a listed region."""
    listed = {int(r) for r in regions}
    out = np.empty_like(color)
    for y in range(color.shape[0]):
        for x in range(color.shape[1]):
            k = (1.0 - amount) * ((1.0 - region_amount) if int(labels[y, x]) in listed else 1.0)
            r, g, b = (float(v) for v in color[y, x])
            lum = ref_luma((r, g, b))
            out[y, x] = ref_put(lum, (k * (r - lum), k * (g - lum), k * (b - lum)))
    return out


def ref_chessboard(mask: np.ndarray) -> np.ndarray:
    """Chessboard distance from every pixel to the nearest set pixel of ``mask`` (inf when none)."""
    ys, xs = np.nonzero(mask)
    out = np.full(mask.shape, np.inf)
    for y in range(mask.shape[0]):
        for x in range(mask.shape[1]):
            if len(ys):
                out[y, x] = float(np.max([np.abs(ys - y), np.abs(xs - x)], axis=0).min())
    return out


def ref_bleed_color(color: np.ndarray, labels: np.ndarray, ink: np.ndarray, regions, radius: int, strength: float):
    """Each listed region in order: its rounded mean colour m (over the input) blended into every
    pixel at chessboard distance 1..radius from it and within radius of ink, by
    strength * (radius + 1 - d) / radius."""
    out = color.copy()
    by_line = ref_chessboard(ink) <= radius
    means = {}
    for lab in regions:
        px = color[labels == lab].astype(np.float64)
        means.setdefault(lab, np.rint(px.mean(axis=0)) if len(px) else None)
    for lab in regions:
        if means[lab] is None:
            continue
        dist = ref_chessboard(labels == lab)
        for y in range(color.shape[0]):
            for x in range(color.shape[1]):
                d = dist[y, x]
                if 1 <= d <= radius and by_line[y, x]:
                    a = strength * (radius + 1.0 - d) / radius
                    for ch in range(3):
                        v = float(out[y, x, ch])
                        out[y, x, ch] = round(v + a * (float(means[lab][ch]) - v))
    return out


def ref_lowpass_chroma(color: np.ndarray, sigma: float, ink: np.ndarray, side: int) -> np.ndarray:
    """Chroma C - Y blurred by a separable float64 convolution with cv2.getGaussianKernel(side,
    sigma) weights and the mirror border, added to each pixel's luma; ink pixels copied."""
    f = color.astype(np.float64)
    lum = _W601[0] * f[..., 0] + _W601[1] * f[..., 1] + _W601[2] * f[..., 2]
    chroma = f - lum[..., None]
    weights = cv2.getGaussianKernel(side, sigma, ktype=cv2.CV_64F).ravel()
    half = side // 2
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (half, half)
        padded = np.pad(chroma, pad, mode="reflect")  # d c b | a b c d | c b a, OpenCV's REFLECT_101
        n = chroma.shape[axis]
        chroma = sum(weights[i] * np.take(padded, range(i, i + n), axis=axis) for i in range(side))
    out = color.copy()
    for y in range(color.shape[0]):
        for x in range(color.shape[1]):
            if not ink[y, x]:
                out[y, x] = ref_put(ref_luma(color[y, x]), chroma[y, x])
    return out
