"""Tar archives of images, read in place: index member offsets once, then read by seek.

Consumes uncompressed ``.tar`` files (danbooru2023-style ``data-0000.tar`` ..., ``images/NNNN.tar``,
``{start_id}.tar``); produces ``Member`` records (name, data offset, size) and, in workers, the
bytes of one member by ``seek`` + ``read``. Nothing is ever extracted to disk.

Hostile members are never listed: absolute names, names with ``..``, links, devices, FIFOs and
sparse files become ``skipped`` entries ``{"path", "reason", "detail"}`` for the rejects log.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple

#: Largest member (or file) a source will read; bigger ones are skipped as ``too-large``.
MAX_BYTES = 256 * 1024 * 1024


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
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                if m.isdir():
                    continue
                why = unsafe_name(m.name)
                if why is not None:
                    skip(m.name, "unsafe-path", why)
                    continue
                if not m.isreg():
                    skip(m.name, "unsafe-member", _kind(m) + (f" -> {m.linkname}" if m.linkname else ""))
                    continue
                if m.issparse():
                    skip(m.name, "unsafe-member", "sparse file")
                    continue
                if m.size > max_bytes:
                    skip(m.name, "too-large", f"{m.size} bytes > {max_bytes}")
                    continue
                members.append(Member(m.name, m.offset_data, m.size))
    except (tarfile.TarError, OSError, EOFError) as exc:
        skip("", "bad-archive", f"{type(exc).__name__}: {exc} (members before it are kept)")
    return members, skipped


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
    except (tarfile.TarError, OSError, EOFError):
        return False
    good = sum(1 for n in names if n.partition(".")[0].isdigit() and "." in n)
    return bool(names) and good * 2 >= len(names)
