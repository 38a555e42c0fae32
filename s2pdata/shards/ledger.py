"""The ledger of a build folder: per-shard stats (the commit marker), the manifest, the wids index,
the rejects log, and the checks of tars against their records (resume, verify).

A shard is committed when its stats file exists: the tar first (renamed or uploaded whole), the stats
file last. Every function takes a local folder or a URL (``s2pdata.storage``).
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import storage
from .._safeio import atomic_write
from .._stream import HashingReader, StreamError
from .format import (
    _MANIFEST_FIX,
    _POOL_GLOB,
    _SHARD_GLOB,
    _STATS_GLOB,
    _TMP_GLOB,
    DATASET_JSON,
    INDEX_JSON,
    POOL_DIR,
    POOL_PARTS,
    REJECTS,
    ShardError,
    _shard_error,
    dumps_json,
    shard_name,
    stats_name,
    stats_path_of,
)


def recorded_counts(paths, *, storage_options: dict | None = None) -> list[int | None]:
    """Each shard's ``nsamples`` as its stats file records it (None where it has no stats file, or one
    without the count). Raises ``ShardError`` naming a stats file that is damaged (``shard_record``).
    ``storage_options`` go to the filesystem of URLs (``s2pdata.storage``)."""
    so = storage_options
    stats = [stats_path_of(p) for p in paths]
    present = [s for s in stats if s is not None and storage.isfile(s, so)]
    blobs = dict(zip(present, storage.read_many(present, so)))  # for URLs: concurrent requests
    return [
        shard_record(p, storage_options=so, stats_bytes=blobs[s]).get("nsamples") if s in blobs else None
        for p, s in zip(paths, stats)
    ]


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


def _json_of(path, storage_options: dict | None = None, data: bytes | None = None) -> object:
    """The parsed JSON file at ``path`` (a local path or a URL), or of its bytes ``data`` read
    already; ValueError (also for brackets nested past the parser's depth, a RecursionError) when it
    does not parse."""
    try:
        return json.loads(storage.read_bytes(path, storage_options) if data is None else data)
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
    wanted = [i for i in range(n_shards) if stats_name(i) in present]
    # a URL's stats objects read together (concurrent requests; a store that fails stops the scan)
    blobs = storage.read_many([storage.join(out, stats_name(i)) for i in wanted], so) if storage.is_remote(out) else []
    for i, blob in itertools.zip_longest(wanted, blobs):
        try:
            record = _json_of(storage.join(out, stats_name(i)), so, blob)
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


def _json_if_there(path, storage_options: dict | None, data: bytes | None = None) -> tuple[bool, object]:
    """``(True, parsed)`` for the JSON file at ``path`` (or its bytes ``data``), ``(False, None)``
    when there is none: one request for a URL, not a look-up and then a read."""
    try:
        return True, _json_of(path, storage_options, data)
    except FileNotFoundError:
        return False, None


def shard_record(path, *, storage_options: dict | None = None, stats_bytes: bytes | None = None) -> dict | None:
    """What the build recorded about the tar at ``path``: its stats file (whose bytes may be given,
    read already: ``stats_bytes``), else its entry in the folder's ``shardindex.json``, else None.
    ``path`` may be a URL, read with ``storage_options``.

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
        found, record = _json_if_there(stats, so, stats_bytes) if stats is not None else (False, None)
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
