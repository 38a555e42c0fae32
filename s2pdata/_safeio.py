"""The one guarded read (a file beneath a root folder, opened without following links out of it)
and the one guarded write (a new file, never opened through a link or over something planted).

Every source reads through here (plain folders, Danbooru trees and their tars, ``hf:`` paths,
metadata files), so one set of rules holds for all of them:

- the path is walked one component at a time from an open descriptor of the root, each folder
  opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent (``dir_fd``), so a folder or
  file swapped for a link between a check and the open is never followed blindly;
- a link met on the way is resolved here, not by the kernel: its target is spliced into the walk,
  ``..`` climbs the folders already opened (never above the root), an absolute target must name a
  place inside the root. Links that stay inside the root are followed (what the folder source has
  always done); any other is ``unsafe-path``. Python has no ``openat2`` (``RESOLVE_BENEATH``),
  which would do the same in the kernel;
- the file itself is opened with ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO never blocks the open), and
  what it is and how big it is are decided on the open descriptor (``fstat``), never on the path:
  a FIFO, device, socket or folder is ``unsafe-member``, a file over the cap ``too-large``;
- at most ``max_bytes + 1`` bytes are read, so a file that grew after the check is refused
  (``too-large``), never read whole.

Refusals raise ``ReadRefused`` (an ``OSError``) carrying the reject reason, which the build counts
and logs in ``rejects.jsonl``; any other I/O failure on the way is ``ReadRefused("read-error")``.
Every file s2pdata writes is either made whole under a fresh temporary name and renamed over its
target (``atomic_write``; ``new_temp_file`` for writers that stream), which replaces a link at the
target instead of writing through it, or opened with ``O_NOFOLLOW`` (``create_new`` for a lock file,
``append_line`` for a log). This module imports no other s2pdata module.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: Reject reasons this module gives (the vocabulary of the sources' listing checks too).
UNSAFE_PATH = "unsafe-path"  # a link leaving the root, a broken or looping link, '..' above the root
UNSAFE_MEMBER = "unsafe-member"  # a FIFO, device, socket or folder where a file was expected
TOO_LARGE = "too-large"  # over the cap, by the inode's size or by what the read returned
READ_ERROR = "read-error"  # missing, unreadable, cut short: any other I/O failure

MAX_LINKS = 40  # links followed in one path, as Linux's own limit (ELOOP)

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 16 << 20

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISLNK, "a link"),
)


class ReadRefused(OSError):
    """A file a source must not read, or could not: ``reason`` is the reject reason.

    Parameters
    ----------
    reason : str
        ``unsafe-path``, ``unsafe-member``, ``too-large`` or ``read-error``.
    path : str
        The path as the source named it (relative to its root where it has one).
    detail : str
        What was found, in words; never file content.
    errno : int or None
        The errno of the failure behind a ``read-error``. Kept so that a caller can still tell
        that the process itself ran out of something (``EMFILE``, ``ENOMEM``), which must stop a
        build rather than reject one file.
    """

    def __init__(self, reason: str, path: str, detail: str, errno: int | None = None):
        super().__init__(f"{path}: {reason}: {detail}")
        self.reason, self.path, self.detail, self.errno = reason, str(path), detail, errno

    def __reduce__(self):  # OSError's own pickling would call __init__ with one argument
        return type(self), (self.reason, self.path, self.detail, self.errno)

    def reject(self) -> dict:
        """The ``{"path", "reason", "detail"}`` record of a source's ``skipped`` list."""
        return {"path": self.path, "reason": self.reason, "detail": self.detail}


