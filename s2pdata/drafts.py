"""Synthetic colour drafts (Two-stage Sketch Colorization, TOG 2018, §3.4-§3.7).

Consumes a colour image ``(H, W, 3) uint8`` (the ground truth) and a ``PatchPool`` of patches cut
across the dataset (rectangles and trapped-ball regions); produces a flawed colour draft
``(H, W, 3) uint8`` and a plain-JSON record of every parameter, from which ``replay_draft``
re-creates the identical draft.

A draft applies the paper's three corruptions together, in this fixed order:

1. **paste** (§3.4, wrong colours): several pool patches, each rotated, pasted at random positions;
2. **warp** (§3.5, blur and displacement): one random affine transform of the whole picture, so
   pasted patches are distorted together with the content around them;
3. **spray** (§3.6, colour bleeding): colours picked from the ground truth sprayed along straight
   soft strokes on top, so the strokes themselves stay straight and cross warped boundaries.

The pool's on-disk form is lossless and unpickle-free: ``patch_pool.json`` (per patch its file,
offset, shape, kind, source key and sha256) and the flat uint8 ``.npy`` buffers it names (per
patch its RGB bytes ``h*w*3`` then its mask bytes ``h*w``, 0/1): one ``patch_pool.npy`` from
``save``, or the builders' parts side by side after ``merge``. It loads memory-mapped, so build
workers share one copy of a large pool.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import numba

from s2pdata._check import check_array, check_rgb
from s2pdata._jit import JIT, register_warmup
from s2pdata.spray import SprayParams, apply_spray, make_spray_params
from s2pdata.warp import AffineParams, make_affine_params, warp_image

POOL_FORMAT = "s2pdata-patch-pool"
POOL_VERSION = 2
POOL_NPY = "patch_pool.npy"
POOL_JSON = "patch_pool.json"
DRAFT_VERSION = 1
KINDS = ("rect", "region")


@dataclass(frozen=True, eq=False)
class Patch:
    """One pool patch.

    Attributes
    ----------
    rgb : ndarray, (h, w, 3) uint8
        Pixels of the patch's bounding box (for a region, neighbours' pixels included).
    mask : ndarray, (h, w) bool
        Which pixels belong to the patch (all True for a rectangle).
    kind : {"rect", "region"}
    source_key : str
        Sample key of the image it was cut from (provenance).
    """

    rgb: np.ndarray
    mask: np.ndarray
    kind: str
    source_key: str

    def __post_init__(self):
        rgb = check_rgb("rgb", self.rgb)
        mask = check_array("mask", self.mask, dtype=np.bool_, ndim=2)
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} must equal rgb's (h, w) {rgb.shape[:2]}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.source_key, str):
            raise TypeError(f"source_key must be str, got {type(self.source_key).__name__}")


class PatchPool(Sequence):
    """An immutable sequence of ``Patch`` with a lossless, unpickle-free form on disk.

    ``sha256`` names the content: it hashes every patch's shape, kind, source key and the sha256 of
    its pixel and mask bytes, in order, so a draft's json can name the exact pool it was made with,
    however the pool's files are laid out.
    """

    def __init__(self, patches: Iterable[Patch] = (), *, _digests: Sequence[str] | None = None):
        self._patches = tuple(patches)
        for i, p in enumerate(self._patches):
            if not isinstance(p, Patch):
                raise TypeError(f"patches[{i}] must be a Patch, got {type(p).__name__}")
        self._digests = tuple(_digests) if _digests is not None else None
        self._sha: str | None = None

    def __len__(self) -> int:
        return len(self._patches)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return PatchPool(self._patches[i], _digests=self._digests[i] if self._digests else None)
        return self._patches[i]

    def __repr__(self) -> str:
        return f"PatchPool({len(self)} patches)"

    @property
    def nbytes(self) -> int:
        """Size of the pixel data (4 bytes per patch pixel)."""
        return sum(p.mask.size * 4 for p in self._patches)

    @property
    def digests(self) -> tuple[str, ...]:
        """Hex sha256 of each patch's RGB bytes followed by its mask bytes (0/1)."""
        if self._digests is None:
            self._digests = tuple(_patch_digest(*_patch_buffers(p)) for p in self._patches)
        return self._digests

    @property
    def sha256(self) -> str:
        """Hex sha256 of the canonical json list of (h, w, kind, source key, patch digest)."""
        if self._sha is None:
            self._sha = _pool_sha256([[*p.mask.shape, p.kind, p.source_key, d]
                                      for p, d in zip(self._patches, self.digests)])
        return self._sha

    def save(self, directory) -> Path:
        """Write ``patch_pool.npy`` + ``patch_pool.json`` into ``directory`` (json last, atomically).

        Pixels are streamed to disk and hashed in the same pass, never held twice in RAM. Returns
        the json's path.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / (POOL_NPY + ".tmp")
        digests, offset = [], 0
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                                     "shape": (self.nbytes,)})
            for p in self._patches:
                rgb, mask = _patch_buffers(p)
                f.write(rgb)
                f.write(mask)
                digests.append(_patch_digest(rgb, mask))
        os.replace(tmp, d / POOL_NPY)
        self._digests = tuple(digests)
        entries = []
        for p, digest in zip(self._patches, digests):
            entries.append({"file": 0, "offset": offset, "shape": list(p.mask.shape), "kind": p.kind,
                            "source_key": p.source_key, "sha256": digest})
            offset += p.mask.size * 4
        _write_index(d, [POOL_NPY], entries, self.sha256)
        return d / POOL_JSON

    @classmethod
    def merge(cls, parts, directory, *, limit: int | None = None) -> "PatchPool":
        """Join saved pools (in order; the first ``limit`` patches) into one pool in ``directory``.

        The parts' pixel files are moved, not copied, into ``directory`` (the parts are used up)
        and their patch digests reused, so a merge reads no pixels. The result equals
        ``PatchPool([p for d in parts for p in load(d)][:limit])``, sha256 included. Returns it
        memory-mapped.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        files, entries = [], []
        for part in map(Path, parts):
            if limit is not None and len(entries) >= limit:
                break
            meta = _read_index(part)
            if len(meta["files"]) != 1:
                raise ValueError(f"{part / POOL_JSON}: a part to merge must be a single-file pool (from save)")
            name = f"patch_pool-{len(files):05d}.npy"
            os.replace(part / meta["files"][0], d / name)
            take = meta["patches"][:None if limit is None else limit - len(entries)]
            entries += [{**e, "file": len(files)} for e in take]
            files.append(name)
        _write_index(d, files, entries, _pool_sha256([[*e["shape"], e["kind"], e["source_key"], e["sha256"]]
                                                      for e in entries]))
        return cls.load(d)

    @classmethod
    def load(cls, directory, *, mmap: bool = True, verify: bool = False) -> "PatchPool":
        """Read a pool written by ``save`` or ``merge``; ``mmap`` shares pages across processes.

        ``verify`` rehashes every patch and raises ``ValueError`` naming the first one that does
        not match its recorded digest (reads every byte). The .npy files are read with
        ``allow_pickle=False``.
        """
        d = Path(directory)
        meta = _read_index(d)
        try:
            return cls._from_index(d, meta, mmap=mmap, verify=verify)
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"{d / POOL_JSON} is malformed ({type(exc).__name__}: {exc}); rebuild the pool") from exc

    @classmethod
    def _from_index(cls, d: Path, meta: dict, *, mmap: bool, verify: bool) -> "PatchPool":
        bufs = []
        for name in meta["files"]:
            if Path(name).name != name:
                raise ValueError(f"{d / POOL_JSON}: file name {name!r} must be a plain name inside the pool folder")
            buf = np.load(d / name, mmap_mode="r" if mmap else None, allow_pickle=False)
            if buf.dtype != np.uint8 or buf.ndim != 1:
                raise ValueError(f"{d / name} must be a flat uint8 buffer, got {buf.dtype} {buf.shape}; "
                                 "rewrite the pool with PatchPool.save")
            bufs.append(buf)
        patches, digests = [], []
        for i, e in enumerate(meta["patches"]):
            (h, w), o, buf = e["shape"], e["offset"], bufs[e["file"]]
            if o < 0 or o + h * w * 4 > buf.size:
                raise ValueError(f"{d / POOL_JSON}: patch {i} at offset {o} shape {(h, w)} overruns "
                                 f"{meta['files'][e['file']]}")
            patch = Patch(rgb=buf[o:o + h * w * 3].reshape(h, w, 3),
                          mask=buf[o + h * w * 3:o + h * w * 4].reshape(h, w).view(np.bool_),
                          kind=e["kind"], source_key=e["source_key"])
            if verify and _patch_digest(*_patch_buffers(patch)) != e["sha256"]:
                raise ValueError(f"{d} is corrupt: patch {i}'s pixels do not match its recorded sha256")
            patches.append(patch)
            digests.append(e["sha256"])
        pool = cls(patches, _digests=digests)
        if pool.sha256 != meta["sha256"]:
            raise ValueError(f"{d} is corrupt: index sha256 {pool.sha256} != recorded {meta['sha256']}")
        return pool


