"""Flat-colour maps: exact agreement with per-label numpy medians / trimmed means."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2pdata.stages.flat import FLAT_STATS, flat_fill, flat_from_params
from s2pdata.stages.regions import propose_regions, trapped_ball
from tests.reference import draw_cel as draw_cel_image
from tests.reference import ref_flat_fill


@st.composite
def image_and_labels(draw):
    """A cel image with trapped-ball labels (edges 0 or assigned), or with random blocky labels."""
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    color = draw_cel_image(h, w, seed, draw(st.integers(0, 5)), draw(st.integers(0, 3)))
    kind = draw(st.sampled_from(["regions", "edges0", "blocks"]))
    if kind == "regions":
        labels = propose_regions(color)
    elif kind == "edges0":
        from s2pdata.stages.regions import edge_map

        labels = trapped_ball(edge_map(color), assign_edges=False)
    else:  # labels with gaps in the numbering and unassigned pixels; noisy colours
        rng = np.random.default_rng(seed)
        cell = int(rng.integers(1, 8))
        coarse = rng.integers(0, 6, (h // cell + 1, w // cell + 1)).astype(np.int32) * 3
        labels = np.kron(coarse, np.ones((cell, cell), np.int32))[:h, :w].copy()
        color = np.clip(color.astype(int) + rng.integers(-40, 41, color.shape), 0, 255).astype(np.uint8)
    return color, labels


@settings(max_examples=40)
@given(image_and_labels(), st.sampled_from(FLAT_STATS))
def test_equals_reference_and_is_constant_per_region(data, stat):
    color, labels = data
    c0, l0 = color.copy(), labels.copy()
    flat, params = flat_fill(color, labels, stat=stat)
    np.testing.assert_array_equal(color, c0)
    np.testing.assert_array_equal(labels, l0)
    assert flat.dtype == np.uint8 and flat.shape == color.shape
    np.testing.assert_array_equal(flat, ref_flat_fill(color, labels, stat, params["trim"]))
    for a in np.unique(labels[labels > 0]):
        assert len(np.unique(flat[labels == a], axis=0)) == 1
    np.testing.assert_array_equal(flat[labels == 0], color[labels == 0])
    assert params == {"stat": stat, "trim": 0.1, "regions": int(labels.max()), "unassigned": "keep"}
    np.testing.assert_array_equal(flat_from_params(color, labels, params), flat)


@pytest.mark.parametrize("trim", [0.0, 0.25, 0.49])
def test_trim_fractions_match_reference(trim):
    color = draw_cel_image(30, 30, 4, 5, 3)
    noisy = np.clip(color.astype(int) + np.random.default_rng(0).integers(-60, 61, color.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    labels = propose_regions(color)
    flat, _ = flat_fill(noisy, labels, stat="trimmed", trim=trim)
    np.testing.assert_array_equal(flat, ref_flat_fill(noisy, labels, "trimmed", trim))


def test_even_count_median_rounds_half_up():
    color = np.array([[[10, 0, 255], [11, 1, 254]]], np.uint8)
    flat, _ = flat_fill(color, np.ones((1, 2), np.int32))
    np.testing.assert_array_equal(flat, [[[11, 1, 255], [11, 1, 255]]])


def test_all_unassigned_is_a_copy():
    color = draw_cel_image(8, 9, 0)
    flat, params = flat_fill(color, np.zeros((8, 9), np.int32))
    np.testing.assert_array_equal(flat, color)
    assert params["regions"] == 0


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(color=np.zeros((4, 4), np.uint8)), ValueError, "color"),
        (dict(labels=np.zeros((4, 4), np.int64)), TypeError, "labels"),
        (dict(labels=np.zeros((4, 5), np.int32)), ValueError, "labels"),
        (dict(labels=np.full((4, 4), -1, np.int32)), ValueError, "labels"),
        (dict(stat="mean"), ValueError, "stat"),
        (dict(trim=0.5), ValueError, "trim"),
    ],
)
def test_bad_input_names_the_argument(kwargs, exc, name):
    args = dict(color=np.zeros((4, 4, 3), np.uint8), labels=np.ones((4, 4), np.int32))
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        flat_fill(args.pop("color"), args.pop("labels"), **args)
