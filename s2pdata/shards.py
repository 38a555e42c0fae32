"""The shard format: sample schema, field codecs, atomic tar writer, stats, manifest, resume scan.

Consumes a sample dict of numpy arrays (from ``synth``) and produces WebDataset tar members;
reading goes the other way. It decides which fields a sample stores (``Schema``), each field's
codec and member name, and the file names in an output folder, listed below (only ``sources/``
names its caches, in ``DIR/.s2pdata-cache/``). The field names are not private to it: ``synth``
makes the fields, and ``data``, ``inspect`` and ``train`` take them by name.

    DIR/dataset.json            config, seed, versions, schema, plan fingerprint, totals
    DIR/shard-000000.tar        samples; member ``{key}.{field}``, key without dots
    DIR/shard-000000.stats.json per-shard counts, reject reasons, bytes, timings (commit marker)
    DIR/shardindex.json         wids index
    DIR/rejects.jsonl           one line per bad input (key, path, reason, detail)
    DIR/pool/patch_pool.*       the patch pool the drafts paste from (``s2pdata.pool``)

A shard is committed when its stats file exists: the tar is written to ``.tmp``, fsynced and
renamed first, the stats file last. Tar headers carry a fixed mtime, owner and mode so the
same samples give the same bytes. The stats file records the tar's size and sha256 (hashed while
it is written); a resume, ``open_shards(verify=True)`` and ``python -m s2pdata.inspect --verify``
check a tar against them, and every read or decode error is a ``ShardError`` naming the shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .pngread import check_window, read_png

COLOR_FORMATS = ("jpg", "png", "webp")
_FLAT_FIELDS = ("sketch", "hint", "regions", "flat", "colordomain")  # long constant runs
TAR_MTIME = 946684800  # 2000-01-01: fixed so shard bytes do not depend on the clock
DATASET_JSON = "dataset.json"
INDEX_JSON = "shardindex.json"
REJECTS = "rejects.jsonl"
POOL_DIR = "pool"  # the patch pool a build's drafts paste from, beside its shards
POOL_JSON = "patch_pool.json"  # the pool's index (s2pdata.pool)
POOL_NPY = "patch_pool.npy"  # the pixels of a pool written by PatchPool.save
POOL_PARTS = "parts"  # inside POOL_DIR: the pre-pass's chunks, merged into the pool, then removed
_SHARD_GLOB = "shard-*.tar"
_STATS_GLOB = "shard-*.stats.json"
_POOL_GLOB = "patch_pool*"  # POOL_JSON, POOL_NPY and every pool_part_name
_TMP_GLOB = "*.tmp"  # what _tmp_path names: a write a killed process left unfinished
_REBUILD = "re-run the build into its folder to rebuild it (a resume rebuilds every damaged shard)"


class ShardError(ValueError):
    """A shard that cannot be read, or that does not match its stats; the message names the shard
    (and the sample key, for a member that does not decode) and says how to fix it."""

    def __init__(self, message: str, *, shard: str | None = None, key: str | None = None):
        super().__init__(message)
        self.shard, self.key = shard, key


def _shard_error(shard, problem: str, *, key: str | None = None, fix: str = _REBUILD) -> ShardError:
    """``ShardError("shard PATH[, key K]: problem; fix")``."""
    where = f"shard {str(shard)!r}" + (f", key {key!r}" if key is not None else "")
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


def decode_sample(raw: dict[str, bytes], *, only=None, window=None) -> dict:
    """Tar members of one sample -> numpy dict: ``color``/``draftK`` (H, W, 3) uint8, ``sketch``
    (H, W) uint8, ``hint`` (H, W, 4) uint8, ``regions`` (H, W) int32, ``json`` dict.

    ``only`` (a set of field names such as ``{"color", "sketch"}``; None: all) decodes just those
    members and never touches the others' bytes. ``window`` = (y, x, h, w) crops every image field
    and leaves each in the order its decoder gives (``decode_field``): the names of those in
    OpenCV's BGR(A) order are then listed in ``out["__bgr__"]``, for callers that reorder the
    channels in the copy they make anyway.

    Raises
    ------
    ShardError
        A member that does not decode (damaged image or json), naming the shard (``raw["__url__"]``,
        which ``iter_tar`` sets) and the key.
    """
    key = raw["__key__"]
    out: dict = {"__key__": key}
    if window is not None:
        out["__bgr__"] = set()
    for name, data in raw.items():
        if name.startswith("__"):
            continue
        base, _, ext = name.partition(".")
        if only is not None and base not in only:
            continue
        try:
            if name == "json":
                out["json"] = json.loads(data)
            elif ext in ("jpg", "png", "webp") and window is None:
                out[base] = decode_image_field(name, data)
            elif ext in ("jpg", "png", "webp"):
                out[base], bgr = decode_field(name, data, window=window)
                if bgr:
                    out["__bgr__"].add(base)
        except (ValueError, cv2.error) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            problem = f"member {key}.{name} does not decode ({type(exc).__name__}: {exc})"
            raise _shard_error(raw.get("__url__", "<unknown>"), problem, key=key) from exc
        # unknown members are left out: never unpickle or eval shard contents
    return out


# ---------------------------------------------------------------------------------------------
# writing


def shard_name(index: int) -> str:
    """The tar of the ``index``-th shard in plan order."""
    return f"shard-{index:06d}.tar"


def stats_name(index: int) -> str:
    """The stats file (commit marker) of the ``index``-th shard."""
    return f"shard-{index:06d}.stats.json"


def stats_path_of(tar) -> Path | None:
    """The stats file that commits the shard tar ``tar`` (None for a path that is not a ``.tar``)."""
    tar = Path(tar)
    return tar.with_name(tar.name[: -len(".tar")] + ".stats.json") if tar.name.endswith(".tar") else None


def tar_path_of(stats) -> Path:
    """The shard tar the stats file ``stats`` commits."""
    stats = Path(stats)
    return stats.with_name(stats.name.removesuffix(".stats.json") + ".tar")


def recorded_counts(paths) -> list[int | None]:
    """Each shard's ``nsamples`` as its stats file records it (None where it has no stats file)."""
    committed = [p for p in paths if (stats_path_of(p) or Path()).is_file()]
    return [int(shard_record(p).get("nsamples", 0)) if p in committed else None for p in paths]


