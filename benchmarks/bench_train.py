"""Loader throughput against the decode floor of the fields each stage uses, and trainer step time.

    python benchmarks/bench_train.py [--shards DIR] [--n 96] [--size 512] [--repeat 3]

0. Each member's decode, whole: ``cv2.imdecode`` against s2pdata's ``shards.decode_field``.
1. Decode floors of a stage: one process reads the tars and decodes exactly the members the stage
   consumes (draft: colour, sketch, hint; refine: and one stored draft), nothing else, whole: with
   ``cv2.imdecode`` (the floor the loader goals were set against) and with s2pdata's own field
   decoder (``shards.decode_field``: the PNG maps through ``s2pdata.pngread``, 4-19x faster).
2. ``make_loader`` (batch 16, crop 224, resampled stream, steady state after 2 warm-up batches),
   with ``to_model_input`` on the CPU counted in, at 0 and 2 workers, as a ratio to both floors,
   and its page faults per sample at 0 workers: draft, refine with stored drafts, refine with
   online drafts. Goals (against the ``cv2.imdecode`` floor): draft >= 0.9x, refine with stored
   drafts >= 0.85x. Best of ``--repeat``, floors and loader alternating.
3. Trainer step (D step + G step) time on CPU for a small and the paper-width model, and GPU
   images/s (bf16 autocast) at the paper's settings when CUDA is present.
Without ``--shards`` it builds ``--n`` demo pictures at ``--size`` with ``run_build`` (colour JPEG,
sketch, hint, regions, one stored draft, json, and the patch pool for online drafts).
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from s2pdata.build import run_build
from s2pdata.data import make_loader, open_shards, to_model_input
from s2pdata.shards import decode_field
from s2pdata.synth import SynthConfig


def demo_build(out: Path, n: int, size: int) -> Path:
    run_build(src=f"demo:{n}", out=str(out), cfg=SynthConfig(size=size, drafts=1), workers=2, progress=False)
    return out


def rate(fn) -> float:
    """Items per second of one call of ``fn`` (which returns its item count)."""
    t0 = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - t0)


def _cv2_decode(name: str, data: bytes) -> None:
    cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


FLOOR_DECODERS = {"cv2": _cv2_decode, "s2pdata": decode_field}


def floor_fn(shards: Path, members: tuple[str, ...], decoder: str = "cv2"):
    """One pass over the shards decoding only ``members`` (field names, e.g. ``color``) whole with
    ``FLOOR_DECODERS[decoder]``: samples done."""
    decode = FLOOR_DECODERS[decoder]

    def run() -> int:
        n = 0
        for raw in open_shards(shards, decode=False):
            for name, data in raw.items():
                if name.partition(".")[0] in members:
                    decode(name, data)
            n += 1
        return n

    return run


LOADER_SAMPLES = 192  # per timed loader pass: 12 batches of 16


def loader_fn(shards: Path, stage: str, workers: int, **kw):
    """Steady state of one resampled stream: 2 warm-up batches, then 12 timed ones, each through
    ``to_model_input`` on the CPU."""
    it = iter(make_loader(shards, stage=stage, batch_size=16, num_workers=workers, mode="resampled", crop=224, **kw))
    for _ in range(2):
        next(it)

    def run() -> int:
        return sum(len(to_model_input(next(it))["__key__"]) for _ in range(LOADER_SAMPLES // 16))

    return run


LOADER_ROWS = [  # (label, stage, decoded members of the floor, make_loader options, goal)
    ("draft", "draft", ("color", "sketch", "hint"), {}, 0.9),
    ("refine, stored drafts", "refine", ("color", "sketch", "hint", "draft0"), {}, 0.85),
    ("refine, online drafts", "refine", ("color", "sketch", "hint"), {"online_drafts": True}, None),
]


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def bench_loader(shards: Path, repeat: int) -> None:
    print(
        "| loader | workers | cv2 floor s/s | s2pdata floor s/s | loader s/s | x cv2 floor | x s2pdata floor "
        "| page faults / sample | goal (x cv2 floor) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, stage, members, kw, goal in LOADER_ROWS:
        floors = {d: floor_fn(shards, members, d) for d in FLOOR_DECODERS}
        for nw in (0, 2):
            load = loader_fn(shards, stage, nw, **kw)
            best = dict.fromkeys([*floors, "loader"], 0.0)
            faults = []
            for _ in range(repeat):  # alternating, so all see the same machine; best of each
                for d, fn in floors.items():
                    best[d] = max(best[d], rate(fn))
                f0 = _faults()
                best["loader"] = max(best["loader"], rate(load))
                faults.append((_faults() - f0) / LOADER_SAMPLES)
            f, g, r = best["cv2"], best["s2pdata"], best["loader"]
            verdict = "-" if goal is None else f">= {goal} {'met' if r / f >= goal else 'NOT met'}"
            fault = f"{min(faults):.0f}" if nw == 0 else "-"
            print(f"| {label} | {nw} | {f:.0f} | {g:.0f} | {r:.0f} | {r / f:.2f} | {r / g:.2f} | {fault} | {verdict} |")


def bench_members(shards: Path, repeat: int) -> None:
    """ms per member, whole, best of ``repeat`` passes: ``cv2.imdecode`` against ``decode_field``."""
    raws = list(open_shards(shards, decode=False))
    print("| member | cv2.imdecode ms | s2pdata decode_field ms | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for member in ("color.jpg", "sketch.png", "hint.png", "regions.png", "draft0.jpg"):
        blobs = [r[member] for r in raws if member in r]
        ms = {}
        for name, decode in FLOOR_DECODERS.items():

            def run() -> int:
                for b in blobs:
                    decode(member, b)  # each result dropped at once, as the loader does
                return len(blobs)

            ms[name] = 1e3 / max(rate(run) for _ in range(repeat))
        print(f"| {member} | {ms['cv2']:.2f} | {ms['s2pdata']:.2f} | {ms['cv2'] / ms['s2pdata']:.1f}x |")


def bench_step(
    stage_name: str,
    *,
    width: int,
    depth: int,
    batch: int,
    crop: int,
    device: str,
    steps: int,
    encoder_width: float = 1.0,
) -> float:
    from s2pdata.train.common import Nets

    if stage_name == "draft":
        from s2pdata.train.draft import DraftConfig as C
        from s2pdata.train.draft import build_stage

        cfg = C(width=width, depth=depth, disc_width=width)
    else:
        from s2pdata.train.refine import RefineConfig as C
        from s2pdata.train.refine import build_stage

        cfg = C(width=width, depth=depth, disc_width=width, encoder_width=encoder_width)
    st = build_stage(cfg)
    G, D = st.G.to(device), st.D.to(device)
    opts = {"G": torch.optim.Adam(G.parameters(), 1e-5), "D": torch.optim.Adam(D.parameters(), 1e-5)}
    b = {
        k: torch.rand(batch, c, crop, crop, device=device) * 2 - 1
        for k, c in (("color", 3), ("sketch", 1), ("hint", 4), ("draft", 3))
    }
    bf16 = device == "cuda"
    nets = Nets(G, D, lambda: torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16))

    def one():
        st.step(b, nets, opts)  # the trainer's own step: D, then G

    one()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shards", default=None)
    p.add_argument("--n", type=int, default=96)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, cuda {torch.cuda.is_available()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(args.shards) if args.shards else demo_build(Path(tmp) / "s", args.n, args.size)
        bench_members(shards, args.repeat)
        bench_loader(shards, args.repeat)
    for stage, width, depth, batch, crop, enc in (
        ("draft", 16, 3, 4, 128, 1.0),
        ("draft", 64, 4, 2, 224, 1.0),
        ("refine", 16, 3, 4, 128, 1.0),
        ("refine", 64, 4, 2, 224, 1.0),
    ):
        t = bench_step(
            stage, width=width, depth=depth, batch=batch, crop=crop, device="cpu", steps=3, encoder_width=enc
        )
        print(
            f"CPU step {stage:6s} width={width} depth={depth} batch={batch} crop={crop}: {t * 1e3:8.0f} ms/step "
            f"= {batch / t:6.1f} images/s"
        )
    if torch.cuda.is_available():
        for stage in ("draft", "refine"):
            t = bench_step(stage, width=64, depth=4, batch=16, crop=224, device="cuda", steps=20)
            print(
                f"GPU step {stage:6s} paper settings (width 64, batch 16, crop 224, bf16): {t * 1e3:.1f} ms/step "
                f"= {16 / t:.0f} images/s"
            )


if __name__ == "__main__":
    main()
