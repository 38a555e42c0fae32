"""Where items come from: a ``--src`` string -> a source that lists items and reads their bytes.

A source produces ``Item(key, locator, meta)`` records, sorted by key, before anything is
decoded (the build's plan is made from them), and ``source.read(item) -> bytes`` later, in a
worker. Sources are small picklable objects so they travel to spawned workers (listings are
never pickled). Every source has ``summary()`` (printed before work starts) and
``check_pixels(color) -> reason | None`` (pixel filters, run in workers after decoding).

Kinds: ``demo`` / ``demo:N``; ``hf:PATH`` (a local Hugging Face dataset, ``hf.py``); a folder,
probed for a Danbooru layout (``danbooru.py``: gwern ``original|512px/NNNN/ID.ext``, tars of
``ID.ext``, flat ``ID.ext``) and otherwise read as a plain image folder (``folder.py``).
Metadata joins and filters: ``metadata.py``, ``filters.py``.

A folder, a metadata file and the opt-out list may also be URLs read through fsspec
(``remote.py``): ``s3://bucket/prefix``, ``gs://...``, and the Hugging Face Hub as
``hf://datasets/OWNER/NAME[@REVISION][/folder]`` (huggingface_hub's filesystem; ``HF_TOKEN`` or
``{"token": ...}`` in ``storage_options`` for private repositories). ``hf:PATH`` without ``//`` is
still the local ``datasets`` source. A folder URL is listed once (cached in the build folder's
``.s2pdata-cache/listings``), tars are indexed and read by ranged reads (never downloaded whole),
and the same caps and reject reasons hold; credentials never appear in ``spec``, ``summary`` or
the rejects log.

Every source reads files through the one guarded read, ``s2pdata._safeio.read_beneath``: nothing
outside the source's folder (links that leave it included), no FIFO, device or socket, nothing over
``MAX_BYTES``, decided on the open descriptor. A refusal is a ``ReadRefused`` (an ``OSError``) whose
``reason`` (``unsafe-path``, ``unsafe-member``, ``too-large``, ``read-error``) is the reject reason.

Keys contain no dots (WebDataset splits a member name at the first dot of its basename).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

from .. import storage
from ..shards import CACHE_DIR
from . import remote
from .base import Item, Source, sanitize_key
from .demo import DemoSource
from .filters import (
    DEDUP,
    DEFAULT_EXTS,
    PRESETS,
    RATINGS,
    TAG_MODES,
    FilterConfig,
    FilteredSource,
    parse_id_range,
    read_opt_out,
    split_list,
)
from .folder import IMAGE_EXTS, FolderSource

__all__ = [
    "Item",
    "Source",
    "DemoSource",
    "FolderSource",
    "FilterConfig",
    "FilteredSource",
    "IMAGE_EXTS",
    "open_source",
    "sanitize_key",
    "add_source_arguments",
    "source_from_args",
    "filters_from_args",
    "describe_empty",
]


def open_source(spec: str, *, seed: int = 0, storage_options: dict | None = None) -> Source:
    """``demo``, ``demo:N``, a folder path or a folder URL -> a source (no filters, no caches).

    Raises ``ValueError`` naming ``--src`` when the string is neither.
    """
    spec = str(spec)
    if spec == "demo" or spec.startswith("demo:"):
        count = spec.partition(":")[2] or "64"
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--src demo:N needs a positive integer N, got {spec!r}; e.g. demo:256")
        return DemoSource(int(count), seed=seed)
    return FolderSource(spec, storage_options=storage_options)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every source and filter flag (a group ``sources and filters``) to ``parser``."""
    g = parser.add_argument_group("sources and filters")
    g.add_argument(
        "--variant",
        choices=("auto", "original", "512px"),
        default="auto",
        help="gwern Danbooru layout: which image folder to read",
    )
    g.add_argument(
        "--metadata",
        default="auto",
        help="Danbooru posts metadata (JSON Lines .json[l][.gz], posts .tar.gz, .parquet, or a "
        "folder of them); 'auto' looks under --src, 'none' skips it",
    )
    g.add_argument("--hf-split", default="train", help="split of an hf:PATH dataset")
    g.add_argument(
        "--rating", action="append", default=None, help=f"keep these ratings (comma list; {','.join(RATINGS)})"
    )
    g.add_argument("--include-tags", action="append", default=None, help="keep posts with these tags (comma list)")
    g.add_argument("--exclude-tags", action="append", default=None, help="drop posts with any of these tags")
    g.add_argument("--tag-mode", choices=TAG_MODES, default="any", help="--include-tags: any of them, or all of them")
    g.add_argument(
        "--meta-min-side", type=int, default=0, help="drop posts whose metadata says the short side is smaller (0: off)"
    )
    g.add_argument("--max-aspect", type=float, default=0.0, help="drop posts with long/short side above this (0: off)")
    g.add_argument(
        "--ext",
        action="append",
        default=None,
        help=f"file extensions to keep (comma list; default {','.join(DEFAULT_EXTS)})",
    )
    g.add_argument("--min-score", type=int, default=None, help="drop posts with a lower score")
    g.add_argument("--id-range", default=None, help="keep post ids A..B inclusive, 'A:B' (either side may be empty)")
    g.add_argument("--include-deleted", action="store_true", help="keep deleted and banned posts too")
    g.add_argument(
        "--dedup",
        choices=DEDUP,
        default="none",
        help="exact duplicates: md5 from metadata (free), or sha256 (reads every file once "
        "before planning: as slow as a full read of the source)",
    )
    g.add_argument(
        "--drop-monochrome",
        action="store_true",
        help="reject decoded images with (almost) no coloured pixels (saturation test)",
    )
    g.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="colorization: exclude monochrome/greyscale/comic/sketch/lineart/... tags and drop monochrome pixels",
    )
    g.add_argument(
        "--opt-out",
        default=None,
        help="file of artist tags or post ids (one a line, '#' comments) whose works are removed",
    )


