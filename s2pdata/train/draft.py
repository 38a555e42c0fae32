"""Drafting-stage trainer: sketch + sparse hints -> rough colour draft (TOG 2018, stage I).

    python -m s2pdata.train draft --shards shards/ --out runs/draft [--recipe recipes/draft-224.toml]
        [--steps N] [--resume] [--dry-run] [--key value ...]

Consumes shard batches (``s2pdata.data.make_loader(stage="draft")``); produces ``RUN_DIR/ckpt.pt``,
``log.jsonl`` and sample grids (sketch | hints | output | target) through the shared loop (``loop.py``).

Reads top to bottom: the config, the networks, G's loss and D's loss, one training step, and
``build_stage``, which hands them to the loop.

Loss (paper): L1(y, G(x, u)) + alpha * L_var(G(x, u)) + lambda_gan * GAN, with
L_var(x) = -sum_c mean_i (x_ci - mean_i x_ci)^2 computed in fp32. alpha is not published.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from .common import (
    Nets,
    Stage,
    build_discriminator,
    conditional_d_loss,
    descend,
    discriminate,
    gan_loss,
    hints_image,
    to_uint8,
    variance_loss,
)
from .config import TrainConfig, opt
from .nets import PatchDiscriminator, UNet


@dataclass(frozen=True)
class DraftConfig(TrainConfig):
    """Drafting stage: G(sketch, hints) -> draft. ``alpha`` weighs L_var (unpublished; 0.01 here)."""

    stage = "draft"  # class attribute, not a field
    alpha: float = opt(
        0.01, "weight of the variance loss L_var that pushes away from a flat mean colour", ge=0.0, le=1000.0
    )
    input_skip: bool = opt(False, "also feed sketch + hints to the U-Net's last block (not in the paper; CPU recipe)")


# ---------------------------------------------------------------------------------------------
# networks


def build_networks(cfg: DraftConfig) -> tuple[UNet, PatchDiscriminator | None]:
    """G, a U-Net from sketch + hints (5 channels) to RGB, and D, the conditional PatchGAN (None at
    ``lambda_gan = 0``)."""
    G = UNet(5, 3, width=cfg.width, depth=cfg.depth, input_skip=cfg.input_skip)
    return G, build_discriminator(cfg)


def inputs(batch: dict) -> torch.Tensor:
    """Sketch (1) + hints (4) -> (B, 5, H, W)."""
    return torch.cat([batch["sketch"], batch["hint"]], 1)


def generate(G: torch.nn.Module, batch: dict) -> torch.Tensor:
    """G's draft of a batch, (B, 3, H, W) in [-1, 1]."""
    return G(inputs(batch))


condition = inputs  # D judges a colouring under the same sketch + hints G was given


# ---------------------------------------------------------------------------------------------
# losses


def loss_g(batch: dict, fake: torch.Tensor, nets: Nets, *, alpha: float, lambda_gan: float) -> dict:
    """G's loss on its output ``fake`` for ``batch``, in fp32.

    ``loss_g = l1 + alpha * l_var [+ lambda_gan * gan]``: ``l1`` is the mean absolute difference
    to the target ``color``, ``l_var`` the variance loss (``common.variance_loss``), ``gan`` the
    BCE of D's patch logits for ``fake`` against "real" (only with a discriminator).

    Returns
    -------
    dict
        ``loss_g`` (what G descends), ``l1``, ``l_var`` [, ``gan``]: scalar tensors.

    Shape
    -----
    batch: ``color`` (B, 3, H, W), ``sketch`` (B, 1, H, W), ``hint`` (B, 4, H, W), in [-1, 1];
    fake (B, 3, H, W) -> scalars
    """
    d_fake = None if nets.D is None else discriminate(nets, condition(batch), fake)
    fake32 = fake.float()
    l1 = F.l1_loss(fake32, batch["color"])
    l_var = variance_loss(fake32)
    out = {"loss_g": l1 + alpha * l_var, "l1": l1, "l_var": l_var}
    if d_fake is not None:
        out["gan"] = gan_loss(d_fake, True)
        out["loss_g"] = out["loss_g"] + lambda_gan * out["gan"]
    return out


def loss_d(batch: dict, fake: torch.Tensor, nets: Nets) -> dict:
    """D's loss: the mean of BCE(D(c, color), real) and BCE(D(c, fake), fake), c = sketch + hints.

    ``fake`` is detached: D's step never reaches G. Real and fake pass D as one batch.

    Returns
    -------
    dict
        ``loss_d``: a scalar tensor.

    Shape
    -----
    batch as for ``loss_g``; fake (B, 3, H, W) -> scalar
    """
    return conditional_d_loss(nets, condition(batch), batch["color"], fake)


# ---------------------------------------------------------------------------------------------
# the step


def step(batch: dict, nets: Nets, opts: dict, *, alpha: float, lambda_gan: float) -> dict:
    """One optimisation step: G drafts the batch; D descends ``loss_d`` (when there is a D); then G
    descends ``loss_g`` against the updated D. Returns every loss term (scalar tensors)."""
    with nets.autocast():
        fake = generate(nets.G, batch)
    g = partial(loss_g, batch, fake, nets, alpha=alpha, lambda_gan=lambda_gan)
    return descend(nets, opts, partial(loss_d, batch, fake, nets), g)


# ---------------------------------------------------------------------------------------------
# what the loop is given


def grid(batch: dict, output: torch.Tensor) -> list:
    """The sample grid's columns: sketch | hints | output | target."""
    return [
        ("sketch", to_uint8(batch["sketch"])),
        ("hints", hints_image(batch["hint"])),
        ("output", to_uint8(output)),
        ("target", to_uint8(batch["color"])),
    ]


def build_stage(cfg: DraftConfig) -> Stage:
    """The drafting stage's networks (seeded by the caller), its step under ``cfg``'s loss weights, its grid."""
    G, D = build_networks(cfg)
    return Stage("draft", G, D, generate, partial(step, alpha=cfg.alpha, lambda_gan=cfg.lambda_gan), grid)
