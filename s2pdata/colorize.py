"""Colourise sketches with trained checkpoints: line art (+ colour hints) -> draft (-> refined picture).

    python -m s2pdata.colorize --draft runs/draft/ckpt.pt SKETCH.png [--hints HINTS.png|HINTS.json] --out out/
    python -m s2pdata.colorize --draft D.pt --refine R.pt sketches/ [--hints hints/] --out out/ --grid sheet.png
    python -m s2pdata.colorize --draft D.pt picture.jpg --extract xdog --out out/
    python -m s2pdata.colorize --draft D.pt scan.jpg --extract gray --clean --out out/
    python -m s2pdata.colorize --draft D.pt --shards heldout/ --keys demo-000003,demo-000010 --grid sheet.png
    python -m s2pdata.colorize --draft D.pt --shards heldout/ --random 4 --seed 1 --grid sheet.png

Consumes a drafting checkpoint and optionally a refinement checkpoint of ``s2pdata.train``, and
sketches: image files, a folder of them, or samples of a build (``--shards``). Produces, per sketch
NAME, ``NAME.draft.png`` (the drafting stage's output) and ``NAME.png`` (the refinement stage's
output; without ``--refine`` it is the draft, the same pixels), both RGB at the sketch's own size,
and with ``--grid`` a labelled sheet: sketch | hints | draft | refined | target (a build's colour
picture, with ``--shards``), one row per sketch headed by its name or key.

The stages run as in training (docs/method.md, The two stages): the draft network sees the
sketch and the hints; the refinement network sees the sketch, the hints and that draft (its
training drafts were synthesised; here it gets the real one). A sketch of any size is padded at
the bottom and right to a multiple of the network's stride (``2 ** depth``): with paper (white)
for the sketch, "no hint" for the hints and the edge pixels for the draft, never resized (the
refinement network's draft encoder also needs ``REFINE_MIN_SIDE`` pixels a side); the outputs are
cropped back to the sketch's size.

Sketches are line art: ``(H, W)`` 8-bit, 255 paper, 0 ink, read like the build reads pictures
(``s2pdata.decode``: EXIF orientation, alpha onto white, 16-bit to 8-bit). A colour picture given
as a sketch is an error unless ``--extract`` says what to do: ``gray`` takes its luma as the
line art; ``xdog``, ``dilate`` and ``highpass`` run the build's extractor of that name without
its random augmentations (``s2pdata.stages.sketch.extract_sketch``, ``augment=False``);
``learned`` runs a learned extractor (``--extract-weights ARCH:PATH``, ``s2pdata.stages.learned``).
A grey picture (its channels differ by more than ``COLOR_SPREAD`` levels on at most ``COLOR_SHARE``
of its pixels) is read as line art as it is. ``--clean`` binarises the line art with the Otsu
threshold the build applies to a quarter of its sketches (``binarize_otsu``): grey paper, pencil
shading and scanner noise become white, lines black.

Hints are an RGBA PNG of the sketch's size whose alpha is the hint mask (the shards' ``hint.png``),
used as they are by both stages; or JSON: a list of ``{"row", "col", "side", "rgb": [r, g, b]}``
records (the ``hints`` entry of a sample's json, ``s2pdata.stages.hints.Hints``; a whole sample
json is accepted too), drawn as ``(2 r + 1)^2`` squares around each (row, col) with the radius
each network was trained with: its checkpoint's ``hint_radius``, else 1 for the draft network
and 2 for refinement (docs/method.md, User hints); ``--hint-radius`` overrides both. For a folder
of sketches, ``--hints DIR`` holds ``NAME.png`` or ``NAME.json`` per sketch; a sketch without
one is coloured without hints. Samples of ``--shards`` use their stored hint records, drawn the
same way (``--no-hints``: none).

Runs on CUDA when present (``--device``), in bfloat16 autocast on CUDA where the checkpoint's
``bf16`` setting asks for it (unset: where the GPU supports it, as the trainer does), else in
float32. Every bad input is one line on stderr and exit status 2 (nothing written); in a run of
several sketches, one that cannot be used is named on stderr and skipped, the others are written,
and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ._safeio import atomic_write
from .storage import STORAGE_OPTIONS_HELP, options_arg

EXTRACTORS = ("none", "gray", "xdog", "dilate", "highpass", "learned")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif")
COLOR_SPREAD = 24  # levels: a pixel whose channels differ by more is coloured (JPEG noise on grey stays below)
COLOR_SHARE = 0.005  # a picture with more coloured pixels than this share is a colour picture, not line art
GRID_CELL = 256  # pixels: the height of a picture on the --grid sheet
# the refinement network's Inception-V1 draft encoder shrinks its input 32-fold and fails below 15 px a
# side: smaller sketches are padded up to this (then cropped back, like any padding)
REFINE_MIN_SIDE = 32


class ColorizeError(ValueError):
    """An input ``Colorizer`` or the CLI cannot use; ``str()`` is one line naming it and the fix."""


# ---------------------------------------------------------------------------------------------
# reading sketches and hints


def to_sketch(
    image: np.ndarray, *, extract: str = "none", clean: bool = False, extractor=None, name: str = "image"
) -> np.ndarray:
    """A picture -> line art the networks take.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3) uint8
        Line art (grey, or RGB with equal channels) or, with ``extract``, any RGB picture.
    extract : str
        One of ``EXTRACTORS``: ``none`` (line art as it is; a colour picture is refused), ``gray``
        (luma), ``xdog`` / ``dilate`` / ``highpass`` (the build's extractors, no augmentation),
        ``learned`` (``extractor``).
    clean : bool
        Otsu binarisation afterwards (``s2pdata.stages.sketch.binarize_otsu``): for pencil scans.
    extractor : callable, optional
        For ``learned``: ``(H, W, 3) uint8 -> (H, W) uint8``, e.g. ``stages.learned.load_extractor(spec)``.
    name : str
        How errors name the picture.

    Returns
    -------
    ndarray, (H, W) uint8
        255 paper, 0 ink.

    Raises
    ------
    ColorizeError
        A colour picture with ``extract="none"``, or an argument out of its choices.

    Shape
    -----
    (H, W) or (H, W, 3) uint8 -> (H, W) uint8
    """
    from .stages.sketch import binarize_otsu, extract_sketch

    if extract not in EXTRACTORS:
        raise ColorizeError(f"extract must be one of {', '.join(EXTRACTORS)}, got {extract!r}")
    if (extract == "learned") != (extractor is not None):
        raise ColorizeError("extractor must be given exactly when extract is 'learned' (stages.learned.load_extractor)")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) or image.size == 0:
        raise ColorizeError(f"{name} must be an (H, W) or (H, W, 3) uint8 array, got {_describe(image)}")
    if image.ndim == 3 and image.shape[2] != 3:
        raise ColorizeError(f"{name} must have 3 channels (RGB) when it has a channel axis, got {image.shape}")
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, -1)
    if extract in ("xdog", "dilate", "highpass", "learned"):
        # augment=False draws nothing: the rng only satisfies the signature
        rng = np.random.default_rng(0)
        sketch, _ = extract_sketch(rgb, method=extract, rng=rng, augment=False, extractor=extractor)
    elif image.ndim == 2:
        sketch = image.copy()
    else:
        share = colored_share(image)
        if extract == "none" and share > COLOR_SHARE:
            raise ColorizeError(
                f"{name} is a colour picture ({share:.1%} of its pixels are coloured), not line art; pass "
                "--extract xdog (or dilate, highpass) to draw its lines, or --extract gray to use its luma as it is"
            )
        sketch = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # input is RGB (project convention)
    if clean:
        sketch, _ = binarize_otsu(sketch)
    return np.ascontiguousarray(sketch)


def colored_share(rgb: np.ndarray) -> float:
    """Share of the pixels of an (H, W, 3) uint8 picture whose channels differ by more than ``COLOR_SPREAD``."""
    spread = rgb.max(2).astype(np.int16) - rgb.min(2)
    return float(np.count_nonzero(spread > COLOR_SPREAD)) / spread.size


def read_sketch(path, *, extract: str = "none", clean: bool = False, extractor=None) -> np.ndarray:
    """An image file -> line art ``(H, W) uint8`` (``to_sketch``), decoded as the build decodes pictures.

    Raises ``ColorizeError`` for a missing or unreadable file, or a colour picture without ``extract``.
    """
    from .decode import DecodeError, decode_image

    data = _read_file(path, "sketch")
    try:
        image = decode_image(data, min_side=1)
    except DecodeError as exc:
        raise ColorizeError(f"cannot read sketch {path}: {exc.detail if exc.reason == 'corrupt' else exc}") from None
    return to_sketch(image, extract=extract, clean=clean, extractor=extractor, name=f"sketch {path}")


def read_hints(path, shape) -> np.ndarray | list[dict]:
    """A hints file -> an RGBA map ``(H, W, 4) uint8`` (a ``.png``) or hint records (a ``.json``).

    Parameters
    ----------
    path : str or Path
        An RGBA PNG whose alpha is the hint mask, of the sketch's size; or JSON: a list of
        ``{"row", "col", "side", "rgb"}`` records, or a sample json holding them under ``hints``.
    shape : (H, W)
        The sketch's size: the map must have it, and every record's (row, col) must lie inside it.

    Raises
    ------
    ColorizeError
        A missing or unreadable file, a PNG without alpha or of another size, bad JSON or records.
    """
    data = _read_file(path, "hints")
    if Path(path).suffix.lower() == ".json":
        try:
            obj = json.loads(data)
        except ValueError as exc:  # JSONDecodeError, and bytes that are not UTF-8
            raise ColorizeError(f"hints {path} is not valid JSON ({exc})") from None
        return check_records(obj, shape, f"hints {path}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ColorizeError(f"cannot read hints {path}: not an image OpenCV decodes; give an RGBA PNG or a .json")
    if image.ndim != 3 or image.shape[2] != 4:
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise ColorizeError(
            f"hints {path} has {channels} channel(s); it must be an RGBA PNG whose alpha marks the hints "
            "(0: no hint), as the shards' hint.png"
        )
    if image.dtype != np.uint8:
        image = (image.astype(np.float64) / 257).round().astype(np.uint8)  # 16-bit -> 8-bit
    hint = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)  # cv2 decodes BGRA
    return check_hint_map(hint, shape, f"hints {path}")


def check_hint_map(hint, shape, name: str = "hints") -> np.ndarray:
    """``hint`` if it is an (H, W, 4) uint8 RGBA map of ``shape``; else ``ColorizeError`` naming both sizes."""
    if not isinstance(hint, np.ndarray) or hint.dtype != np.uint8 or hint.ndim != 3 or hint.shape[2] != 4:
        raise ColorizeError(f"{name} must be an (H, W, 4) uint8 RGBA map (alpha: hint mask), got {_describe(hint)}")
    if hint.shape[:2] != tuple(shape[:2]):
        raise ColorizeError(
            f"{name} is {hint.shape[0]}x{hint.shape[1]} (HxW) but the sketch is {shape[0]}x{shape[1]}; draw the "
            "hints on a canvas of the sketch's size (or resize them with s2pdata.stages.hints.resize_hints)"
        )
    return hint


def check_records(obj, shape, name: str = "hints"):
    """JSON hints -> ``stages.hints.Hints`` whose points lie inside ``shape`` (``ColorizeError`` otherwise).

    ``obj`` is a list of ``{"row", "col", "side", "rgb"}`` records, that list as a JSON string, a
    sample json (a dict with ``hints``) or a ``Hints``."""
    from .stages.hints import Hints

    if isinstance(obj, dict):
        if "hints" not in obj:
            raise ColorizeError(
                f"{name} is a JSON object without 'hints'; give a list of "
                '{"row", "col", "side", "rgb": [r, g, b]} records or a sample json'
            )
        obj = obj["hints"]
    if not isinstance(obj, Hints):
        if not isinstance(obj, (list, str)):
            raise ColorizeError(f"{name} must be a list of hint records, got {type(obj).__name__}")
        try:
            obj = Hints.from_json(obj)
        except ValueError as exc:
            raise ColorizeError(f"{name}: {exc}") from None
    H, W = shape[:2]
    outside = [i for i, (r, c) in enumerate(obj.points.tolist()) if not (0 <= r < H and 0 <= c < W)]
    if outside:
        i = outside[0]
        raise ColorizeError(
            f"{name}: hint {i} at (row {obj.points[i, 0]}, col {obj.points[i, 1]}) lies outside the "
            f"{H}x{W} sketch ({len(outside)} of {len(obj)} hints do); rows and columns count from 0 at the top left"
        )
    return obj


def _read_file(path, what: str) -> bytes:
    """The bytes of a user's file; ``ColorizeError`` naming ``what`` when it is missing or unreadable."""
    p = Path(path)
    if p.is_dir():
        raise ColorizeError(f"{what} {path} is a folder; give a file")
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise ColorizeError(f"no {what} file at {path}") from None
    except OSError as exc:
        raise ColorizeError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return f"{type(a).__name__} {a!r}"[:100]


# ---------------------------------------------------------------------------------------------
# the networks


def padded_side(n: int, stride: int, min_side: int = 1) -> int:
    """The side a network is given for a sketch side ``n``: the next multiple of ``stride`` that is
    at least ``n`` and ``min_side``."""
    return -(-max(n, min_side) // stride) * stride


def wants_bf16(setting: bool | None, device_type: str, supported: bool) -> bool:
    """bfloat16 autocast or not: never on the CPU (slower than float32 there); on CUDA the
    checkpoint's (or the caller's) ``bf16`` setting, and where it is unset (auto) whether the GPU
    supports bfloat16, as the trainer decides."""
    if device_type != "cuda":
        return False
    return supported if setting is None else bool(setting)


@dataclass
class _Net:
    """One loaded stage: ``model_fn(batch) -> (1, 3, H, W)`` in [-1, 1] and what its config says."""

    path: str
    stage: str
    step: int
    model_fn: object
    stride: int
    min_side: int
    hint_radius: int
    bf16: bool


@dataclass
class Colorized:
    """What ``Colorizer.colorize`` made of one sketch; every array is at the sketch's size ``(H, W)``.

    ``draft`` and ``refined`` (None without a refinement checkpoint) are ``(H, W, 3) uint8`` RGB;
    ``hint`` is the ``(H, W, 4) uint8`` RGBA map the draft network was given."""

    draft: np.ndarray
    refined: np.ndarray | None
    hint: np.ndarray


class Colorizer:
    """Trained drafting (and refinement) networks, ready to colour sketches.

    Parameters
    ----------
    draft_ckpt : str or Path
        ``RUN_DIR/ckpt.pt`` of ``python -m s2pdata.train draft``.
    refine_ckpt : str or Path, optional
        ``RUN_DIR/ckpt.pt`` of ``python -m s2pdata.train refine``; None runs the draft stage only.
    device : str
        ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    bf16 : bool, optional
        bfloat16 autocast on CUDA; None follows each checkpoint's ``bf16`` setting (unset: on where
        the GPU supports it, as in training). Never on the CPU, where it is slower than float32.
    hint_radius : int, optional
        Half-side of the squares hint records are drawn as; None: each checkpoint's ``hint_radius``,
        else 1 for the draft network, 2 for refinement.

    Raises
    ------
    ColorizeError
        A missing or damaged checkpoint, a checkpoint of the other stage, a bad argument.

    Examples
    --------
    >>> c = Colorizer("runs/draft/ckpt.pt")                              # doctest: +SKIP
    >>> draft, refined = c.run(read_sketch("sketch.png"), hints=[{"row": 40, "col": 60, "side": 3,
    ...                                                          "rgb": [220, 40, 40]}])  # doctest: +SKIP
    """

    def __init__(
        self, draft_ckpt, refine_ckpt=None, device: str = "auto", *, bf16: bool | None = None, hint_radius=None
    ):
        from .evaluate import resolve_device

        if not isinstance(device, str):
            raise ColorizeError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {_describe(device)}")
        if bf16 is not None and not isinstance(bf16, bool):
            raise ColorizeError(f"bf16 must be True, False or None (the checkpoint's setting), got {bf16!r}")
        is_int = isinstance(hint_radius, (int, np.integer)) and not isinstance(hint_radius, bool)
        if hint_radius is not None and not (is_int and 0 <= hint_radius <= 64):
            raise ColorizeError(f"hint_radius must be None or an int from 0 to 64, got {hint_radius!r}")
        try:
            self.device = resolve_device(device)
            import torch

            torch.device(self.device)  # an unknown device name fails here, not in the first forward pass
        except ValueError as exc:  # cuda asked for where there is none
            raise ColorizeError(f"device {device!r}: {exc}") from None
        except RuntimeError:
            raise ColorizeError(f"device {device!r} is not a torch device; give auto, cpu, cuda or cuda:N") from None
        self.draft = self._load(draft_ckpt, "draft", bf16, hint_radius)
        self.refine = None if refine_ckpt is None else self._load(refine_ckpt, "refine", bf16, hint_radius)

    def _load(self, path, stage: str, bf16: bool | None, hint_radius: int | None) -> _Net:
        """Load one checkpoint through ``s2pdata.evaluate.load_model`` and check its stage."""
        import torch

        from .evaluate import load_model

        arg = f"{stage}_ckpt (--{stage})"
        if not isinstance(path, (str, Path)):
            raise ColorizeError(f"{arg} must be a path to RUN_DIR/ckpt.pt, got {_describe(path)}")
        try:
            model_fn, info = load_model(str(path), self.device)
        except (FileNotFoundError, ValueError) as exc:  # CheckpointError is a ValueError: one line naming the file
            raise ColorizeError(f"{arg}: {exc}") from None
        if info["stage"] != stage:
            other = "refine" if stage == "draft" else "draft"
            raise ColorizeError(
                f"{arg}: {path} is a {info['stage']} checkpoint, not a {stage} one; pass it as the {other} "
                f"checkpoint (--{other}) and give a {stage} checkpoint as --{stage}"
            )
        cfg = info["config"]
        device_type = torch.device(self.device).type
        supported = device_type == "cuda" and torch.cuda.is_bf16_supported()
        use_bf16 = wants_bf16(cfg.get("bf16") if bf16 is None else bf16, device_type, supported)
        radius = hint_radius if hint_radius is not None else cfg.get("hint_radius")
        return _Net(
            path=str(path),
            stage=stage,
            step=info["step"],
            model_fn=model_fn,
            stride=2 ** int(cfg.get("depth", 4)),
            min_side=REFINE_MIN_SIDE if stage == "refine" else 1,
            hint_radius=int((1 if stage == "draft" else 2) if radius is None else radius),
            bf16=use_bf16,
        )

    def run(self, sketch: np.ndarray, hints=None) -> tuple[np.ndarray, np.ndarray | None]:
        """Colour one sketch.

        Parameters
        ----------
        sketch : ndarray, (H, W) uint8
            Line art, 255 paper, 0 ink (``read_sketch`` / ``to_sketch`` make it from a file or picture).
        hints : None, ndarray (H, W, 4) uint8, list of dict or ``stages.hints.Hints``
            None: no hints. An RGBA map (alpha = hint mask) goes to both networks as it is; hint
            records (``{"row", "col", "side", "rgb"}``) are drawn at each network's hint radius.

        Returns
        -------
        draft : ndarray, (H, W, 3) uint8
            The drafting network's RGB output.
        refined : ndarray (H, W, 3) uint8, or None
            The refinement network's RGB output, fed with ``draft``; None without ``refine_ckpt``.

        Shape
        -----
        (H, W) -> (H, W, 3), (H, W, 3); any H, W >= 1 (padded to the stride, cropped back).
        """
        out = self.colorize(sketch, hints)
        return out.draft, out.refined

    def colorize(self, sketch: np.ndarray, hints=None) -> Colorized:
        """``run``, also returning the hint map the draft network saw (``Colorized``)."""
        if not isinstance(sketch, np.ndarray) or sketch.dtype != np.uint8 or sketch.ndim != 2 or sketch.size == 0:
            raise ColorizeError(
                f"sketch must be an (H, W) uint8 array (255 paper, 0 ink), got {_describe(sketch)}; make one from a "
                "file or a colour picture with s2pdata.colorize.read_sketch or to_sketch"
            )
        shape = sketch.shape
        if hints is None:
            maps = {stage: np.zeros((*shape, 4), np.uint8) for stage in ("draft", "refine")}
        elif isinstance(hints, np.ndarray):
            hint = check_hint_map(hints, shape)
            maps = {"draft": hint, "refine": hint}
        else:
            from .stages.hints import render_hints

            records = check_records(hints, shape)
            maps = {
                net.stage: render_hints(records, shape, radius=net.hint_radius)
                for net in (self.draft, self.refine)
                if net is not None
            }
        draft = self._forward(self.draft, {"sketch": sketch, "hint": maps["draft"]})
        refined = None
        if self.refine is not None:
            refined = self._forward(self.refine, {"sketch": sketch, "hint": maps["refine"], "draft": draft})
        return Colorized(draft, refined, maps["draft"])

    def _forward(self, net: _Net, fields: dict) -> np.ndarray:
        """uint8 fields at the sketch's size -> the network's uint8 RGB output at that size.

        Pads the bottom and right to a multiple of ``net.stride`` (and to ``net.min_side``): paper for
        the sketch, zero for the hints (no hint), the edge pixels for the draft."""
        import torch

        from .data import to_model_input
        from .train.common import to_uint8

        H, W = fields["sketch"].shape
        ph, pw = (padded_side(n, net.stride, net.min_side) - n for n in (H, W))
        fill = {"sketch": 255, "hint": 0}
        batch = {}
        for name, a in fields.items():
            a = a if a.ndim == 3 else a[..., None]
            if ph or pw:
                pad = ((0, ph), (0, pw), (0, 0))
                a = np.pad(a, pad, mode="edge") if name == "draft" else np.pad(a, pad, constant_values=fill[name])
            batch[name] = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]
        batch = to_model_input(batch, self.device, non_blocking=False)
        device_type = torch.device(self.device).type
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=net.bf16):
            out = net.model_fn(batch)
        if not bool(torch.isfinite(out).all()):
            raise ColorizeError(
                f"the {net.stage} network ({net.path}) gave NaN or infinity on this sketch; its weights are finite, "
                "so it overflows on this input: try an earlier checkpoint, or --bf16 false"
            )
        return np.ascontiguousarray(to_uint8(out)[0, :H, :W])

    def describe(self) -> str:
        """One line: the checkpoints, their steps, the device and the precision."""
        nets = [n for n in (self.draft, self.refine) if n is not None]
        parts = [f"{n.stage} {n.path} (step {n.step}, {'bf16' if n.bf16 else 'fp32'})" for n in nets]
        return f"{' + '.join(parts)} on {self.device}"


