"""Build cost per 512^2 sample, against the codec floor measured in the same run.

    python benchmarks/bench_build.py [--n 96]

Prints (1) per-stage cost of ``synth.make_sample`` + encoding, one thread, as a ratio to the
codec floor (decode the source bytes, resize, encode every stored field of the sample with its
codec: the work no build can skip); (2) the colour codec choice: encode/decode time and bytes for JPEG q95,
PNG level 1 and WebP q90 at 512^2; (3) end-to-end ``run_build`` samples/s with one worker against
the floor rate.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _common import best_of  # noqa: E402  (benchmarks/ is on sys.path)

from s2pdata._jit import single_thread, warmup
from s2pdata.build import run_build
from s2pdata.decode import apply_fit, decode_image, plan_fit
from s2pdata.demo import demo_bytes
from s2pdata.shards import encode_sample
from s2pdata.synth import SynthConfig, Timer, make_sample


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=96)
    args = ap.parse_args()
    single_thread()
    warmup()
    cfg = SynthConfig()
    schema = cfg.schema()
    blobs = [demo_bytes(i, seed=0)[0] for i in range(args.n)]

    # the codec floor: decode the source and encode every stored field of an already made sample
    made = [make_sample(b, key=f"demo-{i:06d}", seed=0, cfg=cfg) for i, b in enumerate(blobs)]

    def floor():
        for data, sample in zip(blobs, made):
            full = decode_image(data)
            apply_fit(full, plan_fit(full.shape, size=cfg.size))
            encode_sample(sample, schema)

    timer = Timer()

    def synth():
        for i, data in enumerate(blobs):
            s = make_sample(data, key=f"demo-{i:06d}", seed=0, cfg=cfg, timer=timer)
            with timer("encode"):
                encode_sample(s, schema)

    t_floor = best_of(floor)
    timer.seconds.clear()
    t_synth = best_of(synth, repeat=1)
    n = len(blobs)
    print(f"machine: {platform.processor() or platform.machine()}, one thread, {n} demo images -> 512 short side")
    print(f"codec floor      {1e3 * t_floor / n:7.2f} ms/sample")
    print(f"make_sample+enc  {1e3 * t_synth / n:7.2f} ms/sample  = {t_synth / t_floor:.2f}x floor")
    for stage, sec in timer.seconds.items():
        print(f"  {stage:8s}       {1e3 * sec / n:7.2f} ms/sample  = {sec / t_floor:.2f}x floor")

    print("\ncolour codec at 512^2 (demo pictures): encode ms, decode ms, KB")
    colors = [apply_fit(decode_image(b), plan_fit(decode_image(b).shape, size=512)) for b in blobs[:16]]
    for name, ext, params in [
        ("jpg q95", ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]),
        ("png l1", ".png", [cv2.IMWRITE_PNG_COMPRESSION, 1]),
        ("webp q90", ".webp", [cv2.IMWRITE_WEBP_QUALITY, 90]),
    ]:
        bufs = []
        t_enc = best_of(lambda: bufs.__setitem__(slice(None), [cv2.imencode(ext, c, params)[1] for c in colors]))
        t_dec = best_of(lambda: [cv2.imdecode(b, cv2.IMREAD_COLOR) for b in bufs])
        kb = np.mean([b.nbytes for b in bufs]) / 1e3
        print(f"  {name:9s} {1e3 * t_enc / len(colors):6.2f} {1e3 * t_dec / len(colors):6.2f} {kb:7.1f}")

    print(
        "\nend-to-end run_build from a folder of the same files, one worker (pool pre-pass and tar writing "
        "included; workers and Ray: benchmarks/bench_scale.py)"
    )
    floor_rate = n / t_floor
    with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as out:
        for i, data in enumerate(blobs):
            Path(src, f"{i:05d}.{demo_bytes(i, seed=0)[1]}").write_bytes(data)
        t0 = time.perf_counter()
        run_build(src=src, out=out, cfg=cfg, workers=1, progress=False)
        rate = n / (time.perf_counter() - t0)
    print(f"  {rate:6.1f} samples/s = {rate / floor_rate:.2f}x the one-thread codec floor rate ({floor_rate:.1f}/s)")


if __name__ == "__main__":
    main()