def kind(mode: int) -> str:
    """What a non-regular inode is, in words (``"a FIFO"``, ``"a character device"``, ...)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def refusal(st: os.stat_result, max_bytes: int | None) -> tuple[str, str] | None:
    """Why an inode must not be read, as ``(reason, detail)``, or None: the one rule on what a file is.

    Parameters
    ----------
    st : os.stat_result
        From ``fstat`` of an open descriptor (the read), or ``stat`` (a listing's early check).
    max_bytes : int or None
        The cap on the file's size (None: no cap).
    """
    if not stat.S_ISREG(st.st_mode):
        return UNSAFE_MEMBER, kind(st.st_mode)
    if max_bytes is not None and st.st_size > max_bytes:
        return TOO_LARGE, f"{st.st_size} bytes > {max_bytes}"
    return None


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _inside(path: str, roots: tuple[str, ...]) -> list[str] | None:
    """The components of absolute ``path`` below whichever of ``roots`` holds it, or None."""
    norm = os.path.normpath(path)
    for root in roots:
        if norm == root:
            return []
        if norm.startswith(root.rstrip("/") + "/"):
            return _parts(norm[len(root.rstrip("/")) + 1 :])
    return None


def _close(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _follow(name: str, stack: list[int], todo: deque, roots: tuple[str, ...], rel: str) -> None:
    """Splice the target of link ``name`` (in the folder ``stack[-1]``) into the walk ``todo``."""
    try:
        target = os.readlink(name, dir_fd=stack[-1])
    except OSError:
        raise ReadRefused(UNSAFE_PATH, rel, f"{name!r} is not a folder") from None
    if os.path.isabs(target):
        below = _inside(target, roots)
        if below is None:
            raise ReadRefused(UNSAFE_PATH, rel, f"a link to {target}, outside {roots[-1]}")
        _close(stack[1:])  # an absolute target inside: walk again from the root
        del stack[1:]
        todo.extendleft(reversed(below))
    else:
        todo.extendleft(reversed(_parts(target)))  # relative to the folder holding the link
    if not todo:
        raise ReadRefused(UNSAFE_MEMBER, rel, "a link to the source folder itself")


def open_beneath(root, relpath, *, max_bytes: int | None = None) -> int:
    """Open the regular file ``relpath`` beneath ``root`` for reading; returns the descriptor.

    Parameters
    ----------
    root : path
        The folder nothing may be read outside of (a source's ``--src``, a dataset folder).
    relpath : path
        Relative to ``root`` (``..`` may not climb above it), or absolute and inside ``root``.
    max_bytes : int or None
        Refuse a file whose size, seen on the open descriptor, is larger (None: no cap).

    Returns
    -------
    int
        A descriptor of a regular file of at most ``max_bytes`` bytes (the caller closes it),
        opened ``O_NONBLOCK``, which changes nothing for a regular file.

    Raises
    ------
    ReadRefused
        ``unsafe-path``, ``unsafe-member``, ``too-large`` or ``read-error`` (see the module notes).
    """
    rel = os.fspath(relpath)
    given = os.path.abspath(os.fspath(root))
    real = os.path.realpath(given)
    roots = (real, given) if given != real else (real,)
    if os.path.isabs(rel):
        todo = _inside(rel, roots)
        if todo is None:
            raise ReadRefused(UNSAFE_PATH, rel, f"outside {given}")
    else:
        todo = _parts(rel)
    todo = deque(todo)
    if not todo:
        raise ReadRefused(UNSAFE_MEMBER, rel, "the folder itself, not a file in it")
    try:
        stack = [os.open(real, _DIR)]  # the folders walked so far, the root first
    except OSError as exc:
        raise ReadRefused(READ_ERROR, rel, f"cannot open the folder {given}: {exc.strerror}", exc.errno) from None
    links = 0
    try:
        while todo:
            name = todo.popleft()
            if name == "..":  # the folder opened before, not the filesystem's '..' (which may have moved)
                if len(stack) == 1:
                    raise ReadRefused(UNSAFE_PATH, rel, f"'..' climbs out of {given}")
                os.close(stack.pop())
                continue
            last = not todo
            try:
                if last:
                    # an early look: a device is never opened at all (opening some has effects);
                    # the decision is still made on the descriptor below
                    early = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                    if not stat.S_ISLNK(early.st_mode) and not stat.S_ISREG(early.st_mode):
                        raise ReadRefused(UNSAFE_MEMBER, rel, kind(early.st_mode))
                    fd = os.open(name, _FILE, dir_fd=stack[-1])
                else:
                    fd = os.open(name, _DIR, dir_fd=stack[-1])
            except ReadRefused:
                raise
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise ReadRefused(READ_ERROR, rel, exc.strerror or str(exc), exc.errno) from None
                fd = None  # a link (O_NOFOLLOW refused it), or a file where a folder was expected
            if fd is None:
                links += 1
                if links > MAX_LINKS:
                    raise ReadRefused(UNSAFE_PATH, rel, f"more than {MAX_LINKS} links (a loop?)")
                _follow(name, stack, todo, roots, rel)
                continue
            if last:
                try:
                    why = refusal(os.fstat(fd), max_bytes)
                except OSError as exc:
                    os.close(fd)
                    raise ReadRefused(READ_ERROR, rel, exc.strerror or str(exc), exc.errno) from None
                if why is not None:
                    os.close(fd)
                    raise ReadRefused(why[0], rel, why[1])
                return fd
            stack.append(fd)
    finally:
        _close(stack)
    raise AssertionError("unreachable: the walk ends by returning or raising")


def read_beneath(root, relpath, *, max_bytes: int, offset: int = 0, length: int | None = None) -> bytes:
    """The bytes of the regular file ``relpath`` beneath ``root``, through ``open_beneath``.

    Parameters
    ----------
    root, relpath : path
        As for ``open_beneath``.
    max_bytes : int
        Cap on what is read. Without ``length``, the whole file must be at most this big: the
        size on the descriptor is checked first, then at most ``max_bytes + 1`` bytes are read, so
        a file that grows meanwhile is refused rather than read whole.
    offset, length : int
        Read exactly ``length`` bytes at ``offset`` (a tar member) instead of the whole file;
        ``length`` may not exceed ``max_bytes`` and the file must hold them all.

    Returns
    -------
    bytes

    Raises
    ------
    ReadRefused
        As ``open_beneath``; ``too-large`` when the file (or ``length``) is over ``max_bytes``,
        ``read-error`` when a member is cut short or the read fails.
    """
    rel = os.fspath(relpath)
    if length is not None and not 0 <= length <= max_bytes:
        raise ReadRefused(TOO_LARGE, rel, f"a member of {length} bytes > {max_bytes}")
    fd = open_beneath(root, rel, max_bytes=None if length is not None else max_bytes)
    try:
        if length is not None:
            size = os.fstat(fd).st_size
            if offset < 0 or offset + length > size:
                raise ReadRefused(READ_ERROR, rel, f"{length} bytes at offset {offset} run past its end ({size} bytes)")
            data = _read(fd, length, offset, length)
            if len(data) != length:
                raise ReadRefused(READ_ERROR, rel, f"cut short at offset {offset}: {len(data)} of {length} bytes")
            return data
        data = _read(fd, max_bytes + 1, 0, os.fstat(fd).st_size + 1)
        if len(data) > max_bytes:
            raise ReadRefused(TOO_LARGE, rel, f"more than {max_bytes} bytes (it grew after it was checked)")
        return data
    except OSError as exc:
        if isinstance(exc, ReadRefused):
            raise
        raise ReadRefused(READ_ERROR, rel, exc.strerror or str(exc), exc.errno) from None
    finally:
        os.close(fd)


def _read(fd: int, n: int, offset: int, expect: int) -> bytes:
    """Up to ``n`` bytes at ``offset`` (fewer only at the end of the file): first the ``expect``
    bytes the inode announced (one buffer of the right size), then bounded chunks."""
    chunks, got = [], 0
    while got < n:
        want = min(n - got, max(expect, 1 << 16) if not chunks else _CHUNK)
        chunk = os.pread(fd, want, offset + got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def open_file_beneath(root, relpath, *, max_bytes: int | None = None):
    """``open_beneath`` as a buffered binary file object (for streaming: metadata, tar listings)."""
    return os.fdopen(open_beneath(root, relpath, max_bytes=max_bytes), "rb", buffering=1 << 20)


# ---------------------------------------------------------------------------------------------
# the guarded write

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def create_new(path, *, exclusive: bool = True) -> BinaryIO:
    """Open ``path`` for writing as a file this call creates: ``O_CREAT | O_EXCL | O_NOFOLLOW``, so a
    file, link or FIFO planted at that name is never opened, let alone written through.

    Parameters
    ----------
    path : str or Path
        The file to create.
    exclusive : bool
        False opens an existing regular file too (read-write, not truncated; for a lock file that
        every run reuses), still without following a link, and refuses anything but a regular file.

    Returns
    -------
    A binary file object, positioned at 0.

    Raises
    ------
    FileExistsError
        ``exclusive`` and something (a file, a link) is already at ``path``.
    OSError
        ``path`` is a link (``ELOOP``), or (not ``exclusive``) not a regular file.
    """
    if exclusive:
        return os.fdopen(os.open(path, _NEW_FILE, 0o666), "wb")
    fd = os.open(path, (_NEW_FILE & ~os.O_EXCL & ~os.O_WRONLY) | os.O_RDWR, 0o666)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{path} is not a regular file; remove it", str(path))
    return os.fdopen(fd, "r+b")


def _tmp_path(path: Path) -> Path:
    """A fresh name beside ``path`` to write it under before its rename: ``NAME.PID.RANDOM.tmp``."""
    return path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def new_temp_file(path) -> tuple[Path, BinaryIO]:
    """A new temporary file to write ``path`` under before ``os.replace(tmp, path)``, and its name
    (``NAME.PID.RANDOM.tmp`` beside ``path``, created by ``create_new``): a file or link planted at a
    guessed name is never written through. ``remove_partials`` deletes the ones a killed process left."""
    path = Path(path)
    for _ in range(100):
        tmp = _tmp_path(path)
        try:
            return tmp, create_new(tmp)
        except FileExistsError:  # a name planted in advance (or a 1-in-4-billion clash): draw another
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path} in 100 tries", str(path))


def _fsync_dir(path: Path) -> None:
    """Make a rename inside the folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` (bytes, or a function that writes into the open file) to ``path`` through a fresh
    ``.tmp`` file (``new_temp_file``), fsync, rename, fsync the folder. The rename replaces whatever is
    at ``path``, a link included, and never writes its target; a failed write removes its ``.tmp``."""
    path = Path(path)
    tmp, f = new_temp_file(path)
    try:
        with f:
            data(f) if callable(data) else f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def append_line(path, line: str) -> None:
    """Append ``line`` and a newline to the log file ``path``, creating it; a link or anything but a
    regular file at ``path`` is an ``OSError``, never written through."""
    # O_NONBLOCK: a FIFO planted at the name fails at once (ENXIO) instead of blocking until a reader comes
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    with os.fdopen(fd, "a") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file; remove it", str(path))
        f.write(line + "\n")
