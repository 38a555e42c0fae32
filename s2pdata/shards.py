"""The shard format: sample schema, field codecs, atomic tar writer, stats, manifest, resume scan.

Consumes a sample dict of numpy arrays (from ``synth``) and produces WebDataset tar members;
reading goes the other way. It decides which fields a sample stores (``Schema``), each field's
codec and member name, and the file names in an output folder, listed below (the sources name
the files inside ``CACHE_DIR``). The field names are not private to it: ``synth``
makes the fields, and ``data``, ``inspect`` and ``train`` take them by name.

    DIR/dataset.json            config, seed, versions, schema, plan fingerprint, totals
    DIR/shard-000000.tar        samples; member ``{key}.{field}``, key without dots
    DIR/shard-000000.stats.json per-shard counts, reject reasons, bytes, timings (commit marker)
    DIR/shardindex.json         wids index
    DIR/rejects.jsonl           one line per bad input (key, path, reason, detail)
    DIR/pool/patch_pool.*       the patch pool the drafts paste from (``s2pdata.pool``)
    DIR/.s2pdata-cache/         the sources' caches: listings of folder URLs, tar indexes, metadata

A shard is committed when its stats file exists: the tar is written to ``.tmp``, fsynced and
renamed first, the stats file last. Tar headers carry a fixed mtime, owner and mode so the
same samples give the same bytes. The stats file records the tar's size and sha256 (hashed while
it is written); a resume, ``open_shards(verify=True)`` and ``python -m s2pdata.inspect --verify``
check a tar against them, and every read or decode error is a ``ShardError`` naming the shard.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import struct
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import storage
from ._safeio import _fsync_dir, atomic_write, new_temp_file
from .pngread import check_window, png_size, read_png

COLOR_FORMATS = ("jpg", "png", "webp")
_FLAT_FIELDS = ("sketch", "hint", "regions", "flat", "colordomain")  # long constant runs
TAR_MTIME = 946684800  # 2000-01-01: fixed so shard bytes do not depend on the clock
DATASET_JSON = "dataset.json"
INDEX_JSON = "shardindex.json"
REJECTS = "rejects.jsonl"
POOL_DIR = "pool"  # the patch pool a build's drafts paste from, beside its shards
POOL_JSON = "patch_pool.json"  # the pool's index (s2pdata.pool)
POOL_NPY = "patch_pool.npy"  # the pixels of a pool written by PatchPool.save
CACHE_DIR = ".s2pdata-cache"  # the sources' caches (listings, tar indexes, joined metadata, HF Arrow files)
POOL_PARTS = "parts"  # inside POOL_DIR: the pre-pass's chunks, merged into the pool, then removed
_SHARD_GLOB = "shard-*.tar"
_STATS_GLOB = "shard-*.stats.json"
_POOL_GLOB = "patch_pool*"  # POOL_JSON, POOL_NPY and every pool_part_name
_TMP_GLOB = "*.tmp"  # what new_temp_file names: a write a killed process left unfinished
_MANIFEST_FIX = "restore it from a copy, or re-run the build into the folder with --overwrite"
_REBUILD = "re-run the build into its folder to rebuild it (a resume rebuilds every damaged shard)"


class ShardError(ValueError):
    """A shard that cannot be read, or that does not match its stats; the message names the shard
    (and the sample key, for a member that does not decode) and says how to fix it."""

    def __init__(self, message: str, *, shard: str | None = None, key: str | None = None):
        super().__init__(message)
        self.shard, self.key = shard, key


def _shard_error(shard, problem: str, *, key: str | None = None, fix: str = _REBUILD) -> ShardError:
    """``ShardError("shard PATH[, key K]: problem; fix")``."""
    shown = storage.redact(shard) if storage.is_remote(str(shard)) else str(shard)
    where = f"shard {shown!r}" + (f", key {key!r}" if key is not None else "")
    return ShardError(f"{where}: {problem}; {fix}", shard=str(shard), key=key)


LOCK_FILE = ".s2pdata.lock"  # flock-ed by the build writing the folder; holds its pid, host and start time


def pool_part_name(index: int) -> str:
    """The pixel file of the ``index``-th part in a merged pool."""
    return f"patch_pool-{index:05d}.npy"


def pool_chunk_name(index: int) -> str:
    """The folder (inside ``POOL_DIR/POOL_PARTS``) of the pre-pass chunk that starts at item ``index``."""
    return f"{index:08d}"


@dataclass(frozen=True)
class Schema:
    """Which fields every sample of a build carries, and their codecs."""

    color_format: str = "jpg"
    color_quality: int = 95
    png_level: int = 1
    regions: bool = False
    drafts: int = 0
    extras: tuple[str, ...] = ()  # optional fields: flat, colordomain (PNG), reference (colour codec)

    def fields(self) -> list[str]:
        """Member suffixes every sample carries, in write order."""
        names = [f"color.{self.color_format}", "sketch.png", "hint.png"]
        if self.regions:
            names.append("regions.png")
        names += [f"draft{i}.{self.color_format}" for i in range(self.drafts)]
        names += [f"{e}.{self.color_format if e == 'reference' else 'png'}" for e in self.extras]
        return names + ["json"]


def dumps_json(obj: object) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, so equal objects give equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


# ---------------------------------------------------------------------------------------------
# field codecs


def encode_image(name: str, array: np.ndarray, schema: Schema) -> bytes:
    """Encode one image field; the extension in ``name`` picks the codec."""
    ext = name.rsplit(".", 1)[-1]
    a = np.ascontiguousarray(array)
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)  # cv2 codecs take BGR
    elif a.ndim == 3 and a.shape[2] == 4:
        a = cv2.cvtColor(a, cv2.COLOR_RGBA2BGRA)  # cv2 codecs take BGRA
    if ext == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, schema.color_quality]
    elif ext == "webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, schema.color_quality]
    elif ext == "png" and name.split(".", 1)[0] in _FLAT_FIELDS:
        # flat maps: the 'up' filter + run-length zlib is 3-4x faster than adaptive filtering and
        # smaller (512^2 hint map 10 -> 2.5 ms, sketch 2.3 -> 0.7 ms, labels 4.8 -> 1.6 ms)
        params = [
            cv2.IMWRITE_PNG_COMPRESSION,
            schema.png_level,
            cv2.IMWRITE_PNG_FILTER,
            cv2.IMWRITE_PNG_FILTER_UP,
            cv2.IMWRITE_PNG_STRATEGY,
            cv2.IMWRITE_PNG_STRATEGY_RLE,
        ]
    elif ext == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, schema.png_level]
    else:
        raise ValueError(f"field {name!r} has no image codec; use .jpg, .png or .webp")
    ok, buf = cv2.imencode("." + ext, a, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode field {name!r} ({a.dtype} {a.shape})")
    return buf.tobytes()


def decode_field(name: str, data: bytes, *, window=None) -> tuple[np.ndarray, bool]:
    """Decode one stored image field, or only ``window`` = (y, x, h, w) of it: (array, whether its
    colour channels are in OpenCV's BGR(A) order rather than RGB(A)). ``regions`` come back int32.

    PNG maps go through ``s2pdata.pngread`` (in file order, RGB(A); only the window's rows and
    columns are unfiltered); other codecs through ``cv2.imdecode`` (BGR(A)), the window as a view.

    Raises
    ------
    ValueError
        Bytes that do not decode, or a window that is not inside the image.
    """
    a = read_png(data, window) if name.endswith(".png") else None
    bgr = False
    if a is None:
        a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if a is None:
            raise ValueError(f"field {name!r} is not a decodable image ({len(data)} bytes)")
        if window is not None:
            check_window(window, a.shape[:2])
            y, x, h, w = window
            a = a[y : y + h, x : x + w]
        bgr = a.ndim == 3 and a.shape[2] in (3, 4)
    if name.startswith("regions"):
        return a.astype(np.int32), False  # 16-bit PNG label map
    return a, bgr


def decode_image_field(name: str, data: bytes) -> np.ndarray:
    """Decode one stored image field to the project's array convention (RGB / RGBA / gray / int32)."""
    a, bgr = decode_field(name, data)
    if bgr:
        return cv2.cvtColor(a, cv2.COLOR_BGR2RGB if a.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    return a


def encode_sample(sample: dict, schema: Schema) -> dict[str, bytes]:
    """Sample of arrays (keys ``color``, ``sketch``, ``hint``, ``regions``, ``draft0``.., ``json``)
    -> ``{"__key__": key, "color.jpg": bytes, ...}`` with exactly ``schema.fields()``."""
    out: dict[str, bytes] = {}
    for name in schema.fields():
        base = name.split(".", 1)[0]
        if name == "json":
            out[name] = dumps_json(sample["json"])
        elif base == "regions":
            labels = sample["regions"]
            if labels.max(initial=0) > 65535:
                raise ValueError(f"sample {sample['__key__']}: {labels.max()} regions exceed 16-bit PNG")
            out[name] = encode_image(name, labels.astype(np.uint16), schema)
        else:
            out[name] = encode_image(name, sample[base], schema)
    return {"__key__": sample["__key__"], **out}


SAMPLE_FIELDS = ("color", "sketch", "hint", "json")  # every sample carries them, whatever its schema
MAX_SAMPLE_PIXELS = 1 << 26  # per image field; above the build's default --max-pixels (64 M)
# (dtype, channels: 0 for a 2-D map) each field decodes to; draftK like colour; unknown fields unchecked
_FIELD_TYPES = {
    "color": (np.uint8, 3),
    "sketch": (np.uint8, 0),
    "hint": (np.uint8, 4),
    "regions": (np.int32, 0),
    "flat": (np.uint8, 3),
    "colordomain": (np.uint8, 3),
    "reference": (np.uint8, 3),
}
_PNG_LAYOUTS = {(np.uint8, 0): (8, 0), (np.uint8, 3): (8, 2), (np.uint8, 4): (8, 6), (np.int32, 0): (16, 0)}
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15 (not DHT, JPG, DAC)


def _field_type(base: str) -> tuple[type, int] | None:
    """What the field ``base`` decodes to (``_FIELD_TYPES``; ``draftK`` as colour), None for an unknown one."""
    return _FIELD_TYPES["color"] if base[:5] == "draft" and base[5:].isdigit() else _FIELD_TYPES.get(base)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(H, W) from a JPEG's first frame header, walking the marker segments before it."""
    at, n = 2, len(data)
    while at + 4 <= n and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # a fill byte
            at += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            at += 2
        elif marker in _JPEG_FRAMES:
            return (int.from_bytes(data[at + 5 : at + 7], "big"), int.from_bytes(data[at + 7 : at + 9], "big"))
        elif marker in (0xD9, 0xDA):  # end of image, or scan data, before any frame header
            return None
        else:
            at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """(H, W) from a WebP's first chunk: VP8 (lossy), VP8L (lossless) or VP8X (extended canvas)."""
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack_from("<HH", data, 26)
        return h & 0x3FFF, w & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[27:30], "little") + 1, int.from_bytes(data[24:27], "little") + 1
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(H, W) from the header of a PNG, JPEG or WebP, without decoding; None for anything else (or a
    header too damaged to say)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return png_size(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if len(data) >= 30 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


def _check_header(name: str, data: bytes, hw: tuple[int, int] | None) -> tuple[int, int]:
    """The (H, W) the header of member ``name`` declares; ValueError, before anything is decoded,
    unless it is a PNG, JPEG or WebP of at most ``MAX_SAMPLE_PIXELS``, of the size ``hw`` (the
    colour's) when given, and, for a PNG of a known field, of the bit depth and colour type s2pdata
    writes that field in."""
    size = image_size(data)
    if size is None:
        raise ValueError(f"not a PNG, JPEG or WebP with a readable header ({len(data)} bytes)")
    if size[0] * size[1] > MAX_SAMPLE_PIXELS or min(size) < 1:
        raise ValueError(f"its header declares {size[0]}x{size[1]} pixels (at most {MAX_SAMPLE_PIXELS} are read)")
    if hw is not None and size != hw:
        raise ValueError(f"its header declares {size[0]}x{size[1]}, but the sample's colour is {hw[0]}x{hw[1]}")
    base = name.partition(".")[0]
    kind = _field_type(base)
    if kind is not None and data[:4] == b"\x89PNG" and (data[24], data[25]) != _PNG_LAYOUTS[kind]:
        depth, ctype = _PNG_LAYOUTS[kind]
        raise ValueError(f"PNG of bit depth {data[24]}, colour type {data[25]}; {base} is stored at {depth}, {ctype}")
    return size


def _check_decoded(name: str, a: np.ndarray, hw: tuple[int, int]) -> None:
    """ValueError unless the decoded ``a`` is ``hw`` in size and has the dtype and channels of its field."""
    kind = _field_type(name.partition(".")[0])
    if a.shape[:2] != hw:
        raise ValueError(f"decoded to {a.shape[0]}x{a.shape[1]}, not {hw[0]}x{hw[1]}")
    channels = a.shape[2] if a.ndim == 3 else 0
    if kind is not None and (a.dtype != kind[0] or a.ndim not in (2, 3) or channels != kind[1]):
        raise ValueError(
            f"decoded to {a.dtype} with {channels or 1} channel(s); this field is {np.dtype(kind[0])} "
            f"with {kind[1] or 1}"
        )


def decode_sample(raw: dict[str, bytes], *, only=None, window=None, require=()) -> dict:
    """Tar members of one sample -> numpy dict: ``color``/``draftK`` (H, W, 3) uint8, ``sketch``
    (H, W) uint8, ``hint`` (H, W, 4) uint8, ``regions`` (H, W) int32, ``json`` dict.

    ``only`` (a set of field names such as ``{"color", "sketch"}``; None: all) decodes just those
    members and never touches the others' bytes. ``window`` = (y, x, h, w) crops every image field
    and leaves each in the order its decoder gives (``decode_field``): the names of those in
    OpenCV's BGR(A) order are then listed in ``out["__bgr__"]``, for callers that reorder the
    channels in the copy they make anyway.

    Nothing is decoded blind. Every field named in ``require`` must be there: a sample missing one
    is an error, never a hole in a batch (``open_shards`` requires ``SAMPLE_FIELDS``, the loader
    what its stage uses). Before decoding, each image's header must declare the colour's
    size (``image_size``; so a map claiming 16384^2 costs nothing) and at most ``MAX_SAMPLE_PIXELS``,
    and a PNG map the bit depth and colour type its field is stored in; after decoding, each known
    field must have its dtype and channels (``_FIELD_TYPES``). The json must be an object.

    Raises
    ------
    ShardError
        Naming the shard (``raw["__url__"]``, which ``iter_tar`` sets) and the key: a required
        field missing, two members of one field, or a member that does not decode or is not what
        its field holds (damaged or hostile bytes).
    """
    key = raw["__key__"]
    url = raw.get("__url__", "<unknown>")
    names: dict[str, str] = {}  # field -> member name
    for name in raw:
        if not name.startswith("__"):
            base = name.partition(".")[0]
            if base in names:
                raise _shard_error(url, f"fields {names[base]!r} and {name!r} both hold {base}", key=key)
            names[base] = name
    readable = {b for b, n in names.items() if n == "json" or n.partition(".")[2] in COLOR_FORMATS}
    missing = sorted(set(require) - readable)
    if missing:
        have = ", ".join(sorted(names.values())) or "nothing"
        raise _shard_error(url, f"sample has no member for {', '.join(missing)} (it holds {have})", key=key)
    fields = [b for b in names if only is None or b in only]
    out: dict = {"__key__": key}
    if window is not None:
        out["__bgr__"] = set()
    name = ""
    try:
        images = [names[b] for b in fields if names[b].partition(".")[2] in COLOR_FORMATS]
        first = names.get("color") or (images[0] if images else None)
        name = first or ""
        hw = _check_header(first, raw[first], None) if first else None
        for name in images:
            _check_header(name, raw[name], hw)
        for base in fields:
            name = names[base]
            if name == "json":
                out["json"] = json.loads(raw[name])
                if not isinstance(out["json"], dict):
                    raise ValueError(f"a JSON {type(out['json']).__name__}, not an object")
            elif name in images:
                a, bgr = decode_field(name, raw[name], window=window)
                _check_decoded(name, a, hw if window is None else tuple(window[2:]))
                if window is None and bgr:
                    a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB if a.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
                elif bgr:
                    out["__bgr__"].add(base)
                out[base] = a
            # unknown members are left out: never unpickle or eval shard contents
    except (ValueError, RecursionError, cv2.error) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        problem = f"member {key}.{name} does not decode ({type(exc).__name__}: {exc})"
        raise _shard_error(url, problem, key=key) from exc
    return out


# ---------------------------------------------------------------------------------------------
# writing


def shard_name(index: int) -> str:
    """The tar of the ``index``-th shard in plan order."""
    return f"shard-{index:06d}.tar"


def stats_name(index: int) -> str:
    """The stats file (commit marker) of the ``index``-th shard."""
    return f"shard-{index:06d}.stats.json"


def stats_path_of(tar) -> Path | str | None:
    """The stats file that commits the shard tar ``tar`` (None for a path that is not a ``.tar``): a
    ``Path`` for a local tar, a URL for a URL (``s2pdata.storage``)."""
    name = storage.name_of(tar)
    return storage.with_name(tar, name[: -len(".tar")] + ".stats.json") if name.endswith(".tar") else None


def tar_path_of(stats) -> Path | str:
    """The shard tar the stats file ``stats`` commits (a ``Path`` locally, a URL for a URL)."""
    return storage.with_name(stats, storage.name_of(stats).removesuffix(".stats.json") + ".tar")


def recorded_counts(paths, *, storage_options: dict | None = None) -> list[int | None]:
    """Each shard's ``nsamples`` as its stats file records it (None where it has no stats file, or one
    without the count). Raises ``ShardError`` naming a stats file that is damaged (``shard_record``).
    ``storage_options`` go to the filesystem of URLs (``s2pdata.storage``)."""
    so = storage_options
    return [
        shard_record(p, storage_options=so).get("nsamples")
        if (stats := stats_path_of(p)) is not None and storage.isfile(stats, so)
        else None
        for p in paths
    ]


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add one member with the fixed header fields that keep shard bytes reproducible."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = TAR_MTIME
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = "s2pdata"
    tar.addfile(info, io.BytesIO(data))


class _HashingWriter:
    """A binary file that feeds every byte written to md5 and sha256 (``tarfile`` calls ``write``
    and ``tell`` only), so the digests cost no second read of the tar."""

    def __init__(self, f):
        self._f = f
        self.md5, self.sha256 = hashlib.md5(), hashlib.sha256()

    def write(self, data) -> int:
        """Hash ``data``, then write it."""
        self.md5.update(data)
        self.sha256.update(data)
        return self._f.write(data)

    def tell(self) -> int:
        """The file's position."""
        return self._f.tell()


def write_tar(path, samples: Iterable[dict[str, bytes]], *, storage_options: dict | None = None) -> dict:
    """Write encoded samples to ``path`` atomically; returns nsamples, filesize, md5sum, sha256 (hashed
    as the bytes are written).

    Locally: a fresh ``.tmp`` file from ``create_new`` beside ``path``, fsynced, then renamed. For a
    URL (``s3://bucket/run/shard-000000.tar``): the same bytes into a local temporary file, then one
    upload (``storage.upload``: a PUT, or a multipart upload completed at the end), so the object
    appears whole, with its digests known before it is sent, or not at all.
    """
    if storage.is_remote(path):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="s2pdata-shard-") as tmp:
            local = Path(tmp) / storage.name_of(path)
            info = write_tar(local, samples)
            storage.upload(local, path, storage_options)
        return info
    path = Path(storage.local(path))
    tmp, raw = new_temp_file(path)
    n = 0
    with raw:
        f = _HashingWriter(raw)
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for sample in samples:
                key = sample["__key__"]
                for field, data in sample.items():
                    if not field.startswith("__"):
                        _tar_member(tar, f"{key}.{field}", data)
                n += 1
        raw.flush()
        os.fsync(raw.fileno())
        size = raw.tell()
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return {"nsamples": n, "filesize": size, "md5sum": f.md5.hexdigest(), "sha256": f.sha256.hexdigest()}


def commit_stats(out, index: int, stats: dict, *, storage_options: dict | None = None) -> None:
    """Write the per-shard stats file: the commit marker, always after the tar is in place (for a URL
    ``out``, after the tar's upload completed)."""
    data = json.dumps(stats, indent=1, sort_keys=True).encode()
    storage.write_bytes(storage.join(out, stats_name(index)), data, storage_options)


# ---------------------------------------------------------------------------------------------
# scanning an output folder


VERIFY = ("sha256", "size")  # what a resume checks of each committed shard (see scan_committed)
# every key a build's stats file holds, and its type; readers of one shard use those present
STATS_TYPES = {
    "shard": str,
    "index": int,
    "nsamples": int,
    "filesize": int,
    "md5sum": str,
    "sha256": str,
    "items": int,
    "rejected": int,
    "reasons": dict,
    "rejects": list,
    "bytes": dict,
    "seconds": dict,
}
_STATS_USED = ("shard", "index", "nsamples", "filesize", "sha256", "rejected", "reasons", "rejects", "bytes", "seconds")
_SUMMED = ("reasons", "bytes", "seconds")  # dicts of numbers that sum_stats adds up
# the manifest's keys of a fixed type (others are free): what build, resume and inspect read
MANIFEST_TYPES = {
    "schema_version": int,
    "fields": list,
    "seed": int,
    "source": dict,
    "config": dict,
    "plan": dict,
    "versions": dict,
    "status": str,
    "rebuilt_damaged": list,
    "pool": dict,
    "totals": dict,
}


class ManifestError(ValueError):
    """A build folder's ``dataset.json`` that does not parse or is not a manifest; the message names
    the file, says what is wrong and how to fix it, on one line."""


def _json_of(path, storage_options: dict | None = None) -> object:
    """The parsed JSON file at ``path`` (a local path or a URL); ValueError (also for brackets nested
    past the parser's depth, a RecursionError) when it does not parse."""
    try:
        return json.loads(storage.read_bytes(path, storage_options))
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def _type_problem(obj: object, types: dict, required) -> str | None:
    """Why the parsed JSON ``obj`` is not an object whose keys have ``types`` and include
    ``required`` (None when it is). bool is not an int here, and no count is negative."""
    if not isinstance(obj, dict):
        return f"holds a JSON {type(obj).__name__}, not an object"
    missing = [k for k in required if k not in obj]
    if missing:
        return f"lacks {', '.join(missing)}"
    for k, kind in types.items():
        v = obj.get(k, kind())
        if not isinstance(v, kind) or isinstance(v, bool) or (kind is int and v < 0):
            return f"has {k} = {json.dumps(v)[:40]}, not a{'n' if kind is int else ''} {kind.__name__}"
    return None


def stats_problem(record: object, *, complete: bool = True) -> str | None:
    """Why ``record`` (a parsed stats file, or a ``shardindex.json`` entry with ``complete=False``)
    cannot be used (None when it can): not an object, a key of ``STATS_TYPES`` of another type, a
    ``reasons``/``bytes``/``seconds`` value that is not a number, a reject that is not an object, or,
    with ``complete``, a key missing that a resume and ``sum_stats`` use."""
    problem = _type_problem(record, STATS_TYPES, _STATS_USED if complete else ())
    if problem is not None:
        return problem
    for k in _SUMMED:
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in record.get(k, {}).values()):
            return f"has a {k} value that is not a number"
    if not all(isinstance(r, dict) for r in record.get("rejects", [])):
        return "has a reject that is not an object"
    return None


