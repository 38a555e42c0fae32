"""A plain folder of images, walked recursively.

Consumes a folder path; produces sorted ``Item``s (key from the relative path) and, in a worker,
each file's bytes. Nothing outside the folder is read: links that leave it, FIFOs, devices and
files over ``MAX_BYTES`` are listed in ``skipped`` (the build's rejects log) instead, and ``read``
goes through the one guarded read (``s2pdata._safeio``), which decides again on the open file.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .._safeio import read_beneath
from .base import MAX_BYTES, Item, check_file, sanitize_key

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class FolderSource:
    """Every file under ``root`` whose extension is in ``exts`` (case-insensitive).

    The key is the relative path made dot-free (``a/b.png`` -> ``a_b_png``); the rare paths that
    collide after that get a digest suffix, so keys stay unique and stable.
    """

    root: str
    exts: tuple[str, ...] = IMAGE_EXTS

    def __post_init__(self):
        if not Path(self.root).is_dir():
            raise ValueError(f"--src {self.root!r} is not a folder (nor 'demo' / 'demo:N'); give a folder of images")

    def spec(self) -> dict:
        return {"kind": "folder", "root": str(Path(self.root).resolve()), "exts": list(self.exts)}

    def __getstate__(self) -> dict:
        # workers get the root and extensions, never the cached listing (it can be millions of paths)
        return {k: v for k, v in self.__dict__.items() if k != "_listing"}

    def _list(self) -> tuple[list[Item], list[dict], Counter]:
        """(items, skipped files, extensions ignored), computed once per process."""
        if "_listing" not in self.__dict__:
            self.__dict__["_listing"] = self._walk()  # a frozen dataclass: cache beside the fields
        return self.__dict__["_listing"]

    def _walk(self) -> tuple[list[Item], list[dict], Counter]:
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

    def items(self) -> list[Item]:
        return list(self._list()[0])

    @property
    def skipped(self) -> list[dict]:
        """Files listed but never read (links out of the source, FIFOs and devices, too large)."""
        return list(self._list()[1])

    def read(self, item: Item) -> bytes:
        # the folder may have changed since the listing: the guarded read decides on what it opens
        return read_beneath(self.root, str(item.locator), max_bytes=MAX_BYTES)

    def check_pixels(self, color) -> str | None:
        return None  # no pixel filters; see sources.filters.FilteredSource

    def summary(self) -> str:
        items, skipped, ignored = self._list()
        exts = Counter(os.path.splitext(str(it.locator))[1].lower().lstrip(".") for it in items)
        lines = [
            f"source   plain image folder: {Path(self.root).resolve()}",
            f"listed   {len(items)} files ({_counts(exts) or 'none'})",
        ]
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
