"""Reference images for reference-based colourisation: target -> deformed, recoloured, cropped copy.

Consumes the target colour image ``(H, W, 3) uint8`` RGB; produces a reference image of the same
shape and a plain-JSON ``params`` dict with a fixed key set, from which ``reference_from_params``
re-creates it exactly. A network trained to colour a sketch "like this reference" must find
correspondences, not copy pixels, so the reference is the target:

1. warped by a smooth random deformation: a coarse ``(grid + 1) x (grid + 1)`` grid of random
   displacements (uniform, at most ``max_disp`` times the image side), upsampled bicubically to a
   dense field and applied with ``cv2.remap`` (bilinear, mirror border);
2. cropped to a random box with side fraction in ``crop`` (same aspect as the image) and resized
   back to (H, W) (bilinear);
3. colour-jittered in HSV: hue rotated by ``hue_shift`` degrees, saturation and value scaled.

An identity deformation, a full crop and no jitter return the target exactly (each step is
skipped when it is the identity). ``reference_map`` gives, for every reference pixel, the target
location it shows, for correspondence supervision.
"""

from __future__ import annotations

import cv2
import numpy as np

from s2pdata._check import check_pair, check_range, check_rgb, check_rng

PARAM_KEYS = ("size", "grid", "disp", "crop_box", "hue_shift", "sat_scale", "val_scale")


