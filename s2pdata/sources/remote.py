"""Sources on object storage: a folder URL -> one cached listing; objects and tar members -> ranged reads.

Consumes a folder URL (``s3://bucket/prefix``, ``gs://...``, ``hf://datasets/OWNER/NAME/folder``:
the Hugging Face Hub through ``huggingface_hub``'s fsspec filesystem, with ``@REVISION`` after the
name for a branch, tag or commit; ``hf:PATH`` without ``//`` is the local ``datasets`` source,
``hf.py``) and the ``storage_options`` of its filesystem; produces the listing ``{relative key:
size}`` and, in workers, the bytes of one object or one byte range of it. Everything goes through
``s2pdata.storage`` (fsspec underneath), which counts each remote call by operation
(``storage.requests``) and redacts credentials from every message.

A listing is one recursive request (``storage.list_files``; 1,000 keys a page on the wire) and is
kept in the build folder's cache (``.s2pdata-cache/listings``), keyed by the URL and the
filesystem's options without their secrets: a resumed build, or a new one in the same folder,
lists nothing again. The cache is not invalidated by objects added, removed or replaced later
(object stores have no cheap fingerprint of a prefix; listing it is the cost being saved): to see
them, build with ``--overwrite`` (which drops the cached listings), delete the listing file
(``OUT/.s2pdata-cache/listings/``), or build into another folder.

The guarantees of the guarded local read (``s2pdata._safeio``) hold in their object-store form:
a key with ``..``, an empty or absolute part (one that could name something outside the prefix on
a filesystem that normalises paths) is ``unsafe-path``; an object over the cap is ``too-large``,
known from the listing's size and enforced again by the read, which never asks for more than the
cap plus one byte; a missing object, a failed request or a range cut short is ``read-error``. Each
is a ``ReadRefused``, so a build counts it as a reject and goes on.

Tars are never downloaded whole: ``RangedFile`` gives ``tarfile`` a seekable view of an object
that fetches ``INDEX_BLOCK`` bytes per ranged read from where ``tarfile`` asks, so indexing costs
about one request per member (its header, PAX records included), and a member is then one ranged
read of its data.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path
from typing import NamedTuple

from .. import storage
from .._safeio import READ_ERROR, TOO_LARGE, UNSAFE_PATH, ReadRefused, atomic_write

LISTING_VERSION = 1
#: Bytes per ranged read while indexing a tar: a PAX header, its records and the header after them.
INDEX_BLOCK = 2048
#: Tars indexed at once (each is a chain of small requests, so they are waited on side by side).
INDEX_THREADS = 8


class Listing(NamedTuple):
    """A folder URL's files ``{key relative to the folder: size}`` in walk order (``walk_order``),
    the remote list requests this listing made, and whether it came from the cache."""

    files: dict
    requests: int
    cached: bool


def is_url(path) -> bool:
    """True when ``path`` is read through fsspec (``storage.is_remote``): a URL that is not ``file://``."""
    return storage.is_remote(path)


def key_problem(rel: str) -> str | None:
    """Why the relative key ``rel`` must not be read beneath its folder, or None: ``..``, an empty
    part (``a//b``), a leading ``/``, a backslash or a NUL."""
    if not rel or "\x00" in rel or "\\" in rel:
        return "empty key, or a NUL or backslash in it"
    if rel.startswith("/"):
        return "absolute key"
    parts = rel.split("/")
    if ".." in parts or "." in parts:
        return "'..' or '.' in the key (it would name something outside the source folder)"
    if "" in parts:
        return "empty part in the key ('//')"
    return None


def walk_order(rel: str) -> tuple:
    """Sort key that puts keys in ``os.walk`` order (a folder's files, sorted, before its sub-folders,
    sorted): a listing then reports skipped files in the order the local walk does."""
    parts = rel.split("/")
    return tuple((1, p) for p in parts[:-1]) + ((0, parts[-1]),)


def _options_key(storage_options) -> dict:
    return storage.redact_options(storage_options)


