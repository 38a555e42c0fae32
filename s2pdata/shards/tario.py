"""Tar I/O of shards: the atomic, reproducible tar writer and the checked, streaming tar reader.

``write_tar`` writes members with a fixed mtime, owner and mode (the same samples give the same
bytes), hashing as it writes, to a new temporary file that is renamed into place, or for a URL
uploaded whole. ``iter_tar`` groups members by key in file order, checking each header against the
bytes the file holds before reading, and verifies the sha256 while the bytes stream.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .. import storage
from .._safeio import _fsync_dir, new_temp_file
from .._stream import HashingReader, StreamError
from .format import (
    TAR_MTIME,
    ShardError,
    _shard_error,
)
from .ledger import (
    _mismatch,
    shard_record,
    verify_shard,
)


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add one member with the fixed header fields that keep shard bytes reproducible."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = TAR_MTIME
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = "s2pdata"
    tar.addfile(info, io.BytesIO(data))


class _HashingWriter:
    """A binary file that feeds every byte written to md5 and sha256 (``tarfile`` calls ``write``
    and ``tell`` only), so the digests cost no second read of the tar."""

    def __init__(self, f):
        self._f = f
        self.md5, self.sha256 = hashlib.md5(), hashlib.sha256()

    def write(self, data) -> int:
        """Hash ``data``, then write it."""
        self.md5.update(data)
        self.sha256.update(data)
        return self._f.write(data)

    def tell(self) -> int:
        """The file's position."""
        return self._f.tell()


def write_tar(path, samples: Iterable[dict[str, bytes]], *, storage_options: dict | None = None) -> dict:
    """Write encoded samples to ``path`` atomically; returns nsamples, filesize, md5sum, sha256 (hashed
    as the bytes are written).

    Locally: a fresh ``.tmp`` file from ``create_new`` beside ``path``, fsynced, then renamed. For a
    URL (``s3://bucket/run/shard-000000.tar``): the same bytes into a local temporary file, then one
    upload (``storage.upload``: a PUT, or a multipart upload completed at the end), so the object
    appears whole, with its digests known before it is sent, or not at all.
    """
    if storage.is_remote(path):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="s2pdata-shard-") as tmp:
            local = Path(tmp) / storage.name_of(path)
            info = write_tar(local, samples)
            storage.upload(local, path, storage_options)
        return info
    path = Path(storage.local(path))
    tmp, raw = new_temp_file(path)
    n = 0
    with raw:
        f = _HashingWriter(raw)
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for sample in samples:
                key = sample["__key__"]
                for field, data in sample.items():
                    if not field.startswith("__"):
                        _tar_member(tar, f"{key}.{field}", data)
                n += 1
        raw.flush()
        os.fsync(raw.fileno())
        size = raw.tell()
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return {"nsamples": n, "filesize": size, "md5sum": f.md5.hexdigest(), "sha256": f.sha256.hexdigest()}


def _check_end(path: str, f, offset: int, size: int) -> None:
    """From ``offset`` (where ``tarfile`` stopped) to the end of ``f`` there must be the end-of-archive
    blocks and nothing but NUL: ``tarfile`` ends at a damaged header, or at the end of a tar cut at a
    member boundary, as if the archive ended there."""
    f.seek(offset)
    at = offset
    while chunk := f.read(1 << 20):
        stripped = chunk.lstrip(b"\0")
        if stripped:
            raise _shard_error(
                path,
                f"damaged tar header at byte offset {offset} (bad checksum, or data where a header belongs; "
                f"first non-zero byte at {at + len(chunk) - len(stripped)}): the {size - offset} bytes after it "
                "would be lost",
            )
        at += len(chunk)
    if at - offset < tarfile.BLOCKSIZE:
        raise _shard_error(path, f"truncated: it ends at byte {at} without the end-of-archive blocks")


MAX_MEMBER_BYTES = 1 << 30  # far above any member s2pdata writes (a 64 MP 16-bit PNG is < 200 MB)
_MEMBER_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)  # what _tar_member writes ('0'; '\0' from old writers)


def _member_problem(member: tarfile.TarInfo, file_size: int) -> str | None:
    """Why ``member`` cannot be a member of an s2pdata shard of ``file_size`` bytes (None when it can):
    anything but a plain regular file (sparse, link, device, folder...), or data that the file cannot
    hold. Checked before the data is read, so a header cannot make the read allocate more than the file."""
    if member.type not in _MEMBER_TYPES or member.sparse is not None:
        kind = "sparse file" if member.sparse is not None or member.type == tarfile.GNUTYPE_SPARSE else "type"
        return f"member {member.name!r} is a {kind} entry (type {member.type!r}); s2pdata writes regular files only"
    left = file_size - member.offset_data
    if not 0 <= member.size <= min(left, MAX_MEMBER_BYTES):
        return (
            f"member {member.name!r} at byte offset {member.offset} declares {member.size} bytes, but "
            f"{max(left, 0)} bytes follow its header (and a member may hold at most {MAX_MEMBER_BYTES})"
        )
    return None


