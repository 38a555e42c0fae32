"""Filters: which listed items become training samples.

Consumes the source's listed items (``Item`` with ``meta["id"]`` / ``meta["ext"]``) joined to
normalised metadata ``facts`` (see ``s2pdata.sources.metadata.MetaTable.facts``); produces the
kept items and a count of what each filter removed. Metadata filters run in the parent before
planning; ``check_pixels`` runs in the build's workers on the decoded colour image.

Order (each removed item is counted once, by the first filter that removes it): ``ext``,
``id-range``, ``opt-out`` (ids), ``no-metadata``, ``deleted``, ``opt-out`` (artist tags),
``rating``, ``tags``, ``meta-min-side``, ``max-aspect``, ``min-score``, ``dedup``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from s2pdata import storage
from s2pdata._check import check_array
from s2pdata._safeio import ReadRefused, read_beneath

from .folder import IMAGE_EXTS
from .remote import is_url, read_object

#: Canonical Danbooru ratings, in order (codes 0..3 in metadata tables).
RATINGS = ("general", "sensitive", "questionable", "explicit")

#: Extensions listed by default (Danbooru also holds gif/mp4/webm/zip/swf posts).
DEFAULT_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTS)

#: ``--preset colorization`` (docs/method.md, Sources): colour illustrations only.
PRESETS = {
    "colorization": {
        "exclude_tags": (
            "monochrome",
            "greyscale",
            "comic",
            "sketch",
            "lineart",
            "spot_color",
            "photo_(medium)",
            "text-only_page",
        ),
        "drop_monochrome": True,
    },
}

DEDUP = ("none", "md5", "sha256")

#: Names under which filters count removed items, in the order they run.
FILTER_NAMES = (
    "duplicate-id",
    "ext",
    "id-range",
    "opt-out",
    "no-metadata",
    "deleted",
    "rating",
    "exclude-tags",
    "include-tags",
    "meta-min-side",
    "max-aspect",
    "min-score",
    "dedup",
)
TAG_MODES = ("any", "all")

#: Monochrome test: a pixel is coloured when max(R,G,B) - min(R,G,B) exceeds ``CHROMA``; an
#: image is monochrome when fewer than ``COLOUR_FRACTION`` of its pixels are coloured. Grey,
#: ink-on-white and faintly tinted scans pass under both; sepia-toned pictures with strong tint
#: count as coloured (the metadata tags catch those).
CHROMA = 24
COLOUR_FRACTION = 0.02


def normalize_tag(text: str) -> str:
    """Danbooru tag spelling: lower case, spaces as underscores."""
    return "_".join(str(text).strip().lower().split())


@dataclasses.dataclass(frozen=True)
class FilterConfig:
    """Every filter setting (JSON-able; part of the build fingerprint through ``spec()``)."""

    ratings: tuple[str, ...] = ()
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    tag_mode: str = "any"
    meta_min_side: int = 0
    max_aspect: float = 0.0
    exts: tuple[str, ...] = DEFAULT_EXTS
    min_score: int | None = None
    id_range: tuple[int, int] | None = None
    include_deleted: bool = False
    dedup: str = "none"
    drop_monochrome: bool = False
    preset: str | None = None
    opt_out_tags: frozenset = frozenset()
    opt_out_ids: frozenset = frozenset()

    def __post_init__(self):
        for r in self.ratings:
            if r not in RATINGS:
                raise ValueError(f"--rating must be among {RATINGS}, got {r!r}; e.g. --rating general,sensitive")
        if self.tag_mode not in TAG_MODES:
            raise ValueError(f"--tag-mode must be one of {TAG_MODES}, got {self.tag_mode!r}")
        if self.dedup not in DEDUP:
            raise ValueError(f"--dedup must be one of {DEDUP}, got {self.dedup!r}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.meta_min_side < 0 or self.max_aspect < 0:
            raise ValueError(
                f"--meta-min-side and --max-aspect must be >= 0, got "
                f"{self.meta_min_side!r}, {self.max_aspect!r}; 0 turns them off"
            )
        if 0 < self.max_aspect < 1:
            raise ValueError(f"--max-aspect is long side / short side (>= 1), got {self.max_aspect!r}")
        if self.id_range is not None and self.id_range[0] > self.id_range[1]:
            raise ValueError(f"--id-range A:B needs A <= B, got {self.id_range!r}")

    # -- derived settings ------------------------------------------------------------------------

    @property
    def excluded(self) -> frozenset:
        extra = PRESETS[self.preset]["exclude_tags"] if self.preset else ()
        return frozenset(self.exclude_tags) | frozenset(extra)

    @property
    def monochrome(self) -> bool:
        return self.drop_monochrome or bool(self.preset and PRESETS[self.preset]["drop_monochrome"])

    def tracked_tags(self) -> frozenset:
        """Tags the filters look at (the metadata cache keeps only these, plus artist tags)."""
        return frozenset(self.include_tags) | self.excluded

    def needs_metadata(self, *, with_preset: bool = True) -> list[str]:
        """Names of the active filters that can only work from metadata.

        A preset's tag list is the one exception when ``with_preset`` is False: without metadata
        a preset keeps its pixel filters and its tag part is skipped (the summary says so), so
        ``--preset colorization`` also serves a studio folder.
        """
        tags = self.excluded if with_preset else frozenset(self.exclude_tags)
        need = [
            ("--rating", bool(self.ratings)),
            ("--include-tags", bool(self.include_tags)),
            ("--exclude-tags" + ("/--preset" if with_preset else ""), bool(tags)),
            ("--meta-min-side", self.meta_min_side > 0),
            ("--max-aspect", self.max_aspect > 0),
            ("--min-score", self.min_score is not None),
            ("--dedup md5", self.dedup == "md5"),
            ("--opt-out (artist tags)", bool(self.opt_out_tags)),
        ]
        return [name for name, on in need if on]

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["opt_out_tags"] = _set_digest(self.opt_out_tags)
        d["opt_out_ids"] = _set_digest(self.opt_out_ids)
        d["id_range"] = list(self.id_range) if self.id_range else None
        for k in ("ratings", "include_tags", "exclude_tags", "exts"):
            d[k] = list(d[k])
        return d


def _set_digest(values) -> dict:
    text = "\n".join(sorted(map(str, values)))
    return {"count": len(values), "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}


OPT_OUT_BYTES = 64 << 20  # an opt-out list of millions of names is a few tens of MB


def read_opt_out(path: str | Path, storage_options: dict | None = None) -> tuple[frozenset, frozenset]:
    """An opt-out file -> (artist tags, post ids).

    One entry a line; ``#`` starts a comment; a line of digits is a post id, anything else an
    artist tag (spaces become underscores, case is ignored). ``path`` may be a URL (read with
    ``storage_options`` in one ranged read of at most ``OPT_OUT_BYTES + 1`` bytes).
    """
    try:
        if is_url(path):
            text = read_object(str(path), storage_options=storage_options, max_bytes=OPT_OUT_BYTES)
        else:
            real = os.path.realpath(path)  # the user named it: read it where it really lies, but never a FIFO
            text = read_beneath(os.path.dirname(real), os.path.basename(real), max_bytes=OPT_OUT_BYTES)
    except ReadRefused as exc:
        raise ValueError(
            f"--opt-out {storage.redact(path)!r} cannot be read ({exc.reason}: {exc.detail}); "
            f"give a text file of artist tags or ids (at most {OPT_OUT_BYTES >> 20} MiB)"
        ) from None
    tags, ids = set(), set()
    for line in text.decode("utf-8", errors="replace").splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if entry.isdigit():
            ids.add(int(entry))
        else:
            tags.add(normalize_tag(entry))
    return frozenset(tags), frozenset(ids)


def parse_id_range(text: str | None) -> tuple[int, int] | None:
    """``"A:B"`` (inclusive; either side may be empty) -> ``(A, B)``."""
    if text is None or text == "":
        return None
    lo, sep, hi = str(text).partition(":")
    try:
        if not sep:
            raise ValueError
        return (int(lo) if lo.strip() else 0, int(hi) if hi.strip() else 2**62)
    except ValueError:
        raise ValueError(
            f"--id-range must be A:B with integers (inclusive, either may be empty), "
            f"got {text!r}; e.g. --id-range 1000000:2000000"
        ) from None


def split_list(values) -> tuple[str, ...]:
    """``["a,b", "c d"]`` or ``"a,b"`` -> ``("a", "b", "c", "d")`` (normalised tags)."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    out = []
    for v in values:
        out += [normalize_tag(t) for t in str(v).replace(",", " ").split() if t.strip()]
    return tuple(dict.fromkeys(out))