def filters_from_args(args: argparse.Namespace) -> FilterConfig:
    """The parsed flags -> a validated ``FilterConfig``."""
    so = getattr(args, "storage_options", None)
    tags, ids = read_opt_out(args.opt_out, so) if getattr(args, "opt_out", None) else (frozenset(), frozenset())
    exts = split_list(args.ext) if getattr(args, "ext", None) else DEFAULT_EXTS
    return FilterConfig(
        ratings=split_list(getattr(args, "rating", None)),
        include_tags=split_list(getattr(args, "include_tags", None)),
        exclude_tags=split_list(getattr(args, "exclude_tags", None)),
        tag_mode=getattr(args, "tag_mode", "any"),
        meta_min_side=int(getattr(args, "meta_min_side", 0) or 0),
        max_aspect=float(getattr(args, "max_aspect", 0) or 0),
        exts=tuple(e.lstrip(".") for e in exts),
        min_score=getattr(args, "min_score", None),
        id_range=parse_id_range(getattr(args, "id_range", None)),
        include_deleted=bool(getattr(args, "include_deleted", False)),
        dedup=getattr(args, "dedup", "none"),
        drop_monochrome=bool(getattr(args, "drop_monochrome", False)),
        preset=getattr(args, "preset", None),
        opt_out_tags=tags,
        opt_out_ids=ids,
    )


def source_from_args(src: str, args: argparse.Namespace, *, seed: int, out: Path) -> Source:
    """``--src`` plus the source/filter flags -> a source with ``summary`` and ``check_pixels``.

    ``out`` is the build folder; joined metadata, tar indexes, the listing of a folder URL and
    Hugging Face's Arrow cache go under ``out/.s2pdata-cache``. URLs (``--src``, ``--metadata``,
    ``--opt-out``) are read with ``args.storage_options`` (a dict, or None).
    """
    from .danbooru import DanbooruSource, probe_layout

    cfg = filters_from_args(args)
    src = str(src)
    cache = Path(out) / CACHE_DIR
    if src == "demo" or src.startswith("demo:"):
        return FilteredSource(open_source(src, seed=seed), cfg)
    if src.startswith("hf:") and not remote.is_url(src):  # hf://datasets/... is a URL, read below
        from .hf import HFSource

        return FilteredSource(HFSource(src[3:], split=getattr(args, "hf_split", "train"), cache_dir=cache / "hf"), cfg)
    so = getattr(args, "storage_options", None)
    if remote.is_url(src):
        return _remote_source_from_args(src.rstrip("/"), args, cfg, so, cache)
    if not Path(src).is_dir():
        raise ValueError(f"--src {src!r} is not a folder, 'hf:PATH', 'demo' or 'demo:N'")
    layout = probe_layout(src, getattr(args, "variant", "auto"))
    if layout is not None:
        return DanbooruSource(
            src,
            layout=layout,
            metadata=getattr(args, "metadata", "auto"),
            filters=cfg,
            cache_dir=out,
            storage_options=so,
        )
    _refuse_metadata(src, args)
    return FilteredSource(FolderSource(src, exts=tuple("." + e for e in cfg.exts)), cfg)


def _refuse_metadata(src: str, args: argparse.Namespace) -> None:
    meta = getattr(args, "metadata", "auto")
    if meta not in (None, "auto", "none"):
        raise ValueError(
            f"--metadata was given but --src {storage.redact(src)!r} is a plain image folder (no ID.ext "
            "names), so nothing can be joined to it"
        )


