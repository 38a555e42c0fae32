"""Optional fields through the build: rough sketches, flat colours, colour domains, references."""

from __future__ import annotations

import json

import numpy as np
import pytest

from s2pdata._rng import sample_rng
from s2pdata.build.cli import main
from s2pdata.data import open_shards
from s2pdata.demo import demo_bytes, demo_key
from s2pdata.stages.domain import domain_from_params
from s2pdata.stages.refimage import reference_from_params
from s2pdata.stages.rough import roughen_from_params
from s2pdata.stages.sketch import extract_sketch
from s2pdata.synth import SynthConfig, make_sample

CFG = SynthConfig(size=96, sketch_style="rough", fields=("reference", "flat", "colordomain"))


@pytest.fixture(scope="module")
def sample():
    return make_sample(demo_bytes(4)[0], key=demo_key(4), seed=2, cfg=CFG)


def test_fields_are_in_canonical_order_and_in_the_schema():
    assert CFG.fields == ("flat", "colordomain", "reference")
    assert CFG.schema().fields()[-4:] == ["flat.png", "colordomain.png", "reference.jpg", "json"]
    with pytest.raises(ValueError, match="fields"):
        SynthConfig(fields=("depth",))
    with pytest.raises(ValueError, match="sketch_style"):
        SynthConfig(sketch_style="messy")


def test_flat_is_constant_inside_every_region(sample):
    flat, labels = sample["flat"], sample["regions"]
    for lab in np.unique(labels):
        colors = flat[labels == lab]
        assert (colors == colors[0]).all()


def test_every_optional_field_replays_from_its_json(sample):
    color, info = sample["color"], sample["json"]
    assert np.array_equal(domain_from_params(color, info["colordomain"]), sample["colordomain"])
    assert np.array_equal(reference_from_params(color, info["reference"]), sample["reference"])
    clean, _ = extract_sketch(color, method=CFG.sketch, rng=sample_rng(2, demo_key(4), "sketch"))
    assert info["sketch"]["style"] == "rough"
    assert np.array_equal(roughen_from_params(clean, json.loads(info["sketch"]["rough"])), sample["sketch"])
    assert len(np.unique(sample["colordomain"].reshape(-1, 3), axis=0)) <= info["colordomain"]["k"]


@pytest.mark.slow
def test_cli_fields_and_style(tmp_path):
    out = tmp_path / "o"
    flags = "--src demo:4 --size 64 --workers 1 --no-progress --fields reference,flat --fields colordomain"
    assert main([*flags.split(), "--sketch-style", "mix", "--rough-weight", "1", "--out", str(out)]) == 0
    samples = list(open_shards(out))
    assert all({"flat", "colordomain", "reference"} <= set(s) for s in samples)
    assert all(s["json"]["sketch"]["style"] == "rough" for s in samples)
    assert samples[0]["reference"].shape == samples[0]["color"].shape
