"""Draft-model mistakes (s2pdata.stages.mistakes) and the draft styles: every kernel against its slow
reference, the invariants each mistake promises, replay byte for byte, the mix in make_draft, a
build with --draft-style mix, and online drafts of either family."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from s2pdata.pool import PatchPool
from s2pdata.stages.drafts import draft_style, make_draft, pack_draft, replay_draft, unpack_draft
from s2pdata.stages.mistakes import (
    INK_BELOW,
    MISTAKES,
    bleed_color,
    cast_color,
    desaturate,
    gaussian_side,
    lowpass_chroma,
    make_mistake_params,
    make_mistakes,
    near,
    region_edges,
    replay_mistakes,
    rotate_hue,
)
from tests.reference import (
    ref_bleed_color,
    ref_cast_color,
    ref_chessboard,
    ref_desaturate,
    ref_lowpass_chroma,
    ref_rotate_hue,
)
from tests.strategies import draw_cel_image, draw_label_picture, draw_lines, make_pool

PAPER_KEYS = {"version", "order", "pool", "pastes", "warp", "sprays"}
MODEL_KEYS = {"version", "style", "order", "regions", "lines", *MISTAKES}


def scene(h: int, w: int, seed: int, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(colour, labels, ink): a cel picture, and either the areas between drawn lines (the lines
    labelled 0, as where no region is given) or drawn shapes as regions, with their own lines."""
    color = draw_cel_image(h, w, seed)
    ink = draw_lines(seed + 1, h, w)
    if kind == "between-lines":
        labels = ndimage.label(~ink)[0].astype(np.int32)
    else:
        labels = draw_label_picture(h, w, seed + 2)
    return color, labels, ink


@st.composite
def scenes(draw, min_side: int = 4, max_side: int = 24):
    h, w = draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
    return scene(h, w, draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from(["between-lines", "shapes"])))


def chosen(draw, labels: np.ndarray, max_n: int = 4) -> list[int]:
    """Some labels of the picture (maybe none), with an absent one now and then."""
    present = sorted(int(v) for v in np.unique(labels) if v > 0)
    return draw(st.lists(st.sampled_from(present + [int(labels.max()) + 3]), max_size=max_n, unique=True))


def luma(img: np.ndarray) -> np.ndarray:
    f = img.astype(np.float64)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def cbcr(img: np.ndarray) -> np.ndarray:
    """|(Cb, Cr)|: the chroma magnitude the hue rotation turns."""
    f, y = img.astype(np.float64), luma(img)
    return np.hypot((f[..., 2] - y) / 1.772, (f[..., 0] - y) / 1.402)


def spread(img: np.ndarray) -> np.ndarray:
    """max - min of the channels (of an image or a list of pixels)."""
    return img.max(axis=-1).astype(int) - img.min(axis=-1).astype(int)


def at_most_one_apart(a: np.ndarray, b: np.ndarray) -> None:
    """Equal but for a float rounding at a .5 boundary (another summation order or sin/cos)."""
    assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).max(initial=0) <= 1


# ---- the four kernels against their references, and their invariants --------------------------------


@settings(max_examples=30)
@given(data=st.data(), sc=scenes())
def test_rotate_hue_matches_reference_and_changes_only_its_regions(data, sc):
    color, labels, _ = sc
    regions = chosen(data.draw, labels)
    angles = [data.draw(st.floats(-180, 180)) for _ in regions]
    before = color.copy()
    out = rotate_hue(color, labels, regions, angles)
    assert np.array_equal(color, before)  # input untouched
    at_most_one_apart(out, ref_rotate_hue(color, labels, regions, angles))
    moved = np.any(out != color, axis=2)
    assert not np.any(moved & ~np.isin(labels, regions))
    assert np.abs(luma(out) - luma(color)).max() <= 0.5 + 1e-9  # the luma stays within rounding
    assert np.all(cbcr(out) <= cbcr(color) + 0.6)  # turned, never made stronger (but for rounding)
    grey = spread(color) == 0
    assert np.array_equal(out[grey], color[grey])


