"""Random spatial transform for colour drafts (Two-stage Sketch Colorization, TOG 2018; docs/method.md, Spatial warp).

Consumes a colour image (or a label map, or points) and an ``AffineParams`` record; produces the
same target moved by one affine transform with spatial-transformer semantics, so a draft's
distortion can be drawn once, applied to every target, recorded in the sample's json, and
re-applied on GPU in a training loop.

Convention (PyTorch ``F.affine_grid`` + ``F.grid_sample``, ``align_corners=False``): ``theta`` is a
2x3 matrix acting on *normalised output* coordinates ``(x, y, 1)`` in [-1, 1], where -1 and +1 are
the outer edges of the first and last pixel (not their centres); it returns the normalised
*input* coordinate to sample. Output pixel column ``j`` has ``x = (2j + 1) / W - 1``; an input
coordinate ``x_s`` is pixel column ``((x_s + 1) W - 1) / 2``. On CPU the same map is a pixel-space
matrix handed to ``cv2.warpAffine`` with ``WARP_INVERSE_MAP`` (output pixel -> input pixel), and
the border modes pair up as reflect <-> "reflection" (mirror about pixel edges, cv2
``BORDER_REFLECT``), replicate <-> "border", constant <-> "zeros".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from s2pdata._check import check_array, check_choice, check_hw, check_range, check_rng

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

_BORDERS = {"reflect": cv2.BORDER_REFLECT, "constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


@dataclass(frozen=True)
class AffineParams:
    """One random spatial transform.

    Attributes
    ----------
    theta : tuple of 6 float
        Row-major 2x3 matrix ``[[a, b, c], [d, e, f]]`` in normalised coordinates, PyTorch
        ``affine_grid`` convention with ``align_corners=False`` (see the module docstring):
        it maps an output location to the input location that is sampled there.
    """

    theta: tuple[float, float, float, float, float, float] = IDENTITY

    def __post_init__(self):
        t = tuple(float(v) for v in self.theta)
        if len(t) != 6 or not all(np.isfinite(t)):
            raise ValueError(f"theta must be 6 finite floats (2x3 row-major), got {self.theta!r}")
        object.__setattr__(self, "theta", t)

    @property
    def is_identity(self) -> bool:
        """True when theta is exactly the identity (warps return the input unchanged)."""
        return self.theta == IDENTITY

    def matrix(self) -> np.ndarray:
        """theta as a ``(2, 3) float64`` array."""
        return np.array(self.theta, dtype=np.float64).reshape(2, 3)

    def to_json(self) -> dict:
        """Plain-JSON record: ``{"theta": [6 floats]}`` (floats round-trip exactly)."""
        return {"theta": list(self.theta)}

    @classmethod
    def from_json(cls, d: dict) -> AffineParams:
        """Inverse of ``to_json``."""
        return cls(theta=tuple(d["theta"]))


def make_affine_params(shape, *, rng: np.random.Generator, sigma: float = 0.1, one_sided: bool = False) -> AffineParams:
    """Draw a random affine transform: identity plus independent noise on each of its 6 entries.

    Two-stage Sketch Colorization (Zhang et al., TOG 2018) §"spatial transform": every entry of
    the 2x3 theta gets N(0, 0.1^2) noise (the default). ``one_sided=True`` draws U[0, sigma)
    instead, the variant one public re-implementation uses (U[0, 0.1) at the default sigma).

    Parameters
    ----------
    shape : tuple
        ``image.shape``; theta is resolution-free (normalised coordinates), ``shape`` is
        validated and kept for a uniform ``make_<op>_params(shape, rng=...)`` interface.
    rng : numpy.random.Generator
    sigma : float
        Noise scale (standard deviation, or the upper bound of the one-sided uniform).
    one_sided : bool

    Returns
    -------
    AffineParams

    Shape
    -----
    no array output; theta is (2, 3).
    """
    check_hw("shape", shape)
    check_rng(rng)
    sigma = check_range("sigma", sigma, 0.0, math.inf)
    if one_sided:
        noise = rng.uniform(0.0, sigma, size=6)
    else:
        noise = rng.normal(0.0, sigma, size=6)
    return AffineParams(theta=tuple(float(v) for v in np.asarray(IDENTITY) + noise))


def pixel_matrix(params: AffineParams, shape) -> np.ndarray:
    """``(2, 3) float64`` pixel-space matrix: output pixel ``(x, y, 1)`` -> input pixel ``(x, y)``.

    ``U @ theta @ N`` with ``N`` pixel -> normalised and ``U`` normalised -> pixel
    (``align_corners=False``); the identity theta gives the exact identity matrix.
    """
    h, w = check_hw("shape", shape)
    norm = np.array([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0, 0, 1.0]])
    unnorm = np.array([[w / 2.0, 0.0, (w - 1) / 2.0], [0.0, h / 2.0, (h - 1) / 2.0], [0, 0, 1.0]])
    theta3 = np.vstack([params.matrix(), [0.0, 0.0, 1.0]])
    m = (unnorm @ theta3 @ norm)[:2]
    if params.is_identity:
        m = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return m


def _check_params(params) -> AffineParams:
    if not isinstance(params, AffineParams):
        raise TypeError(
            f"params must be AffineParams, got {type(params).__name__}; "
            "use make_affine_params or AffineParams.from_json"
        )
    return params


def warp_image(image: np.ndarray, params: AffineParams, *, border: str = "reflect") -> np.ndarray:
    """Warp an image with bilinear sampling, spatial-transformer semantics.

    Equivalent (within interpolation rounding; cv2 quantises sampling positions to 1/32 px) to
    ``F.grid_sample(img, F.affine_grid(theta, size, align_corners=False), "bilinear",
    padding_mode, align_corners=False)``. The identity theta returns an exact copy.

    Parameters
    ----------
    image : ndarray
        uint8 or float32, ``(H, W)`` or ``(H, W, C)`` with C <= 4.
    params : AffineParams
    border : {"reflect", "constant", "replicate"}
        Fill outside the image: mirror about pixel edges (torch "reflection"), zeros (torch
        "zeros"), or the nearest edge pixel (torch "border").

    Returns
    -------
    ndarray, same shape and dtype as ``image``.

    Shape
    -----
    (H, W[, C]) -> (H, W[, C])
    """
    image = check_array("image", image, dtype=None, ndim=(2, 3), channels=(1, 2, 3, 4))
    if image.dtype not in (np.uint8, np.float32):
        raise TypeError(f"image must be uint8 or float32, got {image.dtype} {image.shape}; convert it first")
    _check_params(params)
    check_choice("border", border, _BORDERS)
    if params.is_identity:
        return image.copy()
    h, w = image.shape[:2]
    m = pixel_matrix(params, image.shape)
    # cv2 dsize is (width, height); the matrix is in (x, y) = (col, row) pixel coordinates.
    out = cv2.warpAffine(
        np.ascontiguousarray(image),
        m,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=_BORDERS[border],
        borderValue=0,
    )
    return out.reshape(image.shape)


def warp_labels(labels: np.ndarray, params: AffineParams) -> np.ndarray:
    """Warp a label map with nearest sampling; locations that sample outside the image get 0.

    Every output value is an input value or 0, so no label is ever invented. Nearest means the
    input pixel whose centre is closest to the sampled location (``floor(x + 0.5)``).

    Parameters
    ----------
    labels : ndarray, int32 (H, W)
    params : AffineParams

    Returns
    -------
    ndarray, int32 (H, W)

    Shape
    -----
    (H, W) -> (H, W)
    """
    labels = check_array("labels", labels, dtype=np.int32, ndim=2)
    _check_params(params)
    if params.is_identity:
        return labels.copy()
    h, w = labels.shape
    m = pixel_matrix(params, labels.shape)
    rows, cols = np.mgrid[0:h, 0:w]
    xs = m[0, 0] * cols + m[0, 1] * rows + m[0, 2]
    ys = m[1, 0] * cols + m[1, 1] * rows + m[1, 2]
    xi = np.floor(xs + 0.5).astype(np.int64)
    yi = np.floor(ys + 0.5).astype(np.int64)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    out = np.zeros((h, w), np.int32)
    out[inside] = labels[yi[inside], xi[inside]]
    return out


def warp_points(points: np.ndarray, params: AffineParams, shape) -> np.ndarray:
    """Move points the way ``warp_image`` moves the content under them.

    The image warp samples input at ``M @ output``; content at input point ``q`` therefore lands
    at ``M^-1 @ q`` (pixel coordinates, pixel centres at integers).

    Parameters
    ----------
    points : array_like, (N, 2) as (row, col)
    params : AffineParams
    shape : tuple
        Shape of the image the points belong to.

    Returns
    -------
    ndarray, float64 (N, 2) as (row, col); may fall outside the image.

    Shape
    -----
    (N, 2) -> (N, 2)
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (N, 2) as (row, col), got shape {pts.shape}")
    _check_params(params)
    if params.is_identity:
        return pts.copy()
    m3 = np.vstack([pixel_matrix(params, shape), [0.0, 0.0, 1.0]])
    try:
        inv = np.linalg.inv(m3)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"params.theta {params.theta} is singular: it folds the image onto a line, "
            "so points have no unique destination; draw theta near the identity"
        ) from None
    xy1 = np.stack([pts[:, 1], pts[:, 0], np.ones(len(pts))])  # (x, y) = (col, row)
    moved = inv[:2] @ xy1
    return np.stack([moved[1], moved[0]], axis=1)


