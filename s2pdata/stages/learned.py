"""Learned line extractors: adapters that run a weights file the user supplies.

Consumes a colour image ``(H, W, 3) uint8`` RGB; produces line art ``(H, W) uint8`` (255 = paper,
0 = ink), like the weight-free extractors in ``s2pdata.stages.sketch``. Nothing is ever downloaded: the
user points ``--sketch learned --sketch-weights ARCH:PATH`` at a file they have.

Architectures (``ARCH``):

* ``anime2sketch``: the pix2pix U-Net of Anime2Sketch (Xiang et al. 2022; file ``netG.pth``,
  the same file ControlNet's "lineart_anime" annotator uses): 8 stride-2 levels, instance
  norm without affine parameters, tanh output. Input RGB in [-1, 1]; output in [-1, 1], +1 paper.
* ``informative``: the ResNet generator of "Learning to generate line drawings that convey
  geometry and semantics" (Chan, Durand, Isola, CVPR 2022; files ``netG_A_latest.pth`` of the
  anime / contour / opensketch styles, or ControlNet's "lineart" ``sk_model.pth``): 7x7 stem, two
  stride-2 convolutions, residual blocks, two transposed convolutions, sigmoid output. Input RGB
  in [0, 1]; output in [0, 1], 1 paper.
* ``export`` / ``torchscript``: any network saved with ``torch.export.save`` (a ``.pt2``, exported
  with dynamic height and width) or ``torch.jit.save``, taking ``(1, 3, H, W)`` float RGB in
  [0, 1] and returning ``(1, 1, H, W)`` (or ``(1, H, W)``) in [0, 1], 1 paper, at the size it is
  given (the picture is not padded for these).

State dicts are read with ``torch.load(weights_only=True)`` (no unpickling of code); a leading
``module.`` (DataParallel) is stripped; widths and depths are read from the tensors' shapes, so
smaller variants trained the same way load too. Keys must match exactly: a file for another
architecture is refused with the missing and unexpected keys named.

Images are reflect-padded to a multiple of the network's stride and cropped back, so a picture
is never squashed. On CPU the result is identical from run to run on the same machine and torch
version; a GPU's kernels are not bit-exact across devices, so a build that must be byte-identical
everywhere should use one device type throughout.
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from s2pdata._check import check_rgb

ARCHS = ("anime2sketch", "informative", "export", "torchscript")


def parse_weights_spec(spec: str) -> tuple[str, Path]:
    """``"ARCH:PATH"`` -> (arch, path); raises ValueError naming the problem and the fix."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(
            f"sketch_weights (--sketch-weights) must be 'ARCH:PATH' with ARCH one of {ARCHS}, "
            f"got {spec!r} (e.g. anime2sketch:/models/netG.pth)"
        )
    arch, path = spec.split(":", 1)
    if arch not in ARCHS:
        raise ValueError(f"sketch_weights architecture must be one of {ARCHS}, got {arch!r} in {spec!r}")
    if not path:
        raise ValueError(f"sketch_weights {spec!r} names no file after '{arch}:'")
    return arch, Path(path).expanduser()


def _weights_file(spec: str) -> tuple[str, Path]:
    """``parse_weights_spec``, and ValueError when the file is missing."""
    arch, path = parse_weights_spec(spec)
    if not path.is_file():
        raise ValueError(f"sketch_weights file {str(path)!r} does not exist (from {spec!r})")
    return arch, path


def weights_digest(spec: str) -> str:
    """sha256 of the file ``spec`` names (recorded in dataset.json, so new weights need a new build);
    raises ValueError when the file is missing."""
    return file_sha256(_weights_file(spec)[1])


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# architectures (torch is imported only when a learned extractor is used)


def _nets():
    """(Anime2Sketch, Informative) module classes; torch is imported here, on first use."""
    return _anime2sketch_net(), _informative_net()


