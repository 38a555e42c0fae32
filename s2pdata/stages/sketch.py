"""Sketch (line-art) extraction: colour image -> line art + the parameters that made it.

Consumes a decoded colour image ``(H, W, 3) uint8`` RGB; produces a sketch ``(H, W) uint8``
(255 = paper, 0 = ink) and a plain JSON-able ``params`` dict recorded in the sample's json
(docs/method.md, Sketch extraction). Three weight-free extractors:

* ``sketch_dilate``   PaintsChainer's recipe: 255 - (dilate(g, 3x3) - g).
* ``sketch_xdog``     eXtended Difference of Gaussians (Winnemoeller, Kyprianidis, Olsen,
  "XDoG: An eXtended difference-of-Gaussians compendium", Computers & Graphics 36(6), 2012),
  the paper's branch order: T(u) = 1 if u >= eps else 1 + tanh(phi (u - eps)).
* ``sketch_highpass`` sketchKeras' pre-processing: how much darker each pixel is than its
  Gaussian surround (sigma 3), normalised by the image maximum, max over channels.

``extract_sketch`` picks an extractor and draws the augmentations (XDoG sigma jitter, Otsu
binarisation, line lightening) from an explicit ``rng`` and records every draw.

Known weaknesses (all three are local contrast detectors, not line detectors):

* Faint lines where the line colour is close to the fill colour (a dark-red outline on a red
  fill has little luma contrast, so it comes out light or broken).
* Shading and colour boundaries become lines: a cel-shading edge or a hard shadow is drawn like
  an outline, and XDoG marks the dark side of every strong colour edge. Learned extractors are
  better here: ``method="learned"`` runs one (``s2pdata.stages.learned``, user-supplied weights).
* Binarise before downscaling, never after: downscaling binary line art gives anti-aliased grey
  lines, which is what the model sees at inference; thresholding a downscaled sketch breaks
  thin lines into dashes. (``extract_sketch`` works at the resolution it is given.)
* XDoG with phi = 1e9 is a hard threshold on D >= eps: in very dark flat regions D = 0.05 g is
  tiny, so JPEG noise there can speckle. The default eps = 0 is kept (see ``sketch_xdog``).
"""

from __future__ import annotations

import cv2
import numpy as np

from s2pdata._check import check_choice, check_finite, check_positive, check_rgb, check_rng
from s2pdata._jit import register_warmup