def test_rotate_hue_by_zero_and_full_turns_is_the_identity_and_half_turns_undo():
    color, labels, _ = scene(24, 30, 5, "shapes")
    regions = sorted(int(v) for v in np.unique(labels) if v > 0)
    assert np.array_equal(rotate_hue(color, labels, regions, [0.0] * len(regions)), color)
    at_most_one_apart(rotate_hue(color, labels, regions, [360.0] * len(regions)), color)
    there = rotate_hue(color, labels, regions, [60.0] * len(regions))
    assert np.abs(rotate_hue(there, labels, regions, [-60.0] * len(regions)).astype(int) - color).max() <= 3


@settings(max_examples=30)
@given(
    data=st.data(),
    sc=scenes(),
    amount=st.floats(0, 1),
    region_amount=st.floats(0, 1),
)
def test_desaturate_matches_reference_never_adds_chroma_and_keeps_luma(data, sc, amount, region_amount):
    color, labels, _ = sc
    regions = chosen(data.draw, labels)
    out = desaturate(color, labels, amount, regions, region_amount)
    assert np.array_equal(out, ref_desaturate(color, labels, amount, regions, region_amount))
    assert np.all(spread(out) <= spread(color))
    assert np.abs(luma(out) - luma(color)).max() <= 0.5 + 1e-9
    outside = ~np.isin(labels, regions)
    assert np.array_equal(out[outside], desaturate(color, labels, amount)[outside])  # regions alone go further


def test_desaturate_extremes():
    color, labels, _ = scene(20, 20, 3, "shapes")
    assert np.array_equal(desaturate(color, labels, 0.0), color)
    grey = desaturate(color, labels, 1.0)
    assert np.all(spread(grey) == 0) and np.abs(grey[..., 0] - np.rint(luma(color))).max() <= 0
    some = sorted(int(v) for v in np.unique(labels) if v > 0)[:1]
    part = desaturate(color, labels, 0.0, some, 1.0)
    inside = np.isin(labels, some)
    assert np.all(spread(part[inside]) == 0) and np.array_equal(part[~inside], color[~inside])


@settings(max_examples=30)
@given(sc=scenes(), angle=st.floats(-360, 360), chroma=st.floats(0, 60), amount=st.floats(0, 1))
def test_cast_matches_reference_keeps_luma_and_moves_chroma_toward_the_cast(sc, angle, chroma, amount):
    color, _, _ = sc
    out = cast_color(color, angle, chroma, amount)
    at_most_one_apart(out, ref_cast_color(color, angle, chroma, amount))
    assert np.abs(luma(out) - luma(color)).max() <= 0.5 + 1e-9
    if amount == 0:
        assert np.array_equal(out, color)


def test_cast_with_all_amount_paints_one_colour_at_each_luma():
    grey = np.full((8, 10, 3), 128, np.uint8)
    grey[:, 5:] = 100
    out = cast_color(grey, 200.0, 12.0, 1.0)
    assert (
        len(np.unique(out[:, :5].reshape(-1, 3), axis=0)) == 1
        and len(np.unique(out[:, 5:].reshape(-1, 3), axis=0)) == 1
    )
    f, y = out[0, 0].astype(float), luma(out[:1, :1])[0, 0]
    cb, cr = (f[2] - y) / 1.772, (f[0] - y) / 1.402
    assert abs(np.hypot(cb, cr) - 12.0) < 0.7 and abs((np.degrees(np.arctan2(cr, cb)) % 360) - 200.0) < 5


@settings(max_examples=25)
@given(data=st.data(), sc=scenes(max_side=20), radius=st.integers(1, 5), strength=st.floats(0, 1))
def test_bleed_matches_reference_and_stays_near_its_regions_and_the_lines(data, sc, radius, strength):
    color, labels, ink = sc
    regions = chosen(data.draw, labels, max_n=3)
    out = bleed_color(color, labels, ink, regions, radius, strength)
    assert np.array_equal(out, ref_bleed_color(color, labels, ink, regions, radius, strength))
    moved = np.any(out != color, axis=2)
    by_line = ref_chessboard(ink) <= radius
    near_regions = np.zeros_like(moved)
    for lab in regions:
        d = ref_chessboard(labels == lab)
        near_regions |= (d >= 1) & (d <= radius)
    assert not np.any(moved & ~(by_line & near_regions))


