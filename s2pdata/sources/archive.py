"""Tar archives of images, read in place: index member offsets once, then read by seek.

Consumes uncompressed ``.tar`` files (danbooru2023-style ``data-0000.tar`` ..., ``images/NNNN.tar``,
``{start_id}.tar``); produces ``Member`` records (name, data offset, size) and, in workers, the
bytes of one member by ``seek`` + ``read``. Nothing is ever extracted to disk.

Hostile members are never listed: absolute names, names with ``..``, links, devices, FIFOs and
sparse files become ``skipped`` entries ``{"path", "reason", "detail"}`` for the rejects log. A
member whose header ``tarfile`` cannot parse (a malformed PAX record, a bad GNU sparse map) is
stepped over, reported, and the listing goes on with the next member. Tars are opened and members
read through the one guarded read (``s2pdata._safeio``): a tar swapped for a link out of the
source or for a FIFO after the listing is refused, never followed.

Indexing walks every member header (one seek each), which for millions of members takes many
minutes, and hours on a network filesystem, so ``index_tars`` keeps each tar's index as a small
json in a cache folder (the build's ``.s2pdata-cache/tars``), keyed by the tar's path, size and
modification time: a resumed build reads those instead.

A tar on object storage (a URL: ``s3://``, ``hf://datasets/...``) is indexed the same way, through
``tarfile`` and ``LenientTar``, over ``remote.RangedFile``: about one ranged read per member header,
never the whole tar; several tars are indexed side by side (``remote.INDEX_THREADS``), and the
cache is keyed by the URL and the size the listing gave (an object replaced by one of the same size
is not noticed: see ``remote`` for how to list again).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from .. import storage
from .._safeio import ReadRefused, atomic_write, open_file_beneath, read_beneath
from .base import MAX_BYTES
from .remote import INDEX_THREADS, Fetches, RangedFile, is_url

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


#: Headers that only describe the member after them (its long name, PAX records).
_EXTENSION_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_MAX_CHAIN = 8  # extension headers before one member; more is damage, not a member


def _blocks(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


class LenientTar(tarfile.TarFile):
    """A ``TarFile`` whose listing steps over a member with a malformed header instead of ending.

    ``tarfile`` raises (``ValueError`` from a PAX number, a bad GNU sparse map, ``ReadError`` for
    an extension header followed by garbage) and every later member is lost. Here the raw headers
    at the failing offset are read again without their extensions: the extension headers and the
    member they describe (header and data) are skipped, the member is recorded in ``bad`` as
    ``(offset, resume offset, name, exception)``, and listing resumes after it. Needs a seekable
    file; at the end of the file (a truncated tar) the error is raised as before.
    """

    def __init__(self, *args, **kwargs):
        self.bad = []  # set before TarFile.__init__, which reads the first member
        super().__init__(*args, **kwargs)

    def next(self):
        while True:
            start = self.offset
            try:
                return super().next()
            except (ValueError, tarfile.HeaderError, tarfile.ReadError) as exc:
                resume, name = self._after_member(start)
                if resume is None or resume <= start:
                    raise
                self.bad.append((start, resume, name, exc))
                self.offset = resume

    def _after_member(self, start: int) -> tuple[int | None, str]:
        """Where the member whose headers start at ``start`` ends, and its plain name."""
        f = self.fileobj
        try:
            end = f.size if isinstance(f, RangedFile) else os.fstat(f.fileno()).st_size
        except (AttributeError, OSError, ValueError):
            return None, ""  # a stream (compressed tar): nothing to step back to
        pos = start
        for _ in range(_MAX_CHAIN):
            if pos + tarfile.BLOCKSIZE > end:
                return None, ""
            f.seek(pos)
            try:
                info = tarfile.TarInfo.frombuf(f.read(tarfile.BLOCKSIZE), self.encoding, self.errors)
            except (tarfile.HeaderError, ValueError):
                # not a header at all: resume at this block (ignore_zeros scans on block by block)
                return max(pos, start + tarfile.BLOCKSIZE), ""
            pos += tarfile.BLOCKSIZE + _blocks(info.size)
            if info.type not in _EXTENSION_TYPES:
                return pos, info.name
        return pos, ""


def open_tar(path: str | Path, root: str | Path | None = None, **kwargs) -> LenientTar:
    """An uncompressed tar opened through the guarded read (``root``: the folder it must lie in,
    by default its own), for ``LenientTar``'s listing. Raises ``ReadRefused`` or a tar error."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    f = open_file_beneath(root, os.path.relpath(path, root))
    try:
        return LenientTar.open(fileobj=f, mode="r:", **kwargs)
    except BaseException:
        f.close()
        raise


