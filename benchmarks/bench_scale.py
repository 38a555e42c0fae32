"""Build throughput for planning: 1 vs N local workers, local pool vs Ray, and projected hours.

    python benchmarks/bench_scale.py [--n 480] [--workers 2] [--repeat 3] [--size 512] [--src-scale 1] [--no-ray]

Writes ``--n`` demo pictures (``--src-scale 2.5`` enlarges them about 6x in area, to the size of
full-resolution originals) to a temporary folder (so drawing them is not timed), then times
``run_build`` on it ``--repeat`` times with 1 local worker (in this process, as ``--workers 1``
runs) and with ``--workers`` spawned workers, alternating so both see the same machine. Prints
samples/s, the speed-up end to end and in the shard phase (after the patch-pool pre-pass), the
median and range of the speed-ups, then one Ray run on a local Ray with ``--workers`` CPUs (its
start-up reported apart), the per-stage cost per sample, and hours for 1M / 3M / 5M images on a
16-core node and on 4 and 16 such nodes from the steady (shard-phase) per-core rate.

With ``--src-scale`` >= 2 (sources as large as originals) it also prints the pair of rows issue 15
asks for: 1-worker builds with the default reduced-scale decoding and with ``--exact-decode``,
``--repeat`` rounds alternating, samples/s end to end and in the shard phase, and the ratio. The demo
mix is mostly PNG (no reduced scale), so this ratio is lower than ``bench_decode.py --curve``'s JPEG rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _common import cpu_model

from s2pdata.build import run_build
from s2pdata.demo import demo_bytes
from s2pdata.synth import SynthConfig


def timed_build(src, cfg, workers, distributor="local"):
    """(seconds end to end, seconds in the shard phase, per-stage seconds summed over shards, bytes
    written to shards)."""
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        manifest = run_build(src=src, out=out, cfg=cfg, workers=workers, progress=False, distributor=distributor)
        seconds = time.perf_counter() - t0
        stages: dict[str, float] = {}
        for p in Path(out).glob("shard-*.stats.json"):
            for k, v in json.loads(p.read_text())["seconds"].items():
                stages[k] = stages.get(k, 0.0) + v
    return seconds, manifest["totals"]["seconds_shards_this_run"], stages, manifest["totals"]["bytes"]


def _shape(data: bytes) -> tuple[int, int]:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2]


def exact_decode_rows(src: str, cfg: SynthConfig, n: int, repeat: int, reducible: int) -> None:
    """1-worker builds of ``src`` with reduced-scale decoding (``cfg``) and with ``--exact-decode``,
    ``repeat`` rounds alternating; prints samples/s (median) end to end and in the shard phase, and
    the ratios. ``reducible`` counts the sources a reduced scale applies to (JPEGs, short side >= 2 size)."""
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(repeat):
        for exact in (True, False):
            seconds, shards, *_ = timed_build(src, dataclasses.replace(cfg, exact_decode=exact), 1)
            runs[exact].append((seconds, shards))
    print(f"\nreduced-scale decoding vs --exact-decode, 1 worker ({reducible} of {n} sources reducible), samples/s:")
    for exact, name in ((False, "default (reduced-scale)"), (True, "--exact-decode")):
        end = statistics.median(n / e for e, _ in runs[exact])
        steady = statistics.median(n / p for _, p in runs[exact])
        print(f"  {name:24s} {end:6.2f} end to end, {steady:6.2f} in the shard phase")
    ends = [e / r for (e, _), (r, _) in zip(runs[True], runs[False])]
    steadies = [e / r for (_, e), (_, r) in zip(runs[True], runs[False])]
    print(f"  reduced vs exact: end to end {spread(ends)}, shard phase {spread(steadies)}")


def spread(values) -> str:
    return f"median {statistics.median(values):.2f}x (range {min(values):.2f}-{max(values):.2f}x)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=480)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--src-scale", type=float, default=1.0, help="enlarge the source pictures by this factor")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    cfg = SynthConfig(size=args.size)
    n, w = args.n, args.workers
    with tempfile.TemporaryDirectory() as src:
        pixels, read, reducible = 0, 0, 0
        for i in range(n):
            data, ext = demo_bytes(i, seed=0)
            if args.src_scale != 1.0:
                img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
                img = cv2.resize(img, None, fx=args.src_scale, fy=args.src_scale, interpolation=cv2.INTER_CUBIC)
                data = cv2.imencode(f".{ext}", img)[1].tobytes()
            hw = _shape(data)
            pixels += hw[0] * hw[1]
            reducible += ext == "jpg" and min(hw) >= 2 * args.size
            read += len(data)
            Path(src, f"{i:06d}.{ext}").write_bytes(data)
        print(
            f"{cpu_model()}; {n} demo images of {pixels / n / 1e6:.1f} MP on average -> {args.size} short side, "
            f"drafts={cfg.drafts}; "
            f"{args.repeat} alternating runs each"
        )
        ends, steadies, ones = [], [], []
        for r in range(args.repeat):
            s1, p1, stages, written = timed_build(src, cfg, 1)
            sn, pn, _, _ = timed_build(src, cfg, w)
            ones.append((s1, p1))
            ends.append(s1 / sn)
            steadies.append(p1 / pn)
            print(
                f"run {r + 1}: 1 worker {n / s1:6.2f} samples/s ({s1:.1f} s, shard phase {p1:.1f} s); "
                f"{w} workers {n / sn:6.2f} samples/s ({sn:.1f} s, shard phase {pn:.1f} s); "
                f"speed-up {s1 / sn:.2f}x end to end, {p1 / pn:.2f}x in the shard phase"
            )
        print(
            f"{w} workers vs 1: end to end {spread(ends)}, shard phase {spread(steadies)}; parallel efficiency "
            f"{statistics.median(ends) / w:.0%} end to end, {statistics.median(steadies) / w:.0%} steady"
        )
        if args.src_scale >= 2:
            exact_decode_rows(src, cfg, n, args.repeat, reducible)
        if not args.no_ray:
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=w, include_dashboard=False, log_to_driver=False, configure_logging=False)
            startup = time.perf_counter() - t0
            local, *_ = timed_build(src, cfg, w)
            sr, *_ = timed_build(src, cfg, w, "ray")
            ray.shutdown()
            print(
                f"ray, {w} CPUs: {n / sr:6.2f} samples/s ({sr:.1f} s; Ray start-up {startup:.1f} s apart); "
                f"{local / sr:.2f}x the local pool run just before it ({local:.1f} s)"
            )
    print(
        "per-sample cost, one worker (ms): "
        + ", ".join(f"{k} {1e3 * v / n:.1f}" for k, v in sorted(stages.items()))
        + f"; total {1e3 * sum(stages.values()) / n:.1f}"
    )
    # At millions of images the start-up and the pool pre-pass (at most 1,250 images) vanish: plan
    # with the steady one-core rate and the steady efficiency.
    rate = n / statistics.median(p for _, p in ones)
    eff = min(1.0, statistics.median(steadies) / w)
    print(f"\nprojection from {rate:.1f} samples/s per core in the shard phase at {eff:.0%} parallel efficiency:")
    print("| images | 1 node x 16 cores | 4 nodes | 16 nodes |")
    print("|---|---|---|---|")
    for n_img in (1_000_000, 3_000_000, 5_000_000):
        hours = [n_img / (rate * 16 * nodes * eff) / 3600 for nodes in (1, 4, 16)]
        print(f"| {n_img / 1e6:.0f}M | {hours[0]:.1f} h | {hours[1]:.1f} h | {hours[2]:.2f} h |")
    # the shared filesystem must keep up: every sample reads its source and writes its fields
    per_sample = (read + written) / n
    rates = [per_sample * rate * 16 * nodes * eff / 1e6 for nodes in (1, 4, 16)]
    print(
        f"| shared-filesystem traffic ({read / n / 1e3:.0f} KB read + {written / n / 1e3:.0f} KB written "
        "per sample) | " + " | ".join(f"{r:.0f} MB/s" for r in rates) + " |"
    )


if __name__ == "__main__":
    main()
