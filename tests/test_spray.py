"""s2pdata.stages.spray: the soft-stroke mask against a plain-loop rasteriser, blending, parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2pdata.stages.spray import SATURATION_MIN, SprayParams, apply_spray, make_spray_params, pick_color, spray_mask
from tests.reference import ref_apply_spray, ref_spray_mask, ref_spray_mask_bits
from tests.strategies import cel_images, draw_cel_image, spray_params


@st.composite
def image_and_spray(draw, max_side: int = 32):
    img = draw(cel_images(min_side=1, max_side=max_side))
    return img, draw(spray_params(*img.shape[:2]))


@settings(max_examples=40)
@given(case=image_and_spray())
def test_spray_mask_equals_loop_reference(case):
    img, p = case
    m = spray_mask(img.shape, p)
    assert m.dtype == np.float32 and m.shape == img.shape[:2]
    # the reference computes the distance by another formula: bound it on both sides by 1e-9 px
    lo = ref_spray_mask(img.shape, p.paths, p.widths, p.softness, p.opacity, slack=1e-9)
    hi = ref_spray_mask(img.shape, p.paths, p.widths, p.softness, p.opacity, slack=-1e-9)
    assert (m >= lo - 1e-5).all() and (m <= hi + 1e-5).all()
    assert m.min() >= 0.0 and m.max() <= p.opacity + 1e-6


@settings(max_examples=40)
@given(case=image_and_spray())
def test_apply_spray_moves_only_stroke_pixels_towards_the_colour(case):
    img, p = case
    img0 = img.copy()
    out = apply_spray(img, p)
    assert np.array_equal(img, img0) and out.dtype == np.uint8 and out.shape == img.shape
    alpha = spray_mask(img.shape, p)
    changed = np.any(out != img, axis=2)
    assert not np.any(changed & ~(alpha > 0))
    c = np.array(p.color, np.int32)
    assert np.all(np.abs(out.astype(np.int32) - c) <= np.abs(img.astype(np.int32) - c))
    ref = ref_apply_spray(img, alpha, p.color)
    assert np.abs(out.astype(np.int32) - ref).max() <= 1  # float32 rounding order only


@st.composite
def long_strokes(draw):
    """A picture up to 96 px with the draft's own sprays: wide strokes across the whole image."""
    img = draw(cel_images(min_side=8, max_side=96))
    p = make_spray_params(img, rng=np.random.default_rng(draw(st.integers(0, 2**32 - 1))), width=(4.0, 40.0))
    return img, p


@settings(max_examples=40)
@given(case=st.one_of(image_and_spray(), long_strokes()))
def test_spray_kernels_give_the_bits_of_the_whole_image_formula(case):
    # the kernels visit only each row's span inside each stroke's box, and blend only the window
    # holding the strokes (issue 15); bit for bit the whole-image evaluation, in place or not
    img, p = case
    alpha = ref_spray_mask_bits(img.shape, p.paths, p.widths, p.softness, p.opacity)
    assert spray_mask(img.shape, p).tobytes() == alpha.tobytes()
    ref = ref_apply_spray(img, alpha, p.color)
    assert apply_spray(img, p).tobytes() == ref.tobytes()
    work = img.copy()
    assert apply_spray(work, p, inplace=True) is work and work.tobytes() == ref.tobytes()
    view = np.zeros((img.shape[0], img.shape[1] + 3, 3), np.uint8)[:, 1:-2]  # a strided window
    view[...] = img
    apply_spray(view, p, inplace=True)
    assert np.array_equal(view, ref)


@pytest.mark.parametrize(
    "seg",
    [
        ((20.0, -5.0), (20.0, 60.0)),  # horizontal
        ((-5.0, 25.0), (45.0, 25.0)),  # vertical
        ((0.0, 10.0), (39.0, 10.0004)),  # almost vertical: the row cut along the segment is skipped
        ((3.0, 3.0), (3.0, 3.0)),  # a point
        ((-3e6, -2e6), (5e6, 4e6)),  # beyond 1e6 px: the whole box
        ((38.5, -40.0), (-60.0, 70.5)),  # ends far outside
    ],
)
@pytest.mark.parametrize("width,softness", [(0.3, 0.0), (9.0, 0.5), (30.0, 1.0)])
def test_spray_row_spans_keep_every_covered_pixel(seg, width, softness):
    img = draw_cel_image(40, 50, seed=3)
    p = SprayParams(color=(250, 20, 120), paths=(seg,), widths=(width,), softness=softness, opacity=0.7)
    alpha = ref_spray_mask_bits(img.shape, p.paths, p.widths, p.softness, p.opacity)
    assert spray_mask(img.shape, p).tobytes() == alpha.tobytes()
    assert apply_spray(img, p).tobytes() == ref_apply_spray(img, alpha, p.color).tobytes()


def test_full_opacity_hard_stroke_paints_the_colour():
    img = np.zeros((40, 50, 3), np.uint8)
    p = SprayParams(
        color=(200, 10, 90), paths=(((20.0, 5.0), (20.0, 45.0)),), widths=(10.0,), softness=0.0, opacity=1.0
    )
    out = apply_spray(img, p)
    rows, cols = np.mgrid[0:40, 0:50]
    d = np.where(
        cols < 5, np.hypot(rows - 20, cols - 5), np.where(cols > 45, np.hypot(rows - 20, cols - 45), np.abs(rows - 20))
    )
    assert np.all(out[d < 5] == (200, 10, 90)) and np.all(out[d >= 5] == 0)


