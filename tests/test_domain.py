"""Colour domains: <= k colours, nearest-centre assignment, mode filter, determinism, replay."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2pdata.stages.domain import PARAM_KEYS, color_domain, domain_from_params, mode_filter, quantize
from tests.reference import compatible, draw_cel, ref_lab, ref_mode_filter, ref_sq_dists, schema


@st.composite
def pictures(draw, max_side: int = 40):
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    img = draw_cel(h, w, seed, draw(st.integers(0, 6)), draw(st.integers(0, 3)))
    if draw(st.booleans()):  # photo-like noise so there are many more than k colours
        noise = np.random.default_rng(seed).integers(-30, 31, img.shape)
        img = np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)
    return img


def _colors(img: np.ndarray) -> set:
    return {tuple(v) for v in img.reshape(-1, 3).tolist()}


@settings(max_examples=30)
@given(pictures(), st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_quantize_at_most_k_colours_nearest_centre_and_deterministic(img, k, seed):
    before = img.copy()
    q, p = quantize(img, rng=np.random.default_rng(seed), k=k)
    np.testing.assert_array_equal(img, before)
    assert q.dtype == np.uint8 and q.shape == img.shape
    assert len(_colors(q)) <= k and _colors(q) <= {tuple(c) for c in p["palette"]}
    q2, p2 = quantize(img, rng=np.random.default_rng(seed), k=k)
    np.testing.assert_array_equal(q, q2)
    assert p == p2
    # every pixel was painted with a nearest centre's palette colour (exact float64 distances;
    # float32 rounding may pick either of two centres within 1e-3 of equidistant)
    d = ref_sq_dists(ref_lab(img), p["centers_lab"])
    pal = np.asarray(p["palette"], np.uint8)
    ok = np.zeros(d.shape[0], bool)
    flat_q = q.reshape(-1, 3)
    for j in range(k):
        ok |= (d[:, j] <= d.min(axis=1) + 1e-3) & np.all(flat_q == pal[j], axis=1)
    assert ok.all()
    np.testing.assert_array_equal(domain_from_params(img, json.loads(json.dumps(p))), q)


@settings(max_examples=20)
@given(pictures(), st.integers(1, 8), st.sampled_from([1, 3, 5]), st.integers(0, 2), st.integers(0, 2**32 - 1))
def test_domain_replays_and_uses_palette_colours(img, k, smooth, passes, seed):
    dom, p = color_domain(img, rng=np.random.default_rng(seed), k=k, smooth=smooth, passes=passes)
    assert dom.shape == img.shape and dom.dtype == np.uint8
    assert tuple(p) == PARAM_KEYS
    assert _colors(dom) <= {tuple(c) for c in p["palette"]}
    np.testing.assert_array_equal(domain_from_params(img, json.loads(json.dumps(p))), dom)
    if passes == 0:
        np.testing.assert_array_equal(dom, quantize(img, rng=np.random.default_rng(seed), k=k)[0])


@settings(max_examples=25)
@given(
    st.integers(1, 24), st.integers(1, 24), st.integers(1, 6), st.sampled_from([1, 3, 5, 7]), st.integers(0, 2**32 - 1)
)
def test_mode_filter_equals_reference(h, w, k, size, seed):
    rng = np.random.default_rng(seed)
    cell = int(rng.integers(1, 5))
    idx = np.kron(rng.integers(0, k, (h // cell + 1, w // cell + 1)), np.ones((cell, cell), np.int64))[:h, :w]
    np.testing.assert_array_equal(mode_filter(idx, k, size), ref_mode_filter(idx, k, size))


def test_blur_and_default_window():
    img = draw_cel(96, 80, 2, 6, 3)
    dom, p = color_domain(img, rng=np.random.default_rng(0), blur=1.5)
    assert p["smooth"] == 3 and p["passes"] == 2 and p["blur"] == 1.5
    np.testing.assert_array_equal(domain_from_params(img, p), dom)
    _, p512 = color_domain(np.zeros((512, 512, 3), np.uint8), rng=np.random.default_rng(0))
    assert p512["smooth"] == 17


def test_blank_image_and_k_above_colour_count():
    img = np.full((9, 7, 3), 77, np.uint8)
    q, p = quantize(img, rng=np.random.default_rng(0), k=8)
    np.testing.assert_array_equal(q, img)
    assert len(p["palette"]) == 8 and len(p["centers_lab"]) == 8


def test_params_schema_is_fixed():
    ref = None
    for i, img in enumerate([np.zeros((5, 5, 3), np.uint8), draw_cel(40, 40, 1), draw_cel(30, 50, 2)]):
        _, p = color_domain(img, rng=np.random.default_rng(i), k=4)
        sc = schema(json.loads(json.dumps(p)))
        assert ref is None or compatible(ref, sc), (ref, sc)
        ref = ref or sc


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(color=np.zeros((4, 4), np.uint8)), ValueError, "color"),
        (dict(k=0), ValueError, "k"),
        (dict(k=2.0), ValueError, "k"),
        (dict(smooth=4), ValueError, "smooth"),
        (dict(passes=-1), ValueError, "passes"),
        (dict(blur=-1.0), ValueError, "blur"),
        (dict(rng=1), TypeError, "rng"),
    ],
)
def test_bad_input_names_the_argument(kwargs, exc, name):
    args = dict(color=np.zeros((4, 4, 3), np.uint8), rng=np.random.default_rng(0))
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        color_domain(args.pop("color"), **args)