# ---------------------------------------------------------------------------------------------
# applying the filters


def _rules(cfg: FilterConfig, has_metadata: bool) -> list[tuple[str, bool, Callable]]:
    """The active filters in the order they run: ``(name, needs_facts, drops)`` with
    ``drops(pid, ext, facts) -> bool`` True when the item is removed.

    A rule that needs facts is never asked about an item without any: such an item is kept
    unless ``no-metadata`` removed it. ``dedup`` (md5) comes last and remembers each digest it
    keeps, so an item counts as a duplicate only of an item that passed every filter.
    """
    exts = frozenset(e.lower().lstrip(".") for e in cfg.exts)
    excluded, included, ratings = cfg.excluded, frozenset(cfg.include_tags), frozenset(cfg.ratings)
    lo, hi = cfg.id_range or (0, 0)
    need = bool(cfg.needs_metadata())
    seen_md5: set = set()

    def new_md5(f) -> bool:
        md5 = f["md5"]
        if not md5:
            return False
        duplicate = md5 in seen_md5
        seen_md5.add(md5)
        return duplicate

    def short_side(f) -> int:
        return min(f["width"], f["height"])

    def aspect_out(f) -> bool:
        short = short_side(f)
        return short <= 0 or max(f["width"], f["height"]) / short > cfg.max_aspect

    def tags_missing(f) -> bool:
        return included.isdisjoint(f["tags"]) if cfg.tag_mode == "any" else not included <= f["tags"]

    table = [  # (name, active, needs_facts, drops(pid, ext, f))
        ("ext", bool(exts), False, lambda pid, ext, f: bool(ext) and ext not in exts),  # unknown ext: kept
        ("id-range", cfg.id_range is not None, False, lambda pid, ext, f: pid is None or not lo <= pid <= hi),
        ("opt-out", bool(cfg.opt_out_ids), False, lambda pid, ext, f: pid is not None and pid in cfg.opt_out_ids),
        ("no-metadata", has_metadata and need, False, lambda pid, ext, f: f is None),
        ("deleted", not cfg.include_deleted, True, lambda pid, ext, f: f["is_deleted"] or f["is_banned"]),
        ("opt-out", bool(cfg.opt_out_tags), True, lambda pid, ext, f: not cfg.opt_out_tags.isdisjoint(f["artist"])),
        ("rating", bool(ratings), True, lambda pid, ext, f: f["rating"] not in ratings),
        ("exclude-tags", bool(excluded), True, lambda pid, ext, f: not excluded.isdisjoint(f["tags"])),
        ("include-tags", bool(included), True, lambda pid, ext, f: tags_missing(f)),
        ("meta-min-side", bool(cfg.meta_min_side), True, lambda pid, ext, f: short_side(f) < cfg.meta_min_side),
        ("max-aspect", bool(cfg.max_aspect), True, lambda pid, ext, f: aspect_out(f)),
        ("min-score", cfg.min_score is not None, True, lambda pid, ext, f: f["score"] < cfg.min_score),
        ("dedup", cfg.dedup == "md5", True, lambda pid, ext, f: new_md5(f)),
    ]
    return [(name, needs_facts, drops) for name, active, needs_facts, drops in table if active]