# ---------------------------------------------------------------------------------------------
# the labelled sheet


def grid_row(sketch, hint, draft, refined=None, target=None, *, cell: int = GRID_CELL) -> list[tuple[str, np.ndarray]]:
    """One sketch's panels for ``--grid``, each scaled to height ``cell``: sketch, hints drawn over
    the sketch (grown so that a small hint stays visible), draft[, refined][, target]."""
    from .inspect import hints_over_sketch

    scale = cell / sketch.shape[0]
    grow = max(0, round(2.0 / scale) - 1)  # about 2 px on the sheet however far it is scaled down
    panels = [
        ("sketch", np.repeat(sketch[..., None], 3, -1)),
        ("hints", hints_over_sketch(sketch, hint, grow=grow)),
        ("draft", draft),
    ]
    panels += [("refined", refined)] if refined is not None else []
    panels += [("target", target)] if target is not None else []
    size = (max(1, round(sketch.shape[1] * scale)), cell)  # cv2 takes (width, height)
    # nearest when enlarging keeps the pixels honest; area when shrinking
    how = cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA
    return [(label, cv2.resize(img, size, interpolation=how)) for label, img in panels]


def save_sheet(path, rows: list[list[tuple[str, np.ndarray]]], names: list[str]) -> None:
    """Rows of ``grid_row`` panels -> one labelled PNG (``s2pdata.train.common.save_grid``); narrower
    panels are padded with white to the widest."""
    from .train.common import save_grid

    width = max(img.shape[1] for row in rows for _, img in row)
    labels = [label for label, _ in rows[0]]
    columns = []
    for j, label in enumerate(labels):
        tiles = [np.pad(r[j][1], ((0, 0), (0, width - r[j][1].shape[1]), (0, 0)), constant_values=255) for r in rows]
        columns.append((label, np.stack(tiles)))
    save_grid(Path(path), columns, names)


