"""The stage order: encoded bytes of one item -> one sample of numpy arrays and its json.

Consumes ``(key, bytes, meta)`` and a ``SynthConfig``; produces the sample dict that
``shards.encode_sample`` writes: ``color`` (H, W, 3) uint8, ``sketch`` (H, W) uint8, ``hint``
(H, W, 4) uint8, ``regions`` (H, W) int32 trapped-ball labels 1..K, ``draft0``.. (H, W, 3)
uint8 synthetic flawed drafts and ``json`` (provenance plus every parameter drawn, so a sample
can be re-created: ``drafts.replay_draft(color, pool, json["drafts"][k], regions=regions,
sketch=sketch)``; with ``drafts_from`` a draft may instead be a trained draft model's output,
``modeldrafts.replay_checkpoint_draft``). Every stage draws
from its own generator, derived from (seed, key, stage), so adding a stage never changes what
the others draw. This is the only module that knows the order.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from . import SCHEMA_VERSION
from ._check import check_choice, check_probability
from ._rng import sample_rng
from .decode import CROPS, DecodeError, decode_fitted
from .modeldrafts import load_drafter
from .pool import Patch, PatchPool
from .shards import COLOR_FORMATS, MAX_SAMPLE_PIXELS, Schema
from .stages.domain import color_domain
from .stages.drafts import DRAFT_STYLES, cut_rect_patch, cut_region_patches, make_draft, pack_draft
from .stages.flat import flat_fill
from .stages.hints import render_hints, sample_hints
from .stages.learned import load_extractor, parse_weights_spec
from .stages.refimage import make_reference
from .stages.regions import KEEP, RADII, propose_regions
from .stages.rough import roughen_sketch
from .stages.sketch import SKETCH_METHODS, extract_sketch

SKETCH_STYLES = ("clean", "rough", "mix")  # mix: rough with probability rough_weight
OPTIONAL_FIELDS = ("flat", "colordomain", "reference")  # --fields: beyond the paper


# The int settings' bounds, inclusive (the CLI's --help shows them). The upper ones keep one sample's
# arrays within a few GB: a 4096-px short side is 50 MP of RGB at 3:1, and every draft is another copy.
INT_BOUNDS = {
    "size": (0, 4096),  # 0 keeps the source's size
    "hint_radius": (0, 8),
    "color_quality": (1, 100),
    "max_pixels": (1, MAX_SAMPLE_PIXELS),  # 67 MP: what a reader of the shards decodes at most (--size 0)
    "min_side": (1, 4096),
    "drafts": (0, 16),
    "pool_size": (1, 1_000_000),
}


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides a sample's content (part of the build's fingerprint); the int fields
    stay within ``INT_BOUNDS``."""

    size: int = 512
    crop: str = "none"
    sketch: str = "mix"
    hint_radius: int = 1
    color_format: str = "jpg"
    color_quality: int = 95
    max_pixels: int = 64_000_000
    min_side: int = 32
    drafts: int = 1
    pool_size: int = 10_000
    sketch_style: str = "clean"
    rough_weight: float = 0.5
    fields: tuple[str, ...] = ()
    sketch_weights: str = ""  # "ARCH:PATH" for sketch="learned" (s2pdata.stages.learned)
    exact_decode: bool = False  # True: never decode at a reduced DCT scale (decode.decode_fitted)
    draft_style: str = "paper"  # paper | model (a draft network's mistakes) | mix (model with draft_mix)
    draft_mix: float = 0.5  # with draft_style="mix": the probability that a draft is of the model family
    drafts_from: str = ""  # a draft checkpoint (python -m s2pdata.train draft): its output as drafts
    drafts_from_p: float = 1.0  # with drafts_from: the probability that a draft is the checkpoint's output

    def __post_init__(self):
        check_choice("crop", self.crop, CROPS)
        check_choice("sketch", self.sketch, SKETCH_METHODS)
        if self.sketch == "learned":
            parse_weights_spec(self.sketch_weights)
        elif self.sketch_weights:
            raise ValueError(
                f"sketch_weights={self.sketch_weights!r} is only used with sketch='learned', "
                f"got sketch={self.sketch!r}; set sketch='learned' or drop the weights"
            )
        check_choice("sketch_style", self.sketch_style, SKETCH_STYLES)
        check_probability("rough_weight", self.rough_weight)
        fields = tuple(self.fields)
        for name in fields:
            check_choice("fields", name, OPTIONAL_FIELDS)
        # canonical order, so "reference,flat" and "flat,reference" are the same build
        object.__setattr__(self, "fields", tuple(f for f in OPTIONAL_FIELDS if f in fields))
        check_choice("color_format", self.color_format, COLOR_FORMATS)
        for name, (low, high) in INT_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an int in {low}..{high}, got {value!r}")
        if not isinstance(self.exact_decode, bool):
            raise ValueError(f"exact_decode must be a bool, got {self.exact_decode!r}")
        check_choice("draft_style", self.draft_style, DRAFT_STYLES)
        check_probability("draft_mix", self.draft_mix)
        self._check_drafts_from()

    def _check_drafts_from(self) -> None:
        """``drafts_from`` a path string, used only with drafts; ``drafts_from_p`` a probability, only with it.
        (The file itself is checked once, before a build starts: ``modeldrafts.checkpoint_info``.)"""
        if not isinstance(self.drafts_from, str):
            raise ValueError(f"drafts_from must be the path of a draft checkpoint (str), got {self.drafts_from!r}")
        p = self.drafts_from_p
        check_probability("drafts_from_p", p)
        if not self.drafts_from and p != 1:
            raise ValueError(
                f"drafts_from_p={p!r} is only used with drafts_from (--drafts-from CKPT); give a draft "
                "checkpoint or drop drafts_from_p"
            )
        if self.drafts_from and not self.drafts:
            raise ValueError(
                f"drafts_from={self.drafts_from!r} makes drafts, but drafts=0; set drafts to 1 or more "
                "(--drafts) or drop drafts_from"
            )

    def schema(self) -> Schema:
        return Schema(
            color_format=self.color_format,
            color_quality=self.color_quality,
            regions=True,
            drafts=self.drafts,
            extras=self.fields,
        )

    def to_json(self) -> dict:
        """The config as dataset.json records it: the draft mix only with ``draft_style="mix"`` (the
        only style it changes), and neither for a paper-style build, whose record is then the one
        builds made before the model family (they still resume); ``drafts_from`` and its share only
        when set."""
        out = {**asdict(self), "fields": list(self.fields)}
        if not self.drafts_from:
            del out["drafts_from"], out["drafts_from_p"]
        if self.draft_style != "mix":
            del out["draft_mix"]
        if self.draft_style == "paper":
            del out["draft_style"]
        return out


