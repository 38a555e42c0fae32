"""A plain folder of images, walked recursively."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .base import Item, sanitize_key

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

    def items(self) -> list[Item]:
        root = Path(self.root)
        rels = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in filenames:
                if os.path.splitext(name)[1].lower() in self.exts:
                    rels.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
        keys: dict[str, list[str]] = {}
        for rel in sorted(rels):
            keys.setdefault(sanitize_key(rel), []).append(rel)
        items = []
        for key, group in keys.items():
            for rel in group:
                k = key if len(group) == 1 else f"{key}-{hashlib.blake2b(rel.encode(), digest_size=4).hexdigest()}"
                items.append(Item(k, rel, {"source": "folder", "path": rel}))
        return sorted(items, key=lambda it: it.key)

    def read(self, item: Item) -> bytes:
        return (Path(self.root) / str(item.locator)).read_bytes()

    def check_pixels(self, color) -> str | None:
        return None  # no pixel filters; see sources.filters.FilteredSource

    def summary(self) -> str:
        items = self.items()
        exts: dict[str, int] = {}
        for it in items:
            e = os.path.splitext(str(it.locator))[1].lower().lstrip(".")
            exts[e] = exts.get(e, 0) + 1
        listed = ", ".join(f"{k} {v}" for k, v in sorted(exts.items())) or "none"
        return f"source   plain image folder: {Path(self.root).resolve()}\nlisted   {len(items)} files ({listed})"