def _open_remote(f: RangedFile, **kwargs) -> LenientTar:
    """A ``LenientTar`` over the remote object ``f``; ``f`` is closed when it cannot be opened."""
    try:
        return LenientTar.open(fileobj=f, mode="r:", **kwargs)
    except BaseException:
        f.close()
        raise


def _ranged(path: str, size, storage_options, label) -> RangedFile:
    """``RangedFile`` of a tar URL; its size from the listing, else one metadata request."""
    if size is None:
        try:
            size = storage.size(path, storage_options)
        except (storage.StorageError, OSError) as exc:
            raise ReadRefused("read-error", label, storage.redact(exc)) from None
    try:
        return RangedFile(path, size, storage_options, label=label)
    except storage.StorageError as exc:
        raise ReadRefused("read-error", label, str(exc)) from None


def _close_tar(tf: tarfile.TarFile) -> None:
    f = tf.fileobj
    tf.close()  # a TarFile given a file object leaves it open
    f.close()


def index_tar(
    path: str | Path,
    *,
    max_bytes: int = MAX_BYTES,
    label: str | None = None,
    root=None,
    storage_options: dict | None = None,
    size: int | None = None,
    fetches: Fetches | None = None,
):
    """List the safe regular members of one tar without reading their data.

    Parameters
    ----------
    path : path or URL
        An uncompressed tar (compressed tars cannot be read by seek); a URL is read by ranged reads
        of its headers (``remote.RangedFile``), through ``storage_options``.
    max_bytes : int
        Members larger than this are skipped as ``too-large``.
    label : str or None
        How the tar is named in ``skipped`` entries (default: ``path``).
    root : path or None
        The folder the tar must lie in (the source's root); default: the tar's own folder.
    storage_options : dict or None
        For a URL: its filesystem's options.
    size : int or None
        For a URL: its size as listed (None: looked up).
    fetches : remote.Fetches or None
        For a URL: adds the ranged reads made and the bytes they fetched.

    Returns
    -------
    (list of Member, list of dict)
        Members in archive order; skipped entries ``{"path": "tar:member", "reason", "detail"}``.
    """
    remote = is_url(path)
    label = label or (storage.redact(path) if remote else str(path))
    members, skipped = [], []

    def skip(name, reason, detail):
        skipped.append({"path": f"{label}:{name}", "reason": reason, "detail": detail})

    tf = f = None
    try:
        # ignore_zeros: a damaged header no longer ends the listing silently; tarfile steps over it
        # block by block, and the gap it leaves is reported below. A header tarfile cannot parse
        # costs its member only (LenientTar).
        if remote:
            f = _ranged(path, size, storage_options, label)
            tf = _open_remote(f, ignore_zeros=True)
        else:
            tf = open_tar(path, root, ignore_zeros=True)
        expected = 0  # where the next header should start
        while True:
            m = tf.next()
            for start, resume, name, exc in tf.bad:
                skip(
                    name or f"@{start}",
                    "bad-archive",
                    f"malformed header at offset {start} ({type(exc).__name__}: {exc}); "
                    f"member skipped, listing goes on at offset {resume}",
                )
                expected = resume
            tf.bad.clear()
            if m is None:
                break
            tf.members.clear()  # the index keeps Members; TarInfos of millions of members would pile up
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
    except ReadRefused as exc:
        skip("", exc.reason, exc.detail)
    except TAR_ERRORS as exc:
        skip("", "bad-archive", f"{type(exc).__name__}: {exc} (members before it are kept)")
    finally:
        if tf is not None:
            _close_tar(tf)
        if f is not None and fetches is not None:
            fetches.add(f)
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


def index_tars(
    paths,
    *,
    labels=None,
    cache_dir: str | Path | None = None,
    max_bytes: int = MAX_BYTES,
    root=None,
    storage_options: dict | None = None,
    sizes=None,
    fetches: Fetches | None = None,
):
    """``index_tar`` for many tars (all within ``root`` when given), through a cache of indexes in
    ``cache_dir`` (None: no cache).

    Returns ``(results, n_cached)``: one ``(members, skipped)`` per path, in order, and how many
    came from the cache. A tar that changed (size or modification time) is indexed again; a
    damaged one (``bad-archive``) is never cached.

    URLs (``storage_options``, ``sizes`` from the listing, ``fetches`` counting the ranged reads)
    are indexed side by side in threads and cached by URL and size; their reads are added to
    ``storage.requests("read")`` once, here.
    """
    paths = list(paths)
    if any(is_url(p) for p in paths):
        return _index_remote_tars(paths, labels, cache_dir, max_bytes, storage_options, sizes, fetches)
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
        members, skipped = index_tar(path, max_bytes=max_bytes, label=label, root=root)
        results.append((members, skipped))
        if target is not None and not any(s["path"] == f"{label}:" or s["reason"] == "bad-archive" for s in skipped):
            try:
                cache.mkdir(parents=True, exist_ok=True)
                atomic_write(target, json.dumps({"members": [list(m) for m in members], "skipped": skipped}).encode())
            except OSError:
                pass  # a read-only cache only costs time
    return results, n_cached


