"""What a --drafts-from draft costs per picture against a paper draft and a model-family draft, on the CPU
with one thread, at short side 256 and 512. Two networks with seeded random weights: the CPU recipe's
shape (width 8, depth 3, input skip) and the paper's width (64, depth 4).

    python benchmarks/bench_drafts_from.py
"""

import dataclasses
import statistics
import tempfile
import time

import cv2
import numba
import torch

from s2pdata._jit import warmup
from s2pdata._rng import sample_rng
from s2pdata.demo import demo_bytes, demo_key
from s2pdata.modeldrafts import CheckpointDrafter
from s2pdata.pool import PatchPool
from s2pdata.stages.drafts import cut_rect_patch, cut_region_patches, make_draft
from s2pdata.synth import SynthConfig, make_sample
from s2pdata.train.draft import DraftConfig, build_networks

torch.set_num_threads(1)
cv2.setNumThreads(1)
numba.set_num_threads(1)
warmup()
tmp = tempfile.mkdtemp()


def ckpt(width, depth, skip):
    torch.manual_seed(0)
    cfg = DraftConfig(width=width, depth=depth, input_skip=skip, lambda_gan=0.0)
    G, _ = build_networks(cfg)
    p = f"{tmp}/d{width}.pt"
    torch.save({"stage": "draft", "step": 1, "config": dataclasses.asdict(cfg), "models": {"G": G.state_dict()}}, p)
    return p, sum(x.numel() for x in G.parameters())


def best(f, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


nets = {"cpu-recipe (w8 d3 skip)": ckpt(8, 3, True), "paper (w64 d4)": ckpt(64, 4, False)}
for size in (256, 512):
    cfg = SynthConfig(size=size, drafts=1)
    samples = [make_sample(demo_bytes(i)[0], key=demo_key(i), seed=0, cfg=cfg) for i in range(4)]
    rng = sample_rng(0, "pool", "x")
    pool = PatchPool(
        [p for s in samples for p in cut_region_patches(s["color"], s["regions"], 4, rng=rng)]
        + [cut_rect_patch(s["color"], rng=rng) for s in samples]
    )
    n = 5
    paper = statistics.median(
        best(lambda s=s: make_draft(s["color"], pool=pool, rng=sample_rng(0, s["__key__"], "d")), n) for s in samples
    )
    model = statistics.median(
        best(
            lambda s=s: make_draft(
                s["color"],
                pool=pool,
                rng=sample_rng(0, s["__key__"], "d"),
                style="model",
                regions=s["regions"],
                sketch=s["sketch"],
            ),
            n,
        )
        for s in samples
    )
    data = [demo_bytes(i)[0] for i in range(4)]
    whole = statistics.median(
        best(lambda i=i: make_sample(data[i], key=demo_key(i), seed=0, cfg=cfg, pool=pool), 3) for i in range(4)
    )
    shape = samples[0]["color"].shape[:2]
    print(
        f"{size}px (first picture {shape[0]}x{shape[1]}): paper draft {paper * 1e3:.1f} ms, "
        f"model-family draft {model * 1e3:.1f} ms, make_sample with a paper draft {whole * 1e3:.1f} ms"
    )
    for name, (path, params) in nets.items():
        d = CheckpointDrafter(path, device="cpu")
        net = statistics.median(
            best(lambda s=s: d(s["sketch"], s["hint"]), n if "recipe" in name else 2) for s in samples
        )
        print(
            f"   {name}, {params / 1e6:.2f} M params: {net * 1e3:.1f} ms = {net / paper:.1f}x a paper draft, "
            f"{net / whole:.2f}x a whole sample"
        )