def test_bleed_with_nothing_to_spill_is_the_identity():
    color, labels, ink = scene(24, 24, 9, "between-lines")
    regions = sorted(int(v) for v in np.unique(labels) if v > 0)
    assert np.array_equal(bleed_color(color, labels, ink, regions, 3, 0.0), color)
    assert np.array_equal(bleed_color(color, labels, np.zeros_like(ink), regions, 3, 1.0), color)
    assert np.array_equal(bleed_color(color, labels, ink, [], 3, 1.0), color)


def test_bleed_crosses_a_line_into_the_next_area():
    color = np.zeros((9, 12, 3), np.uint8)
    color[:, :6] = (250, 0, 0)  # red area left of a line at column 6, blue right of it
    color[:, 7:] = (0, 0, 250)
    ink = np.zeros((9, 12), bool)
    ink[:, 6] = True
    labels = np.zeros((9, 12), np.int32)
    labels[:, :6], labels[:, 7:] = 1, 2
    out = bleed_color(color, labels, ink, [1], 2, 1.0)
    assert np.array_equal(out[:, :6], color[:, :6]) and np.array_equal(out[:, 9:], color[:, 9:])
    assert np.all(out[:, 6] == (250, 0, 0))  # the line pixel takes the region's colour (d = 1)
    assert np.all(out[:, 7] == (125, 0, 125))  # d = 2: half


def test_near_is_a_chessboard_dilation():
    ink = draw_lines(4, 20, 17)
    for r in (1, 2, 4):
        assert np.array_equal(near(ink, r), ref_chessboard(ink) <= r)


@settings(max_examples=25)
@given(sc=scenes(), sigma=st.floats(0.3, 6.0), keep_lines=st.booleans())
def test_lowpass_matches_reference_keeps_luma_and_line_pixels(sc, sigma, keep_lines):
    color, _, ink = sc
    ink = ink if keep_lines else np.zeros_like(ink)
    out = lowpass_chroma(color, sigma, ink)
    at_most_one_apart(out, ref_lowpass_chroma(color, sigma, ink, gaussian_side(sigma)))
    assert np.array_equal(out[ink], color[ink])
    assert np.abs(luma(out) - luma(color)).max() <= 0.5 + 1e-3  # float32 chroma: a little over 0.5


def test_lowpass_leaves_flat_and_grey_pictures_and_sigma_zero_alone():
    flat = np.full((16, 20, 3), (200, 80, 30), np.uint8)
    assert np.array_equal(lowpass_chroma(flat, 3.0), flat)
    grey = np.repeat(draw_cel_image(16, 20, 1)[..., :1], 3, axis=2)
    assert np.array_equal(lowpass_chroma(grey, 3.0), grey)
    color = draw_cel_image(16, 20, 2)
    assert np.array_equal(lowpass_chroma(color, 0.0), color)
    assert not np.array_equal(lowpass_chroma(color, 3.0), color)


def test_region_edges_are_the_pixels_next_to_another_label():
    labels = draw_label_picture(30, 25, 6)
    other = np.zeros(labels.shape, bool)
    padded = np.pad(labels, 1, mode="edge")
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        other |= padded[1 + dy : 31 + dy, 1 + dx : 26 + dx] != labels
    assert np.array_equal(region_edges(labels), other)


# ---- the family: draw -> record -> replay ------------------------------------------------------------


