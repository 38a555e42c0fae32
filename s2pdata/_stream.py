"""Remote objects read as files: ranged reads in blocks, resumed where they broke, read ahead.

Consumes ``fetch(start, end) -> bytes`` (one ranged GET of an object, e.g. ``fs.cat_file(path,
start, end)``; ``storage.open_read`` makes it and counts each call) and the object's size; produces
``RangedReader``, a binary file that ``tarfile``'s stream mode reads in order (``read``, ``tell``,
``seek``). Also ``HashingReader`` (the sha256 of a file's bytes as a reader passes them, each byte
once, in order: a verified read is one read) and ``read_ahead`` (the next of a run of iterators,
e.g. the next shard, started in a background thread while the current one is consumed).

A request that fails on the way (a reset or dropped connection, a timeout, a 5xx or 429 answer,
a body cut short) is asked again from the exact byte where the data stopped, at most ``RETRIES``
times in a row with a doubling ``BACKOFF``; then ``StreamError`` gives the byte offset. A missing
object or a denied request is not asked again. The object is read in ``BLOCK_SIZE`` requests and
``AHEAD`` blocks after the one being read are fetched in a background thread, so a reader holds
at most ``(2 + AHEAD) * BLOCK_SIZE`` bytes (the block before, for ``tarfile``'s step back of at
most its 10 KiB record, the current one, and those ahead); ``AHEAD = 0`` turns read-ahead off.

This module imports no other s2pdata module (``storage`` hands it ``fetch`` and ``redact``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

BLOCK_SIZE = 4 << 20  # bytes per ranged GET: a 20-50 ms request costs < 10% of a 4 MiB transfer at 100 MB/s
AHEAD = 1  # blocks fetched ahead of the reader (0: none, and read_ahead opens nothing early)
RETRIES = 3  # requests asked again in a row after a transient failure before StreamError
BACKOFF = 0.2  # seconds before the first retry; doubled for each next one (0.2 + 0.4 + 0.8 s at most)
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_NETWORK_MODULES = ("aiohttp", "botocore", "aiobotocore", "urllib3", "requests", "http", "fsspec", "s3fs", "gcsfs")


class StreamError(OSError):
    """A ranged read that failed for good: ``"NAME: problem"``, where ``problem`` names the byte
    ``offset`` it stopped at and the ``retries`` made; the request's error is chained (``__cause__``)."""

    def __init__(self, name: str, problem: str, *, offset: int, retries: int):
        super().__init__(f"{name}: {problem}")
        self.problem, self.offset, self.retries = problem, offset, retries


def transient(exc: BaseException) -> bool:
    """Whether a request that raised ``exc`` may work when asked again: connection errors, timeouts,
    bodies cut short, HTTP 5xx / 408 / 429 (``status`` or ``code`` of aiohttp, gcsfs, botocore), and
    the network libraries' own errors; never a missing object or a denied request."""
    if isinstance(exc, _PERMANENT):
        return False
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    response = getattr(exc, "response", None)
    if status is None and isinstance(response, dict):  # botocore's ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if isinstance(status, int) and 400 <= status < 600:
        return status >= 500 or status in (408, 429)
    if isinstance(exc, (OSError, EOFError)):  # ConnectionError, TimeoutError (asyncio's too), a 5xx from s3fs
        return True
    return type(exc).__module__.partition(".")[0] in _NETWORK_MODULES


def retried(call: Callable[[], object], *, retries: int | None = None, backoff: float | None = None):
    """``call()``, asked again after a transient failure (``transient``) at most ``retries`` times
    (default ``RETRIES``), sleeping ``backoff`` (``BACKOFF``) seconds, doubled each time; the last
    error is raised as it is. For a request without a byte offset (the size of an object)."""
    retries = RETRIES if retries is None else retries
    backoff = BACKOFF if backoff is None else backoff
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:
            if not transient(exc) or attempt == retries:
                raise
            time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


