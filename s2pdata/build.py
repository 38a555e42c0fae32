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

import argparse
import atexit
import hashlib
import json
import os
import platform
import shutil
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import SCHEMA_VERSION, __version__
from ._rng import stable_seed
from .decode import CROPS, DecodeError
from .drafts import KINDS, PatchPool
from .learned import weights_digest
from .shards import (COLOR_FORMATS, DATASET_JSON, INDEX_JSON, REJECTS, atomic_write, commit_stats,
                     committed_shards, encode_sample, remove_partials, shard_name, sum_stats, write_index,
                     write_rejects, write_tar)
from .sketch import SKETCH_METHODS
from .sources import Item, Source, add_source_arguments, source_from_args
from .synth import OPTIONAL_FIELDS, SKETCH_STYLES, SynthConfig, Timer, make_sample, pool_patches


@dataclass(frozen=True)
class ShardTask:
    """Everything one worker needs to build one shard (picklable)."""

    index: int
    items: tuple[Item, ...]
    source: Source
    cfg: SynthConfig
    seed: int
    out: str
    pool_dir: str | None = None
    pool_sha256: str | None = None  # part of the cache key: an overwritten pool is reloaded
    crashed: tuple[str, ...] = ()  # keys whose processing killed a worker: rejected, never read


@dataclass(frozen=True)
class PoolTask:
    """A chunk of the items that give the patch pool its patches (picklable)."""

    items: tuple[Item, ...]
    source: Source
    cfg: SynthConfig
    seed: int
    per_image: int
    part_dir: str  # the worker writes its patches here (pixels never travel through pickles)
    crashed: tuple[str, ...] = ()  # keys whose processing killed a worker: skipped


# ---------------------------------------------------------------------------------------------
# one shard, in a worker

_progress = None  # worker-side queue: count of items finished, sent to the parent's progress bar
_inflight = None  # worker-side file descriptor: the key being processed now (see local_runner)
CRASHED = "worker-crashed"  # the reject reason of an item whose processing kills its worker


def _init_worker(queue, inflight_dir: str) -> None:
    from ._jit import worker_setup

    global _progress, _inflight
    _progress = queue
    _inflight = os.open(os.path.join(inflight_dir, str(os.getpid())), os.O_WRONLY | os.O_CREAT, 0o644)
    worker_setup()  # kernels load from Numba's disk cache on first use: only the ones this build needs
    atexit.register(_exit_now)


def _mark(key: str) -> None:
    """Record which item this worker is on (written to the kernel, so it survives a crash)."""
    if _inflight is not None:
        os.pwrite(_inflight, key.encode().ljust(_KEY_SLOT)[:_KEY_SLOT], 0)


_KEY_SLOT = 256  # keys are at most 96 characters (sources.base.sanitize_key)


