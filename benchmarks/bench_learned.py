"""Cost of the learned line extractors at their published sizes, against the codec floor.

    python benchmarks/bench_learned.py [--side 512] [--repeat 3]

Builds each architecture at the size of its published weights (random weights: only the shapes
matter for time), saves it, loads it through ``s2pdata.stages.learned.load_extractor`` and times one
``side x side`` picture, warm, best of ``--repeat``: on one CPU thread (what a build worker uses)
and on the GPU when there is one. Baselines in the same run: the codec floor (cv2 JPEG q95
encode + decode of the same picture) and the weight-free XDoG extractor.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from _common import best_of, cpu_model, jpeg_q95_round_trip

from s2pdata._jit import single_thread
from s2pdata.demo import draw_demo
from s2pdata.stages.learned import build_net, load_extractor
from s2pdata.stages.sketch import sketch_xdog


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    color = cv2.resize(draw_demo(0)[..., :3], (args.side, args.side), interpolation=cv2.INTER_AREA)
    color = np.ascontiguousarray(color)
    torch.set_num_threads(1)
    single_thread()
    floor = best_of(lambda: jpeg_q95_round_trip(color), 10)
    xdog = best_of(lambda: sketch_xdog(color), 10)
    print(f"{cpu_model()}, torch {torch.__version__}, one thread, {args.side}^2 picture")
    print(f"codec floor (JPEG q95 encode+decode) {1e3 * floor:8.1f} ms")
    print(f"xdog (weight-free)                   {1e3 * xdog:8.1f} ms = {xdog / floor:7.1f}x floor")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("anime2sketch", "informative"):
            path = Path(tmp) / f"{arch}.pth"
            torch.save(build_net(arch).state_dict(), path)
            for device in devices:
                ex = load_extractor(f"{arch}:{path}", device)
                ex(color)  # warm
                if device == "cuda":
                    torch.cuda.synchronize()
                t = best_of(lambda: ex(color), args.repeat)
                print(f"{arch:13s} on {device:4s}                {1e3 * t:8.1f} ms = {t / floor:7.1f}x floor")


if __name__ == "__main__":
    main()
