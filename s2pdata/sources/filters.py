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
from pathlib import Path

import numpy as np

from s2pdata._check import check_array

from .folder import IMAGE_EXTS

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


def read_opt_out(path: str | Path) -> tuple[frozenset, frozenset]:
    """An opt-out file -> (artist tags, post ids).

    One entry a line; ``#`` starts a comment; a line of digits is a post id, anything else an
    artist tag (spaces become underscores, case is ignored).
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--opt-out {str(path)!r} is not a file; give a text file of artist tags or ids")
    tags, ids = set(), set()
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
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
    need = cfg.needs_metadata()
    strict = cfg.needs_metadata(with_preset=False)
    if strict and not has_metadata:
        raise ValueError(
            f"{', '.join(strict)} need Danbooru metadata, but none was found or given; "
            "pass --metadata PATH (posts JSON Lines, .tar.gz or parquet)"
        )
    removed: dict[str, int] = {}
    kept: list[int] = []
    exts = frozenset(e.lower().lstrip(".") for e in cfg.exts)
    excluded, included = cfg.excluded, frozenset(cfg.include_tags)
    ratings = frozenset(cfg.ratings)
    seen_md5: set = set()

    def drop(name):
        removed[name] = removed.get(name, 0) + 1

    for i, (item, f) in enumerate(zip(items, facts)):
        meta = item.meta
        pid = meta.get("id")
        ext = (meta.get("ext") or (f or {}).get("ext") or "").lower()
        if exts and ext and ext not in exts:  # unknown extension (some HF rows): not judged here
            drop("ext")
            continue
        if cfg.id_range is not None and (pid is None or not cfg.id_range[0] <= pid <= cfg.id_range[1]):
            drop("id-range")
            continue
        if pid is not None and pid in cfg.opt_out_ids:
            drop("opt-out")
            continue
        if f is None:
            if has_metadata and need:
                drop("no-metadata")
                continue
            kept.append(i)
            continue
        if not cfg.include_deleted and (f["is_deleted"] or f["is_banned"]):
            drop("deleted")
            continue
        if cfg.opt_out_tags and not cfg.opt_out_tags.isdisjoint(f["artist"]):
            drop("opt-out")
            continue
        if ratings and f["rating"] not in ratings:
            drop("rating")
            continue
        tags = f["tags"]
        if excluded and not excluded.isdisjoint(tags):
            drop("exclude-tags")
            continue
        if included and (included.isdisjoint(tags) if cfg.tag_mode == "any" else not included <= tags):
            drop("include-tags")
            continue
        w, h = f["width"], f["height"]
        if cfg.meta_min_side and (min(w, h) < cfg.meta_min_side):
            drop("meta-min-side")
            continue
        if cfg.max_aspect and (min(w, h) <= 0 or max(w, h) / min(w, h) > cfg.max_aspect):
            drop("max-aspect")
            continue
        if cfg.min_score is not None and f["score"] < cfg.min_score:
            drop("min-score")
            continue
        if cfg.dedup == "md5" and f["md5"]:
            if f["md5"] in seen_md5:
                drop("dedup")
                continue
            seen_md5.add(f["md5"])
        kept.append(i)
    if cfg.dedup == "sha256":
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
                drop("dedup")
                continue
            seen.add(digest)
            out.append(i)
        kept = out
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
    """Count + sha256 of keys, locators and (for files under ``inner.root``) sizes."""
    import os

    h = hashlib.sha256()
    root = getattr(inner, "root", None)
    for it in items:
        size = ""
        if root is not None and isinstance(it.locator, str):
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