def _listing_cache(cache_dir, url: str, storage_options) -> Path:
    key = json.dumps({"v": LISTING_VERSION, "url": url, "options": _options_key(storage_options)}, sort_keys=True)
    return Path(cache_dir) / f"list-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def list_folder(url: str, storage_options: dict | None = None, cache_dir=None) -> Listing:
    """Every object under the folder ``url``, through the listing cache in ``cache_dir`` (None: none).

    Parameters
    ----------
    url : str
        A folder URL (``s3://bucket/prefix``, ``hf://datasets/OWNER/NAME``).
    storage_options : dict or None
        Options of its fsspec filesystem (endpoint, credentials...).
    cache_dir : path or None
        The build folder's ``.s2pdata-cache/listings``.

    Returns
    -------
    Listing
        ``files`` in ``walk_order``; ``requests`` 0 when the listing came from the cache.

    Raises
    ------
    StorageError
        The listing request failed (one redacted line).
    """
    url = url.rstrip("/")
    target = _listing_cache(cache_dir, url, storage_options) if cache_dir is not None else None
    if target is not None:
        try:
            data = json.loads(target.read_text())
            if data.get("url") == storage.redact(url):
                return Listing({str(k): int(v) for k, v in data["files"]}, 0, True)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not cached yet, or an unreadable entry: list again
    before = storage.requests("list")
    try:
        found = storage.list_files(url, storage_options)
    except FileNotFoundError:
        found = {}
    files = dict(sorted(found.items(), key=lambda kv: walk_order(kv[0])))
    made = storage.requests("list") - before
    if target is not None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            body = {"url": storage.redact(url), "files": [[k, v] for k, v in files.items()]}
            atomic_write(target, json.dumps(body).encode())
        except OSError:
            pass  # a read-only cache only costs a listing
    return Listing(files, made, False)


def join(root: str, rel: str) -> str:
    """``root/rel`` as a URL."""
    return root.rstrip("/") + "/" + rel


def _refused(exc: Exception, label: str) -> ReadRefused:
    """A failed request as a ``read-error`` naming ``label`` (never the URL's credentials)."""
    if isinstance(exc, FileNotFoundError):
        return ReadRefused(READ_ERROR, label, "no such object")
    return ReadRefused(READ_ERROR, label, storage.redact(exc))


def read_object(
    url: str,
    *,
    storage_options: dict | None = None,
    max_bytes: int,
    offset: int = 0,
    length: int | None = None,
    label: str | None = None,
) -> bytes:
    """The bytes of the object at ``url`` (whole, or ``length`` at ``offset``): one ranged read.

    Parameters
    ----------
    url : str
    storage_options : dict or None
    max_bytes : int
        Cap: a whole read asks for ``max_bytes + 1`` bytes and refuses the object if they all come;
        ``length`` may not exceed it.
    offset, length : int
        A tar member's data: exactly ``length`` bytes must come back.
    label : str or None
        How errors name the object (the key relative to the source's folder); default the redacted URL.

    Raises
    ------
    ReadRefused
        ``too-large`` or ``read-error`` (missing, a failed request, a range cut short).
    """
    label = label if label is not None else storage.redact(url)
    if length is not None and not 0 <= length <= max_bytes:
        raise ReadRefused(TOO_LARGE, label, f"a member of {length} bytes > {max_bytes}")
    if length == 0:
        return b""
    want = length if length is not None else max_bytes + 1
    try:
        data = storage.read_range(url, offset, want, storage_options)
    except (storage.StorageError, OSError) as exc:
        raise _refused(exc, label) from None
    if length is None:
        if len(data) > max_bytes:
            raise ReadRefused(TOO_LARGE, label, f"more than {max_bytes} bytes")
    elif len(data) != length:
        raise ReadRefused(READ_ERROR, label, f"cut short at offset {offset}: {len(data)} of {length} bytes")
    return data


def read_beneath(root: str, rel: str, *, storage_options=None, max_bytes: int, offset=0, length=None) -> bytes:
    """``read_object`` of ``root/rel``, refusing a key that could leave ``root`` (``unsafe-path``)."""
    why = key_problem(rel)
    if why is not None:
        raise ReadRefused(UNSAFE_PATH, rel, why)
    return read_object(
        join(root, rel),
        storage_options=storage_options,
        max_bytes=max_bytes,
        offset=offset,
        length=length,
        label=rel,
    )


