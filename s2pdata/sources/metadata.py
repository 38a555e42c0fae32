"""Danbooru metadata: posts JSON Lines (plain, .gz, inside .tar.gz) or parquet -> one record per id.

Consumes metadata files of either dialect and the ids a source listed; produces a ``MetaTable``
(columnar, only the matched ids and only the needed columns) and caches it in the build folder.

Dialects (docs/method.md, Sources): older dumps give ``tags`` as ``[{id, name, category}]`` with
numbers as strings and ratings s/q/e where ``s`` meant *safe* (-> ``general``); 2021+ dumps give
``tag_string_{general,artist,character,copyright,meta}`` and ratings g/s/q/e (``s`` =
``sensitive``). Both become ``normalize_post``'s record.

Memory stays bounded by the number of listed ids: JSON lines are streamed one at a time (a line
whose leading ``"id"`` is not wanted is skipped without parsing), parquet is read in column-
projected batches and only matching rows become Python objects. A line longer than
``MAX_LINE_BYTES`` (no post is near it; a gzip bomb of zero bytes is one such "line") is read on in
chunks, thrown away and counted, so no line is ever held whole.

Every file is opened through the one guarded read (``s2pdata._safeio``) beneath its root (the
source folder, or the folder or file named by ``--metadata``), and what it may expand to is capped
by ``MAX_METADATA_BYTES``, by real and by declared size: a plain file larger than that, a tar
member (a sparse one above all) declaring more, or a gzip stream inflating past it is refused, not
read for days. A file refused, or damaged part-way (a bad gzip stream, a malformed tar header), is
reported in ``refused`` (``{"path", "reason", "detail"}``, for the rejects log) and the records
read before the damage are kept.

Every field a record is built from is type-checked (``BadRecord``), and such a record is a counted
bad line, never a crash and never a guess: text fields take strings (or null), numbers take ints,
decimal-integer strings (the older dumps) or integral floats (``1000.0``, as writers that keep
numbers as floats give them; exact up to 2**53), all within int64. ``"id": 1000.9``, ``"1e3"``,
``true`` or a list is a bad line, so it cannot overwrite post 1000's real record. The same holds
for a parquet ``id`` column of any type (strings, floats, lists, structs).

A metadata file may also be a URL (``s3://...``, ``hf://datasets/OWNER/NAME/posts.jsonl``), given
with ``storage_options``: it is streamed through fsspec (``remote.open_object``) under the same caps,
found in a folder URL from its listing (``find_metadata``, ``probe_metadata``), fingerprinted for the
cache by its size and ETag (one metadata request each), and named in ``refused`` and the counts by its
URL with credentials redacted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np

from .. import storage
from .._safeio import TOO_LARGE, UNSAFE_PATH, ReadRefused, atomic_write, open_file_beneath
from .filters import RATINGS, normalize_tag
from .remote import RemoteObject, is_url, key_problem, list_folder, object_fingerprint, open_object

#: Danbooru tag categories (numbers as in the API and the older dumps).
CATEGORIES = {0: "general", 1: "artist", 3: "copyright", 4: "character", 5: "meta"}

_OLD_RATING = {"s": "general", "q": "questionable", "e": "explicit"}
_NEW_RATING = {"g": "general", "s": "sensitive", "q": "questionable", "e": "explicit"}
_FULL_RATING = {
    "general": "general",
    "safe": "general",
    "sensitive": "sensitive",
    "questionable": "questionable",
    "explicit": "explicit",
}

#: Parquet / JSON columns a record is built from (anything else is never read).
COLUMNS = (
    "id",
    "md5",
    "rating",
    "tags",
    "tag_string",
    "tag_string_general",
    "tag_string_artist",
    "tag_string_character",
    "tag_string_copyright",
    "tag_string_meta",
    "image_width",
    "image_height",
    "file_ext",
    "score",
    "is_deleted",
    "is_banned",
)

_LEADING_ID = re.compile(rb'^\s*\{\s*"id"\s*:\s*"?(\d+)"?\s*[,}]')
CACHE_VERSION = 3  # 2: ids and fields type-checked, over-long lines counted; 3: ``refused`` files

#: Longest JSON line read, in bytes before its newline; a longer one is skipped and counted.
MAX_LINE_BYTES = 1 << 20
_DISCARD_CHUNK = 1 << 20
_BUFFER = 1 << 20

#: Most bytes one metadata file, tar member or gzip stream may expand to (and a plain file hold).
#: Danbooru's full posts dump is about 10 GB as JSON Lines; a bomb (a sparse tar member declaring
#: 10**15 bytes, a sparse file) is refused by its declared size, or stopped here once it got there.
MAX_METADATA_BYTES = 64 << 30
MAX_EXPANSION = 200  # JSON metadata gzips 5-10x; the NUL runs of a sparse member or a bomb, thousands of times


def _expansion_cap(raw) -> int:
    """What the metadata file open as ``raw`` may expand to: ``MAX_METADATA_BYTES``, and at most
    ``MAX_EXPANSION`` times its real size (never under 4 GiB, a second or two of reading), so a few hundred
    bytes cannot cost minutes."""
    size = raw.size if isinstance(raw, RemoteObject) else os.fstat(raw.fileno()).st_size
    return min(MAX_METADATA_BYTES, max(4 << 30, MAX_EXPANSION * size))


#: What a damaged metadata file raises part-way (gzip, zlib, tarfile, a truncated stream).
_DAMAGE = (OSError, EOFError, zlib.error, tarfile.TarError, UnicodeDecodeError)


class _TooMuch(Exception):
    """A metadata stream expanded past ``MAX_METADATA_BYTES``."""


class _Capped(io.RawIOBase):
    """A read-only stream that raises ``_TooMuch`` once more than ``cap`` bytes came out of ``inner``."""

    def __init__(self, inner, cap: int, what: str):
        self.inner, self.cap, self.what, self.seen = inner, cap, what, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        room = self.cap - self.seen
        if room <= 0:  # the cap is reached: one byte more means the stream goes on past it
            if self.inner.read(1):
                raise _TooMuch(
                    f"{self.what} expands past {self.cap} bytes (at most {MAX_EXPANSION}x the file's size, "
                    f"never over MAX_METADATA_BYTES); the rest is unread"
                )
            return 0
        data = self.inner.read(min(len(buf), room))
        self.seen += len(data)
        buf[: len(data)] = data
        return len(data)


def _capped(inner, what: str, cap: int) -> io.BufferedReader:
    return io.BufferedReader(_Capped(inner, cap, what), _BUFFER)


class BadRecord(ValueError):
    """A post whose field has the wrong type or an impossible value: counted as a bad line."""


def _bad(key: str, v) -> BadRecord:
    return BadRecord(f"field {key!r}: {type(v).__name__} {str(v)[:40]!r}")


_DECIMAL = re.compile(r"\s*[-+]?[0-9]+\s*")
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _int(raw: dict, key: str, default: int | None = 0) -> int | None:
    """Field ``key`` as an int64: an int, an integral float or a decimal string; null, missing, NaN
    or "" -> ``default``; anything else (bool, 1000.9, "1e3", a list) raises ``BadRecord``."""
    v = raw.get(key)
    if type(v) is int:  # not a bool
        n = v
    elif v is None or v == "" or v != v:  # null, "" and NaN (a float column's missing value)
        return default
    elif isinstance(v, float) and v.is_integer() and abs(v) <= 2.0**53:
        n = int(v)
    elif isinstance(v, str) and _DECIMAL.fullmatch(v):
        n = int(v)
    else:
        raise _bad(key, v)
    if not _INT64[0] <= n <= _INT64[1]:
        raise _bad(key, v)
    return n


def _str(raw: dict, key: str) -> str:
    """Field ``key`` as a string ("" when null or missing); any other type raises ``BadRecord``."""
    v = raw.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _bad(key, v)
    return v


def _flag(raw: dict, key: str) -> bool:
    """Field ``key`` as a bool: a bool, an int, or a string such as "true"/"t"/"1"/"yes"."""
    v = raw.get(key)
    if v is None:
        return False
    if isinstance(v, str):
        return v.strip().lower() in ("true", "t", "1", "yes")
    if isinstance(v, int):
        return bool(v)
    raise _bad(key, v)


def post_id(raw: dict) -> int:
    """A raw post's id as an int; a missing, null or non-integral id raises ``BadRecord``."""
    pid = _int(raw, "id", None)
    if pid is None:
        raise _bad("id", raw.get("id"))
    return pid


