"""Built-in demo pictures: procedurally drawn cel-shaded illustrations, no download needed.

Produces, for an index and a run seed, one picture in the style later stages expect from anime
art: flat fills, two-tone cel shading, dark anti-aliased outlines 1-4 px wide. Each picture has a
background (flat, a soft two-colour gradient, or transparent), a few outlined props, and one or
two figures (hair mass, head with eyes and a pointed chin, neck, clothed torso, hair strands).
Palettes are random but harmonious (analogous, complementary, triadic or split-complementary
hues in HSV). Sizes vary: short side 256-768 px, aspect W/H 0.6-1.8. About one in four is an
RGBA PNG with a transparent background; the rest are JPEG (quality 90-95) or RGB PNG.

Everything is drawn from ``sample_rng(seed, demo_key(index), "demo")``: the same (seed, index)
gives the same pixels and the same bytes in any process.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from s2pdata._rng import sample_rng

_OPAQUE = 255
# cv2 sub-pixel precision for polygon vertices: coordinates are multiplied by 2**_SHIFT
_SHIFT = 4


def demo_key(index: int) -> str:
    """Sample key of demo picture ``index``: ``"demo-000042"`` (no dots, sorts by index)."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    return f"demo-{int(index):06d}"


def draw_demo(index: int, *, seed: int = 0) -> np.ndarray:
    """Draw demo picture ``index`` of run ``seed``.

    Parameters
    ----------
    index : int
        Non-negative picture number.
    seed : int
        Run seed; with ``index`` it decides every pixel.

    Returns
    -------
    np.ndarray
        ``(H, W, 3) uint8`` RGB, or ``(H, W, 4) uint8`` RGBA (transparent background).

    Shape
    -----
    () -> (H, W, 3|4) with min(H, W) in [256, 768] and W / H in [0.6, 1.8] (up to rounding).
    """
    return _render(index, seed)[0]


def demo_bytes(index: int, *, seed: int = 0) -> tuple[bytes, str]:
    """Demo picture ``index`` encoded as a file: ``(bytes, "png" | "jpg")``, deterministic."""
    image, fmt, quality = _render(index, seed)
    if image.shape[2] == 4:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)  # cv2 encodes BGRA
    else:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # cv2 encodes BGR
    if fmt == "jpg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    else:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - cv2 encoders do not fail on uint8 images
        raise RuntimeError(f"cv2 could not encode demo picture {index} as {fmt}")
    return buf.tobytes(), fmt


# ---------------------------------------------------------------------------------------------
# rendering


def _render(index: int, seed: int) -> tuple[np.ndarray, str, int]:
    """(image, format, jpeg quality) of one demo picture."""
    rng = sample_rng(int(seed), demo_key(index), "demo")
    u = rng.random()
    fmt, transparent = ("png", True) if u < 0.25 else (("jpg", False) if u < 0.65 else ("png", False))
    quality = int(rng.integers(90, 96))
    short = int(rng.integers(256, 769))
    aspect = float(rng.uniform(0.6, 1.8))  # W / H
    h, w = (short, int(round(short * aspect))) if aspect >= 1 else (int(round(short / aspect)), short)
    pal = _palette(rng)
    light = rng.uniform(0, 2 * np.pi)
    style = _Style(pal, np.array([np.sin(light), np.cos(light)]), int(rng.integers(1, 5)))
    canvas = _background(rng, h, w, pal, transparent)
    for _ in range(int(rng.integers(2, 7))):
        _prop(canvas, rng, style)
    n_fig = 0 if rng.random() < 0.08 else (1 if rng.random() < 0.7 else 2)
    slots = np.sort(rng.uniform(0.2, 0.8, n_fig)) if n_fig == 2 else [rng.uniform(0.3, 0.7)]
    for i in range(n_fig):
        _figure(canvas, rng, style, slot=float(slots[i]), n_fig=n_fig)
    image = canvas if transparent else np.ascontiguousarray(canvas[..., :3])
    return image, fmt, quality