def warp_batch_torch(images, thetas, *, padding_mode: str = "reflection"):
    """Warp a batch on any torch device: ``F.affine_grid`` + bilinear ``F.grid_sample``.

    ``align_corners=False`` throughout, matching ``warp_image`` on CPU.

    Parameters
    ----------
    images : torch.Tensor, float (B, C, H, W)
    thetas : torch.Tensor or array_like, (B, 2, 3)
        Moved to the images' device and dtype.
    padding_mode : {"reflection", "zeros", "border"}

    Returns
    -------
    torch.Tensor, same shape, dtype and device as ``images``.

    Shape
    -----
    (B, C, H, W), (B, 2, 3) -> (B, C, H, W)
    """
    try:
        import torch
        import torch.nn.functional as F
    except ModuleNotFoundError as exc:  # pragma: no cover - torch is an extra
        raise ModuleNotFoundError("warp_batch_torch needs torch: pip install 's2pdata[torch]'") from exc
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        desc = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"images must be a float torch.Tensor (B, C, H, W), got {desc}; use torch.as_tensor(x).float()")
    check_choice("padding_mode", padding_mode, ("reflection", "zeros", "border"))
    thetas = torch.as_tensor(thetas, dtype=images.dtype, device=images.device)
    if tuple(thetas.shape) != (images.shape[0], 2, 3):
        raise ValueError(f"thetas must be (B, 2, 3) with B = {images.shape[0]}, got {tuple(thetas.shape)}")
    grid = F.affine_grid(thetas, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
