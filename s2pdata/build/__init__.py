"""The build CLI: ``--src`` -> plan -> workers -> committed WebDataset shards in ``--out``.

    python -m s2pdata.build --src demo --out shards/
    python -m s2pdata.build --src danbooru/ --out shards/ --workers 16 --seed 1

The plan is made before anything is decoded: the source's items sorted by key, cut into shards
of ``--shard-size``. Each shard is built by one worker from (seed, key)-derived generators, so
the bytes do not depend on the worker count. A killed build resumes: committed shards (stats
file present, tar of the recorded size) are skipped and the rest rebuilt; a changed config or
plan is refused instead of mixing two builds in one folder.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from ..pool import KINDS, PatchPool
from ..shards import (
    DATASET_JSON,
    POOL_DIR,
    atomic_write,
    committed_shards,
    remove_partials,
    sum_stats,
    write_index,
    write_rejects,
)
from ..sources import Item, Source, source_from_args
from ..synth import SynthConfig
from .plan import (
    BuildRefused,
    PoolTask,
    ShardTask,
    _header,
    auto_shard_size,
    make_plan,
    package_versions,
    pool_plan,
    prepare_out,
)
from .runners import DISTRIBUTORS, BuildStopped, local_runner, ray_runner
from .worker import build_pool_part, build_shard

__all__ = ["BuildRefused", "BuildStopped", "run_build"]


def ensure_pool(
    out: Path, manifest: dict, items: list[Item], source: Source, cfg: SynthConfig, seed: int, run, bar_factory
) -> dict:
    """Build the patch pool once into ``out/pool`` (or reuse the one the manifest records)."""
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
    parts_dir = pool_dir / "parts"
    tasks = [
        PoolTask(tuple(chosen[i : i + 8]), source, cfg, seed, per_image, str(parts_dir / f"{i:08d}"))
        for i in range(0, len(chosen), 8)
    ]
    with bar_factory(len(chosen), "patch pool") as bar:
        parts = run(build_pool_part, tasks, bar)
    pool = PatchPool.merge(parts, pool_dir, limit=cfg.pool_size)
    record = {
        "dir": POOL_DIR,
        "size": len(pool),
        "sha256": pool.sha256,
        "from_items": len(chosen),
        "per_item": per_image,
        "kinds": {k: sum(p.kind == k for p in pool) for k in KINDS},
    }
    shutil.rmtree(parts_dir)
    return record


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
) -> dict:
    """Plan, build and commit every shard; returns the final ``dataset.json`` content.

    ``src`` is a ``--src`` string (read with the CLI's default source flags) or a source object
    from ``s2pdata.sources.source_from_args``.
    """
    from tqdm.auto import tqdm

    if distributor not in DISTRIBUTORS:
        raise ValueError(f"distributor must be one of {DISTRIBUTORS}, got {distributor!r}")
    if shard_size is not None and (not isinstance(shard_size, int) or shard_size < 1):
        raise ValueError(f"shard_size must be a positive int or None (auto), got {shard_size!r}")
    out = Path(out)

    def bar_factory(total, desc, initial=0):
        return tqdm(total=total, initial=initial, unit="img", desc=desc, disable=not progress, smoothing=0.1)

    # workers start now (importing their libraries) while this process lists the source and plans
    runner = ray_runner(workers, ray_address) if distributor == "ray" else local_runner(workers)
    with runner as run:
        if isinstance(src, str):
            src = source_from_args(
                src, _cli_defaults().parse_args(["--src", src, "--out", str(out)]), seed=seed, out=out
            )
        source = src
        items = sorted(source.items(), key=lambda it: it.key)
        if limit is not None:
            items = items[:limit]
        shard_size = shard_size or auto_shard_size(len(items))
        plan = make_plan(items, shard_size)
        header = _header(source, cfg, seed, shard_size, plan)
        if progress:
            print(
                source.summary() + f"\nplan: {len(items)} items in {len(plan)} shards of {shard_size} -> {out}",
                file=sys.stderr,
            )
        previous = {}
        if (out / DATASET_JSON).exists() and not overwrite:
            previous = json.loads((out / DATASET_JSON).read_text())
        prepare_out(out, header, overwrite=overwrite)
        manifest = {**header, "versions": package_versions(cfg), "status": "building"}
        if previous.get("pool"):
            manifest["pool"] = previous["pool"]
        atomic_write(out / DATASET_JSON, json.dumps(manifest, indent=1).encode())
        remove_partials(out)
        if (out / POOL_DIR).exists():
            remove_partials(out / POOL_DIR)
        done = committed_shards(out, len(plan))
        t0 = time.perf_counter()
        if cfg.drafts and len(done) < len(plan):
            manifest["pool"] = ensure_pool(out, manifest, items, source, cfg, seed, run, bar_factory)
            atomic_write(out / DATASET_JSON, json.dumps(manifest, indent=1).encode())
        t_pool = time.perf_counter() - t0
        pool_dir = str(out / POOL_DIR) if cfg.drafts else None
        pool_sha = manifest["pool"]["sha256"] if cfg.drafts and "pool" in manifest else None
        tasks = [
            ShardTask(i, shard, source, cfg, seed, str(out), pool_dir, pool_sha)
            for i, shard in enumerate(plan)
            if i not in done
        ]
        with bar_factory(len(items), f"build {out.name}", sum(len(plan[i]) for i in done)) as bar:
            for stats in run(build_shard, tasks, bar):
                done[stats["index"]] = stats
        remove_partials(out)  # what a worker that died while writing left (every shard is committed)
    elapsed = time.perf_counter() - t0
    stats = [done[i] for i in range(len(plan))]
    write_index(out, stats)
    skipped = [{"key": None, **entry} for entry in getattr(source, "skipped", [])]
    n_rejects = write_rejects(out, stats, skipped)
    summed = sum_stats(stats)
    reasons = Counter(summed["reasons"]) + Counter(r["reason"] for r in skipped)
    manifest.update(
        status="complete",
        totals={
            "items": len(items),
            "samples": summed["samples"],
            "rejected": n_rejects,
            "reasons": dict(reasons),
            "bytes": summed["bytes"],
            "shards": len(plan),
            "built_this_run": len(tasks),
            "seconds_this_run": round(elapsed, 2),
            "seconds_pool_this_run": round(t_pool, 2),
            "seconds_shards_this_run": round(elapsed - t_pool, 2),
        },
    )
    atomic_write(out / DATASET_JSON, json.dumps(manifest, indent=1).encode())
    return manifest


def _cli_defaults():
    from .cli import make_parser

    return make_parser()
