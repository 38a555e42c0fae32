"""The shard format: the sample schema, each field's codec and member name, the names of a build
folder's files, and ``ShardError``.

Consumes a sample dict of numpy arrays (from ``synth``) and produces the bytes of its WebDataset
members; ``decode_sample`` goes the other way, checking each member's header before it decodes. The
field names are not private to it: ``synth`` makes the fields, and ``data``, ``inspect`` and
``train`` take them by name.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import storage
from ..pngread import check_window, png_size, read_png

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
