"""The plan and the output folder: sorted items cut into shards, the manifest header a resume
must match, and the tasks workers run (picklable).
"""

from __future__ import annotations

import errno
import hashlib
import os
import platform
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import SCHEMA_VERSION, __version__
from .._rng import stable_seed
from .._safeio import create_new
from ..modeldrafts import checkpoint_info
from ..shards import DATASET_JSON, LOCK_FILE, ManifestError, build_files, read_manifest, shard_files
from ..sources import Item, Source
from ..stages.learned import weights_digest
from ..synth import SynthConfig


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
    storage_options: dict | None = None  # of the filesystem of a URL ``out`` (s2pdata.storage)


@dataclass(frozen=True)
class PoolTask:
    """A chunk of the items that give the patch pool its patches (picklable)."""

    items: tuple[Item, ...]
    source: Source
    cfg: SynthConfig
    seed: int
    per_image: int
    part_dir: str  # the worker writes its patches here, a folder or a URL (pixels never travel through pickles)
    crashed: tuple[str, ...] = ()  # keys whose processing killed a worker: skipped
    storage_options: dict | None = None  # of the filesystem of a URL ``part_dir``


def make_plan(items: list[Item], shard_size: int) -> list[tuple[Item, ...]]:
    """Sorted items cut into consecutive shards of ``shard_size``."""
    items = sorted(items, key=lambda it: it.key)
    return [tuple(items[i : i + shard_size]) for i in range(0, len(items), shard_size)]


def plan_digest(plan: list[tuple[Item, ...]]) -> str:
    """sha256 over every shard's keys and locators: equal plans, equal digests."""
    h = hashlib.sha256()
    for shard in plan:
        for it in shard:
            h.update(f"{it.key}\t{it.locator}\n".encode())
        h.update(b"--\n")
    return h.hexdigest()


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


LOCK_HINT = "pip install -c constraints.txt -e ."  # the environment the repository locks (README, "Set up")


def package_versions(cfg: SynthConfig) -> dict:
    """The versions of everything that shapes a sample's bytes, for the manifest (torch with a learned extractor
    or a draft checkpoint).

    Python is recorded for the record only; every other entry must match for a resume (``version_changes``).
    """
    from importlib.metadata import version

    import cv2
    import numba
    import numpy
    import PIL

    versions = {
        "s2pdata": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "numba": numba.__version__,
        "pillow": PIL.__version__,
        "zlib-ng": version("zlib-ng"),  # inflates PNG sources (pngread); no __version__ attribute
    }
    if cfg.sketch == "learned" or cfg.drafts_from:  # a network's output depends on the torch build as well
        import torch

        versions["torch"] = torch.__version__
    return versions


def version_changes(recorded: dict, current: dict) -> list[str]:
    """``["opencv: folder has 5.0.0, this run has 5.1.0", ...]``: byte-deciding versions that differ.

    A package the folder did not record (a build made before s2pdata recorded it) is not compared.
    """
    return [
        f"{name}: folder has {recorded[name]}, this run has {current.get(name)}"
        for name in sorted(recorded)
        if name != "python" and recorded[name] != current.get(name)
    ]


