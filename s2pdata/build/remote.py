"""A build whose ``--out`` is a URL (``s3://bucket/run``): the object store holds the build, a local
staging folder holds what the build process itself works in.

The object store is the truth. A shard is committed there as it is locally: its tar is written whole
to a local temporary file, hashed as it is written, uploaded in one PUT or one multipart upload that
the store completes only at the end (``shards.write_tar``), and its stats object is written last,
by the worker that built it (no shard byte passes through the driver). A resume lists the stats
objects, checks each tar's size and sha256 on the store, and rebuilds the rest.

The staging folder (``staging_dir``: ``$S2PDATA_STAGING/<digest of the URL>``, else under
``~/.cache/s2pdata/staging``) holds the manifest, the patch pool and the sources' caches while the
build runs; each is uploaded when written (``publish``) and fetched back at the start of the next run
(``pull``), so a resume on another machine finds them. Tars are never downloaded.

One build at a time per prefix: the lock object ``URL/.s2pdata.lock`` is created with a conditional
create (``If-None-Match: *``, honoured by S3, GCS and SeaweedFS), so of two builds started together
exactly one gets it. Its holder rewrites it every ``HEARTBEAT`` seconds; a lock older than ``STALE``
seconds, or held by a process of this host that is gone, is taken over. Where the filesystem has no
conditional create, the lock is written, then read back: the later writer wins, and two builds
started within one request's time of each other may both run (documented in the README).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from .. import storage
from ..shards import CACHE_DIR, DATASET_JSON, INDEX_JSON, LOCK_FILE, POOL_DIR, REJECTS, build_files
from .plan import BuildRefused

LISTINGS = f"{CACHE_DIR}/listings"  # the cached listings of folder URLs (dropped by --overwrite)
HEARTBEAT = 30.0  # seconds between rewrites of the lock object by its holder
STALE = 300.0  # seconds without a rewrite after which a lock object is taken over
_held: dict[str, int] = {}  # URL -> how many nested locks this process holds on it


def staging_dir(url: str) -> Path:
    """The local folder a build into ``url`` works in: ``$S2PDATA_STAGING`` (else
    ``~/.cache/s2pdata/staging``) / the first 16 hex digits of the URL's sha256."""
    root = os.environ.get("S2PDATA_STAGING") or Path.home() / ".cache" / "s2pdata" / "staging"
    return Path(root) / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


