"""Danbooru trees on disk -> items keyed ``danbooru-{id:010d}`` with provenance, filtered.

Consumes a folder in one of three layouts, found by probing its contents (not its name):

- ``gwern``: ``original/NNNN/ID.ext`` and/or ``512px/NNNN/ID.jpg`` (``NNNN`` = id % 1000),
  chosen by ``variant`` (``auto`` prefers ``original``); the folder given may also be the
  ``original`` or ``512px`` folder itself;
- ``archive``: uncompressed tars of ``{id}.{ext}`` members at the root or one level down
  (``data-0000.tar``, ``images/0000.tar``, ``{start_id}.tar``), indexed once, read by seek;
- ``flat``: any folder tree whose image files are named ``{id}.{ext}``.

plus Danbooru metadata (``metadata.py``) when found or given. Produces sorted ``Item``s whose
meta is ``{"source": "danbooru", "id", "artist", "rating", "md5", "path" | "archive"+"member"}``
(artist tags as one space-separated string, as Danbooru writes them; ``""`` where the metadata
has nothing: one type per key, which Hugging Face's schema inference needs) after the metadata
filters (``filters.py``); ``read`` returns one file's bytes in a worker.

The root may be a folder URL (``s3://bucket/danbooru2023``, ``hf://datasets/OWNER/NAME``; see
``remote``): it is listed once (one request, cached in the build folder), the layout and the
metadata are found in that listing by the same rules, tars are indexed by ranged reads of their
headers and members read by one ranged read each, and ``summary`` says how many requests the
listing and the indexing took. Items, keys, order and bytes are those of the same files on disk.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections import Counter
from pathlib import Path

import numpy as np

from .. import storage
from .._safeio import read_beneath, refusal
from ..shards import CACHE_DIR
from . import remote
from .archive import MAX_BYTES, index_tars, is_image_tar
from .base import Item
from .filters import FilterConfig, apply_filters, check_pixels, format_removed
from .metadata import MAX_LINE_BYTES, find_metadata, load_metadata, probe_metadata

LAYOUTS = ("gwern", "archive", "flat")
VARIANTS = ("auto", "original", "512px")
_BUCKET = re.compile(r"^\d{4}$")
_ID_NAME = re.compile(r"^(\d{1,18})\.([A-Za-z0-9]{1,8})$")
_PROBE = 64


def danbooru_key(post_id: int) -> str:
    """The sample key of a post: ``danbooru-`` and the id in 10 digits."""
    return f"danbooru-{int(post_id):010d}"


def _buckets(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if _BUCKET.match(p.name) and p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def _looks_like_ids(names) -> bool:
    names = list(names)[:_PROBE]
    return bool(names) and 2 * sum(1 for n in names if _ID_NAME.match(n)) >= len(names)


def _is_gwern_variant(folder: Path) -> bool:
    for b in _buckets(folder)[:4]:
        try:
            names = sorted(os.listdir(b))[:_PROBE]
        except OSError:
            continue
        if names and _looks_like_ids(names):
            return True
    return False


def _tars(root: Path) -> list[Path]:
    found = [p for p in sorted(root.glob("*.tar")) + sorted(root.glob("*/*.tar")) if p.is_file() and not p.is_symlink()]
    return found


def _children(files: dict, folder: str) -> tuple[list[str], set[str]]:
    """Names directly inside ``folder`` (``""``: the top) of a listing, as ``listdir`` gives them
    (files and sub-folders, sorted), and which of them are sub-folders."""
    prefix = folder + "/" if folder else ""
    names, dirs = set(), set()
    for rel in files:
        if rel.startswith(prefix):
            head, sep, _ = rel[len(prefix) :].partition("/")
            names.add(head)
            if sep:
                dirs.add(head)
    return sorted(names), dirs


def _listed_is_gwern_variant(files: dict, folder: str) -> bool:
    """``_is_gwern_variant`` on a listing."""
    names, dirs = _children(files, folder)
    prefix = folder + "/" if folder else ""
    for b in [n for n in names if _BUCKET.match(n) and n in dirs][:4]:
        inside = _children(files, prefix + b)[0][:_PROBE]
        if inside and _looks_like_ids(inside):
            return True
    return False


def listed_tars(files: dict) -> list[str]:
    """``_tars`` on a listing: ``*.tar`` and ``*/*.tar`` keys (no hidden part), sorted as paths."""
    found = []
    for depth in (1, 2):
        found += sorted(
            (
                rel
                for rel in files
                if rel.endswith(".tar")
                and rel.count("/") == depth - 1
                and not any(q.startswith(".") for q in rel.split("/"))
                and remote.key_problem(rel) is None
            ),
            key=lambda r: r.split("/"),
        )
    return found


def _probe_listing(root: str, files: dict, variant: str, storage_options, fetches) -> dict | None:
    """``probe_layout`` of a folder URL from its listing ``files``; tars are probed by ranged reads
    until one holds ``ID.ext`` members."""
    found = {v: v for v in ("original", "512px") if _listed_is_gwern_variant(files, v)}
    if not found and _listed_is_gwern_variant(files, ""):
        found = {"original" if storage.name_of(root) != "512px" else "512px": "."}
    if found:
        if variant == "auto":
            variant = "original" if "original" in found else "512px"
        if variant not in found:
            raise ValueError(
                f"--variant {variant}: {storage.redact(root)} has no {variant}/NNNN/ folders "
                f"(found {sorted(found)}); use --variant auto"
            )
        return {"layout": "gwern", "variant": variant, "base": found[variant]}
    tars = listed_tars(files)
    so = storage_options
    if any(is_image_tar(remote.join(root, t), storage_options=so, size=files[t], fetches=fetches) for t in tars):
        return {"layout": "archive", "tars": tars}
    names = []
    folder = None
    for rel in files:  # walk order: stop after the folder in which 64 names were reached, as os.walk does
        here = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if folder is not None and here != folder and len(names) >= _PROBE:
            break
        folder = here
        name = rel.rsplit("/", 1)[-1]
        if not name.startswith("."):
            names.append(name)
    names = [n for n in names if "." in n and n.rsplit(".", 1)[1].lower() in _FLAT_EXTS]
    if _looks_like_ids(names):
        return {"layout": "flat"}
    return None


_FLAT_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "mp4", "webm", "zip", "swf", "avif")


def _archive_entries(tars: list[str], indexes, entries: list, skipped: list) -> None:
    """Add the members of indexed tars (``(members, skips)`` for each of ``tars``) to ``entries`` as
    ``(id, ext, (tar, offset, size), meta, size)``, and to ``skipped`` the tars' own skips and the
    members not named ``ID.ext``."""
    for rel, (members, bad) in zip(tars, indexes):
        skipped += bad
        for m in members:
            match = _ID_NAME.match(m.name.rsplit("/", 1)[-1])
            if match is None:
                skipped.append({"path": f"{rel}:{m.name}", "reason": "not-an-id", "detail": "name is not ID.ext"})
                continue
            meta = {"archive": rel, "member": m.name}
            entries.append((int(match.group(1)), match.group(2).lower(), (rel, m.offset, m.size), meta, m.size))


def probe_layout(
    root: str | Path,
    variant: str = "auto",
    *,
    storage_options: dict | None = None,
    files: dict | None = None,
    fetches: remote.Fetches | None = None,
) -> dict | None:
    """Find the Danbooru layout of ``root`` by looking inside it.

    A folder URL is judged from its listing ``files`` (``remote.list_folder(...).files``; listed
    here when None) by the same rules; its tars are probed by ranged reads (``fetches`` counts them).

    Returns
    -------
    dict or None
        ``{"layout": "gwern", "base": relative folder}``, ``{"layout": "archive", "tars": [...]}``,
        ``{"layout": "flat"}``, or None when ``root`` is not a Danbooru tree.
    """
    if variant not in VARIANTS:
        raise ValueError(f"--variant must be one of {VARIANTS}, got {variant!r}")
    if remote.is_url(root):
        if files is None:
            files = remote.list_folder(str(root), storage_options).files
        return _probe_listing(str(root).rstrip("/"), files, variant, storage_options, fetches)
    root = Path(root)
    found = {v: root / v for v in ("original", "512px") if _is_gwern_variant(root / v)}
    if not found and _is_gwern_variant(root):
        found = {"original" if root.name != "512px" else "512px": root}
    if found:
        if variant == "auto":
            variant = "original" if "original" in found else "512px"
        if variant not in found:
            raise ValueError(
                f"--variant {variant}: {root} has no {variant}/NNNN/ folders "
                f"(found {sorted(found)}); use --variant auto"
            )
        return {"layout": "gwern", "variant": variant, "base": os.path.relpath(found[variant], root)}
    tars = [t for t in _tars(root) if is_image_tar(t)]
    if tars:
        return {"layout": "archive", "tars": [os.path.relpath(t, root) for t in _tars(root)]}
    names = []
    for _dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        names += sorted(f for f in filenames if not f.startswith("."))
        if len(names) >= _PROBE:
            break
    names = [n for n in names if "." in n and n.rsplit(".", 1)[1].lower() in _FLAT_EXTS]
    if _looks_like_ids(names):
        return {"layout": "flat"}
    return None


class DanbooruSource:
    """A Danbooru tree: listing + metadata join + filters (see the module docstring).

    Parameters
    ----------
    root : path or URL
        A folder, or a folder URL (``s3://bucket/prefix``, ``hf://datasets/OWNER/NAME``).
    layout : dict or None
        ``probe_layout``'s answer (probed when None).
    variant : {"auto", "original", "512px"}
    metadata : path, URL, "auto" or "none"
        Posts metadata file or folder; ``auto`` looks for ``metadata/``, ``posts*`` and
        ``*.parquet`` at ``root``.
    filters : FilterConfig
    cache_dir : path or None
        Where the joined metadata, the tar indexes and a URL's listing are cached (the build folder).
    storage_options : dict or None
        Options of the filesystem of URLs (``root``, ``metadata``): endpoint, credentials...
    listing : remote.Listing or None
        The root URL's listing when the caller already made it (``source_from_args``).
    """

    def __init__(
        self,
        root,
        *,
        layout: dict | None = None,
        variant: str = "auto",
        metadata="auto",
        filters: FilterConfig | None = None,
        cache_dir=None,
        storage_options: dict | None = None,
        listing: remote.Listing | None = None,
    ):
        self.storage_options = storage_options
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        self._remote = None if listing is None else {"listing": listing}
        if remote.is_url(root):
            self.root = str(root).rstrip("/")
            listing = self._listing()
            self._remote["probe"] = probe = remote.Fetches()
            self.layout = layout or probe_layout(
                self.root, variant, storage_options=storage_options, files=listing.files, fetches=probe
            )
        else:
            self.root = str(Path(root).resolve())
            if not Path(self.root).is_dir():
                raise ValueError(f"--src {str(root)!r} is not a folder")
            self.layout = layout or probe_layout(self.root, variant)
        if self.layout is None:
            raise ValueError(
                f"--src {storage.redact(root)!r} holds no Danbooru layout (original/NNNN/ID.ext, tars of ID.ext, "
                "or ID.ext files)"
            )
        # the folder metadata files are read beneath (links out of it refused): the source folder
        # for what was found there; what --metadata names is read where it really lies
        self.metadata_root = self.root
        if metadata in (None, "none"):
            self.metadata = []
        elif metadata == "auto" and self._remote is not None:
            self.metadata = probe_metadata(self.root, files=self._listing().files)
        elif metadata == "auto":
            self.metadata = [str(p) for p in probe_metadata(Path(self.root))]
        elif remote.is_url(metadata):
            self.metadata = find_metadata(metadata, storage_options=storage_options, cache_dir=self._listing_cache())
            if not self.metadata:
                raise ValueError(
                    f"--metadata {storage.redact(metadata)!r} holds no posts files "
                    "(.json/.jsonl[.gz], .tar.gz, .parquet)"
                )
        else:
            named = os.path.realpath(metadata)
            self.metadata_root = named if os.path.isdir(named) else os.path.dirname(named)
            self.metadata = [str(p) for p in find_metadata(metadata)]
            if not self.metadata:
                raise ValueError(
                    f"--metadata {str(metadata)!r} holds no posts files (.json/.jsonl[.gz], .tar.gz, .parquet)"
                )
        self.filters = filters if filters is not None else FilterConfig()
        self._state = None

    def __getstate__(self):  # workers need only the settings, never the listing
        return {**self.__dict__, "_state": None, "_remote": None}

    def _listing_cache(self) -> Path | None:
        return Path(self.cache_dir) / CACHE_DIR / "listings" if self.cache_dir else None

    def _listing(self) -> remote.Listing:
        """The root URL's listing, made (or read from the cache) once per source object."""
        if self._remote is None:
            self._remote = {}
        if "listing" not in self._remote:
            self._remote["listing"] = remote.list_folder(self.root, self.storage_options, self._listing_cache())
        return self._remote["listing"]

    # -- listing ---------------------------------------------------------------------------------

    def _list(self):
        """(entries, skipped, tar indexes read from the cache): entries are (id, ext, locator,
        where-meta, size), sorted."""
        if remote.is_url(self.root):
            return self._list_remote()
        root = Path(self.root)
        entries, skipped, cached = [], [], 0
        if self.layout["layout"] == "archive":
            tars = self.layout["tars"]
            cache = Path(self.cache_dir) / CACHE_DIR / "tars" if self.cache_dir else None
            indexes, cached = index_tars([root / rel for rel in tars], labels=tars, cache_dir=cache, root=root)
            _archive_entries(tars, indexes, entries, skipped)
        else:
            base = root / self.layout["base"] if self.layout["layout"] == "gwern" else root
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
                for name in sorted(filenames):
                    full = os.path.join(dirpath, name)
                    rel = os.path.relpath(full, root).replace(os.sep, "/")
                    match = _ID_NAME.match(name)
                    if match is None:
                        if not name.startswith("."):
                            skipped.append({"path": rel, "reason": "not-an-id", "detail": "name is not ID.ext"})
                        continue
                    try:
                        st = os.lstat(full)  # one look: a link, a FIFO or a device is never listed
                    except OSError as exc:
                        skipped.append({"path": rel, "reason": "read-error", "detail": exc.strerror or str(exc)})
                        continue
                    why = ("unsafe-member", "link") if stat.S_ISLNK(st.st_mode) else refusal(st, MAX_BYTES)
                    if why is not None:
                        skipped.append({"path": rel, "reason": why[0], "detail": why[1]})
                        continue
                    entries.append((int(match.group(1)), match.group(2).lower(), rel, {"path": rel}, st.st_size))
        entries.sort(key=lambda e: (e[0], str(e[2])))
        return entries, skipped, cached

    def _list_remote(self):
        """``_list`` of a folder URL, from its listing: the same entries and skips as on disk
        (links, FIFOs and devices do not exist there; keys that could leave the folder do)."""
        files = self._listing().files
        entries, skipped, cached = [], [], 0
        if self.layout["layout"] == "archive":
            tars = self.layout["tars"]
            cache = Path(self.cache_dir) / CACHE_DIR / "tars" if self.cache_dir else None
            self._remote["index"] = fetches = remote.Fetches()
            indexes, cached = index_tars(
                [remote.join(self.root, rel) for rel in tars],
                labels=tars,
                cache_dir=cache,
                storage_options=self.storage_options,
                sizes=[files.get(rel) for rel in tars],
                fetches=fetches,
            )
            _archive_entries(tars, indexes, entries, skipped)
        else:
            base = self.layout["base"] if self.layout["layout"] == "gwern" else "."
            prefix = "" if base == "." else base.rstrip("/") + "/"
            for rel, size in files.items():
                if not rel.startswith(prefix):
                    continue
                name = rel.rsplit("/", 1)[-1]
                match = _ID_NAME.match(name)
                if match is None:
                    if not name.startswith("."):
                        skipped.append({"path": rel, "reason": "not-an-id", "detail": "name is not ID.ext"})
                    continue
                why = remote.key_problem(rel)
                why = ("unsafe-path", why) if why else refusal_of_size(size, MAX_BYTES)
                if why is not None:
                    skipped.append({"path": rel, "reason": why[0], "detail": why[1]})
                    continue
                entries.append((int(match.group(1)), match.group(2).lower(), rel, {"path": rel}, size))
        entries.sort(key=lambda e: (e[0], str(e[2])))
        return entries, skipped, cached

    def _compute(self):
        entries, skipped, tars_cached = self._list()
        fp = hashlib.sha256()
        for e in entries:
            fp.update(f"{e[2]}\t{e[4]}\n".encode())
        exts: dict[str, int] = {}
        for e in entries:
            exts[e[1]] = exts.get(e[1], 0) + 1
        # one item per id: the first by locator (another extension or archive holds a copy)
        unique, dups = [], 0
        for e in entries:
            if unique and unique[-1][0] == e[0]:
                dups += 1
                continue
            unique.append(e)
        table, minfo = None, None
        if self.metadata:
            table, minfo = load_metadata(
                self.metadata,
                [e[0] for e in unique],
                tracked=self.filters.tracked_tags(),
                cache_dir=Path(self.cache_dir) / CACHE_DIR if self.cache_dir else None,
                root=self.metadata_root,
                storage_options=self.storage_options,
            )
        pre = [Item(danbooru_key(e[0]), e[2], {"id": e[0], "ext": e[1]}) for e in unique]
        facts = []
        for e in unique:
            row = table.row(e[0]) if table is not None else -1
            facts.append(table.facts(row) if row >= 0 else None)
        kept, removed = apply_filters(pre, facts, self.filters, has_metadata=table is not None, read=self.read)
        if dups:
            removed = {"duplicate-id": dups, **removed}
        items = []
        for i in kept:
            e, f = unique[i], facts[i]
            meta = {
                "source": "danbooru",
                "id": e[0],
                "artist": " ".join(f["artist"]) if f else "",
                "rating": (f["rating"] or "") if f else "",
                "md5": (f["md5"] or "") if f else "",
                **e[3],
            }
            items.append(Item(pre[i].key, e[2], meta))
        self._state = {
            "items": items,
            "skipped": skipped,
            "removed": removed,
            "exts": exts,
            "listed": len(entries),
            "ids": (unique[0][0], unique[-1][0]) if unique else None,
            "metadata": minfo,
            "matched": sum(f is not None for f in facts),
            "tars_cached": tars_cached,
            "fingerprint": {"count": len(entries), "sha256": fp.hexdigest()},
        }
        return self._state

    def _get(self):
        return self._state or self._compute()

    # -- the Source interface --------------------------------------------------------------------

    def items(self) -> list[Item]:
        return list(self._get()["items"])

    @property
    def skipped(self) -> list[dict]:
        """Files and tar members never listed (unsafe names, links, too large, not ``ID.ext``),
        then metadata files or members not read, whole or to their end (``refused``)."""
        st = self._get()
        return list(st["skipped"]) + list((st["metadata"] or {}).get("refused", []))

    def spec(self) -> dict:
        st = self._get()
        meta = []
        for p in self.metadata:
            try:
                if remote.is_url(p):
                    meta.append([storage.redact(p), storage.size(p, self.storage_options)])
                else:
                    meta.append([p, os.stat(p).st_size])
            except (OSError, storage.StorageError):  # a broken link, a failed request: the join reports it
                meta.append([storage.redact(p), -1])
        return {
            "kind": "danbooru",
            "root": storage.redact(self.root),
            "layout": self.layout,
            "metadata": meta,
            "filters": self.filters.to_json(),
            "listing": st["fingerprint"],
        }

    def read(self, item: Item) -> bytes:
        # the one guarded read: a bucket folder or tar swapped for a link out of the tree, a FIFO,
        # a device or a file grown since the listing are refused with their reason, never read
        loc = item.locator
        if remote.is_url(self.root):  # one ranged read of the object, or of the member in its tar
            rel, offset, size = loc if isinstance(loc, (tuple, list)) else (str(loc), 0, None)
            length = None if size is None else int(size)
            so = self.storage_options
            return remote.read_beneath(
                self.root, rel, storage_options=so, max_bytes=MAX_BYTES, offset=int(offset), length=length
            )
        if isinstance(loc, (tuple, list)):
            rel, offset, size = loc
            return read_beneath(self.root, rel, max_bytes=MAX_BYTES, offset=int(offset), length=int(size))
        return read_beneath(self.root, str(loc), max_bytes=MAX_BYTES)

    def check_pixels(self, color: np.ndarray) -> str | None:
        return check_pixels(color, self.filters)

    def summary(self) -> str:
        st = self._get()
        lay = self.layout
        where = {
            "gwern": f"gwern {lay.get('variant')} ({lay.get('base')}/NNNN/ID.ext)",
            "archive": f"archive ({len(lay.get('tars', []))} tars, read by seek; "
            f"{st['tars_cached']} indexes from the cache)",
            "flat": "flat folder of ID.ext",
        }[lay["layout"]]
        exts = ", ".join(f"{k} {v}" for k, v in sorted(st["exts"].items(), key=lambda kv: -kv[1])) or "none"
        reasons: dict[str, int] = {}
        for s in st["skipped"]:
            reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
        lines = [
            f"source   danbooru, {where}: {storage.redact(self.root)}",
            f"listed   {st['listed']} files ({exts}); ids "
            + (f"{st['ids'][0]}..{st['ids'][1]}" if st["ids"] else "none"),
        ]
        if st["skipped"]:
            lines.append(f"skipped  {len(st['skipped'])} entries never listed ({format_removed(reasons)})")
        if st["metadata"]:
            m = st["metadata"]
            n_long = m.get("long_lines", 0)
            long = f" ({n_long} over {MAX_LINE_BYTES >> 20} MiB, skipped unread)" if n_long else ""
            refused = m.get("refused", [])
            why = format_removed(dict(sorted(Counter(x["reason"] for x in refused).items())))
            lines.append(
                f"metadata {len(self.metadata)} file(s) ({Path(self.metadata[0]).name}...), "
                f"{m['records']} records, {st['matched']} matched listed ids, "
                f"{m['bad_lines']} bad lines{long}, cache {m['cache']}"
                + (f"; refused {len(refused)} ({why}; see rejects.jsonl)" if refused else "")
            )
        else:
            lines.append("metadata none (rating/tag/score/deleted filters unavailable; provenance has no artist)")
        lines.append(f"filters  removed {format_removed(st['removed'])}")
        lines.append(f"remain   {len(st['items'])} items")
        if remote.is_url(self.root):
            lines.insert(1, self._requests_line())
        return "\n".join(lines)

    def _requests_line(self) -> str:
        """How many remote requests the listing, the layout probe and the tar indexing took."""
        r = self._remote or {}
        listing = r.get("listing")
        text = "requests listing " + (
            "from the cache (0)" if listing is None or listing.cached else f"{listing.requests} (one recursive listing)"
        )
        probe, index = r.get("probe"), r.get("index")
        if probe is not None and probe.requests:
            text += f", layout probe {probe.requests} ranged reads"
        if index is not None:
            text += f", tar indexing {index.requests} ranged reads ({_mib(index.fetched)} fetched)"
        return text


def refusal_of_size(size: int, max_bytes: int) -> tuple[str, str] | None:
    """``_safeio.refusal`` for an object known only by its listed size: ``too-large`` over ``max_bytes``."""
    return ("too-large", f"{size} bytes > {max_bytes}") if size > max_bytes else None


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"