class _Style:
    """Per-picture drawing choices shared by every shape."""

    def __init__(self, pal: dict, light: np.ndarray, width: int):
        self.pal = pal
        self.light = light  # unit (row, col) vector pointing towards the light
        self.width = width  # outline width in px, 1-4


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)), _OPAQUE)


def _shade(color: tuple) -> tuple[int, int, int, int]:
    """Cel shadow tone: darker, a little more saturated, hue nudged towards violet."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in color[:3]))
    target = 0.72  # violet: anime shadows lean cool
    dh = ((target - h + 0.5) % 1.0) - 0.5
    return _rgb(h + 0.12 * dh, s * 1.15 + 0.08, v * 0.74)


def _palette(rng: np.random.Generator) -> dict:
    """Harmonious random palette in HSV: hair, eyes, cloth, accent, background, outline, skin."""
    h0 = rng.random()
    scheme = rng.integers(4)
    offsets = [
        (0.0, 0.08, -0.08, 0.15),  # analogous
        (0.0, 0.5, 0.04, 0.46),  # complementary
        (0.0, 1 / 3, 2 / 3, 0.05),  # triadic
        (0.0, 0.42, 0.58, 0.08),
    ][scheme]  # split complementary
    hue = [h0 + o for o in offsets]
    order = rng.permutation(4)
    skin_v = rng.uniform(0.93, 1.0)
    return {
        "hair": _rgb(hue[order[0]], rng.uniform(0.3, 0.85), rng.uniform(0.45, 0.97)),
        "eye": _rgb(hue[order[1]], rng.uniform(0.55, 0.95), rng.uniform(0.5, 0.9)),
        "cloth": _rgb(hue[order[2]], rng.uniform(0.25, 0.8), rng.uniform(0.4, 0.97)),
        "accent": _rgb(hue[order[3]], rng.uniform(0.5, 0.9), rng.uniform(0.7, 1.0)),
        "bg": _rgb(hue[order[3]] + 0.5, rng.uniform(0.04, 0.3), rng.uniform(0.82, 1.0)),
        "bg2": _rgb(hue[order[0]] + 0.5, rng.uniform(0.1, 0.4), rng.uniform(0.75, 0.97)),
        "prop": _rgb(hue[order[1]] + 0.5, rng.uniform(0.2, 0.6), rng.uniform(0.6, 0.95)),
        "line": _rgb(h0, rng.uniform(0.2, 0.6), rng.uniform(0.06, 0.22)),
        "skin": _rgb(rng.uniform(0.03, 0.09), rng.uniform(0.08, 0.28), skin_v),
        "white": _rgb(0.6, rng.uniform(0.0, 0.06), 1.0),
    }


def _background(rng, h: int, w: int, pal: dict, transparent: bool) -> np.ndarray:
    """(h, w, 4) canvas: transparent, flat, or a soft two-colour gradient along a random axis."""
    canvas = np.empty((h, w, 4), np.uint8)
    if transparent:
        canvas[:] = (255, 255, 255, 0)  # white under alpha 0, so AA edges blend towards white
        return canvas
    c1 = np.array(pal["bg"], np.float32)
    if rng.random() < 0.45:
        canvas[:] = c1.astype(np.uint8)
        return canvas
    c2 = np.array(pal["bg2"], np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    rows = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None] * np.sin(ang)
    cols = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :] * np.cos(ang)
    t = np.clip((rows + cols) * 1.4 + 0.5, 0, 1)[..., None]  # (h, w, 1)
    canvas[:] = (c1 * (1 - t) + c2 * t + 0.5).astype(np.uint8)
    return canvas


def _xy(points: np.ndarray) -> np.ndarray:
    """(N, 2) float (row, col) -> (N, 1, 2) int32 (x, y) scaled by 2**_SHIFT for cv2."""
    return np.round(points[:, ::-1] * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _paint(
    canvas: np.ndarray,
    pts: np.ndarray,
    fill,
    style: _Style,
    *,
    depth: float = 0.0,
    width: int | None = None,
    clip: np.ndarray | None = None,
    closed: bool = True,
    outline=True,
) -> np.ndarray | None:
    """Fill polygon ``pts`` (N, 2 row/col) with a cel shadow ``depth`` px deep, then outline it.

    The shadow is the part of the shape that a copy shifted ``depth`` px towards the light does
    not cover. ``clip`` (full-size bool) restricts fill and shadow. Returns the shape's full-size
    bool mask when ``clip`` tracking is needed (always computed; cheap on the bounding box).
    """
    h, w = canvas.shape[:2]
    pad = depth + 4
    r0 = max(int(np.floor(pts[:, 0].min() - pad)), 0)
    c0 = max(int(np.floor(pts[:, 1].min() - pad)), 0)
    r1 = min(int(np.ceil(pts[:, 0].max() + pad)) + 1, h)
    c1 = min(int(np.ceil(pts[:, 1].max() + pad)) + 1, w)
    if r0 >= r1 or c0 >= c1:
        return None
    local = pts - (r0, c0)
    mask = np.zeros((r1 - r0, c1 - c0), np.uint8)
    cv2.fillPoly(mask, [_xy(local)], 1, cv2.LINE_8, _SHIFT)
    m = mask.view(bool)
    if clip is not None:
        m &= clip[r0:r1, c0:c1]
    roi = canvas[r0:r1, c0:c1]
    roi[m] = fill
    if depth > 0.5:
        lit = np.zeros_like(mask)
        cv2.fillPoly(lit, [_xy(local + style.light * depth)], 1, cv2.LINE_8, _SHIFT)
        roi[m & ~lit.view(bool)] = _shade(fill)
    if outline:
        lw = style.width if width is None else width
        cv2.polylines(canvas, [_xy(pts)], closed, style.pal["line"], max(1, lw), cv2.LINE_AA, _SHIFT)
    full = np.zeros((h, w), bool)
    full[r0:r1, c0:c1] = m
    return full


def _ellipse(center, axes, angle: float = 0.0, n: int = 48) -> np.ndarray:
    """(n, 2) (row, col) points of an ellipse; ``axes`` = (row radius, col radius)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r, c = axes[0] * np.sin(t), axes[1] * np.cos(t)
    ca, sa = np.cos(angle), np.sin(angle)
    return np.stack([center[0] + r * ca + c * sa, center[1] - r * sa + c * ca], axis=1)