def _exit_now() -> None:
    """A pool worker's last act: its results and progress are delivered by now, so skip the
    interpreter's teardown of numba, OpenCV and friends (about 0.3 s on the build's critical path)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _started() -> None:
    """A no-op task: submitting one per worker makes the pool spawn them all up front."""


def _tick(n: int) -> None:
    if _progress is not None:
        _progress.put(n)


@lru_cache(maxsize=2)
def _open_pool(pool_dir: str | None, sha256: str | None):
    return PatchPool.load(pool_dir) if pool_dir else None  # memory-mapped: pages shared by workers


def build_pool_part(task: PoolTask, tick=_tick) -> str:
    """Patches from a chunk of items, saved as a pool in ``task.part_dir``; unreadable items give
    none (the shard phase reports them)."""
    patches = []
    for item in task.items:
        if item.key in task.crashed:
            tick(1)
            continue
        _mark(item.key)
        try:
            patches += pool_patches(task.source.read(item), key=item.key, seed=task.seed, cfg=task.cfg,
                                    per_image=task.per_image, check=task.source.check_pixels)
        except (DecodeError, OSError):
            pass
        _mark("")
        tick(1)
    PatchPool(patches).save(task.part_dir)
    return task.part_dir


def build_shard(task: ShardTask, tick=_tick) -> dict:
    """Build, write and commit one shard; bad items become rejects in its stats."""
    timer = Timer()
    pool = _open_pool(task.pool_dir, task.pool_sha256)
    schema = task.cfg.schema()
    samples, rejects = [], []
    nbytes: dict[str, int] = {}
    pending = 0
    last = time.monotonic()
    for item in task.items:
        if item.key in task.crashed:
            rejects.append({"key": item.key, "path": str(item.locator), "reason": CRASHED,
                            "detail": "a worker process died while this file was being decoded or synthesised, "
                                      "also when it ran alone"})
            pending += 1
            continue
        _mark(item.key)
        try:
            with timer("read"):
                data = task.source.read(item)
            sample = make_sample(data, key=item.key, seed=task.seed, cfg=task.cfg, meta=item.meta,
                                 timer=timer, check=task.source.check_pixels, pool=pool)
            with timer("encode"):
                encoded = encode_sample(sample, schema)
            for field, blob in encoded.items():
                if not field.startswith("__"):
                    nbytes[field] = nbytes.get(field, 0) + len(blob)
            samples.append(encoded)
        except DecodeError as exc:
            rejects.append({"key": item.key, "path": str(item.locator), "reason": exc.reason,
                            "detail": str(exc)})
        except OSError as exc:
            rejects.append({"key": item.key, "path": str(item.locator), "reason": "read-error",
                            "detail": f"{type(exc).__name__}: {exc}"})
        _mark("")
        pending += 1
        if time.monotonic() - last > 0.2:
            tick(pending)
            pending, last = 0, time.monotonic()
    with timer("write"):
        info = write_tar(Path(task.out) / shard_name(task.index), samples)
    tick(pending)
    stats = {"shard": shard_name(task.index), "index": task.index, **info,
             "items": len(task.items), "rejected": len(rejects),
             "reasons": dict(Counter(r["reason"] for r in rejects)),
             "rejects": rejects, "bytes": nbytes,
             "seconds": {k: round(v, 4) for k, v in timer.seconds.items()}}
    commit_stats(Path(task.out), task.index, stats)
    return stats


# ---------------------------------------------------------------------------------------------
# the plan and the output folder


def make_plan(items: list[Item], shard_size: int) -> list[tuple[Item, ...]]:
    """Sorted items cut into consecutive shards of ``shard_size``."""
    items = sorted(items, key=lambda it: it.key)
    return [tuple(items[i:i + shard_size]) for i in range(0, len(items), shard_size)]


def plan_digest(plan: list[tuple[Item, ...]]) -> str:
    """sha256 over every shard's keys and locators: equal plans, equal digests."""
    h = hashlib.sha256()
    for shard in plan:
        for it in shard:
            h.update(f"{it.key}\t{it.locator}\n".encode())
        h.update(b"--\n")
    return h.hexdigest()


POOL_DIR = "pool"
PATCHES_PER_IMAGE = (8, 32)  # fewest and most patches cut from one contributing image