class RemoteOut:
    """The object store side of a build into ``url``: fetching and publishing the build's small files,
    and the lock object.

    Parameters
    ----------
    url : str
        The build folder on the store (``s3://bucket/run``).
    storage_options : dict or None
        Options of its filesystem (``s2pdata.storage``).
    staging : path or None
        The local working folder; None: ``staging_dir(url)``.
    """

    def __init__(self, url: str, storage_options: dict | None = None, staging=None):
        self.url = url.rstrip("/")
        self.options = storage_options
        self.local = Path(staging) if staging is not None else staging_dir(self.url)
        self._pulled_at = 0.0  # files modified since are this run's (publish_tree uploads them)
        self._uploads: ThreadPoolExecutor | None = None  # publish_tree(background=True), one at a time
        self._pending: list[Future] = []
        storage.filesystem(self.url, storage_options)  # an unknown scheme or a missing extra: refused now

    def __str__(self) -> str:
        return storage.redact(self.url)

    def path(self, name: str) -> str:
        """The URL of ``name`` (``/``-separated) in the build folder."""
        return storage.join(self.url, name)

    # -- the build's small files ------------------------------------------------------------

    def pull(self, *, overwrite: bool) -> None:
        """Make the staging folder hold what the store holds: its manifest, pool and caches (never
        its tars). With ``overwrite``, first delete the build on the store and its cached listings."""
        for p in build_files(self.local):  # what an earlier run left here: the store is the truth
            Path(p).unlink()
        shutil.rmtree(self.local / CACHE_DIR, ignore_errors=True)
        if overwrite:
            stale = build_files(self.url, storage_options=self.options)
            stale += [self.path(f"{LISTINGS}/{n}") for n in storage.list_files(self.path(LISTINGS), self.options)]
            storage.remove(stale, self.options)
        for name in storage.list_files(self.url, self.options):
            if name == DATASET_JSON or name.startswith((f"{POOL_DIR}/", f"{CACHE_DIR}/")):
                storage.download(self.path(name), self.local / name, self.options)
        self._pulled_at = time.time()  # what the staging folder holds from here on was written by this run

    def publish(self, *names: str) -> None:
        """Upload the staging folder's files ``names`` (relative paths) to the store, in order."""
        for name in names:
            storage.upload(self.local / name, self.path(name), self.options)

    def publish_tree(self, folder: str, *, background: bool = False) -> None:
        """Upload every file under the staging folder's ``folder`` that this run wrote (modified
        since ``pull``) or that the store lacks or holds at another size. With ``background`` the
        uploads run in a thread while the build goes on (the patch pool, which this machine's workers
        read from the staging folder: 0.3-0.4 s a 10 MB part on loopback, off the critical path);
        ``settle`` waits for them, and ``publish_finish`` settles first."""
        if background:
            self._uploads = self._uploads or ThreadPoolExecutor(1, thread_name_prefix="s2pdata-publish")
            self._pending.append(self._uploads.submit(self.publish_tree, folder))
            return
        here = self.local / folder
        if not here.is_dir():
            return
        there = storage.list_files(self.path(folder), self.options)
        for name, size in storage.list_files(here).items():
            written = (here / name).stat().st_mtime >= self._pulled_at
            if (written or there.get(name) != size) and not name.endswith(".tmp"):
                self.publish(f"{folder}/{name}")

    def fetch_tree(self, url: str, target: Path) -> Path:
        """Download every object under ``url`` into the local folder ``target``; returns ``target``."""
        for name in storage.list_files(url, self.options):
            storage.download(storage.join(url, name), target / name, self.options)
        return target

    def remove_tree(self, url: str) -> None:
        """Delete every object under ``url``."""
        storage.remove([storage.join(url, n) for n in storage.list_files(url, self.options)], self.options)

    def settle(self, *, raise_errors: bool = True) -> None:
        """Wait for the background uploads; raise the first one's error (``StorageError``) unless
        ``raise_errors`` is False (the build is already failing with an error of its own)."""
        pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]  # waits for each
        if self._uploads:
            self._uploads.shutdown()
            self._uploads = None
        if raise_errors and any(errors):
            raise next(e for e in errors if e)

    def publish_finish(self) -> None:
        """Once the background uploads are done: the finished build's index, rejects log, then
        manifest (the manifest last: a reader that sees ``status: complete`` finds the others)."""
        self.settle()
        self.publish(INDEX_JSON, REJECTS, DATASET_JSON)

    # -- the lock object ---------------------------------------------------------------------

    @contextmanager
    def lock(self):
        """Hold the lock object for the ``with`` block; nested calls in one process share it. Yields
        True to the outermost holder, False to nested ones."""
        if self.url in _held:
            _held[self.url] += 1
            try:
                yield False
            finally:
                _held[self.url] -= 1
            return
        with self._lock():
            _held[self.url] = 1
            try:
                yield True
            finally:
                del _held[self.url]

    @contextmanager
    def _lock(self):
        """Hold ``URL/.s2pdata.lock`` for the ``with`` block (see the module docstring).

        Raises
        ------
        BuildRefused
            Another build holds it; the message names the holder and the way out.
        """
        path = self.path(LOCK_FILE)
        token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since, "token": token}).encode()
        self._acquire(path, body)
        stop = threading.Event()

        def beat():
            """Rewrite the lock every HEARTBEAT seconds: its age tells others this build is alive."""
            while not stop.wait(HEARTBEAT):
                try:
                    storage.write_bytes(path, body, self.options)
                except (OSError, ValueError):
                    pass  # the store is away: the build itself will stop on its next write

        thread = threading.Thread(target=beat, name="s2pdata-lock-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            try:
                storage.remove([path], self.options)
            except (OSError, ValueError):
                pass  # the store is away: the lock goes stale and the next build takes it over

    def _acquire(self, path: str, body: bytes) -> None:
        """Create the lock object, taking over a stale one once; BuildRefused when it is held."""
        for attempt in range(2):
            created = storage.create_exclusive(path, body, self.options)
            if created is None:  # no conditional create on this filesystem: write, then read back
                if storage.exists(path, self.options) and not self._stale(path):
                    break
                storage.write_bytes(path, body, self.options)
                created = storage.read_bytes(path, self.options) == body
            if created:
                return
            if attempt == 0 and self._stale(path):
                storage.remove([path], self.options)
                continue
            break
        try:
            holder = json.loads(storage.read_bytes(path, self.options))
            who = f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}"
        except storage.StorageError:
            raise
        except (OSError, ValueError, AttributeError):
            who = "a build whose lock object does not name it"
        raise BuildRefused(
            f"{storage.redact(self.url)} is in use by another build ({who}); nothing was touched. Wait for "
            f"that build to finish (or stop it), then run this command again, or choose another --out. The "
            f"lock is {storage.redact(path)}; a lock not renewed for {STALE:.0f} s is taken over."
        )

    def _stale(self, path: str) -> bool:
        """Whether the lock at ``path`` is abandoned: its holder was a process of this host that is
        gone, or it was not rewritten for ``STALE`` seconds. A store that does not answer is a
        ``StorageError`` (never taken for a live holder)."""
        try:
            holder = json.loads(storage.read_bytes(path, self.options))
            if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
                try:
                    os.kill(holder["pid"], 0)
                except ProcessLookupError:
                    return True
                except OSError:
                    pass
            stamp = storage.modified(path, self.options)
        except FileNotFoundError:
            return True
        except storage.StorageError:
            raise
        except (ValueError, AttributeError):  # not JSON of ours: judged by its age alone
            try:
                stamp = storage.modified(path, self.options)
            except FileNotFoundError:
                return True
        return stamp is not None and time.time() - stamp > STALE
