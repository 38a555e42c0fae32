"""The stage order: one item -> one sample; drafts replay from their json; online re-synthesis."""

from __future__ import annotations

import numpy as np
import pytest

from s2pdata.decode import DecodeError
from s2pdata.demo import demo_bytes, demo_key
from s2pdata.pool import PatchPool
from s2pdata.stages.drafts import replay_draft
from s2pdata.synth import SynthConfig, make_sample, online_sample, pool_patches

CFG = SynthConfig(size=96, drafts=2)


@pytest.fixture(scope="module")
def pool():
    patches = [p for i in range(3) for p in pool_patches(demo_bytes(i)[0], key=demo_key(i), seed=0, cfg=CFG)]
    return PatchPool(patches)


@pytest.fixture(scope="module")
def sample(pool):
    return make_sample(demo_bytes(5)[0], key=demo_key(5), seed=7, cfg=CFG, pool=pool)


def test_sample_fields_and_shapes(sample):
    h, w = sample["color"].shape[:2]
    assert min(h, w) == 96
    assert sample["sketch"].shape == (h, w) and sample["hint"].shape == (h, w, 4)
    assert sample["regions"].shape == (h, w) and sample["regions"].dtype == np.int32
    assert sample["draft0"].shape == sample["draft1"].shape == (h, w, 3)
    assert not np.array_equal(sample["draft0"], sample["draft1"])
    assert len(sample["json"]["drafts"]) == 2


def test_drafts_replay_byte_for_byte_from_their_json(sample, pool):
    for k, params in enumerate(sample["json"]["drafts"]):
        assert np.array_equal(replay_draft(sample["color"], pool, params), sample[f"draft{k}"])


def test_same_inputs_same_sample(sample, pool):
    again = make_sample(demo_bytes(5)[0], key=demo_key(5), seed=7, cfg=CFG, pool=pool)
    for name in ("color", "sketch", "hint", "regions", "draft0", "draft1"):
        assert np.array_equal(again[name], sample[name])
    assert again["json"] == sample["json"]


def test_pool_patches_mix_rectangles_and_regions(pool):
    kinds = {p.kind for p in pool}
    assert kinds == {"rect", "region"}
    for p in pool:
        assert p.rgb.shape[:2] == p.mask.shape and p.mask.any()


def test_online_sample_is_deterministic_per_epoch(sample, pool):
    a = online_sample(sample, seed=3, epoch=1, pool=pool)
    b = online_sample(sample, seed=3, epoch=1, pool=pool)
    c = online_sample(sample, seed=3, epoch=2, pool=pool)
    assert np.array_equal(a["draft"], b["draft"]) and np.array_equal(a["hint"], b["hint"])
    assert a["json"]["online"] == b["json"]["online"]
    assert not np.array_equal(a["draft"], c["draft"])
    assert np.array_equal(replay_draft(sample["color"], pool, a["json"]["online"]["draft"]), a["draft"])
    # the stored fields are untouched
    assert np.array_equal(
        sample["hint"], make_sample(demo_bytes(5)[0], key=demo_key(5), seed=7, cfg=CFG, pool=pool)["hint"]
    )


def test_online_draft_without_a_pool_uses_the_samples_own_regions(sample):
    a = online_sample(sample, seed=3, epoch=0, hints=False)
    assert a["draft"].shape == sample["color"].shape and a["json"]["online"]["draft"]["pastes"]
    assert np.array_equal(a["hint"], sample["hint"])


def test_pixel_filter_rejects_with_its_reason():
    with pytest.raises(DecodeError) as info:
        make_sample(demo_bytes(1)[0], key=demo_key(1), seed=0, cfg=CFG, check=lambda c: "monochrome")
    assert info.value.reason == "monochrome"


@pytest.mark.parametrize(
    "field,value",
    [("size", -1), ("crop", "left"), ("sketch", "canny"), ("color_format", "gif"), ("hint_radius", 99), ("drafts", -2)],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        SynthConfig(**{field: value})
