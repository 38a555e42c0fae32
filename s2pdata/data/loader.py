"""Torch streaming datasets over shards and ``make_loader`` (imports torch; ``s2pdata.data`` does not).

Shards -> per-(rank, worker) shard list -> raw samples -> shuffle buffer -> batches of raw
samples -> decode only the fields the stage uses -> crop/flip (+ online hints, + draft) ->
batch dict of uint8 tensors, channels first:

  color  (B, 3, H, W)  RGB
  sketch (B, 1, H, W)  gray (paper white = 255)
  hint   (B, 4, H, W)  RGBA, alpha = hint mask
  draft  (B, 3, H, W)  refine stage only, RGB
  __key__              list of B sample keys

``to_model_input(batch, device)`` moves a batch to the device and makes there the float32 layout
the models take: colour, sketch and draft ``x / 127.5 - 1`` in [-1, 1]; hint
``[(RGB / 127.5 - 1) * a, a]`` with ``a = alpha / 255`` (Style2Paints' premultiplied encoding: no
hint reads as 0, 0, 0, 0). Workers thus ship a quarter of the bytes, and the GPU normalises.

Only what the stage consumes is decoded: ``regions.png``, the json and unused drafts never are
(``regions`` only for online drafts without a pool or of the model family); stored hints not with ``online_hints``. The
crop is placed from the sketch PNG's header first: the PNG maps are decoded only inside it
(``s2pdata.pngread``), the colour JPEG is cropped as a view, still in OpenCV's BGR order, and each
field is copied once, into the batch's channel planes.

Every random draw of a sample comes from sample_rng(seed, key, <what>, epoch): the crop/flip,
the online hints and the draft do not depend on worker count or order.

Batches are made in the workers. A worker's stream is one run over all its shards, so only its
last batch of an exact epoch can be short; ``ShardLoader`` joins those short batches in the main
process into full ones and drops (or, with ``drop_last=False``, yields) the one short remainder.

The keyword arguments of the datasets and of ``make_loader`` are the fields of
``s2pdata.data.settings`` (``StreamSettings``, ``LoaderSettings``): their types, defaults, checks
and docs, from which the signatures and the "Parameters" sections here are made.
"""

from __future__ import annotations

import ctypes
import itertools
import math
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .. import storage
from .._rng import sample_rng
from .._stream import read_ahead
from ..pngread import png_size
from ..pngread import warmup as warm_png_kernels
from ..shards import (
    POOL_DIR,
    POOL_JSON,
    ShardError,
    decode_sample,
    iter_tar,
    recorded_counts,
    shard_paths,
    shard_record,
    verify_shard,
)
from ..storage import redact
from . import make_loader as _public_make_loader
from .settings import LoaderSettings, StreamSettings, documented, init_takes, takes

__all__ = ["DraftDataset", "RefineDataset", "ShardLoader", "ShardStream", "make_loader", "to_model_input"]


