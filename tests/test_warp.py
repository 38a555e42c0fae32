"""s2pdata.stages.warp: identity, CPU vs torch vs a plain float64 reference, labels, points, params."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from s2pdata.stages.warp import (
    IDENTITY,
    AffineParams,
    make_affine_params,
    pixel_matrix,
    warp_batch_torch,
    warp_image,
    warp_labels,
    warp_points,
)
from tests.reference import ref_warp_image, ref_warp_labels
from tests.strategies import affine_params, cel_images, draw_smooth_image, label_pictures, smooth_images

torch = pytest.importorskip("torch")

BORDERS = [("reflect", "reflection"), ("replicate", "border"), ("constant", "zeros")]


def _torch_warp(image: np.ndarray, params: AffineParams, padding_mode: str) -> np.ndarray:
    """warp_batch_torch on one (H, W, C) image, back to float64 (H, W, C)."""
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    out = warp_batch_torch(t, np.array(params.theta).reshape(1, 2, 3), padding_mode=padding_mode)
    return out[0].permute(1, 2, 0).double().numpy()


# ---- identity ----------------------------------------------------------------------------------


@settings(max_examples=15)
@given(img=cel_images(max_side=40), labels=label_pictures(), border=st.sampled_from([b for b, _ in BORDERS]))
def test_identity_is_exact_on_cpu(img, labels, border):
    p = AffineParams()
    assert p.is_identity and np.array_equal(pixel_matrix(p, img.shape), np.eye(2, 3))
    out = warp_image(img, p, border=border)
    assert out.dtype == img.dtype and np.array_equal(out, img) and out is not img
    f = img.astype(np.float32) / 255
    assert np.array_equal(warp_image(f, p), f)
    out_l = warp_labels(labels, p)
    assert np.array_equal(out_l, labels) and out_l is not labels
    pts = np.array([[0.0, 0.0], [3.5, 7.25]])
    assert np.array_equal(warp_points(pts, p, img.shape), pts)


def test_identity_within_one_grey_level_in_torch():
    img = draw_smooth_image(37, 53, seed=1)
    for _, mode in BORDERS:
        out = _torch_warp(img, AffineParams(), mode)
        assert np.abs(out / 255 - img / 255).max() <= 1.0 / 255  # images in [0, 1]: within 1/255


def test_sigma_zero_draws_the_identity():
    for one_sided in (False, True):
        p = make_affine_params((10, 20, 3), rng=np.random.default_rng(3), sigma=0.0, one_sided=one_sided)
        assert p.is_identity and p.theta == IDENTITY


# ---- CPU (cv2) vs torch vs the float64 reference --------------------------------------------------


@settings(max_examples=20)
@given(img=smooth_images(), seed=st.integers(0, 2**32 - 1), border=st.sampled_from(BORDERS))
def test_cpu_torch_and_reference_agree_on_smooth_images(img, seed, border):
    cv_border, torch_mode = border
    p = make_affine_params(img.shape, rng=np.random.default_rng(seed), sigma=0.1)
    cpu = warp_image(img, p, border=cv_border).astype(np.float64)
    gpu = _torch_warp(img, p, torch_mode)
    ref = ref_warp_image(img, p.theta, cv_border)
    inner = (slice(4, -4), slice(4, -4))
    for other in (gpu, ref):
        d = np.abs(cpu - other)
        assert d[inner].mean() < 1.0, d[inner].mean()
        assert d[inner].max() <= 4.0, d[inner].max()  # cv2 quantises positions to 1/32 px
    # torch and the float64 reference follow the same formula: no quantisation between them
    assert np.abs(gpu - ref).max() < 1e-2


@settings(max_examples=10)
@given(img=smooth_images(max_side=40), seed=st.integers(0, 2**32 - 1))
def test_float32_images_warp_like_uint8(img, seed):
    p = make_affine_params(img.shape, rng=np.random.default_rng(seed))
    f = warp_image(img.astype(np.float32), p)
    assert f.dtype == np.float32 and f.shape == img.shape
    assert np.abs(f - ref_warp_image(img, p.theta)).max() < 0.5
    gray = img[..., 0]
    g = warp_image(gray, p)
    assert g.shape == gray.shape and np.array_equal(g, warp_image(img, p)[..., 0])


def test_batch_warp_matches_per_image():
    imgs = np.stack([draw_smooth_image(32, 40, seed=s) for s in range(3)])
    thetas = np.stack([make_affine_params((32, 40), rng=np.random.default_rng(s)).matrix() for s in range(3)])
    batch = warp_batch_torch(torch.from_numpy(imgs).permute(0, 3, 1, 2).float(), thetas)
    assert batch.shape == (3, 3, 32, 40) and batch.dtype == torch.float32
    for k in range(3):
        one = _torch_warp(imgs[k], AffineParams(tuple(thetas[k].ravel())), "reflection")
        assert np.allclose(batch[k].permute(1, 2, 0).numpy(), one, atol=1e-4)


# ---- labels ------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(labels=label_pictures(), params=affine_params())
def test_warp_labels_never_invents_and_matches_reference(labels, params):
    out = warp_labels(labels, params)
    assert out.dtype == np.int32 and out.shape == labels.shape
    assert set(np.unique(out)) <= set(np.unique(labels)) | {0}
    ref, tie = ref_warp_labels(labels, params.theta)
    assert np.array_equal(out[~tie], ref[~tie])


def test_warp_labels_follows_the_image_warp():
    """A label disk moves where the image of the same disk moves (mask of the warped image)."""
    h, w = 80, 96
    rows, cols = np.mgrid[0:h, 0:w]
    disk = (rows - 40) ** 2 + (cols - 50) ** 2 <= 15**2
    for seed in range(5):
        p = make_affine_params((h, w), rng=np.random.default_rng(seed))
        lab = warp_labels(disk.astype(np.int32) * 7, p) == 7
        img = warp_image(disk.astype(np.uint8) * 255, p, border="constant") >= 128
        assert (lab != img).sum() <= 0.05 * max(img.sum(), 1)


# ---- points ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_warp_points_tracks_a_blob_and_a_pixel(seed):
    h, w = 96, 128
    rng = np.random.default_rng(seed)
    p = make_affine_params((h, w), rng=rng, sigma=0.1)
    q = np.array([[rng.uniform(30, 66), rng.uniform(40, 88)]])  # (row, col)
    moved = warp_points(q, p, (h, w))[0]
    if not (8 <= moved[0] < h - 8 and 8 <= moved[1] < w - 8):
        pytest.skip("this draw moves the point off the image")
    rows, cols = np.mgrid[0:h, 0:w]
    blob = np.exp(-((rows - q[0, 0]) ** 2 + (cols - q[0, 1]) ** 2) / (2 * 2.0**2)).astype(np.float32)
    out = warp_image(blob, p, border="constant").astype(np.float64)
    centroid = ndimage.center_of_mass(out)
    assert np.hypot(*(np.array(centroid) - moved)) < 1.0, (centroid, moved)
    # a single bright pixel at integer coordinates: the brightest output pixel sits within 1 px
    qi = np.round(q).astype(int)
    dot = np.zeros((h, w), np.uint8)
    dot[qi[0, 0], qi[0, 1]] = 255
    out = warp_image(dot, p, border="constant")
    peak = np.unravel_index(np.argmax(out), out.shape)
    target = warp_points(qi.astype(float), p, (h, w))[0]
    assert out.max() > 0 and np.abs(np.array(peak) - target).max() <= 1.0, (peak, target)


def test_warp_points_inverts_the_sampling_map():
    p = make_affine_params((50, 70), rng=np.random.default_rng(9))
    m = pixel_matrix(p, (50, 70))
    pts = np.array([[0.0, 0.0], [10.0, 20.0], [49.0, 69.0], [-5.0, 80.0]])
    moved = warp_points(pts, p, (50, 70))
    back = m @ np.stack([moved[:, 1], moved[:, 0], np.ones(4)])  # (x, y) = (col, row)
    assert np.allclose(back[::-1].T, pts)


# ---- parameters --------------------------------------------------------------------------------


def test_noise_statistics():
    rng = np.random.default_rng(0)
    for sigma in (0.1, 0.03):
        t = np.array([make_affine_params((4, 4), rng=rng, sigma=sigma).theta for _ in range(3000)])
        noise = t - np.array(IDENTITY)
        assert np.all(np.abs(noise.mean(0)) < 4 * sigma / np.sqrt(3000))
        assert np.all(np.abs(noise.std(0) / sigma - 1) < 0.06)
        assert abs(np.corrcoef(noise.T)[0, 1]) < 0.1  # entries drawn independently
    t = np.array([make_affine_params((4, 4), rng=rng, one_sided=True).theta for _ in range(3000)])
    noise = t - np.array(IDENTITY)
    assert noise.min() >= 0.0 and noise.max() < 0.1
    assert np.all(np.abs(noise.mean(0) - 0.05) < 0.003)


@settings(max_examples=30)
@given(params=affine_params())
def test_params_json_round_trip(params):
    d = json.loads(json.dumps(params.to_json()))
    assert AffineParams.from_json(d) == params
    assert d == {"theta": list(params.theta)}


def test_deterministic_per_rng():
    a = make_affine_params((5, 5), rng=np.random.default_rng(42))
    b = make_affine_params((5, 5), rng=np.random.default_rng(42))
    assert a == b and a != make_affine_params((5, 5), rng=np.random.default_rng(43))


def test_inputs_are_not_mutated():
    img = draw_smooth_image(20, 30, seed=4)
    lab = np.arange(600, dtype=np.int32).reshape(20, 30)
    img0, lab0 = img.copy(), lab.copy()
    p = make_affine_params(img.shape, rng=np.random.default_rng(1))
    warp_image(img, p)
    warp_labels(lab, p)
    assert np.array_equal(img, img0) and np.array_equal(lab, lab0)


# ---- bad input ---------------------------------------------------------------------------------


def test_bad_input_names_the_argument():
    img = np.zeros((8, 8, 3), np.uint8)
    p = AffineParams()
    cases = [
        (lambda: warp_image(img.astype(np.int16), p), TypeError, "image"),
        (lambda: warp_image(img.tolist(), p), TypeError, "image"),
        (lambda: warp_image(np.zeros((8, 8, 5), np.uint8), p), ValueError, "image"),
        (lambda: warp_image(img, p.theta), TypeError, "params"),
        (lambda: warp_image(img, p, border="wrap"), ValueError, "border"),
        (lambda: warp_labels(np.zeros((8, 8), np.int64), p), TypeError, "labels"),
        (lambda: warp_labels(np.zeros((8, 8, 1), np.int32), p), ValueError, "labels"),
        (lambda: warp_points(np.zeros((3, 3)), p, (8, 8)), ValueError, "points"),
        (lambda: warp_points(np.zeros((3, 2)), "x", (8, 8)), TypeError, "params"),
        (
            lambda: warp_points(np.zeros((3, 2)), AffineParams((1.0, 2.0, 0.0, 0.5, 1.0, 0.0)), (8, 8)),
            ValueError,
            "params",
        ),
        (lambda: make_affine_params((0, 8), rng=np.random.default_rng()), ValueError, "shape"),
        (lambda: make_affine_params(8, rng=np.random.default_rng()), TypeError, "shape"),
        (lambda: make_affine_params((8, 8), rng=np.random.RandomState(0)), TypeError, "rng"),
        (lambda: make_affine_params((8, 8), rng=np.random.default_rng(), sigma=-0.1), ValueError, "sigma"),
        (lambda: make_affine_params((8, 8), rng=np.random.default_rng(), sigma=float("nan")), ValueError, "sigma"),
        (lambda: AffineParams(theta=(1.0, 0.0)), ValueError, "theta"),
        (lambda: AffineParams(theta=(1.0, 0.0, float("inf"), 0.0, 1.0, 0.0)), ValueError, "theta"),
        (lambda: warp_batch_torch(np.zeros((1, 3, 8, 8), np.float32), np.zeros((1, 2, 3))), TypeError, "images"),
        (
            lambda: warp_batch_torch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), np.zeros((1, 2, 3))),
            TypeError,
            "images",
        ),
        (lambda: warp_batch_torch(torch.zeros(2, 3, 8, 8), np.zeros((1, 2, 3))), ValueError, "thetas"),
        (
            lambda: warp_batch_torch(torch.zeros(1, 3, 8, 8), np.zeros((1, 2, 3)), padding_mode="reflect"),
            ValueError,
            "padding_mode",
        ),
    ]
    for fn, exc, name in cases:
        with pytest.raises(exc, match=name):
            fn()


def test_kernel_modules_do_not_import_torch():
    code = (
        "import sys, s2pdata.stages.warp, s2pdata.stages.spray, s2pdata.stages.drafts, s2pdata.demo; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
