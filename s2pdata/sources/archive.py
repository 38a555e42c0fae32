"""Tar archives of images, read in place: index member offsets once, then read by seek.

Consumes uncompressed ``.tar`` files (danbooru2023-style ``data-0000.tar`` ..., ``images/NNNN.tar``,
``{start_id}.tar``); produces ``Member`` records (name, data offset, size) and, in workers, the
bytes of one member by ``seek`` + ``read``. Nothing is ever extracted to disk.

Hostile members are never listed: absolute names, names with ``..``, links, devices, FIFOs and
sparse files become ``skipped`` entries ``{"path", "reason", "detail"}`` for the rejects log.

Indexing walks every member header (one seek each), which for millions of members takes many
minutes, and hours on a network filesystem, so ``index_tars`` keeps each tar's index as a small
json in a cache folder (the build's ``.s2pdata-cache/tars``), keyed by the tar's path, size and
modification time: a resumed build reads those instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from .base import MAX_BYTES

#: Everything ``tarfile`` raises on a damaged archive: malformed PAX/GNU.sparse numbers surface as
#: ValueError (int() of garbage), broken UTF-8 names as UnicodeDecodeError (a ValueError).
TAR_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError)


class Member(NamedTuple):
    """A regular file inside a tar: ``name`` as stored, data ``offset`` and ``size`` in bytes."""

    name: str
    offset: int
    size: int


def unsafe_name(name: str) -> str | None:
    """Why a member name is unsafe to use (absolute, ``..``, NUL, drive letter), or None."""
    if not name or "\x00" in name:
        return "empty or NUL in name"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(norm).parts:
        return "'..' in path"
    return None


def _kind(m: tarfile.TarInfo) -> str:
    if m.issym() or m.islnk():
        return "link"
    if m.isdev() or m.isfifo():
        return "device"
    return "not a regular file"


def index_tar(path: str | Path, *, max_bytes: int = MAX_BYTES, label: str | None = None):
    """List the safe regular members of one tar without reading their data.

    Parameters
    ----------
    path : path
        An uncompressed tar (compressed tars cannot be read by seek).
    max_bytes : int
        Members larger than this are skipped as ``too-large``.
    label : str or None
        How the tar is named in ``skipped`` entries (default: ``path``).

    Returns
    -------
    (list of Member, list of dict)
        Members in archive order; skipped entries ``{"path": "tar:member", "reason", "detail"}``.
    """
    label = label or str(path)
    members, skipped = [], []

    def skip(name, reason, detail):
        skipped.append({"path": f"{label}:{name}", "reason": reason, "detail": detail})

    try:
        # ignore_zeros: a damaged header no longer ends the listing silently; tarfile steps over it
        # block by block, and the gap it leaves is reported below
        with tarfile.open(path, "r:", ignore_zeros=True) as tf:
            expected = 0  # where the next header should start
            for m in tf:
                if m.offset != expected:
                    skip(
                        f"@{expected}",
                        "bad-archive",
                        f"{m.offset - expected} bytes at offset {expected} are not "
                        f"a readable member (damaged header); indexing resumed at offset {m.offset}",
                    )
                expected = tf.offset
                why = _member_problem(m, max_bytes)
                if why is None:
                    members.append(Member(m.name, m.offset_data, m.size))
                elif why[0]:
                    skip(m.name, *why)
    except TAR_ERRORS as exc:
        skip("", "bad-archive", f"{type(exc).__name__}: {exc} (members before it are kept)")
    return members, skipped


def _member_problem(m: tarfile.TarInfo, max_bytes: int) -> tuple[str, str] | None:
    """``(reason, detail)`` for a member not to list (``("", "")`` for a folder), or None."""
    if m.isdir():
        return "", ""
    why = unsafe_name(m.name)
    if why is not None:
        return "unsafe-path", why
    if not m.isreg():
        return "unsafe-member", _kind(m) + (f" -> {m.linkname}" if m.linkname else "")
    if m.issparse():
        return "unsafe-member", "sparse file"
    if m.size > max_bytes:
        return "too-large", f"{m.size} bytes > {max_bytes}"
    return None


TAR_INDEX_VERSION = 2  # 2: damaged headers are stepped over and reported


def _cache_file(cache_dir: Path, path: Path, max_bytes: int) -> Path:
    st = os.stat(path)
    key = f"{TAR_INDEX_VERSION}\t{Path(path).resolve()}\t{st.st_size}\t{st.st_mtime_ns}\t{max_bytes}"
    return cache_dir / f"tar-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def index_tars(paths, *, labels=None, cache_dir: str | Path | None = None, max_bytes: int = MAX_BYTES):
    """``index_tar`` for many tars, through a cache of indexes in ``cache_dir`` (None: no cache).

    Returns ``(results, n_cached)``: one ``(members, skipped)`` per path, in order, and how many
    came from the cache. A tar that changed (size or modification time) is indexed again; a
    damaged one (``bad-archive``) is never cached.
    """
    paths = [Path(p) for p in paths]
    labels = list(labels) if labels is not None else [str(p) for p in paths]
    cache = Path(cache_dir) if cache_dir is not None else None
    results, n_cached = [], 0
    for path, label in zip(paths, labels):
        target = None
        if cache is not None:
            try:
                target = _cache_file(cache, path, max_bytes)  # stats the tar: OSError if it is gone
                data = json.loads(target.read_text())
                results.append(([Member(*m) for m in data["members"]], data["skipped"]))
                n_cached += 1
                continue
            except (OSError, ValueError, KeyError, TypeError):
                pass  # not cached yet, or an unreadable entry: index the tar
        members, skipped = index_tar(path, max_bytes=max_bytes, label=label)
        results.append((members, skipped))
        if target is not None and not any(s["reason"] == "bad-archive" for s in skipped):
            try:
                cache.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps({"members": [list(m) for m in members], "skipped": skipped}))
                os.replace(tmp, target)
            except OSError:
                pass  # a read-only cache only costs time
    return results, n_cached


def read_member(path: str | Path, offset: int, size: int) -> bytes:
    """The ``size`` bytes at ``offset`` of ``path`` (a member's data); ``OSError`` if cut short."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise OSError(f"{path}: member at offset {offset} is cut short ({len(data)} of {size} bytes)")
    return data


def is_image_tar(path: str | Path, *, probe: int = 16) -> bool:
    """Probe: do the first ``probe`` regular members of ``path`` look like ``{id}.{ext}`` files?"""
    try:
        with tarfile.open(path, "r:") as tf:
            names = []
            for m in tf:
                if m.isreg():
                    names.append(PurePosixPath(m.name).name)
                if len(names) >= probe:
                    break
    except TAR_ERRORS:
        return False
    good = sum(1 for n in names if n.partition(".")[0].isdigit() and "." in n)
    return bool(names) and good * 2 >= len(names)
