"""The paper's two claims at small scale (issues 13 and 24): trained on a demo build, scored on a held-out one.

    python benchmarks/bench_learning.py [--scale cpu|gpu] [--dry-run] [--work DIR] [--seeds 3]
        [--claim2-seeds 2] [--draft-steps N] [--refine-steps N]

1. Builds (or reuses, under ``--work``) a demo training build (``--seed 1``), the same pictures with
   the mixed draft family (``--draft-style mix``), and held-out builds of other pictures
   (``--seed 2``) of either family.
2. Claim 1, the draft model uses the hints: trains the drafting stage (``UNet`` of
   ``s2pdata.train.nets``, loss L1 + alpha L_var as ``s2pdata.train.draft``) once per seed and
   scores every held-out picture whole, fed its stored hints and fed an empty hint map: L1 over
   the picture, L1 inside the hinted regions (the build's ``regions`` labels under a hint pixel)
   and the hint error (0-255, on the hint pixels). The no-hints minus hints difference is given
   per seed and with a paired bootstrap 95 % interval over pictures.
3. Claim 2, synthetic drafts teach repair (issue 24, item 4): per draft seed s of
   ``--claim2-seeds``, four refiners (``Refiner`` of ``s2pdata.train.refine``, seed s, equal steps)
   trained with different draft inputs: (a) the paper's synthetic drafts, (a') the mix of the
   paper's family and the draft-model-mistakes family, (a'') the drafts that draft model s itself
   makes of the training crops (stored hints, computed in-process), (b) the clean target. Each is
   fed, for every held-out picture, (i) the real draft of draft model s, (ii) a neutral grey draft,
   (iii) a shuffled draft (another held-out picture's real draft, resized), and scored by its L1
   minus the real draft's L1. The claim holds for a row only where the refiner beats the draft
   and the real draft beats both grey and shuffled, each by a 95 % interval clear of zero. A fifth
   row per seed feeds the same drafts to the (a'') refiner of the next seed (trained on another
   draft model's drafts).
4. The draft realism report (``s2pdata.realism.compare_drafts``) of each claim-2 draft model against
   the held-out synthetic drafts of the paper's family ("before") and of the mix ("after").
5. Writes ``benchmarks/figures/learning-loss.png`` (loss curves), ``learning-samples.png``
   (held-out grid) and ``drafts-real-vs-synthetic.png`` (held-out pictures: the draft model's
   draft, the paper's and the mix's synthetic drafts).

The loop here is the trainers' generator step without the discriminator (GAN weight 0: on two
CPU cores the discriminator would cost steps that L1 needs more); the networks, the draft loss and
the data stream are the library's. Training hints can be denser than the stored ones
(``--hint-p``: stop probability of the hint count); the evaluation always uses the held-out
build's stored hints, drawn by the paper's sampler.

Scales. ``--scale cpu`` (default) is the two-core setting of RESULTS. ``--scale gpu`` takes the
recipes' widths (U-Net width 64, depth 4, full-width Inception encoder, batch 16, 224 crops of
256 px builds), bf16 autocast on CUDA, one model after another on the GPU, sized to finish in
under 8 minutes on one H100-class GPU (an estimate, see ``GPU_ESTIMATE``); without CUDA it runs on
the CPU in float32 and says so. ``--dry-run`` shrinks either scale to tiny models, builds and a few
steps in a temporary folder (unless ``--work``) so every code path runs in well under a minute on
a CPU; its figures go to the work folder, not ``benchmarks/figures``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from s2pdata._rng import sample_rng
from s2pdata.data import make_loader, open_shards, to_model_input
from s2pdata.stages.hints import render_hints, sample_hints
from s2pdata.train.common import variance_loss
from s2pdata.train.nets import UNet
from s2pdata.train.refine import Refiner

FIGURES = Path(__file__).resolve().parent / "figures"

# Every setting a scale fixes; an explicit flag overrides it. The cpu values are RESULTS' defaults.
SCALES = {
    "cpu": dict(
        train_n=400, held_n=64, size=160, seeds=3, claim2_seeds=2, draft_steps=1000, refine_steps=800,
        width=8, depth=3, encoder_width=0.25, crop=128, batch=4, lr=4e-3, jobs=3, workers=0, boot=2000,
    ),
    # the recipes' widths (recipes/draft-224.toml, refine-224.toml); lr above the recipes' 1e-5, which
    # is for 200k steps. Sized by GPU_ESTIMATE: 2 x 800 draft steps + 8 x 400 refine steps (the two
    # (a'') refiners also run a draft forward, 4/3 the cost) = 5,070 step-equivalents of about
    # 4.6 TFLOP (batch 16: 93-96 GFLOP forward per 224 crop, x3 for a training step), 0.05 s each
    # at 100 TFLOP/s: 4.2 min, plus builds, scoring and realism (about 2.5 min): about 7 min.
    "gpu": dict(
        train_n=400, held_n=64, size=256, seeds=2, claim2_seeds=2, draft_steps=800, refine_steps=400,
        width=64, depth=4, encoder_width=1.0, crop=224, batch=16, lr=2e-4, jobs=1, workers=4, boot=2000,
    ),
}  # fmt: skip
DRY = dict(
    train_n=12, held_n=6, size=64, seeds=2, claim2_seeds=2, draft_steps=3, refine_steps=3,
    width=4, depth=2, encoder_width=0.0625, crop=48, batch=2, jobs=1, workers=0, boot=50,
)  # fmt: skip
GPU_ESTIMATE = (
    "an estimate, not a measurement (no GPU was lent): forward FLOPs per 224 crop counted with "
    "torch.utils.flop_counter.FlopCounterMode, a training step taken as 3x its forward, bf16 at an "
    "assumed 100 TFLOP/s effective on one H100 (about a quarter of its dense bf16 peak)"
)

# claim-2 refiners: what each is trained on
VARIANTS = {
    "a": "(a) paper's synthetic drafts",
    "mix": "(a') mix: paper + model-mistake drafts",
    "model": "(a'') the draft model's own drafts",
    "b": "(b) clean (target as draft)",
}
FEEDS = {"real": "real draft", "grey": "grey draft", "shuffled": "shuffled draft"}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu", help="model and data sizes (see the docstring)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes, a few steps: every code path, fast")
    ap.add_argument("--work", default=None, help="builds and models go here, reused (default /tmp/s2p-learning[-gpu])")
    ap.add_argument("--train-n", type=int, help="training pictures (demo --seed 1)")
    ap.add_argument("--held-n", type=int, help="held-out pictures (demo --seed 2)")
    ap.add_argument("--size", type=int, help="build size (short side)")
    ap.add_argument("--seeds", type=int, help="draft training seeds (claim 1)")
    ap.add_argument("--claim2-seeds", type=int, help="draft seeds whose drafts claim 2 refines (<= --seeds)")
    ap.add_argument("--draft-steps", type=int)
    ap.add_argument("--refine-steps", type=int)
    ap.add_argument("--width", type=int, help="U-Net width of both stages")
    ap.add_argument("--depth", type=int, help="U-Net depth of both stages")
    ap.add_argument("--input-skip", action="store_true", help="draft U-Net: feed the input to its last block too")
    ap.add_argument("--encoder-width", type=float, help="refiner's Inception encoder width")
    ap.add_argument("--crop", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--alpha", type=float, default=0.01, help="weight of L_var in the draft loss")
    ap.add_argument("--hint-p", type=float, default=0.03, help="training hint count stop prob. (0: stored hints)")
    ap.add_argument("--hint-radius", type=int, default=1, help="training hint squares (2r+1)^2 when resampled")
    ap.add_argument("--draft-mix", type=float, default=0.5, help="(a'): share of model-family drafts in the mix build")
    ap.add_argument("--online-drafts", action="store_true", help="refine (a), (a'): a fresh synthetic draft per epoch")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    ap.add_argument("--jobs", type=int, help="models trained at once (processes; CPU only)")
    ap.add_argument("--workers", type=int, help="loader worker processes per model")
    ap.add_argument("--eval-n", type=int, default=0, help="score at most N held-out pictures (0: all)")
    ap.add_argument("--boot", type=int, help="bootstrap resamples")
    ap.add_argument("--only-draft", action="store_true", help="probe: claim 1 with one seed, no figures")
    ap.add_argument("--no-realism", action="store_true", help="skip the draft realism report")
    ap.add_argument("--tag", default="", help="suffix of the figure names")
    args = ap.parse_args(argv)
    fixed = {**SCALES[args.scale], **(DRY if args.dry_run else {})}
    for key, value in fixed.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.claim2_seeds > args.seeds:
        ap.error(
            f"--claim2-seeds {args.claim2_seeds} needs as many draft seeds: pass --seeds {args.claim2_seeds} or more"
        )
    if args.crop > args.size:
        ap.error(f"--crop {args.crop} is larger than the builds' --size {args.size}: pass --crop {args.size} or less")
    if not 0 <= args.draft_mix <= 1:
        ap.error(f"--draft-mix must be in [0, 1], got {args.draft_mix}")
    args.device = "cuda" if args.scale == "gpu" and torch.cuda.is_available() else "cpu"
    if args.device == "cuda":
        args.jobs = 1  # one GPU: one model after another
    return args


def autocast(args):
    """bf16 autocast on CUDA; nothing (float32) on the CPU."""
    if args.device == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# data


def ensure_build(out: Path, n: int, seed: int, size: int, extra: tuple = (), workers: int = 0) -> Path:
    """A demo build at ``out`` (reused when complete); ``extra``: more build flags; ``workers`` 0: the cores (<= 16)."""
    meta = out / "dataset.json"
    if meta.exists() and json.loads(meta.read_text()).get("status") == "complete":
        return out
    workers = str(workers or max(1, min(os.cpu_count() or 1, 16)))
    cmd = [sys.executable, "-m", "s2pdata.build", "--src", f"demo:{n}", "--seed", str(seed), "--size", str(size)]
    cmd += ["--out", str(out), "--workers", workers, "--no-progress", "--overwrite", *extra]
    subprocess.run(cmd, check=True)
    return out


def mix_flags(args) -> tuple:
    return ("--draft-style", "mix", "--draft-mix", str(args.draft_mix))


def train_shards(args, variant: str) -> Path:
    """The build a refiner variant reads: the mix build for (a'), the paper's for the others."""
    return Path(args.work) / (f"train-mix{args.draft_mix}" if variant == "mix" else "train")


def batches(shards: Path, stage: str, args, seed: int, drafter=None, variant: str = "a"):
    """Endless training batches on ``args.device``; hints re-drawn at ``--hint-p`` density when it is set.

    ``drafter``: a draft model whose output on the crop (its sketch and stored hints, as the
    held-out drafts are made) replaces the stored draft. With ``--online-drafts`` the (a') stream
    draws its fresh drafts from the mix too.
    """
    online = args.online_drafts and stage == "refine" and drafter is None
    style = {"draft_style": "mix", "draft_mix": args.draft_mix} if online and variant == "mix" else {}
    loader = make_loader(
        str(shards), stage=stage, batch_size=args.batch, num_workers=args.workers, mode="resampled", seed=seed,
        crop=args.crop, flip=True, online_hints=False, online_drafts=online, shuffle_buffer=64, **style,
    )  # fmt: skip
    n = 0
    for batch in loader:
        stored = batch["hint"]
        if args.hint_p > 0:
            batch["hint"] = dense_hints(batch["color"], batch["__key__"], args, seed, n)
        n += 1
        x = to_model_input(batch, args.device)
        if drafter is not None:
            with torch.no_grad(), autocast(args):
                hint = to_model_input({"hint": stored}, args.device)["hint"]
                x["draft"] = drafter(torch.cat([x["sketch"], hint], 1)).float().clamp(-1, 1)
        yield x


def dense_hints(color: torch.Tensor, keys: list[str], args, seed: int, n: int) -> torch.Tensor:
    """uint8 hint maps (B, 4, H, W) re-drawn from each uint8 crop with the paper's sampler at ``--hint-p``."""
    maps = []
    for img, key in zip(color.permute(0, 2, 3, 1).numpy(), keys):
        h = sample_hints(img, rng=sample_rng(seed, key, "bench-hints", n), p=args.hint_p)
        maps.append(render_hints(h, img.shape[:2], radius=args.hint_radius))
    return torch.from_numpy(np.stack(maps)).permute(0, 3, 1, 2).contiguous()


def load_heldout(shards: Path, limit: int) -> list[dict]:
    """Held-out pictures as tensors (1, C, H, W) in [-1, 1] plus the hinted-region mask (H, W) bool."""
    out = []
    for s in open_shards(str(shards)):
        if limit and len(out) >= limit:
            break
        mask = s["hint"][..., 3] > 0
        region = np.isin(s["regions"], np.unique(s["regions"][mask])) if mask.any() else mask
        x = to_model_input({name: _batch_of_one(s[name]) for name in ("color", "sketch", "hint")})
        out.append({"key": s["__key__"], **x, "mask": mask, "region": region, "hint_rgb": s["hint"][..., :3]})
    return out


def stored_drafts(shards: Path, keys: list[str]) -> list[tuple[np.ndarray, str]]:
    """Each key's ``draft0`` (H, W, 3) uint8 and its family (``paper`` or ``model``) from a build."""
    found = {}
    for s in open_shards(str(shards)):
        if s["__key__"] in keys:
            rec = s["json"]["drafts"][0]
            found[s["__key__"]] = (s["draft0"], rec["style"] if "style" in rec else "paper")
    return [found[k] for k in keys]


def _batch_of_one(a: np.ndarray) -> torch.Tensor:
    """(H, W[, C]) uint8 -> (1, C, H, W), the layout of a make_loader batch."""
    return torch.from_numpy(np.ascontiguousarray((a[..., None] if a.ndim == 2 else a).transpose(2, 0, 1)))[None]


def to_img(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    x = ((x[0].detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return (x.repeat(3, 1, 1) if x.shape[0] == 1 else x).permute(1, 2, 0).numpy()


# ---------------------------------------------------------------------------------------------
# training


def draft_model(args) -> torch.nn.Module:
    return UNet(5, 3, width=args.width, depth=args.depth, input_skip=args.input_skip)


def refine_model(args) -> torch.nn.Module:
    return Refiner(width=args.width, depth=args.depth, encoder_width=args.encoder_width, concat_draft=True)


def draft_loss(args):
    def loss(G, b):
        pred = G(torch.cat([b["sketch"], b["hint"]], 1))
        l1 = F.l1_loss(pred.float(), b["color"])
        return l1 + args.alpha * variance_loss(pred.float()), l1

    return loss


def refine_loss(clean: bool):
    def loss(G, b):
        pred = G(b["sketch"], b["hint"], b["color"] if clean else b["draft"])
        l1 = F.l1_loss(pred.float(), b["color"])
        return l1, l1

    return loss


def fit(G, loss_fn, stream, steps: int, args, name: str, log_every: int = 25) -> dict:
    """Adam (0.9, 0.99, as the trainers) for ``steps`` steps, lr cosine-decayed to lr/10; L1 history."""
    opt = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps)))
    G.train()
    hist, run, t0 = [], [], time.perf_counter()
    log_every = min(log_every, steps)
    for step in range(1, steps + 1):
        with autocast(args):
            loss, l1 = loss_fn(G, next(stream))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run.append(l1.detach())  # read at log time: no device sync per step
        if step % log_every == 0 or step == steps:
            hist.append((step, float(torch.stack(run).mean())))
            run = []
            dt = time.perf_counter() - t0
            print(f"  {name} step {step}/{steps} L1 {hist[-1][1]:.4f} ({dt / step:.2f} s/step)", flush=True)
    G.eval()
    return {"history": hist, "seconds": time.perf_counter() - t0}


def model_path(args, stage: str, seed: int, variant: str = "a") -> Path:
    """Where one trained model is kept: its name holds every setting it depends on.

    (a) and (b) keep the names of issue 13's bench (``-clean`` for (b)), so its models are reused.
    """
    keys = ["width", "depth", "crop", "batch", "lr", "train_n", "size", "hint_p", "hint_radius"]
    keys += (
        ["alpha"] + (["input_skip"] if args.input_skip else [])
        if stage == "draft"
        else ["encoder_width", "online_drafts"]
    )
    steps = args.draft_steps if stage == "draft" else args.refine_steps
    suffix = {
        "a": "",
        "b": "-clean",
        "mix": f"-mix{args.draft_mix}",
        "model": f"-model{args.draft_steps}-{args.alpha}{'-skip' if args.input_skip else ''}",
    }[variant]
    suffix += "-bf16" if args.device == "cuda" else ""
    name = f"{stage}-{'-'.join(str(getattr(args, k)) for k in keys)}-{steps}-s{seed}{suffix}"
    return Path(args.work) / "models" / f"{name}.pt"


def new_model(args, stage: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # initial weights depend on the seed only
    return draft_model(args) if stage == "draft" else refine_model(args)


def run_job(job: tuple) -> dict:
    """Train one model (in a pool process or in this one) and save it with its loss history; returns the info."""
    args, stage, seed, variant = job
    torch.set_num_threads(args.threads)
    G = new_model(args, stage, seed).to(args.device)
    if stage == "draft":
        stream = batches(train_shards(args, "a"), stage, args, seed)
        info = fit(G, draft_loss(args), stream, args.draft_steps, args, f"draft s{seed}")
    else:
        drafter = load_model(args, "draft", seed)[0] if variant == "model" else None
        stream = batches(train_shards(args, variant), stage, args, seed, drafter, variant)
        info = fit(G, refine_loss(variant == "b"), stream, args.refine_steps, args, f"refine {variant} s{seed}")
    path = model_path(args, stage, seed, variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"G": G.state_dict(), "info": json.dumps(info)}, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return info


def train_all(args, jobs: list[tuple]) -> None:
    """Train every job whose model is not saved yet, ``--jobs`` at a time (one torch thread each)."""
    todo = [j for j in jobs if not model_path(args, *j[1:]).exists()]
    if args.jobs <= 1 or len(todo) <= 1:
        for job in todo:
            run_job(job)
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(min(args.jobs, len(todo))) as pool:
        list(pool.imap_unordered(run_job, todo))


def load_model(args, stage: str, seed: int, variant: str = "a") -> tuple[torch.nn.Module, dict]:
    G = new_model(args, stage, seed)
    saved = torch.load(model_path(args, stage, seed, variant), map_location="cpu", weights_only=True)
    G.load_state_dict(saved["G"])
    return G.to(args.device).eval(), json.loads(saved["info"])


# ---------------------------------------------------------------------------------------------
# evaluation


def l1_of(pred: np.ndarray, target: np.ndarray, where: np.ndarray | None = None) -> float:
    """Mean absolute error of uint8 images in [0, 1] units, over ``where`` pixels (all when None)."""
    d = np.abs(pred.astype(np.float64) - target.astype(np.float64)) / 255
    if where is None:
        return float(d.mean())
    return float(d[where].mean()) if where.any() else math.nan


def psnr_of(pred: np.ndarray, target: np.ndarray) -> float:
    mse = np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


def _on(h: dict, name: str, args) -> torch.Tensor:
    return h[name].to(args.device)


@torch.no_grad()
def score_draft(G, held: list[dict], args) -> dict:
    """Per picture, with stored hints and with an empty hint map: L1, L1 in hinted regions, hint error."""
    out = {f"{m}_{s}": [] for m in ("l1", "region", "hint_err") for s in ("hints", "none")}
    out["drafts"] = []
    for h in held:
        target = to_img(h["color"])
        for setting in ("hints", "none"):
            hint = h["hint"] if setting == "hints" else torch.zeros_like(h["hint"])
            with autocast(args):
                pred_t = G(torch.cat([_on(h, "sketch", args), hint.to(args.device)], 1)).float().cpu()
            pred = to_img(pred_t)
            out[f"l1_{setting}"].append(l1_of(pred, target))
            out[f"region_{setting}"].append(l1_of(pred, target, h["region"]))
            err = (
                np.abs(pred[h["mask"]].astype(np.float64) - h["hint_rgb"][h["mask"]]).mean()
                if h["mask"].any()
                else math.nan
            )
            out[f"hint_err_{setting}"].append(float(err))
            if setting == "hints":
                out["drafts"].append(pred_t.clamp(-1, 1))
    return {k: (v if k == "drafts" else np.array(v)) for k, v in out.items()}


@torch.no_grad()
def score_refine(G, held: list[dict], drafts: list[torch.Tensor], args) -> dict:
    """Per picture: L1 and PSNR of ``G`` refining the given drafts (sketch + stored hints + draft)."""
    l1, psnr, preds = [], [], []
    for h, d in zip(held, drafts):
        with autocast(args):
            pred = to_img(G(_on(h, "sketch", args), _on(h, "hint", args), d.to(args.device)))
        target = to_img(h["color"])
        l1.append(l1_of(pred, target))
        psnr.append(psnr_of(pred, target))
        preds.append(pred)
    return {"l1": np.array(l1), "psnr": np.array(psnr), "images": preds}


def partners(n: int, seed: int = 0) -> list[int]:
    """A fixed derangement: picture i is fed the draft of picture ``partners[i]`` (never itself when n > 1)."""
    order = np.random.default_rng(seed).permutation(n)
    out = [0] * n
    for i in range(n):
        out[order[i]] = int(order[(i + 1) % n])
    return out


def fed_drafts(drafts: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """The three draft inputs of claim 2: the real drafts, neutral grey (0 in [-1, 1]) and shuffled ones
    (another picture's real draft, resized bilinearly to this picture's size when they differ)."""
    shuffled = []
    for i, j in enumerate(partners(len(drafts))):
        d = drafts[j]
        if d.shape != drafts[i].shape:
            d = F.interpolate(d, size=drafts[i].shape[-2:], mode="bilinear", align_corners=False)
        shuffled.append(d)
    return {"real": drafts, "grey": [torch.zeros_like(d) for d in drafts], "shuffled": shuffled}


def bootstrap(diff: np.ndarray, n: int, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``diff`` (NaNs dropped) and its paired bootstrap 95 % interval over pictures."""
    d = diff[~np.isnan(diff)]
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (n, len(d)))].mean(1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# ---------------------------------------------------------------------------------------------
# the two claims


def claim1(args, held: list[dict]) -> tuple[list[dict], list[dict], list]:
    """Score each seed's draft model on the held-out pictures, fed their hints and fed none."""
    scores, infos, models = [], [], []
    for seed in range(args.seeds):
        G, info = load_model(args, "draft", seed)
        infos.append(info)
        scores.append(score_draft(G, held, args))
        models.append(G)
    return scores, infos, models


def claim1_table(args, scores: list[dict]) -> str:
    rows = [
        "| seed | L1 hints | L1 no hints | no - with [95% CI] | hinted-region L1 hints | no hints | no - with [95% CI] "
        "| hint error hints | no hints |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    deltas = {"l1": [], "region": []}
    for seed, s in enumerate(scores):
        cells = [str(seed)]
        for m in ("l1", "region"):
            d, lo, hi = bootstrap(s[f"{m}_none"] - s[f"{m}_hints"], args.boot, seed)
            deltas[m].append(d)
            cells += [f"{np.nanmean(s[f'{m}_hints']):.4f}", f"{np.nanmean(s[f'{m}_none']):.4f}"]
            cells.append(f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]")
        cells += [f"{np.nanmean(s['hint_err_hints']):.1f}", f"{np.nanmean(s['hint_err_none']):.1f}"]
        rows.append("| " + " | ".join(cells) + " |")
    if len(scores) > 1:
        cells = ["mean ± sd over seeds"]
        for m in ("l1", "region"):
            cells += [
                f"{np.mean([np.nanmean(s[f'{m}_hints']) for s in scores]):.4f}",
                f"{np.mean([np.nanmean(s[f'{m}_none']) for s in scores]):.4f}",
                f"{np.mean(deltas[m]):+.4f} ± {np.std(deltas[m], ddof=1):.4f}",
            ]
        cells += [f"{np.mean([np.nanmean(s[f'hint_err_{k}']) for s in scores]):.1f}" for k in ("hints", "none")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def claim2(args, held: list[dict], drafts: list[torch.Tensor], seed: int) -> tuple[dict, dict]:
    """Every refiner variant of ``seed`` fed the real, grey and shuffled drafts: {variant: {feed: scores}}.

    With more than one claim-2 seed, also ``"model-other"``: the (a'') refiner trained on the next
    seed's draft model's drafts, fed this seed's (does it repair a draft model it was not trained on?).
    """
    feeds = fed_drafts(drafts)
    scores, infos = {}, {}
    for variant in VARIANTS:
        G, infos[variant] = load_model(args, "refine", seed, variant)
        scores[variant] = {feed: score_refine(G, held, feeds[feed], args) for feed in FEEDS}
    if args.claim2_seeds > 1:
        G, _ = load_model(args, "refine", other_seed(args, seed), "model")
        scores["model-other"] = {feed: score_refine(G, held, feeds[feed], args) for feed in FEEDS}
    return scores, infos


def other_seed(args, seed: int) -> int:
    """The claim-2 draft seed whose (a'') refiner is also fed ``seed``'s drafts."""
    return (seed + 1) % args.claim2_seeds


def _ci(d: tuple) -> str:
    return f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]"


def verdict(vs_draft: tuple, vs_grey: tuple, vs_shuffled: tuple) -> str:
    """The claim holds where the refiner beats the draft and the real draft beats grey and shuffled
    drafts, each by a 95 % interval below zero; otherwise what failed."""
    failed = []
    if vs_draft[2] >= 0:
        failed.append("worse than the draft" if vs_draft[1] > 0 else "not clearly better than the draft")
    if vs_grey[2] >= 0:
        failed.append("a grey draft does as well" if vs_grey[1] <= 0 else "a grey draft does better")
    if vs_shuffled[2] >= 0:
        failed.append("a shuffled draft does as well" if vs_shuffled[1] <= 0 else "a shuffled draft does better")
    return "**holds**" if not failed else "no: " + "; ".join(failed)


def claim2_table(args, held: list[dict], runs: list[tuple]) -> str:
    """One row per (draft seed, refiner): L1 minus the draft's for each fed draft, real minus grey and
    minus shuffled, the verdict. ``runs``: (seed, drafts, scores) per claim-2 draft seed."""
    targets = [to_img(h["color"]) for h in held]
    rows = [
        "| draft seed | draft L1 (PSNR) | refiner | L1 fed real | real - draft [95% CI] | grey - draft [95% CI] "
        "| shuffled - draft [95% CI] | real - grey [95% CI] | real - shuffled [95% CI] | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for seed, drafts, scores in runs:
        d_img = [to_img(d) for d in drafts]
        base = np.array([l1_of(p, t) for p, t in zip(d_img, targets)])
        base_psnr = np.mean([psnr_of(p, t) for p, t in zip(d_img, targets)])
        labels = dict(VARIANTS)
        if "model-other" in scores:
            labels["model-other"] = f"(a'') trained on draft seed {other_seed(args, seed)}'s drafts"
        for variant, label in labels.items():
            s = {feed: scores[variant][feed]["l1"] for feed in FEEDS}
            vs = {feed: bootstrap(s[feed] - base, args.boot, seed) for feed in FEEDS}
            grey = bootstrap(s["real"] - s["grey"], args.boot, seed)
            shuffled = bootstrap(s["real"] - s["shuffled"], args.boot, seed)
            cells = [str(seed), f"{base.mean():.4f} ({base_psnr:.2f} dB)", label, f"{s['real'].mean():.4f}"]
            cells += [_ci(vs[feed]) for feed in FEEDS] + [_ci(grey), _ci(shuffled), verdict(vs["real"], grey, shuffled)]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def realism(args, held_paper: Path, held_mix: Path, models: list) -> tuple[str, list[str]]:
    """Each claim-2 draft model against the held-out paper family ("before") and mix ("after"): a
    summary table and the full reports."""
    from s2pdata.realism import compare_drafts, format_realism

    names = ["chroma_ratio", "hf_ratio_lightness", "hf_ratio_colour", "region_error", "wrong_hue", "grey_regions"]
    rows = [
        "| draft seed | synthetic family | classifier AUC [95% CI] | chroma ratio model / synth. "
        "| HF L* model / synth. | HF a*b* model / synth. | region Delta E model / synth. "
        "| wrong-hue share model / synth. | grey share model / synth. |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    full = []
    n = args.eval_n or None
    for seed in range(args.claim2_seeds):
        G = models[seed]

        def model_fn(b, G=G):
            with autocast(args):
                return G(torch.cat([b["sketch"], b["hint"]], 1)).float()

        for family, shards in (("paper (before)", held_paper), (f"mix {args.draft_mix} (after)", held_mix)):
            rep = compare_drafts(model_fn, str(shards), n=n, seed=0, device=args.device)
            c = rep["classifier"]
            auc = "not trained" if c.get("auc") is None else f"{c['auc']:.3f}"
            if c.get("ci95"):
                auc += f" [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]"
            cells = [str(seed), family, auc]
            for name in names:
                st = rep["statistics"][name]
                cells.append(" / ".join("-" if st[k] is None else f"{st[k]:.3f}" for k in ("model", "synthetic")))
            rows.append("| " + " | ".join(cells) + " |")
            full.append(f"draft seed {seed}, held-out {family}:\n{format_realism(rep)}")
    return "\n".join(rows), full


# ---------------------------------------------------------------------------------------------
# figures

COLORS = [(31, 119, 180), (44, 160, 44), (148, 103, 189), (214, 39, 40), (255, 127, 14), (23, 190, 207)]


def plot_panel(title: str, series: list[tuple[str, list]], w: int = 420, h: int = 300) -> np.ndarray:
    """Training L1 against step, one polyline per series (RGB uint8 panel)."""
    img = np.full((h, w, 3), 255, np.uint8)
    x0, y0, x1, y1 = 50, 30, w - 10, h - 30
    xs = [s for _, hist in series for s, _ in hist]
    ys = [v for _, hist in series for _, v in hist]
    lo, hi = min(ys), max(ys)
    hi = hi if hi > lo else lo + 1e-3
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title, (x0, 20), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for v, y in ((hi, y0), (lo, y1)):
        cv2.putText(img, f"{v:.3f}", (2, y + 4), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"step {max(xs)}", (x1 - 70, h - 10), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "train L1", (x0, h - 10), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, hist) in enumerate(series):
        pts = [(x0 + (x1 - x0) * s / max(xs), y1 - (y1 - y0) * (v - lo) / (hi - lo)) for s, v in hist]
        c = COLORS[i % len(COLORS)]
        cv2.polylines(img, [np.round(pts).astype(np.int32)], False, c, 2, cv2.LINE_AA)
        cv2.putText(img, name, (x1 - 180, y0 + 16 + 14 * i), font, 0.38, c, 1, cv2.LINE_AA)
    return img


def loss_figure(path: Path, draft_infos: list[dict], refine_infos: dict) -> None:
    """Training L1 of the draft models and of the seed-0 refiners."""
    left = plot_panel("draft stage", [(f"seed {i}", info["history"]) for i, info in enumerate(draft_infos)])
    right = plot_panel(
        "refinement stage, seed 0",
        [(VARIANTS[v].split(" ", 1)[0], info["history"]) for v, info in refine_infos.items()],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate([left, right], 1), cv2.COLOR_RGB2BGR))


def _square(img: np.ndarray, side: int) -> np.ndarray:
    """The centre square of ``img``, resized to ``side``."""
    s = min(img.shape[:2])
    top, left = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
    return cv2.resize(
        np.ascontiguousarray(img[top : top + s, left : left + s]), (side, side), interpolation=cv2.INTER_AREA
    )


def grid(path: Path, labels: list[str], rows: list[tuple[str, list[np.ndarray]]], side: int = 160) -> None:
    """Labelled columns, one row per picture keyed on the left; centre squares of each image."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    key_w = 110
    band = np.full((18, key_w + side * len(labels), 3), 255, np.uint8)
    for j, label in enumerate(labels):
        cv2.putText(band, label, (key_w + side * j + 3, 13), font, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    lines = [band]
    for key, cols in rows:
        tag = np.full((side, key_w, 3), 255, np.uint8)
        cv2.putText(tag, key, (3, side // 2), font, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        lines.append(np.concatenate([tag] + [_square(c, side) for c in cols], 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(lines, 0), cv2.COLOR_RGB2BGR))


def _hint_vis(h: dict) -> np.ndarray:
    return np.where(h["mask"][..., None], h["hint_rgb"], 255).astype(np.uint8)


def sample_figure(path: Path, held: list[dict], G_draft, drafts, refined: dict, args, rows: int = 6) -> None:
    """Held-out grid: sketch | hints | draft, no hints | draft | each refiner on the real draft | target."""
    labels = ["sketch", "hints", "draft, no hints", "draft"] + [VARIANTS[v].split(" ", 1)[0] for v in VARIANTS]
    out = []
    for i, h in enumerate(held[:rows]):
        with torch.no_grad(), autocast(args):
            none = G_draft(torch.cat([_on(h, "sketch", args), torch.zeros_like(_on(h, "hint", args))], 1))
        cols = [to_img(h["sketch"]), _hint_vis(h), to_img(none), to_img(drafts[i])]
        cols += [refined[v]["real"]["images"][i] for v in VARIANTS] + [to_img(h["color"])]
        out.append((h["key"], cols))
    grid(path, labels + ["target"], out)


def drafts_figure(path: Path, held: list[dict], drafts, paper: list, mix: list, rows: int = 6) -> None:
    """The same held-out pictures: sketch + hints | the draft model's draft | the paper's synthetic draft
    | the mix's synthetic draft (its family written on it) | target."""
    labels = ["sketch + hints", "draft model (seed 0)", "paper's synthetic", "mix's synthetic", "target"]
    out = []
    for i, h in enumerate(held[:rows]):
        sketch = to_img(h["sketch"])
        sketch = np.where(h["mask"][..., None], h["hint_rgb"], sketch).astype(np.uint8)
        mixed = _square(mix[i][0], 160)
        cv2.putText(mixed, mix[i][1], (3, 154), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(mixed, mix[i][1], (3, 154), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        out.append((h["key"], [sketch, to_img(drafts[i]), paper[i][0], mixed, to_img(h["color"])]))
    grid(path, labels, out)


# ---------------------------------------------------------------------------------------------


def settings_line(args) -> str:
    hints = f"re-drawn, stop prob. {args.hint_p}, radius {args.hint_radius}" if args.hint_p else "stored (build's)"
    where = f"{args.device}{', bf16 autocast' if args.device == 'cuda' else ', float32'}"
    return (
        f"scale {args.scale}{' (dry run)' if args.dry_run else ''} on {where}; "
        f"U-Net width {args.width} depth {args.depth}{', draft input skip' if args.input_skip else ''}, "
        f"refiner encoder width {args.encoder_width}; crop {args.crop}, "
        f"batch {args.batch}, Adam lr {args.lr} (cosine to lr/10), alpha {args.alpha}, no GAN; training hints "
        f"{hints}; draft {args.draft_steps} steps x {args.seeds} seeds, refine {args.refine_steps} steps x "
        f"{len(VARIANTS)} variants x {args.claim2_seeds} seeds; mix build --draft-mix {args.draft_mix}; "
        f"train demo:{args.train_n} seed 1, held-out demo:{args.held_n} seed 2, {args.size} px; "
        f"torch threads {torch.get_num_threads()}"
        + (f"; steps sized for under 8 min on one H100: {GPU_ESTIMATE}" if args.scale == "gpu" else "")
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.work is None and args.dry_run:
        with tempfile.TemporaryDirectory(prefix="s2p-learning-dry-") as tmp:
            args.work = tmp
            return run(args)
    if args.work is None:
        args.work = "/tmp/s2p-learning" + ("-gpu" if args.scale == "gpu" else "")
    return run(args)


def run(args) -> int:
    torch.set_num_threads(args.threads)
    if args.scale == "gpu" and args.device == "cpu":
        print("bench_learning: CUDA is not available: --scale gpu runs on the CPU in float32", flush=True)
    t0 = time.perf_counter()
    work = Path(args.work)
    figures = work / "figures" if args.dry_run else FIGURES
    bw = 1 if args.dry_run else 0  # tiny builds: no worker pool to start
    ensure_build(work / "train", args.train_n, 1, args.size, workers=bw)
    held_paper = ensure_build(work / "heldout", args.held_n, 2, args.size, workers=bw)
    if not args.only_draft:
        ensure_build(train_shards(args, "mix"), args.train_n, 1, args.size, mix_flags(args), bw)
        held_mix = ensure_build(work / f"heldout-mix{args.draft_mix}", args.held_n, 2, args.size, mix_flags(args), bw)
    held = load_heldout(held_paper, args.eval_n)
    print(settings_line(args), flush=True)
    if args.only_draft:
        args.seeds = 1
    c2 = range(0 if args.only_draft else args.claim2_seeds)
    # round 1: the draft models first (round 2 needs them), then the refiners that do not
    jobs = [(args, "draft", seed, "a") for seed in range(args.seeds)]
    jobs += [(args, "refine", seed, v) for seed in c2 for v in VARIANTS if v != "model"]
    t1 = time.perf_counter()
    train_all(args, jobs)
    train_all(args, [(args, "refine", seed, "model") for seed in c2])  # round 2: on the draft models' drafts
    t2 = time.perf_counter()
    scores, dinfos, models = claim1(args, held)
    report = ["Claim 1: the draft model uses the hints (held-out, whole pictures, stored hints)"]
    report.append(claim1_table(args, scores))
    infos = list(dinfos)
    if not args.only_draft:
        runs, rinfos = [], {}
        for seed in c2:
            drafts = scores[seed]["drafts"]
            refined, rinfos[seed] = claim2(args, held, drafts, seed)
            runs.append((seed, drafts, refined))
            infos += list(rinfos[seed].values())
        report += ["", "Claim 2: refiners fed each draft seed's held-out drafts (real), grey drafts, shuffled drafts"]
        report.append(claim2_table(args, held, runs))
        report.append(
            f"\nL1 differences over {len(held)} held-out pictures, paired bootstrap 95 % intervals ({args.boot} "
            "resamples); negative = lower error. grey: every pixel 128; shuffled: another held-out picture's real "
            "draft (fixed derangement, resized when the sizes differ). Verdict: the claim holds only where real - "
            "draft, real - grey and real - shuffled are all below zero with their intervals."
        )
        if not args.no_realism:
            table, full = realism(args, held_paper, held_mix, models)
            report += ["", "Draft realism: each draft model against the held-out synthetic drafts", table]
            (work / "realism.txt").write_text("\n\n".join(full) + "\n")
            report.append(f"(full reports: {work / 'realism.txt'})")
        tag = f"-{args.tag}" if args.tag else ""
        loss_figure(figures / f"learning-loss{tag}.png", dinfos, rinfos[0])
        sample_figure(figures / f"learning-samples{tag}.png", held, models[0], runs[0][1], runs[0][2], args)
        keys = [h["key"] for h in held[:6]]
        drafts_figure(
            figures / f"drafts-real-vs-synthetic{tag}.png", held, runs[0][1],
            stored_drafts(held_paper, keys), stored_drafts(held_mix, keys),
        )  # fmt: skip
    wall = time.perf_counter() - t0
    per = ", ".join(f"{i['seconds'] / 60:.1f}" for i in infos)
    report.append(
        f"\nwall {wall / 60:.1f} min: builds {(t1 - t0) / 60:.1f}, training {(t2 - t1) / 60:.1f} ({args.jobs} at once; "
        f"per model, drafts then refiners by seed (a, a', a'', b), saved runs' own times {per} min), "
        f"scoring {(time.perf_counter() - t2) / 60:.1f}"
    )
    print("\n".join(report), flush=True)
    (work / "report.md").write_text(settings_line(args) + "\n\n" + "\n".join(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
