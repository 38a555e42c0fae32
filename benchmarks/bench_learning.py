"""The paper's two claims at small scale (issue 13, item 2): trained on a demo build, scored on a held-out one.

    python benchmarks/bench_learning.py [--work DIR] [--seeds 3] [--draft-steps N] [--refine-steps N]

1. Builds (or reuses, under ``--work``) a demo training build (``--seed 1``) and a held-out demo
   build (``--seed 2``: other pictures), 160 px.
2. Claim 1, the draft model uses the hints: trains the drafting stage (``UNet`` of
   ``s2pdata.train.nets``, loss L1 + alpha L_var as ``s2pdata.train.draft``) once per seed and
   scores every held-out picture whole, fed its stored hints and fed an empty hint map: L1 over
   the picture, L1 inside the hinted regions (the build's ``regions`` labels under a hint pixel)
   and the hint error (0-255, on the hint pixels). The no-hints minus hints difference is given
   per seed and with a paired bootstrap 95 % interval over pictures.
3. Claim 2, synthetic drafts teach repair: trains the refinement stage (``Refiner`` of
   ``s2pdata.train.refine``) twice for equal steps and seed: (a) on the shards' synthetic drafts,
   (b) with the clean target as its draft input. Both refine the drafts that the seed-0 draft
   model produced for the held-out sketches and hints; L1 / PSNR of the draft alone, (a), (b).
4. Writes ``benchmarks/figures/learning-loss.png`` (loss curves) and
   ``benchmarks/figures/learning-samples.png`` (held-out grid).

The loop here is the trainers' generator step without the discriminator (GAN weight 0: on two
CPU cores the discriminator would cost steps that L1 needs more); the networks, the draft loss and
the data stream are the library's. Training hints can be denser than the stored ones
(``--hint-p``: stop probability of the hint count); the evaluation always uses the held-out
build's stored hints, drawn by the paper's sampler.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
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


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/s2p-learning", help="builds and models go here (reused)")
    ap.add_argument("--train-n", type=int, default=400, help="training pictures (demo --seed 1)")
    ap.add_argument("--held-n", type=int, default=64, help="held-out pictures (demo --seed 2)")
    ap.add_argument("--size", type=int, default=160, help="build size (short side)")
    ap.add_argument("--seeds", type=int, default=3, help="draft training seeds (claim 1)")
    ap.add_argument("--draft-steps", type=int, default=1000)
    ap.add_argument("--refine-steps", type=int, default=800)
    ap.add_argument("--width", type=int, default=8, help="U-Net width of both stages")
    ap.add_argument("--depth", type=int, default=3, help="U-Net depth of both stages")
    ap.add_argument("--input-skip", action="store_true", help="draft U-Net: feed the input to its last block too")
    ap.add_argument("--encoder-width", type=float, default=0.25, help="refiner's Inception encoder width")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--alpha", type=float, default=0.01, help="weight of L_var in the draft loss")
    ap.add_argument("--hint-p", type=float, default=0.03, help="training hint count stop prob. (0: stored hints)")
    ap.add_argument("--hint-radius", type=int, default=1, help="training hint squares (2r+1)^2 when resampled")
    ap.add_argument("--online-drafts", action="store_true", help="refine (a): a fresh synthetic draft per epoch")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    ap.add_argument("--jobs", type=int, default=3, help="models trained at once (processes)")
    ap.add_argument("--eval-n", type=int, default=0, help="score at most N held-out pictures (0: all)")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--only-draft", action="store_true", help="probe: claim 1 with one seed, no figures")
    ap.add_argument("--tag", default="", help="suffix of the figure names")
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# data


def ensure_build(out: Path, n: int, seed: int, size: int) -> Path:
    """A demo build at ``out`` (reused when complete)."""
    meta = out / "dataset.json"
    if meta.exists() and json.loads(meta.read_text()).get("status") == "complete":
        return out
    cmd = [sys.executable, "-m", "s2pdata.build", "--src", f"demo:{n}", "--seed", str(seed), "--size", str(size)]
    cmd += ["--out", str(out), "--workers", "2", "--no-progress", "--overwrite"]
    subprocess.run(cmd, check=True)
    return out


def batches(shards: Path, stage: str, args, seed: int):
    """Endless training batches; hints re-drawn at ``--hint-p`` density when it is set."""
    loader = make_loader(
        str(shards), stage=stage, batch_size=args.batch, num_workers=0, mode="resampled", seed=seed,
        crop=args.crop, flip=True, online_hints=False, online_drafts=args.online_drafts and stage == "refine",
        shuffle_buffer=64,
    )  # fmt: skip
    n = 0
    for batch in loader:
        if args.hint_p > 0:
            batch["hint"] = dense_hints(batch["color"], batch["__key__"], args, seed, n)
        n += 1
        yield to_model_input(batch)


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


def _batch_of_one(a: np.ndarray) -> torch.Tensor:
    """(H, W[, C]) uint8 -> (1, C, H, W), the layout of a make_loader batch."""
    return torch.from_numpy(np.ascontiguousarray((a[..., None] if a.ndim == 2 else a).transpose(2, 0, 1)))[None]


def to_img(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    x = ((x[0].detach().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
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
        l1 = F.l1_loss(pred, b["color"])
        return l1 + args.alpha * variance_loss(pred), l1

    return loss


def refine_loss(ablation: bool):
    def loss(G, b):
        pred = G(b["sketch"], b["hint"], b["color"] if ablation else b["draft"])
        l1 = F.l1_loss(pred, b["color"])
        return l1, l1

    return loss


def fit(G, loss_fn, stream, steps: int, lr: float, name: str, log_every: int = 25) -> dict:
    """Adam (0.9, 0.99, as the trainers) for ``steps`` steps, lr cosine-decayed to lr/10; L1 history."""
    opt = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps)))
    G.train()
    hist, run, t0 = [], [], time.perf_counter()
    for step in range(1, steps + 1):
        loss, l1 = loss_fn(G, next(stream))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run.append(l1.item())
        if step % log_every == 0 or step == steps:
            hist.append((step, float(np.mean(run))))
            run = []
            dt = time.perf_counter() - t0
            print(f"  {name} step {step}/{steps} L1 {hist[-1][1]:.4f} ({dt / step:.2f} s/step)", flush=True)
    G.eval()
    return {"history": hist, "seconds": time.perf_counter() - t0}


def model_path(args, stage: str, seed: int, ablation: bool = False) -> Path:
    """Where one trained model is kept: its name holds every setting it depends on."""
    keys = ["width", "depth", "crop", "batch", "lr", "train_n", "size", "hint_p", "hint_radius"]
    keys += (
        ["alpha"] + (["input_skip"] if args.input_skip else [])
        if stage == "draft"
        else ["encoder_width", "online_drafts"]
    )
    steps = args.draft_steps if stage == "draft" else args.refine_steps
    name = f"{stage}-{'-'.join(str(getattr(args, k)) for k in keys)}-{steps}-s{seed}{'-clean' if ablation else ''}"
    return Path(args.work) / "models" / f"{name}.pt"


def new_model(args, stage: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # initial weights depend on the seed only
    return draft_model(args) if stage == "draft" else refine_model(args)


def run_job(job: tuple) -> dict:
    """Train one model (in a pool process) and save it with its loss history; returns the info."""
    args, stage, seed, ablation = job
    torch.set_num_threads(args.threads)
    G = new_model(args, stage, seed)
    stream = batches(Path(args.work) / "train", stage, args, seed)
    if stage == "draft":
        info = fit(G, draft_loss(args), stream, args.draft_steps, args.lr, f"draft s{seed}")
    else:
        name = f"refine ({'b' if ablation else 'a'})"
        info = fit(G, refine_loss(ablation), stream, args.refine_steps, args.lr, name)
    path = model_path(args, stage, seed, ablation)
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


def load_model(args, stage: str, seed: int, ablation: bool = False) -> tuple[torch.nn.Module, dict]:
    G = new_model(args, stage, seed)
    saved = torch.load(model_path(args, stage, seed, ablation), map_location="cpu", weights_only=True)
    G.load_state_dict(saved["G"])
    return G.eval(), json.loads(saved["info"])


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


@torch.no_grad()
def score_draft(G, held: list[dict]) -> dict:
    """Per picture, with stored hints and with an empty hint map: L1, L1 in hinted regions, hint error."""
    out = {f"{m}_{s}": [] for m in ("l1", "region", "hint_err") for s in ("hints", "none")}
    out["drafts"] = []
    for h in held:
        target = to_img(h["color"])
        for setting in ("hints", "none"):
            hint = h["hint"] if setting == "hints" else torch.zeros_like(h["hint"])
            pred_t = G(torch.cat([h["sketch"], hint], 1))
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
def score_refine(G, held: list[dict], drafts: list[torch.Tensor]) -> dict:
    """Per picture: L1 and PSNR of ``G`` refining the given drafts (sketch + stored hints + draft)."""
    l1, psnr, preds = [], [], []
    for h, d in zip(held, drafts):
        pred = to_img(G(h["sketch"], h["hint"], d))
        target = to_img(h["color"])
        l1.append(l1_of(pred, target))
        psnr.append(psnr_of(pred, target))
        preds.append(pred)
    return {"l1": np.array(l1), "psnr": np.array(psnr), "images": preds}


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
        scores.append(score_draft(G, held))
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


def claim2(args, held: list[dict], drafts: list[torch.Tensor]) -> tuple[dict, dict]:
    """Refiners (a) trained on synthetic drafts, (b) on clean-target drafts, refining ``drafts``."""
    scores, infos = {}, {}
    for name, ablation in (("a", False), ("b", True)):
        G, infos[name] = load_model(args, "refine", 0, ablation)
        scores[name] = score_refine(G, held, drafts)
    return scores, infos


def claim2_table(args, held: list[dict], drafts: list[torch.Tensor], scores: dict) -> str:
    targets = [to_img(h["color"]) for h in held]
    d_img = [to_img(d) for d in drafts]
    base = {"l1": np.array([l1_of(p, t) for p, t in zip(d_img, targets)])}
    base["psnr"] = np.array([psnr_of(p, t) for p, t in zip(d_img, targets)])
    rows = ["| scored output | L1 | PSNR (dB) | L1 minus the draft's [95% CI] |", "| --- | --- | --- | --- |"]
    rows.append(f"| draft alone (claim-1 model, seed 0) | {base['l1'].mean():.4f} | {base['psnr'].mean():.2f} | |")
    names = {"a": "(a) refiner trained on synthetic drafts", "b": "(b) refiner trained on clean-target drafts"}
    for k in ("a", "b"):
        d, lo, hi = bootstrap(scores[k]["l1"] - base["l1"], args.boot)
        rows.append(
            f"| {names[k]} | {scores[k]['l1'].mean():.4f} | {scores[k]['psnr'].mean():.2f} "
            f"| {d:+.4f} [{lo:+.4f}, {hi:+.4f}] |"
        )
    d, lo, hi = bootstrap(scores["a"]["l1"] - scores["b"]["l1"], args.boot)
    rows.append(f"\n(a) minus (b), L1: {d:+.4f} [{lo:+.4f}, {hi:+.4f}] (paired bootstrap over {len(held)} pictures)")
    return "\n".join(rows)


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
        cv2.putText(img, name, (x1 - 150, y0 + 16 + 14 * i), font, 0.38, c, 1, cv2.LINE_AA)
    return img


def loss_figure(path: Path, draft_infos: list[dict], refine_infos: dict) -> None:
    left = plot_panel("draft stage", [(f"seed {i}", info["history"]) for i, info in enumerate(draft_infos)])
    right = plot_panel(
        "refinement stage",
        [
            ("(a) synthetic drafts", refine_infos["a"]["history"]),
            ("(b) clean-target drafts", refine_infos["b"]["history"]),
        ],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate([left, right], 1), cv2.COLOR_RGB2BGR))


def sample_figure(path: Path, held: list[dict], G_draft, drafts, refined: dict, rows: int = 6) -> None:
    """Held-out grid: sketch | hints | draft, no hints | draft | (a) | (b) | target, centre 160 crops."""
    labels = ["sketch", "hints", "draft, no hints", "draft", "(a) synthetic", "(b) clean", "target"]
    lines = []
    for i, h in enumerate(held[:rows]):
        with torch.no_grad():
            none = G_draft(torch.cat([h["sketch"], torch.zeros_like(h["hint"])], 1))
        hint_vis = np.where(h["mask"][..., None], h["hint_rgb"], 255).astype(np.uint8)
        cols = [to_img(h["sketch"]), hint_vis, to_img(none), to_img(drafts[i])]
        cols += [refined["a"]["images"][i], refined["b"]["images"][i], to_img(h["color"])]
        side = min(cols[0].shape[:2])
        top, left = (cols[0].shape[0] - side) // 2, (cols[0].shape[1] - side) // 2
        lines.append(np.concatenate([c[top : top + side, left : left + side] for c in cols], 1))
    side = lines[0].shape[0]
    band = np.full((18, side * len(labels), 3), 255, np.uint8)
    for j, label in enumerate(labels):
        cv2.putText(band, label, (side * j + 3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.concatenate([band] + lines, 0)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


# ---------------------------------------------------------------------------------------------


def settings_line(args) -> str:
    hints = f"re-drawn, stop prob. {args.hint_p}, radius {args.hint_radius}" if args.hint_p else "stored (build's)"
    return (
        f"U-Net width {args.width} depth {args.depth}{', draft input skip' if args.input_skip else ''}, "
        f"refiner encoder width {args.encoder_width}; crop {args.crop}, "
        f"batch {args.batch}, Adam lr {args.lr} (cosine to lr/10), alpha {args.alpha}, no GAN; training hints "
        f"{hints}; draft {args.draft_steps} steps x {args.seeds} seeds, refine {args.refine_steps} steps x 2; "
        f"train demo:{args.train_n} seed 1, held-out demo:{args.held_n} seed 2, {args.size} px; "
        f"torch threads {torch.get_num_threads()}"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    work = Path(args.work)
    ensure_build(work / "train", args.train_n, 1, args.size)
    held = load_heldout(ensure_build(work / "heldout", args.held_n, 2, args.size), args.eval_n)
    print(settings_line(args), flush=True)
    if args.only_draft:
        args.seeds = 1
    jobs = [] if args.only_draft else [(args, "refine", 0, False), (args, "refine", 0, True)]  # longest first
    jobs += [(args, "draft", seed, False) for seed in range(args.seeds)]
    t1 = time.perf_counter()
    train_all(args, jobs)
    t2 = time.perf_counter()
    scores, dinfos, models = claim1(args, held)
    report = ["Claim 1: the draft model uses the hints (held-out, whole pictures, stored hints)"]
    report.append(claim1_table(args, scores))
    if not args.only_draft:
        drafts = scores[0]["drafts"]
        refined, rinfos = claim2(args, held, drafts)
        report += ["", "Claim 2: refining the seed-0 draft model's held-out drafts"]
        report.append(claim2_table(args, held, drafts, refined))
        tag = f"-{args.tag}" if args.tag else ""
        loss_figure(FIGURES / f"learning-loss{tag}.png", dinfos, rinfos)
        sample_figure(FIGURES / f"learning-samples{tag}.png", held, models[0], drafts, refined)
        dinfos = dinfos + [rinfos["a"], rinfos["b"]]
    wall = time.perf_counter() - t0
    per = ", ".join(f"{i['seconds'] / 60:.1f}" for i in dinfos)
    report.append(
        f"\nwall {wall / 60:.1f} min: builds {(t1 - t0) / 60:.1f}, training {(t2 - t1) / 60:.1f} ({args.jobs} at once; "
        f"per model {per} min), scoring {(time.perf_counter() - t2) / 60:.1f}"
    )
    print("\n".join(report), flush=True)
    (work / "report.md").write_text(settings_line(args) + "\n\n" + "\n".join(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
