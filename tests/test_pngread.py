"""s2pdata.pngread: the PNG maps read whole or by window equal OpenCV's decode; damage raises."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from s2pdata.pngread import _chunks, _unfilter, png_size, read_png
from s2pdata.shards import Schema, decode_field, decode_image_field, decode_sample, encode_image
from tests.badfiles import ihdr, late_ihdr_png, png_of, rgb_as_gray_png
from tests.reference import ref_png_unfilter

CV2_FILTERS = {
    "none": cv2.IMWRITE_PNG_FILTER_NONE,
    "sub": cv2.IMWRITE_PNG_FILTER_SUB,
    "up": cv2.IMWRITE_PNG_FILTER_UP,
    "avg": cv2.IMWRITE_PNG_FILTER_AVG,
    "paeth": cv2.IMWRITE_PNG_FILTER_PAETH,
    "adaptive": cv2.IMWRITE_PNG_ALL_FILTERS,
}


def _picture(rng, h: int, w: int, kind: str) -> np.ndarray:
    """Sparse-ish random content (runs and edges, like the maps): gray, BGR, BGRA or 16-bit labels."""
    if kind == "labels":
        return rng.integers(0, rng.choice([3, 70_000]), (h, w)).astype(np.uint16)
    shape = {"gray": (h, w), "bgr": (h, w, 3), "bgra": (h, w, 4)}[kind]
    return (rng.integers(0, 256, shape) * (rng.random(shape) < 0.4)).astype(np.uint8)


def _cv2_rgb(data: bytes) -> np.ndarray:
    """OpenCV's decode in the file's channel order (the reference)."""
    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(a, cv2.COLOR_BGR2RGB if a.shape[2] == 3 else cv2.COLOR_BGRA2RGBA) if a.ndim == 3 else a


@given(
    h=st.integers(1, 30),
    stride=st.integers(1, 40),
    bpp=st.sampled_from([1, 2, 3, 4]),
    seed=st.integers(0, 2**31),
    window=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
)
def test_unfilter_kernel_equals_the_specification(h, stride, bpp, seed, window):
    """Every filter type in any row order, whole or for a window of rows and byte columns."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 256, (h, 1 + stride), dtype=np.uint8)
    rows[:, 0] = rng.choice([0, 1, 2, 3, 4, 2, 2], h) if rng.random() < 0.5 else rng.choice([0, 2], h)
    ref = ref_png_unfilter(rows, bpp)
    nrows = 1 + int(window[0] * (h - 1))
    c0 = int(window[1] * (stride - 1))
    ncols = 1 + int(window[2] * (stride - c0 - 1))
    out = np.empty((nrows, ncols), np.uint8)
    assert _unfilter(rows, bpp, nrows, c0, out)
    np.testing.assert_array_equal(out, ref[:nrows, c0 : c0 + ncols])


@pytest.mark.parametrize("kind", ["gray", "bgr", "bgra", "labels"])
@pytest.mark.parametrize("filt", sorted(CV2_FILTERS))
def test_read_png_equals_opencv_whole_and_by_window(kind, filt):
    rng = np.random.default_rng(zlib.crc32(f"{kind}/{filt}".encode()))  # hash() is salted per process
    for _ in range(6):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        level = int(rng.integers(0, 10))
        opts = [cv2.IMWRITE_PNG_FILTER, CV2_FILTERS[filt], cv2.IMWRITE_PNG_COMPRESSION, level]
        ok, buf = cv2.imencode(".png", _picture(rng, h, w, kind), opts)
        data = buf.tobytes()
        ref = _cv2_rgb(data)
        got = read_png(data)
        assert got is not None and got.dtype == ref.dtype
        np.testing.assert_array_equal(got, ref)
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        win = (y, x, int(rng.integers(1, h - y + 1)), int(rng.integers(1, w - x + 1)))
        np.testing.assert_array_equal(read_png(data, win), ref[y : y + win[2], x : x + win[3]])
        assert png_size(data) == (h, w)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_read_png_takes_pillow_files_with_many_idat_chunks(mode):
    """Another writer (Pillow: adaptive filters, 64 KB IDAT chunks) reads the same as OpenCV."""
    rng = np.random.default_rng(1)
    a = _picture(rng, 260, 300, {"L": "gray", "RGB": "bgr", "RGBA": "bgra", "I;16": "labels"}[mode])
    f = io.BytesIO()
    Image.fromarray(a).save(f, "PNG", compress_level=0)  # stored blocks: several IDATs
    data = f.getvalue()
    assert data.count(b"IDAT") > 1
    got = read_png(data)
    assert got is not None
    np.testing.assert_array_equal(got, _cv2_rgb(data))


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return out