def iter_tar(
    path: str, *, storage_options: dict | None = None, verify: bool | dict = False
) -> Iterator[dict[str, bytes]]:
    """Group a tar's members by key (the basename up to its first dot), in file order.

    Each sample is ``{"__key__": key, "__url__": path, field: bytes, ...}``. A member's size is
    checked against the bytes left in the file before it is read: no header makes a read larger
    than the shard. ``path`` may be a URL (``s3://bucket/run/shard-000000.tar``): the tar is
    streamed in order with ``storage_options`` (``s2pdata.storage.open_read``: ranged reads,
    resumed from their byte offset when a connection breaks, read ahead), no local copy, under
    the same checks. The last sample is yielded only once the end of the tar is checked.

    Parameters
    ----------
    path : str
        A shard tar: a local path or a URL.
    storage_options : dict or None
        Options of a URL's filesystem (``s2pdata.storage``).
    verify : bool or dict
        Check the tar against its recorded size and sha256 in the same read: True looks the record
        up (``shard_record``; none is an error), a dict is the record. The size is checked on
        opening, before any sample; the sha256 of the bytes as they stream (``_stream.HashingReader``)
        at the end of the tar, before the last sample is yielded. So a consumer of a damaged shard
        has had at most all its samples but the last (as read, the damaged bytes among them:
        a decoder may have refused one first), never the whole shard as sound. A read stopped
        early by a damaged header or member hashes the rest of the file: a file that is not what its
        stats say is a sha256 mismatch (the problem that stopped the read chained as its cause).

    Raises
    ------
    ShardError
        Naming the shard and the byte offset: a damaged or malformed header (which ``tarfile`` alone
        takes for the end of the archive, or reports as a bare ``ValueError``), a truncated member,
        a member that is not a plain regular file (a sparse one would expand to its declared size;
        s2pdata never writes one), a member larger than the file or ``MAX_MEMBER_BYTES``, a tar
        that does not open, a read that broke off and did not resume (``_stream.RETRIES``); with
        ``verify``, no record, or a size or sha256 that is not the recorded one.
    """

    current: dict[str, bytes] | None = None
    url = str(path)
    record = verify if isinstance(verify, dict) else None
    if verify is True:
        record = shard_record(path, storage_options=storage_options)
        if record is None:
            verify_shard(path, storage_options=storage_options)  # raises its "no record" ShardError
    with storage.open_read(path, storage_options) as (opened, file_size):
        why = None if record is None else _mismatch(path, record, "size", size=file_size)
        if why is not None:
            raise _shard_error(path, f"does not match its stats: {why}")
        f = opened if record is None else HashingReader(opened)
        offset = 0
        try:
            try:
                with tarfile.open(fileobj=f, mode="r|") as tar:
                    for member in tar:
                        offset = member.offset
                        problem = _member_problem(member, file_size)
                        if problem is not None:
                            raise _shard_error(path, problem)
                        base = member.name.rsplit("/", 1)[-1]
                        key, dot, field = base.partition(".")
                        if not dot:
                            continue
                        if current is None or current["__key__"] != key:
                            if current is not None:
                                yield current
                            current = {"__key__": key, "__url__": url}
                        current[field] = tar.extractfile(member).read()
                    offset = tar.offset
            except ShardError:
                raise
            # ValueError: a PAX number, a sparse map
            except (tarfile.TarError, ValueError, EOFError, OverflowError) as exc:
                raise _shard_error(path, f"unreadable tar at or after byte offset {offset} ({exc})") from exc
            _check_end(url, f, offset, file_size)
            why = None if record is None else _mismatch(path, record, size=file_size, sha256=f.hexdigest())
        except StreamError as exc:
            raise _shard_error(path, exc.problem, fix="check the network and the server, then read it again") from exc
        except ShardError as exc:
            if record is None:
                raise
            try:
                why = _mismatch(path, record, size=file_size, sha256=f.hexdigest())  # the rest of the file
            except StreamError:
                raise exc from None
            if why is None:
                raise
            raise _shard_error(path, f"does not match its stats: {why}") from exc
        if why is not None:
            raise _shard_error(path, f"does not match its stats: {why}")
    if current is not None:
        yield current