def _patch_buffers(p: Patch) -> tuple[memoryview, memoryview]:
    return (np.ascontiguousarray(p.rgb).reshape(-1).data,
            np.ascontiguousarray(p.mask).view(np.uint8).reshape(-1).data)


def _patch_digest(rgb, mask) -> str:
    h = hashlib.sha256(rgb)
    h.update(mask)
    return h.hexdigest()


def _pool_sha256(rows: list[list]) -> str:
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def _read_index(d: Path) -> dict:
    meta = json.loads((d / POOL_JSON).read_text())
    if meta.get("format") != POOL_FORMAT or meta.get("version") != POOL_VERSION:
        raise ValueError(f"{d / POOL_JSON} is not a {POOL_FORMAT} v{POOL_VERSION} index "
                         f"(format={meta.get('format')!r}, version={meta.get('version')!r}); rebuild the pool")
    return meta


def _write_index(d: Path, files: list[str], entries: list[dict], sha256: str) -> None:
    """``patch_pool.json``, written atomically (the pixel files must already be in place)."""
    meta = {"format": POOL_FORMAT, "version": POOL_VERSION, "n_patches": len(entries),
            "nbytes": sum(e["shape"][0] * e["shape"][1] * 4 for e in entries), "sha256": sha256,
            "files": files, "patches": entries}
    tmp = d / (POOL_JSON + ".tmp")
    tmp.write_text(json.dumps(meta, separators=(",", ":")))
    os.replace(tmp, d / POOL_JSON)


