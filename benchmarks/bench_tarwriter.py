"""Shard tar writing: s2pdata's own writer against webdataset's ``TarWriter`` (fixed mtime).

    python benchmarks/bench_tarwriter.py [--samples 1000] [--repeat 5]

Decides whether the build should write through ``webdataset.TarWriter`` (and so need webdataset
at run time) or keep ``s2pdata.shards.write_tar`` (standard library ``tarfile``). Both write the
same samples in one process, in the same run, into a temporary folder:

* ``small``: ``--samples`` samples of 6 fields of 0.5-4 KB (header cost dominates);
* ``512px``: 200 samples with field sizes of a 512^2 demo sample (colour 60 KB, sketch 12 KB,
  hint 2 KB, regions 20 KB, draft 60 KB, json 3 KB).

Rows: ``write_tar`` (the build's call: ``.tmp``, fsync, md5 + sha256, rename); ``tarfile`` (the
same members into an in-memory tar: serialisation alone); ``TarWriter`` (``encoder=False``,
``mtime`` fixed, into an in-memory buffer); ``TarWriter+commit`` (TarWriter into a ``.tmp`` file,
then the same fsync, hashes and rename as ``write_tar``). Ratios are against ``write_tar``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import best_of, cpu_model
from s2pdata.shards import TAR_MTIME, _tar_member, write_tar

SMALL = {"color.jpg": 4096, "sketch.png": 1024, "hint.png": 512, "regions.png": 2048, "draft0.jpg": 4096, "json": 700}
PX512 = {
    "color.jpg": 60_000,
    "sketch.png": 12_000,
    "hint.png": 2_000,
    "regions.png": 20_000,
    "draft0.jpg": 60_000,
    "json": 3_000,
}


def make_samples(n: int, sizes: dict[str, int]) -> list[dict]:
    rng = __import__("numpy").random.default_rng(0)
    payload = {f: rng.integers(0, 256, s, dtype="uint8").tobytes() for f, s in sizes.items()}
    return [{"__key__": f"demo-{i:010d}", **payload} for i in range(n)]


def bare_tarfile(samples: list[dict]) -> int:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for s in samples:
            for field, data in s.items():
                if not field.startswith("__"):
                    _tar_member(tar, f"{s['__key__']}.{field}", data)
    return buf.tell()


def tarwriter(samples: list[dict], fileobj) -> None:
    import webdataset as wds

    with wds.TarWriter(fileobj, encoder=False, mtime=TAR_MTIME, user="s2pdata", group="s2pdata") as w:
        for s in samples:
            w.write(s)


def tarwriter_commit(samples: list[dict], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        tarwriter(samples, f)
        f.flush()
        os.fsync(f.fileno())
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(tmp, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: {cpu_model()}, one process; best of {args.repeat}")
    print(f"{'workload':10s} {'writer':18s} {'ms':>8s} {'vs write_tar':>13s}")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for name, n, sizes in (("small", args.samples, SMALL), ("512px", 200, PX512)):
            samples = make_samples(n, sizes)
            rows = {
                "write_tar": lambda: write_tar(root / "a.tar", samples),
                "tarfile": lambda: bare_tarfile(samples),
                "TarWriter": lambda: tarwriter(samples, io.BytesIO()),
                "TarWriter+commit": lambda: tarwriter_commit(samples, root / "b.tar"),
            }
            times = {k: best_of(fn, args.repeat) for k, fn in rows.items()}
            for k, t in times.items():
                print(f"{name:10s} {k:18s} {1e3 * t:8.1f} {t / times['write_tar']:12.2f}x")


if __name__ == "__main__":
    main()
