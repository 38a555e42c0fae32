"""Drafting-stage trainer: sketch + sparse hints -> rough colour draft (TOG 2018, stage I).

    python -m s2pdata.train draft --shards shards/ --out runs/draft [--recipe recipes/draft-224.toml]
        [--steps N] [--resume] [--dry-run] [--key value ...]

Consumes shard batches (``s2pdata.data.make_loader(stage="draft")``); produces ``RUN_DIR/ckpt.pt``,
``log.jsonl`` and sample grids (sketch | hints | prediction | target).

Loss (paper): L1(y, G(x, u)) + alpha * L_var(G(x, u)) + lambda_gan * GAN, with
L_var(x) = -sum_c mean_i (x_ci - mean_i x_ci)^2 computed in fp32. alpha is not published.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .common import Stage, build_discriminator, hints_image, to_uint8, variance_loss, with_gan
from .config import TrainConfig, opt
from .nets import UNet


@dataclass(frozen=True)
class DraftConfig(TrainConfig):
    """Drafting stage: G(sketch, hints) -> draft. ``alpha`` weighs L_var (unpublished; 0.01 here)."""

    stage = "draft"  # class attribute, not a field
    alpha: float = opt(
        0.01, "weight of the variance loss L_var that pushes away from a flat mean colour", ge=0.0, le=1000.0
    )
    input_skip: bool = opt(False, "also feed sketch + hints to the U-Net's last block (not in the paper; CPU recipe)")


def inputs(batch: dict) -> torch.Tensor:
    """Sketch (1) + hints (4) -> (B, 5, H, W)."""
    return torch.cat([batch["sketch"], batch["hint"]], 1)


def build_stage(cfg: DraftConfig) -> Stage:
    """Networks and loss of the drafting stage."""
    G = UNet(5, 3, width=cfg.width, depth=cfg.depth, input_skip=cfg.input_skip)
    D = build_discriminator(cfg)

    def forward(g, batch):
        return g(inputs(batch))

    def g_loss(pred, batch, d_fake):
        pred32 = pred.float()
        l1 = F.l1_loss(pred32, batch["color"])
        lvar = variance_loss(pred32)
        return with_gan(cfg, l1 + cfg.alpha * lvar, {"l1": l1, "l_var": lvar}, d_fake)

    def grid(batch, pred):
        return [
            ("sketch", to_uint8(batch["sketch"])),
            ("hints", hints_image(batch["hint"])),
            ("output", to_uint8(pred)),
            ("target", to_uint8(batch["color"])),
        ]

    return Stage("draft", G, D, forward, inputs, g_loss, grid)