def read_manifest(out, *, storage_options: dict | None = None) -> dict:
    """The build folder ``out``'s ``dataset.json``, checked: an object whose keys of ``MANIFEST_TYPES``
    have their types. ``out`` may be a URL, read with ``storage_options`` (``s2pdata.storage``).

    Raises
    ------
    FileNotFoundError
        ``out`` has no ``dataset.json`` (not a build folder, or one never started).
    ManifestError
        It does not parse or is not a manifest (a one-line message naming it and the fix).
    """
    path = storage.join(out, DATASET_JSON)
    try:
        manifest = _json_of(path, storage_options)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{storage.redact(path)} is damaged ({storage.redact(exc)}); {_MANIFEST_FIX}") from exc
    problem = _type_problem(manifest, MANIFEST_TYPES, ())
    if problem is not None:
        raise ManifestError(f"{storage.redact(path)} is damaged: it {problem}; {_MANIFEST_FIX}")
    return manifest


def file_sha256(path, storage_options: dict | None = None) -> str:
    """Hex sha256 of the file at ``path`` (a local path or a URL), read in order once
    (``_stream.HashingReader``; hashlib releases the GIL)."""
    from ._stream import HashingReader

    with storage.open_read(path, storage_options) as (f, _):
        return HashingReader(f).hexdigest()


