"""Reading shards back: shards -> decoded numpy samples (no torch needed).

``open_shards(path)`` consumes a build folder, a tar, a glob or a list of them and yields one
dict per sample: ``color`` (H, W, 3) uint8 RGB, ``sketch`` (H, W) uint8, ``hint`` (H, W, 4)
uint8 RGBA (alpha = hint mask), ``regions`` (H, W) int32 when built, ``draft0``.. (H, W, 3)
uint8 when built, ``json`` (dict) and ``__key__``. Members are decoded by extension
(``s2pdata.shards.decode_sample``): PNG members with s2pdata's own reader (``s2pdata.pngread``,
which leaves PNG layouts it does not take to OpenCV), JPEG and WebP with OpenCV, the json with
``json``; nothing is ever unpickled. Tars are streamed in order, each read once (from a URL in
ranged requests resumed where a connection broke, the next tar opened while this one is read:
``s2pdata._stream``). ``verify=True`` checks each tar against the size and sha256 its stats file
(or ``shardindex.json``) records as it streams: the size before its first sample, the sha256
before its last. A damaged shard or a member that does not decode raises
``s2pdata.shards.ShardError`` naming the shard (and the key).

``make_loader(urls, ...)`` is the training entry: a torch DataLoader of full batches of uint8
tensors, and ``to_model_input(batch, device)`` turns a batch into the models' float input on the
device (``s2pdata.data.loader``; torch is imported on the first call, not by this package).
``DraftDataset`` and ``RefineDataset``, the streams it wraps, are reached here too (``from
s2pdata.data import DraftDataset`` imports torch). Their settings are the fields of
``StreamSettings``, and ``make_loader``'s those of ``LoaderSettings`` (``s2pdata.data.settings``):
each with its type, default and doc, shown by ``help`` and by their signatures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .._stream import read_ahead
from ..shards import SAMPLE_FIELDS, ShardError, decode_sample, iter_tar, shard_paths
from ..storage import redact
from .settings import LoaderSettings, StreamSettings, takes

if TYPE_CHECKING:  # the names __getattr__ gives, for type checkers
    from .loader import DraftDataset as DraftDataset
    from .loader import RefineDataset as RefineDataset
    from .loader import ShardLoader as ShardLoader

__all__ = ["LoaderSettings", "ShardError", "StreamSettings", "make_loader", "open_shards", "to_model_input"]
# torch's: reached here on first use, but left out of __all__ and dir() so that ``import *`` and
# ``help(s2pdata.data)`` do not import torch
_FROM_LOADER = ("DraftDataset", "RefineDataset", "ShardLoader")


def open_shards(
    path, *, decode: bool = True, verify: bool = False, storage_options: dict | None = None
) -> Iterator[dict]:
    """Yield every sample of the shards at ``path`` in shard and file order.

    Parameters
    ----------
    path : str, PathLike or list
        A build folder (its ``shard-*.tar``), one tar, a glob pattern, or a list of those; each a
        local path or a URL (``s3://bucket/run``, ``gs://``, ``hf://``, ``https://`` for one tar),
        whose tars are streamed in order with no local copy.
    decode : bool
        False yields the raw member bytes (``{"__key__", "__url__", "color.jpg": bytes, ...}``).
    verify : bool
        Compare each tar with the size and sha256 its stats file (or the folder's
        ``shardindex.json``) records, hashing it as it streams (``iter_tar(verify=...)``): no
        extra read. The size is checked before a tar's first sample, the sha256 before its last
        one is yielded: of a damaged shard a consumer may have had every sample but the last,
        never the whole shard. A member that does not decode in a verified shard is checked
        against the hash first (the rest of the tar is read): a damaged file is a sha256 mismatch.
    storage_options : dict or None
        Passed to the filesystem of URLs (e.g. ``{"endpoint_url": ..., "anon": True}`` for s3);
        credentials otherwise come from the environment (``s2pdata.storage``).

    Raises
    ------
    ShardError
        Naming the shard: it does not match its record (``verify``), a tar header is damaged, or
        (naming the key too) a member does not decode.
    """
    paths = shard_paths(path, storage_options=storage_options)
    if not paths:
        raise FileNotFoundError(f"path {redact(repr(path))} holds no shard-*.tar; give a build folder, a tar or a glob")
    for _, raws in read_ahead(paths, lambda p: iter_tar(p, storage_options=storage_options, verify=verify)):
        raws = iter(raws)
        for raw in raws:
            if not decode:
                yield raw
                continue
            try:
                sample = decode_sample(raw, require=SAMPLE_FIELDS)
            except ShardError:
                if verify:
                    for _ in raws:  # to the end of the tar: a file that is not what its stats say raises that
                        pass
                raise
            yield sample


@takes(LoaderSettings)
def make_loader(urls, **settings) -> ShardLoader:
    """A torch DataLoader of full batches over shards, with ``set_epoch``; imports torch on first use.

    Parameters
    ----------
    {settings}

    Returns
    -------
    ShardLoader
        A DataLoader (``s2pdata.data.loader.ShardLoader``) of dicts of uint8 tensors, channels first,
        and ``__key__`` (the B sample keys); ``to_model_input`` makes the models' float32 layout on the
        device; ``loader.set_epoch(e)`` reseeds before the next ``iter``.

    Raises
    ------
    TypeError
        An unknown keyword argument, naming the closest known one.
    ValueError
        A setting out of its range, naming it and its value; exact mode with fewer shards than
        (rank, worker) slots.
    FileNotFoundError
        ``urls`` hold no shard, or a listed shard is missing.

    Shape
    -----
    shards -> ``color`` (B, 3, H, W), ``sketch`` (B, 1, H, W), ``hint`` (B, 4, H, W), ``draft`` (B, 3, H, W)
    (refine only); B = ``batch_size``, H = W = ``crop``.
    """
    LoaderSettings.from_kwargs("make_loader", settings)  # a bad name or value fails before torch is imported
    return _torch_loader().make_loader(urls, **settings)


def to_model_input(batch: dict, device=None, *, non_blocking: bool = True) -> dict:
    """A ``make_loader`` batch (uint8) moved to ``device`` and normalised there into the models' float32
    input: colour, sketch, draft ``x / 127.5 - 1``; hint ``[(RGB / 127.5 - 1) * a, a]``, ``a = alpha / 255``.
    Documented in full at ``s2pdata.data.loader.to_model_input``."""
    return _torch_loader().to_model_input(batch, device, non_blocking=non_blocking)


def __getattr__(name: str):
    """``DraftDataset``, ``RefineDataset`` and ``ShardLoader`` from ``s2pdata.data.loader`` (imports torch)."""
    if name in _FROM_LOADER:
        return getattr(_torch_loader(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _torch_loader():
    """``s2pdata.data.loader``, imported on first use: it needs torch."""
    try:
        from . import loader
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise ModuleNotFoundError("make_loader needs torch: pip install 's2pdata[torch]'", name="torch") from exc
    return loader