@settings(max_examples=20)
@given(sc=scenes(min_side=8, max_side=32), seed=st.integers(0, 2**32 - 1), with_maps=st.booleans())
def test_make_then_replay_is_byte_identical_and_the_record_is_plain_json(sc, seed, with_maps):
    color, labels, ink = sc
    sketch = np.where(ink, 0, 255).astype(np.uint8)
    maps = {"regions": labels, "sketch": sketch} if with_maps else {}
    draft, params = make_mistakes(color, rng=np.random.default_rng(seed), **maps)
    assert draft.dtype == np.uint8 and draft.shape == color.shape
    loaded = json.loads(json.dumps(params))
    assert loaded == params and set(params) == MODEL_KEYS and params["order"] == list(MISTAKES)
    assert any(params[name]["on"] for name in MISTAKES)
    assert params["regions"]["from"] == ("regions" if with_maps else "color")
    assert params["lines"] == {"from": "sketch" if with_maps else "regions", "ink_below": INK_BELOW}
    assert replay_mistakes(color, loaded, **maps).tobytes() == draft.tobytes()
    assert replay_draft(color, None, loaded, **maps).tobytes() == draft.tobytes()
    again, params2 = make_mistakes(color, rng=np.random.default_rng(seed), **maps)
    assert again.tobytes() == draft.tobytes() and params2 == params


@settings(max_examples=20)
@given(sc=scenes(min_side=8, max_side=32), seed=st.integers(0, 2**32 - 1), name=st.sampled_from(MISTAKES))
def test_one_mistake_alone_changes_only_what_its_parameters_say(sc, seed, name):
    color, labels, ink = sc
    sketch = np.where(ink, 0, 255).astype(np.uint8)
    chances = {m: float(m == name) for m in MISTAKES}
    draft, p = make_mistakes(color, rng=np.random.default_rng(seed), regions=labels, sketch=sketch, chances=chances)
    assert [m for m in MISTAKES if p[m]["on"]] == [name]
    moved = np.any(draft != color, axis=2)
    if name == "hue":
        assert not np.any(moved & ~np.isin(labels, p["hue"]["regions"]))
        assert 1 <= len(p["hue"]["regions"]) <= 3 or labels.max() == 0
        assert all(30 <= abs(a) <= 150 for a in p["hue"]["angles"])
    elif name == "desaturate":
        assert np.all(spread(draft) <= spread(color))
        assert 0.3 <= p["desaturate"]["amount"] <= 0.9
    elif name == "cast":
        c = p["cast"]
        assert np.array_equal(draft, cast_color(color, c["angle"], c["chroma"], c["amount"]))
        assert 4 <= c["chroma"] <= 16 and 0.2 <= c["amount"] <= 0.8
    elif name == "bleed":
        r = p["bleed"]["radius"]
        assert not np.any(moved & ~(ref_chessboard(ink) <= r))
        assert np.array_equal(draft, bleed_color(color, labels, ink, p["bleed"]["regions"], r, p["bleed"]["strength"]))
    else:
        assert np.array_equal(draft[ink], color[ink])
        assert np.array_equal(draft, lowpass_chroma(color, p["lowpass"]["sigma"], ink))
    if name != "bleed":
        assert np.abs(luma(draft) - luma(color)).max() <= 0.5 + 1e-3


def test_parameters_scale_with_the_picture_and_cover_their_ranges():
    labels = np.repeat(np.arange(1, 33, dtype=np.int32), 32)[None].repeat(1024, 0)  # 32 wide bands
    small = labels[::4, ::4].copy()  # 256 x 256
    big, little = [], []
    for seed in range(200):
        big.append(make_mistake_params(labels, rng=np.random.default_rng(seed)))
        little.append(make_mistake_params(small, rng=np.random.default_rng(seed)))
    for b, s in zip(big, little):
        assert b["lowpass"]["sigma"] == pytest.approx(4 * s["lowpass"]["sigma"])  # 1024 vs 256 px
    radii = {p["bleed"]["radius"] for p in big}
    assert min(radii) >= 4 and max(radii) <= 16  # 2..8 px at 512 -> 4..16 at 1024
    on = {m: np.mean([p[m]["on"] for p in big]) for m in MISTAKES}
    assert on["desaturate"] > 0.8 and 0.15 < on["hue"] < 0.5  # chances 0.9 and 0.3, with the at-least-one rule
    shares = [len(p["desaturate"]["regions"]) / 32 for p in big]
    assert min(shares) < 0.05 and 0.6 < max(shares) <= 1.0


