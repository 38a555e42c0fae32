"""Benchmark: draft synthesis per 512^2 sample against the codec floor; batched torch warp.

    python benchmarks/bench_drafts.py [--n 16] [--pool-images 25] [--repeat 5]

(1) ``make_draft`` (paste + warp + spray, docs/method.md, Drafts) on 512^2 demo pictures with a
pool of about 200 patches cut from other demo pictures at 512 (``synth.pool_patches``: half
rectangles, half trapped-ball regions), one thread, per-stage split, as a ratio to the codec
floor measured in the same run: cv2 JPEG q95 encode + decode of the same 512^2 image.
(2) online drafts, as the refinement loader draws them (``synth.online_sample(hints=False)``): on
samples made and stored the way the build does (``make_sample`` at 512, short side; ``encode_sample``,
then ``decode_sample`` as the loader reads them), with (1)'s pool saved and loaded memory-mapped, or
with the sample's own regions; against decoding the stored ``draft0.jpg`` (``cv2.imdecode``), which is
what a loader without online drafts pays instead.
(3) ``warp_batch_torch`` throughput, B = 16 images of 3x224x224 (GPU when
``torch.cuda.is_available()``, else CPU with one thread), against ``warp_image`` (cv2) one image
at a time. figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import best_of, jpeg_q95_round_trip, stored_drafts  # noqa: E402  (benchmarks/ is on sys.path)

from s2pdata._jit import single_thread, warmup  # noqa: E402
from s2pdata._rng import sample_rng  # noqa: E402
from s2pdata.decode import decode_image, fit_size  # noqa: E402
from s2pdata.demo import demo_bytes, demo_key  # noqa: E402
from s2pdata.pool import PatchPool  # noqa: E402
from s2pdata.stages.drafts import make_draft, paste_patches  # noqa: E402
from s2pdata.stages.spray import SprayParams, apply_spray  # noqa: E402
from s2pdata.stages.warp import AffineParams, make_affine_params, warp_batch_torch, warp_image  # noqa: E402
from s2pdata.synth import SynthConfig, online_sample, pool_patches  # noqa: E402


def demo_512(index: int, seed: int) -> np.ndarray:
    """Demo picture ``index`` decoded and fitted to a 512^2 centre crop."""
    return fit_size(decode_image(demo_bytes(index, seed=seed)[0]), size=512, crop="center")


def draft_costs(args) -> tuple[list[str], dict]:
    cfg = SynthConfig(size=512, crop="center")
    t0 = time.perf_counter()
    patches = []
    for i in range(args.pool_images):
        patches += pool_patches(
            demo_bytes(1000 + i, seed=args.seed)[0], key=demo_key(1000 + i), seed=args.seed, cfg=cfg
        )
    pool = PatchPool(patches)
    pool_s = time.perf_counter() - t0
    images = [demo_512(i, args.seed) for i in range(args.n)]
    sums = {"floor": 0.0, "draft": 0.0, "paste": 0.0, "warp": 0.0, "spray": 0.0}
    n_pastes = n_sprays = 0
    for i, img in enumerate(images):
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)  # cv2 encodes BGR

        def codec():
            jpeg_q95_round_trip(bgr)

        rng_of = lambda: sample_rng(args.seed, demo_key(i), "draft", 0)  # noqa: E731
        _, params = make_draft(img, pool=pool, rng=rng_of())
        pastes = [(p["patch"], p["angle"], p["scale"], p["row"], p["col"]) for p in params["pastes"]]
        theta = AffineParams.from_json(params["warp"])
        sprays = [SprayParams.from_json(s) for s in params["sprays"]]
        pasted = paste_patches(img, pool, pastes)
        warped = warp_image(pasted, theta)
        n_pastes += len(pastes)
        n_sprays += len(sprays)

        def spray_all():
            out = warped
            for s in sprays:
                out = apply_spray(out, s)

        sums["floor"] += best_of(codec, args.repeat)
        sums["draft"] += best_of(lambda: make_draft(img, pool=pool, rng=rng_of()), args.repeat)
        sums["paste"] += best_of(lambda: paste_patches(img, pool, pastes), args.repeat)
        sums["warp"] += best_of(lambda: warp_image(pasted, theta), args.repeat)
        sums["spray"] += best_of(spray_all, args.repeat)
    ms = {k: 1e3 * v / len(images) for k, v in sums.items()}
    floor = ms["floor"]
    lines = [
        f"pool: {len(pool)} patches from {args.pool_images} demo pictures at 512 "
        f"({sum(p.kind == 'region' for p in pool)} regions), cut in {pool_s:.1f} s; "
        f"{len(images)} drafts, {n_pastes / len(images):.1f} pastes and {n_sprays / len(images):.1f} sprays each",
        "",
        f"| per 512^2 sample (best of {args.repeat}, mean over {len(images)} images) | ms | x codec floor |",
        "| --- | ---: | ---: |",
        f"| codec floor: cv2 JPEG q95 encode + decode | {floor:.2f} | 1.00 |",
        f"| make_draft (all stages + parameter draws) | {ms['draft']:.2f} | {ms['draft'] / floor:.2f} |",
        f"|   paste (rotate + mask copy) | {ms['paste']:.2f} | {ms['paste'] / floor:.2f} |",
        f"|   warp (cv2.warpAffine, reflect) | {ms['warp']:.2f} | {ms['warp'] / floor:.2f} |",
        f"|   spray (mask kernel + blend, all sprays) | {ms['spray']:.2f} | {ms['spray'] / floor:.2f} |",
    ]
    return lines, {"ms": ms, "pool": len(pool)}, pool


def online_costs(args, pool: PatchPool) -> tuple[list[str], dict]:
    """Online draft ms/sample (memory-mapped pool; own regions) against decoding the stored draft0.jpg."""
    cfg = SynthConfig(size=512, drafts=1)
    stored = stored_drafts(args.n, args.seed, pool, cfg)
    sums = {"decode": 0.0, "pool": 0.0, "own": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        pool.save(tmp)
        mapped = PatchPool.load(tmp)  # as loaders open the build's pool
        for sample, jpg in stored:
            sums["decode"] += best_of(lambda: cv2.imdecode(jpg, cv2.IMREAD_COLOR), args.repeat)
            for name, p in (("pool", mapped), ("own", None)):
                sums[name] += best_of(
                    lambda: online_sample(sample, seed=args.seed, epoch=1, pool=p, hints=False), args.repeat
                )
        del mapped
    ms = {k: 1e3 * v / len(stored) for k, v in sums.items()}
    dec = ms["decode"]
    longs = [max(s["color"].shape[:2]) for s, _ in stored]
    lines = [
        f"| online draft per sample (best of {args.repeat}, mean over {len(stored)} samples, short side "
        f"{cfg.size}, long {min(longs)}-{max(longs)}) | ms | x stored-draft decode |",
        "| --- | ---: | ---: |",
        f"| decode the stored draft0.jpg (cv2.imdecode) | {dec:.2f} | 1.00 |",
        f"| online_sample(hints=False), build pool memory-mapped | {ms['pool']:.2f} | {ms['pool'] / dec:.2f} |",
        f"| online_sample(hints=False), the sample's own regions | {ms['own']:.2f} | {ms['own'] / dec:.2f} |",
    ]
    return lines, {"ms": ms}


def torch_warp(args) -> tuple[list[str], dict]:
    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(1)
    b, c, h, w = 16, 3, 224, 224
    rng = np.random.default_rng(args.seed)
    imgs = torch.rand(b, c, h, w, device=device)
    thetas = torch.as_tensor(
        np.stack([make_affine_params((h, w), rng=rng).matrix() for _ in range(b)]), dtype=torch.float32, device=device
    )
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(3):
        warp_batch_torch(imgs, thetas)
    sync()
    reps = 50 if cuda else 5

    def run():
        for _ in range(reps):
            warp_batch_torch(imgs, thetas)
        sync()

    t = best_of(run, 3) / reps
    torch_ips = b / t
    host = (np.asarray(imgs.cpu()).transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    params = [AffineParams(tuple(m.ravel())) for m in thetas.cpu().double().numpy()]

    def cv_all():
        for k in range(b):
            warp_image(host[k], params[k])

    cv_ips = b / best_of(cv_all, 5)
    dev = torch.cuda.get_device_name(0) if cuda else "CPU, 1 torch thread"
    lines = [
        "| warp B=16, 3x224x224 | images/s | x cv2 one at a time |",
        "| --- | ---: | ---: |",
        f"| cv2 warp_image, uint8, one at a time (1 thread) | {cv_ips:.0f} | 1.00 |",
        f"| warp_batch_torch, float32 ({dev}) | {torch_ips:.0f} | {torch_ips / cv_ips:.2f} |",
    ]
    if not cuda:
        lines += [
            "",
            "No GPU on this machine: the torch figure is CPU bilinear float32 (the training-loop "
            "path runs it on GPU); cv2 does uint8 fixed-point on one core.",
        ]
    return lines, {"torch_ips": torch_ips, "cv_ips": cv_ips, "device": dev}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="draft images")
    ap.add_argument("--pool-images", type=int, default=25, help="8 patches per image")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-torch", action="store_true", help="skip the torch warp table")
    ap.add_argument("--out", default="-", help="also write the markdown table to this file ('-': print only)")
    args = ap.parse_args()
    single_thread()
    warmup()
    draft_lines, draft_res, pool = draft_costs(args)
    online_lines, online_res = online_costs(args, pool)
    warp_lines, warp_res = torch_warp(args) if not args.no_torch else ([], {})
    machine = (
        f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}, "
        f"OpenCV {cv2.__version__}"
    )
    text = "\n".join(
        [
            "# Draft synthesis cost (benchmarks/bench_drafts.py)",
            "",
            f"Machine: {machine}; one thread (cv2, numba). Command: "
            f"`python benchmarks/bench_drafts.py --n {args.n} --pool-images {args.pool_images} --repeat {args.repeat}"
            f"{' --no-torch' if args.no_torch else ''}`",
            "",
            *draft_lines,
            "",
            *online_lines,
            "",
            *warp_lines,
            "",
        ]
    )
    print(text)
    print(json.dumps({"drafts": draft_res, "online": online_res, "warp": warp_res}, default=float))
    if args.out != "-":
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