SKETCH_METHODS = ("xdog", "dilate", "highpass", "mix", "learned")
XDOG_SIGMAS = (0.3, 0.4, 0.5)  # anime preset: three line widths (docs/method.md, Sketch extraction)
P_BINARIZE = 0.25
LIGHTEN_RANGE = (0.7, 1.0)
_BASE_METHODS = ("xdog", "dilate", "highpass")
PARAM_KEYS = (
    "method",
    "requested",
    "augment",
    "sigma",
    "k",
    "tau",
    "phi",
    "eps",
    "binarize",
    "otsu_threshold",
    "lighten_r",
)
_HP_TOL = 1e-2  # high-pass values below this (grey levels) are float noise, not ink


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """1-D normalised Gaussian taps, radius int(4 sigma + 0.5) (scipy's truncate=4 rule)."""
    radius = max(1, int(4.0 * sigma + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a float32 image, mirror border (cv2 REFLECT_101)."""
    k = _gaussian_kernel(sigma)
    return cv2.sepFilter2D(img, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT_101)


def _gray(color: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB -> ``(H, W) uint8`` ITU-R 601 luma."""
    return cv2.cvtColor(color, cv2.COLOR_RGB2GRAY)  # input is RGB (project convention)


def sketch_dilate(color: np.ndarray) -> np.ndarray:
    """Line art by morphological gradient (PaintsChainer's recipe).

    g = gray(color); d = dilate(g, 3x3 ones, 1 iteration); sketch = 255 - (d - g).
    A pixel is dark by as much as its brightest 8-neighbour is brighter than it.

    Shape: ``(H, W, 3) uint8`` -> ``(H, W) uint8`` (255 paper, 0 ink).
    """
    color = check_rgb("color", color)
    g = _gray(color)
    d = cv2.dilate(g, np.ones((3, 3), np.uint8), iterations=1)  # border pixels ignore outside
    return (255 - (d - g)).astype(np.uint8)


def sketch_xdog(
    color: np.ndarray, *, sigma: float = 0.4, k: float = 4.5, tau: float = 0.95, phi: float = 1e9, eps: float = 0.0
) -> np.ndarray:
    """Line art by the eXtended Difference of Gaussians (Winnemoeller et al. 2012).

    On g = gray(color) / 255: D = G_sigma(g) - tau * G_{k sigma}(g);
    T(u) = 1 if u >= eps else 1 + tanh(phi (u - eps)); sketch = 255 * clip(T(D), 0, 1).
    This is the paper's branch order (the widely copied variant that swaps the branches needs
    other parameters). Defaults are the anime preset (k 4.5, tau 0.95, phi 1e9: a hard
    threshold). eps stays 0: on a flat region of value c, D = (1 - tau) c >= 0, so flat
    colour and any blank image are pure paper, and a pixel is ink exactly when its fine blur
    is darker than tau times its coarse surround -- dark outlines and the dark side of strong
    colour edges. Any eps > 0 turns dark flat regions (c < eps / (1 - tau)) solid black; a
    negative eps only thins lines. Gaussians use radius int(4 sigma + 0.5) and a mirror border.

    Shape: ``(H, W, 3) uint8`` -> ``(H, W) uint8`` (255 paper, 0 ink).
    """
    color = check_rgb("color", color)
    sigma = check_positive("sigma", sigma)
    k = check_positive("k", k)
    phi = check_positive("phi", phi)
    tau, eps = check_finite("tau", tau), check_finite("eps", eps)
    g = _gray(color).astype(np.float32) * np.float32(1.0 / 255.0)
    # D = G_sigma(g) - tau G_{k sigma}(g), (H, W) float32, in place (fresh 4 MB temporaries at
    # 512^2 cost more than the arithmetic); -tau b + a is bit-for-bit a - tau b
    u = _blur(g, k * sigma)
    u *= np.float32(-tau)
    u += _blur(g, sigma)
    u -= np.float32(eps)
    t = np.ones(u.shape, np.float32)
    below = u < 0  # tanh only where it is needed (its cost depends on the values)
    with np.errstate(over="ignore"):
        t[below] = 1.0 + np.tanh(np.float32(phi) * u[below])
    return np.rint(255.0 * np.clip(t, 0.0, 1.0)).astype(np.uint8)


def sketch_highpass(color: np.ndarray, *, sigma: float = 3.0) -> np.ndarray:
    """Line art by a per-channel high-pass (sketchKeras' pre-processing).

    Per channel c (float, 0..255): h_c = G_sigma(c) - c, positive where the pixel is darker than
    its surround (sketchKeras computes c - G_sigma(c), the light map; ink is its negative part).
    Values below 0.01 grey levels count as 0; ink = max_c h_c / max over all pixels and channels;
    sketch = 255 * (1 - clip(ink, 0, 1)). The strongest line is pure ink, weaker ones grey; a
    blank image (no positive h) is all paper.

    Shape: ``(H, W, 3) uint8`` -> ``(H, W) uint8`` (255 paper, 0 ink).
    """
    color = check_rgb("color", color)
    sigma = check_positive("sigma", sigma)
    # one channel at a time into reused (H, W) float32 buffers: fresh multi-MB temporaries cost
    # more in page faults than the arithmetic; channel order does not matter here
    k = _gaussian_kernel(sigma)
    c = np.empty(color.shape[:2], np.float32)
    h = np.empty_like(c)
    ink = np.full_like(c, -np.inf)
    for ch in range(3):
        c[:] = color[..., ch]
        cv2.sepFilter2D(c, cv2.CV_32F, k, k, dst=h, borderType=cv2.BORDER_REFLECT_101)
        h -= c  # G_sigma(c) - c
        np.maximum(ink, h, out=ink)
    np.putmask(ink, ink < _HP_TOL, 0.0)
    top = float(ink.max())
    if top <= 0.0:
        return np.full(color.shape[:2], 255, np.uint8)
    return np.rint(255.0 * (1.0 - np.clip(ink / np.float32(top), 0.0, 1.0))).astype(np.uint8)


def binarize_otsu(sketch: np.ndarray) -> tuple[np.ndarray, float | None]:
    """Otsu binarisation of a sketch -> (0/255 sketch, threshold); a constant sketch is kept.

    Shape: ``(H, W) uint8`` -> ``(H, W) uint8``.
    """
    if sketch.min() == sketch.max():  # Otsu on one grey level would turn paper into ink
        return sketch.copy(), None
    thr, out = cv2.threshold(sketch, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return out, float(thr)


def lighten_lines(sketch: np.ndarray, r: float) -> np.ndarray:
    """Line lightening s * r + 1 - r on s in [0, 1]: ink 0 -> 1 - r, paper stays 1.

    Shape: ``(H, W) uint8`` -> ``(H, W) uint8``.
    """
    s = sketch.astype(np.float32) * np.float32(r) + np.float32(255.0 * (1.0 - r))
    return np.clip(np.rint(s), 0, 255).astype(np.uint8)


def extract_sketch(
    color: np.ndarray, *, method: str = "xdog", rng: np.random.Generator, augment: bool = True, extractor=None
) -> tuple[np.ndarray, dict]:
    """Extract line art with a chosen (or drawn) extractor and record every draw.

    Draw order (fixed, so the stream is the same whatever the branch): the method (only for
    ``"mix"``, uniform over xdog/dilate/highpass); then, when ``augment``: the XDoG sigma from
    {0.3, 0.4, 0.5}, a uniform for Otsu binarisation (p = 0.25), and the lightening factor
    r ~ U(0.7, 1). Binarisation happens before lightening, so a binarised sketch gets grey
    lines of level 255 (1 - r). With ``augment=False`` XDoG uses sigma 0.4 and nothing else is
    drawn or applied.

    Parameters
    ----------
    color : (H, W, 3) uint8 RGB image.
    method : one of ``SKETCH_METHODS``; ``"learned"`` runs ``extractor``.
    rng : numpy Generator (the sample's).
    augment : draw and apply the augmentations.
    extractor : for ``"learned"``: a callable ``(H, W, 3) uint8 -> (H, W) uint8`` line art, e.g.
        ``s2pdata.stages.learned.load_extractor("anime2sketch:netG.pth")``.

    Returns
    -------
    sketch : (H, W) uint8, 255 paper, 0 ink.
    params : JSON-able dict with the same keys ``PARAM_KEYS`` for every method: ``method``
        (used), ``requested``, ``augment``, the extractor's parameters ``sigma, k, tau, phi,
        eps`` (None where the method has no such parameter), ``binarize`` (bool),
        ``otsu_threshold`` (float, None when not binarised) and ``lighten_r`` (float).

    Shape: ``(H, W, 3) uint8`` -> ``(H, W) uint8``.
    """
    color = check_rgb("color", color)
    check_choice("method", method, SKETCH_METHODS)
    check_rng(rng)
    if (method == "learned") != (extractor is not None):
        raise ValueError(
            "extractor must be given exactly when method is 'learned' (got method="
            f"{method!r}, extractor={extractor!r}); load one with s2pdata.stages.learned.load_extractor"
        )
    used = _BASE_METHODS[int(rng.integers(3))] if method == "mix" else method
    sigma, do_bin, r = 0.4, False, 1.0
    if augment:
        sigma = XDOG_SIGMAS[int(rng.integers(len(XDOG_SIGMAS)))]
        do_bin = bool(rng.random() < P_BINARIZE)
        r = float(rng.uniform(*LIGHTEN_RANGE))
    # every method records every key (None = not a parameter of this method): one json schema
    params: dict = {
        "method": used,
        "requested": method,
        "augment": bool(augment),
        "sigma": None,
        "k": None,
        "tau": None,
        "phi": None,
        "eps": None,
    }
    if used == "xdog":
        xp = dict(sigma=sigma, k=4.5, tau=0.95, phi=1e9, eps=0.0)
        s = sketch_xdog(color, **xp)
        params.update(xp)
    elif used == "dilate":
        s = sketch_dilate(color)
    elif used == "learned":
        s = extractor(color)
        if not (isinstance(s, np.ndarray) and s.dtype == np.uint8 and s.shape == color.shape[:2]):
            raise ValueError(
                f"extractor must return an (H, W) uint8 array of the colour's size {color.shape[:2]}, "
                f"got {getattr(s, 'dtype', type(s))} {getattr(s, 'shape', '')}"
            )
    else:
        s = sketch_highpass(color, sigma=3.0)
        params["sigma"] = 3.0
    thr = None
    if do_bin:
        s, thr = binarize_otsu(s)
    if r != 1.0:
        s = lighten_lines(s, r)
    params.update(binarize=do_bin, otsu_threshold=thr, lighten_r=r)
    return s, params


@register_warmup
def _warm() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    for m in _BASE_METHODS:
        extract_sketch(img, method=m, rng=np.random.default_rng(0))