class RangedReader:
    """A remote object as a sequential binary file, read in ranged requests of ``block_size`` bytes.

    Parameters
    ----------
    fetch : callable
        ``fetch(start, end)`` -> the object's bytes ``[start, end)``: one ranged GET.
    size : int
        The object's size in bytes.
    name : str
        How messages name the object (already free of credentials).
    block_size, ahead, retries, backoff : int, int, int, float or None
        None: the module's ``BLOCK_SIZE``, ``AHEAD``, ``RETRIES``, ``BACKOFF`` at the time of the call.
    redact : callable
        Applied to the text of a request's error before it goes into a message.

    Notes
    -----
    Blocks are fetched in order; the first one as soon as the reader is made (with ``ahead`` > 0),
    so that opening an object starts its transfer. At most ``2 + ahead`` blocks are held. A read
    that fails is resumed from the exact byte its data stopped at; ``requests`` and ``resumed``
    count the requests made and the ones that were such a resumption.

    Raises
    ------
    StreamError
        From ``read``: a block failed ``retries + 1`` times in a row (transient errors), or once
        (a missing object, a denied request), or the server sent more than the range it was asked.
    """

    def __init__(
        self,
        fetch: Callable[[int, int], bytes],
        size: int,
        *,
        name: str,
        block_size: int | None = None,
        ahead: int | None = None,
        retries: int | None = None,
        backoff: float | None = None,
        redact: Callable[[object], str] = str,
    ):
        self._fetch, self.size, self.name, self._redact = fetch, int(size), name, redact
        self.block_size = BLOCK_SIZE if block_size is None else int(block_size)
        self.ahead = AHEAD if ahead is None else int(ahead)
        self.retries = RETRIES if retries is None else int(retries)
        self.backoff = BACKOFF if backoff is None else float(backoff)
        if self.block_size < 1 or self.ahead < 0 or self.retries < 0:
            raise ValueError(f"block_size, ahead, retries must be >= 1, 0, 0, got {block_size}, {ahead}, {retries}")
        self.requests = self.resumed = 0
        self._pos = 0
        self._blocks: dict[int, bytes] = {}  # index -> bytes: the current block and the one before it
        self._pending: dict[int, Future] = {}  # index -> the fetch of a block ahead
        self._last = max(0, -(-self.size // self.block_size) - 1)  # index of the last block
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="s2pdata-ahead") if self.ahead and self.size else None
        self.closed = False
        if self._pool is not None:
            self._schedule(0)

    # -- file protocol
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move to ``offset`` from the start (``whence`` 0), the current byte (1) or the end (2); fetches nothing."""
        base = (0, self._pos, self.size)[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes from the current position (all the rest for ``n < 0``); ``b""`` at the end."""
        if self.closed:
            raise ValueError(f"read of closed file {self.name}")
        end = self.size if n is None or n < 0 else min(self.size, self._pos + n)
        parts = []
        while self._pos < end:
            k, at = divmod(self._pos, self.block_size)
            block = self._block(k)
            take = block[at : at + end - self._pos]
            parts.append(take)
            self._pos += len(take)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Drop the blocks held and the fetches ahead (a running one finishes in its thread, unused)."""
        if self.closed:
            return
        self.closed = True
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()
        self._blocks.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> RangedReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- blocks
    def _block(self, k: int) -> bytes:
        """Block ``k``: held, fetched ahead, or fetched now; then the ones after it are scheduled."""
        data = self._blocks.get(k)
        if data is None:
            fut = self._pending.pop(k, None)
            data = fut.result() if fut is not None else self._get(k)
            self._blocks = {j: b for j, b in self._blocks.items() if j == k - 1}
            self._blocks[k] = data
            for j in [j for j in self._pending if not k < j <= k + self.ahead]:  # after a seek: not needed
                self._pending.pop(j).cancel()
            for j in range(k + 1, min(k + self.ahead, self._last) + 1):
                self._schedule(j)
        return data

    def _schedule(self, k: int) -> None:
        if k not in self._pending and k not in self._blocks:
            self._pending[k] = self._pool.submit(self._get, k)

    def _get(self, k: int) -> bytes:
        """Block ``k`` in ranged requests: after a transient failure asked again from the byte its data stopped at."""
        start = k * self.block_size
        end = min(start + self.block_size, self.size)
        parts: list[bytes] = []
        at, failures = start, 0
        while at < end:
            self.requests += 1
            self.resumed += at > start or failures > 0
            try:
                data = self._fetch(at, end)
                if len(data) > end - at:  # a server that ignored the Range header sent the whole object
                    raise StreamError(
                        self.name,
                        f"asked for bytes {at}-{end - 1} (a Range request), got {len(data)} bytes: the server "
                        "ignores Range requests",
                        offset=at,
                        retries=failures,
                    )
                if not data:
                    raise EOFError(f"no data at byte {at} of {self.size}")
            except StreamError:
                raise
            except Exception as exc:
                if not transient(exc) or failures >= self.retries:
                    tried = f" after {failures} retr{'y' if failures == 1 else 'ies'}" if failures else ""
                    raise StreamError(
                        self.name,
                        f"read failed at byte offset {at}{tried} ({type(exc).__name__}: {self._redact(exc)})",
                        offset=at,
                        retries=failures,
                    ) from exc
                time.sleep(self.backoff * 2**failures)
                failures += 1
                continue
            parts.append(data)
            at += len(data)
            failures = 0  # a request that brought data resets the count: progress, not a loop
        return parts[0] if len(parts) == 1 else b"".join(parts)


class HashingReader:
    """The file ``f`` (at byte 0) read through, with the sha256 of its bytes taken as reads pass them.

    Each byte is hashed once, the first time a read reaches it, so a step back (``seek`` to re-read,
    as ``tarfile``'s end check does) costs nothing and the digest is the file's. ``hexdigest``
    hashes what no read reached yet, to the end of ``f``.
    """

    def __init__(self, f):
        self._f = f
        self._pos = self._hashed = 0
        self._h = hashlib.sha256()
        self.name = getattr(f, "name", None)

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        end = self._pos + len(data)
        if end > self._hashed:
            if self._pos > self._hashed:  # a seek past bytes never read: their hash is unknown
                raise RuntimeError(f"read at byte {self._pos} skips bytes {self._hashed}..{self._pos} of the hash")
            self._h.update(memoryview(data)[self._hashed - self._pos :])
            self._hashed = end
        self._pos = end
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._f.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def hexdigest(self) -> str:
        """The sha256 of the whole file: what reads passed, then the rest (read here, 1 MiB at a time)."""
        self.seek(self._hashed)
        while self.read(1 << 20):
            pass
        return self._h.hexdigest()


_END = object()


class _Started:
    """The iterator ``it``, its first item being taken now in a background thread."""

    def __init__(self, it: Iterator):
        self._it, self._first, self._error = it, _END, None
        self._thread = threading.Thread(target=self._take, name="s2pdata-next-shard", daemon=True)
        self._thread.start()

    def _take(self) -> None:
        try:
            self._first = next(self._it, _END)
        except BaseException as exc:  # raised in the consumer's thread, when it gets to this iterator
            self._error = exc

    def __iter__(self) -> Iterator:
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._first is not _END:
            first, self._first = self._first, _END
            yield first
            yield from self._it

    def close(self) -> None:
        self._thread.join()
        getattr(self._it, "close", lambda: None)()


def read_ahead(keys: Iterable, start: Callable[[object], Iterator]) -> Iterator[tuple[object, Iterable]]:
    """``(key, items)`` for each of ``keys`` in order, ``items`` being ``start(key)``: while one is
    consumed, the next one is made and its first item taken in a background thread (the next
    shard opened, its first block fetched and its first sample read while this one is decoded).

    The items and their order are those of ``start(key)`` for each key in turn; an error of the
    next one is raised when its items are iterated, not before. At most two iterators are open.
    With ``AHEAD = 0`` each starts only when it is reached. ``keys`` may be endless.
    """
    if not AHEAD:
        for key in keys:
            items = start(key)
            try:
                yield key, items
            finally:
                getattr(items, "close", lambda: None)()
        return
    keys = iter(keys)
    key = next(keys, _END)
    current = _Started(start(key)) if key is not _END else None
    following = None
    try:
        while current is not None:
            after = next(keys, _END)
            following = _Started(start(after)) if after is not _END else None
            yield key, current
            current.close()
            key, current, following = after, following, None
    finally:
        for it in (current, following):
            if it is not None:
                it.close()
