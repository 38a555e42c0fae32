"""Synthetic colour drafts (Two-stage Sketch Colorization, TOG 2018; docs/method.md, Drafts).

Consumes a colour image ``(H, W, 3) uint8`` (the ground truth) and a ``PatchPool`` of patches cut
across the dataset (rectangles and trapped-ball regions); produces a flawed colour draft
``(H, W, 3) uint8`` and a plain-JSON record of every parameter, from which ``replay_draft``
re-creates the identical draft.

A draft applies the paper's three corruptions together, in this fixed order:

1. **paste** (Region pasting: wrong colours): several pool patches, each rotated, pasted at random positions;
2. **warp** (Spatial warp: blur and displacement): one random affine transform of the whole picture, so
   pasted patches are distorted together with the content around them;
3. **spray** (Colour spray: colour bleeding): colours picked from the ground truth sprayed along straight
   soft strokes on top, so the strokes themselves stay straight and cross warped boundaries.

That is the paper's family (``style="paper"``, the default). ``style="model"`` makes a draft with the
mistakes of a draft network instead (``s2pdata.stages.mistakes``: grey, a colour cast, blurred,
bleeding, wrong hues), and ``style="mix"`` draws the family per draft. ``replay_draft`` re-creates either.
"""

from __future__ import annotations

import json
import math

import cv2
import numba
import numpy as np

from s2pdata._check import check_array, check_choice, check_pair, check_range, check_rgb, check_rng
from s2pdata._jit import JIT, register_warmup
from s2pdata.pool import Patch, PatchPool
from s2pdata.stages.mistakes import make_mistakes, replay_mistakes
from s2pdata.stages.spray import SprayParams, apply_spray, make_spray_params
from s2pdata.stages.warp import AffineParams, make_affine_params, warp_image

DRAFT_VERSION = 1
DRAFT_STYLES = ("paper", "model", "mix")  # mix: the model family with probability ``mix``


def cut_rect_patch(color: np.ndarray, *, rng: np.random.Generator, side=(64, 256), key: str = "") -> Patch:
    """Cut a random axis-aligned rectangle (paper; docs/method.md, Region pasting: side ~ U[64, 256] px).

    Height and width are drawn independently from U{lo..hi}, each clipped to the image, and the
    position uniformly among those that fit.

    Shape
    -----
    (H, W, 3) uint8 -> Patch with rgb (h, w, 3), mask all True
    """
    color = check_rgb("color", color)
    check_rng(rng)
    lo, hi = check_pair("side", side, low=1, integer=True)
    H, W = color.shape[:2]
    h = min(H, int(rng.integers(lo, hi + 1)))
    w = min(W, int(rng.integers(lo, hi + 1)))
    top = int(rng.integers(0, H - h + 1))
    left = int(rng.integers(0, W - w + 1))
    return Patch(
        rgb=color[top : top + h, left : left + w].copy(),
        mask=np.ones((h, w), np.bool_),
        kind="rect",
        source_key=str(key),
    )


def cut_region_patch(
    color: np.ndarray,
    labels: np.ndarray,
    *,
    rng: np.random.Generator,
    min_area: int = 256,
    max_side: int = 256,
    key: str = "",
) -> Patch | None:
    """Cut one random trapped-ball region (paper's irregular patches; docs/method.md, Region pasting).

    A region (label > 0) is eligible when it has at least ``min_area`` pixels and its bounding
    box is at most ``max_side`` on each side (keeps patches comparable to rectangles and excludes
    the background); one is chosen uniformly. The patch is the bounding box's pixels with the
    region's mask. Returns None when no region is eligible.

    Shape
    -----
    (H, W, 3) uint8, (H, W) int32 -> Patch with rgb (h, w, 3), mask (h, w) | None
    """
    patches = cut_region_patches(color, labels, 1, rng=rng, min_area=min_area, max_side=max_side, key=key)
    return patches[0] if patches else None


