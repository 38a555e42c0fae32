"""Networks of the two stages (Two-stage Sketch Colorization, TOG 2018; docs/method.md, The two stages).

Consumes batches of ``s2pdata.data.make_loader`` (tensors in [-1, 1]); produces colour images
(B, 3, H, W) in [-1, 1] and patch-discriminator logits.

- ``UNet``: no normalisation layers, ReLU, scale changes by average-pool sub-sampling and
  nearest up-sampling; an optional global feature is broadcast-added at the bottleneck through a
  1x1 projection. Fully convolutional: inputs of any size are reflect-padded to a multiple of
  ``2 ** depth`` and the output is cropped back.
- ``InceptionEncoder``: the Inception-V1 (GoogLeNet) layout with torchvision's module and key
  names (``conv1.conv.weight``, ``inception3a.branch2.1.bn.running_mean`` ...), giving the
  1024-d feature after the global average pool. ``width`` scales every channel count (tests use
  tiny encoders); only ``width=1`` loads a torchvision state dict. Its batch norms always use
  their stored statistics (frozen, as for an ImageNet encoder), so a batch never mixes samples.
- ``PatchDiscriminator``: strided convolutions, LeakyReLU, no normalisation, one logit per patch
  (train with BCE-with-logits).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


# ---------------------------------------------------------------------------------------------
# U-Net


class _Block(nn.Sequential):
    """conv3x3-ReLU-conv3x3-ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net generator.

    Parameters
    ----------
    in_ch, out_ch : input channels (sketch 1 + hint 4 [+ draft 3]) and output channels.
    width : channels of the first level; level i has ``width * 2 ** min(i, 3)``.
    depth : number of sub-sampling steps.
    global_dim : size of a global feature added at the bottleneck (None: none).
    input_skip : also feed the input itself to the last merge block (beside the first level's
        features). Off in the paper's layout; it shortens the path from a hint pixel to the output
        to three convolutions, which lets small CPU runs learn hint colours in a few hundred steps.

    Shape
    -----
    (B, in_ch, H, W) [, (B, global_dim)] -> (B, out_ch, H, W) in [-1, 1] (tanh)
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int = 3,
        *,
        width: int = 64,
        depth: int = 4,
        global_dim: int | None = None,
        input_skip: bool = False,
    ):
        super().__init__()
        chans = [width * 2 ** min(i, 3) for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList(
            [_Block(in_ch, chans[0])] + [_Block(chans[i - 1], chans[i]) for i in range(1, depth + 1)]
        )
        self.project = nn.Conv2d(global_dim, chans[depth], 1) if global_dim else None
        self.up = nn.ModuleList([nn.Conv2d(chans[i + 1], chans[i], 3, padding=1) for i in range(depth)])
        extra = [in_ch if input_skip else 0] + [0] * (depth - 1)
        self.merge = nn.ModuleList([_Block(2 * chans[i] + extra[i], chans[i]) for i in range(depth)])
        self.input_skip = input_skip
        self.out = nn.Conv2d(chans[0], out_ch, 1)

    def forward(self, x: torch.Tensor, feature: torch.Tensor | None = None) -> torch.Tensor:
        H, W = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-H) % m, (-W) % m
        if ph or pw:  # fully convolutional: pad to a multiple of 2**depth, crop back at the end
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(H, W) > max(ph, pw) else "replicate")
        inp, skips = x, []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        if self.project is not None:
            if feature is None:
                raise ValueError("this UNet was built with global_dim: pass feature (B, global_dim)")
            x = x + self.project(feature[:, :, None, None].to(x.dtype))  # broadcast over H, W
        for i in reversed(range(self.depth)):
            x = F.relu(self.up[i](F.interpolate(x, scale_factor=2.0, mode="nearest")))
            x = self.merge[i](torch.cat([x, skips[i], inp] if i == 0 and self.input_skip else [x, skips[i]], 1))
        return torch.tanh(self.out(x))[..., :H, :W]