def _tmp_path(path: Path) -> Path:
    """Where ``path`` is written before its rename."""
    # one temporary name per writing process: a retried or orphaned writer never shares a file
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def _fsync_dir(path: Path) -> None:
    """Make a rename inside the folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a ``.tmp`` file, fsync, rename, fsync the folder."""
    path = Path(path)
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


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


def write_tar(path: Path, samples: Iterable[dict[str, bytes]]) -> dict:
    """Write encoded samples to ``path`` atomically; returns nsamples, filesize, md5sum, sha256
    (hashed as the bytes are written)."""
    path = Path(path)
    tmp = _tmp_path(path)
    n = 0
    with open(tmp, "wb") as raw:
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


def commit_stats(out: Path, index: int, stats: dict) -> None:
    """Write the per-shard stats file: the commit marker, always after the tar is in place."""
    atomic_write(Path(out) / stats_name(index), json.dumps(stats, indent=1, sort_keys=True).encode())


# ---------------------------------------------------------------------------------------------
# scanning an output folder


VERIFY = ("sha256", "size")  # what a resume checks of each committed shard (see scan_committed)


def file_sha256(path) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB blocks (hashlib releases the GIL)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _mismatch(path: Path, record: dict, verify: str = "sha256") -> str | None:
    """Why the tar at ``path`` does not match its stats ``record`` (None when it does)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "tar missing"
    if record.get("filesize") != size:
        return f"size {size} != recorded {record.get('filesize')}"
    if verify == "size":
        return None
    if not isinstance(record.get("sha256"), str):
        return "no sha256 recorded"
    return None if file_sha256(path) == record["sha256"] else "sha256 mismatch"


def _threads(threads: int | None, n: int) -> int:
    """Hashing threads: ``threads``, else one per CPU (at most 8), never more than ``n`` files."""
    return max(1, min(n, threads or min(8, os.cpu_count() or 1)))


def scan_committed(
    out: Path, n_shards: int, *, verify: str = "sha256", threads: int | None = None
) -> tuple[dict[int, dict], dict[int, str]]:
    """The committed shards of a build folder, checked against their stats.

    Parameters
    ----------
    out : Path
        The build folder.
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
        of another sha256, or whose stats file does not parse. A shard without a stats file is
        neither (it was never committed).
    """
    if verify not in VERIFY:
        raise ValueError(f"verify must be one of {VERIFY}, got {verify!r}")
    out = Path(out)
    records, damaged = {}, {}
    for i in range(n_shards):
        stats_path = out / stats_name(i)
        if not stats_path.exists():
            continue
        try:
            records[i] = json.loads(stats_path.read_text())
        except (OSError, ValueError):
            damaged[i] = "stats file unreadable"
    indices = list(records)
    with ThreadPoolExecutor(_threads(threads, len(indices))) as pool:
        reasons = list(pool.map(lambda i: _mismatch(out / shard_name(i), records[i], verify), indices))
    for i, reason in zip(indices, reasons):
        if reason is not None:
            damaged[i] = reason
            del records[i]
    return records, dict(sorted(damaged.items()))


def committed_shards(out: Path, n_shards: int, *, verify: str = "sha256") -> dict[int, dict]:
    """Stats of every shard whose stats file exists and whose tar matches it (``scan_committed``)."""
    return scan_committed(out, n_shards, verify=verify)[0]


def uncommit(out: Path, indices: Iterable[int]) -> None:
    """Delete the stats files of shards ``indices``: they count as not built (a damaged shard)."""
    for i in indices:
        (Path(out) / stats_name(i)).unlink(missing_ok=True)


def damaged_summary(damaged: dict[int, str]) -> list[str]:
    """``["shard-000003.tar (sha256 mismatch)", ...]``: what a resume rebuilt, for its summary."""
    return [f"{shard_name(i)} ({why})" for i, why in sorted(damaged.items())]


def shard_record(path) -> dict | None:
    """What the build recorded about the tar at ``path``: its stats file, else its entry in the
    folder's ``shardindex.json``, else None.

    Raises
    ------
    ShardError
        The stats file or index exists but does not parse.
    """
    path = Path(path)
    stats = stats_path_of(path)
    index = path.with_name(INDEX_JSON)
    try:
        if stats is not None and stats.exists():
            return json.loads(stats.read_text())
        if index.exists():
            entries = json.loads(index.read_text()).get("shardlist", [])
            return next((e for e in entries if e.get("url") == path.name), None)
    except (OSError, ValueError, AttributeError) as exc:
        raise _shard_error(path, f"its stats file or {INDEX_JSON} does not parse ({exc})") from exc
    return None


def verify_shard(path, record: dict | None = None) -> dict:
    """Check the tar at ``path`` against its recorded size and sha256; returns the record.

    Parameters
    ----------
    path : str or Path
        A shard tar.
    record : dict or None
        Its stats (``filesize``, ``sha256``); None reads ``shard_record(path)``.

    Raises
    ------
    ShardError
        Naming the shard: no record, tar missing, size or sha256 mismatch.
    """
    record = shard_record(path) if record is None else record
    if record is None:
        name = Path(path).name.removesuffix(".tar")
        fix = f"verify needs the build folder's {name}.stats.json or {INDEX_JSON}, or pass verify=False"
        raise _shard_error(path, "no stats file or index entry records its sha256", fix=fix)
    why = _mismatch(Path(path), record)
    if why is not None:
        raise _shard_error(path, f"does not match its stats: {why}")
    return record


def verify_shards(paths: list, *, threads: int | None = None) -> dict[str, str]:
    """Check many tars (``verify_shard``) in ``threads`` threads; returns path -> why, for every
    damaged one (empty when all match)."""

    def check(p):
        """(path, message) when ``p`` is damaged, else None."""
        try:
            verify_shard(p)
        except ShardError as exc:
            return str(p), str(exc)
        return None

    with ThreadPoolExecutor(_threads(threads, len(paths))) as pool:
        return dict(r for r in pool.map(check, paths) if r is not None)


def shard_files(out: Path) -> list[Path]:
    """Every shard tar in the folder ``out``, sorted (committed or not)."""
    return sorted(Path(out).glob(_SHARD_GLOB))


def stats_files(out: Path) -> list[Path]:
    """Every shard's stats file in the folder ``out``, sorted: the committed shards."""
    return sorted(Path(out).glob(_STATS_GLOB))


