"""s2pdata.demo: deterministic, decodable, varied procedural pictures with dark outlines."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2pdata.decode import decode_image
from s2pdata.demo import demo_bytes, demo_key, draw_demo

N = 24


@pytest.fixture(scope="module")
def decoded():
    """[(index, fmt, raw drawing, decoded RGB)] for the first N pictures of seed 0."""
    out = []
    for i in range(N):
        data, fmt = demo_bytes(i, seed=0)
        out.append((i, fmt, data, draw_demo(i, seed=0), decode_image(data)))
    return out


def test_deterministic_per_index_and_seed(decoded):
    for i, _, data, raw, _ in decoded[:4]:
        again, _ = demo_bytes(i, seed=0)
        assert again == data
        assert np.array_equal(draw_demo(i, seed=0), raw)
        assert demo_bytes(i, seed=1)[0] != data
    digests = {hashlib.sha256(d).hexdigest() for _, _, d, _, _ in decoded}
    assert len(digests) == N  # every index a different picture


def test_keys_have_no_dots_and_sort_by_index():
    keys = [demo_key(i) for i in (0, 1, 9, 10, 999, 123456)]
    assert all("." not in k and "/" not in k for k in keys)
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="index"):
            demo_key(bad)


def test_every_picture_decodes_with_its_format(decoded):
    fmts = set()
    for _, fmt, data, raw, rgb in decoded:
        fmts.add(fmt)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert rgb.shape[:2] == raw.shape[:2]
        assert data.startswith(b"\x89PNG\r\n\x1a\n" if fmt == "png" else b"\xff\xd8\xff")
        if raw.shape[2] == 3:
            diff = np.abs(rgb.astype(np.int16) - raw).mean()
            assert diff == 0 if fmt == "png" else diff < 3  # PNG lossless, JPEG q90-95 close
    assert fmts == {"png", "jpg"}


def test_sizes_and_aspects_vary_within_the_documented_ranges(decoded):
    shorts, aspects = [], []
    for *_, rgb in decoded:
        h, w = rgb.shape[:2]
        shorts.append(min(h, w))
        aspects.append(w / h)
        assert 256 <= min(h, w) <= 768
        assert 0.6 - 0.01 <= w / h <= 1.8 + 0.01
    assert max(shorts) - min(shorts) > 200 and len(set(shorts)) > N // 2
    assert min(aspects) < 0.9 and max(aspects) > 1.3  # portrait and landscape both occur


def test_some_are_rgba_with_transparent_pixels(decoded):
    rgba = [(fmt, raw, data, rgb) for _, fmt, data, raw, rgb in decoded if raw.shape[2] == 4]
    assert 2 <= len(rgba) <= N // 2  # "about one in four"
    for fmt, raw, data, rgb in rgba:
        assert fmt == "png"
        alpha = raw[..., 3]
        assert (alpha == 0).mean() > 0.05 and (alpha == 255).mean() > 0.05
        file_alpha = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., 3]
        assert np.array_equal(file_alpha, alpha)  # the file keeps its alpha channel
        a = alpha[..., None] / 255.0
        over_white = raw[..., :3] * a + 255.0 * (1 - a)
        assert np.abs(rgb - over_white).max() <= 1.0  # decode composites onto white
        assert np.all(rgb[alpha == 0] == 255)


def test_outlines_exist(decoded):
    """The darkest pixels are near-black outline ink, in every picture.

    Outlines are 1-4 px wide, so on the larger pictures they cover less than a tenth of the
    pixels; the check looks at the darkest 1% (decoded, so JPEG ringing included).
    """
    for *_, rgb in decoded:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # RGB order, the project's convention
        assert np.percentile(gray, 1) < 80
        assert np.percentile(gray, 50) > np.percentile(gray, 1) + 60  # ink is darker than the fills


def test_flat_fills_not_noise(decoded):
    """Cel art: almost every pair of horizontal neighbours is equal or nearly so (flat fills,
    smooth gradients), and the picture is not one flat colour."""
    for *_, raw, _rgb in decoded:
        gray = cv2.cvtColor(np.ascontiguousarray(raw[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.int16)
        step = np.abs(np.diff(gray, axis=1))
        assert (step <= 2).mean() > 0.85
        assert (step > 30).mean() > 0.002  # outlines and fill boundaries exist


def test_palettes_differ_between_pictures(decoded):
    means = np.array([rgb.reshape(-1, 3).mean(0) for *_, rgb in decoded])
    assert np.ptp(means, axis=0).min() > 40  # every channel's mean spans a wide range


@settings(max_examples=8)
@given(index=st.integers(0, 10**6), seed=st.integers(0, 2**31))
def test_any_index_and_seed_draws_a_valid_picture(index, seed):
    im = draw_demo(index, seed=seed)
    assert im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] in (3, 4)
    assert im.flags.c_contiguous
    h, w = im.shape[:2]
    assert 256 <= min(h, w) <= 768 and 0.59 <= w / h <= 1.81
    if im.shape[2] == 4:
        assert (im[..., 3] == 0).any() and (im[..., 3] == 255).any()