def cut_region_patches(
    color: np.ndarray,
    labels: np.ndarray,
    n: int,
    *,
    rng: np.random.Generator,
    min_area: int = 256,
    max_side: int = 256,
    key: str = "",
) -> list[Patch]:
    """Cut ``n`` random trapped-ball regions, each drawn uniformly (with replacement) from the
    eligible ones (see ``cut_region_patch``); region areas and boxes are found once. Returns an
    empty list when no region is eligible.

    Shape
    -----
    (H, W, 3) uint8, (H, W) int32 -> n Patches with rgb (h, w, 3), mask (h, w)
    """
    color = check_rgb("color", color)
    labels = check_array("labels", labels, dtype=np.int32, ndim=2)
    if labels.shape != color.shape[:2]:
        raise ValueError(f"labels shape {labels.shape} must equal color's (H, W) {color.shape[:2]}")
    check_rng(rng)
    if labels.min() < 0:
        raise ValueError(f"labels must be >= 0 (0 = no region), got min {labels.min()}")
    areas, boxes = _label_boxes(labels, int(labels.max()))
    ok = [
        lab
        for lab in range(1, len(areas))
        if areas[lab] > 0
        and areas[lab] >= min_area
        and boxes[lab, 1] - boxes[lab, 0] <= max_side
        and boxes[lab, 3] - boxes[lab, 2] <= max_side
    ]
    if not ok:
        return []
    out = []
    for _ in range(int(n)):
        lab = ok[int(rng.integers(len(ok)))]
        r0, r1, c0, c1 = boxes[lab]
        box = (slice(r0, r1), slice(c0, c1))
        out.append(Patch(rgb=color[box].copy(), mask=labels[box] == lab, kind="region", source_key=str(key)))
    return out


@numba.njit(**JIT)
def _label_boxes(labels, n):
    """Pixel count and bounding box [row0, row1, col0, col1) of every label 0..n, one pass by row runs."""
    h, w = labels.shape
    areas = np.zeros(n + 1, np.int64)
    boxes = np.empty((n + 1, 4), np.int64)
    boxes[:, 0] = h
    boxes[:, 1] = 0
    boxes[:, 2] = w
    boxes[:, 3] = 0
    for y in range(h):
        x = 0
        while x < w:  # one run of equal labels at a time: a box grows only at a run's two ends
            lab, x0 = labels[y, x], x
            while x < w and labels[y, x] == lab:
                x += 1
            areas[lab] += x - x0
            boxes[lab, 0] = min(boxes[lab, 0], y)
            boxes[lab, 1] = max(boxes[lab, 1], y + 1)
            boxes[lab, 2] = min(boxes[lab, 2], x0)
            boxes[lab, 3] = max(boxes[lab, 3], x)
    return areas, boxes


register_warmup(lambda: _label_boxes(np.zeros((2, 2), np.int32), 0))


def _rotated_shape(shape, angle: float, scale: float) -> tuple[int, int]:
    """Canvas (h', w') that ``rotate_patch`` produces, without warping any pixels."""
    if angle == 0.0 and scale == 1.0:
        return tuple(shape)
    h, w = shape
    rad = math.radians(angle)
    a, b = abs(scale * math.cos(rad)), abs(scale * math.sin(rad))
    return (max(1, int(math.ceil(a * h + b * w - 1e-9))), max(1, int(math.ceil(a * w + b * h - 1e-9))))