def _tags(raw: dict) -> tuple[dict[str, list[str]], bool]:
    """The tags of either dialect by category, and whether the record is of the older dialect."""
    tags: dict[str, list[str]] = {c: [] for c in CATEGORIES.values()}
    if isinstance(raw.get("tags"), list):
        for t in raw["tags"]:
            if not isinstance(t, dict):
                raise _bad("tags", t)
            name = _str(t, "name")
            if name:
                tags[CATEGORIES.get(_int(t, "category"), "general")].append(normalize_tag(name))
        return tags, True
    split = False
    for cat in CATEGORIES.values():
        s = _str(raw, f"tag_string_{cat}")
        if s:
            tags[cat] = s.split()
            split = True
    whole = _str(raw, "tag_string")
    if not split and whole:
        tags["general"] = whole.split()
    return tags, False


def normalize_post(raw: dict) -> dict:
    """One raw post of either dialect -> the canonical record.

    Returns
    -------
    dict
        ``id`` int, ``md5`` str (lower case, may be ""), ``rating`` one of ``RATINGS`` or None,
        ``tags`` {category: [tag, ...]} for general/artist/character/copyright/meta,
        ``width``/``height``/``score`` int, ``ext`` str (lower, no dot), ``is_deleted``,
        ``is_banned`` bool.

    Raises
    ------
    BadRecord
        A field of the wrong type or value (module docstring): the caller counts a bad line.
    """
    tags, old = _tags(raw)
    r = _str(raw, "rating").strip().lower()
    rating = _FULL_RATING.get(r) or (_OLD_RATING if old else _NEW_RATING).get(r)
    return {
        "id": post_id(raw),
        "md5": _str(raw, "md5").lower(),
        "rating": rating,
        "tags": tags,
        "width": _int(raw, "image_width"),
        "height": _int(raw, "image_height"),
        "ext": _str(raw, "file_ext").lower().lstrip("."),
        "score": _int(raw, "score"),
        "is_deleted": _flag(raw, "is_deleted"),
        "is_banned": _flag(raw, "is_banned"),
    }


