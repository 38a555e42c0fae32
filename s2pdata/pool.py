"""The patch pool: the patches draft synthesis pastes, and their on-disk form.

Consumes ``Patch`` records (an RGB bounding box, its mask, kind and source key) cut across the
dataset by ``s2pdata.synth.pool_patches``; produces a folder that build workers and loaders open
memory-mapped, so they share one copy of a large pool.

The on-disk form is lossless and unpickle-free: ``patch_pool.json`` (per patch its file, offset,
shape, kind, source key and sha256) and the flat uint8 ``.npy`` buffers it names (per patch its
RGB bytes ``h*w*3`` then its mask bytes ``h*w``, 0/1): one ``patch_pool.npy`` from ``save``, or
the builders' parts side by side after ``merge``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2pdata._check import check_array, check_rgb
from s2pdata._safeio import atomic_write, new_temp_file
from s2pdata.shards import POOL_JSON, POOL_NPY, pool_part_name

POOL_FORMAT = "s2pdata-patch-pool"
POOL_VERSION = 2
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
            self._sha = _pool_sha256(
                [[*p.mask.shape, p.kind, p.source_key, d] for p, d in zip(self._patches, self.digests)]
            )
        return self._sha

    def save(self, directory) -> Path:
        """Write ``patch_pool.npy`` + ``patch_pool.json`` into ``directory`` (json last, atomically).

        Pixels are streamed to disk and hashed in the same pass, never held twice in RAM. Returns
        the json's path.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp, f = new_temp_file(d / POOL_NPY)
        digests, offset = [], 0
        with f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (self.nbytes,)})
            for p in self._patches:
                rgb, mask = _patch_buffers(p)
                f.write(rgb)
                f.write(mask)
                digests.append(_patch_digest(rgb, mask))
        os.replace(tmp, d / POOL_NPY)
        self._digests = tuple(digests)
        entries = []
        for p, digest in zip(self._patches, digests):
            entries.append(
                {
                    "file": 0,
                    "offset": offset,
                    "shape": list(p.mask.shape),
                    "kind": p.kind,
                    "source_key": p.source_key,
                    "sha256": digest,
                }
            )
            offset += p.mask.size * 4
        _write_index(d, [POOL_NPY], entries, self.sha256)
        return d / POOL_JSON

    @classmethod
    def merge(cls, parts, directory, *, limit: int | None = None) -> PatchPool:
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
            name = pool_part_name(len(files))
            os.replace(part / meta["files"][0], d / name)
            take = meta["patches"][: None if limit is None else limit - len(entries)]
            entries += [{**e, "file": len(files)} for e in take]
            files.append(name)
        _write_index(
            d, files, entries, _pool_sha256([[*e["shape"], e["kind"], e["source_key"], e["sha256"]] for e in entries])
        )
        return cls.load(d)

    @classmethod
    def load(cls, directory, *, mmap: bool = True, verify: bool = False) -> PatchPool:
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
    def _from_index(cls, d: Path, meta: dict, *, mmap: bool, verify: bool) -> PatchPool:
        bufs = []
        for name in meta["files"]:
            if Path(name).name != name:
                raise ValueError(f"{d / POOL_JSON}: file name {name!r} must be a plain name inside the pool folder")
            buf = np.load(d / name, mmap_mode="r" if mmap else None, allow_pickle=False)
            if buf.dtype != np.uint8 or buf.ndim != 1:
                raise ValueError(
                    f"{d / name} must be a flat uint8 buffer, got {buf.dtype} {buf.shape}; "
                    "rewrite the pool with PatchPool.save"
                )
            bufs.append(buf)
        patches, digests = [], []
        for i, e in enumerate(meta["patches"]):
            (h, w), o, buf = e["shape"], e["offset"], bufs[e["file"]]
            if o < 0 or o + h * w * 4 > buf.size:
                raise ValueError(
                    f"{d / POOL_JSON}: patch {i} at offset {o} shape {(h, w)} overruns {meta['files'][e['file']]}"
                )
            patch = Patch(
                rgb=buf[o : o + h * w * 3].reshape(h, w, 3),
                mask=buf[o + h * w * 3 : o + h * w * 4].reshape(h, w).view(np.bool_),
                kind=e["kind"],
                source_key=e["source_key"],
            )
            if verify and _patch_digest(*_patch_buffers(patch)) != e["sha256"]:
                raise ValueError(f"{d} is corrupt: patch {i}'s pixels do not match its recorded sha256")
            patches.append(patch)
            digests.append(e["sha256"])
        pool = cls(patches, _digests=digests)
        if pool.sha256 != meta["sha256"]:
            raise ValueError(f"{d} is corrupt: index sha256 {pool.sha256} != recorded {meta['sha256']}")
        return pool


def _patch_buffers(p: Patch) -> tuple[memoryview, memoryview]:
    return (np.ascontiguousarray(p.rgb).reshape(-1).data, np.ascontiguousarray(p.mask).view(np.uint8).reshape(-1).data)


def _patch_digest(rgb, mask) -> str:
    h = hashlib.sha256(rgb)
    h.update(mask)
    return h.hexdigest()


def _pool_sha256(rows: list[list]) -> str:
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def _read_index(d: Path) -> dict:
    try:
        meta = json.loads((d / POOL_JSON).read_text())
    except (ValueError, RecursionError) as exc:  # RecursionError: brackets nested past the parser's depth
        raise ValueError(f"{d / POOL_JSON} is not valid JSON ({type(exc).__name__}); rebuild the pool") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{d / POOL_JSON} holds a JSON {type(meta).__name__}, not an object; rebuild the pool")
    if meta.get("format") != POOL_FORMAT or meta.get("version") != POOL_VERSION:
        raise ValueError(
            f"{d / POOL_JSON} is not a {POOL_FORMAT} v{POOL_VERSION} index "
            f"(format={meta.get('format')!r}, version={meta.get('version')!r}); rebuild the pool"
        )
    return meta


def _write_index(d: Path, files: list[str], entries: list[dict], sha256: str) -> None:
    """``patch_pool.json``, written atomically (the pixel files must already be in place)."""
    meta = {
        "format": POOL_FORMAT,
        "version": POOL_VERSION,
        "n_patches": len(entries),
        "nbytes": sum(e["shape"][0] * e["shape"][1] * 4 for e in entries),
        "sha256": sha256,
        "files": files,
        "patches": entries,
    }
    atomic_write(d / POOL_JSON, json.dumps(meta, separators=(",", ":")).encode())
