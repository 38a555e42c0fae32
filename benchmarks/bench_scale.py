"""Build throughput for planning: 1 vs N local workers, local pool vs Ray, and projected hours.

    python benchmarks/bench_scale.py [--n 192] [--workers 2] [--size 512]

Writes ``--n`` demo pictures to a temporary folder (so drawing them is not timed), then times
``run_build`` on it with 1 local worker, ``--workers`` local workers, and ``--workers`` Ray CPUs
(a local Ray started in this process, start-up time reported apart). Prints samples/s, the
parallel speed-up and efficiency, the Ray overhead, and hours for 1M / 3M / 5M images on a
16-core node and on 4 and 16 such nodes, from the measured per-core rate.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from s2pdata.build import run_build
from s2pdata.demo import demo_bytes
from s2pdata.synth import SynthConfig


def timed_build(src, cfg, workers, distributor="local"):
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        manifest = run_build(src=src, out=out, cfg=cfg, workers=workers, progress=False, distributor=distributor)
        seconds = time.perf_counter() - t0
        stats = [json.loads(p.read_text()) for p in Path(out).glob("shard-*.stats.json")]
    stages: dict[str, float] = {}
    for s in stats:
        for k, v in s["seconds"].items():
            stages[k] = stages.get(k, 0.0) + v
    stages["_shard_phase"] = manifest["totals"]["seconds_shards_this_run"]
    return manifest["totals"]["samples"] / seconds, seconds, stages


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=192)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    cfg = SynthConfig(size=args.size)
    with tempfile.TemporaryDirectory() as src:
        for i in range(args.n):
            data, ext = demo_bytes(i, seed=0)
            Path(src, f"{i:06d}.{ext}").write_bytes(data)
        print(f"machine: {platform.machine()}, {args.n} demo images -> {args.size} short side, drafts={cfg.drafts}")
        r1, s1, stages = timed_build(src, cfg, 1)
        phase1 = stages.pop("_shard_phase")
        print(f"local, 1 worker : {r1:6.2f} samples/s ({s1:.1f} s; shard phase {phase1:.1f} s)")
        rn, sn, stages_n = timed_build(src, cfg, args.workers)
        phase_n = stages_n.pop("_shard_phase")
        print(f"local, {args.workers} workers: {rn:6.2f} samples/s ({sn:.1f} s; shard phase {phase_n:.1f} s); "
              f"speed-up {rn / r1:.2f}x end to end, {phase1 / phase_n:.2f}x in the shard phase "
              f"(parallel efficiency {rn / r1 / args.workers:.0%} / {phase1 / phase_n / args.workers:.0%})")
        if not args.no_ray:
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
            startup = time.perf_counter() - t0
            rr, sr, _ = timed_build(src, cfg, args.workers, "ray")  # the shard phase is in the third value
            ray.shutdown()
            print(f"ray,   {args.workers} CPUs   : {rr:6.2f} samples/s ({sr:.1f} s; Ray start-up {startup:.1f} s apart); "
                  f"{rr / rn:.2f}x the local pool")
    total = sum(stages.values())
    print("per-sample cost, one worker (ms): " + ", ".join(f"{k} {1e3 * v / args.n:.1f}" for k, v in stages.items())
          + f"; total {1e3 * total / args.n:.1f}")
    per_core = r1
    print(f"\nprojection from {per_core:.1f} samples/s per core (efficiency assumed "
          f"{min(1.0, rn / r1 / args.workers):.0%} as measured):")
    eff = min(1.0, rn / r1 / args.workers)
    print("| images | 1 node x 16 cores | 4 nodes | 16 nodes |")
    print("|---|---|---|---|")
    for n_img in (1_000_000, 3_000_000, 5_000_000):
        hours = [n_img / (per_core * 16 * nodes * eff) / 3600 for nodes in (1, 4, 16)]
        print(f"| {n_img / 1e6:.0f}M | {hours[0]:.1f} h | {hours[1]:.1f} h | {hours[2]:.2f} h |")


if __name__ == "__main__":
    main()
