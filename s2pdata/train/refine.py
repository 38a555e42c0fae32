"""Refinement-stage trainer: sketch + hints + flawed draft -> final colouring (TOG 2018, stage II).

    python -m s2pdata.train refine --shards shards/ --out runs/refine [--recipe recipes/refine-224.toml]
        [--encoder-weights googlenet.pth] [--steps N] [--resume] [--dry-run] [--key value ...]

Consumes shard batches (``s2pdata.data.make_loader(stage="refine")``) whose drafts are
synthesised from the ground truth (stored ``draftK`` or made online), never drafting-stage
outputs (paper); produces ``RUN_DIR/ckpt.pt``, ``log.jsonl`` and sample grids
(sketch | hints | draft | output | target) through the shared loop (``loop.py``).

Reads top to bottom: the config, the networks, G's loss and D's loss, one training step, and
``build_stage``, which hands them to the loop.

The draft enters through an Inception-V1 encoder: its 1024-d global feature (after the global
average pool) is broadcast-added at the U-Net bottleneck through a 1x1 projection. With
``concat_draft`` (default) the draft is also concatenated to the U-Net input. Random init unless
``encoder_weights`` names a local torchvision GoogLeNet state dict; nothing is downloaded.
Loss (paper): L1 + 0.01 * GAN.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
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
)
from .config import TrainConfig, opt
from .nets import InceptionEncoder, PatchDiscriminator, UNet, load_googlenet_weights


@dataclass(frozen=True)
class RefineConfig(TrainConfig):
    """Refinement stage: G(sketch, hints, draft) -> final. Encoder width 1 is GoogLeNet proper."""

    stage = "refine"  # class attribute, not a field
    DRY_RUN = {"encoder_width": 0.0625}
    encoder_width: float = opt(
        1.0, "channel scale of the Inception-V1 draft encoder (1.0: GoogLeNet proper)", gt=0.0, le=4.0
    )
    encoder_weights: str = opt(
        "",
        "torchvision GoogLeNet weights for the encoder, made with torch.save(torchvision.models.googlenet("
        'weights="DEFAULT").state_dict(), "googlenet.pth"); "" = random init',
    )
    freeze_encoder: bool = opt(False, "keep the encoder's weights fixed")
    concat_draft: bool = opt(True, "also concatenate the draft to the U-Net input")

    def check_files(self) -> None:
        """``encoder_weights`` must name an existing file (one-line error saying how to make it)."""
        if self.encoder_weights and not Path(self.encoder_weights).is_file():
            raise FileNotFoundError(
                f'encoder_weights {self.encoder_weights} does not exist; make it with python -c "import torch, '
                "torchvision; torch.save(torchvision.models.googlenet(weights='DEFAULT').state_dict(), "
                "'googlenet.pth')\" (encoder_width 1.0), or leave it unset for a random init"
            )


# ---------------------------------------------------------------------------------------------
# networks


class Refiner(nn.Module):
    """Inception-V1 draft encoder + U-Net.

    Shape
    -----
    sketch (B, 1, H, W), hint (B, 4, H, W), draft (B, 3, H, W) -> (B, 3, H, W) in [-1, 1]
    """

    def __init__(self, *, width: int, depth: int, encoder_width: float, concat_draft: bool):
        super().__init__()
        self.concat_draft = concat_draft
        self.encoder = InceptionEncoder(encoder_width)
        self.unet = UNet(5 + 3 * concat_draft, 3, width=width, depth=depth, global_dim=self.encoder.out_dim)

    def forward(self, sketch, hint, draft):
        x = torch.cat([sketch, hint, draft] if self.concat_draft else [sketch, hint], 1)
        return self.unet(x, self.encoder(draft))


def build_model(cfg: RefineConfig) -> Refiner:
    """The generator, with encoder weights loaded (and frozen) as configured."""
    G = Refiner(width=cfg.width, depth=cfg.depth, encoder_width=cfg.encoder_width, concat_draft=cfg.concat_draft)
    if cfg.encoder_weights:
        try:
            info = load_googlenet_weights(G.encoder, cfg.encoder_weights)
        except ValueError as exc:  # a file that is not a matching state dict: one line, not a traceback
            raise SystemExit(f"encoder_weights: {exc}") from None
        print(
            f"encoder: loaded {info['loaded']} tensors from {cfg.encoder_weights}; ignored {len(info['ignored'])} "
            "aux/fc tensors"
        )
    if cfg.freeze_encoder:
        G.encoder.requires_grad_(False)
    return G


def build_networks(cfg: RefineConfig) -> tuple[Refiner, PatchDiscriminator | None]:
    """G, the ``Refiner``, and D, the conditional PatchGAN (None at ``lambda_gan = 0``)."""
    G = build_model(cfg)
    return G, build_discriminator(cfg)


def generate(G: torch.nn.Module, batch: dict) -> torch.Tensor:
    """G's refinement of a batch, (B, 3, H, W) in [-1, 1]."""
    return G(batch["sketch"], batch["hint"], batch["draft"])


