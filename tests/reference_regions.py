"""Slow, obviously-correct references for s2pdata.regions (numpy / scipy / cv2 only).

``ref_trapped_ball`` follows the per-fill reference semantics (LineFiller, REFERENCE.md 3.3):
for each radius, repeatedly take the first free pixel in raster order that the ball fits
around, fill its 4-connected component, erode by the ball, keep the part still connected to the
seed, dilate back inside the component, keep the part connected to the seed; then the size
filter, the leftover components, and the same edge-assignment / sliver rules as the fast code.
Every fill costs several whole-image operations, as in the original.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

SLIVER_AREA, SLIVER_LONE_AREA, SLIVER_THIN_AREA = 50, 250, 500


def ref_edge_map(image: np.ndarray) -> np.ndarray:
    """REFERENCE 3.2 written out with float64 numpy and cv2's 3x3 Gaussian."""
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
    """The whole-image-pass semantics that s2pdata.regions documents, written with cv2, scipy
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
    inner_px = ((lab > 0) & (pad[:-2, 1:-1] == lab) & (pad[2:, 1:-1] == lab)
                & (pad[1:-1, :-2] == lab) & (pad[1:-1, 2:] == lab))
    inner = np.zeros(n + 1, bool)
    inner[lab[inner_px]] = True
    if assign_edges:
        lab = ref_grow(lab, edges)
    else:
        lab[edges] = -1
    nbrs: dict[int, set[int]] = {}
    for a, b in _neighbour_pairs(lab):
        nbrs.setdefault(int(a), set()).add(int(b))
    slivers = [a for a in range(1, n + 1) if nbrs.get(a) and (
        area[a] < SLIVER_AREA or (area[a] < SLIVER_LONE_AREA and len(nbrs[a]) == 1)
        or (area[a] < SLIVER_THIN_AREA and not inner[a]))]
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


def ref_trapped_ball(edges: np.ndarray, radii=(3, 2, 1), keep=("max", None, None),
                     assign_edges: bool = True, max_fills=None) -> np.ndarray:
    """Per-fill trapped-ball segmentation with the same finishing rules as s2pdata.regions."""
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