def _first_drop(rules, pid, ext, f) -> str | None:
    """Name of the first rule that removes the item, or None to keep it."""
    for name, needs_facts, drops in rules:
        if needs_facts and f is None:
            return None
        if drops(pid, ext, f):
            return name
    return None


def _dedup_sha256(items, kept: list[int], read, removed: dict[str, int]) -> list[int]:
    """Keep the first of the kept items with each content digest; counts the rest as ``dedup``."""
    if read is None:
        raise ValueError("--dedup sha256 needs a source that can read its items")
    seen, out = set(), []
    for i in kept:
        try:
            digest = hashlib.sha256(read(items[i])).digest()
        except OSError:
            out.append(i)  # unreadable: the build reports it
            continue
        if digest in seen:
            removed["dedup"] = removed.get("dedup", 0) + 1
            continue
        seen.add(digest)
        out.append(i)
    return out


def apply_filters(items, facts, cfg: FilterConfig, *, has_metadata: bool, read=None):
    """Run every metadata / listing filter.

    Parameters
    ----------
    items : list of Item
        Sorted by key; ``meta`` may carry ``id`` (int) and ``ext``.
    facts : list of (dict or None)
        Aligned with ``items``: the normalised metadata record (``MetaTable.facts``) or ``None``.
    cfg : FilterConfig
    has_metadata : bool
        Whether any metadata was loaded (``no-metadata`` and ``deleted`` only apply then).
    read : callable or None
        ``read(item) -> bytes``; needed for ``dedup="sha256"`` (reads every kept file once).

    Returns
    -------
    (list of int, dict)
        Indices of the kept items (in order) and ``{filter name: removed count}``.
    """
    strict = cfg.needs_metadata(with_preset=False)
    if strict and not has_metadata:
        raise ValueError(
            f"{', '.join(strict)} need Danbooru metadata, but none was found or given; "
            "pass --metadata PATH (posts JSON Lines, .tar.gz or parquet)"
        )
    rules = _rules(cfg, has_metadata)
    removed: dict[str, int] = {}
    kept: list[int] = []
    for i, (item, f) in enumerate(zip(items, facts)):
        meta = item.meta
        ext = (meta.get("ext") or (f or {}).get("ext") or "").lower()
        name = _first_drop(rules, meta.get("id"), ext, f)
        if name is None:
            kept.append(i)
        else:
            removed[name] = removed.get(name, 0) + 1
    if cfg.dedup == "sha256":
        kept = _dedup_sha256(items, kept, read, removed)
    return kept, {k: removed[k] for k in FILTER_NAMES if k in removed}