def test_zero_opacity_changes_nothing():
    img = draw_cel_image(30, 30, seed=2)
    p = SprayParams(color=(1, 2, 3), paths=(((0.0, 0.0), (29.0, 29.0)),), widths=(20.0,), softness=0.5, opacity=0.0)
    assert np.array_equal(apply_spray(img, p), img) and not spray_mask(img.shape, p).any()


@pytest.mark.parametrize("shape", [(512, 512), (256, 384), (1024, 800), (40, 64)])
def test_widths_scale_with_the_short_side(shape):
    img = draw_cel_image(*shape, seed=1)
    scale = min(shape) / 512
    widths = []
    for seed in range(30):
        p = make_spray_params(img, rng=np.random.default_rng(seed))
        assert 1 <= len(p.paths) <= 3 and len(p.widths) == len(p.paths)
        assert 0.3 <= p.softness <= 1.0 and 0.5 <= p.opacity <= 0.9
        for seg in p.paths:
            for r, c in seg:
                assert 0 <= r <= shape[0] - 1 and 0 <= c <= shape[1] - 1
        widths += p.widths
    widths = np.array(widths) / scale
    assert widths.min() >= 64 - 1e-9 and widths.max() < 128 + 1e-9
    assert widths.min() < 75 and widths.max() > 117  # spread over the paper's U[64, 128]


def test_deterministic_per_rng():
    img = draw_cel_image(64, 80, seed=5)
    a = make_spray_params(img, rng=np.random.default_rng(7))
    b = make_spray_params(img, rng=np.random.default_rng(7))
    assert a == b and apply_spray(img, a).tobytes() == apply_spray(img, b).tobytes()
    assert a != make_spray_params(img, rng=np.random.default_rng(8))


@settings(max_examples=30)
@given(case=image_and_spray(max_side=16))
def test_params_json_round_trip(case):
    _, p = case
    d = json.loads(json.dumps(p.to_json()))
    q = SprayParams.from_json(d)
    assert q == p and q.to_json() == d


def test_pick_color_takes_a_saturated_pixel_when_there_is_one():
    img = np.full((64, 64, 3), 128, np.uint8)  # grey: saturation 0
    img[:, 32:] = (250, 40, 30)  # half the picture saturated red
    for seed in range(20):
        assert pick_color(img, rng=np.random.default_rng(seed)) == (250, 40, 30)
    grey = np.full((8, 8, 3), 77, np.uint8)
    assert pick_color(grey, rng=np.random.default_rng(0)) == (77, 77, 77)
    rng = np.random.default_rng(3)
    pic = draw_cel_image(50, 60, seed=3)
    colours = {tuple(int(v) for v in px) for px in pic.reshape(-1, 3)}
    for _ in range(10):
        c = pick_color(pic, rng=rng)
        assert c in colours
    assert SATURATION_MIN > 0


def test_bad_input_names_the_argument():
    img = np.zeros((8, 8, 3), np.uint8)
    rng = np.random.default_rng(0)
    good = dict(color=(1, 2, 3), paths=(((0.0, 0.0), (1.0, 1.0)),), widths=(2.0,), softness=0.5, opacity=0.5)
    cases = [
        (lambda: make_spray_params(img[..., 0], rng=rng), ValueError, "color"),
        (lambda: make_spray_params(img.astype(np.float32), rng=rng), TypeError, "color"),
        (lambda: make_spray_params(img, rng=None), TypeError, "rng"),
        (lambda: make_spray_params(img, rng=rng, n_paths=(0, 2)), ValueError, "n_paths"),
        (lambda: make_spray_params(img, rng=rng, width=(0, 2)), ValueError, "width"),
        (lambda: make_spray_params(img, rng=rng, width=5), TypeError, "width"),
        (lambda: make_spray_params(img, rng=rng, ref_size=0), ValueError, "ref_size"),
        (lambda: make_spray_params(img, rng=rng, softness=(0.9, 0.1)), ValueError, "softness"),
        (lambda: spray_mask((8, 8), "p"), TypeError, "params"),
        (lambda: spray_mask((0, 8), SprayParams(**good)), ValueError, "shape"),
        (lambda: apply_spray(img.tolist(), SprayParams(**good)), TypeError, "image"),
        (lambda: SprayParams(**{**good, "color": (1, 2, 300)}), ValueError, "color"),
        (lambda: SprayParams(**{**good, "widths": (2.0, 3.0)}), ValueError, "widths"),
        (lambda: SprayParams(**{**good, "widths": (-1.0,)}), ValueError, "widths"),
        (lambda: SprayParams(**{**good, "softness": 1.5}), ValueError, "softness"),
        (lambda: SprayParams(**{**good, "opacity": float("nan")}), ValueError, "opacity"),
        (lambda: SprayParams(**{**good, "paths": (((0.0, float("inf")), (1.0, 1.0)),)}), ValueError, "paths"),
    ]
    for fn, exc, name in cases:
        with pytest.raises(exc, match=name):
            fn()