# ---------------------------------------------------------------------------------------------
# the command line


@dataclass
class _Item:
    """One sketch to colour: its output name, how to read it and its hints, and a target if known."""

    name: str  # NAME of NAME.draft.png and NAME.png
    title: str  # the row's label on the sheet: the file name or the sample key
    label: str  # how messages name it
    sketch: object  # (H, W) uint8, or the path of a file read when its turn comes
    hints_file: str | None = None  # a hints file read when its turn comes
    hints: object = None  # or hints already at hand: records (JSON text) or an RGBA map
    target: np.ndarray | None = None


def safe_name(text: str) -> str:
    """A file name from a sketch's stem or a sample key: anything but letters, digits, ``._-`` becomes ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")
    return name or "sketch"


def _sketch_items(paths: list[str], hints: str | None) -> list[_Item]:
    """Items of the sketch files and folders given on the command line (a folder: its images, sorted)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not found:
                raise ColorizeError(f"folder {p} holds no image ({', '.join(IMAGE_SUFFIXES)}); give sketch files")
            files += found
        elif not p.exists():
            raise ColorizeError(f"no sketch file at {p}")
        else:
            files.append(p)
    several = len(files) > 1 or any(Path(p).is_dir() for p in paths)
    hint_dir = hints is not None and Path(hints).is_dir()
    if hints is not None and several and not hint_dir:
        raise ColorizeError(
            f"--hints {hints} is one file but there are {len(files)} sketches; give a folder holding NAME.png or "
            "NAME.json for each sketch NAME"
        )
    if hints is not None and not several and hint_dir:
        raise ColorizeError(f"--hints {hints} is a folder but there is one sketch; give its hints file")
    if hints is not None and not hint_dir and not Path(hints).is_file():
        raise ColorizeError(f"no hints file at {hints}")
    items, seen = [], {}
    for f in files:
        name = safe_name(f.stem)
        if name in seen:
            raise ColorizeError(
                f"sketches {seen[name]} and {f} would both be written as {name}.png; rename one of them"
            )
        seen[name] = f
        h = hints
        if hint_dir:
            candidates = (Path(hints) / f"{f.stem}.png", Path(hints) / f"{f.stem}.json")
            h = next((str(c) for c in candidates if c.is_file()), None)
        items.append(_Item(name, f.name, f"sketch {f}", str(f), hints_file=h))
    return items


