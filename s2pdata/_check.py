"""Argument checks for the public boundary: name the argument, show the value, say the fix."""

from __future__ import annotations

import math

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


def check_rng(rng: object, name: str = "rng") -> np.random.Generator:
    """Validate a random generator and return it unchanged.

    Parameters
    ----------
    rng : object
        Must be a ``numpy.random.Generator`` (a legacy ``RandomState`` or a seed is refused, so
        that every draw comes from a stream keyed by the sample).
    name : str
        Argument name for the message.

    Raises
    ------
    TypeError
        When ``rng`` is anything else.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{name} must be a numpy Generator, got {type(rng).__name__}; use s2pdata._rng.sample_rng(seed, key)"
        )
    return rng


def _bounds_text(low: float, high: float) -> tuple[str, str]:
    """``"lo <= "`` / ``" <= hi"`` fragments for the finite bounds only."""
    left = f"{low} <= " if math.isfinite(low) else ""
    right = f" <= {high}" if math.isfinite(high) else ""
    return left, right


def check_pair(
    name: str, value: object, *, low: float = -math.inf, high: float = math.inf, integer: bool = False
) -> tuple:
    """Validate a ``(low, high)`` range of numbers and return it as two floats (or ints).

    Parameters
    ----------
    name : str
        Argument name for the message.
    value : object
        A two-entry sequence of numbers ``(a, b)``.
    low, high : float
        Inclusive bounds: ``low <= a <= b <= high`` must hold.
    integer : bool
        Return ``int(a), int(b)`` (truncated) instead of floats.

    Raises
    ------
    TypeError
        When ``value`` is not two numbers.
    ValueError
        When an entry is not finite, ``a > b``, or the pair leaves ``[low, high]``.
    """
    kind = "ints" if integer else "numbers"
    try:
        a, b = value
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (low, high) pair of {kind}, got {value!r}; pass e.g. (1, 4)") from None
    if not (math.isfinite(a) and math.isfinite(b) and low <= a <= b <= high):
        left, right = _bounds_text(low, high)
        raise ValueError(
            f"{name} must be finite with {left}low <= high{right}, got {value!r}; swap or clip the two entries"
        )
    return (int(a), int(b)) if integer else (a, b)


def _check_number(name: str, value: object, want: str, ok) -> float:
    """``float(value)`` when finite and ``ok``; else TypeError (not a number) or ValueError, naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {want}, got {type(value).__name__} {value!r}; pass a number") from None
    if not (math.isfinite(v) and ok(v)):
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return v


def check_finite(name: str, value: object) -> float:
    """A finite number, returned as float.

    Raises ``TypeError`` when ``value`` is not a number and ``ValueError`` for NaN or infinity,
    each naming ``name``.
    """
    return _check_number(name, value, "a finite number", lambda v: True)


def check_positive(name: str, value: object) -> float:
    """A finite number > 0, returned as float; errors as ``check_finite``, also for ``value <= 0``."""
    return _check_number(name, value, "a finite number > 0", lambda v: v > 0)


def check_probability(name: str, value: object) -> float:
    """A number in [0, 1] (not a bool), returned as float; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_range(name: str, value: object, low: float, high: float) -> float:
    """A finite number in ``[low, high]``, returned as float.

    Parameters
    ----------
    name : str
        Argument name for the message.
    value : object
        The number to check.
    low, high : float
        Inclusive bounds; ``math.inf`` for none.

    Raises
    ------
    TypeError
        When ``value`` is not a number.
    ValueError
        When it is not finite or lies outside ``[low, high]``; the message says to clip it.
    """
    return _check_number(
        name, value, f"a finite number in [{low}, {high}] (clip it to that range)", lambda v: low <= v <= high
    )
