"""What the two stage files share: the loss terms, the discriminator, the sample-grid images,
``Nets`` (what a step runs) and ``Stage`` (what a stage file hands the loop).

Consumes batches of ``s2pdata.data.make_loader`` and the networks of ``s2pdata.train.nets``;
produces loss tensors and ``RUN_DIR/samples/step-XXXXXXX.png`` (a labelled column per image).
Each stage's own losses and step are in ``draft.py`` and ``refine.py``, the config in
``config.py``, checkpoints in ``checkpoint.py``, the loop in ``loop.py``; ``load_checkpoint`` is
re-exported here for callers that read runs (``s2pdata.evaluate``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._safeio import atomic_write
from ..inspect import KEY_BAND, label_band
from .checkpoint import load_checkpoint
from .nets import PatchDiscriminator

__all__ = [
    "Nets",
    "Stage",
    "build_discriminator",
    "discriminate",
    "gan_loss",
    "hints_image",
    "load_checkpoint",
    "save_grid",
    "to_uint8",
    "variance_loss",
]


# ---------------------------------------------------------------------------------------------
# losses and images


def variance_loss(x: torch.Tensor) -> torch.Tensor:
    """L_var(x) = -sum_c mean_i (x_ci - mean_i x_ci)^2, averaged over the batch, in fp32 (paper).

    Shape
    -----
    (B, C, H, W) -> scalar
    """
    x = x.float().flatten(2)
    return -((x - x.mean(2, keepdim=True)) ** 2).mean(2).sum(1).mean()


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """BCE-with-logits against all-ones (real) or all-zeros (fake), in fp32."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


def build_discriminator(cfg) -> PatchDiscriminator | None:
    """The conditional PatchGAN of either stage (condition 5 + image 3 channels); None at ``lambda_gan = 0``,
    where the GAN term weighs nothing and training D would only cost time."""
    if cfg.lambda_gan == 0:
        return None
    return PatchDiscriminator(5 + 3, width=cfg.disc_width, n_layers=cfg.disc_layers)


def discriminate(nets: Nets, cond: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """D's logits for ``image`` under its condition, in the step's autocast.

    Shape
    -----
    cond (B, 5, H, W), image (B, 3, H, W) -> (B, 1, H', W') patch logits
    """
    with nets.autocast():
        return nets.D(torch.cat([cond, image], 1))


def conditional_d_loss(nets: Nets, cond: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> dict:
    """Both stages' D loss: the mean of BCE(D(cond, real), real) and BCE(D(cond, fake), fake).

    ``fake`` is detached: D's step never reaches G. Real and fake pass D as one batch.

    Shape
    -----
    cond (B, 5, H, W), real and fake (B, 3, H, W) -> ``{"loss_d": scalar}``
    """
    n = len(fake)
    logits = discriminate(nets, torch.cat([cond, cond]), torch.cat([real, fake.detach()]))
    return {"loss_d": 0.5 * (gan_loss(logits[:n], True) + gan_loss(logits[n:], False))}


def descend(nets: Nets, opts: dict, loss_d: Callable[[], dict], loss_g: Callable[[], dict]) -> dict:
    """Both stages' update: D descends ``loss_d()`` (when there is a D), then G descends ``loss_g()``
    against the updated D. Returns every loss term (scalar tensors), ``loss_g`` first."""
    d = {}
    if nets.D is not None:
        d = loss_d()
        opts["D"].zero_grad(set_to_none=True)
        d["loss_d"].backward()
        opts["D"].step()
    g = loss_g()
    opts["G"].zero_grad(set_to_none=True)
    g["loss_g"].backward()
    opts["G"].step()
    return {"loss_g": g["loss_g"], **d, **g}


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> (B, H, W, 3) uint8 RGB (1 channel repeated)."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return x.permute(0, 2, 3, 1).numpy()


def hints_image(hint: torch.Tensor) -> np.ndarray:
    """Hint tensor (B, 4, H, W) -> hint colours on white (B, H, W, 3) uint8."""
    a = hint[:, 3:].float().cpu()
    rgb = torch.where(a > 0, hint[:, :3].float().cpu() / a.clamp_min(1e-6), torch.ones_like(hint[:, :3].cpu()))
    return to_uint8(rgb)


GRID_HEADER = KEY_BAND  # pixels of each label band (column names, sample keys), as on s2pdata.inspect's sheet


def save_grid(path: Path, columns: list[tuple[str, np.ndarray]], keys: list[str] | None = None) -> None:
    """Labelled columns -> one PNG: a band of column names on top, then per sample a band with its key and its row.

    Parameters
    ----------
    path : Path
        The PNG to write (folders are made; written to a fresh temporary name, then renamed).
    columns : list of (label, images)
        ``images`` is (B, H, W, 3) uint8; every column has the same B and H.
    keys : list of str, optional
        The B sample keys, one band above each row; None leaves the rows unlabelled.
    """
    import cv2

    rows = [np.concatenate([label_band(label, images.shape[2]) for label, images in columns], 1)]
    width = rows[0].shape[1]
    for i in range(len(columns[0][1])):
        if keys is not None:
            rows.append(label_band(str(keys[i]), width))
        rows.append(np.concatenate([c[i] for _, c in columns], 1))
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))  # cv2 writes BGR
    if not ok:
        raise ValueError(f"OpenCV could not encode the sample grid {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, png.tobytes())


# ---------------------------------------------------------------------------------------------
# what a stage gives the loop


@dataclass
class Nets:
    """The networks one training step runs, as the loop wraps them (DDP, ``torch.compile``), and the
    autocast their forward passes run in (bf16 or none)."""

    G: torch.nn.Module
    D: torch.nn.Module | None = None  # None at lambda_gan = 0: no GAN term, no D step
    autocast: Callable[[], AbstractContextManager] = nullcontext


@dataclass
class Stage:
    """What a stage file hands the loop: its plain networks and how a batch trains and shows them."""

    name: str
    G: torch.nn.Module
    D: torch.nn.Module | None  # None at lambda_gan = 0: no discriminator is built, stepped or saved
    forward: Callable  # (G, batch) -> G's output (B, 3, H, W) in [-1, 1]
    step: Callable  # (batch, nets: Nets, opts: {"G": opt[, "D": opt]}) -> {loss name: scalar tensor}
    grid: Callable  # (batch, output) -> [(label, (B, H, W, 3) uint8)], left to right
