"""Where items come from: a ``--src`` string -> a source that lists items and reads their bytes.

A source produces ``Item(key, locator, meta)`` records, sorted by key, before anything is
decoded (the build's plan is made from them), and ``source.read(item) -> bytes`` later, in a
worker. Sources are small picklable objects so they travel to spawned workers.

Keys contain no dots (WebDataset splits a member name at the first dot of its basename).
"""

from __future__ import annotations

from .base import Item, Source, sanitize_key
from .demo import DemoSource
from .folder import IMAGE_EXTS, FolderSource

__all__ = ["Item", "Source", "DemoSource", "FolderSource", "IMAGE_EXTS", "open_source", "sanitize_key"]


def open_source(spec: str, *, seed: int = 0) -> Source:
    """``demo``, ``demo:N`` or a folder path -> a source.

    Raises ``ValueError`` naming ``--src`` when the string is neither.
    """
    spec = str(spec)
    if spec == "demo" or spec.startswith("demo:"):
        count = spec.partition(":")[2] or "64"
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--src demo:N needs a positive integer N, got {spec!r}; e.g. demo:256")
        return DemoSource(int(count), seed=seed)
    return FolderSource(spec)