def test_replay_needs_the_maps_it_was_made_with():
    color, labels, ink = scene(24, 24, 1, "between-lines")
    sketch = np.where(ink, 0, 255).astype(np.uint8)
    _, params = make_mistakes(color, rng=np.random.default_rng(0), regions=labels, sketch=sketch)
    with pytest.raises(ValueError, match="regions="):
        replay_mistakes(color, params, sketch=sketch)
    with pytest.raises(ValueError, match="sketch="):
        replay_mistakes(color, params, regions=labels)
    assert labels.max() > 1
    with pytest.raises(ValueError, match="regions map"):
        replay_mistakes(color, params, regions=(labels > 0).astype(np.int32), sketch=sketch)
    with pytest.raises(ValueError, match="version"):
        replay_mistakes(color, {**params, "version": 99}, regions=labels, sketch=sketch)


def test_bad_input_names_the_argument():
    color, labels, ink = scene(16, 16, 2, "shapes")
    rng = np.random.default_rng(0)
    cases = [
        (lambda: rotate_hue(color, labels, [1], [1.0, 2.0]), ValueError, "angles"),
        (lambda: rotate_hue(color, labels[:8], [1], [1.0]), ValueError, "labels"),
        (lambda: desaturate(color, labels, 1.5), ValueError, "amount"),
        (lambda: desaturate(color, labels.astype(np.int64), 0.5), TypeError, "labels"),
        (lambda: bleed_color(color, labels, ink, [1], 0, 0.5), ValueError, "radius"),
        (lambda: bleed_color(color, labels, ink.astype(np.uint8), [1], 2, 0.5), TypeError, "ink"),
        (lambda: lowpass_chroma(color, -1.0), ValueError, "sigma"),
        (lambda: cast_color(color, 0.0, 8.0, 1.5), ValueError, "amount"),
        (lambda: make_mistakes(color, rng=0), TypeError, "rng"),
        (lambda: make_mistakes(color, rng=rng, sketch=np.zeros((8, 8), np.uint8)), ValueError, "sketch"),
        (lambda: make_mistake_params(labels, rng=rng, chances={"hue": 1.0}), ValueError, "chances"),
        (lambda: make_mistake_params(labels, rng=rng, chances=dict.fromkeys(MISTAKES, 0.0)), ValueError, "chances"),
        (lambda: make_mistake_params(labels, rng=rng, bleed_radius=(0, 2)), ValueError, "bleed_radius"),
        (lambda: make_draft(color, pool=None, rng=rng, style="models"), ValueError, "style"),
        (lambda: make_draft(color, pool=None, rng=rng, style="mix", mix=2.0), ValueError, "mix"),
    ]
    for fn, exc, name in cases:
        with pytest.raises(exc, match=name):
            fn()


# ---- styles in make_draft ------------------------------------------------------------------------------


def test_paper_style_is_todays_draft_and_mix_draws_both_families():
    color, labels, ink = scene(40, 48, 3, "shapes")
    sketch = np.where(ink, 0, 255).astype(np.uint8)
    pool = make_pool(2)
    maps = {"regions": labels, "sketch": sketch}
    for seed in range(4):
        a, pa = make_draft(color, pool=pool, rng=np.random.default_rng(seed))
        b, pb = make_draft(color, pool=pool, rng=np.random.default_rng(seed), style="paper", **maps)
        assert a.tobytes() == b.tobytes() and pa == pb and set(pa) == PAPER_KEYS and draft_style(pa) == "paper"
    styles = {0.0: set(), 1.0: set(), 0.5: set()}
    for mix in styles:
        for seed in range(16):
            draft, params = make_draft(color, pool=pool, rng=np.random.default_rng(seed), style="mix", mix=mix, **maps)
            styles[mix].add(draft_style(params))
            assert set(params) == (MODEL_KEYS if draft_style(params) == "model" else PAPER_KEYS)
            packed = json.loads(json.dumps(pack_draft(params)))
            assert set(packed) == {"style", "params"} and unpack_draft(packed) == params
            assert replay_draft(color, pool, packed, **maps).tobytes() == draft.tobytes()
    assert styles == {0.0: {"paper"}, 1.0: {"model"}, 0.5: {"paper", "model"}}


