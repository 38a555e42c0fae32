"""Indexing a danbooru2023-style folder of tars: every member header read vs the build's cache.

    python benchmarks/bench_tars.py [--tars 40] [--members 2000]

Writes ``--tars`` tars of ``--members`` small ``ID.png`` members each, then times in the same run:
``index_tar`` on each tar (the baseline: what every listing did before the cache), ``index_tars``
filling the cache (a first build), ``index_tars`` from the cache (a resumed build), and the whole
``DanbooruSource.items()`` listing on a resume. The tars sit in the page cache, so the baseline
is the cheapest it can be; on a network filesystem every header is a round trip more.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from s2pdata.sources.archive import index_tar, index_tars
from s2pdata.sources.danbooru import DanbooruSource


def write_tars(root: Path, n_tars: int, per_tar: int) -> None:
    payload = b"\x89PNG\r\n\x1a\n" + b"\0" * 600
    for t in range(n_tars):
        with tarfile.open(root / f"data-{t:04d}.tar", "w", format=tarfile.GNU_FORMAT) as tf:
            for i in range(per_tar):
                info = tarfile.TarInfo(f"{t * per_tar + i + 1}.png")
                info.size, info.mtime = len(payload), 0
                tf.addfile(info, io.BytesIO(payload))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tars", type=int, default=40)
    ap.add_argument("--members", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "src", Path(tmp) / "out"
        root.mkdir()
        write_tars(root, args.tars, args.members)
        paths = sorted(root.glob("*.tar"))
        t0 = time.perf_counter()
        n = sum(len(index_tar(p)[0]) for p in paths)
        base = time.perf_counter() - t0
        timings = []
        for _ in range(2):
            t0 = time.perf_counter()
            index_tars(paths, cache_dir=out / "tars")
            timings.append(time.perf_counter() - t0)
        DanbooruSource(root, metadata="none", cache_dir=out).items()  # fills the build's own cache
        t0 = time.perf_counter()
        items = DanbooruSource(root, metadata="none", cache_dir=out).items()
        listing = time.perf_counter() - t0
        assert len(items) == n
        shutil.rmtree(out)
    print(f"{args.tars} tars x {args.members} members = {n} members")
    print(f"index every header (baseline): {base:6.3f} s")
    print(f"index and fill the cache:      {timings[0]:6.3f} s = {timings[0] / base:.2f}x the baseline")
    print(f"indexes from the cache:        {timings[1]:6.3f} s = {base / timings[1]:.0f}x faster")
    print(f"whole listing on a resume (ids, keys, filters): {listing:.3f} s")


if __name__ == "__main__":
    main()