def _int_pair(name: str, value) -> tuple[int, int]:
    try:
        lo, hi = int(value[0]), int(value[1])
    except (TypeError, ValueError, IndexError):
        raise TypeError(f"{name} must be an (int, int) pair, got {value!r}") from None
    if lo < 0 or lo > hi:
        raise ValueError(f"{name} must satisfy 0 <= low <= high, got {value!r}")
    return lo, hi


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}; use s2pdata._rng.sample_rng")
    return rng


def cut_rect_patch(color: np.ndarray, *, rng: np.random.Generator, side=(64, 256), key: str = "") -> Patch:
    """Cut a random axis-aligned rectangle (paper §3.4: side ~ U[64, 256] px).

    Height and width are drawn independently from U{lo..hi}, each clipped to the image, and the
    position uniformly among those that fit.

    Shape
    -----
    (H, W, 3) uint8 -> Patch with rgb (h, w, 3), mask all True
    """
    color = check_rgb("color", color)
    _check_rng(rng)
    lo, hi = _int_pair("side", side)
    if lo < 1:
        raise ValueError(f"side must be >= 1, got {side!r}")
    H, W = color.shape[:2]
    h = min(H, int(rng.integers(lo, hi + 1)))
    w = min(W, int(rng.integers(lo, hi + 1)))
    top = int(rng.integers(0, H - h + 1))
    left = int(rng.integers(0, W - w + 1))
    return Patch(rgb=color[top:top + h, left:left + w].copy(), mask=np.ones((h, w), np.bool_),
                 kind="rect", source_key=str(key))