# ---------------------------------------------------------------------------------------------
# finding and streaming metadata files

_JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_NOT_POSTS = re.compile(
    r"(^|[-_/])(tags?|pools?|artists?|wiki|notes?|comments?|dataset_info|state)"
    r"[-_.\d]",
    re.I,
)


def _name(path) -> str:
    """The file name of a path or URL."""
    return storage.name_of(path) if is_url(path) else Path(path).name


def _shown(path) -> str:
    """A path as messages and the rejects log show it: a URL without its credentials."""
    return storage.redact(path) if is_url(path) else str(path)


def _kind(path) -> str | None:
    name = _name(path).lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(_JSON_SUFFIXES):
        return "jsonl"
    if name.endswith((".tar.gz", ".tgz")):
        return "tar"
    return None


def _in_listing(files: dict, folder: str, depth: int) -> list[str]:
    """Keys of ``files`` exactly ``depth`` levels under ``folder`` (``""``: the top), no part hidden
    (what ``glob("*")`` / ``glob("*/*")`` match), sorted as ``Path`` sorts."""
    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    out = []
    for rel in files:
        if not rel.startswith(prefix) or key_problem(rel) is not None:
            continue
        parts = rel[len(prefix) :].split("/")
        if len(parts) == depth and not any(q.startswith(".") for q in parts):
            out.append(rel)
    return sorted(out, key=lambda r: r.split("/"))


