"""Tests for s2pdata.stages.regions: edge map, trapped-ball segmentation, region proposal."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from s2pdata.stages import regions
from s2pdata.stages.regions import _kernels, edge_map, propose_regions, region_count, trapped_ball
from tests.reference import adjusted_rand_index, ref_edge_map, ref_fills, ref_fills_passes, ref_finish, ref_trapped_ball
from tests.strategies import blob_drawings, draw_lines, line_drawings


def _is_partition_into_connected(labels: np.ndarray) -> bool:
    """Labels 1..K all present, and each label is one 4-connected set."""
    k = labels.max()
    if set(np.unique(labels[labels > 0]).tolist()) != set(range(1, k + 1)):
        return False
    comps, _ = ndimage.label(labels > 0)
    for a in range(1, k + 1):
        _, m = ndimage.label(labels == a)
        if m != 1:
            return False
    return True


def _first_pixel_order(labels: np.ndarray) -> bool:
    flat = labels.ravel()
    firsts = [int(np.argmax(flat == a)) for a in range(1, labels.max() + 1)]
    return firsts == sorted(firsts)


@st.composite
def photos(draw):
    """Small RGB or gray images from a seed: blurred noise plus random disks and lines."""
    seed = draw(st.integers(0, 2**32 - 1))
    h, w = draw(st.integers(4, 40)), draw(st.integers(4, 40))
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    img = cv2.GaussianBlur(img, (5, 5), 0)
    for _ in range(int(rng.integers(0, 4))):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))  # cv2 point (x, y)
        cv2.circle(img, c, int(rng.integers(1, 8)), rng.integers(0, 256, 3).tolist(), -1)
    return img if draw(st.booleans()) else img[:, :, 0].copy()


@given(photos())
def test_edge_map_matches_reference(img):
    before = img.copy()
    e = edge_map(img)
    assert e.dtype == bool and e.shape == img.shape[:2]
    np.testing.assert_array_equal(e, ref_edge_map(img))
    np.testing.assert_array_equal(img, before)


def test_edge_map_flat_and_line():
    assert not edge_map(np.full((9, 7, 3), 120, np.uint8)).any()
    img = np.full((20, 20), 255, np.uint8)
    img[10, :] = 0
    e = edge_map(img)
    assert e[10].all() and e.mean() < 0.5


@given(line_drawings(), st.booleans())
def test_partition_properties(edges, assign):
    before = edges.copy()
    lab = trapped_ball(edges, assign_edges=assign)
    np.testing.assert_array_equal(edges, before)
    assert lab.dtype == np.int32 and lab.shape == edges.shape
    assert (lab[~edges] > 0).all()  # every free pixel has a region
    if assign:
        assert (lab > 0).all()  # ... and every pixel
    elif (~edges).any():
        assert (lab[edges] == 0).all()
    assert _is_partition_into_connected(lab)
    assert _first_pixel_order(lab)
    np.testing.assert_array_equal(lab, trapped_ball(edges, assign_edges=assign))


@settings(max_examples=20)
@given(
    line_drawings(max_side=32),
    st.sampled_from([((3, 2, 1), ("mean", None, None)), ((2, 1), (None, "max")), ((4,), ("mean",))]),
)
def test_other_schedules(edges, schedule):
    radii, keep = schedule
    lab = trapped_ball(edges, radii=radii, keep=keep)
    assert (lab > 0).all() and _is_partition_into_connected(lab)
    _assert_agrees(edges, radii, keep)


@settings(max_examples=25)
@given(st.one_of(line_drawings(max_side=40), blob_drawings(max_side=40)), st.booleans())
def test_finish_matches_reference_exactly(edges, assign):
    """Given the same provisional labels, edge assignment and sliver merge agree bit for bit."""
    prov, n = ref_fills(edges)
    padded = np.pad(prov, 1).reshape(-1).astype(np.int32)
    fast = regions._finish_regions(padded, n, edges, assign)
    np.testing.assert_array_equal(fast, ref_finish(prov, n, edges, assign))


_SCHEDULES = [
    ((3, 2, 1), ("max", None, None)),
    ((3, 2, 1), ("mean", None, None)),
    ((2, 1), (None, "max")),
    ((4,), ("mean",)),
]


@settings(max_examples=30)
@given(st.one_of(line_drawings(max_side=40), blob_drawings(max_side=40)), st.sampled_from(_SCHEDULES))
def test_fills_match_pass_reference_exactly(edges, schedule):
    """The fill stage is the documented whole-image-pass algorithm bit for bit (the growth
    as synchronous rounds, then a list search; OpenCV's labels in raster order)."""
    radii, keep = schedule
    prov, n = regions._fill_regions(edges, radii, keep)
    ref, ref_n = ref_fills_passes(edges, radii, keep)
    h, w = edges.shape
    assert n == ref_n
    np.testing.assert_array_equal(prov.reshape(h + 2, w + 2)[1:-1, 1:-1], ref)
    np.testing.assert_array_equal(trapped_ball(edges, radii=radii, keep=keep), ref_finish(ref, ref_n, edges, True))


def test_label_order_check_and_canonicalize():
    edges = draw_lines(11, 60, 70)
    edges[::7, :] = True  # a grid of cells: many components
    edges[:, ::9] = True
    free = np.zeros((62, 72), np.uint8)
    free[1:-1, 1:-1] = ~edges
    ncc, cc = cv2.connectedComponents(free, connectivity=4, ltype=cv2.CV_32S)
    ordered = np.zeros_like(cc)
    ordered[1:-1, 1:-1] = ndimage.label(free[1:-1, 1:-1])[0]
    np.testing.assert_array_equal(cc, ordered)  # what the kernels check, not assume
    assert _kernels._raster_ordered(cc.reshape(-1), 60, 70)
    perm = np.concatenate([[0], np.random.default_rng(0).permutation(np.arange(1, ncc))])
    shuffled = perm[cc].astype(np.int32)
    assert ncc > 3 and not _kernels._raster_ordered(shuffled.reshape(-1), 60, 70)
    _kernels._canonicalize(shuffled.reshape(-1), ncc, 60, 70)
    np.testing.assert_array_equal(shuffled, ordered)


def test_pixel_limit(monkeypatch):
    monkeypatch.setattr(regions, "MAX_PIXELS", 100)
    with pytest.raises(ValueError, match="edges"):
        trapped_ball(np.zeros((10, 10), bool))
    assert trapped_ball(np.zeros((9, 11), bool)).max() == 1


def _assert_agrees(edges, radii=regions.RADII, keep=regions.KEEP):
    """trapped_ball and the per-fill reference agree on ``edges``, with a loose per-example bound.

    Where two balls overlap, the whole-image passes split the pixels by distance and the
    reference gives them to the earlier seed (documented in ``trapped_ball``), which on a tiny
    image can move a whole boundary; the means over seeded drawings below are the real criterion.
    The final maps must agree by ARI >= 0.5, except where exactly one side is a single region:
    ARI against a constant labelling is 0 by construction, whatever the other side. That happens
    when the documented difference pushes fills across the 50-pixel sliver threshold, so that
    one side dissolves everything into one region; there the region counts differ by at most 1
    and the provisional fills (free pixels), where the difference lives, agree by ARI >= 0.5.
    """
    lab, ref = trapped_ball(edges, radii=radii, keep=keep), ref_trapped_ball(edges, radii, keep)
    if (lab.max() > 1) == (ref.max() > 1):
        assert adjusted_rand_index(lab, ref) >= 0.5  # 1.0 when both are one region
        return
    assert abs(int(lab.max()) - int(ref.max())) <= 1
    h, w = edges.shape
    prov = regions._fill_regions(edges, radii, keep)[0].reshape(h + 2, w + 2)[1:-1, 1:-1]
    free = ~edges
    assert adjusted_rand_index(prov[free], ref_fills(edges, radii, keep)[0][free]) >= 0.5


@settings(max_examples=20)
@given(line_drawings(min_side=24, max_side=40))
# found by Hypothesis 6.170 (seed 153): provisional ARI 0.99, but the per-fill reference splits
# the middle into three fills under 50 pixels that all dissolve (one region) while the passes
# keep it as one 77-pixel fill (two regions), so the final ARI is the degenerate 0
@example(edges=draw_lines(153, 33, 32, gaps=True))
def test_agrees_with_reference(edges):
    _assert_agrees(edges)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (5, 5), (33, 20)])