def _mismatch(
    path,
    record: dict,
    verify: str = "sha256",
    storage_options: dict | None = None,
    *,
    size: int | None = None,
    sha256: str | None = None,
) -> str | None:
    """Why the tar at ``path`` (a local path or a URL) does not match its stats ``record`` (None when it
    does); ``size`` and ``sha256``, when the caller has them (a read that hashed as it streamed), are
    not looked up again."""
    if size is None:
        try:
            size = storage.size(path, storage_options)
        except FileNotFoundError:
            return "tar missing"
    if record.get("filesize") != size:
        return f"size {size} != recorded {record.get('filesize')}"
    if verify == "size":
        return None
    if not isinstance(record.get("sha256"), str):
        return "no sha256 recorded"
    sha256 = file_sha256(path, storage_options) if sha256 is None else sha256
    return None if sha256 == record["sha256"] else "sha256 mismatch"


def _threads(threads: int | None, n: int) -> int:
    """Hashing threads: ``threads``, else one per CPU (at most 8), never more than ``n`` files."""
    return max(1, min(n, threads or min(8, os.cpu_count() or 1)))


def scan_committed(
    out, n_shards: int, *, verify: str = "sha256", threads: int | None = None, storage_options: dict | None = None
) -> tuple[dict[int, dict], dict[int, str]]:
    """The committed shards of a build folder, checked against their stats.

    Parameters
    ----------
    out : Path or str
        The build folder: a local path or a URL (read with ``storage_options``; its stats objects
        are found with one listing).
    n_shards : int
        Shards in the plan: indices ``0 .. n_shards - 1`` are looked at.
    verify : {"sha256", "size"}
        ``sha256`` hashes every committed tar (in ``threads`` threads) and compares the digest its
        stats file records; ``size`` compares the size only.
    threads : int or None
        Hashing threads; None: one per CPU, at most 8.

    Returns
    -------
    done : dict of int to dict
        Index -> stats of every shard whose stats file exists and whose tar matches it.
    damaged : dict of int to str
        Index -> why, for every shard with a stats file whose tar is missing, of another size,
        of another sha256, or whose stats file does not parse or is not a complete stats object of
        this shard (``stats_problem``). A shard without a stats file is neither (it was never committed).
    """
    if verify not in VERIFY:
        raise ValueError(f"verify must be one of {VERIFY}, got {verify!r}")
    so = storage_options
    out = out if storage.is_remote(out) else Path(storage.local(out))
    present = {storage.name_of(p) for p in stats_files(out, storage_options=so)}
    records, damaged = {}, {}
    for i in range(n_shards):
        if stats_name(i) not in present:
            continue
        try:
            record = _json_of(storage.join(out, stats_name(i)), so)
        except (OSError, ValueError):
            damaged[i] = "stats file unreadable"
            continue
        problem = stats_problem(record)
        if problem is None and (record["index"], record["shard"]) != (i, shard_name(i)):
            problem = f"records shard {record['index']} ({record['shard']!r})"
        if problem is None:
            records[i] = record
        else:
            damaged[i] = f"stats file {problem}"
    indices = list(records)
    with ThreadPoolExecutor(_threads(threads, len(indices))) as pool:
        reasons = list(pool.map(lambda i: _mismatch(storage.join(out, shard_name(i)), records[i], verify, so), indices))
    for i, reason in zip(indices, reasons):
        if reason is not None:
            damaged[i] = reason
            del records[i]
    return records, dict(sorted(damaged.items()))


