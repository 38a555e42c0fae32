"""A plain folder of images, walked recursively.

Consumes a folder path; produces sorted ``Item``s (key from the relative path) and, in a worker,
each file's bytes. Nothing outside the folder is read: links that leave it, FIFOs, devices and
files over ``MAX_BYTES`` are listed in ``skipped`` (the build's rejects log) instead, and ``read``
goes through the one guarded read (``s2pdata._safeio``), which decides again on the open file.

The folder may be a URL (``s3://bucket/images``, ``hf://datasets/OWNER/NAME/images``; see
``remote``): it is listed once, recursively (cached in the build folder when ``cache_dir`` is
given), and each file is one ranged read of at most ``MAX_BYTES + 1`` bytes. The items, keys and
bytes are those of the same files on disk; keys that could leave the folder (``..``) and objects
over ``MAX_BYTES`` are listed in ``skipped``.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .. import storage
from .._safeio import read_beneath
from . import remote
from .base import MAX_BYTES, Item, check_file, sanitize_key

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class FolderSource:
    """Every file under ``root`` whose extension is in ``exts`` (case-insensitive).

    The key is the relative path made dot-free (``a/b.png`` -> ``a_b_png``); the rare paths that
    collide after that get a digest suffix, so keys stay unique and stable.

    ``root`` may be a folder URL, read with ``storage_options`` (never shown: not in ``repr``,
    ``spec`` or ``summary``); ``cache_dir`` is where its listing is cached (the build folder's
    ``.s2pdata-cache/listings``; None: listed once per process); ``listing`` is that listing when
    the caller already made it (``source_from_args``; never pickled).
    """

    root: str
    exts: tuple[str, ...] = IMAGE_EXTS
    storage_options: dict | None = field(default=None, repr=False, compare=False)
    cache_dir: str | None = field(default=None, compare=False)
    listing: remote.Listing | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if remote.is_url(self.root):
            object.__setattr__(self, "root", str(self.root).rstrip("/"))  # the listing says what is there
            return
        if not Path(self.root).is_dir():
            raise ValueError(f"--src {self.root!r} is not a folder (nor 'demo' / 'demo:N'); give a folder of images")

    def spec(self) -> dict:
        root = storage.redact(self.root) if remote.is_url(self.root) else str(Path(self.root).resolve())
        return {"kind": "folder", "root": root, "exts": list(self.exts)}

    def __getstate__(self) -> dict:
        # workers get the root and extensions, never the cached listing (it can be millions of paths)
        return {**{k: v for k, v in self.__dict__.items() if k not in ("_listing", "_remote")}, "listing": None}

    def _list(self) -> tuple[list[Item], list[dict], Counter]:
        """(items, skipped files, extensions ignored), computed once per process."""
        if "_listing" not in self.__dict__:
            self.__dict__["_listing"] = self._walk()  # a frozen dataclass: cache beside the fields
        return self.__dict__["_listing"]

    def _walk(self) -> tuple[list[Item], list[dict], Counter]:
        if remote.is_url(self.root):
            return self._walk_listing()
        root = os.path.realpath(self.root)
        rels, skipped, ignored = [], [], Counter()
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                ext = os.path.splitext(name)[1].lower()
                rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
                if ext not in self.exts:
                    if not name.startswith("."):
                        ignored[ext.lstrip(".") or "(none)"] += 1
                    continue
                why = check_file(os.path.join(dirpath, name), root)
                if why is None:
                    rels.append(rel)
                else:
                    skipped.append({"path": rel, "reason": why[0], "detail": why[1]})
        return _keyed(rels), skipped, ignored

    def _walk_listing(self) -> tuple[list[Item], list[dict], Counter]:
        """``_walk`` of a folder URL: its listing, in the order ``os.walk`` would give the same files."""
        listing = self.listing or remote.list_folder(self.root, self.storage_options, self.cache_dir)
        self.__dict__["_remote"] = listing
        rels, skipped, ignored = [], [], Counter()
        for rel, size in listing.files.items():
            name = rel.rsplit("/", 1)[-1]
            ext = os.path.splitext(name)[1].lower()
            if ext not in self.exts:
                if not name.startswith("."):
                    ignored[ext.lstrip(".") or "(none)"] += 1
                continue
            why = remote.key_problem(rel)
            if why is not None:
                skipped.append({"path": rel, "reason": "unsafe-path", "detail": why})
            elif size > MAX_BYTES:
                skipped.append({"path": rel, "reason": "too-large", "detail": f"{size} bytes > {MAX_BYTES}"})
            else:
                rels.append(rel)
        return _keyed(rels), skipped, ignored

    def listed_sizes(self) -> dict:
        """``{relative key: size}`` of a folder URL's listing (for the listing fingerprint); ``{}`` locally."""
        self._list()
        listing = self.__dict__.get("_remote")
        return listing.files if listing is not None else {}

    def items(self) -> list[Item]:
        return list(self._list()[0])

    @property
    def skipped(self) -> list[dict]:
        """Files listed but never read (links out of the source, FIFOs and devices, too large)."""
        return list(self._list()[1])

    def read(self, item: Item) -> bytes:
        if remote.is_url(self.root):  # one ranged read of at most MAX_BYTES + 1 bytes
            so = self.storage_options
            return remote.read_beneath(self.root, str(item.locator), storage_options=so, max_bytes=MAX_BYTES)
        # the folder may have changed since the listing: the guarded read decides on what it opens
        return read_beneath(self.root, str(item.locator), max_bytes=MAX_BYTES)

    def check_pixels(self, color) -> str | None:
        return None  # no pixel filters; see sources.filters.FilteredSource

    def summary(self) -> str:
        items, skipped, ignored = self._list()
        exts = Counter(os.path.splitext(str(it.locator))[1].lower().lstrip(".") for it in items)
        where = storage.redact(self.root) if remote.is_url(self.root) else Path(self.root).resolve()
        lines = [
            f"source   plain image folder: {where}",
            f"listed   {len(items)} files ({_counts(exts) or 'none'})",
        ]
        listing = self.__dict__.get("_remote")
        if listing is not None:
            made = "from the cache (0)" if listing.cached else f"{listing.requests} (one recursive listing)"
            lines.insert(1, f"requests listing {made}; each file is one ranged read")
        if skipped:
            lines.append(
                f"skipped  {len(skipped)} ({_counts(Counter(s['reason'] for s in skipped))}; see rejects.jsonl)"
            )
        if ignored:
            lines.append(f"ignored  {_counts(ignored)} (extensions this source does not read: {', '.join(self.exts)})")
        return "\n".join(lines)


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))


def _keyed(rels: list[str]) -> list[Item]:
    """Sorted items keyed by the dot-free relative path (a digest suffix where two collide)."""
    keys: dict[str, list[str]] = {}
    for rel in sorted(rels):
        keys.setdefault(sanitize_key(rel), []).append(rel)
    items = []
    for key, group in keys.items():
        for rel in group:
            k = key if len(group) == 1 else f"{key}-{hashlib.blake2b(rel.encode(), digest_size=4).hexdigest()}"
            items.append(Item(k, rel, {"source": "folder", "path": rel}))
    return sorted(items, key=lambda it: it.key)
