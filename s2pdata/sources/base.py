"""The item record and the source interface every source implements."""

from __future__ import annotations

import hashlib
import os
import re
from typing import NamedTuple, Protocol

from .._safeio import refusal


class Item(NamedTuple):
    """One input: ``key`` (no dots, unique), ``locator`` (how the source finds the bytes: a path,
    an index, a tar member) and ``meta`` (JSON-able provenance carried into the sample json)."""

    key: str
    locator: object
    meta: dict


class Source(Protocol):
    def spec(self) -> dict: ...  # JSON description, part of the build's config fingerprint

    def items(self) -> list[Item]: ...  # sorted by key

    def read(self, item: Item) -> bytes: ...


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def sanitize_key(text: str, *, max_len: int = 96) -> str:
    """Any text -> a WebDataset-safe key (letters, digits, '_', '-'); long ones end in a digest."""
    key = _UNSAFE.sub("_", text).strip("_") or "item"
    if len(key) > max_len:
        digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
        key = key[: max_len - 13] + "-" + digest
    return key


#: Largest file or tar member a source will read; bigger ones are skipped as ``too-large``.
MAX_BYTES = 256 * 1024 * 1024


def check_file(path: str, root: str, max_bytes: int = MAX_BYTES) -> tuple[str, str] | None:
    """Why the file at ``path`` must not be listed, as ``(reason, detail)``, or None when it looks safe.

    The listing's early, cheap look (``realpath`` and ``stat``); the read decides again, on the
    open descriptor (``s2pdata._safeio.read_beneath``). Reasons: ``unsafe-path`` (a link whose
    target lies outside ``root``, or a broken or looping one), ``unsafe-member`` (a FIFO, device,
    socket: reading one hangs or never ends), ``too-large`` (more than ``max_bytes``, known from
    the inode before any byte is read). ``root`` must be a resolved path. Links that stay inside
    ``root`` are followed.
    """
    real = os.path.realpath(path)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        return "unsafe-path", f"a link to {real}, outside the source folder"
    try:
        st = os.stat(real)
    except OSError as exc:
        return "unsafe-path", f"cannot be followed: {exc.strerror}"
    return refusal(st, max_bytes)