def committed_shards(out, n_shards: int, *, verify: str = "sha256", storage_options: dict | None = None) -> dict:
    """Stats of every shard whose stats file exists and whose tar matches it (``scan_committed``)."""
    return scan_committed(out, n_shards, verify=verify, storage_options=storage_options)[0]


def uncommit(out, indices: Iterable[int], *, storage_options: dict | None = None) -> None:
    """Delete the stats files of shards ``indices``: they count as not built (a damaged shard)."""
    storage.remove([storage.join(out, stats_name(i)) for i in indices], storage_options)


def damaged_summary(damaged: dict[int, str]) -> list[str]:
    """``["shard-000003.tar (sha256 mismatch)", ...]``: what a resume rebuilt, for its summary."""
    return [f"{shard_name(i)} ({why})" for i, why in sorted(damaged.items())]


def _json_if_there(path, storage_options: dict | None) -> tuple[bool, object]:
    """``(True, parsed)`` for the JSON file at ``path``, ``(False, None)`` when there is none: one
    request for a URL, not a look-up and then a read."""
    try:
        return True, _json_of(path, storage_options)
    except FileNotFoundError:
        return False, None


def shard_record(path, *, storage_options: dict | None = None) -> dict | None:
    """What the build recorded about the tar at ``path``: its stats file, else its entry in the
    folder's ``shardindex.json``, else None. ``path`` may be a URL, read with ``storage_options``.

    Raises
    ------
    ShardError
        The stats file or index exists but does not parse, or holds something other than a record
        (``stats_problem``: e.g. ``[]``, or ``nsamples`` that is not a count).
    """
    so = storage_options
    path = path if storage.is_remote(path) else Path(path)
    stats = stats_path_of(path)
    index = storage.with_name(path, INDEX_JSON)
    where = "its stats file"
    try:
        found, record = _json_if_there(stats, so) if stats is not None else (False, None)
        if not found:
            found, listing = _json_if_there(index, so)
            if not found:
                return None
            where = f"its {INDEX_JSON} entry"
            entries = listing.get("shardlist") if isinstance(listing, dict) else None
            if not isinstance(entries, list):
                raise ValueError("no shardlist list")
            name = storage.name_of(path)
            record = next((e for e in entries if isinstance(e, dict) and e.get("url") == name), None)
    except (OSError, ValueError) as exc:
        raise _shard_error(path, f"{where.removesuffix(' entry')} does not parse ({storage.redact(exc)})") from exc
    problem = None if record is None else stats_problem(record, complete=False)
    if problem is not None:
        raise _shard_error(path, f"{where} {problem}")
    return record