def make_reference_params(
    shape,
    *,
    rng: np.random.Generator,
    grid: int = 4,
    max_disp: float = 0.04,
    crop=(0.7, 1.0),
    hue: float = 18.0,
    sat=(0.7, 1.3),
    val=(0.8, 1.2),
) -> dict:
    """Draw the parameters of one reference image for an image of ``shape``.

    Draw order: displacements ``(grid+1, grid+1, 2)``, crop side fraction, crop top, crop left,
    hue shift, saturation scale, value scale.

    Returns a plain-JSON dict with keys ``PARAM_KEYS``: ``size`` [H, W] ints; ``grid`` int;
    ``disp`` nested lists (grid+1) x (grid+1) x [d_row, d_col] floats in pixels; ``crop_box``
    [top, left, height, width] ints; ``hue_shift`` (degrees), ``sat_scale``, ``val_scale`` floats.
    """
    check_rng(rng)
    h, w = int(shape[0]), int(shape[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"shape must have positive H and W, got {shape!r}")
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or not 1 <= grid <= 64:
        raise ValueError(f"grid must be an int in 1..64, got {grid!r}")
    max_disp = check_range("max_disp", max_disp, 0.0, 0.25)  # a fraction of the side
    c_lo, c_hi = check_pair("crop", crop, low=1e-3, high=1.0)
    s_lo, s_hi = check_pair("sat", sat, low=0.0, high=10.0)
    v_lo, v_hi = check_pair("val", val, low=0.0, high=10.0)
    hue = check_range("hue", hue, 0.0, 180.0)  # degrees
    side = max(h, w)
    disp = rng.uniform(-1.0, 1.0, (grid + 1, grid + 1, 2)) * (max_disp * side)
    frac = rng.uniform(c_lo, c_hi)
    ch, cw = max(1, min(h, int(round(frac * h)))), max(1, min(w, int(round(frac * w))))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return {
        "size": [h, w],
        "grid": int(grid),
        "disp": disp.tolist(),
        "crop_box": [top, left, ch, cw],
        "hue_shift": float(rng.uniform(-hue, hue)),
        "sat_scale": float(rng.uniform(s_lo, s_hi)),
        "val_scale": float(rng.uniform(v_lo, v_hi)),
    }


def _dense_disp(params: dict) -> np.ndarray:
    """``(H, W, 2) float32`` displacement (d_row, d_col) in pixels, bicubic from the coarse grid."""
    h, w = params["size"]
    coarse = np.asarray(params["disp"], np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, 2)  # dsize (w, h)


def _crop_coords(params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Row and column in the warped image sampled by each reference row / column (cv2 resize rule)."""
    h, w = params["size"]
    top, left, ch, cw = params["crop_box"]
    rows = (np.arange(h) + 0.5) * (ch / h) - 0.5 + top
    cols = (np.arange(w) + 0.5) * (cw / w) - 0.5 + left
    return rows, cols


def _check_params(color: np.ndarray, params: dict) -> None:
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(f"params lacks keys {missing}; pass the dict make_reference_params returned")
    if list(color.shape[:2]) != [int(v) for v in params["size"]]:
        raise ValueError(
            f"color has shape {color.shape[:2]} but params were drawn for size "
            f"{params['size']}; draw params for this image's shape"
        )


def reference_from_params(color: np.ndarray, params: dict) -> np.ndarray:
    """Apply recorded reference parameters to ``color`` (deform, crop + resize, colour jitter).

    Shape: ``(H, W, 3) uint8 -> (H, W, 3) uint8``.
    """
    color = check_rgb("color", color)
    _check_params(color, params)
    h, w = color.shape[:2]
    out = np.ascontiguousarray(color)
    if np.any(np.asarray(params["disp"], np.float64) != 0):
        d = _dense_disp(params)
        rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
        # cv2.remap takes map_x (columns) then map_y (rows); BORDER_REFLECT mirrors about pixel edges
        out = cv2.remap(out, cols + d[..., 1], rows + d[..., 0], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    top, left, ch, cw = (int(v) for v in params["crop_box"])
    if (top, left, ch, cw) != (0, 0, h, w):
        out = cv2.resize(out[top : top + ch, left : left + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    hs, ss, vs = float(params["hue_shift"]), float(params["sat_scale"]), float(params["val_scale"])
    if (hs, ss, vs) != (0.0, 1.0, 1.0):
        hsv = cv2.cvtColor(out.astype(np.float32) * np.float32(1.0 / 255.0), cv2.COLOR_RGB2HSV)  # RGB in
        hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(hs), np.float32(360.0))
        hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(ss), 0.0, 1.0)
        hsv[..., 2] = np.clip(hsv[..., 2] * np.float32(vs), 0.0, 1.0)
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)  # back to RGB order
        out = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return out.copy() if out is color else out


def reference_map(params: dict) -> np.ndarray:
    """For every reference pixel, the target location ``(row, col)`` whose content it shows.

    Follows the crop/resize back into the warped image, then the deformation back into the
    target (bilinear lookup of the dense field); may fall outside the image where the mirror
    border was sampled.

    Shape: ``-> (H, W, 2) float32`` as (row, col).
    """
    h, w = (int(v) for v in params["size"])
    rows, cols = _crop_coords(params)
    rr, cc = np.meshgrid(rows.astype(np.float32), cols.astype(np.float32), indexing="ij")
    d = _dense_disp(params)
    # the field at fractional warped-image positions; cv2.remap takes map_x then map_y
    dr = cv2.remap(np.ascontiguousarray(d[..., 0]), cc, rr, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    dc = cv2.remap(np.ascontiguousarray(d[..., 1]), cc, rr, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.stack([rr + dr, cc + dc], axis=-1).astype(np.float32)


def make_reference(color: np.ndarray, *, rng: np.random.Generator, **options) -> tuple[np.ndarray, dict]:
    """Make a reference image from the target: smooth deformation, random crop, colour jitter.

    Parameters
    ----------
    color : (H, W, 3) uint8 RGB target.
    rng : numpy Generator (the sample's).
    **options : the keywords of ``make_reference_params``, with its defaults:
    grid : coarse displacement grid has (grid + 1)^2 control points.
    max_disp : largest control displacement, as a fraction of max(H, W) (0 = no deformation).
    crop : (low, high) crop side fraction; (1, 1) keeps the whole image.
    hue : largest hue rotation in degrees (uniform in [-hue, hue]).
    sat, val : (low, high) ranges of the saturation and value scales.

    Returns
    -------
    reference : (H, W, 3) uint8.
    params : see ``make_reference_params``; ``reference_from_params(color, params)`` re-creates
        the image exactly.

    Shape: ``(H, W, 3) -> (H, W, 3)``.
    """
    color = check_rgb("color", color)
    params = make_reference_params(color.shape, rng=rng, **options)
    return reference_from_params(color, params), params