def condition(batch: dict) -> torch.Tensor:
    """D's condition: sketch (1) + hints (4), not the draft (B, 5, H, W)."""
    return torch.cat([batch["sketch"], batch["hint"]], 1)


# ---------------------------------------------------------------------------------------------
# losses


def loss_g(batch: dict, fake: torch.Tensor, nets: Nets, *, lambda_gan: float) -> dict:
    """G's loss on its output ``fake`` for ``batch``, in fp32.

    ``loss_g = l1 [+ lambda_gan * gan]``: ``l1`` is the mean absolute difference to the target
    ``color``, ``gan`` the BCE of D's patch logits for ``fake`` against "real" (only with a
    discriminator).

    Returns
    -------
    dict
        ``loss_g`` (what G descends), ``l1`` [, ``gan``]: scalar tensors.

    Shape
    -----
    batch: ``color`` (B, 3, H, W), ``sketch`` (B, 1, H, W), ``hint`` (B, 4, H, W), in [-1, 1];
    fake (B, 3, H, W) -> scalars
    """
    d_fake = None if nets.D is None else discriminate(nets, condition(batch), fake)
    l1 = F.l1_loss(fake.float(), batch["color"])
    out = {"loss_g": l1, "l1": l1}
    if d_fake is not None:
        out["gan"] = gan_loss(d_fake, True)
        out["loss_g"] = l1 + lambda_gan * out["gan"]
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


def step(batch: dict, nets: Nets, opts: dict, *, lambda_gan: float) -> dict:
    """One optimisation step: G refines the batch's drafts; D descends ``loss_d`` (when there is a
    D); then G descends ``loss_g`` against the updated D. Returns every loss term (scalar tensors)."""
    with nets.autocast():
        fake = generate(nets.G, batch)
    g = partial(loss_g, batch, fake, nets, lambda_gan=lambda_gan)
    return descend(nets, opts, partial(loss_d, batch, fake, nets), g)


# ---------------------------------------------------------------------------------------------
# what the loop is given


def grid(batch: dict, output: torch.Tensor) -> list:
    """The sample grid's columns: sketch | hints | draft | output | target."""
    return [
        ("sketch", to_uint8(batch["sketch"])),
        ("hints", hints_image(batch["hint"])),
        ("draft", to_uint8(batch["draft"])),
        ("output", to_uint8(output)),
        ("target", to_uint8(batch["color"])),
    ]


def build_stage(cfg: RefineConfig) -> Stage:
    """The refinement stage's networks (seeded by the caller), its step under ``cfg``'s GAN weight, its grid."""
    G, D = build_networks(cfg)
    return Stage("refine", G, D, generate, partial(step, lambda_gan=cfg.lambda_gan), grid)
