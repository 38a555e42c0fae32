"""Reference images: identity is exact, determinism, replay, correspondence map, fixed schema."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2pdata.stages.refimage import (
    PARAM_KEYS,
    make_reference,
    make_reference_params,
    reference_from_params,
    reference_map,
)
from tests.reference import compatible, draw_cel, draw_smooth, ref_bilinear, schema


@st.composite
def pictures(draw, max_side: int = 48):
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    return draw_cel(h, w, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 5)), draw(st.integers(0, 3)))


def _identity(shape, grid=3) -> dict:
    h, w = shape[:2]
    return {
        "size": [h, w],
        "grid": grid,
        "disp": np.zeros((grid + 1, grid + 1, 2)).tolist(),
        "crop_box": [0, 0, h, w],
        "hue_shift": 0.0,
        "sat_scale": 1.0,
        "val_scale": 1.0,
    }


@settings(max_examples=20)
@given(pictures(), st.integers(0, 2**32 - 1))
def test_identity_is_exact_and_make_replays(img, seed):
    before = img.copy()
    np.testing.assert_array_equal(reference_from_params(img, _identity(img.shape)), img)
    # the same through make_reference with every range collapsed to the identity
    out, p = make_reference(
        img, rng=np.random.default_rng(seed), max_disp=0.0, crop=(1.0, 1.0), hue=0.0, sat=(1.0, 1.0), val=(1.0, 1.0)
    )
    np.testing.assert_array_equal(out, img)
    ref, p = make_reference(img, rng=np.random.default_rng(seed))
    ref2, p2 = make_reference(img, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(ref, ref2)
    assert p == p2 and tuple(p) == PARAM_KEYS
    assert ref.shape == img.shape and ref.dtype == np.uint8
    np.testing.assert_array_equal(reference_from_params(img, json.loads(json.dumps(p))), ref)
    np.testing.assert_array_equal(img, before)


@settings(max_examples=15)
@given(st.integers(48, 80), st.integers(48, 80), st.integers(0, 2**32 - 1))
def test_reference_map_gives_correspondences(h, w, seed):
    """Without colour jitter, reference pixel (r, c) shows the target at reference_map[r, c]."""
    img = draw_smooth(h, w, seed)
    ref, p = make_reference(img, rng=np.random.default_rng(seed), hue=0.0, sat=(1, 1), val=(1, 1))
    m = reference_map(p)
    inside = (m[..., 0] >= 0) & (m[..., 0] <= h - 1) & (m[..., 1] >= 0) & (m[..., 1] <= w - 1)
    # two resamplings (remap, then resize) against one bilinear lookup: about a grey level apart
    expect = ref_bilinear(img, m[..., 0], m[..., 1])
    err = np.abs(expect - ref.astype(np.float64))[inside]
    assert inside.mean() > 0.5
    assert err.mean() < 1.0 and np.percentile(err, 99) < 4.0  # the naive identity map: ~15 and ~60


def test_colour_jitter_only_changes_colours_not_layout():
    img = np.full((16, 16, 3), (200, 40, 40), np.uint8)
    p = _identity(img.shape)
    p.update(hue_shift=120.0)
    out = reference_from_params(img, p)
    assert len(np.unique(out.reshape(-1, 3), axis=0)) == 1
    np.testing.assert_allclose(out[0, 0], (40, 200, 40), atol=1)  # red rotated to green


def test_constant_image_survives_deformation_and_crop():
    img = np.full((40, 30, 3), 123, np.uint8)
    ref, _ = make_reference(img, rng=np.random.default_rng(3), hue=0.0, sat=(1, 1), val=(1, 1))
    np.testing.assert_array_equal(ref, img)


def test_params_schema_is_fixed():
    ref = None
    for i, shape in enumerate([(1, 1), (40, 40), (64, 48)]):
        p = make_reference_params(shape, rng=np.random.default_rng(i))
        sc = schema(json.loads(json.dumps(p)))
        assert ref is None or compatible(ref, sc), (ref, sc)
        ref = ref or sc


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(grid=0), ValueError, "grid"),
        (dict(max_disp=0.5), ValueError, "max_disp"),
        (dict(crop=(0.9, 0.8)), ValueError, "crop"),
        (dict(hue=-1.0), ValueError, "hue"),
        (dict(sat=1.0), TypeError, "sat"),
        (dict(rng=None), TypeError, "rng"),
    ],
)
def test_bad_input_names_the_argument(kwargs, exc, name):
    args = dict(rng=np.random.default_rng(0))
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        make_reference(np.zeros((8, 8, 3), np.uint8), **args)


def test_params_for_another_size_are_refused():
    p = make_reference_params((8, 8), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="size"):
        reference_from_params(np.zeros((9, 8, 3), np.uint8), p)