def _shard_items(args) -> list[_Item]:
    """Items of build samples (``--keys`` or ``--random``): sketch, hint records and target colour."""
    from .inspect import choose_samples
    from .shards import ShardError, shard_paths
    from .storage import StorageError, redact

    try:
        if not shard_paths(args.shards, storage_options=args.storage_options):
            raise FileNotFoundError("it holds no shard-*.tar; give a build folder, a tar or a glob")
        samples = choose_samples(
            args.shards,
            keys=args.keys,
            random=args.random,
            seed=args.seed,
            storage_options=args.storage_options,
        )
    except (LookupError, ShardError, StorageError, FileNotFoundError) as exc:
        raise ColorizeError(f"--shards {redact(args.shards)}: {exc}") from None
    if not samples:
        raise ColorizeError(f"--shards {redact(args.shards)} holds no samples")
    items = []
    for s in samples:
        key = str(s["__key__"])
        records = s["json"].get("hints") if isinstance(s.get("json"), dict) else None
        hints = None if args.no_hints else (records if records is not None else s["hint"])
        items.append(_Item(safe_name(key), key, f"sample {key}", s["sketch"], hints=hints, target=s["color"]))
    return items


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a hint radius; give a whole number from 0 to 64")
    return value


def _tristate(text: str) -> bool | None:
    table = {"true": True, "false": False, "auto": None}
    if text.lower() not in table:
        raise argparse.ArgumentTypeError(f"{text!r}: give true, false or auto")
    return table[text.lower()]


