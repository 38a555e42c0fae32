"""Reduced-scale decoding (issue 15): decode + resize to 512 of ~2.5 MP JPEGs, full vs DCT-scaled.

    python benchmarks/bench_decode.py [--n 8] [--hw 1300x1950] [--repeat 5] [--build 24] [--size 512]

Writes ``--n`` natural-looking JPEGs (demo pictures enlarged to ``--hw``, noise sigma 6, quality 92)
in memory, then times decode + INTER_AREA resize to ``--size`` on the short side, best of
``--repeat`` per picture, for: OpenCV full decode, Pillow full decode (the build with
``--exact-decode``), OpenCV ``IMREAD_REDUCED_COLOR_2`` and Pillow ``draft`` (the build's default,
``s2pdata.decode.decode_fitted``). All rows run in this process, one after another, so ratios are
against a baseline measured in the same run. Prints the PSNR of each reduced row against Pillow's
full decode, then (``--build N`` > 0) one-worker builds of ``N`` such pictures with and without
``--exact-decode``, alternating, in samples/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _common import best_of, cpu_model

from s2pdata.build import run_build
from s2pdata.decode import decode_fitted, plan_fit
from s2pdata.demo import draw_demo
from s2pdata.synth import SynthConfig


def make_jpegs(n: int, hw: tuple[int, int]) -> list[bytes]:
    """``n`` JPEGs of ``hw`` (H, W): demo pictures enlarged (cubic) plus noise, quality 92."""
    out = []
    for i in range(n):
        big = cv2.resize(draw_demo(i, seed=3)[..., :3], (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)
        big = np.clip(big + np.random.default_rng(i).normal(0, 6, big.shape).round(), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        out.append(buf.tobytes())
    return out


def _cv2_fit(data: bytes, resized: tuple[int, int], flag: int) -> np.ndarray:
    """OpenCV decode (``flag``: full or reduced scale), to RGB, INTER_AREA to ``resized`` (H, W)."""
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), flag), cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, resized[::-1], interpolation=cv2.INTER_AREA)


# each row: (bytes, size, resized (H, W) planned from the full size outside the timing) -> RGB
METHODS = {
    "OpenCV full decode": lambda d, s, r: _cv2_fit(d, r, cv2.IMREAD_COLOR),
    "Pillow full decode (--exact-decode)": lambda d, s, r: decode_fitted(d, size=s, exact=True)[0],
    "OpenCV IMREAD_REDUCED_COLOR_2": lambda d, s, r: _cv2_fit(d, r, cv2.IMREAD_REDUCED_COLOR_2),
    "Pillow draft (default)": lambda d, s, r: decode_fitted(d, size=s)[0],
}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images of one shape, in dB."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def bench_decode(jpegs: list[bytes], size: int, repeat: int) -> None:
    """The decode + resize rows, ms per picture and speed-up against both full decodes."""
    plans = [plan_fit(decode_fitted(d, size=None, exact=True)[1], size=size).resized for d in jpegs]
    ms = {}
    for name, f in METHODS.items():
        total = sum(best_of(lambda d=d, r=r, f=f: f(d, size, r), repeat) for d, r in zip(jpegs, plans))
        ms[name] = 1e3 * total / len(jpegs)
    ref = [METHODS["Pillow full decode (--exact-decode)"](d, size, r) for d, r in zip(jpegs, plans)]
    cv_full, pil_full = ms["OpenCV full decode"], ms["Pillow full decode (--exact-decode)"]
    print("| method | ms / picture | vs OpenCV full | vs Pillow full | PSNR vs Pillow full (min-max dB) |")
    print("| --- | --- | --- | --- | --- |")
    for name, f in METHODS.items():
        psnr = [_psnr(x, f(d, size, r)) for x, d, r in zip(ref, jpegs, plans)]
        shown = f"{min(psnr):.1f}-{max(psnr):.1f}" if min(psnr) < 99 else "identical"
        shown = "-" if "Pillow full" in name else shown
        print(f"| {name} | {ms[name]:.1f} | {cv_full / ms[name]:.2f}x | {pil_full / ms[name]:.2f}x | {shown} |")


def bench_build(jpegs: list[bytes], size: int, repeat: int) -> None:
    """One-worker builds with and without --exact-decode, alternating; samples/s and the ratio."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as src:
        for i, data in enumerate(jpegs):
            (Path(src) / f"p{i:04d}.jpg").write_bytes(data)
        for _ in range(repeat):
            for exact in (True, False):
                with tempfile.TemporaryDirectory() as out:
                    t0 = time.perf_counter()
                    cfg = SynthConfig(size=size, exact_decode=exact)
                    run_build(src=src, out=out, cfg=cfg, workers=1, progress=False)
                    rates[exact].append(len(jpegs) / (time.perf_counter() - t0))
    ratios = [r / e for r, e in zip(rates[False], rates[True])]
    print(f"\nbuild, 1 worker, {len(jpegs)} pictures, {repeat} alternating runs (samples/s, median):")
    print(
        f"  --exact-decode {statistics.median(rates[True]):.1f}, default {statistics.median(rates[False]):.1f}; "
        f"ratio median {statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=8, help="pictures for the decode rows")
    p.add_argument("--hw", default="1300x1950", help="H x W of the pictures (1300x1950 = 2.5 MP)")
    p.add_argument("--repeat", type=int, default=5, help="best of this many per picture; alternating build runs")
    p.add_argument("--build", type=int, default=24, help="pictures for the end-to-end builds (0 skips them)")
    p.add_argument("--size", type=int, default=512)
    a = p.parse_args()
    hw = tuple(int(v) for v in a.hw.lower().split("x"))
    print(f"{cpu_model()}; {a.n} JPEGs of {hw[0]}x{hw[1]} ({hw[0] * hw[1] / 1e6:.2f} MP) -> {a.size} short side\n")
    bench_decode(make_jpegs(a.n, hw), a.size, a.repeat)
    if a.build:
        bench_build(make_jpegs(a.build, hw), a.size, max(1, min(a.repeat, 3)))


if __name__ == "__main__":
    main()