def test_no_edges_one_region(shape):
    edges = np.zeros(shape, bool)
    for assign in (True, False):
        lab = trapped_ball(edges, assign_edges=assign)
        assert (lab == 1).all()


def test_all_edges():
    edges = np.ones((6, 4), bool)
    assert (trapped_ball(edges) == 1).all()
    assert (trapped_ball(edges, assign_edges=False) == 0).all()


def test_gap_narrower_than_ball_does_not_leak():
    # two 30x30 rooms joined by a 3-pixel door: r = 3 cannot pass, so two regions
    edges = np.zeros((40, 80), bool)
    edges[[0, -1], :] = True
    edges[:, [0, 39, 40, -1]] = True
    edges[18:21, 39:41] = False
    lab = trapped_ball(edges, keep=(None, None, None), assign_edges=False)
    assert lab[20, 10] != lab[20, 70]
    assert lab[20, 10] > 0 and lab[20, 70] > 0


def _ari_over(drawings):
    scores = [adjusted_rand_index(trapped_ball(e), ref_trapped_ball(e)) for e in drawings]
    return float(np.mean(scores)), min(scores)


def test_mean_ari_mixed_drawings():
    drawings = [draw_lines(1000 + s, 48, 56, gaps=bool(s % 2)) for s in range(30)]
    mean, _ = _ari_over(drawings)
    assert mean >= 0.95, mean