def is_monochrome(color: np.ndarray, *, chroma: int = CHROMA, fraction: float = COLOUR_FRACTION) -> bool:
    """Saturation test: True when fewer than ``fraction`` of the pixels carry colour.

    A pixel carries colour when ``max(R, G, B) - min(R, G, B) > chroma`` (the HSV chroma,
    i.e. saturation times value).

    Shape
    -----
    (H, W, 3) uint8 -> bool
    """
    check_array("color", color, ndim=3, channels=(3,))
    c = color.max(axis=2).astype(np.int16) - color.min(axis=2)
    return int(np.count_nonzero(c > chroma)) < fraction * c.size


def check_pixels(color: np.ndarray, cfg: FilterConfig) -> str | None:
    """Pixel filters for one decoded image: ``None`` keeps it, else the reject reason."""
    if cfg.monochrome and is_monochrome(color):
        return "monochrome"
    return None


def format_removed(removed: dict[str, int]) -> str:
    """``{"ext": 3, "rating": 1}`` -> ``"ext 3, rating 1"`` (``"none"`` when empty)."""
    return ", ".join(f"{k} {v}" for k, v in removed.items()) or "none"


class FilteredSource:
    """Any source's items through the listing filters (ext, sha256 dedup) and pixel filters.

    Used for plain folders, the demo and Hugging Face datasets, which carry no Danbooru
    metadata; the wrapped source's ``spec`` gains the filter settings.
    """

    def __init__(self, inner, filters: FilterConfig):
        self.inner = inner
        self.filters = filters
        self._state = None

    def __getstate__(self):  # workers need only the settings, never the listing
        return {**self.__dict__, "_state": None}

    def _get(self):
        if self._state is None:
            from .base import Item

            listed = self.inner.items()
            pre = [Item(it.key, it.locator, {**it.meta, "ext": _ext_of(it)}) for it in listed]
            kept, removed = apply_filters(
                pre, [None] * len(pre), self.filters, has_metadata=False, read=self.inner.read
            )
            self._state = {
                "items": [listed[i] for i in kept],
                "removed": removed,
                "listed": len(listed),
                "fingerprint": _listing_fingerprint(self.inner, listed),
            }
        return self._state

    def items(self):
        return list(self._get()["items"])

    @property
    def skipped(self) -> list[dict]:
        return list(getattr(self.inner, "skipped", []))

    def spec(self) -> dict:
        inner = self.inner.spec()
        return {
            **inner,
            "filters": self.filters.to_json(),
            "listing": inner.get("listing") or self._get()["fingerprint"],
        }

    def read(self, item) -> bytes:
        return self.inner.read(item)

    def check_pixels(self, color: np.ndarray) -> str | None:
        return check_pixels(color, self.filters)

    def summary(self) -> str:
        st = self._get()
        note = ""
        if self.filters.preset and self.filters.excluded - frozenset(self.filters.exclude_tags):
            note = f"\npreset   {self.filters.preset}: tag part skipped (no metadata), pixel filters on"
        return (
            self.inner.summary()
            + f"\nfilters  removed {format_removed(st['removed'])}"
            + note
            + f"\nremain   {len(st['items'])} of {st['listed']} items"
        )


def _listing_fingerprint(inner, items) -> dict:
    """Count + sha256 of keys, locators and (for files under ``inner.root``) sizes; under a folder
    URL, the sizes its listing gave (``listed_sizes``), so the fingerprint is the one on disk."""
    import os

    h = hashlib.sha256()
    root = getattr(inner, "root", None)
    listed = inner.listed_sizes() if root is not None and is_url(root) and hasattr(inner, "listed_sizes") else None
    for it in items:
        size = ""
        if listed is not None:
            size = listed.get(it.locator, "missing") if isinstance(it.locator, str) else ""
        elif root is not None and isinstance(it.locator, str):
            try:
                size = os.stat(os.path.join(root, it.locator)).st_size
            except OSError:
                size = "missing"
        h.update(f"{it.key}\t{it.locator}\t{size}\n".encode())
    return {"count": len(items), "sha256": h.hexdigest()}


def _ext_of(item) -> str:
    if item.meta.get("ext"):
        return str(item.meta["ext"]).lower().lstrip(".")
    path = item.meta.get("path") or (item.locator if isinstance(item.locator, str) else "")
    name = str(path).rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[1].lower() if "." in name else ""