def _remote_source_from_args(src: str, args, cfg: FilterConfig, so, cache: Path) -> Source:
    """``source_from_args`` of a folder URL: one listing (or the cached one) decides the layout."""
    from .danbooru import DanbooruSource, probe_layout

    listings = cache / "listings"
    listing = remote.list_folder(src, so, listings)
    if not listing.files:
        raise ValueError(
            f"--src {storage.redact(src)!r} holds no objects (an empty or missing folder, or one object); "
            "give a folder URL such as s3://bucket/images, and check --storage-options (endpoint, credentials)"
        )
    probe = remote.Fetches()
    layout = probe_layout(src, getattr(args, "variant", "auto"), storage_options=so, files=listing.files, fetches=probe)
    if layout is not None:
        return DanbooruSource(
            src,
            layout=layout,
            metadata=getattr(args, "metadata", "auto"),
            filters=cfg,
            cache_dir=cache.parent,
            storage_options=so,
            listing=listing,
        )
    _refuse_metadata(src, args)
    exts = tuple("." + e for e in cfg.exts)
    folder = FolderSource(src, exts=exts, storage_options=so, cache_dir=str(listings), listing=listing)
    return FilteredSource(folder, cfg)


_WALK_CAP = 100_000  # files counted at most when describing a folder that lists nothing


def describe_empty(source: Source) -> str:
    """Why ``source`` lists no items, in words: filters removed them all, or what its folder holds.

    Parameters
    ----------
    source : Source
        A source whose ``items()`` is empty.

    Returns
    -------
    str
        One or a few lines for the build's error message, e.g. ``"... holds 1 file (tar 1): 1 .tar file
        that is not a Danbooru archive ..."``.
    """
    inner = getattr(source, "inner", source)
    state = getattr(inner, "_get", None)
    listed = state()["listed"] if inner is source and callable(state) else len(inner.items())
    if listed:
        return f"all {listed} listed items were removed by the filters or the metadata join:\n{source.summary()}"
    root = getattr(inner, "root", None)
    if root is None:
        return f"the source lists no items:\n{source.summary()}"
    skipped = Counter(s["reason"] for s in getattr(inner, "skipped", []))
    reads = ", ".join(getattr(inner, "exts", ())) or "Danbooru ID.ext files"
    held = describe_folder(root, storage_options=getattr(inner, "storage_options", None))
    return f"--src {storage.redact(root)} holds no file this source reads ({reads}); it holds {held}" + (
        f"; never listed: {', '.join(f'{k} {v}' for k, v in sorted(skipped.items()))}" if skipped else ""
    )


def describe_folder(root: str | Path, *, storage_options: dict | None = None) -> str:
    """What ``root`` holds: files counted by extension, and each tar that is not a Danbooru archive.

    Hidden files are left out; at most ``_WALK_CAP`` files are counted. A folder URL is listed
    (one request) and its tars probed by ranged reads.
    """
    from .archive import is_image_tar
    from .danbooru import _tars, listed_tars

    if remote.is_url(root):
        files = remote.list_folder(str(root), storage_options).files
        shown = [r for r in files if not any(q.startswith(".") for q in r.split("/"))][:_WALK_CAP]
        exts = Counter(os.path.splitext(r.rsplit("/", 1)[-1])[1].lower().lstrip(".") or "(none)" for r in shown)
        bad = [
            t
            for t in listed_tars(files)
            if not is_image_tar(remote.join(str(root), t), storage_options=storage_options, size=files[t])
        ]
        return _describe_counts(exts, bad)
    exts: Counter = Counter()
    for _dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        exts.update(os.path.splitext(n)[1].lower().lstrip(".") or "(none)" for n in filenames if not n.startswith("."))
        if sum(exts.values()) >= _WALK_CAP:
            break
    if not sum(exts.values()):
        return "no files"
    bad = [os.path.relpath(t, root) for t in _tars(Path(root)) if not is_image_tar(t)]
    return _describe_counts(exts, bad)


def _describe_counts(exts: Counter, bad: list[str]) -> str:
    """``describe_folder``'s words: files by extension, then the tars (relative names) that are not archives."""
    n = sum(exts.values())
    if not n:
        return "no files"
    text = f"{n} file{'s' * (n != 1)} ({', '.join(f'{k} {v}' for k, v in sorted(exts.items()))})"
    if bad:
        names = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        text += (
            f"; {len(bad)} .tar file{'s' * (len(bad) != 1)} that {'is' if len(bad) == 1 else 'are'} not a Danbooru "
            f"archive ({names}): it needs at least half of its first 16 members named ID.ext"
        )
    return text
