"""What runs in a build worker: one shard, or one chunk of the patch-pool pre-pass.

Consumes a ``ShardTask`` / ``PoolTask``; produces a committed shard (tar + stats) or a pool part
folder. Workers record the key they are on so a file that kills its worker can be named. Each item
runs behind a firewall: whatever it raises is its reject (``stops_the_build`` names the exceptions
that stop a build instead).
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path

from .. import storage
from ..decode import DecodeError, exception_text
from ..pool import PatchPool
from ..shards import POOL_JSON, commit_stats, encode_sample, shard_name, write_tar
from ..synth import Timer, make_sample, pool_patches
from .plan import PoolTask, ShardTask

_progress = None  # worker-side queue: count of items finished, sent to the parent's progress bar
_inflight = None  # worker-side file descriptor: the key being processed now (see LocalRunner)
CRASHED = "worker-crashed"  # the reject reason of an item whose processing kills its worker
STAGE_ERROR = "stage-error"  # the reject reason of an item a stage after decoding raised on


def _init_worker(queue, inflight_dir: str, parent: int | None = None, warm: tuple | None = None) -> None:
    """A pool worker's first act: exit with ``parent``, the progress queue, its in-flight key slot, one
    thread per library, and a connection to the store it will write to (``warm``: url, options)."""
    from .._jit import worker_setup

    global _progress, _inflight
    if parent is not None:
        exit_with_parent(parent)
    _progress = queue
    _inflight = os.open(os.path.join(inflight_dir, str(os.getpid())), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    worker_setup()  # kernels load from Numba's disk cache on first use: only the ones this build needs
    if warm is not None:
        storage.warm(*warm)
    atexit.register(_exit_now)


PDEATHSIG_POLL = 1.0  # seconds between the watchdog's checks that the parent still lives


def exit_with_parent(parent: int) -> None:
    """End this process when ``parent`` dies, even by SIGKILL: no orphaned workers.

    On Linux the kernel sends SIGKILL (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread
    also checks ``os.getppid()`` every ``PDEATHSIG_POLL`` seconds (a re-parented worker sees
    another pid). A parent already gone by now ends the worker at once.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # no prctl: the watchdog alone
    if os.getppid() != parent:
        os._exit(1)

    def watch():
        """Runs in a daemon thread: exit as soon as the parent is gone."""
        while os.getppid() == parent:
            time.sleep(PDEATHSIG_POLL)
        os._exit(1)

    threading.Thread(target=watch, name="s2pdata-parent-watchdog", daemon=True).start()


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
    """Send ``n`` finished items to the parent's progress bar."""
    if _progress is not None:
        _progress.put(n)


@lru_cache(maxsize=2)
def _open_pool(pool_dir: str | None, sha256: str | None, options: str = "null"):
    """The build's patch pool, opened once per worker (None without drafts). A pool on object storage
    (a build into a URL; ``options`` its storage_options as JSON) is fetched once into a local cache
    named by its sha256, which every worker of the machine then shares."""
    if not pool_dir:
        return None
    if storage.is_remote(pool_dir):
        pool_dir = str(_fetch_pool(pool_dir, sha256, json.loads(options)))
    return PatchPool.load(pool_dir)  # memory-mapped: pages shared by workers


def _fetch_pool(url: str, sha256: str | None, options: dict | None) -> Path:
    """The local copy of the pool at ``url``: ``$TMPDIR/s2pdata-pool-SHA256``, downloaded into a new
    folder and renamed into place whole (workers fetching at once each finish; one rename wins)."""
    cache = Path(tempfile.gettempdir()) / f"s2pdata-pool-{sha256 or 'unversioned'}"
    if (cache / POOL_JSON).exists():
        try:
            if sha256 is None or PatchPool.load(cache).sha256 == sha256:
                return cache
        except (OSError, ValueError):
            pass
        shutil.rmtree(cache, ignore_errors=True)
    part = Path(tempfile.mkdtemp(prefix=f"{cache.name}.", dir=cache.parent))
    for name in storage.list_files(url, options):
        if "/" not in name:  # the pool's own files, not a pre-pass's leftovers
            storage.download(storage.join(url, name), part / name, options)
    try:
        os.rename(part, cache)
    except OSError:  # another worker's copy is in place first
        shutil.rmtree(part, ignore_errors=True)
    return cache


def build_pool_part(task: PoolTask, tick=_tick) -> str:
    """Patches from a chunk of items, saved as a pool in ``task.part_dir``; returns that folder.

    Unreadable items give none (the shard phase reports them); ``tick(1)`` follows each item.
    """
    patches = []
    for item in task.items:
        if item.key in task.crashed:
            tick(1)
            continue
        _mark(item.key)
        try:
            patches += pool_patches(
                task.source.read(item),
                key=item.key,
                seed=task.seed,
                cfg=task.cfg,
                per_image=task.per_image,
                check=task.source.check_pixels,
            )
        except Exception as exc:  # noqa: BLE001 - the item firewall (below); the shard phase reports the item
            if stops_the_build(exc):
                raise
        _mark("")
        tick(1)
    if not storage.is_remote(task.part_dir):
        PatchPool(patches).save(task.part_dir)
        return task.part_dir
    with tempfile.TemporaryDirectory(prefix="s2pdata-pool-part-") as tmp:  # a Ray node may share no disk
        PatchPool(patches).save(tmp)
        for f in sorted(Path(tmp).iterdir()):
            storage.upload(f, storage.join(task.part_dir, f.name), task.storage_options)
    return task.part_dir


_CRASHED_DETAIL = "a worker process died while this file was being decoded or synthesised, also when it ran alone"

# OSError numbers that say the machine or the process ran out of something, not that one item is bad.
_EXHAUSTED = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EMFILE", "ENFILE", "ENOMEM") if hasattr(errno, name)
)