def _remote_cache_file(cache_dir: Path, url: str, size, max_bytes: int, storage_options) -> Path:
    options = json.dumps(storage.redact_options(storage_options), sort_keys=True)
    key = f"{TAR_INDEX_VERSION}\t{url}\t{size}\t{max_bytes}\t{options}"
    return cache_dir / f"tar-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _index_remote_tars(urls, labels, cache_dir, max_bytes, storage_options, sizes, fetches):
    """``index_tars`` of URLs: cached ones read from ``cache_dir``, the others indexed in threads."""
    labels = list(labels) if labels is not None else [storage.redact(u) for u in urls]
    sizes = list(sizes) if sizes is not None else [None] * len(urls)
    cache = Path(cache_dir) if cache_dir is not None else None
    results: list = [None] * len(urls)
    targets: list = [None] * len(urls)
    todo = []
    for i, url in enumerate(urls):
        if cache is not None and sizes[i] is not None:
            targets[i] = _remote_cache_file(cache, url, sizes[i], max_bytes, storage_options)
            try:
                data = json.loads(targets[i].read_text())
                results[i] = ([Member(*m) for m in data["members"]], data["skipped"])
                continue
            except (OSError, ValueError, KeyError, TypeError):
                pass
        todo.append(i)
    made = Fetches()

    def one(i):
        return index_tar(
            urls[i], max_bytes=max_bytes, label=labels[i], storage_options=storage_options, size=sizes[i], fetches=made
        )

    with ThreadPoolExecutor(max(1, min(INDEX_THREADS, len(todo)))) as pool:
        for i, (members, skipped) in zip(todo, pool.map(one, todo)):
            results[i] = (members, skipped)
            label = labels[i]
            if targets[i] is not None and not any(
                s["path"] == f"{label}:" or s["reason"] == "bad-archive" for s in skipped
            ):
                try:
                    cache.mkdir(parents=True, exist_ok=True)
                    body = {"members": [list(m) for m in members], "skipped": skipped}
                    atomic_write(targets[i], json.dumps(body).encode())
                except OSError:
                    pass  # a read-only cache only costs time
    storage.count("read", made.requests)
    if fetches is not None:
        fetches.requests += made.requests
        fetches.fetched += made.fetched
    return results, len(urls) - len(todo)


def read_member(path: str | Path, offset: int, size: int, *, root=None, max_bytes: int = MAX_BYTES) -> bytes:
    """The ``size`` bytes at ``offset`` of ``path`` (a member's data), through the guarded read.

    ``root``: the folder the tar must lie in (default: its own). Raises ``ReadRefused`` (an
    ``OSError``): ``read-error`` when the member is cut short, ``too-large`` over ``max_bytes``.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    return read_beneath(root, os.path.relpath(path, root), max_bytes=max_bytes, offset=offset, length=size)


def is_image_tar(
    path: str | Path, *, probe: int = 16, root=None, storage_options=None, size=None, fetches: Fetches | None = None
) -> bool:
    """Probe: do the first ``probe`` regular members of ``path`` look like ``{id}.{ext}`` files?

    A member with a malformed header is stepped over (``LenientTar``), so one bad header among
    the first ``probe`` does not hide the whole tar. A URL is read by ranged reads (``index_tar``'s
    ``storage_options``, ``size``, ``fetches``), counted in ``storage.requests("read")``.
    """
    names = []
    f = None
    try:
        if is_url(path):
            f = _ranged(path, size, storage_options, storage.redact(path))
            tf = _open_remote(f)
        else:
            tf = open_tar(path, root)
    except TAR_ERRORS:  # ReadRefused is an OSError
        _count_probe(f, fetches)
        return False
    try:
        while len(names) < probe:
            m = tf.next()
            if m is None:
                break
            tf.members.clear()
            if m.isreg():
                names.append(PurePosixPath(m.name).name)
    except TAR_ERRORS:
        pass  # a damaged tail: judge by the members read so far
    finally:
        _close_tar(tf)
        _count_probe(f, fetches)
    good = sum(1 for n in names if n.partition(".")[0].isdigit() and "." in n)
    return bool(names) and good * 2 >= len(names)


def _count_probe(f: RangedFile | None, fetches: Fetches | None) -> None:
    """Add a remote probe's ranged reads to ``storage.requests`` (and ``fetches``)."""
    if f is None:
        return
    storage.count("read", f.requests)
    if fetches is not None:
        fetches.add(f)