class RangedFile(io.RawIOBase):
    """A read-only, seekable view of the object at ``url`` (``size`` bytes) for ``tarfile``.

    Each read outside the block held fetches ``max(wanted, block)`` bytes from the position asked
    for, in one ranged request (``tarfile`` reads a 512-byte header, the PAX records after it,
    then seeks past the member's data). ``requests`` and ``fetched`` count what it asked for; it
    counts nothing in ``storage.REQUESTS`` itself, so that threads indexing side by side do not
    race on it: the caller adds ``requests`` once (``storage.count``).
    """

    def __init__(self, url: str, size: int, storage_options=None, *, block: int = INDEX_BLOCK, label=None):
        super().__init__()
        self.url, self.size, self.block = url, int(size), int(block)
        self.label = label if label is not None else storage.redact(url)
        self.fs, self.path = storage.filesystem(url, storage_options)
        self.pos, self.requests, self.fetched = 0, 0, 0
        self._start, self._data = 0, b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buf) -> int:
        n = min(len(buf), self.size - self.pos)
        if n <= 0:
            return 0
        end = self.pos + n
        if not (self._start <= self.pos and end <= self._start + len(self._data)):
            stop = min(self.size, self.pos + max(n, self.block))
            self.requests += 1
            try:
                with storage._remote("read", self.url):
                    self._data = self.fs.cat_file(self.path, start=self.pos, end=stop)
            except (storage.StorageError, OSError) as exc:  # not a tar error: the tar is refused, not stepped over
                raise _refused(exc, self.label) from None
            self._start = self.pos
            self.fetched += len(self._data)
            if len(self._data) < n:  # the object is shorter than listed: what came is all there is
                n = len(self._data)
                end = self.pos + n
        lo = self.pos - self._start
        buf[:n] = self._data[lo : lo + n]
        self.pos = end
        return n


class Fetches:
    """Requests and bytes of ranged reads made by ``RangedFile``s, added up across threads."""

    def __init__(self):
        self.requests = self.fetched = 0
        self._lock = threading.Lock()

    def add(self, f: RangedFile) -> None:
        with self._lock:
            self.requests += f.requests
            self.fetched += f.fetched


def object_fingerprint(url: str, storage_options: dict | None = None) -> list:
    """``[redacted url, size, version]`` of an object (one metadata request): the version is its ETag,
    or its modification time, or ``""``; ``-1`` sizes when it cannot be looked at (the read reports it)."""
    try:
        fs, path = storage.filesystem(url, storage_options)
        storage.count("look up")
        with storage._remote("look up", url):
            info = fs.info(path)
    except (storage.StorageError, OSError):
        return [storage.redact(url), -1, -1]
    version = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("last_commit") or ""
    return [storage.redact(url), int(info.get("size") or 0), str(version)]


class RemoteObject(io.BufferedReader):
    """A buffered remote file that knows its ``size`` (for the expansion caps of ``metadata``)."""

    size = 0


def open_object(url: str, storage_options: dict | None = None, *, max_bytes: int | None = None, label=None):
    """The object at ``url`` open for streaming (fsspec's read-ahead file behind a 1 MiB buffer),
    refused before any byte is read when it holds more than ``max_bytes``.

    Raises
    ------
    ReadRefused
        ``too-large``, or ``read-error`` when it cannot be opened.
    """
    label = label if label is not None else storage.redact(url)
    try:
        fs, path = storage.filesystem(url, storage_options)
        storage.count("open")
        with storage._remote("open", url):
            raw = fs.open(path, "rb")
            size = getattr(raw, "size", None)
            size = int(fs.size(path)) if size is None else int(size)
    except (storage.StorageError, OSError) as exc:
        raise _refused(exc, label) from None
    if max_bytes is not None and size > max_bytes:
        raw.close()
        raise ReadRefused(TOO_LARGE, label, f"{size} bytes > {max_bytes}")
    f = RemoteObject(raw, 1 << 20)
    f.size = size
    return f