def stops_the_build(exc: BaseException) -> bool:
    """Whether an exception raised while one item was processed must stop the build rather than reject the item.

    The item firewall: a bad file must never stop a build (at millions of files a one-in-a-million
    file is certain, and it would stop every rerun too), so whatever one item raises is its reject,
    except what says the process itself cannot go on: ``MemoryError`` (``decode`` already turned a
    file's own excess into a reject, see ``decode._out_of_memory``; one left is the process's),
    an ``OSError`` for a full disk, a quota, or no file descriptors or kernel memory left, and
    anything that is not an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``). Rejecting those
    would drop good items depending on the machine, and a build must not depend on it.
    """
    if not isinstance(exc, Exception) or isinstance(exc, MemoryError):
        return True
    return isinstance(exc, OSError) and exc.errno in _EXHAUSTED


class _StageTimer(Timer):
    """A ``Timer`` that also remembers the last stage entered, to name where an item failed."""

    stage = "synthesis"

    def __call__(self, stage: str):
        self.stage = stage
        return super().__call__(stage)


def _reject(item, reason: str, detail: str) -> dict:
    """One line of ``rejects.jsonl``."""
    return {"key": item.key, "path": str(item.locator), "reason": reason, "detail": detail}


def _item_failure(item, stage: str, exc: Exception) -> dict:
    """The reject of an item that raised something other than ``DecodeError`` in ``stage``: where the
    source failed to read it, the reason the guarded read gave (``unsafe-path``, ``too-large``, ...; a
    file that turned unsafe after listing) or ``read-error``, else ``stage-error``; the detail names the
    stage and the exception."""
    reason = (getattr(exc, "reason", None) or "read-error") if stage == "read" else STAGE_ERROR
    return _reject(item, reason, f"{stage}: {exception_text(exc)}")


def _load_drafts_from(path: str) -> None:
    """Load the ``--drafts-from`` network before a shard's first item: a checkpoint that went away or
    changed into something unusable since the build checked it stops the build (``BuildStopped``), rather
    than making every item of every shard a reject."""
    from ..modeldrafts import load_drafter

    try:
        load_drafter(path)
    except Exception as exc:  # noqa: BLE001 - whatever loading raises, the cause is the file, not an item
        from .runners import BuildStopped

        raise BuildStopped(
            f"--drafts-from {path} cannot be loaded any more ({exception_text(exc)}); it changed or went away "
            "during the build. Committed shards are kept: put the checkpoint back and run the same command "
            "to resume"
        ) from None


def build_shard(task: ShardTask, tick=_tick) -> dict:
    """Build, write and commit one shard; returns its stats (bad items are rejects in them).

    ``tick(n)`` reports finished items at most five times a second, and once at the end.
    """
    if task.cfg.drafts_from:
        _load_drafts_from(task.cfg.drafts_from)
    timer = _StageTimer()
    pool = _open_pool(task.pool_dir, task.pool_sha256, json.dumps(task.storage_options))
    schema = task.cfg.schema()
    samples, rejects = [], []
    nbytes: dict[str, int] = {}
    pending = 0
    last = time.monotonic()
    for item in task.items:
        if item.key in task.crashed:
            rejects.append(_reject(item, CRASHED, _CRASHED_DETAIL))
            pending += 1
            continue
        _mark(item.key)
        timer.stage = "read"
        try:
            with timer("read"):
                data = task.source.read(item)
            sample = make_sample(
                data,
                key=item.key,
                seed=task.seed,
                cfg=task.cfg,
                meta=item.meta,
                timer=timer,
                check=task.source.check_pixels,
                pool=pool,
            )
            with timer("encode"):
                encoded = encode_sample(sample, schema)
            for field, blob in encoded.items():
                if not field.startswith("__"):
                    nbytes[field] = nbytes.get(field, 0) + len(blob)
            samples.append(encoded)
        except DecodeError as exc:
            rejects.append(_reject(item, exc.reason, str(exc)))
        except Exception as exc:  # noqa: BLE001 - the item firewall: see stops_the_build
            if stops_the_build(exc):
                raise
            rejects.append(_item_failure(item, timer.stage, exc))
        _mark("")
        pending += 1
        if time.monotonic() - last > 0.2:
            tick(pending)
            pending, last = 0, time.monotonic()
    with timer("write"):
        info = write_tar(storage.join(task.out, shard_name(task.index)), samples, storage_options=task.storage_options)
    tick(pending)
    stats = {
        "shard": shard_name(task.index),
        "index": task.index,
        **info,
        "items": len(task.items),
        "rejected": len(rejects),
        "reasons": dict(Counter(r["reason"] for r in rejects)),
        "rejects": rejects,
        "bytes": nbytes,
        "seconds": {k: round(v, 4) for k, v in timer.seconds.items()},
    }
    commit_stats(task.out, task.index, stats, storage_options=task.storage_options)
    return stats
