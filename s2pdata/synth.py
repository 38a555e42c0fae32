"""The stage order: encoded bytes of one item -> one sample of numpy arrays and its json.

Consumes ``(key, bytes, meta)`` and a ``SynthConfig``; produces the sample dict that
``shards.encode_sample`` writes: ``color`` (H, W, 3) uint8, ``sketch`` (H, W) uint8, ``hint``
(H, W, 4) uint8 and ``json`` (provenance plus every parameter drawn, so a sample can be
re-created). Every stage draws from its own generator, derived from (seed, key, stage), so adding
a stage never changes what the others draw. This is the only module that knows the order.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from . import SCHEMA_VERSION
from ._check import check_choice
from ._rng import sample_rng
from .decode import CROPS, DecodeError, apply_fit, decode_image, plan_fit
from .hints import render_hints, sample_hints
from .shards import COLOR_FORMATS, Schema
from .sketch import SKETCH_METHODS, extract_sketch


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides a sample's content (part of the build's fingerprint)."""

    size: int = 512
    crop: str = "none"
    sketch: str = "mix"
    hint_radius: int = 1
    color_format: str = "jpg"
    color_quality: int = 95
    max_pixels: int = 64_000_000
    min_side: int = 32

    def __post_init__(self):
        check_choice("crop", self.crop, CROPS)
        check_choice("sketch", self.sketch, SKETCH_METHODS)
        check_choice("color_format", self.color_format, COLOR_FORMATS)
        for name in ("size", "max_pixels", "min_side", "color_quality"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if not isinstance(self.hint_radius, int) or not 0 <= self.hint_radius <= 8:
            raise ValueError(f"hint_radius must be an int in 0..8, got {self.hint_radius!r}")

    def schema(self) -> Schema:
        return Schema(color_format=self.color_format, color_quality=self.color_quality)

    def to_json(self) -> dict:
        return asdict(self)


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


def make_sample(data: bytes, *, key: str, seed: int, cfg: SynthConfig, meta: dict | None = None,
                timer: Timer | None = None, check=None) -> dict:
    """Decode ``data`` and synthesise every field of one sample.

    ``check(color) -> reason | None`` is a pixel filter run on the fitted colour image (the
    source's ``check_pixels``). Raises ``s2pdata.decode.DecodeError`` (with a ``reason``) for
    bad input or a filtered image; the build turns it into a reject.
    """
    timer = timer or Timer()
    with timer("decode"):
        full = decode_image(data, max_pixels=cfg.max_pixels, min_side=cfg.min_side)
        fit = plan_fit(full.shape, size=cfg.size, crop=cfg.crop, rng=sample_rng(seed, key, "fit"))
        color = apply_fit(full, fit)
        reason = check(color) if check is not None else None
        if reason:
            raise DecodeError(reason, f"rejected by the pixel filter ({reason})")
    with timer("sketch"):
        sketch, sketch_params = extract_sketch(color, method=cfg.sketch, rng=sample_rng(seed, key, "sketch"))
    with timer("hints"):
        hints = sample_hints(color, rng=sample_rng(seed, key, "hints"))
        hint = render_hints(hints, color.shape[:2], radius=cfg.hint_radius)
    info = {
        "key": key,
        "schema_version": SCHEMA_VERSION,
        "source": {**(meta or {}), "sha256": hashlib.sha256(data).hexdigest()},
        "orig_size": [int(full.shape[0]), int(full.shape[1])],
        "size": [int(color.shape[0]), int(color.shape[1])],
        "fit": fit.to_json(),
        "sketch": sketch_params,
        "hints": hints.to_json(),
        "hint_radius": cfg.hint_radius,
    }
    return {"__key__": key, "color": color, "sketch": sketch, "hint": hint, "json": info}
