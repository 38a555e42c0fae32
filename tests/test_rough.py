"""Rough-sketch simulation: bounded changes, exact replay, fixed params schema."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2pdata.stages.rough import GRAIN_MAX, PARAM_KEYS, roughen_from_params, roughen_sketch
from tests.reference import compatible, ref_rough_violations, schema


def draw_sketch(h: int, w: int, seed: int, n: int) -> np.ndarray:
    """White paper with ``n`` dark or grey lines / circles from ``seed`` (cv2 drawing)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w), 255, np.uint8)
    for _ in range(n):
        ink = int(rng.choice([0, 0, 60, 160, 250]))
        thick = int(rng.integers(1, 4))
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))  # cv2 points are (x, y)
        if rng.random() < 0.5:
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p0, p1, ink, thick, lineType=cv2.LINE_AA if rng.random() < 0.3 else cv2.LINE_8)
        else:
            cv2.circle(img, p0, int(rng.integers(2, max(3, min(h, w) // 2))), ink, thick)
    return img


@st.composite
def sketches(draw, max_side: int = 64):
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    return draw_sketch(h, w, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 8)))


@settings(max_examples=40)
@given(sketches(), st.floats(0.0, 2.0), st.integers(0, 2**32 - 1))
def test_changes_stay_near_ink_or_on_scribbles_or_are_grain(sketch, strength, seed):
    before = sketch.copy()
    rough, params = roughen_sketch(sketch, rng=np.random.default_rng(seed), strength=strength)
    np.testing.assert_array_equal(sketch, before)
    assert rough.dtype == np.uint8 and rough.shape == sketch.shape
    bad = ref_rough_violations(sketch, rough, params)
    assert not bad.any(), f"{bad.sum()} unexplained changes, first at {np.argwhere(bad)[0]}"
    assert params["grain_amp"] <= GRAIN_MAX
    if strength <= 1.0:
        assert params["max_offset"] <= 6


@settings(max_examples=15)
@given(sketches(), st.floats(0.0, 2.0), st.integers(0, 2**32 - 1))
def test_deterministic_and_replays(sketch, strength, seed):
    a, pa = roughen_sketch(sketch, rng=np.random.default_rng(seed), strength=strength)
    b, pb = roughen_sketch(sketch, rng=np.random.default_rng(seed), strength=strength)
    np.testing.assert_array_equal(a, b)
    assert pa == pb
    replay = roughen_from_params(sketch, json.loads(json.dumps(pa)))
    np.testing.assert_array_equal(replay, a)


def test_strength_zero_is_identity():
    s = draw_sketch(48, 40, 3, 6)
    out, params = roughen_sketch(s, rng=np.random.default_rng(0), strength=0.0)
    np.testing.assert_array_equal(out, s)
    assert params["gaps"] == [] and params["scribbles"] == [] and params["max_offset"] == 0


def test_params_schema_is_fixed():
    ref = None
    cases = [
        (np.full((32, 32), 255, np.uint8), 1.0),
        (draw_sketch(64, 64, 1, 8), 0.0),
        (draw_sketch(64, 64, 2, 8), 1.0),
        (draw_sketch(80, 60, 5, 8), 2.0),
    ]
    for i, (s, strength) in enumerate(cases):
        _, p = roughen_sketch(s, rng=np.random.default_rng(i), strength=strength)
        assert tuple(p) == PARAM_KEYS
        sc = schema(json.loads(json.dumps(p)))
        assert ref is None or compatible(ref, sc), (ref, sc)
        ref = ref or sc


def test_roughens_a_real_drawing():
    s = draw_sketch(128, 128, 11, 10)
    out, p = roughen_sketch(s, rng=np.random.default_rng(1))
    assert (out != s).mean() > 0.05 and p["gaps"] and p["max_offset"] == 6
    assert not ref_rough_violations(s, out, p).any()
    # the check is not vacuous: a smaller distance, or forgetting the scribbles, is caught
    assert ref_rough_violations(s, out, {**p, "max_offset": 2}).any()
    sparse = draw_sketch(96, 96, 2, 2)
    out, p = roughen_sketch(sparse, rng=np.random.default_rng(2), strength=2.0)
    assert p["scribbles"] and not ref_rough_violations(sparse, out, p).any()
    assert ref_rough_violations(sparse, out, {**p, "scribbles": []}).any()


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(sketch=np.zeros((4, 4), np.float32)), TypeError),
        (dict(sketch=np.zeros((4, 4, 3), np.uint8)), ValueError),
        (dict(strength=-0.1), ValueError),
        (dict(strength=float("nan")), ValueError),
        (dict(rng=0), TypeError),
    ],
)
def test_bad_input_names_the_argument(kwargs, exc):
    args = dict(sketch=np.full((4, 4), 255, np.uint8), rng=np.random.default_rng(0), strength=1.0)
    args.update(kwargs)
    name = next(iter(kwargs))
    with pytest.raises(exc, match=name):
        roughen_sketch(args.pop("sketch"), **args)
