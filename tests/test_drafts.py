"""s2pdata.stages.drafts: pool file round trip, patch cutting, pasting, draft make/replay."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from s2pdata.pool import Patch, PatchPool
from s2pdata.shards import POOL_JSON, POOL_NPY
from s2pdata.stages.drafts import (
    _label_boxes,
    cut_rect_patch,
    cut_region_patch,
    make_draft,
    paste_patches,
    replay_draft,
    rotate_patch,
)
from tests.reference import ref_eligible_regions, ref_label_boxes, ref_paste_patches
from tests.strategies import (
    cel_images,
    draw_cel_image,
    draw_label_picture,
    label_pictures,
    make_pool,
    pools,
    position_image,
)

DRAFT_KEYS = {"version", "order", "pool", "pastes", "warp", "sprays"}
PASTE_KEYS = {"patch", "source_key", "kind", "angle", "scale", "row", "col"}


def _same_pool(a: PatchPool, b: PatchPool) -> bool:
    return (
        len(a) == len(b)
        and a.sha256 == b.sha256
        and all(
            np.array_equal(p.rgb, q.rgb)
            and np.array_equal(p.mask, q.mask)
            and p.mask.dtype == q.mask.dtype
            and p.kind == q.kind
            and p.source_key == q.source_key
            for p, q in zip(a, b)
        )
    )


# ---- pool file -----------------------------------------------------------------------------------


@settings(max_examples=15)
@given(pool=pools())
def test_pool_save_load_round_trip(pool, tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    pool.save(d)
    for mmap in (True, False):
        for verify in (True, False):
            back = PatchPool.load(d, mmap=mmap, verify=verify)
            assert _same_pool(pool, back) and back.sha256 == pool.sha256
    raw = np.load(d / POOL_NPY, allow_pickle=False)  # a plain uint8 buffer, no pickle needed
    assert raw.dtype == np.uint8 and raw.ndim == 1 and raw.size == pool.nbytes
    meta = json.loads((d / POOL_JSON).read_text())
    assert meta["sha256"] == pool.sha256 and meta["n_patches"] == len(pool)


@settings(max_examples=15)
@given(parts=st.lists(pools(), min_size=1, max_size=4), limit=st.one_of(st.none(), st.integers(0, 12)))
def test_pool_merge_equals_saving_the_concatenation(parts, limit, tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    dirs = []
    for i, part in enumerate(parts):
        part.save(root / f"part{i}")
        dirs.append(root / f"part{i}")
    whole = PatchPool([p for part in parts for p in part][:limit])
    whole.save(root / "whole")
    merged = PatchPool.merge(dirs, root / "merged", limit=limit)
    assert _same_pool(merged, whole) and merged.sha256 == whole.sha256
    assert _same_pool(PatchPool.load(root / "merged", verify=True, mmap=False), whole)
    meta = json.loads((root / "merged" / POOL_JSON).read_text())
    assert sorted(meta["files"]) == sorted(p.name for p in (root / "merged").glob("*.npy"))
    moved = len(meta["files"])  # pixel files were moved, not copied
    assert [(d / POOL_NPY).exists() for d in dirs] == [False] * moved + [True] * (len(dirs) - moved)


def test_pool_sha_depends_on_every_field(tmp_path):
    pool = make_pool(1)
    assert len(pool) > 2
    p = pool[0]
    flipped = p.rgb.copy()
    flipped[0, 0, 0] ^= 1
    variants = [
        PatchPool([Patch(flipped, p.mask, p.kind, p.source_key), *pool[1:]]),
        PatchPool([Patch(p.rgb, p.mask, p.kind, p.source_key + "x"), *pool[1:]]),
        PatchPool([pool[1], pool[0], *pool[2:]]),
        pool[:-1],
    ]
    shas = {pool.sha256} | {v.sha256 for v in variants}
    assert len(shas) == len(variants) + 1


def test_corrupted_pool_is_detected(tmp_path):
    pool = make_pool(2)
    pool.save(tmp_path)
    npy = tmp_path / POOL_NPY
    data = bytearray(npy.read_bytes())
    header = len(data) - pool.nbytes
    data[header + pool.nbytes // 2] ^= 0xFF
    npy.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        PatchPool.load(tmp_path, verify=True)
    PatchPool.load(tmp_path, verify=False)  # a cheap load trusts the pixels, not the index:
    good = (tmp_path / POOL_JSON).read_text()
    (tmp_path / POOL_JSON).write_text(good.replace(pool[0].source_key, pool[0].source_key + "x", 1))
    with pytest.raises(ValueError, match="corrupt"):
        PatchPool.load(tmp_path)
    broken = json.loads(good)
    broken["patches"][0]["file"] = 7
    (tmp_path / POOL_JSON).write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="malformed"):
        PatchPool.load(tmp_path)
    (tmp_path / POOL_JSON).write_text(good)
    npy.write_bytes(bytes(data[:-3]))  # truncated buffer: caught even without verify
    with pytest.raises(ValueError):
        PatchPool.load(tmp_path, mmap=False)
    (tmp_path / POOL_JSON).write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(ValueError, match="format"):
        PatchPool.load(tmp_path)


# ---- cutting -------------------------------------------------------------------------------------


@settings(max_examples=30)
@given(h=st.integers(1, 300), w=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_cut_rect_patch_is_a_window_with_sides_in_range(h, w, seed):
    img = position_image(h, w)
    p = cut_rect_patch(img, rng=np.random.default_rng(seed), key="k")
    ph, pw = p.mask.shape
    assert min(h, 64) <= ph <= min(h, 256) and min(w, 64) <= pw <= min(w, 256)
    assert p.kind == "rect" and p.source_key == "k" and p.mask.all()
    top = int(p.rgb[0, 0, 0]) + 256 * (int(p.rgb[0, 0, 2]) // 16)
    left = int(p.rgb[0, 0, 1]) + 256 * (int(p.rgb[0, 0, 2]) % 16)
    assert np.array_equal(p.rgb, img[top : top + ph, left : left + pw])
    img0 = img.copy()
    p.rgb[:] = 255 - p.rgb
    assert np.array_equal(img, img0)  # the patch owns its pixels


def test_cut_rect_patch_sides_cover_the_paper_range():
    img = position_image(512, 512)
    rng = np.random.default_rng(0)
    sides = np.array([cut_rect_patch(img, rng=rng).mask.shape for _ in range(400)]).ravel()
    assert sides.min() >= 64 and sides.max() <= 256
    assert sides.min() < 70 and sides.max() > 250 and abs(sides.mean() - 160) < 8


@settings(max_examples=40)
@given(
    labels=label_pictures(min_side=8, max_side=48),
    seed=st.integers(0, 2**32 - 1),
    min_area=st.integers(1, 60),
    max_side=st.integers(2, 48),
)
def test_cut_region_patch_is_one_label_in_its_box(labels, seed, min_area, max_side):
    h, w = labels.shape
    img = position_image(h, w)
    ok = ref_eligible_regions(labels, min_area, max_side)
    p = cut_region_patch(img, labels, rng=np.random.default_rng(seed), min_area=min_area, max_side=max_side, key="src")
    if not ok:
        assert p is None
        return
    assert p is not None and p.kind == "region" and p.source_key == "src"
    top, left = int(p.rgb[0, 0, 0]), int(p.rgb[0, 0, 1])
    ph, pw = p.mask.shape
    box = labels[top : top + ph, left : left + pw]
    assert np.array_equal(p.rgb, img[top : top + ph, left : left + pw])
    chosen = np.unique(box[p.mask])
    assert len(chosen) == 1 and int(chosen[0]) in ok
    lab = int(chosen[0])
    assert np.array_equal(p.mask, box == lab)
    assert ndimage.find_objects(labels)[lab - 1] == (slice(top, top + ph), slice(left, left + pw))


@settings(max_examples=40)
@given(labels=label_pictures(min_side=1, max_side=40))
def test_label_boxes_match_reference(labels):
    areas, boxes = _label_boxes(labels, int(labels.max()))
    ref = ref_label_boxes(labels)
    for lab in range(len(areas)):
        if lab in ref:
            assert (int(areas[lab]), *map(int, boxes[lab])) == ref[lab]
        else:
            assert areas[lab] == 0


def _chosen_label(p: Patch, labels: np.ndarray) -> int:
    """The label a region patch cut from ``position_image`` came from."""
    top, left = int(p.rgb[0, 0, 0]), int(p.rgb[0, 0, 1])
    box = labels[top : top + p.mask.shape[0], left : left + p.mask.shape[1]]
    (lab,) = np.unique(box[p.mask])
    return int(lab)


def test_cut_region_patch_reaches_every_eligible_region():
    rows, cols = np.mgrid[0:64, 0:64]
    ink = np.zeros((64, 64), bool)
    for r, c, rad in ((12, 12, 6), (12, 45, 9), (45, 20, 3), (50, 50, 12), (30, 30, 1)):
        ink |= (rows - r) ** 2 + (cols - c) ** 2 <= rad**2
    labels = ndimage.label(ink)[0].astype(np.int32)
    img = position_image(64, 64)
    ok = ref_eligible_regions(labels, 10, 64)
    assert len(ok) == 4 and labels.max() == 5  # the 5-pixel disk is too small
    rng = np.random.default_rng(0)
    seen = {
        _chosen_label(cut_region_patch(img, labels, rng=rng, min_area=10, max_side=64), labels)
        for _ in range(30 * len(ok))
    }
    assert seen == set(ok)
    assert cut_region_patch(img, np.zeros((64, 64), np.int32), rng=rng) is None


# ---- rotation and pasting ------------------------------------------------------------------------


def test_rotate_patch_quarter_turns_are_exact():
    img = draw_cel_image(13, 21, seed=3)
    mask = draw_label_picture(13, 21, seed=3) > 0
    p = Patch(img, mask, "region", "k")
    rgb, m = rotate_patch(p, 0.0)
    assert rgb is p.rgb and m is p.mask
    for k in (1, 2, 3):
        rgb, m = rotate_patch(p, 90.0 * k)  # counter-clockwise
        assert np.array_equal(rgb, np.rot90(img, k)) and np.array_equal(m, np.rot90(mask, k))


@settings(max_examples=30)
@given(angle=st.floats(0, 360), scale=st.floats(0.5, 2.0), h=st.integers(1, 30), w=st.integers(1, 30))
def test_rotate_patch_keeps_the_mask_area_and_fits(angle, scale, h, w):
    p = Patch(draw_cel_image(h, w, seed=h * 31 + w), np.ones((h, w), bool), "rect", "")
    rgb, m = rotate_patch(p, angle, scale)
    rad = np.radians(angle)
    eh = scale * (h * abs(np.cos(rad)) + w * abs(np.sin(rad)))
    assert rgb.shape[:2] == m.shape and m.dtype == np.bool_ and rgb.dtype == np.uint8
    assert eh - 1e-6 <= m.shape[0] <= eh + 1
    if min(h, w) * scale >= 6:  # nearest sampling keeps the area up to the boundary pixels
        assert abs(m.sum() - scale**2 * h * w) <= 2 * scale * (h + w) + 4


@settings(max_examples=30)
@given(img=cel_images(min_side=8, max_side=48), pool=pools(), data=st.data())
def test_paste_patches_matches_reference_and_touches_only_masks(img, pool, data):
    if not len(pool):
        assert np.array_equal(paste_patches(img, pool, []), img)
        return
    h, w = img.shape[:2]
    pastes, placed = [], []
    for _ in range(data.draw(st.integers(1, 5))):
        idx = data.draw(st.integers(0, len(pool) - 1))
        angle = data.draw(st.sampled_from([0.0, 90.0, 33.3, 271.5]))
        scale = data.draw(st.sampled_from([1.0, 0.7, 1.6]))
        row, col = data.draw(st.integers(-30, h + 5)), data.draw(st.integers(-30, w + 5))
        pastes.append((idx, angle, scale, row, col))
        rgb, m = rotate_patch(pool[idx], angle, scale)
        placed.append((rgb, m, row, col))
    img0 = img.copy()
    out = paste_patches(img, pool, pastes)
    assert np.array_equal(img, img0)
    assert np.array_equal(out, ref_paste_patches(img, placed))
    under = np.zeros((h, w), bool)
    for _, m, row, col in placed:
        ys, xs = np.nonzero(m)
        ys, xs = ys + row, xs + col
        keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        under[ys[keep], xs[keep]] = True
    assert not np.any(np.any(out != img, axis=2) & ~under)


def test_paste_from_a_memory_mapped_pool_matches_reference(tmp_path):
    # patches straight from the read-only memory map (angle 0, scale 1) and rotated ones
    make_pool(4).save(tmp_path)
    pool = PatchPool.load(tmp_path)
    img = draw_cel_image(40, 52, seed=2)
    pastes = [(i % len(pool), (0.0, 37.0)[i % 2], 1.0, 9 * i - 12, 11 * i - 20) for i in range(8)]
    placed = [(*rotate_patch(pool[i], angle, scale), row, col) for i, angle, scale, row, col in pastes]
    assert np.array_equal(paste_patches(img, pool, pastes), ref_paste_patches(img, placed))


# ---- drafts --------------------------------------------------------------------------------------


@settings(max_examples=25)
@given(
    img=cel_images(min_side=8, max_side=48),
    pool=pools(),
    seed=st.integers(0, 2**32 - 1),
    one_sided=st.booleans(),
    border=st.sampled_from(["reflect", "constant", "replicate"]),
)
def test_make_then_replay_is_byte_identical(img, pool, seed, one_sided, border):
    options = dict(pool=pool, one_sided=one_sided, border=border, angle=(0.0, 360.0), scale=(0.8, 1.2))
    draft, params = make_draft(img, rng=np.random.default_rng(seed), **options)
    assert draft.dtype == np.uint8 and draft.shape == img.shape
    text = json.dumps(params)
    loaded = json.loads(text)
    assert loaded == params and set(params) == DRAFT_KEYS
    assert params["pool"] == {"sha256": pool.sha256, "size": len(pool)}
    assert (len(params["pastes"]) == 0) == (len(pool) == 0)
    for p in params["pastes"]:
        assert set(p) == PASTE_KEYS and pool[p["patch"]].source_key == p["source_key"]
    assert 1 <= len(params["sprays"]) <= 3
    assert replay_draft(img, pool, loaded).tobytes() == draft.tobytes()
    again, params2 = make_draft(img, rng=np.random.default_rng(seed), **options)
    assert again.tobytes() == draft.tobytes() and params2 == params


def test_many_seeds_and_pools_replay(tmp_path):
    pools_ = [None, PatchPool(), make_pool(5), make_pool(6, n_images=1, per_image=1)]
    make_pool(5).save(tmp_path)
    pools_.append(PatchPool.load(tmp_path))  # memory-mapped pool from disk
    keysets = set()
    for pool in pools_:
        for seed in range(8):
            img = draw_cel_image(40 + seed, 56 - seed, seed=seed)
            draft, params = make_draft(img, pool=pool, rng=np.random.default_rng(seed))
            keysets.add(frozenset(params))
            assert replay_draft(img, pool, json.loads(json.dumps(params))).tobytes() == draft.tobytes()
    assert keysets == {frozenset(DRAFT_KEYS)}


def test_draft_with_nothing_to_do_is_the_input():
    img = draw_cel_image(30, 40, seed=1)
    draft, params = make_draft(
        img, pool=make_pool(1), rng=np.random.default_rng(0), n_pastes=(0, 0), warp_sigma=0.0, n_sprays=(0, 0)
    )
    assert np.array_equal(draft, img) and params["pastes"] == [] and params["sprays"] == []
    draft, _ = make_draft(img, pool=make_pool(1), rng=np.random.default_rng(0))
    assert not np.array_equal(draft, img)


def test_replay_with_the_wrong_pool_raises():
    img = draw_cel_image(48, 48, seed=2)
    pool = make_pool(3)
    draft, params = make_draft(img, pool=pool, rng=np.random.default_rng(1), n_pastes=(2, 4))
    assert params["pastes"]
    for wrong in (make_pool(4), pool[:-1], PatchPool(), None):
        with pytest.raises(ValueError, match="pool"):
            replay_draft(img, wrong, params)
    with pytest.raises(ValueError, match="version"):
        replay_draft(img, pool, {**params, "version": 99})


def test_bad_input_names_the_argument():
    img = np.zeros((16, 16, 3), np.uint8)
    rng = np.random.default_rng(0)
    pool = make_pool(1)
    cases = [
        (lambda: make_draft(img[..., 0], pool=pool, rng=rng), ValueError, "color"),
        (lambda: make_draft(img, pool=[pool[0]], rng=rng), TypeError, "pool"),
        (lambda: make_draft(img, pool=pool, rng=0), TypeError, "rng"),
        (lambda: make_draft(img, pool=pool, rng=rng, n_pastes=(3, 1)), ValueError, "n_pastes"),
        (lambda: make_draft(img, pool=pool, rng=rng, n_sprays="x"), TypeError, "n_sprays"),
        (lambda: cut_rect_patch(img, rng=rng, side=(0, 5)), ValueError, "side"),
        (lambda: cut_region_patch(img, np.zeros((8, 8), np.int32), rng=rng), ValueError, "labels"),
        (lambda: cut_region_patch(img, np.full((16, 16), -1, np.int32), rng=rng), ValueError, "labels"),
        (lambda: paste_patches(img, pool, [(len(pool), 0.0, 1.0, 0, 0)]), IndexError, "pastes"),
        (lambda: paste_patches(img, pool, [(0, 0.0)]), ValueError, "pastes"),
        (lambda: rotate_patch(pool[0], 10.0, 0.0), ValueError, "scale"),
        (lambda: Patch(img, np.ones((15, 16), bool), "rect", ""), ValueError, "mask"),
        (lambda: Patch(img, np.ones((16, 16), bool), "blob", ""), ValueError, "kind"),
        (lambda: Patch(img, np.ones((16, 16), np.uint8), "rect", ""), TypeError, "mask"),
        (lambda: PatchPool([img]), TypeError, "patches"),
    ]
    for fn, exc, name in cases:
        with pytest.raises(exc, match=name):
            fn()