def _find_in_listing(root: str, files: dict, folder: str) -> list[str]:
    found = []
    for depth in (1, 2):
        for rel in _in_listing(files, folder, depth):
            if _kind(rel) and not _NOT_POSTS.search(_name(rel)):
                found.append(root.rstrip("/") + "/" + rel)
    return found


def find_metadata(path: str | Path, *, storage_options: dict | None = None, cache_dir=None) -> list:
    """A metadata file, or a folder searched (2 levels) for posts files -> sorted paths.

    Files whose names say tags/pools/artists/wiki are left out; ``.tar`` image archives are not
    metadata (only ``.tar.gz`` / ``.tgz`` are opened as metadata archives). A URL is listed once
    (``remote.list_folder``, cached in ``cache_dir``), or looked up when it names one object; the
    paths found are then URLs.
    """
    if is_url(path):
        return _find_remote(str(path), storage_options, cache_dir)
    p = Path(path)
    if p.is_file():
        if _kind(p) is None:
            raise ValueError(f"--metadata {str(path)!r}: not JSON Lines (.json/.jsonl[.gz]), .tar.gz or .parquet")
        return [p]
    if not p.is_dir():
        raise ValueError(f"--metadata {str(path)!r} does not exist")
    found = []
    for depth in ("*", "*/*"):
        for f in sorted(p.glob(depth)):
            if f.is_file() and not f.is_symlink() and _kind(f) and not _NOT_POSTS.search(f.name):
                found.append(f)
    return found


def _find_remote(url: str, storage_options, cache_dir) -> list[str]:
    url = url.rstrip("/")
    files = list_folder(url, storage_options, cache_dir).files
    if files:
        return _find_in_listing(url, files, "")
    if storage.isfile(url, storage_options):
        if _kind(url) is None:
            raise ValueError(
                f"--metadata {storage.redact(url)!r}: not JSON Lines (.json/.jsonl[.gz]), .tar.gz or .parquet"
            )
        return [url]
    raise ValueError(
        f"--metadata {storage.redact(url)!r} does not exist (no object, no folder); check the URL and --storage-options"
    )


def probe_metadata(root, *, files: dict | None = None) -> list:
    """Metadata next to a Danbooru tree: ``metadata/``, ``posts*`` or ``*.parquet`` at the root.

    A URL ``root`` is searched in its listing ``files`` (``{key: size}``), and URLs are returned.
    """
    if is_url(root):
        root = str(root).rstrip("/")
        found = _find_in_listing(root, files, "metadata")
        if found:
            return found
        top = sorted((rel for rel in files if "/" not in rel), key=lambda r: r.split("/"))
        return [
            f"{root}/{rel}"
            for rel in top
            if _kind(rel) and (rel.lower().startswith("posts") or _kind(rel) == "parquet") and not key_problem(rel)
        ]
    root = Path(root)
    if (root / "metadata").is_dir():
        found = find_metadata(root / "metadata")
        if found:
            return found
    found = [
        f
        for f in sorted(root.iterdir())
        if f.is_file() and _kind(f) and (f.name.lower().startswith("posts") or _kind(f) == "parquet")
    ]
    return found


