"""s2pdata.stages.sketch: three extractors and extract_sketch vs slow references (docs/method.md, Sketch extraction)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2pdata.stages.sketch import (
    LIGHTEN_RANGE,
    PARAM_KEYS,
    SKETCH_METHODS,
    XDOG_SIGMAS,
    extract_sketch,
    sketch_dilate,
    sketch_highpass,
    sketch_xdog,
)
from tests.reference import ref_gray, ref_gray_float, ref_sketch_dilate, ref_sketch_highpass, ref_sketch_xdog
from tests.strategies import blank_images, cel_images, draw_cel_image, images

EXTRACTORS = (sketch_dilate, sketch_xdog, sketch_highpass)
# |D - eps| below this: float32 (fast) and float64 (reference) may fall on opposite sides of the
# hard threshold phi = 1e9; such pixels are legitimately either ink or paper.
HARD_BAND = 1e-5

WEIGHT_FREE = tuple(m for m in SKETCH_METHODS if m != "learned")  # learned: tests/test_learned.py


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int64) - b.astype(np.int64))


# ---------------------------------------------------------------- shape, dtype, blank, purity


@settings(max_examples=30)
@given(images(1, 40), st.integers(0, 2**32 - 1))
def test_shape_dtype_and_input_untouched(color, seed):
    before = color.copy()
    for fn in EXTRACTORS:
        s = fn(color)
        assert s.shape == color.shape[:2] and s.dtype == np.uint8, fn.__name__
    for method in WEIGHT_FREE:
        s, _ = extract_sketch(color, method=method, rng=np.random.default_rng(seed))
        assert s.shape == color.shape[:2] and s.dtype == np.uint8, method
    np.testing.assert_array_equal(color, before)


@settings(max_examples=30)
@given(blank_images(1, 40), st.integers(0, 2**32 - 1))
def test_blank_image_is_all_paper(color, seed):
    for fn in EXTRACTORS:
        assert (fn(color) == 255).all(), fn.__name__
    for sigma in XDOG_SIGMAS:
        assert (sketch_xdog(color, sigma=sigma) == 255).all()
    for method in WEIGHT_FREE:
        for augment in (True, False):
            s, p = extract_sketch(color, method=method, rng=np.random.default_rng(seed), augment=augment)
            assert (s == 255).all(), (method, p)


def test_blank_image_is_paper_under_every_augmentation():
    # force binarisation and lightening on every colour class a blank image can have
    hit_bin = 0
    for seed in range(64):
        for rgb in ((0, 0, 0), (255, 255, 255), (1, 2, 3), (200, 10, 90)):
            color = np.empty((9, 13, 3), np.uint8)
            color[:] = rgb
            s, p = extract_sketch(color, method="mix", rng=np.random.default_rng(seed))
            hit_bin += p["binarize"]
            assert (s == 255).all(), (rgb, p)
    assert hit_bin > 0


@settings(max_examples=20)
@given(images(1, 32), st.integers(0, 2**32 - 1), st.sampled_from(WEIGHT_FREE), st.booleans())
def test_deterministic(color, seed, method, augment):
    a, pa = extract_sketch(color, method=method, rng=np.random.default_rng(seed), augment=augment)
    b, pb = extract_sketch(color.copy(), method=method, rng=np.random.default_rng(seed), augment=augment)
    assert a.tobytes() == b.tobytes()
    assert json.dumps(pa, sort_keys=True) == json.dumps(pb, sort_keys=True)


def test_non_contiguous_views_give_the_same_sketch():
    color = draw_cel_image(37, 29, 5)
    views = (color[:, ::-1], color[::2, 1::2], np.asfortranarray(color), color.transpose(1, 0, 2))
    for v in views:
        c = np.ascontiguousarray(v)
        for fn in EXTRACTORS:
            np.testing.assert_array_equal(fn(v), fn(c), err_msg=fn.__name__)


# ---------------------------------------------------------------- against the references


def test_luma_is_itu601_within_one_level():
    rng = np.random.default_rng(0)
    color = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    from s2pdata.stages.sketch import _gray

    np.testing.assert_array_equal(_gray(color), ref_gray(color))
    assert _diff(ref_gray(color), ref_gray_float(color)).max() <= 1


@settings(max_examples=50)
@given(images(1, 40))
def test_dilate_matches_reference(color):
    np.testing.assert_array_equal(sketch_dilate(color), ref_sketch_dilate(color))


@settings(max_examples=50)
@given(
    images(1, 40),
    st.sampled_from(XDOG_SIGMAS),
    st.sampled_from([(1e9, 0.0), (1e9, -0.01), (20.0, 0.0), (20.0, 0.02), (3.0, -0.05), (200.0, 0.01)]),
)
def test_xdog_matches_reference(color, sigma, phi_eps):
    phi, eps = phi_eps
    fast = sketch_xdog(color, sigma=sigma, phi=phi, eps=eps)
    ref, d = ref_sketch_xdog(color, sigma=sigma, phi=phi, eps=eps)
    far = np.abs(d - eps) > HARD_BAND if phi > 1e6 else np.ones(d.shape, bool)
    assert _diff(fast, ref)[far].max(initial=0) <= 1
    # with the hard threshold every pixel off the band is pure ink or pure paper
    if phi > 1e6:
        assert set(np.unique(fast[far]).tolist()) <= {0, 255}


@settings(max_examples=50)
@given(images(1, 40))
def test_highpass_matches_reference(color):
    assert _diff(sketch_highpass(color), ref_sketch_highpass(color)).max() <= 1


@settings(max_examples=15)
@given(cel_images(4, 32), st.integers(0, 2**32 - 1), st.sampled_from(WEIGHT_FREE))
def test_extract_sketch_is_its_recorded_recipe(color, seed, method):
    """The recorded params re-create the sketch: reference extractor -> Otsu -> s r + 255 (1 - r)."""
    s, p = extract_sketch(color, method=method, rng=np.random.default_rng(seed))
    if p["method"] == "xdog":
        base, d = ref_sketch_xdog(color, sigma=p["sigma"], k=p["k"], tau=p["tau"], phi=p["phi"], eps=p["eps"])
        unsure = np.abs(d - p["eps"]) <= HARD_BAND
    elif p["method"] == "dilate":
        base, unsure = ref_sketch_dilate(color), np.zeros(color.shape[:2], bool)
    else:
        base, unsure = ref_sketch_highpass(color, sigma=p["sigma"]), np.zeros(color.shape[:2], bool)
    r = p["lighten_r"]
    if p["binarize"] and base.min() != base.max():
        # Otsu's split: the output must be two-level, monotone in the base sketch, ink below paper
        ink_level = int(np.floor(255 * (1 - r) + 0.5))
        assert set(np.unique(s).tolist()) <= {ink_level - 1, ink_level, ink_level + 1, 255}
        paper = s == 255
        ok = ~unsure
        if paper[ok].any() and (~paper)[ok].any():
            assert int(base[ok & ~paper].max()) <= int(base[ok & paper].min()) + 1
        assert p["otsu_threshold"] is not None
    else:
        expect = np.floor(base.astype(np.float64) * r + 255.0 * (1.0 - r) + 0.5)
        assert np.abs(s.astype(np.float64) - expect)[~unsure].max(initial=0) <= 1


# ---------------------------------------------------------------- XDoG branch order (the paper's)


def _flat(grey: int, h: int = 12, w: int = 12) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = grey
    return img


def test_xdog_branch_order_is_the_papers():
    # flat grey 128: D = (1 - tau) g = 0.05 * 128 / 255 = 0.0251 everywhere (luma of grey is grey)
    d = 0.05 * 128 / 255
    # u < eps: T = 1 + tanh(phi (u - eps)), a grey level strictly between ink and paper
    expect = int(np.floor(255 * (1 + np.tanh(10 * (d - 0.05))) + 0.5))
    assert 150 < expect < 220
    s = sketch_xdog(_flat(128), sigma=0.4, k=4.5, tau=0.95, phi=10.0, eps=0.05)
    assert np.abs(s.astype(int) - expect).max() <= 1
    # u >= eps: T = 1, paper (the swapped variant would give 1 + tanh(phi u) > 1 here and
    # 1 above, i.e. the two cases the other way round)
    assert (sketch_xdog(_flat(128), sigma=0.4, phi=10.0, eps=0.02) == 255).all()
    # a dark line on white paper is ink at the default anime preset, the paper around it is paper
    img = _flat(255, 21, 21)
    img[:, 10] = 0
    s = sketch_xdog(img)
    assert (s[:, 10] == 0).all() and (s[:, :7] == 255).all() and (s[:, 14:] == 255).all()


def test_xdog_threshold_at_eps_is_paper():
    # u exactly eps takes the first branch: flat black gives D = 0 exactly; eps = 0 -> T(0) = 1
    assert (sketch_xdog(_flat(0), phi=5.0, eps=0.0) == 255).all()
    # and eps slightly above 0 puts D = 0 on the tanh branch: 1 + tanh(5 * -0.1) = 0.538
    s = sketch_xdog(_flat(0), phi=5.0, eps=0.1)
    assert np.abs(s.astype(int) - round(255 * (1 + np.tanh(-0.5)))).max() <= 1


# ---------------------------------------------------------------- extract_sketch: draws and params


def test_mix_draws_every_method_uniformly():
    color = draw_cel_image(16, 16, 1)
    counts = {m: 0 for m in ("xdog", "dilate", "highpass")}
    for seed in range(300):
        _, p = extract_sketch(color, method="mix", rng=np.random.default_rng(seed), augment=False)
        assert p["requested"] == "mix"
        counts[p["method"]] += 1
    assert all(60 <= c <= 140 for c in counts.values()), counts


def test_augmentations_are_drawn_in_range():
    color = draw_cel_image(16, 16, 2)
    sigmas, bins, rs = set(), [], []
    for seed in range(400):
        _, p = extract_sketch(color, method="xdog", rng=np.random.default_rng(seed))
        sigmas.add(p["sigma"])
        bins.append(p["binarize"])
        rs.append(p["lighten_r"])
        assert (p["otsu_threshold"] is not None) == p["binarize"]
    assert sigmas == set(XDOG_SIGMAS)
    assert 0.18 <= np.mean(bins) <= 0.32  # p = 0.25 (docs/method.md, Sketch extraction: 0.2-0.3)
    assert LIGHTEN_RANGE[0] <= min(rs) and max(rs) <= LIGHTEN_RANGE[1]


def test_no_augment_draws_nothing_but_the_mix_method():
    color = draw_cel_image(16, 16, 3)
    for method in ("xdog", "dilate", "highpass"):
        rng = np.random.default_rng(7)
        s, p = extract_sketch(color, method=method, rng=rng, augment=False)
        assert rng.bit_generator.state == np.random.default_rng(7).bit_generator.state
        assert p["binarize"] is False and p["otsu_threshold"] is None and p["lighten_r"] == 1.0
        if method == "xdog":
            assert p["sigma"] == 0.4
            np.testing.assert_array_equal(s, sketch_xdog(color, sigma=0.4))


@pytest.mark.parametrize("method", WEIGHT_FREE)
@pytest.mark.parametrize("augment", [True, False])
def test_params_have_a_fixed_key_set_and_are_json(method, augment):
    color = draw_cel_image(12, 12, 4)
    for seed in range(12):
        _, p = extract_sketch(color, method=method, rng=np.random.default_rng(seed), augment=augment)
        assert tuple(sorted(p)) == tuple(sorted(PARAM_KEYS)), p
        assert json.loads(json.dumps(p)) == p
        assert p["requested"] == method and p["augment"] is augment
        assert p["method"] in ("xdog", "dilate", "highpass")
        assert isinstance(p["binarize"], bool) and isinstance(p["lighten_r"], float)
        used = {"xdog": {"sigma", "k", "tau", "phi", "eps"}, "dilate": set(), "highpass": {"sigma"}}[p["method"]]
        for key in ("sigma", "k", "tau", "phi", "eps"):
            assert (p[key] is not None) == (key in used), (key, p)


def test_synth_normalises_params_to_one_schema():
    from s2pdata.synth import stable_sketch_params

    color = draw_cel_image(12, 12, 4)
    schemas = set()
    for method in ("xdog", "dilate", "highpass"):
        _, p = extract_sketch(color, method=method, rng=np.random.default_rng(0))
        q = stable_sketch_params(p)
        schemas.add(tuple(sorted((k, type(v).__name__) for k, v in q.items())))
    assert len(schemas) == 1, schemas


# ---------------------------------------------------------------- bad input


GOOD = draw_cel_image(8, 8, 0)


@pytest.mark.parametrize(
    "bad,exc",
    [
        (GOOD.astype(np.float32), TypeError),
        (GOOD[..., 0], ValueError),
        (np.dstack([GOOD, GOOD[..., :1]]), ValueError),
        (np.zeros((0, 5, 3), np.uint8), ValueError),
        (np.zeros((5, 0, 3), np.uint8), ValueError),
        (GOOD.tolist(), TypeError),
    ],
)
def test_bad_color_names_the_argument(bad, exc):
    for fn in EXTRACTORS:
        with pytest.raises(exc, match="color"):
            fn(bad)
    with pytest.raises(exc, match="color"):
        extract_sketch(bad, rng=np.random.default_rng(0))


def test_bad_method_and_rng_name_the_argument():
    with pytest.raises(ValueError, match="method"):
        extract_sketch(GOOD, method="canny", rng=np.random.default_rng(0))
    for rng in (0, None, np.random.RandomState(0), np.random.PCG64(0)):
        with pytest.raises(TypeError, match="rng"):
            extract_sketch(GOOD, rng=rng)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"sigma": 0}, "sigma"),
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"sigma": "wide"}, "sigma"),
        ({"k": 0.0}, "k"),
        ({"phi": -5.0}, "phi"),
        ({"phi": None}, "phi"),
        ({"tau": float("inf")}, "tau"),
        ({"eps": "x"}, "eps"),
    ],
)
def test_bad_xdog_parameters_name_the_argument(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        sketch_xdog(GOOD, **kwargs)


def test_bad_highpass_sigma_names_the_argument():
    for sigma in (0.0, -3.0, float("inf"), "wide", None):
        with pytest.raises((TypeError, ValueError), match="sigma"):
            sketch_highpass(GOOD, sigma=sigma)