def verify_shard(path, record: dict | None = None, *, storage_options: dict | None = None) -> dict:
    """Check the tar at ``path`` against its recorded size and sha256; returns the record.

    A check on its own (``inspect --verify``): reading the samples with ``iter_tar(verify=...)``
    or ``open_shards(verify=True)`` checks the same while it streams them, in the one read.

    Parameters
    ----------
    path : str or Path
        A shard tar: a local path or a URL.
    record : dict or None
        Its stats (``filesize``, ``sha256``); None reads ``shard_record(path)``.
    storage_options : dict or None
        Options of a URL's filesystem (``s2pdata.storage``).

    Raises
    ------
    ShardError
        Naming the shard: no record, tar missing, size or sha256 mismatch, a read that broke off
        and did not resume (naming the byte offset).
    """
    from ._stream import StreamError

    record = shard_record(path, storage_options=storage_options) if record is None else record
    if record is None:
        name = storage.name_of(path).removesuffix(".tar")
        fix = f"verify needs the build folder's {name}.stats.json or {INDEX_JSON}, or pass verify=False"
        raise _shard_error(path, "no stats file or index entry records its sha256", fix=fix)
    try:
        why = _mismatch(path if storage.is_remote(path) else Path(path), record, storage_options=storage_options)
    except StreamError as exc:
        raise _shard_error(path, exc.problem, fix="check the network and the server, then read it again") from exc
    if why is not None:
        raise _shard_error(path, f"does not match its stats: {why}")
    return record