def _anime2sketch_net():
    """The Anime2Sketch generator: a pix2pix U-Net (attribute names match the published weights)."""
    import torch.nn as nn

    class UNetLevel(nn.Module):
        """One level of the pix2pix U-Net; ``model`` indexes follow the published layout."""

        def __init__(self, outer: int, inner: int, *, sub=None, in_ch: int | None = None):
            super().__init__()
            self.outermost = in_ch is not None  # only the outermost level takes the picture's channels
            down = nn.Conv2d(outer if in_ch is None else in_ch, inner, 4, 2, 1)
            if sub is None:  # innermost: no norm on the way down, nothing to concatenate below
                layers = [
                    nn.LeakyReLU(0.2),
                    down,
                    nn.ReLU(),
                    nn.ConvTranspose2d(inner, outer, 4, 2, 1),
                    nn.InstanceNorm2d(outer),
                ]
            elif self.outermost:
                layers = [down, sub, nn.ReLU(), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1), nn.Tanh()]
            else:
                layers = [
                    nn.LeakyReLU(0.2),
                    down,
                    nn.InstanceNorm2d(inner),
                    sub,
                    nn.ReLU(),
                    nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1),
                    nn.InstanceNorm2d(outer),
                ]
            self.model = nn.Sequential(*layers)

        def forward(self, x):
            import torch

            y = self.model(x)
            return y if self.outermost else torch.cat([x, y], 1)

    class Anime2Sketch(nn.Module):
        def __init__(self, levels: int = 8, ngf: int = 64, in_ch: int = 3, out_ch: int = 1):
            super().__init__()
            if levels < 5:
                raise ValueError(f"anime2sketch needs at least 5 levels, got {levels}")
            block = UNetLevel(8 * ngf, 8 * ngf)
            for _ in range(levels - 5):
                block = UNetLevel(8 * ngf, 8 * ngf, sub=block)
            for mult in (4, 2, 1):
                block = UNetLevel(mult * ngf, 2 * mult * ngf, sub=block)
            self.model = UNetLevel(out_ch, ngf, in_ch=in_ch, sub=block)
            self.stride = 2**levels

        def forward(self, x):
            return self.model(x)

    return Anime2Sketch


def _informative_net():
    """The informative-drawings generator: a residual encoder-decoder (attribute names match its weights)."""
    import torch.nn as nn

    class Residual(nn.Module):
        def __init__(self, ch: int):
            super().__init__()
            self.conv_block = nn.Sequential(
                nn.ReflectionPad2d(1),
                nn.Conv2d(ch, ch, 3),
                nn.InstanceNorm2d(ch),
                nn.ReLU(),
                nn.ReflectionPad2d(1),
                nn.Conv2d(ch, ch, 3),
                nn.InstanceNorm2d(ch),
            )

        def forward(self, x):
            return x + self.conv_block(x)

    class Informative(nn.Module):
        def __init__(self, blocks: int = 3, width: int = 64, in_ch: int = 3, out_ch: int = 1):
            super().__init__()
            w = width
            self.model0 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_ch, w, 7), nn.InstanceNorm2d(w), nn.ReLU())
            self.model1 = nn.Sequential(
                nn.Conv2d(w, 2 * w, 3, 2, 1),
                nn.InstanceNorm2d(2 * w),
                nn.ReLU(),
                nn.Conv2d(2 * w, 4 * w, 3, 2, 1),
                nn.InstanceNorm2d(4 * w),
                nn.ReLU(),
            )
            self.model2 = nn.Sequential(*[Residual(4 * w) for _ in range(blocks)])
            self.model3 = nn.Sequential(
                nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1, output_padding=1),
                nn.InstanceNorm2d(2 * w),
                nn.ReLU(),
                nn.ConvTranspose2d(2 * w, w, 3, 2, 1, output_padding=1),
                nn.InstanceNorm2d(w),
                nn.ReLU(),
            )
            self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w, out_ch, 7), nn.Sigmoid())
            self.stride = 4

        def forward(self, x):
            return self.model4(self.model3(self.model2(self.model1(self.model0(x)))))

    return Informative


