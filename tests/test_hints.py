"""s2pdata.stages.hints: the Zhang et al. 2017 sampler (docs/method.md, User hints), rendering, json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2pdata.stages.hints import MAX_SIDE, Hints, render_hints, resize_hints, sample_hints
from tests.reference import ref_patch_mean, ref_render_hints
from tests.strategies import draw_cel_image, hint_records, images

RADII = (0, 1, 2, 3, None)


def _many_hints(color: np.ndarray, seed: int, draws: int) -> tuple[list[int], list[Hints]]:
    rng = np.random.default_rng(seed)
    out = [sample_hints(color, rng=rng) for _ in range(draws)]
    return [len(h) for h in out], out


# ---------------------------------------------------------------- sampling


@settings(max_examples=40)
@given(images(1, 40), st.integers(0, 2**32 - 1))
def test_hint_colour_is_the_rounded_patch_mean(color, seed):
    before = color.copy()
    hints = sample_hints(color, rng=np.random.default_rng(seed))
    for rec in hints.to_json():
        # ref_patch_mean also asserts the whole patch lies inside the image
        assert rec["rgb"] == ref_patch_mean(color, rec["row"], rec["col"], rec["side"]), rec
    np.testing.assert_array_equal(color, before)


@settings(max_examples=40)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_no_hint_outside_the_image(h, w, seed):
    color = draw_cel_image(h, w, seed % 1000)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        hints = sample_hints(color, rng=rng)
        _check_inside(hints, h, w)


def _check_inside(hints: Hints, h: int, w: int) -> None:
    assert hints.points.dtype == np.int32 and hints.points.shape == (len(hints), 2)
    assert hints.sides.dtype == np.int32 and hints.colors.dtype == np.uint8
    assert hints.colors.shape == (len(hints), 3)
    r, c, s = hints.points[:, 0], hints.points[:, 1], hints.sides
    assert ((1 <= s) & (s <= min(MAX_SIDE, h, w))).all()
    top, left = r - s // 2, c - s // 2
    assert (top >= 0).all() and (left >= 0).all() and (top + s <= h).all() and (left + s <= w).all()
    assert ((0 <= r) & (r < h) & (0 <= c) & (c < w)).all()


@pytest.mark.parametrize("h,w", [(1, 1), (1, 2), (1, 17), (17, 1), (2, 2), (3, 200), (9, 9), (10, 8)])
def test_degenerate_shapes_stay_inside(h, w):
    color = draw_cel_image(h, w, h * 1000 + w)
    rng = np.random.default_rng(h * 31 + w)
    total = 0
    for _ in range(100):
        hints = sample_hints(color, rng=rng)
        total += len(hints)
        _check_inside(hints, h, w)
        for rec in hints.to_json():
            assert rec["rgb"] == ref_patch_mean(color, rec["row"], rec["col"], rec["side"])
        for radius in RADII:
            out = render_hints(hints, (h, w), radius=radius)
            assert out.shape == (h, w, 4) and set(np.unique(out[..., 3]).tolist()) <= {0, 255}
            assert out[..., 3].any() == (len(hints) > 0)
    assert total > 0


def test_count_is_geometric_with_mean_7_and_one_eighth_empty():
    color = draw_cel_image(6, 6, 0)
    counts, _ = _many_hints(color, 12345, 20_000)
    counts = np.asarray(counts)
    assert abs(counts.mean() - 7.0) < 0.2, counts.mean()  # (1 - p) / p, p = 1/8
    assert abs((counts == 0).mean() - 1 / 8) < 0.01, (counts == 0).mean()
    # P(K = k) = (1 - p)^k p: check the first few probabilities too
    for k in range(1, 4):
        assert abs((counts == k).mean() - (7 / 8) ** k / 8) < 0.01


def test_top_left_is_centred_and_sides_uniform():
    h, w = 61, 40
    color = draw_cel_image(h, w, 1)
    _, many = _many_hints(color, 99, 3000)
    sides = np.concatenate([x.sides for x in many])
    pts = np.concatenate([x.points for x in many])
    assert len(sides) > 15_000
    counts = np.bincount(sides, minlength=MAX_SIDE + 1)[1:]
    assert counts.min() > 0 and np.abs(counts / counts.sum() - 1 / MAX_SIDE).max() < 0.015
    for axis, extent in ((0, h), (1, w)):
        top = pts[:, axis] - sides // 2
        span = extent - sides + 1  # N(span / 2, span / 4), clipped to [0, span - 1]
        z = (top - span / 2) / (span / 4)
        assert abs(z.mean()) < 0.05, (axis, z.mean())  # centred: mean top-left near (H - P + 1) / 2
        assert 0.85 < z.std() < 1.02, (axis, z.std())  # spread span / 4, a little less after clipping
        assert (top >= 0).all() and (top <= extent - sides).all()


def _clipped_rounded_normal_pmf(span: int) -> np.ndarray:
    """P(top = v) for top = clip(round(N(span / 2, span / 4)), 0, span - 1), v = 0..span - 1."""
    from scipy.stats import norm

    edges = np.arange(span + 1) - 0.5  # v takes the normal's mass on [v - 0.5, v + 0.5)
    cdf = norm.cdf(edges, loc=span / 2, scale=span / 4)
    cdf[0], cdf[-1] = 0.0, 1.0  # the clipped tails land on 0 and span - 1
    return np.diff(cdf)


def test_top_left_law_for_one_pixel_patches():
    # P = 1: top-left = centre, span = H; small sides make a half-pixel bias visible
    h, w = 12, 20
    color = draw_cel_image(h, w, 3)
    rng = np.random.default_rng(5)
    pts = np.concatenate([sample_hints(color, rng=rng, max_side=1).points for _ in range(2000)])
    assert len(pts) > 10_000
    assert abs(pts[:, 0].mean() - h / 2) < 0.15, pts[:, 0].mean()  # centred on (H - P + 1) / 2
    assert abs(pts[:, 1].mean() - w / 2) < 0.25, pts[:, 1].mean()
    for axis, extent in ((0, h), (1, w)):
        freq = np.bincount(pts[:, axis], minlength=extent) / len(pts)
        assert np.abs(freq - _clipped_rounded_normal_pmf(extent)).max() < 0.012, axis


def test_deterministic_and_capped():
    color = draw_cel_image(20, 30, 4)
    for seed in range(30):
        a = sample_hints(color, rng=np.random.default_rng(seed))
        b = sample_hints(color.copy(), rng=np.random.default_rng(seed))
        assert a.to_json() == b.to_json()
        assert len(sample_hints(color, rng=np.random.default_rng(seed), max_hints=2)) <= 2
        assert len(sample_hints(color, rng=np.random.default_rng(seed), p=1.0)) == 0
        assert len(sample_hints(color, rng=np.random.default_rng(seed), max_hints=0)) == 0


# ---------------------------------------------------------------- rendering


@settings(max_examples=40)
@given(st.integers(1, 24), st.integers(1, 24), st.data(), st.sampled_from(RADII))
def test_render_equals_the_union_of_clipped_squares(h, w, data, radius):
    records = data.draw(hint_records(h, w))
    out = render_hints(Hints.from_json(records), (h, w), radius=radius)
    ref = ref_render_hints(records, (h, w), radius)
    assert out.dtype == np.uint8 and out.shape == (h, w, 4)
    np.testing.assert_array_equal(out[..., 3], ref[..., 3])  # alpha area = union of the squares
    np.testing.assert_array_equal(out, ref)  # later hints paint over earlier ones
    if radius is not None and records:
        # alpha area: every square is (2 radius + 1)^2 before clipping, never more
        assert (out[..., 3] > 0).sum() <= len(records) * (2 * radius + 1) ** 2


@settings(max_examples=25)
@given(images(1, 32), st.integers(0, 2**32 - 1), st.sampled_from(RADII))
def test_render_sampled_hints(color, seed, radius):
    hints = sample_hints(color, rng=np.random.default_rng(seed))
    out = render_hints(hints, color.shape[:2], radius=radius)
    np.testing.assert_array_equal(out, ref_render_hints(hints.to_json(), color.shape, radius))
    if radius is None:
        # the own-patch mask covers exactly the sampled patches (all inside the image)
        assert (out[..., 3] > 0).sum() <= int((hints.sides.astype(np.int64) ** 2).sum())


def test_render_of_no_hints_is_all_zeros():
    empty = Hints.from_json([])
    assert len(empty) == 0
    for radius in RADII:
        out = render_hints(empty, (7, 5), radius=radius)
        assert out.shape == (7, 5, 4) and not out.any()
    none = sample_hints(draw_cel_image(9, 9, 0), rng=np.random.default_rng(0), p=1.0)
    assert not render_hints(none, (9, 9)).any()


# ---------------------------------------------------------------- json


@settings(max_examples=30)
@given(images(1, 32), st.integers(0, 2**32 - 1))
def test_json_round_trip(color, seed):
    hints = sample_hints(color, rng=np.random.default_rng(seed))
    recs = json.loads(json.dumps(hints.to_json()))
    for rec in recs:
        assert set(rec) == {"row", "col", "side", "rgb"} and len(rec["rgb"]) == 3
    back = Hints.from_json(recs)
    for name in ("points", "sides", "colors"):
        a, b = getattr(hints, name), getattr(back, name)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert back.to_json() == hints.to_json()
    as_stored = Hints.from_json(json.dumps(hints.to_json()))  # a sample's json keeps them as a string
    assert as_stored.to_json() == hints.to_json()


# ---------------------------------------------------------------- resizing


@settings(max_examples=40)
@given(st.integers(0, 31), st.integers(0, 31), st.tuples(*[st.integers(0, 255)] * 3))
def test_one_pixel_hint_survives_a_4x_downscale(row, col, rgb):
    hint = render_hints(Hints.from_json([{"row": row, "col": col, "side": 1, "rgb": list(rgb)}]), (32, 32), radius=0)
    small = resize_hints(hint, (8, 8))
    assert small.shape == (8, 8, 4)
    assert (small[..., 3] > 0).sum() == 1
    assert small[row // 4, col // 4].tolist() == [*rgb, 255]


@settings(max_examples=30)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.data())
def test_resize_keeps_every_hint_and_only_its_colours(h, w, nh, nw, data):
    records = data.draw(hint_records(h, w, max_n=8))
    hint = render_hints(Hints.from_json(records), (h, w), radius=0)
    out = resize_hints(hint, (nh, nw))
    assert out.shape == (nh, nw, 4) and out.dtype == np.uint8
    assert set(np.unique(out[..., 3]).tolist()) <= {0, 255}
    src = {tuple(v) for v in hint[hint[..., 3] > 0].tolist()}
    got = {tuple(v) for v in out[out[..., 3] > 0].tolist()}
    assert got <= src  # no new colours, no blended ones
    for r, c in zip(*np.nonzero(hint[..., 3])):
        assert out[r * nh // h, c * nw // w, 3] == 255  # every source hint pixel lands somewhere
    # every distinct hint colour survives unless a later hint covers its only landing pixel
    landing = {}
    for r, c in zip(*np.nonzero(hint[..., 3])):
        landing.setdefault(tuple(hint[r, c].tolist()), set()).add((r * nh // h, c * nw // w))
    for colour, cells in landing.items():
        others = set().union(*(v for k, v in landing.items() if k != colour))
        if cells - others:
            assert colour in got


@settings(max_examples=20)
@given(st.integers(1, 16), st.integers(1, 16), st.integers(1, 4), st.integers(1, 4), st.data())
def test_nearest_integer_upscale_repeats_pixels(h, w, fy, fx, data):
    records = data.draw(hint_records(h, w))
    radius = data.draw(st.sampled_from(RADII))
    hint = render_hints(Hints.from_json(records), (h, w), radius=radius)
    out = resize_hints(hint, (h * fy, w * fx))
    np.testing.assert_array_equal(out, np.repeat(np.repeat(hint, fy, axis=0), fx, axis=1))


# ---------------------------------------------------------------- bad input


GOOD = draw_cel_image(8, 8, 0)
RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "bad,exc",
    [
        (GOOD.astype(np.float64), TypeError),
        (GOOD[..., 0], ValueError),
        (np.dstack([GOOD, GOOD[..., :1]]), ValueError),
        (np.zeros((0, 4, 3), np.uint8), ValueError),
        (GOOD.tolist(), TypeError),
    ],
)
def test_sample_hints_bad_color(bad, exc):
    with pytest.raises(exc, match="color"):
        sample_hints(bad, rng=RNG)


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        ({"rng": 0}, TypeError, "rng"),
        ({"rng": np.random.RandomState(0)}, TypeError, "rng"),
        ({"rng": RNG, "p": 0}, ValueError, "p"),
        ({"rng": RNG, "p": 1.5}, ValueError, "p"),
        ({"rng": RNG, "p": "x"}, ValueError, "p"),
        ({"rng": RNG, "p": float("nan")}, ValueError, "p"),
        ({"rng": RNG, "max_side": 0}, ValueError, "max_side"),
        ({"rng": RNG, "max_side": 2.5}, ValueError, "max_side"),
        ({"rng": RNG, "max_hints": -1}, ValueError, "max_hints"),
        ({"rng": RNG, "max_hints": "3"}, ValueError, "max_hints"),
    ],
)
def test_sample_hints_bad_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        sample_hints(GOOD, **kwargs)


def test_render_and_resize_bad_arguments():
    hints = sample_hints(GOOD, rng=np.random.default_rng(1))
    with pytest.raises(TypeError, match="hints"):
        render_hints(hints.to_json(), (8, 8))
    for shape in ((0, 8), (8,), 8, None, (8.0, 8), (8, -1)):
        with pytest.raises((TypeError, ValueError), match="shape"):
            render_hints(hints, shape)
    for radius in (-1, 1.5, "1"):
        with pytest.raises(ValueError, match="radius"):
            render_hints(hints, (8, 8), radius=radius)
    good = render_hints(hints, (8, 8))
    with pytest.raises(TypeError, match="hint"):
        resize_hints(good.astype(np.float32), (4, 4))
    with pytest.raises(ValueError, match="hint"):
        resize_hints(good[..., :3], (4, 4))
    for size in ((0, 4), (4,), None, "ab", (4, 2.5)):
        with pytest.raises((TypeError, ValueError), match="size_hw"):
            resize_hints(good, size)
    for recs in (
        [{"row": 1}],
        [{"row": 1, "col": 1, "side": 0, "rgb": [1, 2, 3]}],
        [{"row": 1, "col": 1, "side": 1, "rgb": [1, 2, 256]}],
        7,
        "[{oops",
    ):
        with pytest.raises(ValueError, match="records"):
            Hints.from_json(recs)