def shard_counts(paths: list[str], storage_options: dict | None = None) -> list[int]:
    """Exact sample count of each shard: ``nsamples`` of its stats file, else a raw scan of the tar."""
    so = storage_options
    recorded = recorded_counts(paths, storage_options=so)
    return [sum(1 for _ in iter_tar(p, storage_options=so)) if n is None else n for p, n in zip(paths, recorded)]


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_heap(mmap_threshold: int = 32 << 20, trim_threshold: int = 128 << 20) -> bool:
    """Let glibc serve allocations up to ``mmap_threshold`` bytes from its heap and keep up to
    ``trim_threshold`` bytes of freed heap, in this process.

    A loader makes arrays of a batch's size in a loop (the uint8 planes, the float model input on
    the CPU). With glibc's defaults each is mapped afresh or its heap trimmed and regrown, and
    faulting in the new pages (~160 page faults per sample at batch 16, crop 224) costs more than
    the copies that fill them. ``make_loader(keep_heap=True)`` (the default) calls this in its
    workers, or in this process with ``num_workers=0``. Returns False, changing nothing, where the
    C library has no ``mallopt`` (not glibc) or refuses the values.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))


def _worker_init(_: int) -> None:
    keep_heap()


def _draw_crop(hw: tuple[int, int], crop: int | None, flip: bool, rng: np.random.Generator) -> tuple[int, int, bool]:
    """(top, left, flip?) of the random crop of an ``hw`` picture (0, 0 without a crop or where it
    is padded to ``crop``), in the order the draws are made."""
    y = x = 0
    if crop is not None:
        y = int(rng.integers(0, max(hw[0], crop) - crop + 1))
        x = int(rng.integers(0, max(hw[1], crop) - crop + 1))
    return y, x, flip and bool(rng.random() < 0.5)


def _crop(fields: dict, crop: int | None, y: int, x: int) -> dict:
    """The crop at (``y``, ``x``) of every field, as views (of reflect-padded copies when the image
    is smaller); ``make_batch`` makes the one copy of each."""
    if crop is None:
        return dict(fields)
    H, W = next(iter(fields.values())).shape[:2]
    ph, pw = max(0, crop - H), max(0, crop - W)
    out = {}
    for name, a in fields.items():
        if ph or pw:
            pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)) + ((0, 0),) * (a.ndim - 2)
            a = np.pad(a, pad, mode="symmetric" if min(H, W) < 2 else "reflect")
        out[name] = a[y : y + crop, x : x + crop]
    return out


def _finish_into(dst: np.ndarray, a: np.ndarray, flip: bool, bgr: bool) -> None:
    """Copy the crop ``a`` (H, W[, C]) into the planes ``dst`` (C, H, W), flipped and turned from
    OpenCV's channel order into RGB(A) as asked, with OpenCV's vectorised flip and split rather
    than a strided numpy gather."""
    if flip:
        a = cv2.flip(a, 1)
    if a.ndim == 2:
        dst[0] = a
        return
    planes = cv2.split(a)
    for c, k in enumerate((2, 1, 0, 3)[: a.shape[2]] if bgr else range(a.shape[2])):
        dst[c] = planes[k]


def _rgb_crop(a: np.ndarray, flip: bool, bgr: bool) -> np.ndarray:
    """The crop ``a`` (H, W, 3) as a contiguous RGB image, flipped as asked."""
    a = cv2.flip(a, 1) if flip else a
    return cv2.cvtColor(a, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(a)


def _skip_rounds(k: int, counts: list[float], limit: float = math.inf) -> tuple[int, int]:
    """Split skipping the first ``k`` batches over workers yielding ``counts`` batches each into
    ``r <= limit`` whole rounds (every worker skips ``min(count, r)`` itself, undecoded) and the
    ``rest`` the loader drops after decoding. A DataLoader takes one batch from each worker in
    turn and drops exhausted workers, so round ``r`` holds one batch of every worker with count > r."""
    r, done = 0, 0
    while r < limit:
        step = sum(1 for c in counts if c > r)
        if step == 0 or done + step > k:
            break
        r, done = r + 1, done + step
    return r, k - done


def _existing_paths(urls, storage_options: dict | None = None) -> list[str]:
    """The shard paths of ``urls``; FileNotFoundError when there are none or some are missing."""
    paths = shard_paths(urls, storage_options=storage_options)
    if not paths:
        raise FileNotFoundError(f"urls {redact(repr(urls))} hold no shard-*.tar; give a build folder, a tar or a glob")
    missing = [p for p in paths if not storage.isfile(p, storage_options)]
    if missing:
        raise FileNotFoundError(
            f"shard {redact(repr(missing[0]))} does not exist ({len(missing)} missing); give a build folder, "
            "a tar or a glob"
        )
    return paths


def _no_samples(urls, n: int) -> ValueError:
    """The error for shards that hold no sample at all (a build that rejected every item)."""
    return ValueError(
        f"urls {redact(repr(urls))}: the {n} shard(s) hold no samples (every item of the build was rejected; its "
        "rejects.jsonl says why), so no batch can be made; build from a source with usable pictures"
    )


def _records(paths: list[str], storage_options: dict | None = None) -> list[dict]:
    """The stats record (size, sha256) of every shard, looked up in threads, to check each tar against
    as it streams; ShardError naming the first shard without one."""
    with ThreadPoolExecutor(max(1, min(8, len(paths)))) as pool:
        records = list(pool.map(lambda p: shard_record(p, storage_options=storage_options), paths))
    for p, record in zip(paths, records):
        if record is None:
            verify_shard(p, storage_options=storage_options)  # raises its "no record" ShardError
    return records


def _join(parts: list[dict]) -> dict:
    """Concatenate collated batches along the batch dimension."""
    out = {"__key__": [k for p in parts for k in p["__key__"]]}
    for name in parts[0]:
        if name != "__key__":
            out[name] = torch.cat([p[name] for p in parts])
    return out


def _split(batch: dict, n: int) -> tuple[dict, dict]:
    """The first ``n`` samples of a collated batch and the rest."""
    return {k: v[:n] for k, v in batch.items()}, {k: v[n:] for k, v in batch.items()}


@documented(StreamSettings)
class ShardStream(IterableDataset):
    """Shards -> batches of uint8 tensors (``to_model_input`` makes the float input); the base of
    ``DraftDataset`` and ``RefineDataset``.

    Splitting: the (rank, worker) slot ``rank * num_workers + worker`` of ``world_size *
    num_workers`` slots. ``exact`` mode shuffles the shard order with (seed, epoch) and gives
    slot s the shards s, s + slots, ...: every sample at most once per epoch across all ranks
    and workers. ``resampled`` mode is an infinite stream: each slot draws shards with
    replacement from its own (seed, epoch, slot) generator; count steps. Samples pass a shuffle
    buffer of ``shuffle_buffer`` (0: file order). Batches are made in the worker, one run over
    all its shards, so only the last batch of an exact epoch can be short: use ``ShardLoader``
    (``make_loader`` does), which joins the short ones into full batches.

    Reading: each tar is streamed once, in order; from a URL in ranged requests of
    ``_stream.BLOCK_SIZE`` (4 MiB), resumed from their byte offset when a connection drops. While a
    worker decodes one shard, a background thread fetches the next block of it and opens the
    next shard of its list (its first block and first sample): the samples and their order are
    those of reading without it. Held per worker: at most ``2 * (2 + _stream.AHEAD) *
    BLOCK_SIZE`` bytes of tar (24 MiB), for the shard being read and the next one, besides the
    samples in the shuffle buffer and batch.

    Parameters
    ----------
    {settings}
    """

    stage = "draft"

    @init_takes(StreamSettings)
    def __init__(self, urls, **settings):
        s = StreamSettings.from_kwargs(type(self).__name__, settings)  # checks every value
        self.paths = _existing_paths(urls, s.storage_options)
        recorded = recorded_counts(self.paths, storage_options=s.storage_options)
        if None not in recorded and not any(recorded):
            raise _no_samples(urls, len(self.paths))
        self.records = _records(self.paths, s.storage_options) if s.verify else None
        for name, value in s.stream().items():  # every setting is an attribute of the same name
            setattr(self, name, value)
        if s.hint_radius is None:
            self.hint_radius = 1 if self.stage == "draft" else 2
        own_pool = storage.join(storage.parent(self.paths[0]), POOL_DIR)
        if s.draft_pool is None and storage.exists(storage.join(own_pool, POOL_JSON), s.storage_options):
            if storage.is_remote(own_pool):  # PatchPool memory-maps a local folder
                if s.online_drafts:
                    raise ValueError(
                        f"online_drafts: the build's pool {redact(own_pool)!r} is in object storage; copy it to a "
                        "local folder and pass draft_pool=THAT_FOLDER"
                    )
            else:
                self.draft_pool = str(own_pool)  # the build's own pool
        self._pool = None
        self._counts: list[int] | None = None if None in recorded else recorded  # worker_samples' (not read twice)
        if s.num_workers is not None:
            self._check_slots(max(1, s.num_workers))

    def set_epoch(self, epoch: int) -> None:
        """Reseed shard order, shuffle buffer, crops and online hints/drafts for ``epoch``."""
        self.epoch = int(epoch)

    def _check_slots(self, nw: int) -> None:
        """Exact mode needs a shard for every (rank, worker) slot."""
        slots = self.world_size * nw
        if self.mode == "exact" and len(self.paths) < slots:
            raise ValueError(
                f"exact mode needs at least world_size * num_workers = {self.world_size} * {nw} = {slots} "
                f"shards, got {len(self.paths)}; build with a smaller --shard-size, use fewer workers, "
                "or use mode='resampled'"
            )

    # -- the raw stream of one (rank, worker) slot
    def _slot(self) -> tuple[int, int, int, int]:
        """(worker, workers, slot, slots) of the calling process."""
        info = get_worker_info()
        w, nw = (0, 1) if info is None else (info.id, info.num_workers)
        return w, nw, self.rank * nw + w, self.world_size * nw

    def _my_shards(self, slot: int, nslots: int) -> list[int]:
        """Indices into ``paths`` of the shards of ``slot`` this epoch (exact mode)."""
        order = sample_rng(self.seed, "shards", self.epoch).permutation(len(self.paths))
        return [int(i) for i in order[slot::nslots]]

    def worker_samples(self, nw: int) -> list[int]:
        """Exact mode: the number of samples each of ``nw`` workers of this rank reads this epoch."""
        if self._counts is None:
            self._counts = shard_counts(self.paths, self.storage_options)  # stats files; cached (paths never change)
        slots = self.world_size * nw
        return [sum(self._counts[i] for i in self._my_shards(self.rank * nw + w, slots)) for w in range(nw)]

    def _tar(self, i: int):
        """The raw samples of shard ``i`` (checked against its record with ``verify``)."""
        verify = False if self.records is None else self.records[i]
        return iter_tar(self.paths[i], storage_options=self.storage_options, verify=verify)

    def _raw(self, slot: int, nslots: int):
        """Raw samples of ``slot``: its shards once (exact) or shards drawn forever (resampled).

        The next shard is opened (and its first sample read) in a background thread while this one
        is read (``_stream.read_ahead``): the same samples in the same order, the request latency hidden.
        """
        if self.mode == "exact":
            for _, raws in read_ahead(self._my_shards(slot, nslots), self._tar):
                yield from raws
            return
        rng = sample_rng(self.seed, "resample", self.epoch, slot)
        draws = (int(rng.integers(len(self.paths))) for _ in itertools.count())
        empty: set[int] = set()  # shards drawn that held no sample (without stats files to say so)
        for i, raws in read_ahead(draws, self._tar):
            empty.add(i)
            for raw in raws:
                empty.discard(i)
                yield raw
            if len(empty) == len(self.paths):
                break
        raise _no_samples(self.paths, len(self.paths))

    def _shuffled(self, raw, slot: int):
        """``raw`` through a shuffle buffer of ``shuffle_buffer`` samples."""
        if self.shuffle_buffer <= 1:
            yield from raw
            return
        rng = sample_rng(self.seed, "shuffle", self.epoch, slot)
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
        """``skip_batches`` as (rounds each worker skips undecoded, loader batches left to drop).

        Workers skip only rounds of full batches: from the first round holding a worker's short
        last batch on, the loader's batches depend on joining, so the loader drops them itself.
        """
        if not self.skip_batches:
            return 0, 0
        if self.mode == "resampled":
            return _skip_rounds(self.skip_batches, [math.inf] * nw)
        b = self.batch_size
        n = self.worker_samples(nw)
        first_short = min((c // b for c in n if c % b), default=math.inf)
        return _skip_rounds(self.skip_batches, [-(-c // b) for c in n], first_short)

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
                    yield self.make_batch(batch)
                batch = []
        if batch:  # the short last batch of an exact epoch; skip_plan never skips it here
            yield self.make_batch(batch)

    # -- one raw sample -> uint8 fields, augmented
    def make_item(self, raw: dict) -> dict:
        """Raw sample -> the stage's cropped/flipped uint8 fields (+ online hints, + draft) and ``__key__``.

        Decodes only what the stage uses (see the module notes). With a crop that fits, the crop is
        placed from the sketch PNG's header before decoding, and the PNG maps are decoded for that
        window only; the fields stay in their decoders' channel order, and ``make_batch`` copies
        them once into RGB(A) planes. An online draft needs the whole RGB picture, so then
        everything is decoded whole, in RGB.

        A sample missing a field the stage needs (colour, sketch, the stored hint map unless
        ``online_hints``, the drawn stored draft) raises ``ShardError`` naming the shard and key, as
        does a map whose size, dtype or channels are not its field's (``decode_sample``); it is never
        skipped, and never leaves a hole in the batch.
        """
        key = raw["__key__"]
        need = {"color", "sketch"} | (set() if self.online_hints else {"hint"})  # required: ShardError without
        stored = self._stored_draft(raw, key) if self.stage == "refine" else None
        online = self.stage == "refine" and stored is None
        if stored:
            need.add(stored)
        # an online draft's regions, if stored: to paste from without a pool, and for the model family's mistakes
        use = need | ({"regions"} if online and (self.draft_pool is None or self.draft_style != "paper") else set())
        rng = sample_rng(self.seed, key, "crop", self.epoch)
        hw = None if online or self.crop is None else png_size(raw.get("sketch.png", b""))
        if hw is not None and min(hw) >= self.crop:  # crop first, then decode only the window
            y, x, flip = _draw_crop(hw, self.crop, self.flip, rng)
            out = decode_sample(raw, only=use, require=need, window=(y, x, self.crop, self.crop))
            bgr = {"draft" if name == stored else name for name in out.pop("__bgr__")}
            if self.stage == "refine":
                out["draft"] = out.pop(stored)
        else:
            sample = decode_sample(raw, only=use, require=need)
            fields = {name: sample[name] for name in ("color", "sketch", "hint") if name in sample}
            if self.stage == "refine":
                fields["draft"] = self._online_draft(sample, key) if online else sample[stored]
            y, x, flip = _draw_crop(fields["color"].shape[:2], self.crop, self.flip, rng)
            out, bgr = _crop(fields, self.crop, y, x), set()
        how = {name: (flip, name in bgr) for name in out if name != "__key__"}  # how make_batch finishes each
        if self.online_hints:
            from ..stages.hints import render_hints, sample_hints

            color = _rgb_crop(out["color"], flip, "color" in bgr)  # the hints are drawn from the final crop
            p = {} if self.hint_p is None else {"p": self.hint_p}
            hints = sample_hints(color, rng=sample_rng(self.seed, key, "hints", self.epoch), **p)
            out["hint"] = render_hints(hints, color.shape[:2], radius=self.hint_radius)
            how["hint"] = (False, False)  # drawn on the finished colour crop: already flipped and RGBA
        out["__how__"], out["__key__"] = how, key
        return out

    def _stored_draft(self, raw: dict, key: str) -> str | None:
        """The stored ``draftK`` drawn for (seed, key, epoch); None without one or with ``online_drafts``."""
        stored = sorted({n.partition(".")[0] for n in raw if n.startswith("draft")})
        stored = [n for n in stored if n[5:].isdigit()]
        if not stored or self.online_drafts:
            return None
        return stored[int(sample_rng(self.seed, key, "draft", self.epoch).integers(len(stored)))]

    def _online_draft(self, sample: dict, key: str) -> np.ndarray:
        """A fresh synthetic draft of the whole RGB picture for (seed, key, epoch), of ``draft_style``."""
        from ..pool import PatchPool
        from ..synth import online_sample

        if self.draft_pool is not None and self._pool is None:
            self._pool = PatchPool.load(self.draft_pool)  # memory-mapped, once per worker
        style = {"draft_style": self.draft_style, "draft_mix": self.draft_mix}
        return online_sample(sample, seed=self.seed, epoch=self.epoch, pool=self._pool, hints=False, **style)["draft"]

    def make_batch(self, raws: list[dict]) -> dict:
        """Raw samples -> uint8 tensors (B, C, H, W) ``color``, ``sketch``, ``hint`` [, ``draft``] and ``__key__``.

        Each sample's crop is copied into its planes (flipped, in RGB(A)) as soon as it is made, so
        only one sample's decoded pictures are alive at a time: the allocator reuses their memory
        instead of faulting in fresh pages for a whole batch of full-size pictures."""
        out: dict = {"__key__": []}
        for i, raw in enumerate(raws):
            item = self.make_item(raw)
            names = [name for name in ("color", "sketch", "hint", "draft") if name in item]
            if i and names != list(out)[1:]:  # never a hole of uninitialised memory in a batch
                raise ShardError(
                    f"sample {item['__key__']!r} gives fields {names}, the batch's first sample {list(out)[1:]}",
                    shard=raw.get("__url__"),
                    key=item["__key__"],
                )
            for name in names:
                a = item[name]
                shape = (1 if a.ndim == 2 else a.shape[2], *a.shape[:2])
                if name not in out:
                    out[name] = np.empty((len(raws), *shape), np.uint8)
                elif out[name].shape[1:] != shape:
                    raise ValueError(
                        f"samples of one batch differ in size ({out['__key__'][0]}: {out[name].shape[2:]}, "
                        f"{item['__key__']}: {shape[1:]}); set crop or batch_size=1"
                    )
                _finish_into(out[name][i], a, *item["__how__"][name])
            out["__key__"].append(item["__key__"])
        return {name: v if name == "__key__" else torch.from_numpy(v) for name, v in out.items()}


def to_model_input(batch: dict, device=None, *, non_blocking: bool = True) -> dict:
    """A ``make_loader`` batch on ``device`` in the float32 layout the models take, made there.

    Parameters
    ----------
    batch : dict
        uint8 tensors (B, C, H, W) ``color``, ``sketch``, ``hint`` [, ``draft``] and ``__key__``.
    device : torch.device, str or None
        Where to move and normalise (None: where the tensors are). Pinned batches copy asynchronously.

    Returns
    -------
    dict
        ``color``/``sketch``/``draft``: ``x / 127.5 - 1`` in [-1, 1]; ``hint``:
        ``[(RGB / 127.5 - 1) * a, a]`` with ``a = alpha / 255`` (no hint: 0, 0, 0, 0); other entries as given.

    Raises
    ------
    TypeError
        A tensor that is not uint8 (an already converted batch): use it as it is.
    """
    out = {}
    for name, v in batch.items():
        if not torch.is_tensor(v):
            out[name] = v
            continue
        if v.dtype != torch.uint8:
            raise TypeError(
                f"batch[{name!r}] has dtype {v.dtype}; to_model_input takes the uint8 batches of make_loader "
                "(a float batch is already model input: use it as it is)"
            )
        out[name] = normalise(v.to(device, non_blocking=non_blocking), hint=name == "hint")
    return out


_UNIT = (torch.arange(256, dtype=torch.float32) / 127.5 - 1.0).numpy()  # float32(v) / 127.5 - 1 for every v
_ALPHA = (torch.arange(256, dtype=torch.float32) / 255.0).numpy()


def _lookup(v: torch.Tensor, table: np.ndarray) -> torch.Tensor:
    """``table[v]`` of a uint8 CPU tensor through OpenCV's LUT: one vectorised pass."""
    flat = v.contiguous().numpy().reshape(-1, v.shape[-1])
    return torch.from_numpy(cv2.LUT(flat, table).reshape(v.shape))