def verify_shards(paths: list, *, threads: int | None = None, storage_options: dict | None = None) -> dict[str, str]:
    """Check many tars (``verify_shard``, local paths or URLs) in ``threads`` threads; returns path ->
    why, for every damaged one (empty when all match)."""

    def check(p):
        """(path, message) when ``p`` is damaged, else None."""
        try:
            verify_shard(p, storage_options=storage_options)
        except ShardError as exc:
            return str(p), str(exc)
        return None

    with ThreadPoolExecutor(_threads(threads, len(paths))) as pool:
        return dict(r for r in pool.map(check, paths) if r is not None)


def shard_files(out: Path, *, storage_options: dict | None = None) -> list:
    """Every shard tar in the folder ``out``, sorted (committed or not): ``Path``s, or URLs for a URL."""
    if storage.is_remote(out):
        return storage.glob(storage.join(out, _SHARD_GLOB), storage_options)
    return sorted(Path(out).glob(_SHARD_GLOB))


def stats_files(out: Path, *, storage_options: dict | None = None) -> list:
    """Every shard's stats file in the folder ``out``, sorted: the committed shards (``Path``s, or
    URLs for a URL)."""
    if storage.is_remote(out):
        return storage.glob(storage.join(out, _STATS_GLOB), storage_options)
    return sorted(Path(out).glob(_STATS_GLOB))