def _bezier(p0, p1, p2, n: int = 16) -> np.ndarray:
    """(n, 2) points of the quadratic Bezier curve p0 -> p2 pulled towards p1."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _strand(p0, p1, p2, width: float, taper: float = 0.8) -> np.ndarray:
    """Closed outline of a tapered thick curve (a lock of hair): wide at p0, pointed at p2."""
    c = _bezier(p0, p1, p2, 18)
    d = np.gradient(c, axis=0)
    nrm = np.stack([-d[:, 1], d[:, 0]], axis=1)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-9
    half = 0.5 * width * (1 - np.linspace(0, 1, len(c))) ** taper + 0.3
    return np.concatenate([c + nrm * half[:, None], (c - nrm * half[:, None])[::-1]])


def _prop(canvas: np.ndarray, rng, style: _Style) -> None:
    """One background object: a bubble, a star, a soft blob or a tilted panel."""
    h, w = canvas.shape[:2]
    s = min(h, w)
    center = (rng.uniform(0, h), rng.uniform(0, w))
    size = rng.uniform(0.05, 0.2) * s
    color = style.pal["prop"] if rng.random() < 0.6 else style.pal["accent"]
    kind = rng.integers(4)
    if kind == 0:
        pts = _ellipse(center, (size, size))
    elif kind == 1:
        k = int(rng.integers(4, 7))
        t = np.linspace(0, 2 * np.pi, 2 * k, endpoint=False) + rng.uniform(0, np.pi)
        rad = np.where(np.arange(2 * k) % 2 == 0, size, size * rng.uniform(0.4, 0.6))
        pts = np.stack([center[0] + rad * np.sin(t), center[1] + rad * np.cos(t)], axis=1)
    elif kind == 2:
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        wobble = sum(rng.uniform(0, 0.15) * np.cos(f * t + rng.uniform(0, 6.3)) for f in (2, 3, 5))
        rad = size * (1 + wobble)
        pts = np.stack([center[0] + rad * np.sin(t), center[1] + rad * np.cos(t)], axis=1)
    else:
        a = rng.uniform(-0.4, 0.4)
        hr, hc = size * rng.uniform(0.5, 1.5), size * rng.uniform(0.5, 1.5)
        corners = np.array([[-hr, -hc], [-hr, hc], [hr, hc], [hr, -hc]])
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        pts = corners @ rot.T + center
    _paint(canvas, pts, color, style, depth=0.25 * size, width=max(1, style.width - 1))


class _Bust:
    """Where one figure stands and its colours: head radius ``R``, head centre (``cy``, ``cx``)."""

    def __init__(self, canvas: np.ndarray, rng, style: _Style, slot: float, n_fig: int):
        h, w = canvas.shape[:2]
        pal = style.pal
        self.R = min(h, w) * rng.uniform(0.13, 0.22) / (1.25 if n_fig == 2 else 1.0)
        self.cx = w * slot
        self.cy = h * rng.uniform(0.3, 0.5)
        self.hair, self.skin, self.cloth = pal["hair"], pal["skin"], pal["cloth"]
        if n_fig == 2 and rng.random() < 0.5:  # give the second figure its own colours
            self.hair = _rgb(rng.random(), rng.uniform(0.3, 0.8), rng.uniform(0.45, 0.95))
            self.cloth = _rgb(rng.random(), rng.uniform(0.25, 0.8), rng.uniform(0.4, 0.95))
        self.long_hair = rng.random() < 0.6


def _figure(canvas: np.ndarray, rng, style: _Style, *, slot: float, n_fig: int) -> None:
    """A bust: back hair, torso with collar, neck, head with a pointed chin, eyes, mouth, bangs.

    Each part draws its random numbers in turn, so the order of the calls is the picture's.
    """
    b = _Bust(canvas, rng, style, slot, n_fig)
    _back_hair(canvas, rng, style, b)
    _torso(canvas, rng, style, b)
    _head(canvas, style, b)
    _face(canvas, rng, style, b)
    _bangs(canvas, rng, style, b)
    if rng.random() < 0.4:
        _ribbon(canvas, rng, style, b)


def _back_hair(canvas: np.ndarray, rng, style: _Style, b: _Bust) -> None:
    """A mass behind the head; long hair reaches below the shoulders."""
    R, cx, cy = b.R, b.cx, b.cy
    if b.long_hair:
        drop = R * rng.uniform(1.8, 3.2)
        arc = _ellipse((cy, cx), (1.15 * R, 1.2 * R), n=48)
        arc = arc[arc[:, 0] <= cy]  # upper half
        ends = np.array([[cy + drop, cx + 1.35 * R], [cy + drop + 0.3 * R, cx], [cy + drop, cx - 1.35 * R]])
        back = _ellipse_hull_order(np.concatenate([arc, ends]), (cy + 0.3 * R, cx))
    else:
        back = _ellipse((cy + 0.05 * R, cx), (1.12 * R, 1.18 * R))
    _paint(canvas, back, b.hair, style, depth=0.25 * R)


def _torso(canvas: np.ndarray, rng, style: _Style, b: _Bust) -> None:
    """Neck, shoulders running off the bottom of the picture, a collar and cloth folds."""
    R, cx, cy = b.R, b.cx, b.cy
    sy = cy + 1.45 * R  # shoulder line
    half = R * rng.uniform(1.3, 1.9)
    bottom = canvas.shape[0] + 10.0
    torso = np.array(
        [
            [sy + 0.35 * R, cx - half],
            [sy, cx - 0.55 * half],
            [sy - 0.05 * R, cx],
            [sy, cx + 0.55 * half],
            [sy + 0.35 * R, cx + half],
            [bottom, cx + half * 1.15],
            [bottom, cx - half * 1.15],
        ]
    )
    neck = np.array(
        [
            [cy + 0.7 * R, cx - 0.22 * R],
            [cy + 0.7 * R, cx + 0.22 * R],
            [sy + 0.15 * R, cx + 0.26 * R],
            [sy + 0.15 * R, cx - 0.26 * R],
        ]
    )
    _paint(canvas, neck, b.skin, style, depth=0.3 * R)
    _paint(canvas, torso, b.cloth, style, depth=0.35 * R)
    collar = np.array(
        [
            [sy - 0.02 * R, cx - 0.45 * R],
            [sy + 0.7 * R, cx],
            [sy - 0.02 * R, cx + 0.45 * R],
            [sy + 0.1 * R, cx + 0.1 * R],
            [sy + 0.1 * R, cx - 0.1 * R],
        ]
    )
    colour = style.pal["white"] if rng.random() < 0.5 else style.pal["accent"]
    _paint(canvas, collar, colour, style, depth=0.1 * R, width=max(1, style.width - 1))
    for _ in range(int(rng.integers(1, 4))):  # cloth folds: thin open strokes
        x0 = cx + rng.uniform(-0.9, 0.9) * half
        fold = _bezier(
            (sy + rng.uniform(0.6, 1.0) * R, x0),
            (sy + 1.3 * R, x0 + rng.uniform(-0.3, 0.3) * R),
            (sy + rng.uniform(1.6, 2.4) * R, x0 + rng.uniform(-0.4, 0.4) * R),
            10,
        )
        _stroke(canvas, fold, style, max(1, style.width - 1))


def _stroke(canvas: np.ndarray, pts: np.ndarray, style: _Style, width: int) -> None:
    """An open anti-aliased line through ``pts`` in the outline colour."""
    cv2.polylines(canvas, [_xy(pts)], False, style.pal["line"], width, cv2.LINE_AA, _SHIFT)


def _head(canvas: np.ndarray, style: _Style, b: _Bust) -> None:
    """Round cranium, jaw pulled in to a pointed chin."""
    R, cx, cy = b.R, b.cx, b.cy
    head = _ellipse((cy, cx), (R, 0.95 * R), n=64)
    below = np.clip((head[:, 0] - cy) / R, 0, 1)
    head[:, 1] = cx + (head[:, 1] - cx) * (1 - 0.45 * below**1.6)
    head[:, 0] = cy + (head[:, 0] - cy) * (1 + 0.18 * below)
    _paint(canvas, head, b.skin, style, depth=0.18 * R)


def _face(canvas: np.ndarray, rng, style: _Style, b: _Bust) -> None:
    """Two eyes looking the same way, brows and a small mouth."""
    R, cx, cy = b.R, b.cx, b.cy
    look = rng.uniform(-0.12, 0.12) * R
    ey = cy + 0.22 * R
    ew, eh = 0.2 * R * rng.uniform(0.9, 1.2), 0.26 * R * rng.uniform(0.9, 1.25)
    for side in (-1, 1):
        _eye(canvas, style, (ey, cx + side * 0.42 * R + look * 0.5), (eh, ew), look, side)
    mouth = _bezier(
        (cy + 0.66 * R, cx - 0.1 * R + look * 0.4),
        (cy + 0.72 * R, cx + look * 0.4),
        (cy + 0.66 * R, cx + 0.1 * R + look * 0.4),
        8,
    )
    _stroke(canvas, mouth, style, max(1, style.width - 1))


def _eye(canvas: np.ndarray, style: _Style, centre, size, look: float, side: int) -> None:
    """White, iris clipped to the white, pupil, highlight, heavy upper lash line and brow."""
    (ey, ex), (eh, ew) = centre, size
    pal, lw = style.pal, style.width
    white = _paint(canvas, _ellipse((ey, ex), (eh, ew)), pal["white"], style, width=max(1, lw - 1))
    if white is None:
        return
    ix = ex + look * 0.6
    inside = dict(clip=white, outline=False)
    _paint(canvas, _ellipse((ey + 0.12 * eh, ix), (0.9 * eh, 0.85 * ew)), pal["eye"], style, depth=0.5 * eh, **inside)
    _paint(canvas, _ellipse((ey + 0.2 * eh, ix), (0.4 * eh, 0.38 * ew)), _shade(_shade(pal["eye"])), style, **inside)
    glint = _ellipse((ey - 0.3 * eh, ix - 0.35 * ew), (0.22 * eh, 0.22 * eh))
    _paint(canvas, glint, (255, 255, 255, 255), style, **inside)
    lash = _bezier(
        (ey - 0.25 * eh, ex - side * 1.25 * ew), (ey - 1.45 * eh, ex), (ey - 0.6 * eh, ex + side * 1.3 * ew), 12
    )
    _stroke(canvas, lash, style, lw + 2)
    brow = _bezier((ey - 1.9 * eh, ex - 0.9 * ew), (ey - 2.3 * eh, ex), (ey - 2.0 * eh, ex + 0.9 * ew), 8)
    _stroke(canvas, brow, style, max(1, lw - 1))


def _bangs(canvas: np.ndarray, rng, style: _Style, b: _Bust) -> None:
    """Hair cap and tapered locks hanging from the crown over the forehead; side locks for long hair."""
    R, cx, cy = b.R, b.cx, b.cy
    cap = _ellipse((cy - 0.08 * R, cx), (1.08 * R, 1.05 * R), n=40)
    cap = cap[cap[:, 0] <= cy - 0.25 * R]
    cap = _ellipse_hull_order(cap, (cy, cx))
    _paint(canvas, cap, b.hair, style, depth=0.12 * R)
    n_locks = int(rng.integers(4, 8))
    for k in range(n_locks):
        a = np.pi + np.pi * (k + 0.5 + rng.uniform(-0.3, 0.3)) / n_locks  # along the crown
        root = (cy - 0.35 * R + 0.6 * R * np.sin(a) * 0.6, cx + 0.85 * R * np.cos(a))
        tip = (
            cy + R * rng.uniform(-0.05, 0.12) + (0.6 * R if abs(np.cos(a)) > 0.8 else 0.0),
            root[1] + R * rng.uniform(-0.25, 0.25) + 0.15 * R * np.cos(a),
        )
        bend = ((root[0] + tip[0]) / 2, (root[1] + tip[1]) / 2 + R * rng.uniform(-0.3, 0.3))
        _paint(canvas, _strand(root, bend, tip, R * rng.uniform(0.3, 0.5)), b.hair, style, depth=0.08 * R)
    if b.long_hair:  # side locks framing the face
        for side in (-1, 1):
            root = (cy - 0.3 * R, cx + side * 0.85 * R)
            tip = (cy + R * rng.uniform(1.3, 2.4), cx + side * R * rng.uniform(0.9, 1.3))
            bend = (cy + 0.6 * R, cx + side * 1.15 * R)
            _paint(canvas, _strand(root, bend, tip, 0.38 * R, taper=0.6), b.hair, style, depth=0.1 * R)


def _ribbon(canvas: np.ndarray, rng, style: _Style, b: _Bust) -> None:
    """A bow of two triangles and a knot on one side of the head."""
    R = b.R
    side = 1 if rng.random() < 0.5 else -1
    knot = np.array([b.cy - 0.85 * R, b.cx + side * 0.7 * R])
    for lobe in (-1, 1):
        tri = np.array([knot, knot + (-0.35 * R, lobe * 0.45 * R), knot + (0.3 * R, lobe * 0.5 * R)])
        _paint(canvas, tri, style.pal["accent"], style, depth=0.12 * R)
    _paint(canvas, _ellipse(tuple(knot), (0.11 * R, 0.11 * R), n=16), style.pal["accent"], style)


def _ellipse_hull_order(pts: np.ndarray, center) -> np.ndarray:
    """Order points by angle around ``center`` so they form a simple polygon."""
    ang = np.arctan2(pts[:, 0] - center[0], pts[:, 1] - center[1])
    return pts[np.argsort(ang, kind="stable")]
