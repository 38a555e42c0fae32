"""Draft realism: how far a build's synthetic drafts are from the drafts a trained draft model makes.

    python -m s2pdata.inspect SHARDS --draft-realism --checkpoint runs/draft/ckpt.pt [-n N] [--seed S] [--json PATH]

The refinement stage is trained on synthetic flawed drafts (``s2pdata.stages.drafts``) and
used on the drafts of a draft model. This report measures the gap on held-out pictures. Consumes
a draft-stage checkpoint (``s2pdata.train``) and a build with stored drafts (``--drafts 1`` or
more). The model colours each picture's sketch with the build's stored hints, whole, in one pass.
The report produces, side by side for the model's drafts and the stored ``draft0``.. of the same
pictures:

1. **Statistics against the target**, per draft, averaged over drafts (CIELab of OpenCV's float
   conversion: L* 0-100, a*, b* about -128..127; chroma C*ab = sqrt(a*^2 + b*^2), hue = atan2(b*, a*)):

   * ``chroma_ratio``: mean C*ab of the draft / mean C*ab of the target, over all pixels
     (0: grey, 1: as colourful as the target);
   * ``hf_ratio_lightness``, ``hf_ratio_colour``: high-frequency energy of the draft / the
     target's, the energy being the mean square of the image minus its Gaussian blur
     (sigma ``HF_SIGMA`` px) in L*, and in a* and b* together (below 1: blurred or flat; above 1:
     added edges, such as paste borders);
   * ``region_error``: over the regions (the build's trapped-ball ``regions``; connected paper
     pixels between sketch lines when the build has none) of at least ``MIN_REGION_AREA`` px, the
     mean CIE76 distance (Delta E*ab) between the region's mean colour in the draft and in the target;
   * ``wrong_hue``: of the regions whose target colour has a hue (mean colour's C*ab at least
     ``CHROMA_MIN``), the share where the draft's mean colour has one too and it differs by more
     than ``HUE_WRONG`` degrees; ``grey_regions``: the share where the draft's has none.

2. **A classifier** that tells synthetic drafts (positive) from model drafts, and its held-out ROC
   AUC (0.5: indistinguishable; 1: always told apart). It is fixed: ridge logistic regression
   (L2 weight ``L2``, intercept free, class-balanced) fitted by ``NEWTON_STEPS`` Newton steps on
   ``FEATURES`` standardised per-draft features: the six statistics (ratios as logarithms) and a
   small colour histogram of the draft (shares of pixels in ``len(CHROMA_BINS) - 1`` C*ab bins and
   in six 60-degree hue sectors with C*ab at least ``CHROMA_MIN``). Pictures are split in two by
   picture key and seed (``sample_rng(seed, key, "realism-split")``), so a picture's drafts are all
   on the train side or all on the test side; the AUC is the Mann-Whitney rank formula over the
   test drafts, and its 95 % interval a bootstrap over test pictures (``BOOTSTRAP`` resamples drawn
   from ``seed``). The same inputs and seed give the same report. Also reported: each statistic's
   own AUC as a score over all pictures (no training): far from 0.5 either way, it alone separates.

``draft_realism`` returns the report of a checkpoint as a dict (with a ``units`` entry),
``compare_drafts`` that of any model function (a trainer's generator in a benchmark), and
``format_realism`` makes the text table. numpy and OpenCV compute everything but the model's
pass (torch, through ``s2pdata.evaluate.load_model``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from ._check import check_array, check_rgb
from ._rng import sample_rng

HF_SIGMA = 2.0  # px: the Gaussian whose residual is the high-frequency part
CHROMA_MIN = 10.0  # C*ab: a mean colour with less chroma has no hue (wrong_hue, grey_regions, hue histogram)
HUE_WRONG = 30.0  # degrees: a region's draft hue further than this from the target's is wrong
MIN_REGION_AREA = 16  # px: smaller regions are left out of the region statistics
TARGET_CHROMA_FLOOR = 1.0  # C*ab: a target greyer than this on average has no chroma ratio
CHROMA_BINS = (0.0, 5.0, 10.0, 20.0, 40.0, math.inf)  # C*ab bin edges of the classifier's histogram
HUE_SECTORS = 6  # 60-degree hue sectors of the classifier's histogram
L2 = 0.1  # ridge weight on the standardised features
NEWTON_STEPS = 50
BOOTSTRAP = 2000  # resamples of the test pictures for the AUC's interval
RATIO_FLOOR = 1e-3  # log(max(ratio, this)) as a feature

STATISTICS = ("chroma_ratio", "hf_ratio_lightness", "hf_ratio_colour", "region_error", "wrong_hue", "grey_regions")
FEATURES = (
    *STATISTICS,
    *(f"chroma_share_{lo:g}_{hi:g}" for lo, hi in zip(CHROMA_BINS[:-1], CHROMA_BINS[1:])),
    *(f"hue_share_{360 // HUE_SECTORS * k}" for k in range(HUE_SECTORS)),
)
TARGET_VALUES = {  # what the target itself scores against itself
    "chroma_ratio": 1.0,
    "hf_ratio_lightness": 1.0,
    "hf_ratio_colour": 1.0,
    "region_error": 0.0,
    "wrong_hue": 0.0,
    "grey_regions": 0.0,
}
UNITS = {
    "chroma_ratio": "no unit (target 1, grey 0): mean CIELab C*ab of the draft over the target's, whole image",
    "hf_ratio_lightness": f"no unit (target 1): mean square of L* minus its Gaussian blur (sigma {HF_SIGMA:g} px), "
    "draft over target",
    "hf_ratio_colour": "no unit (target 1): the same for a* and b* together, draft over target",
    "region_error": f"Delta E*ab (CIE76, CIELab units): distance of a region's mean colour in draft and target, "
    f"averaged over regions of at least {MIN_REGION_AREA} px",
    "wrong_hue": f"share 0-1 of the regions whose target mean colour has C*ab >= {CHROMA_MIN:g} where the draft's "
    f"has C*ab >= {CHROMA_MIN:g} and a hue more than {HUE_WRONG:g} degrees away",
    "grey_regions": f"share 0-1 of those regions where the draft's mean colour has C*ab < {CHROMA_MIN:g}",
    "auc": "no unit, 0-1 (0.5: the classifier cannot tell synthetic from model drafts; 1: synthetic always scored "
    "higher): ROC AUC by the Mann-Whitney rank formula, ties counted half",
    "statistics": "each statistic averaged over the drafts that have it (n: how many)",
}


# ---------------------------------------------------------------------------------------------
# statistics of one draft against its target


def to_lab(color: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 CIELab (L* 0-100, a*, b*) through OpenCV's float conversion.

    Shape
    -----
    (H, W, 3) uint8 -> (H, W, 3) float32
    """
    color = check_rgb("color", color)
    return cv2.cvtColor(color.astype(np.float32) / np.float32(255.0), cv2.COLOR_RGB2Lab)  # RGB order