def pool_plan(items: list[Item], seed: int, pool_size: int) -> tuple[list[Item], int]:
    """The items that give the pool its patches and how many each gives.

    A seeded, worker-independent spread over the whole dataset (keys in blake2b order): enough
    images for ``pool_size`` patches at 8 each, but on a small dataset no more than a quarter of
    it (then up to 32 patches each), so the pre-pass stays a small part of the build.
    """
    lo, hi = PATCHES_PER_IMAGE
    n_items = min(-(-pool_size // lo), max(8, -(-len(items) // 4)))
    ranked = sorted(items, key=lambda it: stable_seed(seed, it.key, "pool-pick"))[:n_items]
    return ranked, max(lo, min(hi, -(-pool_size // max(1, len(ranked)))))


def ensure_pool(out: Path, manifest: dict, items: list[Item], source: Source, cfg: SynthConfig, seed: int,
                run, bar_factory) -> dict:
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
    tasks = [PoolTask(tuple(chosen[i:i + 8]), source, cfg, seed, per_image, str(parts_dir / f"{i:08d}"))
             for i in range(0, len(chosen), 8)]
    with bar_factory(len(chosen), "patch pool") as bar:
        parts = run(build_pool_part, tasks, bar)
    pool = PatchPool.merge(parts, pool_dir, limit=cfg.pool_size)
    record = {"dir": POOL_DIR, "size": len(pool), "sha256": pool.sha256, "from_items": len(chosen),
              "per_item": per_image, "kinds": {k: sum(p.kind == k for p in pool) for k in KINDS}}
    shutil.rmtree(parts_dir)
    return record


def package_versions(cfg: SynthConfig) -> dict:
    import cv2
    import numba
    import numpy
    import PIL

    versions = {"s2pdata": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
                "opencv": cv2.__version__, "numba": numba.__version__, "pillow": PIL.__version__}
    if cfg.sketch == "learned":  # a network's output depends on the torch build as well
        import torch

        versions["torch"] = torch.__version__
    return versions


def _header(source: Source, cfg: SynthConfig, seed: int, shard_size: int, plan) -> dict:
    """The part of dataset.json that must match for a resume to continue."""
    config = {**cfg.to_json(), "shard_size": shard_size}
    if cfg.sketch == "learned":
        config["sketch_weights_sha256"] = weights_digest(cfg.sketch_weights)
    return {"schema_version": SCHEMA_VERSION, "fields": cfg.schema().fields(), "seed": seed,
            "source": source.spec(), "config": config,
            "plan": {"shards": len(plan), "items": sum(map(len, plan)), "sha256": plan_digest(plan)}}


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: folder has {a!r}, this run has {b!r}")
    return out


class BuildRefused(RuntimeError):
    """The output folder holds a different build; nothing was touched."""


class BuildStopped(RuntimeError):
    """Workers kept dying; committed shards are kept and a re-run resumes."""


def _owned_files(out: Path) -> list[Path]:
    names = [DATASET_JSON, INDEX_JSON, REJECTS]
    return ([out / n for n in names if (out / n).exists()] + sorted(out.glob(f"{POOL_DIR}/patch_pool*"))
            + sorted(out.glob("shard-*.tar"))
            + sorted(out.glob("shard-*.stats.json")) + sorted(out.glob("*.tmp")))


def prepare_out(out: Path, header: dict, *, overwrite: bool) -> None:
    """Create ``out``, or check it holds the same build (resume), or clear it (overwrite)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / DATASET_JSON
    if overwrite:
        for p in _owned_files(out):
            p.unlink()
    elif manifest.exists():
        old = json.loads(manifest.read_text())
        diffs = _differences({k: old.get(k) for k in header}, header)
        if diffs:
            raise BuildRefused(
                f"{out} holds a different build, so it cannot be resumed:\n  " + "\n  ".join(diffs)
                + "\nRe-run with the folder's settings to resume it, pass --overwrite to delete it and "
                "build anew, or choose another --out.")
    elif any(out.glob("shard-*.tar")):
        raise BuildRefused(f"{out} holds shards but no {DATASET_JSON}; pass --overwrite or choose another --out")


# ---------------------------------------------------------------------------------------------
# running the plan


@contextmanager
def local_runner(workers: int):
    """``run(fn, tasks, bar) -> results`` on a spawned process pool (in-process for one worker).

    ``fn(task, tick)`` runs in a worker; ``tick(n)`` reaches the parent's progress bar through a
    queue. One pool serves every phase of a build.

    A file that kills its worker (a decoder's segfault, the kernel's OOM killer) does not stop the
    build. Each worker keeps the key it is on in a small file; when the pool breaks, the tasks
    that had a key in flight become suspects and run again one at a time in a single-worker pool,
    so a second death names its item for certain. That item is then excluded (``task.crashed``;
    a ``worker-crashed`` reject) and its task re-run; every other task simply runs again. (With
    one worker the build runs in this process and has no such protection.)
    """
    if workers <= 1:
        from ._jit import worker_setup

        worker_setup()
        yield lambda fn, tasks, bar: [fn(t, bar.update) for t in tasks]
        return
    import dataclasses
    import multiprocessing as mp
    import tempfile
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    inflight = tempfile.mkdtemp(prefix="s2pdata-inflight-")

    def new_pool(n: int) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(queue, inflight))
        for _ in range(n):
            pool.submit(_started)  # spawn them all now
        return pool

    pools = [new_pool(workers)]  # pools[0] serves the build; replaced when a crash breaks it
    killers: set[str] = set()  # keys known to kill a worker, excluded from every later task too

    def excluding(task, keys):
        hit = tuple(sorted(k for k in keys if k not in task.crashed and any(it.key == k for it in task.items)))
        return dataclasses.replace(task, crashed=task.crashed + hit) if hit else task

    def in_flight() -> set[str]:
        """The keys the workers were on, each slot then blanked (live workers keep writing to theirs)."""
        keys = set()
        for name in os.listdir(inflight):
            with open(os.path.join(inflight, name), "r+b") as f:
                keys.add(f.read().decode(errors="replace").strip())
                f.truncate(0)
        return keys - {""}

    def attempt(pool, fn, tasks, indices) -> tuple[dict, set[str] | None]:
        """Results of the tasks that finished, and the keys in flight if a worker died."""
        futures = {pool.submit(fn, tasks[i]): i for i in indices}
        wait(futures, return_when=FIRST_EXCEPTION)
        done, broken = {}, False
        for f, i in futures.items():
            exc = f.exception() if f.done() else None
            if f.done() and exc is None:
                done[i] = f.result()
            elif isinstance(exc, BrokenProcessPool):
                broken = True
            elif exc is not None:
                for g in futures:
                    g.cancel()
                raise exc
        return done, (in_flight() if broken else None)

    def run(fn, tasks, bar):
        def advance(n):
            bar.update(min(n, bar.total - bar.n) if bar.total else n)  # re-runs never overfill it

        def drain():
            for n in iter(queue.get, None):  # None: the parent's own end marker
                advance(n)

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        tasks, results, suspects, blind = [excluding(t, killers) for t in tasks], {}, [], 0
        try:
            while len(results) < len(tasks):
                if suspects:  # alone in a fresh single-worker pool: a death now names its key
                    i = suspects.pop(0)
                    alone = new_pool(1)
                    try:
                        done, keys = attempt(alone, fn, tasks, [i])
                    finally:
                        alone.shutdown(wait=False, cancel_futures=True)
                    results.update(done)
                    if keys:
                        killers.update(keys)
                        tasks[i] = excluding(tasks[i], keys)
                        suspects.insert(0, i)
                    elif keys is not None:
                        blind += 1  # died between items: nothing to exclude
                        suspects.insert(0, i)
                else:
                    todo = [i for i in range(len(tasks)) if i not in results]
                    done, keys = attempt(pools[0], fn, tasks, todo)
                    results.update(done)
                    if keys is not None:
                        pools[0].shutdown(wait=False, cancel_futures=True)
                        pools[0] = new_pool(workers)
                        suspects = [i for i in todo if i not in results
                                    and any(it.key in keys for it in tasks[i].items)]
                        blind += not suspects
                if blind > 3:
                    raise BuildStopped("build workers keep dying outside any one file (out of memory? see the "
                                       "system log); committed shards are kept: re-run to resume")
            return [results[i] for i in range(len(tasks))]
        finally:
            queue.put(None)
            thread.join()
            while not queue.empty():
                advance(queue.get())

    try:
        yield run
    finally:
        pools[0].shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(inflight, ignore_errors=True)


def _ray_call(fn, task, tally):
    from ._jit import worker_setup

    worker_setup()
    return fn(task, tick=(lambda n: tally.add.remote(n)) if tally is not None else (lambda n: None))


def _describe(task) -> str:
    keys = [it.key for it in task.items]
    if isinstance(task, ShardTask):
        return f"shard {task.index} ({keys[0]} .. {keys[-1]})"
    return f"a patch-pool task ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"


class _Tally:
    """A Ray actor's body: items finished, reported by tasks, collected by the driver's bar."""

    def __init__(self):
        self.n = 0

    def add(self, n: int) -> None:
        self.n += n

    def take(self) -> int:
        n, self.n = self.n, 0
        return n


@contextmanager
def ray_runner(workers: int, address: str | None, retries: int = 3):
    """``run(fn, tasks, bar) -> results`` with one Ray task per item of ``tasks``.

    At most two tasks per CPU are in flight. Ray re-runs a task whose worker or node died
    (``max_retries``) and one that raised ``OSError`` (a flaky shared filesystem); shards are
    committed by the same atomic writes as in the local pool, so a re-run task rewrites identical
    bytes. Other exceptions fail the build. While a progress bar is shown, tasks report finished
    items to a small actor that the driver reads four times a second, so the bar moves by items
    as with the local pool (never past the run's total, even when a retried task reports its
    items twice); the actor is one more process, so without a bar there is none.
    """
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--distributor ray needs Ray: pip install 's2pdata[ray]'") from exc
    started = not ray.is_initialized()
    if started:
        kwargs = {"address": address} if address else {"num_cpus": workers, "include_dashboard": False}
        ray.init(log_to_driver=False, configure_logging=False, **kwargs)
    remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=[OSError])(_ray_call)
    tallies: list = []  # at most one actor per build, made when a bar first needs it
    in_flight = max(2, 2 * int(ray.cluster_resources().get("CPU", workers)))

    def run(fn, tasks, bar):
        results: dict[int, object] = {}
        pending: dict = {}
        todo = list(reversed(list(enumerate(tasks))))
        total, shown = sum(len(t.items) for t in tasks), 0
        if not getattr(bar, "disable", False) and not tallies:
            tallies.append(ray.remote(num_cpus=0)(_Tally).remote())
        tally = tallies[0] if tallies else None
        if tally is not None:
            ray.get(tally.take.remote())  # late reports of an earlier phase belong to no bar

        def show(n):
            nonlocal shown
            n = min(n, total - shown)
            bar.update(n)
            shown += n

        try:
            while todo or pending:
                while todo and len(pending) < in_flight:
                    i, task = todo.pop()
                    pending[remote.remote(fn, task, tally)] = (i, task)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)  # returns at the first done
                for ref in ready:
                    i, task = pending.pop(ref)
                    try:
                        results[i] = ray.get(ref)
                    except ray.exceptions.WorkerCrashedError as exc:
                        raise BuildStopped(
                            f"a Ray worker died {retries + 1} times on {_describe(task)} (a file that kills its "
                            "reader, or out of memory); committed "
                            "shards are kept. Re-run the same command to resume, or with --distributor local "
                            "on one machine, which finds such a file and rejects it as worker-crashed") from exc
                    if tally is None:
                        show(len(task.items))
                if tally is not None:
                    show(ray.get(tally.take.remote()))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        show(total - shown)  # reports still on their way when the last task returned
        return [results[i] for i in range(len(tasks))]

    try:
        yield run
    finally:
        for tally in tallies:
            ray.kill(tally)
        if started:
            ray.shutdown()


DISTRIBUTORS = ("local", "ray")


def auto_shard_size(n_items: int) -> int:
    """About 64 shards for a small set (so every worker gets some), never more than 1000 samples."""
    return min(1000, max(8, -(-n_items // 64)))


def run_build(*, src: str | Source, out: str | Path, cfg: SynthConfig, seed: int = 0, shard_size: int | None = None,
              workers: int = 1, limit: int | None = None, overwrite: bool = False,
              progress: bool = True, distributor: str = "local", ray_address: str | None = None) -> dict:
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
            src = source_from_args(src, make_parser().parse_args(["--src", src, "--out", str(out)]), seed=seed,
                                   out=out)
        source = src
        items = sorted(source.items(), key=lambda it: it.key)
        if limit is not None:
            items = items[:limit]
        shard_size = shard_size or auto_shard_size(len(items))
        plan = make_plan(items, shard_size)
        header = _header(source, cfg, seed, shard_size, plan)
        if progress:
            print(source.summary() + f"\nplan: {len(items)} items in {len(plan)} shards of {shard_size} -> {out}",
                  file=sys.stderr)
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
        tasks = [ShardTask(i, shard, source, cfg, seed, str(out), pool_dir, pool_sha)
                 for i, shard in enumerate(plan) if i not in done]
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
    manifest.update(status="complete", totals={
        "items": len(items), "samples": summed["samples"], "rejected": n_rejects,
        "reasons": dict(reasons), "bytes": summed["bytes"], "shards": len(plan),
        "built_this_run": len(tasks), "seconds_this_run": round(elapsed, 2),
        "seconds_pool_this_run": round(t_pool, 2), "seconds_shards_this_run": round(elapsed - t_pool, 2)})
    atomic_write(out / DATASET_JSON, json.dumps(manifest, indent=1).encode())
    return manifest


# ---------------------------------------------------------------------------------------------
# CLI


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m s2pdata.build", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--src", help="'demo', 'demo:N', 'hf:PATH' or a folder of images (recursive); required")
    p.add_argument("--out", help="output folder for shards and manifests; required")
    p.add_argument("--recipe", help="TOML file of flag values (keys as the flags' long names); flags given on "
                                    "the command line win")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count() or 1, help="worker processes (default: the CPUs this process may use)")
    p.add_argument("--seed", type=int, default=0, help="run seed; with the sample key it decides every draw")
    p.add_argument("--shard-size", type=int, default=None,
                   help="planned items per shard (default: ceil(items / 64), between 8 and 1000)")
    p.add_argument("--limit", type=int, default=None, help="build only the first N items (sorted by key)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", default=True,
                      help="skip committed shards of the same build (default)")
    mode.add_argument("--overwrite", action="store_true", help="delete an existing build in --out first")
    d = SynthConfig()
    p.add_argument("--size", type=int, default=d.size, help="short side after resizing (0 keeps the size)")
    p.add_argument("--crop", choices=CROPS, default=d.crop, help="square crop after resizing")
    p.add_argument("--sketch", choices=SKETCH_METHODS, default=d.sketch,
                   help="line-art extractor (learned: a network from --sketch-weights)")
    p.add_argument("--sketch-weights", default=d.sketch_weights, metavar="ARCH:PATH",
                   help="weights for --sketch learned: anime2sketch:netG.pth, informative:netG_A_latest.pth "
                        "or torchscript:model.pt (never downloaded; see s2pdata.learned)")
    p.add_argument("--hint-radius", type=int, default=d.hint_radius, help="hints drawn as (2l+1)^2 squares")
    p.add_argument("--color-format", choices=COLOR_FORMATS, default=d.color_format, help="colour codec")
    p.add_argument("--color-quality", type=int, default=d.color_quality, help="JPEG/WebP quality")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="reject images with more pixels")
    p.add_argument("--min-side", type=int, default=d.min_side, help="reject images with a shorter side")
    p.add_argument("--drafts", type=int, default=d.drafts, help="synthetic flawed drafts per sample (draft0..)")
    p.add_argument("--sketch-style", choices=SKETCH_STYLES, default=d.sketch_style,
                   help="rough: hand-drawn simulation of the extracted line art; mix: rough with --rough-weight")
    p.add_argument("--rough-weight", type=float, default=d.rough_weight, help="share of rough sketches with mix")
    p.add_argument("--fields", action="append", default=None,
                   help=f"optional fields (comma list): {', '.join(OPTIONAL_FIELDS)}")
    p.add_argument("--pool-size", type=int, default=d.pool_size,
                   help="patches in the region pool the drafts paste from (cut across the dataset)")
    p.add_argument("--distributor", choices=DISTRIBUTORS, default="local",
                   help="local process pool, or one Ray task per shard")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster address (e.g. auto or ray://head:10001); default starts a local Ray")
    p.add_argument("--no-progress", action="store_true", help="no progress bar and no summary")
    add_source_arguments(p)
    return p


class _Unset:
    """Marks a flag the command line did not give (argparse keeps a value already on the namespace)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line, then ``--recipe`` values for every flag the command line left out."""
    parser = make_parser()
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "recipe")}
    # a namespace pre-filled with markers tells which flags were given (append flags start as None)
    marked = argparse.Namespace(**{d: None if isinstance(a, argparse._AppendAction) else _Unset
                                   for d, a in actions.items()})
    given = parser.parse_args(argv, namespace=marked)
    args = parser.parse_args(argv)
    if args.recipe:
        import tomllib

        try:
            with open(args.recipe, "rb") as f:
                recipe = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            parser.error(f"--recipe {args.recipe}: {exc}")
        for key, value in recipe.items():
            dest = key.replace("-", "_")
            action = actions.get(dest)
            if action is None:
                parser.error(f"--recipe {args.recipe}: unknown key {key!r}; keys are the build's flag names, "
                             f"e.g. {', '.join(sorted(actions)[:6])}, ...")
            if getattr(given, dest) not in (_Unset, None):
                continue  # the command line wins
            if isinstance(action, argparse._AppendAction):
                value = [str(v) for v in (value if isinstance(value, list) else [value])]
            elif action.type is not None and value is not None:
                try:
                    value = action.type(value)
                except (TypeError, ValueError):
                    parser.error(f"--recipe {args.recipe}: {key} = {value!r} is not a valid {action.type.__name__}")
            if action.choices is not None and value not in action.choices:
                parser.error(f"--recipe {args.recipe}: {key} must be one of {list(action.choices)}, got {value!r}")
            setattr(args, dest, value)
    for name in ("src", "out"):
        if not getattr(args, name):
            parser.error(f"--{name} is required (on the command line or in the recipe)")
    return args


def _absolute_weights(spec: str) -> str:
    """``ARCH:PATH`` with PATH made absolute: workers (and Ray nodes) need not share our cwd."""
    if ":" not in spec:
        return spec  # SynthConfig reports the malformed value
    arch, path = spec.split(":", 1)
    return f"{arch}:{Path(path).expanduser().resolve()}" if path else spec


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = SynthConfig(size=args.size, crop=args.crop, sketch=args.sketch, hint_radius=args.hint_radius,
                          color_format=args.color_format, color_quality=args.color_quality,
                          max_pixels=args.max_pixels, min_side=args.min_side, drafts=args.drafts,
                          pool_size=args.pool_size, sketch_style=args.sketch_style, rough_weight=args.rough_weight,
                          sketch_weights=_absolute_weights(args.sketch_weights),
                          fields=tuple(f.strip() for arg in args.fields or () for f in arg.split(",") if f.strip()))
        source = source_from_args(args.src, args, seed=args.seed, out=Path(args.out))
        manifest = run_build(src=source, out=args.out, cfg=cfg, seed=args.seed, shard_size=args.shard_size,
                             workers=args.workers, limit=args.limit, overwrite=args.overwrite,
                             progress=not args.no_progress, distributor=args.distributor,
                             ray_address=args.ray_address)
    except (BuildRefused, ValueError) as exc:
        print(f"s2pdata.build: {exc}", file=sys.stderr)
        return 2
    except BuildStopped as exc:
        print(f"s2pdata.build: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: committed shards are kept; re-run the same command to resume", file=sys.stderr)
        return 130
    t = manifest["totals"]
    print(f"{t['samples']} samples in {t['shards']} shards ({t['bytes'] / 1e6:.1f} MB) -> {args.out}; "
          f"{t['rejected']} rejected" + (f" {t['reasons']} (see {Path(args.out) / REJECTS})" if t["rejected"] else "")
          + f"; {t['built_this_run']} shards built in {t['seconds_this_run']} s")
    return 0


if __name__ == "__main__":
    # run the imported module's main so workers (spawned or Ray) unpickle s2pdata.build.*, not __main__.*
    from s2pdata.build import main as _main

    sys.exit(_main())
