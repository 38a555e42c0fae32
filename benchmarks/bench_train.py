"""Loader throughput against the raw decode floor, and trainer step time.

    python benchmarks/bench_train.py [--shards DIR] [--n 96] [--size 256]

1. Decode floor: ``open_shards`` (tar read + decode of every field, one process) in samples/s.
2. ``make_loader`` (crop 224, batch 16, resampled stream, steady state after 2 warm-up batches)
   with 0 and 2 workers on the same shards, as a ratio to the floor.
3. Trainer step (D step + G step) time on CPU for a small and the paper-width model, and GPU
   images/s (bf16 autocast) at the paper's settings when CUDA is present.
Without ``--shards`` it writes shards of demo pictures with ``s2pdata.shards`` (JPEG colour,
dilate/absdiff sketch, a few hint squares) so it does not depend on the build's stages.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from s2pdata.data import make_loader, open_shards
from s2pdata.demo import draw_demo
from s2pdata.shards import Schema, commit_stats, encode_sample, shard_name, write_tar


def write_demo_shards(out: Path, n: int, size: int, per_shard: int = 16) -> Path:
    schema = Schema()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        img = draw_demo(i)
        if img.shape[2] == 4:  # RGBA demo picture: composite onto white
            a = img[..., 3:].astype(np.float32) / 255
            img = (img[..., :3] * a + 255 * (1 - a)).round().astype(np.uint8)
        s = size / min(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)  # RGB order
        sketch = 255 - (cv2.dilate(gray, np.ones((3, 3), np.uint8)) - gray)
        hint = np.zeros(img.shape[:2] + (4,), np.uint8)
        for _ in range(7):
            y, x = int(rng.integers(img.shape[0] - 3)), int(rng.integers(img.shape[1] - 3))
            hint[y : y + 3, x : x + 3, :3], hint[y : y + 3, x : x + 3, 3] = img[y + 1, x + 1], 255
        samples.append(
            encode_sample(
                {"__key__": f"demo-{i:06d}", "color": img, "sketch": sketch, "hint": hint, "json": {}}, schema
            )
        )
    for j in range(0, n, per_shard):
        info = write_tar(out / shard_name(j // per_shard), samples[j : j + per_shard])
        commit_stats(out, j // per_shard, {"shard": shard_name(j // per_shard), **info})
    return out


def rate(fn, repeat: int = 2) -> tuple[float, int]:
    """Best of ``repeat`` runs (the machine is shared), in items/s."""
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best, n


def bench_loader(shards: Path, stage: str) -> None:
    floor, n = rate(lambda: sum(1 for _ in open_shards(shards)))
    print(f"decode floor (open_shards, 1 process): {floor:8.1f} samples/s over {n} samples")
    for nw in (0, 2):
        # steady state: one resampled stream (workers start once), 2 warm-up batches, then 24 timed
        it = iter(make_loader(shards, stage=stage, batch_size=16, num_workers=nw, mode="resampled", crop=224))
        for _ in range(2):
            next(it)
        r, m = rate(lambda: sum(len(next(it)["__key__"]) for _ in range(12)))
        print(f"make_loader stage={stage} workers={nw}: {r:8.1f} samples/s = {r / floor:.2f} x floor")


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
    from s2pdata.train.common import gan_loss

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
    og, od = torch.optim.Adam(G.parameters(), 1e-5), torch.optim.Adam(D.parameters(), 1e-5)
    b = {
        k: torch.rand(batch, c, crop, crop, device=device) * 2 - 1
        for k, c in (("color", 3), ("sketch", 1), ("hint", 4), ("draft", 3))
    }

    def one():
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
        cond = st.condition(b)
        with ctx:
            pred = st.forward(G, b)
            dl = D(torch.cat([torch.cat([cond, b["color"]], 1), torch.cat([cond, pred.detach()], 1)]))
        ld = gan_loss(dl[:batch], True) + gan_loss(dl[batch:], False)
        od.zero_grad(), ld.backward(), od.step()
        with ctx:
            df = D(torch.cat([cond, pred], 1))
        lg, _ = st.g_loss(pred, b, df)
        og.zero_grad(), lg.backward(), og.step()

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
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, cuda {torch.cuda.is_available()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(args.shards) if args.shards else write_demo_shards(Path(tmp) / "s", args.n, args.size)
        bench_loader(shards, "draft")
        bench_loader(shards, "refine")
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
