"""The item record and the source interface every source implements."""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple, Protocol


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