def build_files(out: Path) -> list[Path]:
    """Every file a build writes into ``out`` that exists now (what ``--overwrite`` deletes)."""
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
    ``bytes`` per field (as ``field_bytes``) and ``seconds`` per stage."""
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


def shard_paths(path: str | os.PathLike | Iterable) -> list[str]:
    """A build folder, a tar, a glob or a list of those -> sorted list of tar paths."""
    if isinstance(path, (str, os.PathLike)):
        p = Path(path)
        if p.is_dir():
            return [str(x) for x in shard_files(p)]
        if any(ch in str(path) for ch in "*?["):
            import glob

            return sorted(glob.glob(str(path)))
        return [str(p)]
    return [q for item in path for q in shard_paths(item)]


def _check_end(path: str, f, offset: int) -> None:
    """From ``offset`` (where ``tarfile`` stopped) to the end of ``f`` there must be the end-of-archive
    blocks and nothing but NUL: ``tarfile`` ends at a damaged header, or at the end of a tar cut at a
    member boundary, as if the archive ended there."""
    f.seek(offset)
    at = offset
    while chunk := f.read(1 << 20):
        stripped = chunk.lstrip(b"\0")
        if stripped:
            size = os.fstat(f.fileno()).st_size
            raise _shard_error(
                path,
                f"damaged tar header at byte offset {offset} (bad checksum, or data where a header belongs; "
                f"first non-zero byte at {at + len(chunk) - len(stripped)}): the {size - offset} bytes after it "
                "would be lost",
            )
        at += len(chunk)
    if at - offset < tarfile.BLOCKSIZE:
        raise _shard_error(path, f"truncated: it ends at byte {at} without the end-of-archive blocks")


def iter_tar(path: str) -> Iterator[dict[str, bytes]]:
    """Group a tar's members by key (the basename up to its first dot), in file order.

    Each sample is ``{"__key__": key, "__url__": path, field: bytes, ...}``.

    Raises
    ------
    ShardError
        Naming the shard and the byte offset: a damaged header (which ``tarfile`` alone takes for
        the end of the archive), a truncated member, or a tar that does not open.
    """
    current: dict[str, bytes] | None = None
    url = str(path)
    with open(path, "rb") as f:
        offset = 0
        try:
            with tarfile.open(fileobj=f, mode="r|") as tar:
                for member in tar:
                    offset = member.offset
                    if not member.isfile():
                        continue
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
        except tarfile.TarError as exc:
            raise _shard_error(path, f"unreadable tar at or after byte offset {offset} ({exc})") from exc
        _check_end(url, f, offset)
    if current is not None:
        yield current
