"""Score a trained draft or refine checkpoint on held-out shards.

    python -m s2pdata.evaluate --checkpoint runs/draft/ckpt.pt --shards heldout/ [--limit N] [--out scores.json]
        [--device auto|cpu|cuda] [--fid-weights googlenet.pth] [--grid sheet.png [--grid-n 8]]

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

``--grid sheet.png`` also writes the first ``--grid-n`` samples of the evaluation order (the same
ones every run) as one labelled PNG: a row per sample under a band with its key, in columns
sketch | hints [| draft] | no-hint output | output | target, where "no-hint output" is the model
run with the hint map cleared (refine checkpoints keep their draft) and "draft" is the draft a
refine checkpoint was given. Each picture is fitted into a ``GRID_TILE`` px square: enlarged by a
whole factor (every pixel a block of equal pixels) or shrunk (area average); the first sample's
fitted size sets the tiles, and a picture of another shape is centred in its tile on grey.
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
UNITS = {  # the JSON's "units" entry: the unit of "images" and of every score of a setting
    "images": "images: how many were scored, each once with its hints and once without",
    "l1": "no unit, 0 to 1 (0: identical): mean absolute error over pixels and the three RGB channels of the "
    "8-bit values divided by 255, averaged over images",
    "psnr": "dB: 10 log10(255^2 / MSE) of the 8-bit RGB values, capped at 100 per image (identical images score "
    "the cap), averaged over images",
    "ssim": "no unit, -1 to 1 (1: identical): scikit-image SSIM of the RGB images, data range 255, a 7 px "
    "uniform window (smaller on images under 7 px), averaged over images",
    "hint_error": "8-bit levels, 0-255: mean absolute RGB error inside the hint masks against the hint colours, "
    "averaged over the images with hints; null when none has any",
    "images_with_hints": "images: how many have at least one hint pixel (hint_error averages over them)",
    "fid": "squared distance in feature space (no unit), 0 or more (0: the same feature statistics): Frechet "
    "distance of the 1024-d GoogLeNet pool features of images resized to 224 x 224; not comparable with "
    "published Inception-V3 FIDs",
}
GRID_TILE = 256  # px: the square each picture of the --grid sheet is fitted into
GRID_MIN_WIDTH = 128  # px: the narrowest tile, so that every column title fits at full font size
GRID_MAX = 64  # rows of the --grid sheet at most: 64 rows of 256 px tiles are already an 18,000 px tall PNG
GRID_N = 8  # rows of the --grid sheet by default
GRID_BACKGROUND = 200  # grey around a picture that does not fill its tile (white is the sketches' paper)


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
    on_batch: Callable | None = None,
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
    on_batch : callable, optional
        Called after each batch as ``on_batch(batch, target, preds)``: the model-input batch, the
        ``take`` scored targets and ``{setting: predictions}``, both (take, H, W, 3) uint8 (a
        ``GridRows`` collects the ``--grid`` sheet this way).

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
            preds = {}
            for setting in SETTINGS:
                b = batch if setting == "hints" else {**batch, "hint": torch.zeros_like(batch["hint"])}
                out = model_fn(b)[:take]
                if not bool(torch.isfinite(out).all()):  # to_uint8 would clamp NaN into a plausible black image
                    raise ValueError(
                        f"the model's output for sample {batch['__key__'][0] if '__key__' in batch else n} "
                        f"({setting}) holds NaN or infinity, so it cannot be scored; the weights are finite, so the "
                        "network overflows on this input: evaluate an earlier checkpoint or retrain with a lower lr"
                    )
                pred = preds[setting] = to_uint8(out)
                rows[setting] += [_image_scores(target[i], pred[i], mask[i], hint_rgb[i]) for i in range(take)]
                if fid_features is not None:
                    feats[setting].append(fid_features(out))
            if on_batch is not None:
                on_batch(batch, target, preds)
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


# ---------------------------------------------------------------------------------------------
# the --grid sheet


def grid_columns(stage: str) -> tuple[str, ...]:
    """Column titles of the ``--grid`` sheet, left to right: the inputs, the two outputs, the target."""
    return ("sketch", "hints", *(("draft",) if stage == "refine" else ()), "no-hint output", "output", "target")


def tile_shape(h: int, w: int, tile: int = GRID_TILE) -> tuple[int, int]:
    """The (height, width) of the ``--grid`` sheet's tiles for a first picture of ``h`` x ``w`` px: its
    fitted size in a ``tile`` px square (see ``fit_tile``), at least ``GRID_MIN_WIDTH`` wide (the titles)."""
    if max(h, w) <= tile:
        k = tile // max(h, w)
        th, tw = k * h, k * w
    else:
        th, tw = max(1, round(h * tile / max(h, w))), max(1, round(w * tile / max(h, w)))
    return th, max(tw, GRID_MIN_WIDTH)


def fit_tile(img: np.ndarray, box: tuple[int, int], *, spread: bool = False) -> np.ndarray:
    """One picture of the ``--grid`` sheet: ``img`` fitted into a ``box`` = (height, width) tile, centred on grey.

    A picture that fits is enlarged by the largest whole factor (each pixel a block of equal pixels,
    so the model's pixels are shown as they are); a larger one is shrunk by area averaging. With
    ``spread`` (the hints column, colours on white) each colour first spreads over about two shrunk
    pixels' width (a minimum filter), so that a 3 x 3 hint stays a visible dot of its own colour.

    Shape
    -----
    (H, W, 3) uint8 -> (box[0], box[1], 3) uint8
    """
    import cv2

    (h, w), (th, tw) = img.shape[:2], box
    if h <= th and w <= tw:
        k = min(th // h, tw // w)
        small = np.repeat(np.repeat(img, k, 0), k, 1)
    else:
        scale = min(th / h, tw / w)
        if spread:
            r = 2 * int(np.ceil(1 / scale)) + 1  # a run this long covers one whole shrunk pixel, however aligned
            img = cv2.erode(img, np.ones((r, r), np.uint8))  # minimum: colours spread over the white paper
        size = (max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale))))  # cv2 takes (w, h)
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    out = np.full((th, tw, 3), GRID_BACKGROUND, np.uint8)
    top, left = (th - small.shape[0]) // 2, (tw - small.shape[1]) // 2
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return out


class GridRows:
    """Collects the first ``n`` samples that ``score`` sees (its ``on_batch``) as rows of the ``--grid`` sheet.

    The tiles take the shape of the first sample's fitted picture (``tile_shape``), so a build of
    one picture size fills them; a picture of another shape is fitted inside, on grey.
    """

    def __init__(self, n: int, stage: str, tile: int = GRID_TILE):
        self.n, self.stage, self.tile = n, stage, tile
        self.box: tuple[int, int] | None = None
        self.keys: list[str] = []
        self.tiles: dict[str, list[np.ndarray]] = {c: [] for c in grid_columns(stage)}

    def __call__(self, batch: dict, target: np.ndarray, preds: dict) -> None:
        from .train.common import hints_image, to_uint8

        take = min(len(target), self.n - len(self.keys))
        if take <= 0:
            return
        if self.box is None:
            self.box = tile_shape(*target.shape[1:3], self.tile)
        pictures = {
            "sketch": to_uint8(batch["sketch"][:take]),
            "hints": hints_image(batch["hint"][:take]),
            "draft": to_uint8(batch["draft"][:take]) if self.stage == "refine" else None,
            "no-hint output": preds["no_hints"],
            "output": preds["hints"],
            "target": target,
        }
        for column, tiles in self.tiles.items():
            tiles += [fit_tile(x, self.box, spread=column == "hints") for x in pictures[column][:take]]
        keys = batch.get("__key__") or [f"sample {len(self.keys) + i}" for i in range(take)]
        self.keys += [str(k) for k in keys[:take]]

    def save(self, path: Path) -> None:
        """Write the sheet with ``s2pdata.train.common.save_grid``: titles, then per sample a key band and a row."""
        from .train.common import save_grid

        save_grid(Path(path), [(c, np.stack(t)) for c, t in self.tiles.items()], self.keys)


def check_grid(grid, grid_n) -> tuple[Path | None, int]:
    """Validate ``grid`` / ``grid_n`` (``--grid`` / ``--grid-n``) before any work; makes the sheet's folder.

    Returns the sheet's path (None: no sheet) and its number of rows. Raises ``ValueError`` with a
    one-line message naming the flag.
    """
    if grid is None:
        if grid_n is not None:
            raise ValueError(f"--grid-n {grid_n} needs --grid PATH.png, the sheet to write")
        return None, 0
    n = GRID_N if grid_n is None else grid_n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= GRID_MAX:
        raise ValueError(f"--grid-n must be a whole number of samples from 1 to {GRID_MAX}, got {n!r}")
    text = str(grid)
    if "://" in text:
        raise ValueError(f"--grid writes a local file, got the URL {text}; give a local path such as grid.png")
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"--grid {text} is a folder; give the sheet's file name, such as {path / 'grid.png'}")
    if path.suffix.lower() != ".png":
        raise ValueError(f"--grid {text} must end in .png: the sheet is written as a (lossless) PNG")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--grid {text}: cannot make its folder {path.parent} ({exc.strerror or exc})") from None
    return path, int(n)


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
    grid=None,
    grid_n: int | None = None,
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
    grid : str or PathLike, optional
        Also write the first ``grid_n`` samples of the evaluation order as a labelled sheet, a local
        ``.png`` (its folder is made); see the module docstring.
    grid_n : int, optional
        Rows of the sheet, 1 to ``GRID_MAX`` (default ``GRID_N``; fewer when fewer images are scored).

    Returns
    -------
    dict
        ``checkpoint``, ``stage``, ``step``, ``images``, the per-setting scores of ``score``,
        ``units`` (the unit of ``images`` and of each score, ``UNITS``) and, with ``grid``, ``grid``:
        ``path``, ``columns`` (titles, left to right) and ``keys`` (the sample key of each row).

    Raises
    ------
    ValueError
        A bad ``grid`` or ``grid_n``, checked before the checkpoint is read; see also ``score``.
    """
    from .data import make_loader
    from .storage import redact

    grid_path, grid_n = check_grid(grid, grid_n)  # before any work: a bad path must not cost a whole evaluation
    device = resolve_device(device)
    model_fn, info = load_model(checkpoint, device)
    rows = GridRows(grid_n, info["stage"]) if grid_path is not None else None
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
            "each with and without its hints"
            + ("" if rows is None else f"; the first {grid_n} to the sheet {grid_path}"),
            file=sys.stderr,
        )
    from tqdm import tqdm

    with tqdm(total=total, desc="evaluate", unit="img", file=sys.stderr, disable=not progress) as bar:
        scores = score(
            model_fn, loader, device=device, limit=limit, fid_features=features, progress=bar.update, on_batch=rows
        )
    units = UNITS
    if not fid:
        for setting in SETTINGS:
            scores[setting] = {k: v for k, v in scores[setting].items() if not k.startswith("fid")}
        units = {k: v for k, v in UNITS.items() if k != "fid"}
    out = {"checkpoint": str(checkpoint), "stage": info["stage"], "step": info["step"], **scores, "units": units}
    if rows is not None:
        rows.save(grid_path)
        out["grid"] = {"path": str(grid_path), "columns": list(rows.tiles), "keys": rows.keys}
        if progress:
            print(f"evaluate: wrote {grid_path} ({len(rows.keys)} samples: {', '.join(rows.keys)})", file=sys.stderr)
    return out


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
    p.add_argument(
        "--grid",
        default=None,
        metavar="PATH.png",
        help="also write a labelled sheet of the first --grid-n samples (sketch | hints [| draft] | no-hint output "
        "| output | target, a row per sample key); its folder is made",
    )
    p.add_argument(
        "--grid-n",
        default=argparse.SUPPRESS,  # absent, not a default value: --grid-n without --grid is an error
        metavar="N",
        help=f"rows of the --grid sheet, 1 to {GRID_MAX} (default: {GRID_N})",
    )
    p.add_argument("--storage-options", type=options_arg, default=None, metavar="JSON", help=STORAGE_OPTIONS_HELP)
    args = p.parse_args(argv)
    try:
        grid_n = getattr(args, "grid_n", None)
        if grid_n is not None:
            try:
                grid_n = int(grid_n)
            except ValueError:
                raise ValueError(
                    f"--grid-n must be a whole number of samples from 1 to {GRID_MAX}, got {grid_n!r}"
                ) from None
        scores = evaluate(
            args.checkpoint,
            args.shards,
            limit=args.limit,
            seed=args.seed,
            device=args.device,
            fid_weights=args.fid_weights,
            progress=not args.no_progress,
            storage_options=args.storage_options,
            grid=args.grid,
            grid_n=grid_n,
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