def build_files(out, *, storage_options: dict | None = None) -> list:
    """Every file a build writes into ``out`` that exists now (what ``--overwrite`` deletes): ``Path``s,
    or URLs for a URL (found with one listing)."""
    if storage.is_remote(out):
        names = storage.list_files(out, storage_options)  # an absent prefix lists nothing
        pool = (f"{POOL_DIR}/{_POOL_GLOB}", f"{POOL_DIR}/{POOL_PARTS}/*")
        patterns = (DATASET_JSON, INDEX_JSON, REJECTS, *pool, _SHARD_GLOB, _STATS_GLOB)
        return [storage.join(out, n) for n in names if any(fnmatch.fnmatchcase(n, g) for g in patterns)]
    out = Path(out)
    return (
        [out / n for n in (DATASET_JSON, INDEX_JSON, REJECTS) if (out / n).exists()]
        + sorted((out / POOL_DIR).glob(_POOL_GLOB))
        + shard_files(out)
        + stats_files(out)
        + sorted(out.glob(_TMP_GLOB))
    )


def remove_partials(out: Path) -> list[str]:
    """Delete ``*.tmp`` files a killed build left in ``out`` and its pool folder; returns their names."""
    removed = []
    for folder in (Path(out), Path(out) / POOL_DIR):
        for p in sorted(folder.glob(_TMP_GLOB)):  # an absent folder globs nothing
            p.unlink()
            removed.append(p.name)
    return removed


def sum_stats(stats: list[dict]) -> dict:
    """Totals over per-shard stats: samples, rejected, bytes, and per-key sums of ``reasons``,
    ``bytes`` per field (as ``field_bytes``) and ``seconds`` per stage.

    Raises ``ShardError`` naming the shard of a record that is not a complete stats object (``stats_problem``).
    """
    for s in stats:
        problem = stats_problem(s)
        if problem is not None:
            shard = s.get("shard") if isinstance(s, dict) and isinstance(s.get("shard"), str) else "<unnamed>"
            raise _shard_error(shard, f"its stats file {problem}")
    total = {
        "samples": sum(s["nsamples"] for s in stats),
        "rejected": sum(s["rejected"] for s in stats),
        "bytes": sum(s["filesize"] for s in stats),
    }
    for name, key in (("reasons", "reasons"), ("field_bytes", "bytes"), ("seconds", "seconds")):
        summed: Counter = Counter()
        for s in stats:
            summed.update(s[key])
        total[name] = dict(summed)
    return total


def write_index(out: Path, stats: list[dict]) -> None:
    """The wids shard index (``shardindex.json``) over committed shards in plan order."""
    shardlist = [
        {"url": s["shard"], **{k: s[k] for k in ("nsamples", "filesize", "md5sum", "sha256") if k in s}}
        for s in stats
        if s["nsamples"] > 0
    ]
    index = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "shardlist": shardlist}
    atomic_write(Path(out) / INDEX_JSON, json.dumps(index, indent=1).encode())


def write_rejects(out: Path, stats: list[dict], skipped: list[dict] = ()) -> int:
    """``rejects.jsonl``: what the source skipped while listing, then every shard's rejects in
    plan order; returns the line count."""
    lines = [dumps_json(r).decode() for r in skipped] + [dumps_json(r).decode() for s in stats for r in s["rejects"]]
    atomic_write(Path(out) / REJECTS, "".join(line + "\n" for line in lines).encode())
    return len(lines)


def shard_paths(path: str | os.PathLike | Iterable, *, storage_options: dict | None = None) -> list[str]:
    """A build folder, a tar, a glob or a list of those -> sorted list of tar paths.

    Each may be a local path, a ``file://`` URL or a URL of object storage (``s3://bucket/run``),
    listed with ``storage_options`` (``s2pdata.storage``); a URL gives URLs.
    """
    if isinstance(path, (str, os.PathLike)):
        if storage.is_remote(path):
            if any(ch in path for ch in "*?["):
                return storage.glob(path, storage_options)
            if path.endswith(".tar"):  # a tar: asking whether it is a folder would GET it whole over http(s)
                return [path]
            if storage.isdir(path, storage_options):
                return shard_files(path, storage_options=storage_options)
            return [path]
        path = storage.local(path)
        p = Path(path)
        if p.is_dir():
            return [str(x) for x in shard_files(p)]
        if any(ch in str(path) for ch in "*?["):
            return storage.glob(str(path))
        return [str(p)]
    return [q for item in path for q in shard_paths(item, storage_options=storage_options)]


def _check_end(path: str, f, offset: int, size: int) -> None:
    """From ``offset`` (where ``tarfile`` stopped) to the end of ``f`` there must be the end-of-archive
    blocks and nothing but NUL: ``tarfile`` ends at a damaged header, or at the end of a tar cut at a
    member boundary, as if the archive ended there."""
    f.seek(offset)
    at = offset
    while chunk := f.read(1 << 20):
        stripped = chunk.lstrip(b"\0")
        if stripped:
            raise _shard_error(
                path,
                f"damaged tar header at byte offset {offset} (bad checksum, or data where a header belongs; "
                f"first non-zero byte at {at + len(chunk) - len(stripped)}): the {size - offset} bytes after it "
                "would be lost",
            )
        at += len(chunk)
    if at - offset < tarfile.BLOCKSIZE:
        raise _shard_error(path, f"truncated: it ends at byte {at} without the end-of-archive blocks")


