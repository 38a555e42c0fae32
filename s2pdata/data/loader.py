"""Torch streaming datasets over shards and ``make_loader``."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# torch: streaming datasets and make_loader (torch is imported only inside these functions)
#
# Shards -> per-(rank, worker) shard list -> raw samples -> shuffle buffer -> batches of raw
# samples -> decode + crop/flip (+ online hints, + draft) -> batch dict of float tensors in [-1, 1]:
#
#   color  (B, 3, H, W)  RGB / 127.5 - 1
#   sketch (B, 1, H, W)  gray / 127.5 - 1 (paper white = +1, ink = -1)
#   hint   (B, 4, H, W)  channels 0-2: (RGB / 127.5 - 1) * a, channel 3: a = alpha / 255 in [0, 1]
#                        (Style2Paints' premultiplied encoding: no hint reads as 0, 0, 0, 0)
#   draft  (B, 3, H, W)  refine stage only, RGB / 127.5 - 1
#   __key__              list of B sample keys
#
# Every random draw of a sample comes from sample_rng(seed, key, <what>, epoch): the crop/flip,
# the online hints and the draft do not depend on worker count or order.
import json as _json
import math as _math
from pathlib import Path as _Path

import numpy as _np

from .._rng import sample_rng as _sample_rng
from ..shards import POOL_DIR, POOL_JSON, decode_sample, iter_tar, shard_paths

MODES = ("resampled", "exact")
STAGES = ("draft", "refine")


def shard_counts(paths: list[str]) -> list[int]:
    """Exact sample count of each shard: ``nsamples`` of its stats file, else a raw scan of the tar."""
    counts = []
    for p in paths:
        name = _Path(p).name
        stats = _Path(p).with_name(name[:-4] + ".stats.json") if name.endswith(".tar") else None
        if stats is not None and stats.exists():
            counts.append(int(_json.loads(stats.read_text())["nsamples"]))
        else:
            counts.append(sum(1 for _ in iter_tar(p)))
    return counts


def _crop_flip(fields: dict, crop: int | None, flip: bool, rng: _np.random.Generator) -> dict:
    """Same random crop (reflect-padded when the image is smaller) and h-flip for every field."""
    H, W = next(iter(fields.values())).shape[:2]
    out = {}
    if crop is not None:
        ph, pw = max(0, crop - H), max(0, crop - W)
        y = int(rng.integers(0, max(H, crop) - crop + 1))
        x = int(rng.integers(0, max(W, crop) - crop + 1))
    do_flip = flip and bool(rng.random() < 0.5)
    for name, a in fields.items():
        if crop is not None:
            if ph or pw:
                pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)) + ((0, 0),) * (a.ndim - 2)
                a = _np.pad(a, pad, mode="symmetric" if min(H, W) < 2 else "reflect")
            a = a[y : y + crop, x : x + crop]
        if do_flip:
            a = a[:, ::-1]
        out[name] = _np.ascontiguousarray(a)
    return out


def _skip_rounds(k: int, counts: list[float]) -> tuple[int, int]:
    """Split skipping the first ``k`` batches of a DataLoader over workers with ``counts`` batches
    each into ``r`` whole rounds (every worker skips ``min(count, r)`` itself, undecoded) and the
    ``rest`` batches the loader drops after decoding. A DataLoader takes one batch from each
    worker in turn, dropping exhausted workers, and always starts a fresh cycle at worker 0."""
    r, done = 0, 0
    while True:
        step = sum(1 for c in counts if c > r)
        if step == 0 or done + step > k:
            return r, k - done
        r, done = r + 1, done + step


def _stream_class():
    import torch
    from torch.utils.data import IterableDataset, get_worker_info

    class ShardStream(IterableDataset):
        """Shards -> batches of float tensors; the base of ``DraftDataset`` and ``RefineDataset``.

        Splitting: the (rank, worker) slot ``rank * num_workers + worker`` of ``world_size *
        num_workers`` slots. ``exact`` mode shuffles the shard order with (seed, epoch) and gives
        slot s the shards s, s + slots, ...: every sample once per epoch across all ranks and
        workers (batches per rank may differ). ``resampled`` mode is an infinite stream: each slot
        draws shards with replacement from its own (seed, epoch, slot) generator; count steps.
        Samples pass a shuffle buffer of ``shuffle_buffer`` (0: file order). Batches are made in
        the worker: use ``DataLoader(ds, batch_size=None)`` (``make_loader`` does).
        """

        stage = "draft"

        def __init__(
            self,
            urls,
            *,
            batch_size: int = 16,
            mode: str = "resampled",
            world_size: int = 1,
            rank: int = 0,
            epoch: int = 0,
            seed: int = 0,
            crop: int | None = 224,
            flip: bool = True,
            online_hints: bool = False,
            hint_radius: int | None = None,
            shuffle_buffer: int = 256,
            skip_batches: int = 0,
            num_workers: int | None = None,
            draft_pool=None,
            online_drafts: bool = False,
        ):
            from .._check import check_choice

            check_choice("mode", mode, MODES)
            self.paths = shard_paths(urls)
            if not self.paths:
                raise FileNotFoundError(f"urls {urls!r} hold no shard-*.tar; give a build folder, a tar or a glob")
            missing = [p for p in self.paths if not _Path(p).is_file()]
            if missing:
                raise FileNotFoundError(
                    f"shard {missing[0]!r} does not exist ({len(missing)} missing); "
                    "give a build folder, a tar or a glob"
                )
            for name, value, lo in (
                ("batch_size", batch_size, 1),
                ("world_size", world_size, 1),
                ("rank", rank, 0),
                ("shuffle_buffer", shuffle_buffer, 0),
                ("skip_batches", skip_batches, 0),
                ("epoch", epoch, 0),
            ):
                if not isinstance(value, int) or value < lo:
                    raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
            if rank >= world_size:
                raise ValueError(f"rank must be < world_size ({world_size}), got {rank}")
            if crop is not None and (not isinstance(crop, int) or crop < 1):
                raise ValueError(f"crop must be a positive int or None (whole images), got {crop!r}")
            self.batch_size, self.mode, self.world_size, self.rank = batch_size, mode, world_size, rank
            self.epoch, self.seed, self.crop, self.flip = epoch, seed, crop, flip
            self.online_hints, self.shuffle_buffer, self.skip_batches = online_hints, shuffle_buffer, skip_batches
            self.hint_radius = (1 if self.stage == "draft" else 2) if hint_radius is None else hint_radius
            own_pool = _Path(self.paths[0]).parent / POOL_DIR
            if draft_pool is None and (own_pool / POOL_JSON).exists():
                draft_pool = str(own_pool)  # the build's own pool
            self.draft_pool, self.online_drafts = draft_pool, online_drafts
            self._pool = None
            if num_workers is not None:
                self._check_slots(max(1, num_workers))

        def set_epoch(self, epoch: int) -> None:
            """Reseed shard order, shuffle buffer, crops and online hints/drafts for ``epoch``."""
            self.epoch = int(epoch)

        def _check_slots(self, nw: int) -> None:
            slots = self.world_size * nw
            if self.mode == "exact" and len(self.paths) < slots:
                raise ValueError(
                    f"exact mode needs at least world_size * num_workers = {self.world_size} * {nw} = {slots} "
                    f"shards, got {len(self.paths)}; build with a smaller --shard-size, use fewer workers, "
                    "or use mode='resampled'"
                )

        # -- the raw stream of one (rank, worker) slot
        def _slot(self) -> tuple[int, int, int, int]:
            info = get_worker_info()
            w, nw = (0, 1) if info is None else (info.id, info.num_workers)
            return w, nw, self.rank * nw + w, self.world_size * nw

        def _my_shards(self, slot: int, nslots: int) -> list[str]:
            order = _sample_rng(self.seed, "shards", self.epoch).permutation(len(self.paths))
            return [self.paths[i] for i in order[slot::nslots]]

        def _raw(self, slot: int, nslots: int):
            if self.mode == "exact":
                for p in self._my_shards(slot, nslots):
                    yield from iter_tar(p)
            else:
                rng = _sample_rng(self.seed, "resample", self.epoch, slot)
                while True:
                    yield from iter_tar(self.paths[int(rng.integers(len(self.paths)))])

        def _shuffled(self, raw, slot: int):
            if self.shuffle_buffer <= 1:
                yield from raw
                return
            rng = _sample_rng(self.seed, "shuffle", self.epoch, slot)
            buf = []
            for item in raw:
                if len(buf) < self.shuffle_buffer:
                    buf.append(item)
                    continue
                i = int(rng.integers(len(buf)))
                buf[i], item = item, buf[i]
                yield item
            while buf:
                yield buf.pop(int(rng.integers(len(buf))))

        def skip_plan(self, nw: int) -> tuple[int, int]:
            """``skip_batches`` as (rounds each worker skips undecoded, batches left to drop)."""
            if not self.skip_batches:
                return 0, 0
            if self.mode == "resampled":
                counts = [_math.inf] * nw
            else:
                counts = []
                for i in range(nw):
                    n = sum(shard_counts(self._my_shards(self.rank * nw + i, self.world_size * nw)))
                    counts.append(-(-n // self.batch_size))
            return _skip_rounds(self.skip_batches, counts)

        def __iter__(self):
            w, nw, slot, nslots = self._slot()
            self._check_slots(nw)
            skip = self.skip_plan(nw)[0]
            batch = []
            for raw in self._shuffled(self._raw(slot, nslots), slot):
                batch.append(raw)
                if len(batch) == self.batch_size:
                    if skip:
                        skip -= 1
                    else:
                        yield self.collate([self.make_item(decode_sample(r)) for r in batch])
                    batch = []
            if batch and not skip:
                yield self.collate([self.make_item(decode_sample(r)) for r in batch])

        # -- one decoded sample -> uint8 fields, augmented
        def make_item(self, sample: dict) -> dict:
            key = sample["__key__"]
            fields = {"color": sample["color"], "sketch": sample["sketch"], "hint": sample["hint"]}
            if self.stage == "refine":
                fields["draft"] = self._draft(sample, key)
            out = _crop_flip(fields, self.crop, self.flip, _sample_rng(self.seed, key, "crop", self.epoch))
            if self.online_hints:
                from ..stages.hints import render_hints, sample_hints

                hints = sample_hints(out["color"], rng=_sample_rng(self.seed, key, "hints", self.epoch))
                out["hint"] = render_hints(hints, out["color"].shape[:2], radius=self.hint_radius)
            out["__key__"] = key
            return out

        def _draft(self, sample: dict, key: str) -> _np.ndarray:
            stored = sorted(k for k in sample if k.startswith("draft") and k[5:].isdigit())
            if stored and not self.online_drafts:
                rng = _sample_rng(self.seed, key, "draft", self.epoch)
                return sample[stored[int(rng.integers(len(stored)))]]
            from ..pool import PatchPool
            from ..synth import online_sample

            if self.draft_pool is not None and self._pool is None:
                self._pool = PatchPool.load(self.draft_pool)  # memory-mapped, once per worker
            return online_sample(sample, seed=self.seed, epoch=self.epoch, pool=self._pool, hints=False)["draft"]

        def collate(self, items: list[dict]) -> dict:
            """uint8 fields of one batch -> float tensors in [-1, 1] (hint: see module notes)."""
            sizes = {it["color"].shape for it in items}
            if len(sizes) > 1:
                raise ValueError(f"samples of one batch differ in size {sorted(sizes)}; set crop or batch_size=1")
            out = {"__key__": [it["__key__"] for it in items]}
            for name in ("color", "sketch", "hint", "draft"):
                if name not in items[0]:
                    continue
                a = torch.from_numpy(_np.stack([it[name] for it in items]))
                a = (a[..., None] if a.ndim == 3 else a).permute(0, 3, 1, 2).float()
                if name == "hint":
                    alpha = a[:, 3:] / 255.0
                    a = torch.cat([(a[:, :3] / 127.5 - 1.0) * alpha, alpha], 1)
                else:
                    a = a / 127.5 - 1.0
                out[name] = a.contiguous(memory_format=torch.contiguous_format)
            return out

    return ShardStream


_CLASSES: dict = {}


def _classes() -> dict:
    if not _CLASSES:
        base = _stream_class()
        _CLASSES["ShardStream"] = base
        _CLASSES["DraftDataset"] = type(
            "DraftDataset",
            (base,),
            {
                "stage": "draft",
                "__module__": __name__,
                "__qualname__": "DraftDataset",
                "__doc__": "Draft-stage stream: ``color``, ``sketch``, ``hint`` (hint radius 1 when online).",
            },
        )
        _CLASSES["RefineDataset"] = type(
            "RefineDataset",
            (base,),
            {
                "stage": "refine",
                "__module__": __name__,
                "__qualname__": "RefineDataset",
                "__doc__": "Refine-stage stream: adds ``draft``, a stored ``draftK`` when the shards hold one, "
                "else synthesised from the ground truth (s2pdata.stages.drafts.make_draft) per (seed, key, "
                "epoch); online hints use radius 2 (5x5, paper).",
            },
        )
        base.__module__, base.__qualname__ = __name__, "ShardStream"
    return _CLASSES


def __getattr__(name: str):
    # DraftDataset / RefineDataset are built on first access so `import s2pdata.data` needs no torch
    if name in ("ShardStream", "DraftDataset", "RefineDataset"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_loader(
    urls,
    *,
    stage: str = "draft",
    batch_size: int = 16,
    num_workers: int = 4,
    world_size: int = 1,
    rank: int = 0,
    mode: str = "resampled",
    epoch: int = 0,
    seed: int = 0,
    crop: int | None = 224,
    flip: bool = True,
    online_hints: bool = False,
    hint_radius: int | None = None,
    shuffle_buffer: int = 256,
    skip_batches: int = 0,
    draft_pool=None,
    online_drafts: bool = False,
    pin_memory: bool | None = None,
    prefetch_factor: int | None = None,
):
    """A DataLoader streaming batches from shards, with ``set_epoch``.

    Parameters
    ----------
    urls : str, PathLike or list
        Build folder, tar, glob, or a list of them.
    stage : {"draft", "refine"}
        ``refine`` adds the ``draft`` field.
    mode : {"resampled", "exact"}
        ``resampled``: infinite, shards drawn with replacement (count steps). ``exact``: every
        sample exactly once per epoch over all ranks and workers; needs at least
        ``world_size * max(1, num_workers)`` shards.
    crop, flip : random square crop (reflect-padded when smaller; None keeps whole images) and
        horizontal flip, identical for every field, drawn from ``sample_rng(seed, key, "crop", epoch)``.
    online_hints : re-sample hints per epoch (``s2pdata.stages.hints``) on the crop instead of the stored map.
    online_drafts : refine stage: a fresh draft per (seed, key, epoch) (``synth.online_sample``)
        instead of a stored ``draftK``; pastes from ``draft_pool`` (default: the build's
        ``pool/`` next to the shards) or, without a pool, from the sample's own regions.
    skip_batches : skip this many batches at the start (resuming mid-epoch) without decoding them.

    Returns
    -------
    torch.utils.data.DataLoader
        Yields dicts ``color`` (B, 3, H, W), ``sketch`` (B, 1, H, W), ``hint`` (B, 4, H, W)
        [(RGB/127.5 - 1) * a, a], ``draft`` (B, 3, H, W) for refine, float32 in [-1, 1], and
        ``__key__``. ``loader.set_epoch(e)`` reseeds before the next ``iter``.
    """
    import torch
    from torch.utils.data import DataLoader

    from .._check import check_choice

    check_choice("stage", stage, STAGES)
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    cls = _classes()["DraftDataset" if stage == "draft" else "RefineDataset"]
    ds = cls(
        urls,
        batch_size=batch_size,
        mode=mode,
        world_size=world_size,
        rank=rank,
        epoch=epoch,
        seed=seed,
        crop=crop,
        flip=flip,
        online_hints=online_hints,
        hint_radius=hint_radius,
        shuffle_buffer=shuffle_buffer,
        skip_batches=skip_batches,
        num_workers=num_workers,
        draft_pool=draft_pool,
        online_drafts=online_drafts,
    )

    class ShardLoader(DataLoader):
        def __iter__(self):
            it = super().__iter__()
            for _ in range(self.dataset.skip_plan(max(1, self.num_workers))[1]):
                next(it, None)  # the part of skip_batches the workers could not drop themselves
            return it

        def set_epoch(self, epoch: int) -> None:
            """Reseed the stream for ``epoch`` (workers are re-created per epoch, so it takes effect)."""
            self.dataset.set_epoch(epoch)
            self.dataset.skip_batches = 0

    extra = {} if num_workers == 0 else {"prefetch_factor": prefetch_factor or 2}
    return ShardLoader(
        ds,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        **extra,
    )