def cut_region_patch(color: np.ndarray, labels: np.ndarray, *, rng: np.random.Generator,
                     min_area: int = 256, max_side: int = 256, key: str = "") -> Patch | None:
    """Cut one random trapped-ball region (paper §3.4 irregular patches).

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


def cut_region_patches(color: np.ndarray, labels: np.ndarray, n: int, *, rng: np.random.Generator,
                       min_area: int = 256, max_side: int = 256, key: str = "") -> list[Patch]:
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
    _check_rng(rng)
    if labels.min() < 0:
        raise ValueError(f"labels must be >= 0 (0 = no region), got min {labels.min()}")
    areas, boxes = _label_boxes(labels, int(labels.max()))
    ok = [lab for lab in range(1, len(areas))
          if areas[lab] > 0 and areas[lab] >= min_area and boxes[lab, 1] - boxes[lab, 0] <= max_side
          and boxes[lab, 3] - boxes[lab, 2] <= max_side]
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
    """Pixel count and bounding box [row0, row1, col0, col1) of every label 0..n, one pass."""
    h, w = labels.shape
    areas = np.zeros(n + 1, np.int64)
    boxes = np.empty((n + 1, 4), np.int64)
    boxes[:, 0] = h
    boxes[:, 1] = 0
    boxes[:, 2] = w
    boxes[:, 3] = 0
    for y in range(h):
        for x in range(w):
            lab = labels[y, x]
            areas[lab] += 1
            boxes[lab, 0] = min(boxes[lab, 0], y)
            boxes[lab, 1] = max(boxes[lab, 1], y + 1)
            boxes[lab, 2] = min(boxes[lab, 2], x)
            boxes[lab, 3] = max(boxes[lab, 3], x + 1)
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
    rgb = cv2.warpAffine(np.ascontiguousarray(patch.rgb), m, (ww, hh), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)  # dsize is (width, height)
    mask = cv2.warpAffine(np.ascontiguousarray(patch.mask).view(np.uint8), m, (ww, hh),
                          flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return rgb, mask.astype(np.bool_)


def _check_pool(pool) -> PatchPool:
    if pool is None:
        return PatchPool()
    if not isinstance(pool, PatchPool):
        raise TypeError(f"pool must be a PatchPool or None, got {type(pool).__name__}; "
                        "wrap patches with PatchPool(list_of_patches)")
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
        m = mask[r0 - row:r1 - row, c0 - col:c1 - col]
        dst = out[r0:r1, c0:c1]
        dst[m] = rgb[r0 - row:r1 - row, c0 - col:c1 - col][m]
    return out


def make_draft(color: np.ndarray, *, pool: PatchPool | None, rng: np.random.Generator, n_pastes=(2, 6),
               angle=(0.0, 360.0), scale=(1.0, 1.0), warp_sigma: float = 0.1, one_sided: bool = False,
               border: str = "reflect", n_sprays=(1, 3), spray_paths=(1, 3), spray_width=(64, 128),
               ref_size: int = 512) -> tuple[np.ndarray, dict]:
    """Synthesise a flawed colour draft from the ground truth (paper §3.4-§3.7).

    Order: paste ``n_pastes ~ U{lo..hi}`` random pool patches (uniform index, angle ~ U[angle),
    scale ~ U[scale], centre uniform over the image), then warp the whole picture with
    ``make_affine_params(sigma=warp_sigma)``, then ``n_sprays ~ U{lo..hi}`` colour sprays, each
    with its own colour picked from ``color`` (see ``make_spray_params``). An empty or None pool
    skips pasting. Scale 1 assumes the pool was cut from images of the draft's resolution.

    Parameters
    ----------
    color : ndarray, (H, W, 3) uint8
    pool : PatchPool or None
    rng : numpy.random.Generator

    Returns
    -------
    draft : ndarray, (H, W, 3) uint8
    params : dict
        Plain JSON: version, pool sha256 and size, pastes (patch, source_key, angle, scale, row,
        col), warp (theta, border), sprays (colour, paths, widths, softness, opacity).
        ``replay_draft(color, pool, params)`` rebuilds ``draft`` byte for byte.

    Shape
    -----
    (H, W, 3) uint8 -> (H, W, 3) uint8
    """
    color = check_rgb("color", color)
    pool = _check_pool(pool)
    _check_rng(rng)
    lo_p, hi_p = _int_pair("n_pastes", n_pastes)
    lo_s, hi_s = _int_pair("n_sprays", n_sprays)
    H, W = color.shape[:2]
    pastes = []
    if len(pool):
        for _ in range(int(rng.integers(lo_p, hi_p + 1))):
            idx = int(rng.integers(len(pool)))
            ang = float(rng.uniform(angle[0], angle[1]))
            sc = float(rng.uniform(scale[0], scale[1]))
            rgb_shape = _rotated_shape(pool[idx].mask.shape, ang, sc)
            row = int(rng.integers(0, H)) - rgb_shape[0] // 2  # canvas centre uniform over the image
            col = int(rng.integers(0, W)) - rgb_shape[1] // 2
            pastes.append({"patch": idx, "source_key": pool[idx].source_key, "kind": pool[idx].kind,
                           "angle": ang, "scale": sc, "row": row, "col": col})
    theta = make_affine_params(color.shape, rng=rng, sigma=warp_sigma, one_sided=one_sided)
    sprays = [make_spray_params(color, rng=rng, n_paths=spray_paths, width=spray_width, ref_size=ref_size)
              for _ in range(int(rng.integers(lo_s, hi_s + 1)))]
    params = {"version": DRAFT_VERSION, "order": ["paste", "warp", "spray"],
              "pool": {"sha256": pool.sha256, "size": len(pool)}, "pastes": pastes,
              "warp": {"theta": list(theta.theta), "border": border},
              "sprays": [s.to_json() for s in sprays]}
    return _render(color, pool, params), params


def _render(color: np.ndarray, pool: PatchPool, params: dict) -> np.ndarray:
    """Apply a draft record: paste, warp, spray."""
    pastes = [(p["patch"], p["angle"], p["scale"], p["row"], p["col"]) for p in params["pastes"]]
    out = paste_patches(color, pool, pastes) if pastes else color.copy()
    out = warp_image(out, AffineParams.from_json(params["warp"]), border=params["warp"]["border"])
    for s in params["sprays"]:
        out = apply_spray(out, SprayParams.from_json(s))
    return out


def replay_draft(color: np.ndarray, pool: PatchPool | None, params: dict) -> np.ndarray:
    """Re-create a draft from its ``make_draft`` record, byte for byte.

    Raises ``ValueError`` when ``pool`` is not the pool the record names (size or sha256) or the
    record's version is unknown.

    Shape
    -----
    (H, W, 3) uint8 -> (H, W, 3) uint8
    """
    color = check_rgb("color", color)
    pool = _check_pool(pool)
    if not isinstance(params, dict) or params.get("version") != DRAFT_VERSION:
        raise ValueError(f"params must be a make_draft record with version {DRAFT_VERSION}, "
                         f"got {str(params)[:120]}")
    rec = params["pool"]
    if params["pastes"] and (rec["size"] != len(pool) or rec["sha256"] != pool.sha256):
        raise ValueError(f"pool does not match the draft record: record has {rec['size']} patches, "
                         f"sha256 {rec['sha256'][:12]}..., got {len(pool)} patches, sha256 "
                         f"{pool.sha256[:12]}...; load the pool the draft was made with")
    return _render(color, pool, params)