def manifest_header(source: Source, cfg: SynthConfig, seed: int, shard_size: int, plan) -> dict:
    """The part of dataset.json that must match for a resume to continue.

    With ``cfg.drafts_from`` the checkpoint is loaded here, once, before anything is built (a missing,
    damaged or refine checkpoint is a one-line ``ValueError``); its sha256, stage, step, size and the
    device type it runs on are ``config.drafts_from_checkpoint``, so another checkpoint is another build.
    """
    config = {**cfg.to_json(), "shard_size": shard_size}
    if cfg.sketch == "learned":
        config["sketch_weights_sha256"] = weights_digest(cfg.sketch_weights)
    if cfg.drafts_from:
        config["drafts_from_checkpoint"] = {k: v for k, v in checkpoint_info(cfg.drafts_from).items() if k != "torch"}
    return {
        "schema_version": SCHEMA_VERSION,
        "fields": cfg.schema().fields(),
        "seed": seed,
        "source": source.spec(),
        "config": config,
        "plan": {"shards": len(plan), "items": sum(map(len, plan)), "sha256": plan_digest(plan)},
    }


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Every dotted key whose value differs between two nested dicts, in words."""
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


def prepare_out(out: Path, header: dict, versions: dict, *, overwrite: bool) -> None:
    """Create ``out``, or check it holds the same build made with the same versions (resume), or
    clear it (overwrite)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / DATASET_JSON
    if overwrite:
        for p in build_files(out):
            p.unlink()
    elif manifest.exists():
        try:
            old = read_manifest(out)
        except ManifestError as exc:
            raise BuildRefused(str(exc)) from None
        diffs = _differences({k: old.get(k) for k in header}, header)
        if diffs:
            raise BuildRefused(
                f"{out} holds a different build, so it cannot be resumed:\n  "
                + "\n  ".join(diffs)
                + "\nRe-run with the folder's settings to resume it, pass --overwrite to delete it and "
                "build anew, or choose another --out."
            )
        changed = version_changes(old.get("versions") or {}, versions)
        if changed:
            raise BuildRefused(
                f"{out} was built with other library versions, and its shards would not match the ones "
                "this run writes (the same seed gives the same bytes only under the same versions):\n  "
                + "\n  ".join(changed)
                + f"\nInstall the folder's versions to resume it (the repository's lock: {LOCK_HINT}), "
                "pass --overwrite to delete it and build anew, or choose another --out."
            )
    elif shard_files(out):
        raise BuildRefused(f"{out} holds shards but no {DATASET_JSON}; pass --overwrite or choose another --out")


_held: dict[str, int] = {}  # resolved --out -> how many nested lock_out calls hold it in this process


def is_held(out: str | Path) -> bool:
    """Whether this process holds ``out``'s lock now (``lock_out``)."""
    return str(Path(out).resolve()) in _held


@contextmanager
def lock_out(out: str | Path):
    """Hold ``out``'s lock file (``fcntl.flock``) for the ``with`` block: one build per folder.

    The file records the holder's pid, host and start time; the kernel drops the lock when the
    holder exits, even by SIGKILL, so a stale file never blocks a later build. Nested calls in
    one process share the lock.

    Raises
    ------
    BuildRefused
        Another process holds the lock; the message names it (pid, host, since when).
    """
    out = Path(out)
    key = str(out.resolve())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    created, lock_was_there = not os.path.lexists(out), os.path.lexists(out / LOCK_FILE)
    fd = _open_lock(out)
    try:
        _take(fd, out)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        os.close(fd)  # releases the flock
        if not lock_was_there and os.listdir(out) == [LOCK_FILE]:  # a build that failed before writing anything
            os.unlink(out / LOCK_FILE)
            if created:
                os.rmdir(out)


def _open_lock(out: Path) -> int:
    """Create ``out`` and open its lock file, never through a link (``_safeio.create_new``); a folder
    that cannot be used is ``BuildRefused`` in one line."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        # never through a link: one planted as the lock file would have its target overwritten with our pid
        with create_new(out / LOCK_FILE, exclusive=False) as f:
            return os.dup(f.fileno())
    except FileExistsError:
        raise BuildRefused(f"--out {out} is a file, not a folder; choose another --out") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EINVAL):
            raise BuildRefused(
                f"cannot use --out {out}: {out / LOCK_FILE} is a link or not a regular file; remove it (s2pdata "
                "never writes through a link)"
            ) from None
        raise _unusable(out, exc) from None


def _take(fd: int, out: Path) -> None:
    """Lock ``fd`` without waiting and write this process into it, or refuse naming the holder."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: run unlocked, as before
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "a process that has not written its name yet"
        raise BuildRefused(
            f"{out} is in use by another build ({holder}); nothing was touched. Wait for that build to "
            f"finish (or stop it), then run this command again, or choose another --out. The lock is "
            f"{out / LOCK_FILE}, released by the kernel when its holder exits."
        ) from None
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()} since {since}\n".encode(), 0)
    except OSError as exc:  # a full disk or quota before anything was built
        raise _unusable(out, exc) from None


def _unusable(out: Path, exc: OSError) -> BuildRefused:
    """One line for an ``--out`` that cannot be written (read-only, full, not a folder)."""
    return BuildRefused(
        f"cannot use --out {out}: {exc.strerror} ({exc.filename or out}); free it or choose another --out"
    )


def auto_shard_size(n_items: int) -> int:
    """About 64 shards for a small set (so every worker gets some), never more than 1000 samples."""
    return min(1000, max(8, -(-n_items // 64)))