# ---- a build with --draft-style mix, and online drafts -----------------------------------------------


@pytest.fixture(scope="module")
def mix_build(tmp_path_factory):
    """``python -m s2pdata.build --src demo:16 --draft-style mix`` at 96 px, PNG colour (lossless: the
    stored colour is the one the drafts were made from) and JPEG colour (the default)."""
    from s2pdata.build.cli import main

    root = tmp_path_factory.mktemp("mix")
    common = ["--src", "demo:16", "--size", "96", "--draft-style", "mix", "--workers", "1", "--no-progress"]
    for fmt in ("png", "jpg"):
        assert main([*common, "--out", str(root / fmt), "--color-format", fmt, "--drafts", "2"]) == 0
    return root


def test_mix_build_records_each_draft_and_replays_its_pixels(mix_build):
    from s2pdata.data import open_shards

    pool = PatchPool.load(mix_build / "png" / "pool")
    manifest = json.loads((mix_build / "png" / "dataset.json").read_text())
    assert manifest["config"]["draft_style"] == "mix" and manifest["config"]["draft_mix"] == 0.5
    styles = []
    for s in open_shards(mix_build / "png"):
        for k, rec in enumerate(s["json"]["drafts"]):
            assert set(rec) == {"style", "params"} and isinstance(rec["params"], str)
            params = unpack_draft(rec)
            assert draft_style(params) == rec["style"]
            styles.append(rec["style"])
            again = replay_draft(s["color"], pool, rec, regions=s["regions"], sketch=s["sketch"])
            assert np.array_equal(again, s[f"draft{k}"]), (s["__key__"], k, rec["style"])
    assert {"paper", "model"} <= set(styles)


def test_mix_build_with_jpeg_colour_replays_the_stored_bytes(mix_build):
    """The stored colour is lossy, so replay starts from the decoded source (``fitted_color``) and the
    replayed draft, coded as the build codes it, must be the stored member byte for byte."""
    from s2pdata.data import open_shards
    from s2pdata.demo import demo_bytes, demo_key
    from s2pdata.shards import decode_sample
    from s2pdata.shards.format import Schema, encode_image
    from s2pdata.synth import SynthConfig, fitted_color

    out = mix_build / "jpg"
    pool = PatchPool.load(out / "pool")
    cfg = SynthConfig(size=96, draft_style="mix", drafts=2)
    index = {demo_key(i): i for i in range(16)}
    seen = set()
    for raw in list(open_shards(out, decode=False))[:6]:
        s = decode_sample(raw)
        color, _ = fitted_color(demo_bytes(index[s["__key__"]])[0], key=s["__key__"], seed=0, cfg=cfg)
        for k, rec in enumerate(s["json"]["drafts"]):
            again = replay_draft(color, pool, rec, regions=s["regions"], sketch=s["sketch"])
            assert encode_image(f"draft{k}.jpg", again, Schema(drafts=2)) == raw[f"draft{k}.jpg"]
            seen.add(rec["style"])
    assert seen == {"paper", "model"}


def json_paths(x, path: str = "") -> dict:
    """{path: type name} of a json value, a list by its first element (as Hugging Face infers a schema)."""
    if isinstance(x, dict):
        return {k: v for key, val in x.items() for k, v in json_paths(val, f"{path}.{key}").items()}
    if isinstance(x, list):
        return {path: "list", **(json_paths(x[0], path + "[]") if x else {})}
    return {path: type(x).__name__}


def test_mix_build_json_has_one_schema(mix_build):
    from s2pdata.data import open_shards

    schemas = [json_paths(s["json"]) for s in open_shards(mix_build / "png")]
    assert all(schema == schemas[0] for schema in schemas)