def _gray_png(h: int, w: int, rows: bytes | None = None, extra=()) -> bytes:
    rows = rows if rows is not None else bytes(h * (1 + w))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return _png([(b"IHDR", ihdr), *extra, (b"IDAT", zlib.compress(rows)), (b"IEND", b"")])


def test_layouts_it_does_not_take_go_to_opencv():
    rng = np.random.default_rng(2)
    palette = Image.fromarray(rng.integers(0, 4, (8, 9), dtype=np.uint8), "P")
    gray_alpha = Image.fromarray(rng.integers(0, 256, (8, 9, 2), dtype=np.uint8), "LA")
    for img in (palette, gray_alpha):
        f = io.BytesIO()
        img.save(f, "PNG")
        assert read_png(f.getvalue()) is None
    interlaced = struct.pack(">IIBBBBB", 9, 8, 8, 0, 0, 0, 1)
    assert read_png(_png([(b"IHDR", interlaced), (b"IDAT", zlib.compress(b"")), (b"IEND", b"")])) is None
    assert read_png(_gray_png(3, 4, extra=[(b"tRNS", b"\x00\x07")])) is None  # transparency: OpenCV's call
    assert read_png(b"\xff\xd8\xff not a png") is None and png_size(b"GIF89a") is None
    # and the field decoder still reads them, through OpenCV
    f = io.BytesIO()
    palette.save(f, "PNG")
    np.testing.assert_array_equal(decode_image_field("sketch.png", f.getvalue()), _cv2_rgb(f.getvalue()))


def test_damaged_pngs_raise_value_errors():
    good = _gray_png(4, 5)
    assert read_png(good).shape == (4, 5)
    at = good.index(b"IDAT") + 4
    with pytest.raises(ValueError, match="fails its CRC"):
        read_png(good[:at] + bytes([good[at] ^ 1]) + good[at + 1 :])
    with pytest.raises(ValueError, match="truncated"):
        read_png(good[:-12])
    with pytest.raises(ValueError, match="inflates to"):
        read_png(_gray_png(4, 5, rows=bytes(4 * 6 - 1)))
    with pytest.raises(ValueError, match="unknown filter"):
        read_png(_gray_png(2, 5, rows=bytes([0, 1, 2, 3, 4, 5, 7, 0, 0, 0, 0, 0])))
    body = zlib.compress(bytes(4 * 6))
    ihdr = struct.pack(">IIBBBBB", 5, 4, 8, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="does not inflate"):
        read_png(_png([(b"IHDR", ihdr), (b"IDAT", body[:-6] + b"\x00" * 6), (b"IEND", b"")]))
    with pytest.raises(ValueError, match="not inside"):
        read_png(good, (2, 0, 3, 5))
    with pytest.raises(ValueError, match="header of 12 bytes"):  # a CRC-correct but short IHDR
        read_png(_png([(b"IHDR", struct.pack(">IIBBBB", 5, 4, 8, 0, 0, 0)), *list(_chunks(good))[1:]]))
    giant = _png([(b"IHDR", struct.pack(">IIBBBBB", 2**31 - 1, 2**31 - 1, 8, 6, 0, 0, 0)), *list(_chunks(good))[1:]])
    assert read_png(giant) is None  # past OpenCV's pixel limit: its decoder refuses it
    with pytest.raises(ValueError, match="not a decodable image"):
        decode_field("hint.png", giant)