def _chroma(lab: np.ndarray) -> np.ndarray:
    """C*ab of a Lab image or of rows of Lab colours."""
    return np.hypot(lab[..., 1], lab[..., 2])


def chroma_ratio(draft_lab: np.ndarray, target_lab: np.ndarray) -> float | None:
    """Mean C*ab of ``draft_lab`` over mean C*ab of ``target_lab``; None when the target's is under
    ``TARGET_CHROMA_FLOOR`` (a grey picture has no ratio).

    Shape
    -----
    (H, W, 3) float32 Lab, (H, W, 3) float32 Lab -> float
    """
    t = float(_chroma(target_lab).mean())
    return None if t < TARGET_CHROMA_FLOOR else float(_chroma(draft_lab).mean()) / t


def hf_energy(planes: np.ndarray, sigma: float = HF_SIGMA) -> float:
    """Mean square of ``planes`` minus their Gaussian blur (``sigma`` px, OpenCV's reflect-101 border).

    Shape
    -----
    (H, W) or (H, W, C) float32 -> float
    """
    planes = np.ascontiguousarray(planes, np.float32)
    blur = cv2.GaussianBlur(planes, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
    return float(np.mean((planes.astype(np.float64) - blur) ** 2))


def _ratio(a: float, b: float) -> float | None:
    return None if b <= 0 else a / b


def hue_difference(h1, h2):
    """Angle in degrees, 0-180, between hues ``h1`` and ``h2`` given in degrees (arrays broadcast)."""
    d = np.abs(np.asarray(h1, np.float64) - np.asarray(h2, np.float64)) % 360.0
    return np.minimum(d, 360.0 - d)


def region_statistics(draft_lab: np.ndarray, target_lab: np.ndarray, labels: np.ndarray) -> dict:
    """Per-region colour error and hue agreement of a draft (see module docstring).

    Parameters
    ----------
    draft_lab, target_lab : ndarray (H, W, 3) float32
        CIELab images (``to_lab``).
    labels : ndarray (H, W) int32
        Regions 1..K; 0 (sketch lines) and regions under ``MIN_REGION_AREA`` px are left out.

    Returns
    -------
    dict
        ``regions`` (counted), ``region_error`` (mean Delta E*ab, None without regions),
        ``hue_regions`` (regions whose target colour has a hue), ``wrong_hue`` and ``grey_regions``
        (shares of those, None without any).

    Shape
    -----
    (H, W, 3), (H, W, 3), (H, W) -> dict
    """
    labels = check_array("labels", labels, dtype=np.int32, ndim=2)
    if labels.shape != draft_lab.shape[:2] or labels.shape != target_lab.shape[:2]:
        raise ValueError(
            f"labels must have the images' shape {target_lab.shape[:2]}, got {labels.shape}; give the regions "
            "of the same picture"
        )
    flat = labels.ravel()
    if flat.size and flat.min() < 0:
        raise ValueError(f"labels must be 0 (lines) or region numbers 1..K, got {int(flat.min())}")
    counts = np.bincount(flat)
    keep = counts >= MIN_REGION_AREA
    keep[0] = False
    if not keep.any():
        return {"regions": 0, "region_error": None, "hue_regions": 0, "wrong_hue": None, "grey_regions": None}
    means = []
    for lab in (draft_lab, target_lab):
        sums = np.stack([np.bincount(flat, lab[..., c].ravel().astype(np.float64), len(counts)) for c in range(3)], 1)
        means.append(sums[keep] / counts[keep, None])
    d, t = means
    error = np.sqrt(((d - t) ** 2).sum(1))
    has_hue = _chroma(t) >= CHROMA_MIN
    d_has_hue = _chroma(d) >= CHROMA_MIN
    gap = hue_difference(np.degrees(np.arctan2(d[:, 2], d[:, 1])), np.degrees(np.arctan2(t[:, 2], t[:, 1])))
    n_hue = int(has_hue.sum())
    return {
        "regions": int(keep.sum()),
        "region_error": float(error.mean()),
        "hue_regions": n_hue,
        "wrong_hue": float((has_hue & d_has_hue & (gap > HUE_WRONG)).sum() / n_hue) if n_hue else None,
        "grey_regions": float((has_hue & ~d_has_hue).sum() / n_hue) if n_hue else None,
    }


def line_regions(sketch: np.ndarray) -> np.ndarray:
    """Fallback regions for builds without ``regions``: 4-connected paper pixels (sketch >= 128)
    numbered 1..K, lines 0.

    Shape
    -----
    (H, W) uint8 -> (H, W) int32
    """
    sketch = check_array("sketch", sketch, ndim=2)
    _, labels = cv2.connectedComponents((sketch >= 128).astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    return labels


def draft_statistics(draft: np.ndarray, target: np.ndarray, labels: np.ndarray) -> dict:
    """The six statistics of one uint8 RGB ``draft`` against its ``target`` over ``labels`` (module
    docstring); a statistic a picture cannot have (a grey target's chroma ratio) is None.

    Shape
    -----
    (H, W, 3) uint8, (H, W, 3) uint8, (H, W) int32 -> dict
    """
    draft, target = check_rgb("draft", draft), check_rgb("target", target)
    if draft.shape != target.shape:
        raise ValueError(f"draft must have the target's shape {target.shape}, got {draft.shape}")
    d, t = to_lab(draft), to_lab(target)
    return _statistics(d, t, labels)


def _statistics(d: np.ndarray, t: np.ndarray, labels: np.ndarray) -> dict:
    """``draft_statistics`` of Lab images."""
    regions = region_statistics(d, t, labels)
    return {
        "chroma_ratio": chroma_ratio(d, t),
        "hf_ratio_lightness": _ratio(hf_energy(d[..., 0]), hf_energy(t[..., 0])),
        "hf_ratio_colour": _ratio(hf_energy(d[..., 1:]), hf_energy(t[..., 1:])),
        "region_error": regions["region_error"],
        "wrong_hue": regions["wrong_hue"],
        "grey_regions": regions["grey_regions"],
    }


def colour_histogram(draft_lab: np.ndarray) -> np.ndarray:
    """Shares of the pixels in each C*ab bin of ``CHROMA_BINS``, then in each of ``HUE_SECTORS``
    hue sectors (from hue 0, the +a* axis) among pixels with C*ab >= ``CHROMA_MIN`` (over all pixels).

    Shape
    -----
    (H, W, 3) float32 Lab -> (len(CHROMA_BINS) - 1 + HUE_SECTORS,) float64
    """
    c = _chroma(draft_lab).ravel()
    chroma = np.histogram(c, bins=np.array(CHROMA_BINS))[0] / c.size
    hue = np.degrees(np.arctan2(draft_lab[..., 2], draft_lab[..., 1])).ravel() % 360.0
    sector = np.minimum((hue // (360.0 / HUE_SECTORS)).astype(np.int64), HUE_SECTORS - 1)
    hues = np.bincount(sector[c >= CHROMA_MIN], minlength=HUE_SECTORS) / c.size
    return np.concatenate([chroma, hues]).astype(np.float64)


def feature_vector(stats: dict, histogram: np.ndarray) -> np.ndarray:
    """A draft's classifier features in ``FEATURES`` order: the statistics (ratios as
    ``log(max(ratio, RATIO_FLOOR))``, a missing one as 0) and its ``colour_histogram``."""
    values = []
    for name in STATISTICS:
        v = stats[name]
        if v is None:
            values.append(0.0)
        elif "ratio" in name:
            values.append(math.log(max(v, RATIO_FLOOR)))
        else:
            values.append(float(v))
    return np.concatenate([np.array(values), histogram])


# ---------------------------------------------------------------------------------------------
# the classifier


def roc_auc(scores, positive) -> float:
    """ROC AUC of ``scores`` for the ``positive`` (bool) rows against the others, by the rank formula
    (Mann-Whitney U over n_pos * n_neg, tied scores sharing their average rank, so a tie counts half).

    Shape
    -----
    (N,), (N,) bool -> float in [0, 1]
    """
    s = np.asarray(scores, np.float64).ravel()
    pos = np.asarray(positive, bool).ravel()
    if s.shape != pos.shape:
        raise ValueError(f"scores and positive must have the same length, got {s.size} and {pos.size}")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc needs both classes, got {n_pos} positive and {n_neg} negative rows")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # 1-based, ties share their average rank
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def fit_logistic(X: np.ndarray, y: np.ndarray, *, l2: float = L2, steps: int = NEWTON_STEPS) -> tuple:
    """Ridge logistic regression, class-balanced, by Newton's method (deterministic: no random start).

    Features are standardised with the training mean and standard deviation (a constant feature
    gets scale 1); the loss is the class-balanced mean log loss plus ``l2 / 2 * |w|^2`` (the
    intercept is not penalised). Returns ``(mean, scale, w, b)``; ``predict_logit`` applies them.

    Shape
    -----
    (N, F) float, (N,) bool -> ((F,), (F,), (F,), float)
    """
    X = np.asarray(X, np.float64)
    y = np.asarray(y, bool)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be (N, F) with N = len(y) = {len(y)}, got shape {X.shape}")
    if y.all() or not y.any():
        raise ValueError("fit_logistic needs both classes in its training rows")
    mean = X.mean(0)
    scale = X.std(0)
    scale[scale == 0] = 1.0
    Z = np.concatenate([(X - mean) / scale, np.ones((len(X), 1))], 1)
    weight = np.where(y, 0.5 / y.sum(), 0.5 / (~y).sum())  # each class weighs one half
    penalty = np.full(Z.shape[1], float(l2))
    penalty[-1] = 0.0
    beta = np.zeros(Z.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(Z @ beta, -50, 50)))
        grad = Z.T @ (weight * (p - y)) + penalty * beta
        hess = (Z * (weight * p * (1 - p))[:, None]).T @ Z + np.diag(penalty) + 1e-9 * np.eye(Z.shape[1])
        beta = beta - np.linalg.solve(hess, grad)
    return mean, scale, beta[:-1], float(beta[-1])


def predict_logit(model: tuple, X: np.ndarray) -> np.ndarray:
    """Logits (positive: synthetic) of ``fit_logistic``'s ``model`` for rows ``X``; shape (N, F) -> (N,)."""
    mean, scale, w, b = model
    return ((np.asarray(X, np.float64) - mean) / scale) @ w + b


def split_pictures(keys: Iterable[str], seed: int) -> set[str]:
    """The test half of the picture keys: the ``ceil(P / 2)`` keys with the lowest
    ``sample_rng(seed, key, "realism-split")`` draw (the same keys and seed, the same split)."""
    keys = sorted(set(keys))
    draws = sorted((float(sample_rng(seed, k, "realism-split").random()), k) for k in keys)
    return {k for _, k in draws[: (len(keys) + 1) // 2]}


def classify(features: np.ndarray, synthetic: np.ndarray, keys: list[str], *, seed: int = 0) -> dict:
    """Train the fixed classifier on one half of the pictures and score it on the other.

    Parameters
    ----------
    features : ndarray (N, F)
        One row per draft (``feature_vector``).
    synthetic : ndarray (N,) bool
        True for a synthetic draft, False for a model draft.
    keys : list of str
        The picture of each row: a picture's rows all go to one side of the split.
    seed : int
        Seed of the split (``split_pictures``) and of the bootstrap.

    Returns
    -------
    dict
        ``auc``, ``ci95`` ([low, high], None with under 2 test pictures), ``train_pictures``,
        ``test_pictures``, ``test_model_drafts``, ``test_synthetic_drafts``.

    Raises
    ------
    ValueError
        Fewer than 4 pictures, or a side without both kinds of draft.
    """
    X = np.asarray(features, np.float64)
    y = np.asarray(synthetic, bool)
    keys = [str(k) for k in keys]
    if not (len(X) == len(y) == len(keys)):
        raise ValueError(
            f"features, synthetic and keys must have one row per draft, got {len(X)}, {len(y)}, {len(keys)}"
        )
    pictures = sorted(set(keys))
    if len(pictures) < 4:
        raise ValueError(f"the classifier needs at least 4 pictures (2 to train on, 2 to test), got {len(pictures)}")
    test_keys = split_pictures(pictures, seed)
    test = np.array([k in test_keys for k in keys])
    for side, rows in (("train", ~test), ("test", test)):
        if y[rows].all() or not y[rows].any():
            raise ValueError(f"the {side} pictures hold only one kind of draft; give pictures with both")
    model = fit_logistic(X[~test], y[~test])
    scores = predict_logit(model, X[test])
    y_test = y[test]
    test_pictures = sorted(test_keys)
    rows_of = {k: np.flatnonzero(np.array(keys)[test] == k) for k in test_pictures}
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(BOOTSTRAP):
        rows = np.concatenate(
            [rows_of[test_pictures[i]] for i in rng.integers(0, len(test_pictures), len(test_pictures))]
        )
        if y_test[rows].all() or not y_test[rows].any():
            continue  # a resample with one kind of draft has no AUC
        aucs.append(roc_auc(scores[rows], y_test[rows]))
    ci = [float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))] if aucs else None
    return {
        "auc": roc_auc(scores, y_test),
        "ci95": ci,
        "train_pictures": len(pictures) - len(test_pictures),
        "test_pictures": len(test_pictures),
        "test_model_drafts": int((~y_test).sum()),
        "test_synthetic_drafts": int(y_test.sum()),
    }


# ---------------------------------------------------------------------------------------------
# the report


def _model_drafts(model_fn, samples: Iterable[dict], device: str):
    """Yield (sample, the model's uint8 RGB draft of it from its sketch and stored hints)."""
    import torch

    from .data import to_model_input

    with torch.no_grad():
        for s in samples:
            batch = {
                "color": torch.from_numpy(np.ascontiguousarray(s["color"].transpose(2, 0, 1)))[None],
                "sketch": torch.from_numpy(np.ascontiguousarray(s["sketch"]))[None, None],
                "hint": torch.from_numpy(np.ascontiguousarray(s["hint"].transpose(2, 0, 1)))[None],
                "__key__": [s["__key__"]],
            }
            out = model_fn(to_model_input(batch, device))
            if not bool(torch.isfinite(out).all()):
                raise ValueError(
                    f"the draft model's output for sample {s['__key__']} holds NaN or infinity; its weights are "
                    "finite, so the network overflows on this input: use an earlier checkpoint or retrain with a "
                    "lower lr"
                )
            x = ((out[0].detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            yield s, x.permute(1, 2, 0).numpy()


def _no_drafts(shards) -> ValueError:
    from .storage import redact

    return ValueError(
        f"shards {redact(str(shards))} hold no stored synthetic drafts (draft0..), so there is nothing to compare "
        "the model's drafts with; rebuild them with python -m s2pdata.build ... --drafts 1 (or more)"
    )


def draft_realism(
    checkpoint: str | Path,
    shards,
    *,
    n: int | None = None,
    seed: int = 0,
    device: str = "auto",
    storage_options: dict | None = None,
    progress: bool = False,
) -> dict:
    """The draft realism report of a draft checkpoint on a build with stored drafts (module docstring).

    Parameters
    ----------
    checkpoint : str or Path
        ``RUN_DIR/ckpt.pt`` of ``python -m s2pdata.train draft``.
    shards : str, PathLike or list
        Held-out build folder, tar or glob (``open_shards``), built with ``--drafts 1`` or more.
    n : int, optional
        Use the first ``n`` pictures (all by default).
    seed : int
        Seed of the classifier's split by picture and of its bootstrap interval.
    device : str
        ``auto`` (CUDA when available), ``cpu`` or ``cuda``, for the model's pass.
    storage_options : dict, optional
        Options of the filesystem of URLs in ``shards`` (``s2pdata.storage``).
    progress : bool
        A progress bar on stderr.

    Returns
    -------
    dict
        ``checkpoint``, ``step`` and ``compare_drafts``' report.

    Raises
    ------
    FileNotFoundError
        No checkpoint file, or ``shards`` name no shard.
    ValueError
        A refine checkpoint, shards without stored drafts, no pictures, a model output that is not
        finite; each checked before the next step's work.
    """
    from .evaluate import load_model, resolve_device

    _check_n(n)
    device = resolve_device(device)
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(
            f"no checkpoint at {checkpoint} (give RUN_DIR/ckpt.pt of python -m s2pdata.train draft)"
        )
    _check_drafts(shards, storage_options)  # before the model is loaded
    model_fn, info = load_model(str(checkpoint), device)
    if info["stage"] != "draft":
        raise ValueError(
            f"checkpoint {checkpoint} is a {info['stage']} checkpoint; the realism report runs a draft-stage model "
            "(RUN_DIR/ckpt.pt of python -m s2pdata.train draft)"
        )
    report = compare_drafts(
        model_fn, shards, n=n, seed=seed, device=device, storage_options=storage_options, progress=progress
    )
    report.update(checkpoint=str(checkpoint), step=info["step"])  # keys already first in the report
    return report


def _check_n(n) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"n must be a whole number of pictures, 1 or more, got {n!r}")


def _check_drafts(shards, storage_options: dict | None) -> None:
    """``ValueError`` unless the first sample of ``shards`` holds a stored draft."""
    from .data import open_shards

    samples = open_shards(shards, storage_options=storage_options)  # FileNotFoundError: no shard
    first = next(samples, None)
    samples.close()
    if first is None:
        raise ValueError(f"shards {shards} hold no samples to compare")
    if not any(k.startswith("draft") for k in first):
        raise _no_drafts(shards)


def _nth(items: list, k: int):
    """``items[k]``, or None past its end."""
    return items[k] if k < len(items) else None


def compare_drafts(
    model_fn,
    shards,
    *,
    n: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    storage_options: dict | None = None,
    progress: bool = False,
) -> dict:
    """The draft realism report of any draft model function (``draft_realism`` without the checkpoint).

    Parameters
    ----------
    model_fn : callable
        ``batch -> (1, 3, H, W)`` tensor in [-1, 1], called under ``torch.no_grad`` on one whole
        picture at a time: ``to_model_input`` of a uint8 batch of ``color``, ``sketch``, ``hint`` (the
        stored hints) and ``__key__``, on ``device`` (``s2pdata.evaluate.load_model``'s function, or a
        trainer's generator wrapped the same way).
    shards, n, seed, storage_options, progress
        As ``draft_realism``.
    device : str
        Where the batches go (``cpu``, ``cuda``).

    Returns
    -------
    dict
        ``checkpoint`` and ``step`` (None here), ``shards``, ``pictures``, ``model_drafts``,
        ``synthetic_drafts``, ``regions`` (which regions were used), ``statistics`` (per statistic:
        ``target``, ``model``, ``synthetic`` means and their counts ``n_model``, ``n_synthetic``),
        ``statistic_auc`` (each statistic alone as a score, synthetic positive), ``classifier``
        (``classify``'s result and ``description``), ``settings`` and ``units``.
    """
    from tqdm import tqdm

    from .data import open_shards
    from .evaluate import count_samples
    from .modeldrafts import is_checkpoint_draft

    _check_n(n)
    _check_drafts(shards, storage_options)
    samples = open_shards(shards, storage_options=storage_options)
    rows, kinds, keys = [], [], []
    stats: dict[str, dict[str, list]] = {name: {"model": [], "synthetic": []} for name in STATISTICS}
    fallback = False
    counts = {"model": 0, "synthetic": 0}
    pictures = 0
    in_build = count_samples(shards, storage_options) if progress else None
    total = n if in_build is None else (in_build if n is None else min(n, in_build))
    with tqdm(total=total, desc="draft realism", unit="img", file=sys.stderr, disable=not progress) as bar:
        for s, model_draft in _model_drafts(model_fn, (s for _, s in zip(range(n or sys.maxsize), samples)), device):
            stored = sorted((k for k in s if k.startswith("draft")), key=lambda k: int(k[5:] or 0))
            records = s["json"].get("drafts") or []
            # a --drafts-from build's network drafts are model drafts already, not synthetic ones
            stored = [k for k in stored if not is_checkpoint_draft(_nth(records, int(k[5:] or 0)))]
            if not stored:
                raise _no_drafts(shards)
            labels = s.get("regions")
            if labels is None:
                fallback = True
                labels = line_regions(s["sketch"])
            t = to_lab(s["color"])
            for kind, draft in [("model", model_draft), *(("synthetic", s[k]) for k in stored)]:
                d = to_lab(draft)
                values = _statistics(d, t, labels)
                for name in STATISTICS:
                    if values[name] is not None:
                        stats[name][kind].append(values[name])
                rows.append(feature_vector(values, colour_histogram(d)))
                kinds.append(kind == "synthetic")
                keys.append(s["__key__"])
                counts[kind] += 1
            pictures += 1
            bar.update(1)
    synthetic = np.array(kinds)
    features = np.stack(rows)
    report_stats = {}
    for name in STATISTICS:
        m, y = stats[name]["model"], stats[name]["synthetic"]
        report_stats[name] = {
            "target": TARGET_VALUES[name],
            "model": float(np.mean(m)) if m else None,
            "synthetic": float(np.mean(y)) if y else None,
            "n_model": len(m),
            "n_synthetic": len(y),
        }
    statistic_auc = {}
    for j, name in enumerate(STATISTICS):
        statistic_auc[name] = roc_auc(features[:, j], synthetic)
    try:
        classifier = classify(features, synthetic, keys, seed=seed)
    except ValueError as exc:  # too few pictures: the statistics still stand
        classifier = {"auc": None, "ci95": None, "note": str(exc)}
    classifier["description"] = (
        f"ridge logistic regression (L2 {L2:g} on standardised features, class-balanced, {NEWTON_STEPS} Newton steps) "
        f"on {len(FEATURES)} features per draft (the {len(STATISTICS)} statistics, ratios as logarithms; shares of "
        f"pixels in {len(CHROMA_BINS) - 1} C*ab bins and {HUE_SECTORS} hue sectors); trained on half the pictures, "
        f"AUC on the other half (split by picture key, seed {seed}); 95 % interval: {BOOTSTRAP} bootstrap "
        "resamples of the test pictures"
    )
    return {
        "checkpoint": None,
        "step": None,
        "shards": str(shards),
        "pictures": pictures,
        "model_drafts": counts["model"],
        "synthetic_drafts": counts["synthetic"],
        "regions": "connected paper pixels between sketch lines (the build has no regions field)"
        if fallback
        else "the build's trapped-ball regions",
        "statistics": report_stats,
        "statistic_auc": statistic_auc,
        "classifier": classifier,
        "settings": {
            "seed": seed,
            "hf_sigma_px": HF_SIGMA,
            "chroma_min": CHROMA_MIN,
            "hue_wrong_degrees": HUE_WRONG,
            "min_region_area_px": MIN_REGION_AREA,
            "features": list(FEATURES),
        },
        "units": UNITS,
    }


LABELS = {  # the table's row titles
    "chroma_ratio": "chroma ratio (C*ab, draft / target)",
    "hf_ratio_lightness": "HF energy ratio, L* (draft / target)",
    "hf_ratio_colour": "HF energy ratio, a*b* (draft / target)",
    "region_error": "region colour error (Delta E*ab)",
    "wrong_hue": f"regions with a wrong hue (> {HUE_WRONG:g} deg)",
    "grey_regions": f"regions gone grey (C*ab < {CHROMA_MIN:g})",
}


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_realism(report: dict) -> str:
    """``draft_realism``'s report as a text table: each statistic for the target, the model's and the
    synthetic drafts, each statistic's own AUC, then the classifier's AUC and how it was made."""
    width = max(len(v) for v in LABELS.values())
    model = (
        "a draft model"
        if report.get("checkpoint") is None
        else f"draft checkpoint {report['checkpoint']} (step {report['step']})"
    )
    lines = [
        f"draft realism: {model} on {report['pictures']} "
        f"pictures of {report['shards']}: {report['model_drafts']} model drafts (stored hints), "
        f"{report['synthetic_drafts']} synthetic drafts (the build's draft0..)",
        f"regions: {report['regions']}; colour in CIELab (OpenCV float conversion); means over drafts",
        "",
        f"{'statistic against the target':<{width}}  {'target':>7}  {'model':>7}  {'synthetic':>9}  {'AUC alone':>9}",
    ]
    for name in STATISTICS:
        s = report["statistics"][name]
        lines.append(
            f"{LABELS[name]:<{width}}  {_num(s['target']):>7}  {_num(s['model']):>7}  {_num(s['synthetic']):>9}  "
            f"{_num(report['statistic_auc'][name]):>9}"
        )
    c = report["classifier"]
    lines.append("")
    if c.get("auc") is None:
        lines.append(f"classifier: not trained ({c.get('note')})")
    else:
        ci = "" if c["ci95"] is None else f" [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]"
        lines.append(
            f"classifier AUC, synthetic vs model drafts (0.5: indistinguishable): {c['auc']:.3f}{ci} on "
            f"{c['test_pictures']} held-out pictures ({c['test_model_drafts']} model, {c['test_synthetic_drafts']} "
            f"synthetic drafts), trained on {c['train_pictures']}"
        )
    lines.append(f"classifier: {c['description']}")
    lines.append(
        "AUC alone: the statistic itself as the score over all drafts (synthetic positive; 0.5: it does not "
        "separate them, near 0 or 1: it does)"
    )
    return "\n".join(lines)