def test_build_flags_reach_the_config_and_bad_values_are_refused(tmp_path):
    from s2pdata.build.cli import main, parse_args, synth_config
    from s2pdata.synth import SynthConfig

    base = ["--src", "demo:2", "--out", str(tmp_path / "x")]
    cfg = synth_config(parse_args(base))
    assert (cfg.draft_style, cfg.draft_mix) == ("paper", 0.5)
    assert "draft_style" not in cfg.to_json()  # a paper build's dataset.json is the one older builds wrote
    cfg = synth_config(parse_args([*base, "--draft-style", "model", "--draft-mix", "0.25"]))
    assert (cfg.draft_style, cfg.draft_mix) == ("model", 0.25) and cfg.to_json()["draft_style"] == "model"
    assert "draft_mix" not in cfg.to_json()  # unused by the model style: a resume need not match it
    assert main([*base, "--draft-style", "gan"]) == 2
    assert main([*base, "--draft-style", "mix", "--draft-mix", "1.5"]) == 2
    for bad in ({"draft_style": "models"}, {"draft_mix": -0.1}, {"draft_mix": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SynthConfig(**bad)


def test_online_drafts_of_either_family_are_per_epoch_and_replay(demo_build):
    from s2pdata.data import open_shards
    from s2pdata.synth import online_sample

    sample = next(iter(open_shards(demo_build)))
    maps = {"regions": sample["regions"], "sketch": sample["sketch"]}
    for style in ("model", "mix"):
        a = online_sample(sample, seed=3, epoch=1, hints=False, draft_style=style, draft_mix=1.0)
        b = online_sample(sample, seed=3, epoch=1, hints=False, draft_style=style, draft_mix=1.0)
        c = online_sample(sample, seed=3, epoch=2, hints=False, draft_style=style, draft_mix=1.0)
        params = a["json"]["online"]["draft"]
        assert draft_style(params) == "model" and params["regions"]["from"] == "regions"
        assert np.array_equal(a["draft"], b["draft"]) and not np.array_equal(a["draft"], c["draft"])
        assert np.array_equal(replay_draft(sample["color"], None, params, **maps), a["draft"])
    paper = online_sample(sample, seed=3, epoch=1, hints=False)
    assert draft_style(paper["json"]["online"]["draft"]) == "paper"
    mixed = {
        draft_style(online_sample(sample, seed=s, epoch=0, hints=False, draft_style="mix")["json"]["online"]["draft"])
        for s in range(12)
    }
    assert mixed == {"paper", "model"}


@pytest.mark.parametrize("style", ["model", "mix"])
def test_refine_loader_draws_online_drafts_of_the_style(demo_build, style):
    """``online_drafts=True, draft_style=...``: each batch's draft is ``online_sample``'s for (seed, key,
    epoch) with the sample's own regions and sketch, and a new epoch draws a new one."""
    torch = pytest.importorskip("torch")
    from s2pdata.data import make_loader, open_shards
    from s2pdata.synth import online_sample

    samples = {s["__key__"]: s for s in open_shards(demo_build)}
    pool = PatchPool.load(demo_build / "pool")  # the loader's default: the build's own pool
    opts = dict(stage="refine", batch_size=1, num_workers=0, mode="exact", crop=None, flip=False, online_drafts=True)
    seen = set()
    for epoch in (0, 1):
        for batch in make_loader(demo_build, epoch=epoch, seed=5, draft_style=style, draft_mix=0.5, **opts):
            (key,) = batch["__key__"]
            want = online_sample(
                samples[key], seed=5, epoch=epoch, pool=pool, hints=False, draft_style=style, draft_mix=0.5
            )
            assert torch.equal(batch["draft"][0], torch.from_numpy(want["draft"]).permute(2, 0, 1))
            seen.add(draft_style(want["json"]["online"]["draft"]))
    assert seen == ({"model"} if style == "model" else {"paper", "model"})


def test_loader_settings_check_the_draft_style():
    from s2pdata.data.settings import DRAFT_STYLES, StreamSettings
    from s2pdata.stages.drafts import DRAFT_STYLES as FAMILIES

    assert DRAFT_STYLES == FAMILIES
    assert StreamSettings().draft_style == "paper"
    with pytest.raises(ValueError, match="draft_style"):
        StreamSettings(draft_style="gan")
    with pytest.raises(ValueError, match="draft_mix"):
        StreamSettings(draft_mix=1.5)