def normalise(v: torch.Tensor, *, hint: bool, lut: bool | None = None) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 ``v / 127.5 - 1``, or for a hint map ``[(rgb / 127.5 - 1) * a, a]``
    with ``a = alpha / 255``, on ``v``'s device. ``lut`` (default: on the CPU) reads the values from
    tables made by those same float32 operations, 3-5x faster than computing them there; both ways
    give the same bits."""
    use_lut = v.device.type == "cpu" if lut is None else lut
    if use_lut:
        x = _lookup(v, _UNIT)
        a = _lookup(v[:, 3:], _ALPHA) if hint else None
    else:
        x = torch.empty(v.shape, dtype=torch.float32, device=v.device).copy_(v)
        a = x[:, 3:] / 255.0 if hint else None
        x.div_(127.5).sub_(1.0)
    if hint:
        x[:, :3].mul_(a)
        x[:, 3:] = a
    return x


@documented(StreamSettings)
class DraftDataset(ShardStream):
    """Draft-stage stream of uint8 batches: ``color``, ``sketch``, ``hint`` and ``__key__`` (online hints:
    radius 1, 3x3). How shards are split over ranks and workers and read: ``ShardStream``.

    Parameters
    ----------
    {settings}

    Shape
    -----
    shards -> ``color`` (B, 3, H, W), ``sketch`` (B, 1, H, W), ``hint`` (B, 4, H, W); B = ``batch_size``,
    H = W = ``crop``.
    """

    stage = "draft"


@documented(StreamSettings)
class RefineDataset(ShardStream):
    """Refine-stage stream: ``DraftDataset``'s fields and ``draft``, a stored ``draftK`` when the shards
    hold one, else synthesised from the ground truth (``s2pdata.stages.drafts.make_draft``) per (seed,
    key, epoch); online hints use radius 2 (5x5, the paper's). Splitting and reading: ``ShardStream``.

    Parameters
    ----------
    {settings}

    Shape
    -----
    shards -> ``color`` (B, 3, H, W), ``sketch`` (B, 1, H, W), ``hint`` (B, 4, H, W), ``draft`` (B, 3, H, W).
    """

    stage = "refine"


class ShardLoader(DataLoader):
    """DataLoader over a ``ShardStream`` (``batch_size=None``: the workers batch) that yields full
    batches only, resumes with ``skip_batches`` and reseeds with ``set_epoch``.

    The short last batches of the workers' exact epochs are joined here, in arrival order, into
    full batches; the final remainder (< batch_size samples) is dropped, or yielded when
    ``drop_last`` is False.
    """

    def __init__(
        self,
        dataset: ShardStream,
        *,
        drop_last: bool = True,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        prefetch_factor: int | None = None,
        keep_heap: bool = True,
    ):
        super().__init__(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            worker_init_fn=_worker_init if keep_heap else None,
            persistent_workers=False,  # set_epoch must reach the workers: fresh ones every epoch
            pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
            prefetch_factor=(prefetch_factor or 2) if num_workers else None,
        )
        # DataLoader's own drop_last belongs to its batch sampler, which batch_size=None turns off
        self.drop_short, self.keep_heap = drop_last, keep_heap

    def __iter__(self):
        ds, nw = self.dataset, max(1, self.num_workers)
        n = sum(ds.worker_samples(nw)) if ds.mode == "exact" else math.inf
        if self.drop_short and n < ds.batch_size:
            raise ValueError(
                f"exact mode: rank {ds.rank} reads {n} samples in epoch {ds.epoch}, fewer than batch_size "
                f"{ds.batch_size}, so no full batch; use a smaller batch_size, drop_last=False or mode='resampled'"
            )
        drop = ds.skip_plan(nw)[1]  # before the workers start: they get the cached shard counts
        if self.keep_heap and not self.num_workers:
            keep_heap()  # the batches are made here
        if self.num_workers:
            storage.release_connections()  # forked workers must not inherit this process's open connections
            warm_png_kernels()  # compiled once here, inherited by every epoch's forked workers
        return self._full(super().__iter__(), drop)

    def _full(self, it, drop: int):
        """Pass full batches, join short ones, drop the first ``drop`` loader batches."""
        size, short = self.dataset.batch_size, None
        for batch in it:
            if len(batch["__key__"]) < size:
                short = batch if short is None else _join([short, batch])
                if len(short["__key__"]) < size:
                    continue
                batch, short = _split(short, size)
                batch = self._pinned(batch)
                short = short if short["__key__"] else None
            if drop:
                drop -= 1
            else:
                yield batch
        if short is not None and not self.drop_short and not drop:
            yield self._pinned(short)

    def _pinned(self, batch: dict) -> dict:
        """Joined tensors are new: pin them again when the loader pins."""
        if not (self.pin_memory and torch.cuda.is_available()):
            return batch
        return {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}

    def set_epoch(self, epoch: int) -> None:
        """Reseed the stream for ``epoch`` (workers are re-created per epoch, so it takes effect)."""
        self.dataset.set_epoch(epoch)
        self.dataset.skip_batches = 0


@takes(LoaderSettings, doc=_public_make_loader.__doc__)
def make_loader(urls, **settings) -> ShardLoader:
    s = LoaderSettings.from_kwargs("make_loader", settings)  # checks every value
    cls = DraftDataset if s.stage == "draft" else RefineDataset
    return ShardLoader(
        cls(urls, **s.stream()),
        drop_last=s.drop_last,
        num_workers=s.num_workers,
        pin_memory=s.pin_memory,
        prefetch_factor=s.prefetch_factor,
        keep_heap=s.keep_heap,
    )
