"""Simulated user colour hints: RGB image -> hint points -> RGBA hint map.

Consumes a colour image ``(H, W, 3) uint8`` and a generator; produces ``Hints`` (patch centres,
patch sides, mean colours) and, rendered, an RGBA map ``(H, W, 4) uint8`` whose alpha is the hint
mask. The sampler is the one of Zhang et al., "Real-Time User-Guided Image Colorization with
Learned Deep Priors" (SIGGRAPH 2017), which the two-stage paper uses:

- number of hints K ~ Geometric, P(K = k) = (1 - p)^k p with p = 1/8 (mean 7, none 1/8 of
  the time);
- square patch side P ~ U{1..9}; its top-left row ~ N((H - P + 1)/2, (H - P + 1)/4) clipped to
  [0, H - P], the column likewise with W;
- hint colour = the mean colour of the P x P patch.

Feeding a network: Style2Paints draws each hint as a (2l+1)^2 square (l = 1 for the draft net,
l = 2 for refinement) and feeds ``(rgb / 127.5 - 1) * alpha`` plus the mask. Resize a hint map
with ``resize_hints`` (nearest on every hint, never area or bilinear), or small hints vanish.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np

from s2pdata._check import check_array, check_hw, check_rgb, check_rng

P_STOP = 1 / 8
MAX_SIDE = 9


@dataclass(frozen=True, eq=False)
class Hints:
    """Hints of one image: ``points`` (N, 2) int32 (row, col) patch centres (top-left + P // 2),
    ``sides`` (N,) int32 patch sides P, ``colors`` (N, 3) uint8 rounded patch means."""

    points: np.ndarray
    sides: np.ndarray
    colors: np.ndarray

    def __len__(self) -> int:
        return len(self.sides)

    def to_json(self) -> list[dict]:
        return [
            {"row": int(r), "col": int(c), "side": int(s), "rgb": [int(v) for v in rgb]}
            for (r, c), s, rgb in zip(self.points, self.sides, self.colors)
        ]

    @classmethod
    def from_json(cls, records: list[dict] | str) -> Hints:
        """Inverse of ``to_json``: a list of ``{"row", "col", "side", "rgb"}`` dicts, or that list as
        a JSON string (as a sample's json stores it)."""
        if isinstance(records, str):
            try:
                records = json.loads(records)
            except ValueError as exc:
                raise ValueError(f"records is a string but not JSON: {records[:120]!r} ({exc})") from None
        try:
            pts = np.array([[int(d["row"]), int(d["col"])] for d in records], np.int32).reshape(-1, 2)
            sides = np.array([int(d["side"]) for d in records], np.int32)
            colors = np.array([[int(v) for v in d["rgb"]] for d in records], np.uint8).reshape(len(sides), 3)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(
                f"records must be a list of {{'row', 'col', 'side', 'rgb': [r, g, b]}} dicts "
                f"with 0 <= rgb <= 255, as Hints.to_json writes; got {str(records)[:120]} "
                f"({exc})"
            ) from None
        if (sides < 1).any():
            raise ValueError(f"records must have side >= 1, got sides {sides.tolist()[:20]}")
        return cls(pts, sides, colors)


def _corner(rng: np.random.Generator, extent: int, side: int) -> int:
    span = extent - side + 1  # number of valid top-left positions
    return int(np.clip(np.round(rng.normal(span / 2, span / 4)), 0, span - 1))


def sample_hints(
    color: np.ndarray,
    *,
    rng: np.random.Generator,
    p: float = P_STOP,
    max_side: int = MAX_SIDE,
    max_hints: int | None = None,
) -> Hints:
    """Draw simulated user hints from a colour image (Zhang et al. 2017 sampler).

    Parameters
    ----------
    color : ndarray, (H, W, 3) uint8
    rng : numpy.random.Generator
    p : float
        Stopping probability of the geometric count, in (0, 1].
    max_side : int
        Patch sides are drawn from U{1..max_side}, clipped to the image.
    max_hints : int, optional
        Cap on the count.

    Shape
    -----
    (H, W, 3) uint8 -> Hints with N points
    """
    color = check_rgb("color", color)
    check_rng(rng)
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0 < p <= 1:
        raise ValueError(f"p must be a number in (0, 1], got {p!r}")
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < 1:
        raise ValueError(f"max_side must be a positive int, got {max_side!r}")
    if max_hints is not None and (
        isinstance(max_hints, bool) or not isinstance(max_hints, (int, np.integer)) or max_hints < 0
    ):
        raise ValueError(f"max_hints must be None or an int >= 0, got {max_hints!r}")
    H, W = color.shape[:2]
    k = int(rng.geometric(p)) - 1  # numpy counts trials to the first success: k failures
    if max_hints is not None:
        k = min(k, int(max_hints))
    points, sides, colors = [], [], []
    for _ in range(k):
        side = min(int(rng.integers(1, max_side + 1)), H, W)
        top, left = _corner(rng, H, side), _corner(rng, W, side)
        # exact integer patch sum (at most 81 pixels: cheaper than an integral image of the whole)
        total = color[top : top + side, left : left + side].reshape(-1, 3).sum(axis=0, dtype=np.int64)
        points.append((top + side // 2, left + side // 2))
        sides.append(side)
        colors.append(np.round(total / (side * side)))
    return Hints(
        np.array(points, np.int32).reshape(-1, 2),
        np.array(sides, np.int32),
        np.array(colors, np.float64).reshape(-1, 3).clip(0, 255).astype(np.uint8),
    )


def hint_boxes(hints: Hints, shape, *, radius: int | None = 1) -> np.ndarray:
    """(N, 4) int boxes ``(top, left, bottom, right)`` (exclusive ends) clipped to ``shape``:
    (2 radius + 1)^2 squares on the centres, or each hint's own patch when ``radius`` is None."""
    H, W = shape[:2]
    r, c = hints.points[:, 0].astype(np.int64), hints.points[:, 1].astype(np.int64)
    if radius is None:
        top, left = r - hints.sides // 2, c - hints.sides // 2
        bottom, right = top + hints.sides, left + hints.sides
    else:
        top, left, bottom, right = r - radius, c - radius, r + radius + 1, c + radius + 1
    return np.stack([np.clip(top, 0, H), np.clip(left, 0, W), np.clip(bottom, 0, H), np.clip(right, 0, W)], 1)


def render_hints(hints: Hints, shape, *, radius: int | None = 1) -> np.ndarray:
    """Draw hints into an RGBA map: alpha 255 on each hint square, RGB its colour, 0 elsewhere.

    Later hints paint over earlier ones.

    Shape
    -----
    Hints, (H, W) -> (H, W, 4) uint8
    """
    if not isinstance(hints, Hints):
        raise TypeError(f"hints must be a Hints (from sample_hints), got {type(hints).__name__}")
    H, W = check_hw("shape", shape)
    if radius is not None and (not isinstance(radius, (int, np.integer)) or radius < 0):
        raise ValueError(f"radius must be a non-negative int or None, got {radius!r}")
    out = np.zeros((H, W, 4), np.uint8)
    for (t, l, b, r), rgb in zip(hint_boxes(hints, shape, radius=radius), hints.colors):
        out[t:b, l:r, :3] = rgb
        out[t:b, l:r, 3] = 255
    return out


def resize_hints(hint: np.ndarray, size_hw) -> np.ndarray:
    """Resize an RGBA hint map without losing small hints: nearest neighbour, then every hint
    pixel of the source is also stamped at its scaled position (so a 1-pixel hint survives any
    downscale).

    Shape
    -----
    (H, W, 4) uint8 -> (h, w, 4) uint8
    """
    hint = check_array("hint", hint, ndim=3, channels=(4,))
    h, w = check_hw("size_hw", size_hw)
    H, W = hint.shape[:2]
    out = cv2.resize(hint, (w, h), interpolation=cv2.INTER_NEAREST)  # cv2 takes (width, height)
    rows, cols = np.nonzero(hint[..., 3])
    out[(rows * h) // H, (cols * w) // W] = hint[rows, cols]
    return out