def _read_lines(fileobj, limit: int = MAX_LINE_BYTES):
    """Lines of a binary file (each at most ``limit`` bytes before its newline); a longer line is
    read on in chunks and thrown away, and yields None in its place."""
    while True:
        line = fileobj.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            while True:
                rest = fileobj.readline(_DISCARD_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield None
            continue
        yield line


def _iter_lines(fileobj, wanted):
    """Raw JSON lines -> parsed dicts; lines whose leading id is not wanted are skipped unparsed
    (yields 1), an unparsable line yields ``"bad"``, an over-long one ``"long"``."""
    for line in _read_lines(fileobj):
        if line is None:
            yield "long"
            continue
        if wanted is not None:
            m = _LEADING_ID.match(line)
            if m is not None and int(m.group(1)) not in wanted:
                yield 1
                continue
        line = line.strip()
        if not line:
            continue
        try:
            raw = json.loads(line)
        except (ValueError, RecursionError):
            yield "bad"
            continue
        yield raw if isinstance(raw, dict) else "bad"


def _open(path: Path, root, cap: int | None = None, storage_options: dict | None = None):
    """``path`` opened through the guarded read beneath ``root`` (default: the folder it really
    lies in, so that a file named on the command line through a link is still read); a URL
    through fsspec (``remote.open_object``), refused over ``cap``."""
    if is_url(path):
        return open_object(path, storage_options, max_bytes=cap)
    if root is None:
        real = os.path.realpath(path)
        return open_file_beneath(os.path.dirname(real), os.path.basename(real), max_bytes=cap)
    return open_file_beneath(root, os.path.abspath(path), max_bytes=cap)


def _iter_json(path: Path, wanted, root, storage_options=None):
    name = _name(path)
    with _open(path, root, MAX_METADATA_BYTES, storage_options) as raw:
        if name.lower().endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                yield from _iter_lines(_capped(f, f"{name} (gzip)", _expansion_cap(raw)), wanted)
        else:  # the default 8 KiB buffer: 17x slower over long lines
            yield from _iter_lines(_capped(raw, name, MAX_METADATA_BYTES), wanted)


def _iter_tar(path: Path, wanted, root, refused: list, storage_options=None):
    name = _name(path)
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(_open(path, root, None, storage_options))
        cap = _expansion_cap(raw)
        gz = raw.peek(2)[:2] == b"\x1f\x8b"
        if gz:  # tarfile's own stream decompression copies its whole buffer on each read: 10x slower
            inner = _capped(stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb")), f"{name} (gzip)", cap)
            tf = stack.enter_context(tarfile.open(fileobj=inner, mode="r|"))
        else:
            tf = stack.enter_context(tarfile.open(fileobj=raw, mode="r|*"))  # streamed: never extracted, never seeks
        for m in tf:
            lower = m.name.lower()
            if not m.isfile() or not lower.endswith(_JSON_SUFFIXES) or _NOT_POSTS.search(lower):
                continue
            if m.size > cap:  # declared: a sparse member of 10**15 bytes spins for days
                sparse = " (sparse)" if m.issparse() else ""
                refused.append(
                    {
                        "path": f"{_shown(path)}:{m.name}",
                        "reason": TOO_LARGE,
                        "detail": f"member declares {m.size} bytes{sparse} > {cap} (at most {MAX_EXPANSION}x "
                        "the file's size); skipped unread",
                    }
                )
                continue
            f = tf.extractfile(m)
            if lower.endswith(".gz"):
                f = gzip.GzipFile(fileobj=f)
            yield from _iter_lines(_capped(f, f"{name}:{m.name}", cap), wanted)


def _parquet_mask(column, wanted_arr):
    """Which rows of an ``id`` column to keep: wanted ids, and every id that is no id at all (a
    string such as "abc", a float with a fraction, NaN, null, a list, a struct), which the join
    then counts as a bad line. Integer columns take Arrow's fast path."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(column.type):
        return pc.fill_null(pc.is_in(column, value_set=wanted_arr), True)  # a null id: a bad line
    wanted = set(wanted_arr.to_pylist())
    keep = []
    for v in column.to_pylist():
        try:
            keep.append(post_id({"id": v}) in wanted)
        except BadRecord:
            keep.append(True)
    return pa.array(keep, pa.bool_())


def _iter_parquet(path: Path, wanted, root, batch_size: int = 65536, storage_options=None):
    import pyarrow.parquet as pq

    with _open(path, root, None, storage_options) as raw:
        pf = pq.ParquetFile(raw)
        cols = [c for c in COLUMNS if c in pf.schema_arrow.names]
        if "id" not in cols:
            names = pf.schema_arrow.names[:20]
            raise ValueError(f"metadata parquet {_shown(path)} has no 'id' column (columns: {names})")
        wanted_arr = None
        if wanted is not None:
            import pyarrow as pa

            wanted_arr = pa.array(sorted(wanted), pa.int64())
        for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
            if wanted_arr is not None:
                mask = _parquet_mask(batch.column("id"), wanted_arr)
                batch = batch.filter(mask)
                yield len(mask) - len(batch)
            yield from batch.to_pylist()


def _refusal(path: Path, exc: BaseException, root) -> dict:
    """The ``refused`` entry of a metadata file that could not be read (whole or to its end)."""
    if isinstance(exc, ReadRefused):
        detail = exc.detail
        if exc.reason == UNSAFE_PATH:
            detail += "; name the file with --metadata PATH to read it where it lies"
        return {"path": _shown(path), "reason": exc.reason, "detail": detail}
    if isinstance(exc, _TooMuch):
        return {"path": _shown(path), "reason": TOO_LARGE, "detail": str(exc)}
    return {
        "path": _shown(path),
        "reason": "bad-archive",
        "detail": f"{type(exc).__name__}: {storage.redact(exc)} (records before the damage are kept)",
    }


def iter_posts(paths, wanted=None, *, root=None, refused: list | None = None, storage_options: dict | None = None):
    """Stream raw posts from metadata files: a dict per post, an int counting records skipped
    unparsed (unwanted ids), ``"bad"`` for an unparsable line, ``"long"`` for one over
    ``MAX_LINE_BYTES`` (skipped unread).

    Each file is read beneath ``root`` (default: the file's own folder); a URL through fsspec with
    ``storage_options``. A file refused or damaged part-way adds an entry to ``refused`` (when
    given; else the error is raised) and the next file is read.
    """
    so = storage_options
    for p in paths:
        p = str(p) if is_url(p) else Path(p)
        kind = _kind(p)
        try:
            if kind == "parquet":
                yield from _iter_parquet(p, wanted, root, storage_options=so)
            elif kind == "tar":
                yield from _iter_tar(p, wanted, root, refused if refused is not None else [], so)
            else:
                yield from _iter_json(p, wanted, root, so)
        except (_TooMuch, *_DAMAGE) as exc:
            if refused is None:
                raise
            refused.append(_refusal(p, exc, root))


# ---------------------------------------------------------------------------------------------
# the joined table and its cache


@dataclasses.dataclass(frozen=True)
class MetaTable:
    """Normalised metadata of the matched ids, columnar and sorted by id.

    ``artist`` holds space-joined artist tags; ``tags`` space-joined tracked tags (only those a
    filter looks at); ``rating`` codes index ``RATINGS`` (-1 unknown).
    """

    id: np.ndarray
    md5: np.ndarray
    rating: np.ndarray
    width: np.ndarray
    height: np.ndarray
    score: np.ndarray
    ext: np.ndarray
    is_deleted: np.ndarray
    is_banned: np.ndarray
    artist: np.ndarray
    tags: np.ndarray

    def __len__(self) -> int:
        return len(self.id)

    def row(self, post_id: int) -> int:
        """Row of ``post_id``, or -1."""
        i = int(np.searchsorted(self.id, post_id))
        return i if i < len(self.id) and int(self.id[i]) == post_id else -1

    def facts(self, i: int) -> dict:
        """Row ``i`` as the dict ``filters.apply_filters`` reads."""
        artist = str(self.artist[i])
        code = int(self.rating[i])
        return {
            "id": int(self.id[i]),
            "md5": str(self.md5[i]),
            "rating": RATINGS[code] if code >= 0 else None,
            "width": int(self.width[i]),
            "height": int(self.height[i]),
            "score": int(self.score[i]),
            "ext": str(self.ext[i]),
            "is_deleted": bool(self.is_deleted[i]),
            "is_banned": bool(self.is_banned[i]),
            "artist": artist.split() if artist else [],
            "tags": frozenset(str(self.tags[i]).split()),
        }


_STR_COLS = ("md5", "ext", "artist", "tags")


def _table_from_rows(rows: dict) -> MetaTable:
    order = np.argsort(np.asarray(rows["id"], np.int64), kind="stable")
    cols = {}
    for f in dataclasses.fields(MetaTable):
        v = rows[f.name]
        if f.name in _STR_COLS:
            a = np.array(v, dtype=object) if v else np.zeros(0, object)
        else:
            dtype = {"id": np.int64, "rating": np.int8, "is_deleted": bool, "is_banned": bool}.get(f.name, np.int64)
            a = np.asarray(v, dtype=dtype)
        cols[f.name] = a[order] if len(a) else a
    return MetaTable(**cols)


def _pack(strings) -> tuple[np.ndarray, np.ndarray]:
    """Object array of str -> (utf-8 bytes as uint8, end offsets): no fixed-width padding."""
    encoded = [str(s).encode() for s in strings]
    ends = np.cumsum([len(b) for b in encoded], dtype=np.int64) if encoded else np.zeros(0, np.int64)
    return np.frombuffer(b"".join(encoded), np.uint8).copy(), ends


def _unpack(blob: np.ndarray, ends: np.ndarray) -> np.ndarray:
    data = blob.tobytes()
    out = np.empty(len(ends), object)
    start = 0
    for i, end in enumerate(ends.tolist()):
        out[i] = data[start:end].decode()
        start = end
    return out


def files_fingerprint(paths, storage_options: dict | None = None) -> list:
    """(path, size, mtime_ns) of each metadata file: changes invalidate the cache. A file that
    cannot be looked at (a broken link) gives -1s: the read reports it. A URL gives (redacted URL,
    size, ETag or modification time): one metadata request."""
    out = []
    for p in paths:
        if is_url(p):
            out.append(object_fingerprint(str(p), storage_options))
            continue
        try:
            st = os.stat(p)
            out.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([str(p), -1, -1])
    return out


def _cache_path(paths, wanted: set, tracked, cache_dir, storage_options=None) -> Path | None:
    """Cache file for this join: keyed by the files' size/mtime, the ids and ``tracked``."""
    if cache_dir is None:
        return None
    files = files_fingerprint(paths, storage_options)
    key = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "files": files, "tracked": sorted(tracked)}).encode())
    key.update(np.asarray(sorted(wanted), np.int64).tobytes())
    return Path(cache_dir) / f"metadata-{key.hexdigest()[:24]}.npz"