HELP_EPILOG = """\
outputs: per sketch NAME, NAME.draft.png (the draft stage) and NAME.png (the refinement stage;
  without --refine the draft again), RGB at the sketch's size; --grid: sketch | hints | draft |
  refined | target, a row per sketch or sample key.
sketches from outside: a colour picture given as a sketch is an error unless --extract says how
  to make line art of it: gray (its luma), xdog | dilate | highpass (the build's extractors,
  without their random augmentations), learned (--extract-weights ARCH:PATH). A scanned pencil
  sketch: --extract gray --clean (the Otsu binarisation the build applies to a quarter of its
  sketches: grey paper and shading turn white, lines black). Grey pictures are line art as they are.
exit status: 0 done; 2 bad input (one line on stderr, nothing written); 1 some of several
  sketches could not be used (each named on stderr, the others written).
more: pydoc s2pdata.colorize"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown only where there is one (not for None or a flag's False); the epilog as written."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    from .inspect import _count, _key_list

    p = argparse.ArgumentParser(
        prog="python -m s2pdata.colorize",
        description=__doc__.split("\n\n")[0],
        formatter_class=_HelpFormatter,
        epilog=HELP_EPILOG,
    )
    p.add_argument("sketches", nargs="*", metavar="SKETCH", help="sketch image files or folders of them")
    p.add_argument("--draft", required=True, metavar="CKPT", help="RUN_DIR/ckpt.pt of python -m s2pdata.train draft")
    p.add_argument("--refine", default=None, metavar="CKPT", help="RUN_DIR/ckpt.pt of python -m s2pdata.train refine")
    p.add_argument(
        "--hints",
        default=None,
        metavar="FILE|DIR",
        help="RGBA PNG of the sketch's size (alpha: hint mask) or JSON hint records; for a folder of sketches a "
        "folder of NAME.png / NAME.json (a sketch without one gets no hints); default: no hints",
    )
    p.add_argument(
        "--hint-radius",
        type=_nonneg_int,
        default=None,
        metavar="R",
        help="JSON hints are drawn as (2r+1)^2 squares; default: each checkpoint's hint_radius, else 1 (draft), "
        "2 (refine)",
    )
    p.add_argument("--no-hints", action="store_true", help="colour --shards samples without their stored hints")
    p.add_argument("--out", default=None, metavar="DIR", help="folder for NAME.draft.png, NAME.png (made)")
    p.add_argument("--grid", default=None, metavar="PATH.png", help="also write a labelled sheet, one row per sketch")
    p.add_argument("--grid-cell", type=_count, default=GRID_CELL, metavar="PX", help="height of a picture on the sheet")
    p.add_argument(
        "--extract",
        default="none",
        choices=EXTRACTORS,
        help="how a sketch file becomes line art: none (line art as it is; a colour picture is an error), gray "
        "(luma), xdog | dilate | highpass (the build's extractors), learned (--extract-weights)",
    )
    p.add_argument("--extract-weights", default=None, metavar="ARCH:PATH", help="weights of --extract learned")
    p.add_argument("--clean", action="store_true", help="binarise the line art (Otsu, as the build): for pencil scans")
    p.add_argument(
        "--shards", default=None, metavar="DIR|URL", help="colour samples of this build (with --keys or --random)"
    )
    p.add_argument("--keys", type=_key_list, default=None, metavar="K1,K2", help="the --shards samples to colour")
    p.add_argument("--random", type=_count, default=None, metavar="N", help="N random --shards samples (--seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random")
    p.add_argument("--storage-options", type=options_arg, default=None, metavar="JSON", help=STORAGE_OPTIONS_HELP)
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N")
    p.add_argument(
        "--bf16",
        type=_tristate,
        default=None,
        metavar="true|false|auto",
        help="bfloat16 autocast on CUDA; auto: as each checkpoint's bf16 setting (on where the GPU supports it)",
    )
    p.add_argument("--no-progress", action="store_true", help="no banner or progress bar on stderr")
    return p


def _check_args(args) -> None:
    """Refuse contradictory flags before anything is loaded (one line each)."""
    if args.shards is None:
        if not args.sketches:
            raise ColorizeError("give a SKETCH (a file or a folder), or --shards DIR with --keys or --random")
        for flag in ("keys", "random"):
            if getattr(args, flag) is not None:
                raise ColorizeError(f"--{flag} picks samples of --shards; give --shards DIR too")
        if args.no_hints:
            raise ColorizeError("--no-hints applies to --shards samples; for sketch files leave out --hints")
    else:
        if args.sketches:
            raise ColorizeError("give either SKETCH files or --shards, not both")
        if (args.keys is None) == (args.random is None):
            raise ColorizeError("--shards needs exactly one of --keys K1,K2 and --random N")
        if args.extract != "none" or args.clean:
            raise ColorizeError("--extract and --clean apply to sketch files; --shards samples hold their line art")
        if args.hints is not None:
            raise ColorizeError("--shards samples use their stored hints; leave out --hints (or use --no-hints)")
    if args.hints is not None and args.no_hints:
        raise ColorizeError("give --hints or --no-hints, not both")
    if (args.extract == "learned") != (args.extract_weights is not None):
        raise ColorizeError("--extract-weights ARCH:PATH goes with --extract learned, and --extract learned needs it")
    if args.out is None and args.grid is None:
        raise ColorizeError("give --out DIR (NAME.draft.png, NAME.png) and/or --grid PATH.png")
    if args.grid is not None and Path(args.grid).suffix.lower() != ".png":
        raise ColorizeError(f"--grid {args.grid}: the sheet is a PNG; give a path ending in .png")
    for flag in ("draft", "refine"):
        path = getattr(args, flag)
        if path is not None and not Path(path).is_file():
            raise ColorizeError(f"--{flag}: no checkpoint at {path} (give RUN_DIR/ckpt.pt of python -m s2pdata.train)")


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))  # cv2 encodes BGR
    if not ok:
        raise OSError(f"OpenCV could not encode {path}")
    atomic_write(path, data.tobytes())


def _prepare(item: _Item, args, extractor) -> tuple[np.ndarray, object]:
    """The item's line art and hints, read from their files now."""
    sketch = item.sketch
    if isinstance(sketch, str):
        sketch = read_sketch(sketch, extract=args.extract, clean=args.clean, extractor=extractor)
    if item.hints_file is not None:
        return sketch, read_hints(item.hints_file, sketch.shape)
    hints, name = item.hints, f"{item.label}'s hints"
    if isinstance(hints, np.ndarray):
        hints = check_hint_map(hints, sketch.shape, name)
    elif hints is not None:
        hints = check_records(hints, sketch.shape, name)
    return sketch, hints