def build_net(arch: str, **shape):
    """An untrained network of ``arch`` ("anime2sketch": levels, ngf; "informative": blocks, width)."""
    anime2sketch, informative = _nets()
    return {"anime2sketch": anime2sketch, "informative": informative}[arch](**shape)


def _shape_of(arch: str, state: dict) -> dict:
    """Depth and width of the network a state dict was saved from."""
    if arch == "anime2sketch":
        # the outermost down convolution is model.model.0; every inner level's is its model.1
        levels = 1 + sum(1 for k in state if k.startswith("model.model.1.") and k.endswith("model.1.weight"))
        return {"levels": levels, "ngf": state["model.model.0.weight"].shape[0]}
    width = state["model0.1.weight"].shape[0]
    blocks = len({k.split(".")[1] for k in state if k.startswith("model2.")})
    return {"blocks": blocks, "width": width}


class LearnedExtractor:
    """A loaded line-extraction network: ``extractor(color) -> sketch``.

    Use ``load_extractor(spec)`` (cached per process) rather than this constructor.
    """

    def __init__(self, spec: str, device: str | None = None):
        import torch

        from s2pdata import _jit

        self.arch, self.path = arch, path = _weights_file(spec)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if _jit.SINGLE_THREAD:
            torch.set_num_threads(1)  # a build worker: the workers are the parallelism
        if arch == "export":
            self.net, self.stride = torch.export.load(str(path)).module(), 1
        elif arch == "torchscript":
            self.net, self.stride = torch.jit.load(str(path), map_location=self.device), 1
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]
            if not isinstance(state, dict):
                raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
            state = {k.removeprefix("module."): v for k, v in state.items()}
            try:
                net = build_net(arch, **_shape_of(arch, state))
            except (KeyError, IndexError, AttributeError) as exc:
                raise ValueError(
                    f"{path} is not an {arch} state dict (no {exc}); check the ARCH in {spec!r} (one of {ARCHS})"
                ) from None
            missing, unexpected = net.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"{path} does not fit the {arch} network: missing keys {missing[:4]}, "
                    f"unexpected keys {unexpected[:4]}; check the ARCH in {spec!r}"
                )
            self.net, self.stride = net, net.stride
        if arch != "export":  # an exported program's module is already in inference form
            self.net = self.net.eval()
        self.net = self.net.to(self.device)

    @cached_property
    def sha256(self) -> str:
        """sha256 of the weights file (read on first use: the build hashes it once, in the parent)."""
        return file_sha256(self.path)

    def __call__(self, color: np.ndarray) -> np.ndarray:
        """``(H, W, 3) uint8`` RGB -> ``(H, W) uint8`` line art, 255 paper."""
        import torch
        import torch.nn.functional as F

        color = check_rgb("color", color)
        h, w = color.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(color)).to(self.device).permute(2, 0, 1)[None].float() / 255
        if self.arch == "anime2sketch":
            x = x * 2 - 1
        ph, pw = -h % self.stride, -w % self.stride
        if ph or pw:  # reflect where the picture is large enough, else replicate its edge
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        with torch.inference_mode():
            y = self.net(x)
        y = y.reshape(-1, *y.shape[-2:])[0, :h, :w].float()
        if self.arch == "anime2sketch":
            y = (y + 1) / 2
        return (y.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def load_extractor(spec: str, device: str | None = None) -> LearnedExtractor:
    """The extractor for ``"ARCH:PATH"``, loaded once per process and reloaded if the file changes.

    ``device`` (default: ``$S2PDATA_SKETCH_DEVICE``, else CUDA when present, else CPU) is where the
    network runs.
    """
    try:
        st = parse_weights_spec(spec)[1].stat()
        stamp = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None  # LearnedExtractor names the missing file
    return _load(spec, device or os.environ.get("S2PDATA_SKETCH_DEVICE") or None, stamp)


@lru_cache(maxsize=2)
def _load(spec: str, device: str | None, stamp) -> LearnedExtractor:
    return LearnedExtractor(spec, device)
