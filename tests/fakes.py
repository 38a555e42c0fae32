"""Small fake source trees for the source tests (helper, not a test module).

Danbooru layouts (gwern ``original/NNNN/ID.ext`` + ``512px``, tars of ``ID.ext``, flat), posts
metadata in both dialects (JSON Lines, .gz, inside .tar.gz, parquet), a hostile tar, and Hugging
Face trees (imagefolder, parquet of embedded bytes, webdataset tars), and a source whose one bad
file kills the worker reading it. Bytes are deterministic.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from s2pdata.shards import Schema, commit_stats, encode_sample, shard_name, write_tar
from s2pdata.sources.demo import DemoSource

from .badfiles import picture, write_bad_folder


def png(seed: int, h: int = 40, w: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture(h, w, seed=seed)).save(buf, "PNG")
    return buf.getvalue()


def jpg(seed: int, h: int = 40, w: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture(h, w, seed=seed)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def gray_png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture(40, 48, seed=seed)).convert("L").convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def image_bytes(post_id: int, ext: str) -> bytes:
    return jpg(post_id) if ext in ("jpg", "jpeg") else png(post_id)


# ---------------------------------------------------------------------------------------------
# Danbooru layouts


def write_gwern(root: Path, files: dict[int, str], *, small: bool = True, data: dict | None = None) -> dict[int, str]:
    """``original/NNNN/ID.ext`` for each {id: ext} (and ``512px/NNNN/ID.jpg`` when ``small``)."""
    root = Path(root)
    out = {}
    for pid, ext in files.items():
        rel = f"original/{pid % 1000:04d}/{pid}.{ext}"
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        blob = (data or {}).get(pid)
        p.write_bytes(image_bytes(pid, ext) if blob is None else blob)
        out[pid] = rel
        if small:
            q = root / f"512px/{pid % 1000:04d}/{pid}.jpg"
            q.parent.mkdir(parents=True, exist_ok=True)
            q.write_bytes(jpg(pid))
    return out


def add_member(tf: tarfile.TarFile, name: str, data: bytes, pax: dict | None = None, **kw) -> None:
    """Add ``data`` as member ``name`` (mtime 0), with PAX records ``pax`` and TarInfo fields ``kw``."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    if pax:
        info.pax_headers = pax
    for k, v in kw.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data) if info.isreg() else None)