class Timer:
    """Accumulates seconds per stage name."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


# Every sample's json has the same keys and types (Hugging Face infers one schema from the first
# samples): parameters a sketch method does not use are 0.0, and -1.0 means "not binarised".
_SKETCH_DEFAULTS = {
    "sigma": 0.0,
    "k": 0.0,
    "tau": 0.0,
    "phi": 0.0,
    "eps": 0.0,
    "otsu_threshold": -1.0,
    "lighten_r": 1.0,
}


def stable_sketch_params(params: dict) -> dict:
    """Sketch parameters with a fixed key set and float values where a method leaves a gap."""
    out = dict(_SKETCH_DEFAULTS)
    out.update({k: v for k, v in params.items() if v is not None})
    return {k: float(v) if k in _SKETCH_DEFAULTS else v for k, v in out.items()}


def fitted_color(
    data: bytes, *, key: str, seed: int, cfg: SynthConfig, timer: Timer | None = None, check=None
) -> tuple[np.ndarray, dict]:
    """Decode ``data``, resize/crop it per ``cfg`` and run the pixel filter ``check``.

    Returns the colour image and a json fragment (original size, fit parameters). Raises
    ``DecodeError`` for bad input or a filtered image.
    """
    timer = timer or Timer()
    with timer("decode"):
        color, full_hw, fit = decode_fitted(
            data,
            size=cfg.size,
            crop=cfg.crop,
            rng=sample_rng(seed, key, "fit"),
            exact=cfg.exact_decode,
            max_pixels=cfg.max_pixels,
            min_side=cfg.min_side,
        )
        reason = check(color) if check is not None else None
        if reason:
            raise DecodeError(reason, f"rejected by the pixel filter ({reason})")
    return color, {"orig_size": [int(full_hw[0]), int(full_hw[1])], "fit": fit.to_json()}


def make_sample(
    data: bytes,
    *,
    key: str,
    seed: int,
    cfg: SynthConfig,
    meta: dict | None = None,
    timer: Timer | None = None,
    check=None,
    pool: PatchPool | None = None,
) -> dict:
    """Decode ``data`` and synthesise every field of one sample.

    ``check(color) -> reason | None`` is a pixel filter run on the fitted colour image (the
    source's ``check_pixels``); ``pool`` is the build's patch pool for the drafts. Raises
    ``s2pdata.decode.DecodeError`` (with a ``reason``) for bad input or a filtered image; the
    build turns it into a reject.
    """
    timer = timer or Timer()
    color, fit_info = fitted_color(data, key=key, seed=seed, cfg=cfg, timer=timer, check=check)
    with timer("sketch"):
        extractor = load_extractor(cfg.sketch_weights) if cfg.sketch == "learned" else None
        sketch, sketch_params = extract_sketch(
            color, method=cfg.sketch, rng=sample_rng(seed, key, "sketch"), extractor=extractor
        )
    rough_rng = sample_rng(seed, key, "rough")
    rough = cfg.sketch_style == "rough" or (cfg.sketch_style == "mix" and rough_rng.random() < cfg.rough_weight)
    rough_params = {}
    if rough:
        with timer("rough"):
            sketch, rough_params = roughen_sketch(sketch, rng=rough_rng)
    with timer("hints"):
        hints = sample_hints(color, rng=sample_rng(seed, key, "hints"))
        hint = render_hints(hints, color.shape[:2], radius=cfg.hint_radius)
    with timer("regions"):
        labels = propose_regions(color)
    drafts = {}
    # with drafts_from, a draw per draft (its own generator: the synthetic drafts draw what they drew
    # without it) picks the checkpoint's output; the network runs once, whatever the count
    from_net = [
        bool(cfg.drafts_from) and sample_rng(seed, key, "drafts-from", k).random() < cfg.drafts_from_p
        for k in range(cfg.drafts)
    ]
    if any(from_net):
        with timer("drafts_from"):
            net_draft = load_drafter(cfg.drafts_from)(sketch, hint)
    style = {"style": cfg.draft_style, "mix": cfg.draft_mix, "regions": labels, "sketch": sketch}
    packed = cfg.draft_style != "paper" or bool(cfg.drafts_from)
    with timer("drafts"):
        for k in range(cfg.drafts):
            if from_net[k]:
                draft, params = net_draft
            else:
                draft, params = make_draft(color, pool=pool, rng=sample_rng(seed, key, "draft", k), **style)
            # a build that may hold several families stores each record as its family and JSON text: one schema
            drafts[f"draft{k}"] = draft, pack_draft(params) if packed else params
    extras = {}
    for name in cfg.fields:
        with timer(name):
            extras[name] = _EXTRA_FIELDS[name](color, labels, sample_rng(seed, key, name))
    info = {
        "key": key,
        "schema_version": SCHEMA_VERSION,
        "source": {**(meta or {}), "sha256": hashlib.sha256(data).hexdigest()},
        **fit_info,
        "size": [int(color.shape[0]), int(color.shape[1])],
        "sketch": {
            **stable_sketch_params(sketch_params),
            "style": "rough" if rough else "clean",
            # variable-length strokes as a JSON string: one schema for rough and clean samples
            "rough": json.dumps(rough_params, sort_keys=True, separators=(",", ":")),
        },
        # a JSON string, not a list: Hugging Face infers one schema from the first 5 samples, and an
        # empty list (no hints, 1 sample in 8) among all of them would type the field as null
        "hints": json.dumps(hints.to_json(), separators=(",", ":")),
        "hint_radius": cfg.hint_radius,
        "regions": {
            "count": int(labels.max(initial=0)),
            "method": "trapped_ball",
            "radii": list(RADII),
            "keep": list(KEEP),
            "edges": "blur-difference",
        },
        "drafts": [params for _, params in drafts.values()],
        **{name: params for name, (_, params) in extras.items()},
    }
    return {
        "__key__": key,
        "color": color,
        "sketch": sketch,
        "hint": hint,
        "regions": labels,
        **{name: draft for name, (draft, _) in drafts.items()},
        **{name: array for name, (array, _) in extras.items()},
        "json": info,
    }


# Optional fields (--fields): (colour, labels, rng) -> (array, JSON params). Each is re-created from
# its params with flat_from_params / domain_from_params / reference_from_params.
_EXTRA_FIELDS = {
    "flat": lambda color, labels, rng: flat_fill(color, labels),
    "colordomain": lambda color, labels, rng: color_domain(color, rng=rng),
    "reference": lambda color, labels, rng: make_reference(color, rng=rng),
}


def pool_patches(data: bytes, *, key: str, seed: int, cfg: SynthConfig, per_image: int = 8, check=None) -> list[Patch]:
    """Patches one image gives the build's pool (paper; docs/method.md, Region pasting): half rectangles with side
    ~ U[64, 256], half trapped-ball regions (a rectangle where no region qualifies).

    Cut from the image at the build's resolution, so pasting needs no rescaling.
    """
    color, _ = fitted_color(data, key=key, seed=seed, cfg=cfg, check=check)
    labels = propose_regions(color)
    rng = sample_rng(seed, key, "pool")
    n_rect = per_image // 2
    regions = cut_region_patches(color, labels, per_image - n_rect, rng=rng, key=key)
    n_rect = per_image - len(regions)  # rectangles stand in where no region qualifies
    return [cut_rect_patch(color, rng=rng, key=key) for _ in range(n_rect)] + regions


def online_sample(
    sample: dict,
    *,
    seed: int,
    epoch: int,
    pool: PatchPool | None = None,
    hint_radius: int = 1,
    hints: bool = True,
    draft: bool = True,
    draft_style: str = "paper",
    draft_mix: float = 0.5,
) -> dict:
    """Fresh hints (and a fresh draft) for a decoded sample, as the dataset draws them each epoch.

    The draft pastes from ``pool`` (the build's, memory-mapped) or, without one, from regions
    of the sample's own ``regions`` map. ``draft_style`` and ``draft_mix`` choose the family as
    ``make_draft``'s ``style`` and ``mix`` do; the model family uses the sample's ``regions`` and
    ``sketch`` when it has them. Deterministic given (seed, key, epoch); returns a copy with
    ``hint`` (H, W, 4) uint8, with ``draft`` also ``draft`` (H, W, 3) uint8, and
    ``json["online"]`` holding every parameter drawn.
    """
    key, color = sample["__key__"], sample["color"]
    out, online = dict(sample), {"epoch": epoch}
    if hints:
        drawn = sample_hints(color, rng=sample_rng(seed, key, "hints", epoch))
        out["hint"] = render_hints(drawn, color.shape[:2], radius=hint_radius)
        online.update(hints=drawn.to_json(), hint_radius=hint_radius)
    if draft:
        rng = sample_rng(seed, key, "draft-online", epoch)
        if pool is None and "regions" in sample and draft_style != "model":  # the model family pastes nothing
            pool = PatchPool(cut_region_patches(color, sample["regions"], 4, rng=rng, key=key))
        out["draft"], online["draft"] = make_draft(
            color,
            pool=pool,
            rng=rng,
            style=draft_style,
            mix=draft_mix,
            regions=sample.get("regions"),
            sketch=sample.get("sketch"),
        )
    out["json"] = {**sample.get("json", {}), "online": online}
    return out