# ---------------------------------------------------------------------------------------------
# Inception-V1 encoder (torchvision GoogLeNet names)


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pool):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(cin, c3r, kernel_size=1), BasicConv2d(c3r, c3, kernel_size=3, padding=1)
        )
        # torchvision's GoogLeNet uses a 3x3 kernel in the "5x5" branch; kept so its weights load
        self.branch3 = nn.Sequential(
            BasicConv2d(cin, c5r, kernel_size=1), BasicConv2d(c5r, c5, kernel_size=3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(cin, pool, kernel_size=1)
        )

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


# (name, in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj): Szegedy et al. 2015, Table 1
_INCEPTION = [
    ("inception3a", 192, 64, 96, 128, 16, 32, 32),
    ("inception3b", 256, 128, 128, 192, 32, 96, 64),
    ("inception4a", 480, 192, 96, 208, 16, 48, 64),
    ("inception4b", 512, 160, 112, 224, 24, 64, 64),
    ("inception4c", 512, 128, 128, 256, 24, 64, 64),
    ("inception4d", 512, 112, 144, 288, 32, 64, 64),
    ("inception4e", 528, 256, 160, 320, 32, 128, 128),
    ("inception5a", 832, 256, 160, 320, 32, 128, 128),
    ("inception5b", 832, 384, 192, 384, 48, 128, 128),
]
_POOL_AFTER = {"conv3": "maxpool2", "inception3b": "maxpool3", "inception4e": "maxpool4"}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class InceptionEncoder(nn.Module):
    """Inception-V1 feature of a colour draft.

    Shape
    -----
    (B, 3, H, W) in [-1, 1] -> (B, out_dim); ``out_dim`` = 1024 at ``width=1``.
    """

    def __init__(self, width: float = 1.0):
        super().__init__()
        c = lambda n: _ch(n, width)  # noqa: E731
        self.conv1 = BasicConv2d(3, c(64), kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(c(64), c(64), kernel_size=1)
        self.conv3 = BasicConv2d(c(64), c(192), kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        prev = c(192)  # each block's input is the previous block's concatenated output
        for name, _cin, *rest in _INCEPTION:
            setattr(self, name, Inception(prev, *[c(n) for n in rest]))
            prev = c(rest[0]) + c(rest[2]) + c(rest[4]) + c(rest[5])
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        last = _INCEPTION[-1]
        self.out_dim = c(last[2]) + c(last[4]) + c(last[6]) + c(last[7])
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():  # frozen batch-norm statistics, see module docstring
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x + 1) * 0.5 - self.mean) / self.std  # [-1, 1] -> ImageNet normalisation
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        for name, *_ in _INCEPTION:
            x = getattr(self, name)(x)
            if name in _POOL_AFTER:
                x = getattr(self, _POOL_AFTER[name])(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, 1024): after the global average pool


def load_googlenet_weights(encoder: InceptionEncoder, path: str) -> dict:
    """Load a torchvision GoogLeNet state dict (a local file; never downloads) into ``encoder``.

    ``aux1.*``, ``aux2.*`` and ``fc.*`` are ignored. Raises ``ValueError`` naming the missing and
    unexpected keys when the file does not match the layers built here (e.g. ``width != 1``).
    Returns ``{"loaded": n, "ignored": [...]}``.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a GoogLeNet state dict")
    ignored = sorted(k for k in state if k.split(".", 1)[0] in ("aux1", "aux2", "fc"))
    state = {k: v for k, v in state.items() if k not in set(ignored)}
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape:

        def show(keys):
            return f"{len(keys)} {keys[:6]}{' ...' if len(keys) > 6 else ''}"

        raise ValueError(
            f"{path} does not match the Inception-V1 encoder: missing keys {show(missing)}; unexpected keys "
            f"{show(unexpected)}; wrong shapes {show(shape)}. Give a torchvision GoogLeNet state dict "
            "(torchvision.models.googlenet().state_dict()) and encoder_width = 1.0"
        )
    encoder.load_state_dict(state, strict=True)
    return {"loaded": len(state), "ignored": ignored}


# ---------------------------------------------------------------------------------------------
# discriminator


class PatchDiscriminator(nn.Module):
    """Conditional patch discriminator: (condition, image) -> logit per patch.

    Shape
    -----
    (B, in_ch, H, W) -> (B, 1, H / 2**(n_layers), W / 2**(n_layers)) roughly
    """

    def __init__(self, in_ch: int, *, width: int = 64, n_layers: int = 3):
        super().__init__()
        layers, c = [], in_ch
        for i in range(n_layers):
            cout = width * 2 ** min(i, 3)
            layers += [nn.Conv2d(c, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c = cout
        layers += [nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(c, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