def _read_cache(cache: Path) -> tuple[MetaTable, dict]:
    """A cached table and the counts stored with it."""
    with np.load(cache, allow_pickle=False) as z:
        info = json.loads(str(z["info"]))
        cols = {
            f.name: (_unpack(z[f.name], z[f.name + "_offsets"]) if f.name in _STR_COLS else z[f.name])
            for f in dataclasses.fields(MetaTable)
        }
    return MetaTable(**cols), info


def _write_cache(cache: Path, table: MetaTable, info: dict) -> None:
    """Write the table and its counts atomically (a temporary file, then a rename)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for f in dataclasses.fields(MetaTable):
        if f.name in _STR_COLS:
            arrays[f.name], arrays[f.name + "_offsets"] = _pack(getattr(table, f.name))
        else:
            arrays[f.name] = getattr(table, f.name)
    buf = io.BytesIO()
    np.savez(buf, info=np.array(json.dumps(info)), **arrays)
    atomic_write(cache, buf.getvalue())


_RATING_CODE = {r: i for i, r in enumerate(RATINGS)}


def _row_values(rec: dict, tracked) -> dict:
    """A normalised post -> its ``MetaTable`` row (ratings coded, tags cut to ``tracked``)."""
    t = rec["tags"]
    return {
        "id": rec["id"],
        "md5": rec["md5"],
        "rating": _RATING_CODE.get(rec["rating"], -1),
        "width": rec["width"],
        "height": rec["height"],
        "score": rec["score"],
        "ext": rec["ext"],
        "is_deleted": rec["is_deleted"],
        "is_banned": rec["is_banned"],
        "artist": " ".join(t["artist"]),
        "tags": " ".join(x for c in t.values() for x in c if x in tracked),
    }


def _join(paths, wanted: set, tracked, root=None, storage_options=None) -> tuple[MetaTable, dict]:
    """Read every record of ``paths`` and keep those of ``wanted`` ids (a later record of the
    same post wins) -> the table and the counts ``records``, ``matched``, ``bad_lines`` (of which
    ``long_lines`` were over ``MAX_LINE_BYTES``), ``duplicates``, ``files``, ``refused``."""
    rows = {f.name: [] for f in dataclasses.fields(MetaTable)}
    where: dict[int, int] = {}
    records = bad = long = dups = 0
    refused: list[dict] = []
    for raw in iter_posts(paths, wanted, root=root, refused=refused, storage_options=storage_options):
        if isinstance(raw, int):
            records += raw
            continue
        if isinstance(raw, str):  # "bad" or "long"
            bad += 1
            long += raw == "long"
            continue
        try:  # a malformed id is bad whatever it is; other fields are checked for wanted ids only
            rec = normalize_post(raw) if post_id(raw) in wanted else None
        except BadRecord:
            bad += 1
            continue
        records += 1
        if rec is None:
            continue
        values = _row_values(rec, tracked)
        if rec["id"] in where:  # a later dump's record of the same post wins
            dups += 1
            j = where[rec["id"]]
            for k, v in values.items():
                rows[k][j] = v
            continue
        where[rec["id"]] = len(rows["id"])
        for k, v in values.items():
            rows[k].append(v)
    table = _table_from_rows(rows)
    info = {"records": records, "matched": len(table), "bad_lines": bad, "long_lines": long, "duplicates": dups}
    return table, {**info, "files": [_shown(p) for p in paths], "refused": refused}


def load_metadata(
    paths, wanted, *, tracked=frozenset(), cache_dir: str | Path | None = None, root=None, storage_options=None
):
    """Join metadata files to the listed ids.

    Parameters
    ----------
    paths : list of path
        From ``find_metadata`` / ``probe_metadata``.
    wanted : iterable of int
        Post ids the source listed; other records are skipped.
    tracked : frozenset of str
        Tags the filters need (kept per record; everything else is dropped).
    cache_dir : path or None
        Where the joined table is cached (keyed by the files' size/mtime, the ids and ``tracked``).
    root : path or None
        The folder every file must lie in, links included (the source folder for metadata found
        there); None: each file's own folder.
    storage_options : dict or None
        For URLs among ``paths``: their filesystem's options.

    Returns
    -------
    (MetaTable, dict)
        The table and counts: ``records`` read, ``matched``, ``bad_lines`` (unparsable, of a
        wrong type, or, ``long_lines`` of them, over ``MAX_LINE_BYTES``), ``duplicates``,
        ``refused`` (files or members not read, whole or to their end: ``{"path", "reason",
        "detail"}``), ``cache`` ("hit", "written" or "off").
    """
    wanted = set(int(i) for i in wanted)
    cache = _cache_path(paths, wanted, tracked, cache_dir, storage_options)
    if cache is not None and cache.is_file():
        table, info = _read_cache(cache)
        return table, {**info, "cache": "hit"}
    table, info = _join(paths, wanted, tracked, root, storage_options)
    if cache is None:
        return table, {**info, "cache": "off"}
    _write_cache(cache, table, info)
    return table, {**info, "cache": "written"}
