"""Score a trained draft or refine checkpoint on held-out shards.

    python -m s2pdata.evaluate --checkpoint runs/draft/ckpt.pt --shards heldout/ [--limit N] [--out scores.json]
        [--device auto|cpu|cuda] [--fid-weights googlenet.pth]

Consumes a trainer checkpoint (``s2pdata.train``) and shards; produces JSON with, for two hint
settings (``no_hints``: empty hint map; ``hints``: the shards' sparse hints): mean L1 (colour in
[0, 1]), PSNR (capped at ``PSNR_CAP`` dB, so identical images score the cap, never infinity) and
SSIM (``skimage.metrics``, data range 255) against the ground truth, and hint adherence: the mean
absolute colour error (0-255) of the prediction inside the hint masks against the hint colours.
Every score is computed per image on uint8 RGB and averaged over images. Whole images are scored
(the networks are fully convolutional). A held-out build is a second build that shares no
pictures with the training one: ``--src demo:N --seed 1`` against a ``--seed 0`` training build
draws other pictures, or build a separate folder of your own images.

FID is computed only with ``--fid-weights``: a local torchvision GoogLeNet state dict
(``torch.save(torchvision.models.googlenet(weights="DEFAULT").state_dict(), "googlenet.pth")``;
nothing is downloaded here). It is the Frechet distance between the Inception-V1 pool features
(1024-d, images resized to 224 x 224) of the targets and of the predictions: an FID in kind, but
not comparable with published Inception-V3 FIDs. Without the weights the JSON says so.
Refine checkpoints get the shards' stored draft, or one synthesised from the ground truth with
the evaluation seed (the same drafts on every run). A start banner and a progress bar go to
stderr; stdout carries only the JSON, whose ``units`` entry gives the unit of every score. A
model output holding NaN or infinity is refused (``ValueError`` naming the sample), never scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ._safeio import atomic_write
from .storage import STORAGE_OPTIONS_HELP, options_arg

PSNR_CAP = 100.0  # dB: the PSNR of identical images (MSE 0), and the ceiling of every image's PSNR
SETTINGS = ("no_hints", "hints")
FID_NOTE = "not computed: pass --fid-weights googlenet.pth (a torchvision GoogLeNet state dict)"
UNITS = {  # the JSON's "units" entry: what each number of a setting measures
    "l1": "mean absolute error of the RGB values scaled to [0, 1] (0: identical)",
    "psnr": "dB, data range 255, capped at 100 (identical images score the cap)",
    "ssim": "no unit, -1 to 1 (1: identical)",
    "hint_error": "mean absolute RGB error in 8-bit levels (0-255) inside the hint masks, against the hint colours",
    "images_with_hints": "images",
    "fid": "no unit: Frechet distance of 1024-d GoogLeNet pool features (not comparable with Inception-V3 FIDs)",
}


def psnr(target: np.ndarray, pred: np.ndarray) -> float:
    """PSNR in dB of two uint8 images, data range 255, capped at ``PSNR_CAP`` (identical -> the cap)."""
    mse = float(np.mean((target.astype(np.float64) - pred.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, float(10 * np.log10(255.0**2 / mse)))


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    m = min(a.shape[:2])
    win = max(3, min(7, m if m % 2 else m - 1))  # skimage needs an odd window no larger than the image
    return float(structural_similarity(a, b, channel_axis=2, data_range=255, win_size=win))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the FID formula).

    Parameters
    ----------
    a, b : ndarray (N, D) and (M, D), N, M >= 2
        Feature vectors, one row per image.

    Returns
    -------
    float
        ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))`` (numpy only). With centred
        rows ``A``, ``B``, ``S_a S_b`` has the eigenvalues of ``(A B^T)(A B^T)^T / ((N-1)(M-1))``, so
        the last trace is the sum of the singular values of ``A B^T`` over ``sqrt((N-1)(M-1))``
        when there are no more images than features (the usual case; no D x D eigenproblem), and
        the sum of the square roots of the eigenvalues of ``S_a^(1/2) S_b S_a^(1/2)`` otherwise.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Frechet distance needs at least 2 feature vectors per set")
    ca, cb = a - a.mean(0), b - b.mean(0)
    scale = (len(a) - 1) * (len(b) - 1)
    if max(len(a), len(b)) <= a.shape[1]:
        cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(scale)
    else:
        w, v = np.linalg.eigh(ca.T @ ca / (len(a) - 1))
        root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ (cb.T @ cb / (len(b) - 1)) @ root_a), 0, None)).sum()
    traces = (ca**2).sum() / (len(a) - 1) + (cb**2).sum() / (len(b) - 1)
    return max(float(np.sum((a.mean(0) - b.mean(0)) ** 2) + traces - 2 * cross), 0.0)


def googlenet_features(weights: str, device: str = "cpu") -> Callable:
    """Feature function for FID: (B, 3, H, W) in [-1, 1] -> (B, 1024) ndarray, from a local GoogLeNet file."""
    import torch
    import torch.nn.functional as F

    from .train.nets import InceptionEncoder, load_googlenet_weights

    if not Path(weights).is_file():
        raise FileNotFoundError(f"no GoogLeNet weights at {weights} (see python -m s2pdata.evaluate --help)")
    enc = InceptionEncoder(1.0)
    load_googlenet_weights(enc, weights)
    enc = enc.to(device).eval()

    def features(x: torch.Tensor) -> np.ndarray:
        x = F.interpolate(x.float(), size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
        return enc(x).double().cpu().numpy()

    return features


def load_model(checkpoint: str, device: str = "cpu") -> tuple[Callable, dict]:
    """The generator of a trainer checkpoint as ``model_fn(batch) -> (B, 3, H, W)`` in [-1, 1].

    Returns
    -------
    model_fn : callable
        Takes a batch dict of ``make_loader`` (tensors on ``device``).
    info : dict
        ``stage``, ``step``, ``params`` (generator parameter count) and ``config``.
    """
    import torch

    from .train.checkpoint import check_layout, check_shapes, load_checkpoint
    from .train.config import checkpoint_config

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint} (give RUN_DIR/ckpt.pt of python -m s2pdata.train)")
    ck = load_checkpoint(checkpoint)  # a pickle or damaged file: one-line CheckpointError (a ValueError)
    check_layout(ck, checkpoint)  # only G is scored
    stage = ck["stage"]
    if stage == "draft":
        from .train.draft import DraftConfig as Cfg
        from .train.draft import build_stage
    else:
        from .train.refine import RefineConfig as Cfg
        from .train.refine import build_stage
    values = checkpoint_config(Cfg, ck["config"], checkpoint)
    # lambda_gan 0: build_stage makes no discriminator, which scoring never uses
    cfg = Cfg(**{**{k: v for k, v in values.items() if k != "encoder_weights"}, "lambda_gan": 0.0})
    check_shapes(cfg, build_stage, ck["models"], checkpoint, parts=("G",))  # before anything is allocated
    st = build_stage(cfg)
    st.G.load_state_dict(ck["models"]["G"])
    G = st.G.to(device).eval()

    def model_fn(batch: dict) -> torch.Tensor:
        return st.forward(G, batch)

    info = {"stage": stage, "step": int(ck["step"]), "params": sum(p.numel() for p in G.parameters())}
    return model_fn, {**info, "config": ck["config"]}


def _image_scores(target: np.ndarray, pred: np.ndarray, mask: np.ndarray, hint_rgb: np.ndarray) -> dict:
    """Scores of one uint8 (H, W, 3) prediction; ``hint_err`` is None without hint pixels."""
    err = np.abs(pred[mask].astype(np.float64) - hint_rgb[mask]).mean() if mask.any() else None
    return {
        "l1": float(np.abs(pred.astype(np.float64) - target).mean() / 255),
        "psnr": psnr(target, pred),
        "ssim": _ssim(target, pred),
        "hint_err": None if err is None else float(err),
    }


def score(
    model_fn: Callable,
    loader: Iterable[dict],
    *,
    device: str = "cpu",
    limit: int | None = None,
    fid_features: Callable | None = None,
    progress=None,
) -> dict:
    """Scores of ``model_fn`` on the batches of ``loader`` (see module docstring).

    Parameters
    ----------
    model_fn : callable
        ``batch -> (B, 3, H, W)`` tensor in [-1, 1]; called once with the shards' hints and once
        with an all-zero hint map per batch.
    loader : iterable of dict
        uint8 batches of ``make_loader`` (``color``, ``sketch``, ``hint`` [, ``draft``]); any batch
        size. Each is moved to ``device`` and normalised there (``s2pdata.data.to_model_input``).
    limit : int, optional
        Score at most this many images.
    fid_features : callable, optional
        ``(B, 3, H, W) in [-1, 1] -> (B, D)`` ndarray; adds ``fid`` (``frechet_distance`` of the
        targets' and the predictions' features) per setting. None adds ``fid: None`` and a note.
    progress : callable, optional
        Called with the number of images scored by each batch (a progress bar's ``update``).

    Returns
    -------
    dict
        ``images`` and, per setting, ``l1``, ``psnr``, ``ssim``, ``hint_error`` (None when no image
        has hints), ``images_with_hints``, ``fid`` [, ``fid_note``].
    """
    import torch

    from .data import to_model_input
    from .train.common import to_uint8

    rows = {s: [] for s in SETTINGS}
    feats = {"real": [], **{s: [] for s in SETTINGS}}
    n = 0
    with torch.no_grad():
        for batch in loader:
            if limit is not None and n >= limit:
                break
            batch = to_model_input(batch, device)
            take = len(batch["color"]) if limit is None else min(len(batch["color"]), limit - n)
            target = to_uint8(batch["color"])[:take]
            mask = batch["hint"][:take, 3].cpu().numpy() > 0
            hint_rgb = to_uint8(batch["hint"][:, :3] / batch["hint"][:, 3:].clamp_min(1e-6))[:take]
            if fid_features is not None:
                feats["real"].append(fid_features(batch["color"][:take]))
            for setting in SETTINGS:
                b = batch if setting == "hints" else {**batch, "hint": torch.zeros_like(batch["hint"])}
                out = model_fn(b)[:take]
                if not bool(torch.isfinite(out).all()):  # to_uint8 would clamp NaN into a plausible black image
                    raise ValueError(
                        f"the model's output for sample {batch['__key__'][0] if '__key__' in batch else n} "
                        f"({setting}) holds NaN or infinity, so it cannot be scored; the weights are finite, so the "
                        "network overflows on this input: evaluate an earlier checkpoint or retrain with a lower lr"
                    )
                pred = to_uint8(out)
                rows[setting] += [_image_scores(target[i], pred[i], mask[i], hint_rgb[i]) for i in range(take)]
                if fid_features is not None:
                    feats[setting].append(fid_features(out))
            n += take
            if progress is not None:
                progress(take)
    if n == 0:
        raise ValueError("the shards gave no samples to score")
    return {"images": n, **{s: _summary(rows[s], feats["real"], feats[s], fid_features is not None) for s in SETTINGS}}


def _summary(rows: list[dict], real: list, fake: list, fid: bool) -> dict:
    """Per-image scores of one setting -> their means, the hint count and the FID entry."""
    errs = [x["hint_err"] for x in rows if x["hint_err"] is not None]
    out = {
        **{k: float(np.mean([x[k] for x in rows])) for k in ("l1", "psnr", "ssim")},
        "hint_error": float(np.mean(errs)) if errs else None,
        "images_with_hints": len(errs),
    }
    if not fid:
        out.update(fid=None, fid_note=FID_NOTE)
    elif len(rows) < 2:
        out.update(fid=None, fid_note="not computed: FID needs at least 2 images")
    else:
        out["fid"] = frechet_distance(np.concatenate(real), np.concatenate(fake))
    return out


def count_samples(shards, storage_options: dict | None = None) -> int | None:
    """Samples in ``shards`` (paths or URLs) from the build's ``shard-*.stats.json`` files (None when
    one is missing).

    Raises ``FileNotFoundError`` when ``shards`` names no shard.
    """
    from .shards import recorded_counts, shard_paths
    from .storage import redact

    paths = shard_paths(shards, storage_options=storage_options)
    if not paths:
        raise FileNotFoundError(
            f"shards {redact(repr(shards))} hold no shard-*.tar; give a build folder, a tar or a glob"
        )
    counts = recorded_counts(paths, storage_options=storage_options)
    return None if None in counts else sum(counts)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when CUDA is available, else ``cpu``; other names pass through."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device} asked for, but CUDA is not available; use --device cpu")
    return device


def evaluate(
    checkpoint: str,
    shards,
    *,
    limit: int | None = None,
    seed: int = 0,
    device: str = "auto",
    fid: bool = True,
    fid_weights: str | None = None,
    progress: bool = False,
    storage_options: dict | None = None,
) -> dict:
    """Scores of ``checkpoint`` on ``shards`` (see module docstring and ``score``).

    Parameters
    ----------
    checkpoint : str
        ``RUN_DIR/ckpt.pt`` of ``s2pdata.train``.
    shards : str, PathLike or list
        Held-out build folder, tar, glob or a list of them: local paths or URLs (``s3://bucket/run``).
    limit : int, optional
        Score at most this many images.
    seed : int
        Seed of drafts synthesised for refine checkpoints.
    device : str
        ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    fid : bool
        False leaves the ``fid`` keys out.
    fid_weights : str, optional
        A local torchvision GoogLeNet state dict; FID is computed only with it.
    progress : bool
        Print a start banner and a progress bar (rate, ETA) to stderr.
    storage_options : dict, optional
        Options of the filesystem of URLs in ``shards`` (``s2pdata.storage``).

    Returns
    -------
    dict
        ``checkpoint``, ``stage``, ``step``, ``images``, the per-setting scores of ``score`` and
        ``units`` (the unit of each score, ``UNITS``).
    """
    from .data import make_loader
    from .storage import redact

    device = resolve_device(device)
    model_fn, info = load_model(checkpoint, device)
    in_build = count_samples(shards, storage_options)
    total = limit if in_build is None else (in_build if limit is None else min(in_build, limit))
    features = googlenet_features(fid_weights, device) if fid and fid_weights else None
    loader = make_loader(
        shards,
        stage=info["stage"],
        batch_size=1,
        num_workers=0,
        mode="exact",
        seed=seed,
        crop=None,
        flip=False,
        shuffle_buffer=0,
        pin_memory=False,
        storage_options=storage_options,
    )
    if progress:
        print(
            f"evaluate: {info['stage']} checkpoint {checkpoint} (step {info['step']}, generator "
            f"{info['params'] / 1e6:.3g} M parameters) on {device}; data {redact(shards)}: scoring "
            f"{'all' if total is None else total} of {'?' if in_build is None else in_build} images (whole images), "
            "each with and without its hints",
            file=sys.stderr,
        )
    from tqdm import tqdm

    with tqdm(total=total, desc="evaluate", unit="img", file=sys.stderr, disable=not progress) as bar:
        scores = score(model_fn, loader, device=device, limit=limit, fid_features=features, progress=bar.update)
    units = UNITS
    if not fid:
        for setting in SETTINGS:
            scores[setting] = {k: v for k, v in scores[setting].items() if not k.startswith("fid")}
        units = {k: v for k, v in UNITS.items() if k != "fid"}
    return {"checkpoint": str(checkpoint), "stage": info["stage"], "step": info["step"], **scores, "units": units}


def main(argv: list[str] | None = None) -> int:
    """CLI: JSON scores on stdout (and ``--out``); banner and progress on stderr; errors as one line, exit 2."""
    p = argparse.ArgumentParser(
        prog="python -m s2pdata.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="RUN_DIR/ckpt.pt of s2pdata.train")
    p.add_argument(
        "--shards",
        required=True,
        help="held-out build folder, tar or glob (e.g. a demo build with --seed 1); a path or a URL (s3://bucket/run)",
    )
    p.add_argument("--limit", type=int, default=None, help="score at most N images")
    p.add_argument("--seed", type=int, default=0, help="seed of drafts synthesised for refine checkpoints")
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu or cuda")
    p.add_argument("--fid-weights", default=None, help="local torchvision GoogLeNet state dict; enables FID")
    p.add_argument("--no-progress", action="store_true", help="no banner or progress bar on stderr")
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--storage-options", type=options_arg, default=None, metavar="JSON", help=STORAGE_OPTIONS_HELP)
    args = p.parse_args(argv)
    try:
        scores = evaluate(
            args.checkpoint,
            args.shards,
            limit=args.limit,
            seed=args.seed,
            device=args.device,
            fid_weights=args.fid_weights,
            progress=not args.no_progress,
            storage_options=args.storage_options,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"s2pdata.evaluate: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(scores, indent=1)
    print(text)
    if args.out:
        atomic_write(Path(args.out), (text + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