MAX_MEMBER_BYTES = 1 << 30  # far above any member s2pdata writes (a 64 MP 16-bit PNG is < 200 MB)
_MEMBER_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)  # what _tar_member writes ('0'; '\0' from old writers)


def _member_problem(member: tarfile.TarInfo, file_size: int) -> str | None:
    """Why ``member`` cannot be a member of an s2pdata shard of ``file_size`` bytes (None when it can):
    anything but a plain regular file (sparse, link, device, folder...), or data that the file cannot
    hold. Checked before the data is read, so a header cannot make the read allocate more than the file."""
    if member.type not in _MEMBER_TYPES or member.sparse is not None:
        kind = "sparse file" if member.sparse is not None or member.type == tarfile.GNUTYPE_SPARSE else "type"
        return f"member {member.name!r} is a {kind} entry (type {member.type!r}); s2pdata writes regular files only"
    left = file_size - member.offset_data
    if not 0 <= member.size <= min(left, MAX_MEMBER_BYTES):
        return (
            f"member {member.name!r} at byte offset {member.offset} declares {member.size} bytes, but "
            f"{max(left, 0)} bytes follow its header (and a member may hold at most {MAX_MEMBER_BYTES})"
        )
    return None


def iter_tar(
    path: str, *, storage_options: dict | None = None, verify: bool | dict = False
) -> Iterator[dict[str, bytes]]:
    """Group a tar's members by key (the basename up to its first dot), in file order.

    Each sample is ``{"__key__": key, "__url__": path, field: bytes, ...}``. A member's size is
    checked against the bytes left in the file before it is read: no header makes a read larger
    than the shard. ``path`` may be a URL (``s3://bucket/run/shard-000000.tar``): the tar is
    streamed in order with ``storage_options`` (``s2pdata.storage.open_read``: ranged reads,
    resumed from their byte offset when a connection breaks, read ahead), no local copy, under
    the same checks. The last sample is yielded only once the end of the tar is checked.

    Parameters
    ----------
    path : str
        A shard tar: a local path or a URL.
    storage_options : dict or None
        Options of a URL's filesystem (``s2pdata.storage``).
    verify : bool or dict
        Check the tar against its recorded size and sha256 in the same read: True looks the record
        up (``shard_record``; none is an error), a dict is the record. The size is checked on
        opening, before any sample; the sha256 of the bytes as they stream (``_stream.HashingReader``)
        at the end of the tar, before the last sample is yielded. So a consumer of a damaged shard
        has had at most all its samples but the last (as read, the damaged bytes among them:
        a decoder may have refused one first), never the whole shard as sound. A read stopped
        early by a damaged header or member hashes the rest of the file: a file that is not what its
        stats say is a sha256 mismatch (the problem that stopped the read chained as its cause).

    Raises
    ------
    ShardError
        Naming the shard and the byte offset: a damaged or malformed header (which ``tarfile`` alone
        takes for the end of the archive, or reports as a bare ``ValueError``), a truncated member,
        a member that is not a plain regular file (a sparse one would expand to its declared size;
        s2pdata never writes one), a member larger than the file or ``MAX_MEMBER_BYTES``, a tar
        that does not open, a read that broke off and did not resume (``_stream.RETRIES``); with
        ``verify``, no record, or a size or sha256 that is not the recorded one.
    """
    from ._stream import HashingReader, StreamError  # a leaf module

    current: dict[str, bytes] | None = None
    url = str(path)
    record = verify if isinstance(verify, dict) else None
    if verify is True:
        record = shard_record(path, storage_options=storage_options)
        if record is None:
            verify_shard(path, storage_options=storage_options)  # raises its "no record" ShardError
    with storage.open_read(path, storage_options) as (opened, file_size):
        why = None if record is None else _mismatch(path, record, "size", size=file_size)
        if why is not None:
            raise _shard_error(path, f"does not match its stats: {why}")
        f = opened if record is None else HashingReader(opened)
        offset = 0
        try:
            try:
                with tarfile.open(fileobj=f, mode="r|") as tar:
                    for member in tar:
                        offset = member.offset
                        problem = _member_problem(member, file_size)
                        if problem is not None:
                            raise _shard_error(path, problem)
                        base = member.name.rsplit("/", 1)[-1]
                        key, dot, field = base.partition(".")
                        if not dot:
                            continue
                        if current is None or current["__key__"] != key:
                            if current is not None:
                                yield current
                            current = {"__key__": key, "__url__": url}
                        current[field] = tar.extractfile(member).read()
                    offset = tar.offset
            except ShardError:
                raise
            # ValueError: a PAX number, a sparse map
            except (tarfile.TarError, ValueError, EOFError, OverflowError) as exc:
                raise _shard_error(path, f"unreadable tar at or after byte offset {offset} ({exc})") from exc
            _check_end(url, f, offset, file_size)
            why = None if record is None else _mismatch(path, record, size=file_size, sha256=f.hexdigest())
        except StreamError as exc:
            raise _shard_error(path, exc.problem, fix="check the network and the server, then read it again") from exc
        except ShardError as exc:
            if record is None:
                raise
            try:
                why = _mismatch(path, record, size=file_size, sha256=f.hexdigest())  # the rest of the file
            except StreamError:
                raise exc from None
            if why is None:
                raise
            raise _shard_error(path, f"does not match its stats: {why}") from exc
        if why is not None:
            raise _shard_error(path, f"does not match its stats: {why}")
    if current is not None:
        yield current
