"""A folder of awkward inputs (helper for tests, not a test module).

``write_bad_folder(root)`` writes corrupt, truncated, empty, mislabelled, tiny and huge-header
files next to good images in every mode the decode stage normalises (16-bit, palette with
transparency, CMYK, gray, RGBA, animated, EXIF-rotated), some in nested folders, and returns
``{relative posix path: expected DecodeError.reason, or None if it must decode}``.
Every file has a distinct stem. Bytes are deterministic.
"""

from __future__ import annotations

import io
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, features


def picture(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A small (h, w, 3) uint8 RGB picture of flat shapes with dark outlines."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(150, 256, 3)
    for _ in range(4):
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))  # (x, y) for cv2
        radius = int(rng.integers(4, max(5, min(h, w) // 2)))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(img, center, radius, color, -1)
        cv2.circle(img, center, radius, (20, 20, 30), 2, cv2.LINE_AA)
    return img


def png_header_only(width: int, height: int) -> bytes:
    """PNG signature + IHDR (8-bit RGB) + IEND: claims a size but holds no pixels."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _pil_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _corrupt_jpeg(rgb: np.ndarray) -> bytes:
    """Valid JPEG headers up to the scan, then garbage with a stray SOF marker, then EOI."""
    good = _pil_bytes(Image.fromarray(rgb), "JPEG", quality=90)
    sos = good.index(b"\xff\xda")
    scan_start = sos + 2 + int.from_bytes(good[sos + 2 : sos + 4], "big")
    garbage = bytes(np.random.default_rng(7).integers(0, 255, 300, dtype=np.uint8))
    # libjpeg silently decodes plain garbage as noise; a marker inside the scan is a hard error
    return good[:scan_start] + garbage + b"\xff\xc0\x00\x02" + garbage + b"\xff\xd9"


def _truncated_png(rgb: np.ndarray) -> bytes:
    noisy = np.random.default_rng(3).integers(0, 256, rgb.shape, dtype=np.uint8)  # big IDAT
    good = _pil_bytes(Image.fromarray(noisy), "PNG")
    return good[: len(good) // 2]


def _exif_rotated_jpeg(rgb: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    return _pil_bytes(Image.fromarray(rgb), "JPEG", quality=90, exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.fromarray(picture(40, 40, seed=s)).convert("P") for s in (20, 21, 22)]
    return _pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)


def _palette_with_transparency(rgb: np.ndarray) -> bytes:
    im = Image.fromarray(rgb).quantize(colors=16)
    pal = np.asarray(im).copy()
    pal[:8, :8] = 15  # a corner in the transparent index
    im2 = Image.fromarray(pal, mode="P")
    im2.putpalette(im.getpalette())
    return _pil_bytes(im2, "PNG", transparency=15)


def write_bad_folder(root: Path) -> dict[str, str | None]:
    """Write the awkward-input folder under ``root``; return {relative path: expected reason}.

    ``None`` means ``decode_image`` must succeed (with default ``min_side=32``).
    """
    root = Path(root)
    rgb = picture(48, 64, seed=1)
    gray16 = cv2.cvtColor(picture(40, 50, seed=2), cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    rgb16 = picture(36, 44, seed=4).astype(np.uint16) * 257
    rgba = np.dstack([picture(40, 40, seed=5), np.full((40, 40), 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    files: dict[str, tuple[bytes, str | None]] = {
        "corrupt-body.jpg": (_corrupt_jpeg(rgb), "corrupt"),
        "cut-short.png": (_truncated_png(rgb), "truncated"),
        "zero-bytes.jpg": (b"", "empty-file"),
        "readme-text.jpg": (b"This is a text file, not a JPEG.\n" * 4, "not-an-image"),
        "one-pixel.png": (_pil_bytes(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"), "too-small"),
        "huge-header.png": (png_header_only(30000, 30000), "too-many-pixels"),
        "gray-sixteen.png": (cv2.imencode(".png", gray16)[1].tobytes(), None),
        # cv2 writes BGR: reverse the channel axis on the line that calls it
        "rgb-sixteen.png": (cv2.imencode(".png", rgb16[..., ::-1])[1].tobytes(), None),
        "palette-alpha.png": (_palette_with_transparency(rgb), None),
        "ink-cmyk.jpg": (_pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=92), None),
        "gray-plain.jpg": (_pil_bytes(Image.fromarray(rgb).convert("L"), "JPEG", quality=92), None),
        "with-alpha.png": (_pil_bytes(Image.fromarray(rgba, mode="RGBA"), "PNG"), None),
        "sideways.jpg": (_exif_rotated_jpeg(rgb), None),
        "moving.gif": (_animated_gif(), None),
        "good-one.jpg": (_pil_bytes(Image.fromarray(rgb), "JPEG", quality=95), None),
        "good-two.png": (_pil_bytes(Image.fromarray(picture(50, 40, seed=6)), "PNG"), None),
        "nested/good-three.webp": (_pil_bytes(Image.fromarray(picture(64, 64, seed=8)), "WEBP", quality=90), None),
        "nested/deeper/good-four.jpg": (_pil_bytes(Image.fromarray(picture(33, 90, seed=9)), "JPEG", quality=90), None),
        "nested/deeper/good-five.png": (_pil_bytes(Image.fromarray(picture(70, 45, seed=10)), "PNG"), None),
    }
    out: dict[str, str | None] = {}
    for rel, (data, reason) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out[rel] = reason
    return out


# ---------------------------------------------------------------------------------------------
# hostile files of issue 21 (each one made a build fail, allocate gigabytes or return wrong pixels)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_of(chunks) -> bytes:
    """The PNG signature followed by ``chunks`` = [(kind, body), ...], CRCs made correct."""
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(k, b) for k, b in chunks)


def ihdr(width: int, height: int, depth: int = 8, ctype: int = 0, interlace: int = 0) -> bytes:
    """An IHDR body (compression and filter method 0)."""
    return struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, interlace)


def late_ihdr_png(first: tuple[int, int, int], second: tuple[int, int, int], level: int = 9) -> bytes:
    """A PNG whose first IHDR says ``first`` = (width, height, colour type) and whose image data is
    sized for ``second``, which a second IHDR after the IDAT declares (8-bit, rows of zeros)."""
    w, h, ctype = second
    bpp = {0: 1, 2: 3, 6: 4}[ctype]
    rows = bytes(h * (1 + w * bpp))
    return png_of(
        [
            (b"IHDR", ihdr(first[0], first[1], 8, first[2])),
            (b"IDAT", zlib.compress(rows, level)),
            (b"IHDR", ihdr(w, h, 8, ctype)),
            (b"IEND", b""),
        ]
    )


def rgb_as_gray_png() -> bytes:
    """64x64 RGB for Pillow (the first IHDR); its image data read under a second IHDR is 192x64 gray."""
    rgb = picture(64, 64, seed=11)
    rows = b"".join(b"\x00" + rgb[r].tobytes() for r in range(64))
    return png_of(
        [
            (b"IHDR", ihdr(64, 64, 8, 2)),
            (b"IDAT", zlib.compress(rows)),
            (b"IHDR", ihdr(192, 64, 8, 0)),
            (b"IEND", b""),
        ]
    )


def palette_png_with_late_iccp() -> bytes:
    """A palette PNG with an ``iCCP`` chunk reading ``icc\\0`` (no compression byte) after its IDAT:
    Pillow raises IndexError while reading the chunks after the image data."""
    good = _pil_bytes(Image.fromarray(picture(40, 40, seed=12)).quantize(colors=8), "PNG")
    iend = good.rindex(b"IEND") - 4
    return good[:iend] + png_chunk(b"iCCP", b"icc\x00") + good[iend:]


def strip_png(width: int, height: int) -> bytes:
    """An 8-bit gray PNG of zeros, ``width`` x ``height``: a strip of few pixels that fitting to a short side
    of 512 would make enormous (1,000,000 x 32 -> 16,000,000 x 512)."""
    rows = zlib.compressobj(9)
    body = b"".join(rows.compress(bytes(1 + width)) for _ in range(height)) + rows.flush()
    return png_of([(b"IHDR", ihdr(width, height)), (b"IDAT", body), (b"IEND", b"")])


def damaged_avif() -> bytes:
    """An AVIF with byte 81 set to 0 (the issue saved it as ``photo.jpg``): Pillow raises RuntimeError."""
    data = bytearray(_pil_bytes(Image.fromarray(picture(48, 64, seed=13)), "AVIF", quality=80))
    data[81] = 0
    return bytes(data)


AS_LIMIT = 8 << 30  # a capped child's address space: Numba and OpenCV reserve far more than they touch


def run_capped(code: str, *, limit: int = AS_LIMIT, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run Python ``code`` in a child whose address space is capped at ``limit`` bytes, with a timeout,
    so a regression that allocates gigabytes fails its test instead of taking the machine down."""

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, preexec_fn=cap)


def hostile_files() -> dict[str, tuple[bytes, str | None]]:
    """Issue 21's files that stopped a build, allocated gigabytes or came out wrong:
    ``{name: (bytes, expected reject reason, or None where it must decode at its first header's size)}``."""
    files = {
        "late-ihdr.png": (late_ihdr_png((64, 64, 0), (1, 60000, 0)), None),  # 222 bytes: 47 GB once fitted
        "late-ihdr-64mp.png": (late_ihdr_png((64, 64, 0), (8000, 8000, 0)), None),  # 62 KB: 64 MP decoded
        "rgb-as-gray.png": (rgb_as_gray_png(), None),  # 64x64 RGB came out 64x192 gray
        "late-iccp.png": (palette_png_with_late_iccp(), "corrupt"),  # IndexError
        "strip.png": (strip_png(1_000_000, 32), "too-many-pixels"),  # 32 MP, 16,000,000 x 512 once fitted
    }
    if features.check("avif"):
        files["photo.jpg"] = (damaged_avif(), "corrupt")  # RuntimeError
    return files
