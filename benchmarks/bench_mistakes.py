"""Benchmark: the draft-model mistakes per 512^2 draft against the paper's family, in one run.

    python benchmarks/bench_mistakes.py [--n 8] [--pool-images 25] [--repeat 5]

On 512^2 demo pictures (centre crops) with their trapped-ball regions and XDoG sketch, one thread:
(1) the codec floor (cv2 JPEG q95 encode + decode of the same picture); ``make_draft`` of the
paper's family (paste + warp + spray, pool of about 200 patches as in bench_drafts.py); of the model
family (``style="model"``: the default chances and ranges, ``make_mistakes``), also without the
regions map (``propose_regions`` inside); and each mistake alone (``chances`` 1 for it, 0 for the
others) at its drawn parameters, so every row is a whole draft's cost with that one mistake on.
(2) online drafts as the refinement loader draws them (``synth.online_sample(hints=False)`` on
samples stored and decoded as the build and loader do, the pool memory-mapped) for each
``draft_style``, against decoding the stored ``draft0.jpg``. Figures go to benchmarks/RESULTS.md.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import best_of, cpu_model, jpeg_q95_round_trip, stored_drafts  # noqa: E402  (benchmarks/ is on sys.path)

from s2pdata._jit import single_thread, warmup  # noqa: E402
from s2pdata._rng import sample_rng  # noqa: E402
from s2pdata.decode import decode_image, fit_size  # noqa: E402
from s2pdata.demo import demo_bytes, demo_key  # noqa: E402
from s2pdata.pool import PatchPool  # noqa: E402
from s2pdata.stages.drafts import make_draft  # noqa: E402
from s2pdata.stages.mistakes import MISTAKES, make_mistakes  # noqa: E402
from s2pdata.stages.regions import propose_regions  # noqa: E402
from s2pdata.stages.sketch import extract_sketch  # noqa: E402
from s2pdata.synth import SynthConfig, online_sample, pool_patches  # noqa: E402

STYLES = ("paper", "model", "mix")


def make_pool(args) -> PatchPool:
    """About 200 patches from other demo pictures at 512 (as bench_drafts.py cuts them)."""
    cfg = SynthConfig(size=512, crop="center")
    patches = []
    for i in range(args.pool_images):
        patches += pool_patches(
            demo_bytes(1000 + i, seed=args.seed)[0], key=demo_key(1000 + i), seed=args.seed, cfg=cfg
        )
    return PatchPool(patches)


def draft_costs(args, pool: PatchPool) -> tuple[list[str], dict]:
    """ms per 512^2 draft: codec floor, paper, model (default draw, no regions map), each mistake alone."""
    rows = {"floor": 0.0, "paper": 0.0, "model": 0.0, "model, regions computed": 0.0, **dict.fromkeys(MISTAKES, 0.0)}
    on = dict.fromkeys(MISTAKES, 0)
    for i in range(args.n):
        img = fit_size(decode_image(demo_bytes(i, seed=args.seed)[0]), size=512, crop="center")
        labels = propose_regions(img)
        sketch, _ = extract_sketch(img, method="xdog", rng=sample_rng(args.seed, demo_key(i), "sketch"))
        maps = {"regions": labels, "sketch": sketch}
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)  # cv2 encodes BGR
        rng_of = lambda: sample_rng(args.seed, demo_key(i), "draft", 0)  # noqa: E731
        rows["floor"] += best_of(lambda: jpeg_q95_round_trip(bgr), args.repeat)
        rows["paper"] += best_of(lambda: make_draft(img, pool=pool, rng=rng_of()), args.repeat)
        rows["model"] += best_of(lambda: make_draft(img, pool=pool, rng=rng_of(), style="model", **maps), args.repeat)
        rows["model, regions computed"] += best_of(lambda: make_mistakes(img, rng=rng_of()), args.repeat)
        for name in MISTAKES:
            alone = {"chances": {m: float(m == name) for m in MISTAKES}}
            rows[name] += best_of(lambda: make_mistakes(img, rng=rng_of(), **maps, **alone), args.repeat)
        _, params = make_mistakes(img, rng=rng_of(), **maps)
        for name in MISTAKES:
            on[name] += params[name]["on"]
    ms = {k: 1e3 * v / args.n for k, v in rows.items()}
    floor = ms["floor"]
    text = {
        "floor": "codec floor: cv2 JPEG q95 encode + decode",
        "paper": "make_draft, paper (paste + warp + spray)",
        "model": "make_draft, model (default chances; regions and sketch given)",
        "model, regions computed": "make_mistakes without the regions map (propose_regions inside)",
        "hue": "  hue alone (1-3 regions turned)",
        "desaturate": "  desaturate alone (global + a share of the regions)",
        "cast": "  cast alone (every pixel's chroma toward one colour)",
        "bleed": "  bleed alone (1-6 regions, radius 2-8 px)",
        "lowpass": "  lowpass alone (chroma blur, sigma 1.5-6 px)",
    }
    lines = [
        "model drafts with each mistake on (default chances): " + ", ".join(f"{m} {on[m]}/{args.n}" for m in MISTAKES),
        "",
        f"| per 512^2 draft (best of {args.repeat}, mean over {args.n} pictures) | ms | x codec floor | x paper |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, label in text.items():
        lines.append(f"| {label} | {ms[key]:.2f} | {ms[key] / floor:.2f} | {ms[key] / ms['paper']:.2f} |")
    return lines, ms


def online_costs(args, pool: PatchPool) -> tuple[list[str], dict]:
    """Online draft ms/sample per draft style (memory-mapped pool) against decoding the stored draft0.jpg."""
    cfg = SynthConfig(size=512, drafts=1)
    stored = stored_drafts(args.n, args.seed, pool, cfg)
    sums = {"decode": 0.0, **dict.fromkeys(STYLES, 0.0)}
    with tempfile.TemporaryDirectory() as tmp:
        pool.save(tmp)
        mapped = PatchPool.load(tmp)  # as loaders open the build's pool
        for sample, jpg in stored:
            sums["decode"] += best_of(lambda: cv2.imdecode(jpg, cv2.IMREAD_COLOR), args.repeat)
            for style in STYLES:
                sums[style] += best_of(
                    lambda p=mapped, style=style: online_sample(
                        sample, seed=args.seed, epoch=1, pool=p, hints=False, draft_style=style
                    ),
                    args.repeat,
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
    ]
    for style in STYLES:
        lines.append(
            f"| online_sample(hints=False, draft_style={style!r}), pool memory-mapped | {ms[style]:.2f} | "
            f"{ms[style] / dec:.2f} |"
        )
    return lines, ms


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--n", type=int, default=8, help="pictures (default 8)")
    ap.add_argument("--pool-images", type=int, default=25, help="demo pictures the pool is cut from (default 25)")
    ap.add_argument("--repeat", type=int, default=5, help="best of this many calls (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    single_thread()
    warmup()
    t0 = time.perf_counter()
    pool = make_pool(args)
    print(f"machine: {cpu_model()}, Python {platform.python_version()}, OpenCV {cv2.__version__}, one thread")
    lines, drafts = draft_costs(args, pool)
    print("\n".join(lines) + "\n")
    lines, online = online_costs(args, pool)
    print("\n".join(lines))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"drafts_ms": drafts, "online_ms": online}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
