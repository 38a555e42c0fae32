"""Argument checks for the public boundary: name the argument, show the value, say the fix."""

from __future__ import annotations

import numpy as np


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return f"{type(a).__name__} {a!r}"[:120]


def check_array(name: str, a: object, *, dtype=np.uint8, ndim=(2, 3), channels=None) -> np.ndarray:
    """Validate an image-like array and return it unchanged.

    Raises ``TypeError`` for a non-array or wrong dtype and ``ValueError`` for a wrong
    rank, channel count or an empty image, each naming ``name``.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {_describe(a)}; convert with np.asarray")
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise TypeError(
            f"{name} must be {np.dtype(dtype)}, got {_describe(a)}; "
            f"convert with {name}.astype(np.{np.dtype(dtype)}) after scaling to its range"
        )
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if a.ndim not in ndims:
        raise ValueError(f"{name} must have ndim in {ndims}, got {_describe(a)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty image, got {_describe(a)}")
    if channels is not None and a.ndim == 3 and a.shape[2] not in tuple(channels):
        raise ValueError(f"{name} must have {tuple(channels)} channels, got {_describe(a)}")
    return a


def check_rgb(name: str, a: object) -> np.ndarray:
    """An ``(H, W, 3) uint8`` RGB image."""
    return check_array(name, a, ndim=3, channels=(3,))


def check_gray(name: str, a: object) -> np.ndarray:
    """An ``(H, W) uint8`` single-channel image."""
    return check_array(name, a, ndim=2)


def to_gray(name: str, a: object) -> np.ndarray:
    """RGB or gray uint8 -> ``(H, W) uint8`` gray (ITU-R 601 luma, as OpenCV computes it)."""
    import cv2

    a = check_array(name, a, ndim=(2, 3), channels=(1, 3))
    if a.ndim == 3 and a.shape[2] == 3:
        return cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)  # RGB order: the project's colour convention
    return a.reshape(a.shape[:2])


def check_choice(name: str, value: object, choices) -> object:
    """``value`` must be one of ``choices``."""
    if value not in tuple(choices):
        raise ValueError(f"{name} must be one of {sorted(map(str, choices))}, got {value!r}")
    return value


def check_hw(name: str, shape) -> tuple[int, int]:
    """(H, W) ints >= 1 from a shape-like (trailing entries allowed, e.g. ``image.shape``)."""
    import operator

    try:
        h, w = operator.index(shape[0]), operator.index(shape[1])
    except (IndexError, KeyError):
        raise ValueError(f"{name} must have two entries (H, W, ...), e.g. image.shape, got {shape!r}") from None
    except TypeError:
        raise TypeError(f"{name} must be integers (H, W, ...), e.g. image.shape, got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{name} must have H, W >= 1, e.g. image.shape, got {shape!r}")
    return h, w
