"""Where a build's files are: a plain path, or a URL read through fsspec.

Every reader of shards (``shards``, ``data``, ``inspect``, ``evaluate``) turns a path-or-URL into
file operations here. Plain paths and ``file://`` URLs stay on the local code path (``open``,
``pathlib``); only a URL of another scheme (``s3://``, ``gs://``, ``hf://``, ``https://``...)
imports fsspec, so the core install needs none of it.

Credentials and endpoints come the way each ecosystem sets them (``AWS_ENDPOINT_URL``,
``AWS_PROFILE``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``HF_TOKEN`` and the tools' config files);
``storage_options`` (a dict, ``--storage-options JSON`` on the command lines) is passed to the
filesystem for the rest, as pandas and ``datasets`` do. A URL with credentials in it
(``s3://KEY:SECRET@bucket``) is refused, and every message this module formats goes through
``redact``: no key, secret, token or password is ever printed.

Writes (a build into ``s3://bucket/run``) go through the same functions: ``write_bytes`` (a small
file, in one request), ``upload`` (a finished local file: one PUT, or a multipart upload that the
store completes only at its end, so a reader never sees half a shard), ``download``, ``remove`` and
``create_exclusive`` (a conditional create, ``If-None-Match: *``, for a build's lock object).
Locally each is the guarded write of ``_safeio`` (a new temporary name, then a rename).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ._safeio import atomic_write

# scheme -> the extra that installs its fsspec implementation
SCHEME_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "hf": "hf", "http": "http", "https": "http"}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]+://)[^/@\s'\"]+@")
_SECRET_WORDS = r"[A-Za-z0-9_\-]*(?:key|secret|token|password|passwd|signature|credential)[A-Za-z0-9_\-]*"
_QUERY_SECRET = re.compile(rf"([?&]{_SECRET_WORDS}=)[^&#\s'\"]*", re.IGNORECASE)
_PAIR_SECRET = re.compile(rf"((['\"]?){_SECRET_WORDS}\2\s*[:=]\s*)(['\"]?)[^'\"\s,}}&]+", re.IGNORECASE)
_SECRET_KEY = re.compile(_SECRET_WORDS, re.IGNORECASE)
REDACTED = "***"


class StorageError(ValueError):
    """A path or URL that cannot be read: an unknown scheme, a missing extra, credentials in the
    URL, a failed request. The message is one line, names the argument and the fix, and holds no
    credential."""


def redact(text) -> str:
    """``text`` (or its ``str``) with credentials masked: the userinfo of URLs
    (``s3://***@bucket``), query parameters and ``name=value`` / ``"name": "value"`` pairs whose name
    holds key, secret, token, password, signature or credential."""
    text = _USERINFO.sub(rf"\1{REDACTED}@", str(text))
    text = _QUERY_SECRET.sub(rf"\1{REDACTED}", text)
    return _PAIR_SECRET.sub(rf"\1\3{REDACTED}", text)


def redact_options(options: dict | None) -> dict:
    """A copy of ``storage_options`` whose credential values (under a name holding key, secret,
    token, password...) are ``"***"``, nested dicts included; for messages and logs."""
    return {
        k: REDACTED if _SECRET_KEY.fullmatch(str(k)) else (redact_options(v) if isinstance(v, dict) else v)
        for k, v in (options or {}).items()
    }


def scheme_of(path) -> str | None:
    """The URL scheme of ``path`` in lower case (``"s3"``), None for a plain path (or a ``Path``)."""
    m = _URL.match(path) if isinstance(path, str) else None
    return m.group(1).lower() if m else None


def is_remote(path) -> bool:
    """True when ``path`` is a URL of a scheme other than ``file``: read through fsspec."""
    return scheme_of(path) not in (None, "file")


def local(path):
    """A plain path or ``file://`` URL as the local path it names (``file:///a/b`` -> ``/a/b``);
    anything else unchanged."""
    if scheme_of(path) == "file":
        return path[len("file://") :]
    return path


_MADE: set = set()  # the fsspec filesystem classes this process has made instances of (``release_connections``)


def release_connections() -> None:
    """Close this process's pooled connections to remote stores: fsspec's cached filesystems are
    dropped and their sessions closed now; the next request connects anew.

    Call it before forking processes that will read remote objects (a DataLoader's workers): a
    child that inherits an open keep-alive connection can leave the parent's copy dead, and the
    parent's next request on it then waits for the read timeout (15 s seen, per request). fsspec's
    asynchronous filesystems (s3fs, gcsfs, http) close their session in a ``weakref.finalize``;
    it is run here directly. A filesystem without one is left to a garbage collection (a full one
    costs 0.2 s with torch loaded, so only then).
    """
    import weakref

    dropped = []
    for cls in _MADE:
        dropped += list(cls._cache.values())
        cls.clear_instance_cache()
    if not dropped:
        return
    closers = {
        id(info[0]): f
        for f in list(weakref.finalize._registry)  # the finalizers fsspec registered
        if (info := f.peek()) is not None and any(info[0] is fs for fs in dropped)
    }
    for fs in dropped:
        closer = closers.get(id(fs))
        if closer is not None:
            closer()  # closes the session now; a finalizer runs once
    if len(closers) < len(dropped):
        import gc

        gc.collect()


def _extra_hint(scheme: str) -> str:
    extra = SCHEME_EXTRAS.get(scheme)
    if extra is None:
        return (
            'give a local path, or a URL of s3:// (pip install "s2pdata[s3]"), gs:// ("s2pdata[gcs]"), '
            'hf:// ("s2pdata[hf]") or, for reading, https:// ("s2pdata[http]")'
        )
    return f'install its extra: pip install "s2pdata[{extra}]"'


def filesystem(url: str, storage_options: dict | None = None):
    """``(fs, path)``: the fsspec filesystem of ``url``, made with ``storage_options``, and the path
    in it.

    Raises
    ------
    StorageError
        The scheme has no installed implementation (the message names the extra to install), the
        URL carries credentials, or the filesystem refuses ``storage_options``.
    """
    scheme = scheme_of(url)
    if _USERINFO.match(url):
        raise StorageError(
            f"path {redact(url)!r} has credentials in the URL; remove them and give them through the "
            "environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, HF_TOKEN...) or storage_options"
        )
    if storage_options is not None and not isinstance(storage_options, dict):
        raise StorageError(f"storage_options must be a dict, got a {type(storage_options).__name__}")
    try:
        import fsspec.core
    except ModuleNotFoundError as exc:
        raise StorageError(
            f"path {redact(url)!r}: reading {scheme}:// URLs needs fsspec; {_extra_hint(scheme)}"
        ) from exc
    try:
        fs, path = fsspec.core.url_to_fs(url, **_with_shared_session(scheme, storage_options or {}))
        _MADE.add(type(fs))
        return fs, path
    except ImportError as exc:
        raise StorageError(
            f"path {redact(url)!r}: no {scheme}:// implementation is installed; {_extra_hint(scheme)}"
        ) from exc
    except ValueError as exc:
        if "protocol" in str(exc).lower():
            raise StorageError(
                f"path {redact(url)!r}: no storage implementation for the scheme {scheme!r}; {_extra_hint(None)}"
            ) from exc
        raise StorageError(f"path {redact(url)!r}: {redact(exc)}") from exc
    except TypeError as exc:
        raise StorageError(
            f"path {redact(url)!r}: storage_options {redact_options(storage_options)} are refused by the "
            f"{scheme}:// filesystem ({redact(exc)}); give the options its fsspec implementation takes"
        ) from exc


_SESSIONS: dict[str, object] = {}  # scheme -> the session its filesystems share in this process (and its forks)


def _with_shared_session(scheme: str, options: dict) -> dict:
    """``options``, for ``s3://`` with one aiobotocore session shared by every filesystem of this
    process (unless the caller gives a ``session`` or a ``profile``). A client is made anew after
    each ``release_connections`` (every loader epoch, in the parent and in each new worker); from a
    session that has made one before (its service model and credentials loaded, inherited by forked
    workers) that takes about 10 ms instead of 80-300 ms (measured)."""
    if scheme not in ("s3", "s3a") or "session" in options or "profile" in options:
        return options
    if scheme not in _SESSIONS:
        try:
            from aiobotocore.session import AioSession
        except ImportError:  # no s3 extra: fsspec's own error names it
            return options
        _SESSIONS[scheme] = AioSession()
    return {**options, "session": _SESSIONS[scheme]}


@contextlib.contextmanager
def _remote(what: str, url: str) -> Iterator[None]:
    """Errors of a request to ``url`` as one redacted line: FileNotFoundError stays one, anything
    else (a refused connection, a denied request) is a StorageError."""
    try:
        yield
    except StorageError:
        raise
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{redact(url)} does not exist") from exc
    except Exception as exc:  # botocore, aiohttp, google-auth: each its own exception types
        raise StorageError(f"cannot {what} {redact(url)} ({type(exc).__name__}: {redact(exc)})") from exc


def _full(fs, path: str) -> str:
    """A path of ``fs`` as a URL again (``bucket/x`` -> ``s3://bucket/x``)."""
    return fs.unstrip_protocol(path)


def _either(path, storage_options: dict | None, what: str, on_local, on_remote):
    """``on_local(Path)`` for a plain path; else ``on_remote(fs, path)`` with its errors as one redacted line."""
    if not is_remote(path):
        return on_local(Path(local(path)))
    fs, p = filesystem(path, storage_options)
    count(what)
    with _remote(what, path):
        return on_remote(fs, p)


def exists(path, storage_options: dict | None = None) -> bool:
    """True when a file or folder is at ``path``."""
    return _either(path, storage_options, "look up", Path.exists, lambda fs, p: fs.exists(p))


def isfile(path, storage_options: dict | None = None) -> bool:
    """True when a file (an object) is at ``path``."""
    return _either(path, storage_options, "look up", Path.is_file, lambda fs, p: fs.isfile(p))


def isdir(path, storage_options: dict | None = None) -> bool:
    """True when ``path`` is a folder (for object stores: a prefix that holds objects)."""
    return _either(path, storage_options, "look up", Path.is_dir, lambda fs, p: fs.isdir(p))


def glob(pattern, storage_options: dict | None = None) -> list:
    """Sorted matches of the glob ``pattern``: ``str`` paths for a local pattern, URLs for a URL."""
    if not is_remote(pattern):  # the pattern as given, not through Path: matches keep its spelling
        import glob as _glob

        return sorted(_glob.glob(str(local(pattern))))
    fs, p = filesystem(pattern, storage_options)
    count("list")
    with _remote("list", pattern):
        return sorted(_full(fs, q) for q in fs.glob(p))


def size(path, storage_options: dict | None = None) -> int:
    """Bytes of the file at ``path``; FileNotFoundError when there is none."""
    return _either(path, storage_options, "look up", lambda q: q.stat().st_size, lambda fs, p: int(fs.size(p)))


def read_bytes(path, storage_options: dict | None = None) -> bytes:
    """The whole file at ``path``."""
    return _either(path, storage_options, "read", Path.read_bytes, lambda fs, p: fs.cat_file(p))


def read_many(paths, storage_options: dict | None = None) -> list[bytes | None]:
    """The whole files at ``paths``, None for one that is not there. For URLs (all of one store) the
    requests run concurrently, in fsspec's batches (``fs.cat`` of a list): the stats files of 1,000
    shards cost about one round trip per batch instead of 1,000 in a row."""
    paths = list(paths)
    if not paths or not is_remote(paths[0]):
        return [Path(local(p)).read_bytes() if Path(local(p)).is_file() else None for p in paths]
    fs, _ = filesystem(paths[0], storage_options)
    keys = [filesystem(p, storage_options)[1] for p in paths]
    count("read", len(keys))
    with _remote("read", paths[0]):
        got = fs.cat(keys, on_error="return")
    out = []
    for key, path in zip(keys, paths):
        value = got.get(key, FileNotFoundError(key))
        if isinstance(value, FileNotFoundError):
            value = None
        elif isinstance(value, BaseException):
            with _remote("read", path):
                raise value
        out.append(value)
    return out


@contextlib.contextmanager
def open_read(path, storage_options: dict | None = None) -> Iterator[tuple[BinaryIO, int]]:
    """``(file, size)``: ``path`` open for reading in binary, and its size in bytes.

    A local file is ``open(path, "rb")``. A URL is a ``s2pdata._stream.RangedReader``: the object
    in ranged GETs (``fs.cat_file(path, start, end)``, each counted as a ``"read"``) of
    ``_stream.BLOCK_SIZE`` bytes, the next ``_stream.AHEAD`` ones fetched in a background thread, a
    request that breaks resumed from its byte offset at most ``_stream.RETRIES`` times (then
    ``_stream.StreamError``, an OSError, from ``read``), no local copy. Errors opening it are one
    redacted line (``StorageError``, ``FileNotFoundError``).
    """
    if not is_remote(path):
        with open(local(path), "rb") as f:
            yield f, os.fstat(f.fileno()).st_size
        return
    from ._stream import RangedReader, retried  # a leaf, like this module: imported where it is used

    fs, p = filesystem(path, storage_options)
    count("open")
    with _remote("open", path):
        n = retried(lambda: fs.size(p))
        if n is None:
            raise StorageError(f"{redact(path)} does not say its size (no Content-Length); it cannot be streamed")

    def fetch(start: int, end: int) -> bytes:
        count("read")
        return fs.cat_file(p, start=start, end=end)

    with RangedReader(fetch, int(n), name=redact(path), redact=redact) as f:
        yield f, int(n)


REQUESTS: dict[str, int] = {}  # operation -> remote calls this process made (``requests``); local ones are not counted


def count(op: str, n: int = 1) -> None:
    """Add ``n`` remote calls of the operation ``op`` (``"list"``, ``"read"``, ``"write"``...) to ``REQUESTS``."""
    REQUESTS[op] = REQUESTS.get(op, 0) + n


def requests(op: str | None = None) -> int:
    """Remote calls made by this process so far: of the operation ``op``, or of all. A listing that
    returns more than a page (1,000 S3 keys) is one call here and ``ceil(n / 1000)`` requests on the wire."""
    return REQUESTS.get(op, 0) if op is not None else sum(REQUESTS.values())


def read_range(path, start: int, length: int, storage_options: dict | None = None) -> bytes:
    """``length`` bytes of the file at ``path`` from byte ``start``: one ranged read (``Range`` request)
    for a URL, a seek and read locally. Fewer bytes come back only at the end of the file."""
    if not is_remote(path):
        with open(local(path), "rb") as f:
            f.seek(start)
            return f.read(length)
    fs, p = filesystem(path, storage_options)
    count("read")
    with _remote("read", path):
        return fs.cat_file(p, start=start, end=start + length)


def list_files(folder, storage_options: dict | None = None) -> dict[str, int]:
    """Every file under ``folder``, recursively: its path relative to ``folder`` (``/``-separated) ->
    its size in bytes, sorted by path. For a URL this is one recursive listing (``fs.find``), not a
    walk of sub-folders; locally, ``os.walk`` without following links."""
    out: dict[str, int] = {}
    if not is_remote(folder):
        root = Path(local(folder))
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in filenames:
                p = Path(dirpath) / name
                try:
                    st = p.lstat()
                except OSError:
                    continue
                out[p.relative_to(root).as_posix()] = st.st_size
        return dict(sorted(out.items()))
    fs, p = filesystem(folder, storage_options)
    base = p.rstrip("/")
    count("list")
    with _remote("list", folder):
        found = fs.find(base, detail=True, withdirs=False)
    for q, info in found.items():
        if info.get("type", "file") == "file" and q.startswith(base + "/"):
            out[q[len(base) + 1 :]] = int(info.get("size") or 0)
    return dict(sorted(out.items()))


def warm(path, storage_options: dict | None = None) -> None:
    """Connect to the store of ``path`` now (one cheap request), so that the first real request of
    this process does not pay the client's set-up; a failure is left for that request to report."""
    if is_remote(path):
        try:
            fs, p = filesystem(path, storage_options)
            fs.exists(p)
        except Exception:  # noqa: BLE001 - only a head start: the real request says what is wrong
            pass


def write_bytes(path, data: bytes, storage_options: dict | None = None) -> None:
    """Replace the file at ``path`` with ``data``: locally through a new temporary file and a rename
    (``_safeio.atomic_write``), for a URL one PUT (an object appears whole or not at all)."""
    if not is_remote(path):
        p = Path(local(path))
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, data)
        return
    fs, p = filesystem(path, storage_options)
    count("write")
    with _remote("write", path):
        fs.pipe_file(p, data)


def upload(source: Path, path, storage_options: dict | None = None) -> None:
    """Copy the finished local file ``source`` to ``path`` (a URL): one PUT, or for a large file a
    multipart upload the store completes only at the end, so the object appears whole or not at all."""
    fs, p = filesystem(path, storage_options)
    count("write")
    with _remote("write", path):
        fs.put_file(str(source), p)


def download(path, target: Path, storage_options: dict | None = None) -> None:
    """Copy the object at ``path`` (a URL) to the local file ``target``, through a temporary name and
    a rename: ``target`` is the whole object or what it was before."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fs, p = filesystem(path, storage_options)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.download.tmp")
    count("read")
    try:
        with _remote("read", path):
            fs.get_file(p, str(tmp))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def remove(paths, storage_options: dict | None = None) -> None:
    """Delete the files ``paths`` (all local, or all URLs of one store); an absent one is no error."""
    paths = list(paths)
    if not paths:
        return
    if not is_remote(paths[0]):
        for q in paths:
            Path(local(q)).unlink(missing_ok=True)
        return
    fs, _ = filesystem(paths[0], storage_options)
    count("write")
    with _remote("delete", paths[0]):
        for q in paths:
            try:
                fs.rm_file(filesystem(q, storage_options)[1])
            except FileNotFoundError:
                pass


def create_exclusive(path, data: bytes, storage_options: dict | None = None) -> bool | None:
    """Create the object at ``path`` holding ``data`` only if none is there (a conditional create,
    ``If-None-Match: *``, which S3 and GCS honour): True if this call created it, False if one was
    there. None when the filesystem has no conditional create; the caller then falls back on a
    weaker check (``create_exclusive`` never writes in that case)."""
    fs, p = filesystem(path, storage_options)
    count("write")
    try:
        with _remote("create", path):
            fs.pipe_file(p, data, mode="create")
        return True
    except (TypeError, NotImplementedError):
        return None  # no ``mode`` argument: this filesystem cannot create conditionally
    except (StorageError, FileExistsError) as exc:
        cause = exc.__cause__ or exc
        text = f"{cause} {getattr(cause, 'response', '')}"
        if isinstance(cause, FileExistsError) or "precondition" in text.lower().replace("-", "") or "412" in text:
            return False
        raise


def modified(path, storage_options: dict | None = None) -> float | None:
    """The time (seconds since the epoch) the file at ``path`` was last written, None if unknown."""
    if not is_remote(path):
        return Path(local(path)).stat().st_mtime
    fs, p = filesystem(path, storage_options)
    count("look up")
    with _remote("look up", path):
        info = fs.info(p)
    stamp = info.get("LastModified") or info.get("mtime") or info.get("updated")
    if stamp is None:
        return None
    if isinstance(stamp, (int, float)):
        return float(stamp)
    if isinstance(stamp, str):
        import datetime

        stamp = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return stamp.timestamp()


def join(folder, name: str):
    """``folder/name``: a ``Path`` for a local folder, a string for a URL."""
    if not is_remote(folder):
        return Path(local(folder)) / name
    return folder.rstrip("/") + "/" + name


def parent(path):
    """The folder holding ``path``: a ``Path`` locally, a URL for a URL."""
    if not is_remote(path):
        return Path(local(path)).parent
    return path.rstrip("/").rsplit("/", 1)[0]


def name_of(path) -> str:
    """The last component of ``path`` (``shard-000000.tar``)."""
    if not is_remote(path):
        return Path(local(path)).name
    return path.rstrip("/").rsplit("/", 1)[-1]


def with_name(path, name: str):
    """``path`` with its last component replaced by ``name``: a ``Path`` locally, a URL for a URL."""
    if not is_remote(path):
        return Path(local(path)).with_name(name)
    return join(parent(path), name)


def parse_options(text: str, *, flag: str = "--storage-options") -> dict:
    """``--storage-options JSON`` -> dict; ValueError (naming ``flag``, never echoing the value,
    which may hold a secret) when it is not a JSON object."""
    try:
        options = json.loads(text)
    except ValueError as exc:
        raise ValueError(
            f"{flag} is not valid JSON ({exc.msg} at character {exc.pos}); give an object such as "
            '\'{"endpoint_url": "http://127.0.0.1:8333"}\''
        ) from exc
    if not isinstance(options, dict):
        raise ValueError(f"{flag} holds a JSON {type(options).__name__}; give an object such as '{{\"anon\": true}}'")
    return options


STORAGE_OPTIONS_HELP = (
    'JSON object passed to the filesystem of a URL (e.g. \'{"endpoint_url": "http://127.0.0.1:8333"}\' for s3); '
    "credentials otherwise come from the environment (AWS_PROFILE, AWS_ENDPOINT_URL, HF_TOKEN...)"
)


def options_arg(text: str) -> dict:
    """argparse type of ``--storage-options``: ``parse_options``, its error an ``ArgumentTypeError``
    (argparse would otherwise print the value, which may hold a secret)."""
    import argparse

    try:
        return parse_options(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