def test_mean_ari_closed_drawings():
    drawings = [draw_lines(2000 + s, 48, 56, gaps=False) for s in range(30)]
    mean, _ = _ari_over(drawings)
    assert mean >= 0.99, mean


def test_thread_count_does_not_matter():
    edges = draw_lines(7, 64, 64)
    old = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        a = trapped_ball(edges)
        cv2.setNumThreads(2)
        b = trapped_ball(edges)
    finally:
        cv2.setNumThreads(old)
    np.testing.assert_array_equal(a, b)


def test_propose_regions_and_count():
    rng = np.random.default_rng(3)
    color = cv2.GaussianBlur(rng.integers(0, 256, (40, 50, 3)).astype(np.uint8), (7, 7), 0)
    lab = propose_regions(color)
    assert lab.shape == (40, 50) and lab.dtype == np.int32 and (lab > 0).all()
    np.testing.assert_array_equal(lab, trapped_ball(edge_map(color)))
    assert region_count(lab) == len(np.unique(lab))


@pytest.mark.parametrize(
    "bad, exc, word",
    [
        (np.zeros((4, 4), np.uint8), TypeError, "edges"),
        (np.zeros((4, 4, 1), bool), ValueError, "edges"),
        (np.zeros((0, 4), bool), ValueError, "edges"),
        ([[True]], TypeError, "edges"),
    ],
)
def test_bad_edges(bad, exc, word):
    with pytest.raises(exc, match=word):
        trapped_ball(bad)


@pytest.mark.parametrize(
    "kw, word",
    [
        (dict(radii=(1, 2, 3)), "radii"),
        (dict(radii=(3, 3, 1)), "radii"),
        (dict(radii=(3, 0), keep=(None, None)), "radii"),
        (dict(radii=(2.5, 1), keep=(None, None)), "radii"),
        (dict(radii=()), "radii"),
        (dict(keep=("max", None)), "keep"),
        (dict(keep=("max", "median", None)), "keep"),
        (dict(keep="max"), "keep"),
        (dict(assign_edges="yes"), "assign_edges"),
    ],
)
def test_bad_schedule(kw, word):
    with pytest.raises((TypeError, ValueError), match=word):
        trapped_ball(np.zeros((5, 5), bool), **kw)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((4, 0, 3), np.uint8), np.zeros(4, np.uint8)],
)
def test_bad_image(bad):
    with pytest.raises((TypeError, ValueError), match="image"):
        edge_map(bad)


def test_region_count_checks():
    with pytest.raises(TypeError, match="labels"):
        region_count(np.zeros((3, 3), np.int64))


def test_import_does_not_pull_torch():
    code = "import sys, s2pdata.stages.regions; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