def rotate_patch(patch: Patch, angle: float, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (counter-clockwise, degrees) and scale a patch about its centre onto a fitting canvas.

    RGB is bilinear (edge pixels replicated), the mask nearest (outside = False). Angle 0 and
    scale 1 return the patch's own arrays.

    Shape
    -----
    Patch (h, w) -> rgb (h', w', 3) uint8, mask (h', w') bool, h' = ceil(s (h |cos| + w |sin|))
    """
    angle, scale = float(angle), float(scale)
    if not (math.isfinite(angle) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"angle must be finite and scale > 0, got angle={angle!r} scale={scale!r}")
    if angle == 0.0 and scale == 1.0:
        return patch.rgb, patch.mask
    h, w = patch.mask.shape
    rad = math.radians(angle)
    a, b = scale * math.cos(rad), scale * math.sin(rad)
    hh, ww = _rotated_shape((h, w), angle, scale)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    nx, ny = (ww - 1) / 2.0, (hh - 1) / 2.0
    # Forward map in (x, y) = (col, row): centre -> canvas centre, then counter-clockwise on screen.
    m = np.array([[a, b, nx - a * cx - b * cy], [-b, a, ny + b * cx - a * cy]], dtype=np.float64)
    rgb = cv2.warpAffine(
        np.ascontiguousarray(patch.rgb), m, (ww, hh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )  # dsize is (width, height)
    mask = cv2.warpAffine(
        np.ascontiguousarray(patch.mask).view(np.uint8),
        m,
        (ww, hh),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return rgb, mask.view(np.bool_)  # nearest sampling of 0/1 with a 0 border: only 0/1 bytes


def _check_pool(pool) -> PatchPool:
    if pool is None:
        return PatchPool()
    if not isinstance(pool, PatchPool):
        raise TypeError(
            f"pool must be a PatchPool or None, got {type(pool).__name__}; wrap patches with PatchPool(list_of_patches)"
        )
    return pool


def paste_patches(image: np.ndarray, pool: PatchPool, pastes) -> np.ndarray:
    """Paste rotated pool patches onto a copy of ``image`` where their (rotated) masks are set.

    Each paste is ``(patch index, angle deg, scale, row, col)``; ``(row, col)`` is the top-left
    of the rotated canvas from ``rotate_patch`` and may lie outside the image (clipped). Later
    pastes cover earlier ones. Only pixels under a pasted mask change.

    Shape
    -----
    (H, W, 3) uint8 -> (H, W, 3) uint8
    """
    image = check_rgb("image", image)
    pool = _check_pool(pool)
    out = image.copy()
    H, W = image.shape[:2]
    for n, paste in enumerate(pastes):
        try:
            idx, angle, scale, row, col = paste
        except (TypeError, ValueError):
            raise ValueError(f"pastes[{n}] must be (index, angle, scale, row, col), got {paste!r}") from None
        idx, row, col = int(idx), int(row), int(col)
        if not 0 <= idx < len(pool):
            raise IndexError(f"pastes[{n}] patch index {idx} is outside the pool of {len(pool)} patches")
        rgb, mask = rotate_patch(pool[idx], angle, scale)
        hh, ww = mask.shape
        r0, r1 = max(row, 0), min(row + hh, H)
        c0, c1 = max(col, 0), min(col + ww, W)
        if r0 >= r1 or c0 >= c1:
            continue
        _paste_kernel(out, rgb, mask, r0, r1, c0, c1, row, col)
    return out


@numba.njit(**JIT)
def _paste_kernel(out, rgb, mask, r0, r1, c0, c1, row, col):
    """out[r, c] = rgb[r - row, c - col] where mask[r - row, c - col], for r0 <= r < r1, c0 <= c < c1."""
    for r in range(r0, r1):
        for c in range(c0, c1):
            if mask[r - row, c - col]:
                for ch in range(3):
                    out[r, c, ch] = rgb[r - row, c - col, ch]


register_warmup(
    lambda: _paste_kernel(
        np.zeros((2, 2, 3), np.uint8), np.ones((1, 1, 3), np.uint8), np.ones((1, 1), np.bool_), 0, 1, 0, 1, 0, 0
    )
)


def make_draft(
    color: np.ndarray,
    *,
    pool: PatchPool | None,
    rng: np.random.Generator,
    n_pastes=(2, 6),
    angle=(0.0, 360.0),
    scale=(1.0, 1.0),
    warp_sigma: float = 0.1,
    one_sided: bool = False,
    border: str = "reflect",
    n_sprays=(1, 3),
    spray_paths=(1, 3),
    spray_width=(64, 128),
    ref_size: int = 512,
    style: str = "paper",
    mix: float = 0.5,
    regions: np.ndarray | None = None,
    sketch: np.ndarray | None = None,
    mistakes: dict | None = None,
) -> tuple[np.ndarray, dict]:
    """Synthesise a flawed colour draft from the ground truth (paper; docs/method.md, Drafts).

    Order: paste ``n_pastes ~ U{lo..hi}`` random pool patches (uniform index, angle ~ U[angle),
    scale ~ U[scale], centre uniform over the image), then warp the whole picture with
    ``make_affine_params(sigma=warp_sigma)``, then ``n_sprays ~ U{lo..hi}`` colour sprays, each
    with its own colour picked from ``color`` (see ``make_spray_params``). An empty or None pool
    skips pasting. Scale 1 assumes the pool was cut from images of the draft's resolution.

    With ``style="model"`` the draft has a draft network's mistakes instead
    (``s2pdata.stages.mistakes.make_mistakes`` with ``regions``, ``sketch`` and ``mistakes``, its
    keyword options; docs/method.md, Draft-model mistakes); with ``style="mix"`` a first draw from
    ``rng`` picks the model family with probability ``mix``, else the paper's. The paper's
    options are unused by the model family and the model's by the paper's.

    Parameters
    ----------
    color : ndarray, (H, W, 3) uint8
    pool : PatchPool or None
    rng : numpy.random.Generator
    style : {"paper", "model", "mix"}
    mix : float in [0, 1]
        With ``style="mix"``: the probability of a model-family draft.
    regions : ndarray, (H, W) int32, optional
        Model family: the sample's trapped-ball labels (None: computed from ``color``).
    sketch : ndarray, (H, W) uint8, optional
        Model family: the sample's line art (None: the edges between regions are the lines).
    mistakes : dict, optional
        Model family: keyword options of ``make_mistake_params`` (chances and ranges).

    Returns
    -------
    draft : ndarray, (H, W, 3) uint8
    params : dict
        Plain JSON. Paper family: version, pool sha256 and size, pastes (patch, source_key, angle,
        scale, row, col), warp (theta, border), sprays (colour, paths, widths, softness,
        opacity). Model family: ``style: "model"`` and the ``make_mistakes`` record.
        ``replay_draft(color, pool, params, regions=..., sketch=...)`` rebuilds ``draft`` byte for
        byte (``draft_style(params)`` says which family it is).

    Shape
    -----
    (H, W, 3) uint8 -> (H, W, 3) uint8
    """
    color = check_rgb("color", color)
    pool = _check_pool(pool)
    check_rng(rng)
    check_choice("style", style, DRAFT_STYLES)
    if style == "mix":
        style = "model" if rng.random() < check_range("mix", mix, 0.0, 1.0) else "paper"
    if style == "model":
        return make_mistakes(color, rng=rng, regions=regions, sketch=sketch, ref_size=ref_size, **(mistakes or {}))
    lo_p, hi_p = check_pair("n_pastes", n_pastes, low=0, integer=True)
    lo_s, hi_s = check_pair("n_sprays", n_sprays, low=0, integer=True)
    pastes = []
    if len(pool):
        pastes = [_draw_paste(color.shape, pool, rng, angle, scale) for _ in range(int(rng.integers(lo_p, hi_p + 1)))]
    theta = make_affine_params(color.shape, rng=rng, sigma=warp_sigma, one_sided=one_sided)
    sprays = [
        make_spray_params(color, rng=rng, n_paths=spray_paths, width=spray_width, ref_size=ref_size)
        for _ in range(int(rng.integers(lo_s, hi_s + 1)))
    ]
    params = {
        "version": DRAFT_VERSION,
        "order": ["paste", "warp", "spray"],
        "pool": {"sha256": pool.sha256, "size": len(pool)},
        "pastes": pastes,
        "warp": {"theta": list(theta.theta), "border": border},
        "sprays": [s.to_json() for s in sprays],
    }
    return _render(color, pool, params), params


def _draw_paste(shape, pool: PatchPool, rng: np.random.Generator, angle, scale) -> dict:
    """One paste record: uniform patch index, angle and scale, canvas centre uniform over the image."""
    idx = int(rng.integers(len(pool)))
    ang = float(rng.uniform(angle[0], angle[1]))
    sc = float(rng.uniform(scale[0], scale[1]))
    rgb_shape = _rotated_shape(pool[idx].mask.shape, ang, sc)
    row = int(rng.integers(0, shape[0])) - rgb_shape[0] // 2
    col = int(rng.integers(0, shape[1])) - rgb_shape[1] // 2
    patch = pool[idx]
    return {
        "patch": idx,
        "source_key": patch.source_key,
        "kind": patch.kind,
        "angle": ang,
        "scale": sc,
        "row": row,
        "col": col,
    }


def _render(color: np.ndarray, pool: PatchPool, params: dict) -> np.ndarray:
    """Apply a draft record: paste, warp, spray (the sprays in place on the warp's fresh output)."""
    pastes = [(p["patch"], p["angle"], p["scale"], p["row"], p["col"]) for p in params["pastes"]]
    out = paste_patches(color, pool, pastes) if pastes else color
    out = warp_image(out, AffineParams.from_json(params["warp"]), border=params["warp"]["border"])  # a new array
    for s in params["sprays"]:
        apply_spray(out, SprayParams.from_json(s), inplace=True)
    return out


def draft_style(params: dict) -> str:
    """The family of a draft record, ``"paper"`` or ``"model"`` (a stored record from
    ``pack_draft`` too)."""
    return params.get("style", "paper") if isinstance(params, dict) else "paper"


def pack_draft(params: dict) -> dict:
    """A ``make_draft`` record as a build stores it when it may hold both families: its family and
    the record as JSON text, ``{"style": ..., "params": "{...}"}``, so every sample's json has one
    schema whichever family each draft is (Hugging Face infers the schema from the first samples).
    ``replay_draft`` takes either form; ``unpack_draft`` returns the record."""
    return {"style": draft_style(params), "params": json.dumps(params, separators=(",", ":"))}


def unpack_draft(record: dict) -> dict:
    """The ``make_draft`` record of a ``pack_draft`` record (any other record unchanged)."""
    if isinstance(record, dict) and set(record) == {"style", "params"} and isinstance(record["params"], str):
        return json.loads(record["params"])
    return record


def replay_draft(
    color: np.ndarray,
    pool: PatchPool | None,
    params: dict,
    *,
    regions: np.ndarray | None = None,
    sketch: np.ndarray | None = None,
) -> np.ndarray:
    """Re-create a draft from its ``make_draft`` record (or its ``pack_draft`` form), byte for byte.

    A model-family record needs the ``regions`` and ``sketch`` it was made with (the sample's
    fields; ``replay_mistakes`` says which when one is missing); the paper's needs the pool.

    Raises ``ValueError`` when ``pool`` is not the pool the record names (size or sha256) or the
    record's version is unknown.

    Shape
    -----
    (H, W, 3) uint8 -> (H, W, 3) uint8
    """
    color = check_rgb("color", color)
    pool = _check_pool(pool)
    params = unpack_draft(params)
    if draft_style(params) == "model":
        return replay_mistakes(color, params, regions=regions, sketch=sketch)
    if isinstance(params, dict) and params.get("style") == "checkpoint":
        raise ValueError(
            f"params: this draft is a draft model's output (checkpoint sha256 {str(params.get('sha256'))[:12]}...), "
            "not a synthetic draft; re-create it with s2pdata.modeldrafts.replay_checkpoint_draft(record, sketch, "
            "hint, checkpoint), the checkpoint named in dataset.json"
        )
    if not isinstance(params, dict) or params.get("version") != DRAFT_VERSION:
        raise ValueError(f"params must be a make_draft record with version {DRAFT_VERSION}, got {str(params)[:120]}")
    rec = params["pool"]
    if params["pastes"] and (rec["size"] != len(pool) or rec["sha256"] != pool.sha256):
        raise ValueError(
            f"pool does not match the draft record: record has {rec['size']} patches, "
            f"sha256 {rec['sha256'][:12]}..., got {len(pool)} patches, sha256 "
            f"{pool.sha256[:12]}...; load the pool the draft was made with"
        )
    return _render(color, pool, params)
