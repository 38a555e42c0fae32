"""The build: ``--src`` -> plan -> workers -> committed WebDataset shards in ``--out``.

    python -m s2pdata.build --src demo --out shards/
    python -m s2pdata.build --src danbooru/ --out shards/ --workers 16 --seed 1

The plan is made before anything is decoded: the source's items sorted by key, cut into shards
of ``--shard-size``. Each shard is built by one worker from (seed, key)-derived generators, so
the bytes do not depend on the worker count. A killed build resumes: committed shards (stats
file present, tar of the recorded size and sha256) are skipped and the rest rebuilt; a changed config or
plan is refused instead of mixing two builds in one folder. One build at a time holds ``--out``
(``plan.lock_out``): a second build or an ``--overwrite`` there is refused, naming the holder.
Workers die with their parent; a full disk stops the build with ``DiskFull``, and the same
command resumes once space is freed.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import shutil
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from .. import storage
from .._jit import kernel_cache_is_cold
from .._safeio import atomic_write
from ..pool import KINDS, PatchPool
from ..shards import (
    CACHE_DIR,
    DATASET_JSON,
    POOL_DIR,
    POOL_PARTS,
    damaged_summary,
    pool_chunk_name,
    read_manifest,
    remove_partials,
    scan_committed,
    stats_files,
    sum_stats,
    uncommit,
    write_index,
    write_rejects,
)
from ..sources import Item, Source, describe_empty, source_from_args
from ..storage import StorageError
from ..synth import SynthConfig
from .plan import (
    BuildRefused,
    PoolTask,
    ShardTask,
    auto_shard_size,
    is_held,
    lock_out,
    make_plan,
    manifest_header,
    package_versions,
    pool_plan,
    prepare_out,
)
from .remote import LISTINGS, RemoteOut
from .runners import BuildStopped, check_distributor, make_runner
from .worker import build_pool_part, build_shard

__all__ = ["BuildRefused", "BuildStopped", "DiskFull", "NothingToBuild", "run_build"]


class DiskFull(BuildStopped):
    """The disk filled up mid-build; committed shards are kept and the same command resumes."""


class NothingToBuild(BuildRefused):
    """The source lists no items; the message says what ``--src`` holds instead."""


MAX_WORKERS = 1024  # worker processes on one machine: more is a typo, and would fork that many
POOL_CHUNK = 8  # items per patch-pool task: small, so the pre-pass spreads over every worker
KERNELS_NOTICE = "compiling kernels, once per machine (about 40 s)"


def run_build(
    *,
    src: str | Source,
    out: str | Path,
    cfg: SynthConfig,
    seed: int = 0,
    shard_size: int | None = None,
    workers: int = 1,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    distributor: str = "local",
    ray_address: str | None = None,
    storage_options: dict | None = None,
    staging: str | Path | None = None,
) -> dict:
    """Plan, build and commit every shard; returns the final ``dataset.json`` content.

    Parameters
    ----------
    src : str or Source
        A ``--src`` string (read with the CLI's default source flags) or a source object from
        ``s2pdata.sources.source_from_args``.
    out : str or Path
        The build folder; a folder holding the same build is resumed. A URL (``s3://bucket/run``,
        ``gs://``, ``hf://``) builds into object storage (``s2pdata.build.remote``).
    cfg : SynthConfig
        What every sample contains.
    seed : int
        Run seed; with each sample's key it decides every random draw.
    shard_size : int or None
        Planned items per shard; None picks ``auto_shard_size``.
    workers : int
        Worker processes (one builds in this process).
    limit : int or None
        Build only the first ``limit`` items in key order.
    overwrite : bool
        Delete a build already in ``out`` first, instead of resuming it.
    progress : bool
        Show progress bars and the plan summary on stderr.
    distributor : str
        ``"local"`` or ``"ray"`` (``s2pdata.build.runners``).
    ray_address : str or None
        A Ray cluster to join; None starts a local Ray.
    storage_options : dict or None
        Options of the filesystem of a URL ``out`` (endpoint, credentials...; ``s2pdata.storage``).
    staging : path or None
        The local working folder of a build into a URL (manifest, pool and caches while it runs);
        None: ``s2pdata.build.remote.staging_dir``.
    """
    _check_counts(seed=seed, shard_size=shard_size, workers=workers, limit=limit)
    check_distributor(distributor)
    with hold_out(out, storage_options=storage_options, staging=staging, overwrite=overwrite) as (local, remote):
        try:
            return _build(
                src,
                local,
                cfg,
                seed,
                shard_size,
                workers,
                limit,
                overwrite,
                progress,
                distributor,
                ray_address,
                remote=remote,
                storage_options=storage_options,
            )
        except StorageError as exc:
            if remote is None:
                raise
            raise BuildStopped(
                f"{exc}; the shards committed to {remote} are kept: run the same command again once the store "
                "answers, and it resumes where it stopped"
            ) from exc


@contextmanager
def hold_out(out, *, storage_options: dict | None = None, staging=None, overwrite: bool = False):
    """Hold the build folder ``out`` for the ``with`` block (one build at a time) and yield
    ``(local, remote)``: the local folder the build works in, and None, or for a URL ``out`` its
    ``RemoteOut`` (the lock object held, the store's manifest, pool and caches fetched into the
    staging folder, or with ``overwrite`` the store's build deleted). With ``overwrite`` the cached
    listings of folder URLs are dropped too (the source is listed anew); tar indexes are kept (each
    is keyed by its tar's size). Nested calls share the hold."""
    if not storage.is_remote(out):
        local = Path(storage.local(out))
        outermost = not is_held(local)
        with lock_out(local):  # a second build, or an --overwrite, is refused
            if overwrite and outermost:
                shutil.rmtree(local / LISTINGS, ignore_errors=True)  # list the source anew
            yield local, None
        return
    remote = RemoteOut(str(out), storage_options, staging)
    with lock_out(remote.local), remote.lock() as first:
        if first:
            remote.pull(overwrite=overwrite)
        try:
            yield remote.local, remote
        except BaseException:
            remote.settle(raise_errors=False)  # no upload outlives the lock
            raise
        remote.settle()


def _build(
    src,
    out: Path,
    cfg,
    seed,
    shard_size,
    workers,
    limit,
    overwrite,
    progress,
    distributor,
    ray_address,
    *,
    remote,
    storage_options,
):
    """``run_build``'s body, run while ``out`` is held; ``remote`` the ``RemoteOut`` of a URL build, or
    None; ``storage_options`` for a URL ``--src`` given as a string, and the store."""
    bars = _bar_factory(progress)
    target = remote.url if remote else out  # where shards are committed and scanned
    so = remote.options if remote else None
    # Ray workers may run on machines that share no disk with this one: the pool reaches them through the store
    via_store = remote is not None and distributor == "ray"
    # workers start now (importing their libraries) while this process lists the source and plans
    with make_runner(distributor, workers, ray_address, warm=(remote.url, so) if remote else None) as run:
        if isinstance(src, str):
            src = source_from_args(src, _default_args(storage_options=storage_options), seed=seed, out=out)
        source = src
        items, plan, header = _plan(source, cfg, seed, shard_size, limit)
        if remote:
            remote.publish_tree(CACHE_DIR)  # listings and tar indexes, for a resume on any machine
        if progress:
            print(
                f"{source.summary()}\nplan: {len(items)} items in {len(plan)} shards of "
                f"{header['config']['shard_size']} -> {remote or out}",
                file=sys.stderr,
            )
        with _writing(out, "the manifest"):
            manifest = _start_manifest(out, header, cfg, overwrite)
            if remote:
                remote.publish(DATASET_JSON)
        done, damaged = scan_committed(target, len(plan), storage_options=so)  # size and sha256 of each tar
        uncommit(target, damaged, storage_options=so)  # a damaged shard is rebuilt, and the summary names it
        manifest["rebuilt_damaged"] = damaged_summary(damaged)
        if progress and damaged:
            print(f"rebuilding damaged shards: {', '.join(manifest['rebuilt_damaged'])}", file=sys.stderr)
        if progress and len(done) < len(plan) and kernel_cache_is_cold():
            print(KERNELS_NOTICE, file=sys.stderr)
        t0 = time.perf_counter()
        # into a URL also when every shard is committed: a pool whose upload failed is made and published again
        if cfg.drafts and (len(done) < len(plan) or remote):
            with _writing(out, f"the patch pool ({out / POOL_DIR})"):
                manifest["pool"] = ensure_pool(
                    out, manifest, items, source, cfg, seed, run, bars, remote=remote, via_store=via_store
                )
                _write_manifest(out, manifest)
                if remote:
                    remote.publish(DATASET_JSON)
        t_pool = time.perf_counter() - t0
        pool_dir = (remote.path(POOL_DIR) if via_store else str(out / POOL_DIR)) if cfg.drafts else None
        tasks = _shard_tasks(plan, done, source, cfg, seed, target, manifest, pool_dir, so)
        name = storage.name_of(target)
        with _writing(out, "shards"), bars(len(items), f"build {name}", sum(len(plan[i]) for i in done)) as bar:
            for stats in run(build_shard, tasks, bar):
                done[stats["index"]] = stats
        remove_partials(out)  # what a worker that died while writing left (every shard is committed)
    seconds = {"this_run": time.perf_counter() - t0, "pool": t_pool}
    stats = [done[i] for i in range(len(plan))]
    with _writing(out, "the index, rejects log and manifest"):
        manifest = _finish(out, manifest, source, stats, n_items=len(items), built=len(tasks), seconds=seconds)
    if remote:
        remote.publish_finish()
    return manifest


@contextmanager
def _writing(out: Path, what: str):
    """Turn a full disk (``ENOSPC``, ``EDQUOT``) inside the block into ``DiskFull`` saying what was written."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        try:  # the unfinished files a full disk left: removing them frees some space
            removed = remove_partials(out)
        except OSError:
            removed = []
        where = f" ({exc.filename})" if exc.filename else ""
        raise DiskFull(
            f"no space left on the device while writing {what}{where} in {out}: the {len(stats_files(out))} "
            "committed shard(s) there are safe and will be kept"
            + (f"; {len(removed)} unfinished file(s) removed" if removed else "")
            + ". Free space and run the same command again: it resumes where it stopped."
        ) from exc


def _check_counts(*, seed, shard_size, workers, limit) -> None:
    """Refuse a count that is not an int of the right size, naming the argument."""
    for name, value, low, high, fix in (
        ("seed", seed, 0, 2**64 - 1, "an int in 0..2**64-1"),
        ("shard_size", shard_size, 1, None, "a positive int, or None for ceil(items / 64)"),
        ("workers", workers, 1, MAX_WORKERS, f"an int in 1..{MAX_WORKERS}"),
        ("limit", limit, 0, None, "a non-negative int, or None for every item"),
    ):
        if value is None and name in ("shard_size", "limit"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
            raise ValueError(f"{name} must be {fix}, got {value!r}")


def _bar_factory(progress: bool):
    """``bars(total, desc, initial=0)``: a tqdm bar counting images, hidden without ``progress``."""
    from tqdm.auto import tqdm

    def bars(total, desc, initial=0):
        """A bar for ``total`` images, ``initial`` of them done before this run."""
        return tqdm(total=total, initial=initial, unit="img", desc=desc, disable=not progress, smoothing=0.1)

    return bars


def _default_args(**values):
    """The CLI's default values of every flag (and ``values``), for sources given as ``--src`` strings."""
    from .cli import default_args

    args = default_args()
    vars(args).update(values)
    return args


def _plan(source: Source, cfg: SynthConfig, seed: int, shard_size: int | None, limit: int | None):
    """The source's items in key order (the first ``limit``), cut into shards, and the manifest header."""
    items = sorted(source.items(), key=lambda it: it.key)
    if not items:
        raise NothingToBuild(f"nothing to build: {describe_empty(source)}")
    if limit is not None:
        items = items[:limit]
    shard_size = shard_size or auto_shard_size(len(items))
    plan = make_plan(items, shard_size)
    return items, plan, manifest_header(source, cfg, seed, shard_size, plan)


def _start_manifest(out: Path, header: dict, cfg: SynthConfig, overwrite: bool) -> dict:
    """Prepare ``out`` and mark the build as in progress; a resumed build keeps its pool's record."""
    versions = package_versions(cfg)
    prepare_out(out, header, versions, overwrite=overwrite)  # a damaged dataset.json is refused there
    previous = read_manifest(out) if (out / DATASET_JSON).exists() and not overwrite else {}
    manifest = {**header, "versions": versions, "status": "building"}
    if previous.get("pool"):
        manifest["pool"] = previous["pool"]
    _write_manifest(out, manifest)
    remove_partials(out)
    return manifest


def _write_manifest(out: Path, manifest: dict) -> None:
    """``dataset.json``, replaced atomically."""
    atomic_write(out / DATASET_JSON, json.dumps(manifest, indent=1).encode())


def ensure_pool(
    out: Path,
    manifest: dict,
    items: list[Item],
    source: Source,
    cfg: SynthConfig,
    seed: int,
    run,
    bars,
    remote=None,
    via_store: bool = False,
) -> dict:
    """Build the patch pool once into ``out/pool`` (or reuse the one the manifest records).

    For a build into a URL (``remote``) the pool is uploaded beside the shards. With ``via_store``
    (Ray: a node need not share this machine's disk), the pre-pass workers upload their parts to
    the store, they are fetched here and merged, and each shard worker fetches the pool once.

    Returns the manifest's ``pool`` record: folder, size, sha256, contributing items, kinds.
    """
    pool_dir = out / POOL_DIR
    recorded = manifest.get("pool")
    if recorded:
        try:
            if PatchPool.load(pool_dir).sha256 == recorded["sha256"]:  # index and files all there
                return recorded
        except (OSError, ValueError):
            pass
    chosen, per_image = pool_plan(items, seed, cfg.pool_size)
    shutil.rmtree(pool_dir, ignore_errors=True)  # a stale pool, or what a killed pre-pass left
    parts_dir = pool_dir / POOL_PARTS
    parts_at = remote.path(f"{POOL_DIR}/{POOL_PARTS}") if via_store else str(parts_dir)
    so = remote.options if via_store else None
    tasks = [
        PoolTask(tuple(chosen[i : i + POOL_CHUNK]), source, cfg, seed, per_image, f"{parts_at}/{pool_chunk_name(i)}")
        for i in range(0, len(chosen), POOL_CHUNK)
    ]
    tasks = [dataclasses.replace(t, storage_options=so) for t in tasks] if so else tasks
    with bars(len(chosen), "patch pool") as bar:
        parts = run(build_pool_part, tasks, bar)
    if via_store:
        parts = [remote.fetch_tree(part, parts_dir / storage.name_of(part)) for part in parts]
        remote.remove_tree(parts_at)
    pool = PatchPool.merge(parts, pool_dir, limit=cfg.pool_size)
    shutil.rmtree(parts_dir)
    if remote:
        # this machine's workers read the staging folder's pool: its upload (for a resume elsewhere)
        # overlaps the shards; Ray's workers fetch it from the store, so it is there first
        remote.publish_tree(POOL_DIR, background=not via_store)
    return {
        "dir": POOL_DIR,
        "size": len(pool),
        "sha256": pool.sha256,
        "from_items": len(chosen),
        "per_item": per_image,
        "kinds": {k: sum(p.kind == k for p in pool) for k in KINDS},
    }


def _shard_tasks(plan, done: dict, source: Source, cfg: SynthConfig, seed: int, out, manifest: dict, pool_dir, so):
    """A task for every shard of the plan not yet committed, into ``out`` (a folder or a URL), its
    drafts pasting from the pool at ``pool_dir`` (a folder or a URL; None without drafts)."""
    pool_sha = manifest["pool"]["sha256"] if cfg.drafts and "pool" in manifest else None
    return [
        ShardTask(i, shard, source, cfg, seed, str(out), pool_dir, pool_sha, storage_options=so)
        for i, shard in enumerate(plan)
        if i not in done
    ]


def _finish(out: Path, manifest: dict, source: Source, stats: list[dict], *, n_items, built, seconds) -> dict:
    """Index, rejects and totals of a finished build; the manifest marked complete and returned."""
    write_index(out, stats)
    skipped = [{"key": None, **entry} for entry in getattr(source, "skipped", [])]
    n_rejects = write_rejects(out, stats, skipped)
    summed = sum_stats(stats)
    reasons = Counter(summed["reasons"]) + Counter(r["reason"] for r in skipped)
    manifest.update(
        status="complete",
        totals={
            "items": n_items,
            "samples": summed["samples"],
            "rejected": n_rejects,
            "reasons": dict(reasons),
            "bytes": summed["bytes"],
            "shards": len(stats),
            "built_this_run": built,
            "seconds_this_run": round(seconds["this_run"], 2),
            "seconds_pool_this_run": round(seconds["pool"], 2),
            "seconds_shards_this_run": round(seconds["this_run"] - seconds["pool"], 2),
        },
    )
    _write_manifest(out, manifest)
    return manifest
