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


def open_source(spec: str, *, seed: int = 0) -> Source:
    """``demo``, ``demo:N`` or a folder path -> a source (no filters, no metadata cache).

    Raises ``ValueError`` naming ``--src`` when the string is neither.
    """
    spec = str(spec)
    if spec == "demo" or spec.startswith("demo:"):
        count = spec.partition(":")[2] or "64"
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--src demo:N needs a positive integer N, got {spec!r}; e.g. demo:256")
        return DemoSource(int(count), seed=seed)
    return FolderSource(spec)


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
    tags, ids = read_opt_out(args.opt_out) if getattr(args, "opt_out", None) else (frozenset(), frozenset())
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

    ``out`` is the build folder; joined metadata and Hugging Face's Arrow cache go under
    ``out/.s2pdata-cache``.
    """
    from .danbooru import DanbooruSource, probe_layout

    cfg = filters_from_args(args)
    src = str(src)
    cache = Path(out) / ".s2pdata-cache"
    if src == "demo" or src.startswith("demo:"):
        return FilteredSource(open_source(src, seed=seed), cfg)
    if src.startswith("hf:"):
        from .hf import HFSource

        return FilteredSource(HFSource(src[3:], split=getattr(args, "hf_split", "train"), cache_dir=cache / "hf"), cfg)
    if not Path(src).is_dir():
        raise ValueError(f"--src {src!r} is not a folder, 'hf:PATH', 'demo' or 'demo:N'")
    layout = probe_layout(src, getattr(args, "variant", "auto"))
    if layout is not None:
        return DanbooruSource(
            src, layout=layout, metadata=getattr(args, "metadata", "auto"), filters=cfg, cache_dir=out
        )
    meta = getattr(args, "metadata", "auto")
    if meta not in (None, "auto", "none"):
        raise ValueError(
            f"--metadata was given but --src {src!r} is a plain image folder (no ID.ext "
            "names), so nothing can be joined to it"
        )
    return FilteredSource(FolderSource(src, exts=tuple("." + e for e in cfg.exts)), cfg)


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
    return f"--src {root} holds no file this source reads ({reads}); it holds {describe_folder(root)}" + (
        f"; never listed: {', '.join(f'{k} {v}' for k, v in sorted(skipped.items()))}" if skipped else ""
    )


def describe_folder(root: str | Path) -> str:
    """What ``root`` holds: files counted by extension, and each tar that is not a Danbooru archive.

    Hidden files are left out; at most ``_WALK_CAP`` files are counted.
    """
    from .archive import is_image_tar
    from .danbooru import _tars

    exts: Counter = Counter()
    for _dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        exts.update(os.path.splitext(n)[1].lower().lstrip(".") or "(none)" for n in filenames if not n.startswith("."))
        if sum(exts.values()) >= _WALK_CAP:
            break
    n = sum(exts.values())
    if not n:
        return "no files"
    text = f"{n} file{'s' * (n != 1)} ({', '.join(f'{k} {v}' for k, v in sorted(exts.items()))})"
    bad = [t for t in _tars(Path(root)) if not is_image_tar(t)]
    if bad:
        names = ", ".join(os.path.relpath(t, root) for t in bad[:3]) + (", ..." if len(bad) > 3 else "")
        text += (
            f"; {len(bad)} .tar file{'s' * (len(bad) != 1)} that {'is' if len(bad) == 1 else 'are'} not a Danbooru "
            f"archive ({names}): it needs at least half of its first 16 members named ID.ext"
        )
    return text