def main(argv: list[str] | None = None) -> int:
    """CLI (see the module docstring): 0 done, 2 bad input (one line), 1 some of several sketches skipped."""
    args = _parser().parse_args(argv)
    prog = "s2pdata.colorize"
    try:
        _check_args(args)
        items = _shard_items(args) if args.shards is not None else _sketch_items(args.sketches, args.hints)
        extractor = None
        if args.extract == "learned":
            from .stages.learned import load_extractor

            try:
                extractor = load_extractor(args.extract_weights)
            except (ValueError, OSError) as exc:
                raise ColorizeError(f"--extract-weights {args.extract_weights}: {exc}") from None
        colorizer = Colorizer(args.draft, args.refine, args.device, bf16=args.bf16, hint_radius=args.hint_radius)
        out = None if args.out is None else Path(args.out)
        if out is not None:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ColorizeError(f"--out {out}: cannot make the folder ({exc.strerror or exc})") from None
    except ColorizeError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    progress = not args.no_progress
    if progress:
        print(f"{prog}: {len(items)} sketch(es); {colorizer.describe()}", file=sys.stderr)
    from tqdm import tqdm

    rows, names, skipped = [], [], 0
    for item in tqdm(items, desc="colorize", unit="img", file=sys.stderr, disable=not progress or len(items) < 2):
        try:
            sketch, hints = _prepare(item, args, extractor)
            result = colorizer.colorize(sketch, hints)
            if out is not None:
                _write_png(out / f"{item.name}.draft.png", result.draft)
                _write_png(out / f"{item.name}.png", result.draft if result.refined is None else result.refined)
        except (ColorizeError, OSError) as exc:
            message = f"{item.label}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
            if len(items) == 1:
                print(f"{prog}: {message}", file=sys.stderr)
                return 2
            print(f"{prog}: skipped: {message}", file=sys.stderr)
            skipped += 1
            continue
        if args.grid is not None:
            rows.append(grid_row(sketch, result.hint, result.draft, result.refined, item.target, cell=args.grid_cell))
            names.append(item.title)
    done = len(items) - skipped
    if rows:
        try:
            save_sheet(args.grid, rows, names)
        except (OSError, ValueError) as exc:
            print(f"{prog}: --grid {args.grid}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return 2
    where = [f"{done} x NAME.draft.png + NAME.png in {out}"] if out is not None and done else []
    where += [f"the sheet {args.grid}"] if rows else []
    print(f"colourised {done} of {len(items)} sketch(es)" + (f": {', '.join(where)}" if where else ""))
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