def test_decode_field_windows_and_channel_order():
    """PNG maps come back RGB(A) and cropped by the reader; a JPEG is OpenCV's BGR, cropped as a view."""
    rng = np.random.default_rng(3)
    schema = Schema()
    rgba = _picture(rng, 30, 40, "bgra")
    color = cv2.GaussianBlur(_picture(rng, 30, 40, "bgr"), (5, 5), 0)
    hint, jpg = encode_image("hint.png", rgba, schema), encode_image("color.jpg", color, schema)
    win = (3, 5, 20, 24)
    a, bgr = decode_field("hint.png", hint, window=win)
    assert not bgr
    np.testing.assert_array_equal(a, rgba[3:23, 5:29])
    whole_bgr = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    a, bgr = decode_field("color.jpg", jpg, window=win)
    assert bgr and a.base is not None
    np.testing.assert_array_equal(a, whole_bgr[3:23, 5:29])
    with pytest.raises(ValueError, match="not inside"):
        decode_field("color.jpg", jpg, window=(20, 0, 20, 5))
    sample = decode_sample({"__key__": "k", "hint.png": hint, "color.jpg": jpg}, window=win)
    assert sample["__bgr__"] == {"color"} and sample["hint"].shape == (20, 24, 4)
    labels = rng.integers(0, 70_000, (9, 7)).astype(np.uint16)
    a, bgr = decode_field("regions.png", encode_image("regions.png", labels, schema))
    assert a.dtype == np.int32 and not bgr
    np.testing.assert_array_equal(a, labels)


@pytest.mark.slow
def test_a_deflate_bomb_is_an_error_not_an_allocation(tmp_path):
    """An 8 x 8 gray PNG whose image data inflates to 2 GiB: refused, in 1.5 GiB of address space."""
    from zlib_ng import zlib_ng

    c, zeros = zlib_ng.compressobj(6), bytes(64 << 20)
    bomb = b"".join([c.compress(zeros) for _ in range(32)] + [c.flush()])
    path = tmp_path / "bomb.png"
    path.write_bytes(_png([(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)), (b"IDAT", bomb), (b"IEND", b"")]))
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({3 << 29}, {3 << 29}))
        from pathlib import Path
        from s2pdata.pngread import read_png
        try:
            read_png(Path({str(path)!r}).read_bytes())
        except ValueError as exc:
            print("ValueError:", exc)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ValueError: PNG image data inflates to more than 72 bytes" in run.stdout


def test_one_ihdr_first_and_idat_in_one_run_or_a_value_error():
    """Issue 21: read_png decoded by the last IHDR while every size check reads the first; a file that
    breaks libpng's chunk order is refused, so decode_image hands it to Pillow (which reads the first)."""
    rows = zlib.compress(bytes(4 * 6))
    hostile = {
        "IHDR after IDAT, 1x60000": late_ihdr_png((64, 64, 0), (1, 60000, 0)),
        "IHDR after IDAT, 192x64 gray for 64x64 RGB": rgb_as_gray_png(),
        "two IHDRs before IDAT": png_of(
            [(b"IHDR", ihdr(5, 4)), (b"IHDR", ihdr(5, 4)), (b"IDAT", rows), (b"IEND", b"")]
        ),
        "IHDR not first": png_of([(b"gAMA", bytes(4)), (b"IHDR", ihdr(5, 4)), (b"IDAT", rows), (b"IEND", b"")]),
    }
    for data in hostile.values():
        with pytest.raises(ValueError, match="second IHDR|not IHDR"):
            read_png(data, ignore=frozenset({b"gAMA"}))
    split = png_of(
        [(b"IHDR", ihdr(5, 4)), (b"IDAT", rows[:5]), (b"tEXt", b"a\0b"), (b"IDAT", rows[5:]), (b"IEND", b"")]
    )
    with pytest.raises(ValueError, match="not consecutive"):
        read_png(split, ignore=frozenset({b"tEXt"}))
    two_idats = png_of([(b"IHDR", ihdr(5, 4)), (b"IDAT", rows[:5]), (b"IDAT", rows[5:]), (b"IEND", b"")])
    assert read_png(two_idats).shape == (4, 5)  # one run of IDATs, split anywhere, is fine
    for body in (
        ihdr(0, 4),
        ihdr(5, 2**31),
        struct.pack(">IIBBBBB", 5, 4, 8, 0, 1, 0, 0),
        struct.pack(">IIBBBBB", 5, 4, 8, 0, 0, 1, 0),
    ):
        with pytest.raises(ValueError, match="sides must be"):
            read_png(png_of([(b"IHDR", body), (b"IDAT", rows), (b"IEND", b"")]))