def write_archive(
    root: Path,
    files: dict[int, str],
    *,
    per_tar: int = 3,
    folder: str = "",
    pattern: str = "data-{:04d}.tar",
    data: dict | None = None,
) -> list[str]:
    """danbooru2023-style tars of ``ID.ext`` members; returns the tar paths relative to ``root``."""
    root = Path(root)
    ids = sorted(files)
    rels = []
    for t in range(0, len(ids), per_tar):
        rel = (folder + "/" if folder else "") + pattern.format(t // per_tar)
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(p, "w", format=tarfile.GNU_FORMAT) as tf:
            for pid in ids[t : t + per_tar]:
                add_member(tf, f"{pid}.{files[pid]}", (data or {}).get(pid, image_bytes(pid, files[pid])))
        rels.append(rel)
    return rels


def write_hostile_tar(path: Path) -> dict[str, str]:
    """A tar with ``../evil.png``, ``/abs.png``, a symlink, a hard link, a device, a FIFO and two good
    members (``11.png``, ``12.png``); returns {member name: expected skip reason}."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        add_member(tf, "11.png", png(11))
        add_member(tf, "../evil.png", png(99))
        add_member(tf, "/abs.png", png(98))
        add_member(tf, "sub/../../13.png", png(13))
        add_member(tf, "14.png", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add_member(tf, "15.png", b"", type=tarfile.LNKTYPE, linkname="11.png")
        add_member(tf, "16.png", b"", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add_member(tf, "17.png", b"", type=tarfile.FIFOTYPE)
        add_member(tf, "12.png", png(12))
    return {
        "../evil.png": "unsafe-path",
        "/abs.png": "unsafe-path",
        "sub/../../13.png": "unsafe-path",
        "14.png": "unsafe-member",
        "15.png": "unsafe-member",
        "16.png": "unsafe-member",
        "17.png": "unsafe-member",
    }


def bad_by_id(tmp: Path, first_id: int = 500) -> tuple[dict[int, bytes], dict[int, str], dict[int, str | None]]:
    """tests/badfiles.py's awkward inputs renamed to post ids: ({id: bytes}, {id: ext}, {id: reason})."""
    expected = write_bad_folder(tmp)
    data, exts, reasons = {}, {}, {}
    for i, (rel, reason) in enumerate(sorted(expected.items())):
        pid = first_id + i
        data[pid] = (Path(tmp) / rel).read_bytes()
        exts[pid] = rel.rsplit(".", 1)[1]
        reasons[pid] = reason
    return data, exts, reasons


# ---------------------------------------------------------------------------------------------
# metadata

CATEGORY = {"general": 0, "artist": 1, "copyright": 3, "character": 4, "meta": 5}


def post_new(
    pid: int,
    *,
    rating: str = "g",
    artist=("artist_a",),
    general=("1girl",),
    ext: str = "png",
    width: int = 48,
    height: int = 40,
    score: int = 5,
    deleted: bool = False,
    banned: bool = False,
    md5: str | None = None,
) -> dict:
    """A 2021+ style post (tag_string_*, g/s/q/e, real numbers and booleans)."""
    return {
        "id": pid,
        "md5": md5 or f"{pid:032x}",
        "rating": rating,
        "image_width": width,
        "image_height": height,
        "file_ext": ext,
        "score": score,
        "is_deleted": deleted,
        "is_banned": banned,
        "tag_string": " ".join(list(general) + list(artist)),
        "tag_string_general": " ".join(general),
        "tag_string_artist": " ".join(artist),
        "tag_string_character": "",
        "tag_string_copyright": "",
        "tag_string_meta": "",
        "fav_count": 3,
        "source": "http://example.invalid/",
    }


def post_old(pid: int, *, rating: str = "s", artist=("artist_a",), general=("1girl",), **fields) -> dict:
    """An older-dump post: numbers as strings, tags as [{id, name, category}], s/q/e ratings.

    ``fields`` are ``post_new``'s other keywords (ext, width, height, score, deleted, banned, md5).
    """
    new = post_new(pid, rating=rating, artist=artist, general=general, **fields)
    tags = [{"id": str(1000 + i), "name": t, "category": "0"} for i, t in enumerate(general)]
    tags += [{"id": str(2000 + i), "name": t, "category": "1"} for i, t in enumerate(artist)]
    return {
        "id": str(pid),
        "md5": new["md5"],
        "rating": rating,
        "image_width": str(new["image_width"]),
        "image_height": str(new["image_height"]),
        "file_ext": new["file_ext"],
        "score": str(new["score"]),
        "is_deleted": new["is_deleted"],
        "is_banned": new["is_banned"],
        "tags": tags,
        "pools": [],
    }


def _lines(posts) -> bytes:
    return b"".join(json.dumps(p).encode() + b"\n" for p in posts)


def write_jsonl(path: Path, posts, *, gz: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(_lines(posts), mtime=0) if gz else _lines(posts))
    return path


def write_posts_targz(path: Path, posts) -> Path:
    """``posts.tar.gz`` holding ``posts.json`` (JSON Lines), as danbooru2023 ships it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        add_member(tf, "posts.json", _lines(posts))
    return path


def write_parquet(path: Path, posts) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = [k for k in posts[0] if k not in ("tag_string",)]
    pq.write_table(pa.table({k: [p[k] for p in posts] for k in cols}), path, row_group_size=4)
    return path


# ---------------------------------------------------------------------------------------------
# Hugging Face trees


def write_hf_imagefolder(root: Path, blobs: dict[str, bytes]) -> Path:
    root = Path(root)
    for rel, data in blobs.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def write_hf_parquet(path: Path, blobs: dict[str, bytes]) -> Path:
    """A parquet with an ``image`` column of {bytes, path} structs (HF's Image storage)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(blobs)
    pq.write_table(
        pa.table({"image": [{"bytes": blobs[n], "path": n} for n in names], "label": list(range(len(names)))}), path
    )
    return path


def write_hf_webdataset(root: Path, blobs: dict[str, bytes], *, ext: str = "png") -> Path:
    """One webdataset tar: ``{key}.{ext}`` + ``{key}.json`` per blob (keys from the names' stems)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(root / "train-000000.tar", "w") as tf:
        for i, n in enumerate(sorted(blobs)):
            key = f"s{i:05d}"
            add_member(tf, f"{key}.{ext}", blobs[n])
            add_member(tf, f"{key}.json", json.dumps({"name": n}).encode())
    return root


def make_metadata_lines(n: int, seed: int = 0):
    """Yield ``n`` realistic-size 2021-style JSON lines (bytes) for the metadata benchmark."""
    rng = np.random.default_rng(seed)
    words = [f"tag_{i}" for i in range(2000)]
    for pid in range(1, n + 1):
        k = int(rng.integers(10, 40))
        general = [words[j] for j in rng.integers(0, 2000, k)]
        yield (
            json.dumps(
                post_new(
                    pid,
                    rating="gsqe"[pid % 4],
                    artist=(f"artist_{pid % 997}",),
                    general=general,
                    ext="jpg" if pid % 5 else "png",
                    width=int(rng.integers(200, 3000)),
                    height=int(rng.integers(200, 3000)),
                    score=int(rng.integers(-5, 100)),
                    deleted=pid % 50 == 0,
                )
            ).encode()
            + b"\n"
        )


@dataclass(frozen=True)
class CrashingSource(DemoSource):
    """The demo source, except that reading ``crash_key`` in a worker process kills that process
    outright, as a decoder's segfault or the OOM killer would. The process that made the source
    (the test) is never killed."""

    crash_key: str = ""
    safe_pid: int = field(default_factory=os.getpid)

    def spec(self) -> dict:
        return {**super().spec(), "crash_key": self.crash_key}

    def read(self, item):
        if item.key == self.crash_key and os.getpid() != self.safe_pid:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().read(item)


# ---------------------------------------------------------------------------------------------
# small shard folders for the loader, trainer and evaluator tests


def shard_sample(k: int, h: int, w: int, drafts: int = 0) -> dict:
    """A small deterministic picture (disks on a gradient), its ink and a few hint squares."""
    rng = np.random.default_rng(k)
    color = np.zeros((h, w, 3), np.uint8)
    color[:] = np.linspace(rng.integers(0, 255, 3), rng.integers(0, 255, 3), w).astype(np.uint8)[None]
    sketch = np.full((h, w), 255, np.uint8)
    for _ in range(3):
        c = (int(rng.integers(w)), int(rng.integers(h)))  # cv2 takes (x, y)
        r = int(rng.integers(4, max(5, h // 3)))
        cv2.circle(color, c, r, tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        cv2.circle(sketch, c, r, 0, 1)
    hint = np.zeros((h, w, 4), np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        y, x = int(rng.integers(h - 3)), int(rng.integers(w - 3))
        hint[y : y + 3, x : x + 3, :3] = color[y : y + 3, x : x + 3].reshape(-1, 3).mean(0)
        hint[y : y + 3, x : x + 3, 3] = 255
    s = {"__key__": f"t-{k:05d}", "color": color, "sketch": sketch, "hint": hint, "json": {"k": k}}
    for i in range(drafts):
        s[f"draft{i}"] = np.roll(255 - color, 3 * i, axis=1)  # draft0 = 255 - colour; the others differ
    return s


def write_shards(out, n: int, per_shard: int, *, h: int = 40, w: int = 48, drafts: int = 0) -> Path:
    """A build-like folder: shard tars + stats files written with s2pdata.shards (png colour)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    schema = Schema(color_format="png", drafts=drafts)
    for i, start in enumerate(range(0, n, per_shard)):
        samples = [
            encode_sample(shard_sample(k, h, w, drafts), schema) for k in range(start, min(n, start + per_shard))
        ]
        info = write_tar(out / shard_name(i), samples)
        commit_stats(out, i, {"shard": shard_name(i), "index": i, **info})
    return out
