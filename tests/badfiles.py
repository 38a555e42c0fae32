"""A folder of awkward inputs (helper for tests, not a test module).

``write_bad_folder(root)`` writes corrupt, truncated, empty, mislabelled, tiny and huge-header
files next to good images in every mode the decode stage normalises (16-bit, palette with
transparency, CMYK, gray, RGBA, animated, EXIF-rotated), some in nested folders, and returns
``{relative posix path: expected DecodeError.reason, or None if it must decode}``.
Every file has a distinct stem. Bytes are deterministic.
"""

from __future__ import annotations

import functools
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


# ---------------------------------------------------------------------------------------------
# fuzzing: mutated PNG, JPEG, WebP, GIF, TIFF, BMP and AVIF files through pngread.read_png and
# decode.decode_image, checked against Pillow (tests/test_fuzz_decode.py, benchmarks/fuzz.py)

FUZZ_FORMATS = ("png", "jpeg", "webp", "gif", "tiff", "bmp", "avif")
FUZZ_MAX_PIXELS = 1 << 20  # decode_image's header limit here; read_png has only its own (2^30)
FUZZ_CASE_SECONDS = 20  # a case running longer is a hang


def _fuzz_pictures():
    rgb = picture(24, 32, seed=31)
    rgba = np.dstack([rgb, np.random.default_rng(32).integers(0, 256, (24, 32), np.uint8)])
    return rgb, rgba, Image.fromarray(rgb), Image.fromarray(rgba, mode="RGBA")


def _png_seeds() -> list[bytes]:
    """Valid PNGs of every layout and chunk kind decode_image meets: the fast path's plain layouts with
    text, resolution, gamma and ICC chunks, and Pillow's (palette, tRNS, LA, 1-bit, 16-bit, APNG, eXIf)."""
    from PIL import PngImagePlugin

    rgb, rgba, im, ima = _fuzz_pictures()
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "drawn by hand")
    info.add_text("Title", "x" * 40, zip=True)
    info.add_itxt("Author", "\u6f2b\u753b", zip=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    pal = im.quantize(colors=12)
    frames = [im, Image.fromarray(picture(24, 32, seed=33))]
    return [
        _pil_bytes(im.convert("L"), "PNG"),
        _pil_bytes(im, "PNG", pnginfo=info, dpi=(300, 300), icc_profile=b"\x00" * 64),
        _pil_bytes(ima, "PNG"),
        _pil_bytes(im, "PNG", compress_level=0),
        _pil_bytes(Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "PNG"),
        cv2.imencode(".png", rgb.astype(np.uint16)[..., ::-1] * 257)[1].tobytes(),
        _pil_bytes(pal, "PNG", transparency=3),
        _pil_bytes(pal, "PNG", bits=4),
        _pil_bytes(ima.convert("LA"), "PNG"),
        _pil_bytes(im, "PNG", transparency=tuple(int(v) for v in rgb[0, 0])),
        _pil_bytes(im.convert("1"), "PNG"),
        _pil_bytes(im, "PNG", exif=exif.tobytes()),
        _pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=50),
    ]


def _other_seeds(fmt: str) -> list[bytes]:
    """Valid files of ``fmt`` in the modes and options decode_image normalises."""
    rgb, rgba, im, ima = _fuzz_pictures()
    exif = Image.Exif()
    exif[0x0112] = 8
    frames = [im, Image.fromarray(picture(24, 32, seed=34))]
    if fmt == "jpeg":
        return [
            _pil_bytes(im, "JPEG", quality=90),
            _pil_bytes(im, "JPEG", quality=75, progressive=True),
            _pil_bytes(im.convert("L"), "JPEG", quality=90),
            _pil_bytes(im.convert("CMYK"), "JPEG", quality=90),
            _pil_bytes(im, "JPEG", quality=90, exif=exif.tobytes(), subsampling=0, icc_profile=b"\x00" * 64),
        ]
    if fmt == "webp":
        return [
            _pil_bytes(im, "WEBP", quality=80),
            _pil_bytes(im, "WEBP", lossless=True),
            _pil_bytes(ima, "WEBP", quality=80),
            _pil_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50, quality=70),
            _pil_bytes(im, "WEBP", quality=80, exif=exif.tobytes()),
        ]
    if fmt == "gif":
        pal = im.quantize(colors=16)
        return [
            _pil_bytes(pal, "GIF"),
            _pil_bytes(pal, "GIF", transparency=2),
            _pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0),
            _pil_bytes(im.convert("L"), "GIF", interlace=True),
        ]
    if fmt == "tiff":
        return [
            _pil_bytes(im, "TIFF"),
            _pil_bytes(im, "TIFF", compression="tiff_lzw"),
            _pil_bytes(ima, "TIFF", compression="tiff_adobe_deflate"),
            _pil_bytes(im.convert("L"), "TIFF", compression="packbits"),
            _pil_bytes(Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "TIFF"),
            _pil_bytes(im.convert("CMYK"), "TIFF"),
            _pil_bytes(im, "TIFF", compression="jpeg", exif=exif.tobytes()),
            _pil_bytes(Image.fromarray(rgb[..., 0].astype(np.float32) / 255), "TIFF"),
        ]
    if fmt == "bmp":
        return [
            _pil_bytes(im, "BMP"),
            _pil_bytes(im.quantize(colors=16), "BMP"),
            _pil_bytes(ima, "BMP"),
            _pil_bytes(im.convert("1"), "BMP"),
            _pil_bytes(im.convert("L"), "BMP"),
        ]
    if fmt == "avif":
        if not features.check("avif"):
            return []
        return [_pil_bytes(im, "AVIF", quality=70), _pil_bytes(ima, "AVIF", quality=70)]
    raise ValueError(f"fmt must be one of {FUZZ_FORMATS}, got {fmt!r}")


@functools.cache
def fuzz_seeds(fmt: str) -> tuple[bytes, ...]:
    """The valid files the fuzzer of ``fmt`` mutates (none for AVIF where Pillow lacks it)."""
    return tuple(_png_seeds() if fmt == "png" else _other_seeds(fmt))


def _split_chunks(data: bytes) -> list[list]:
    """``[[kind, body], ...]`` of a PNG made by a valid writer (no checks: the seeds are valid)."""
    out, at = [], 8
    while at + 12 <= len(data):
        (size,) = struct.unpack_from(">I", data, at)
        out.append([data[at + 4 : at + 8], data[at + 8 : at + 8 + size]])
        at += 12 + size
    return out


def _join_chunks(chunks, rng) -> bytes:
    """Serialise; CRCs are made correct nine times in ten (so mutations reach past the CRC check)."""
    fix = rng.random() < 0.9
    out = [b"\x89PNG\r\n\x1a\n"]
    for kind, body in chunks:
        crc = zlib.crc32(kind + body) if fix or rng.random() < 0.5 else int(rng.integers(0, 2**32))
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc))
    return b"".join(out)


_ODD_SIDES = (0, 1, 2, 3, 7, 31, 32, 33, 255, 256, 4097, 65535, 2**31 - 1, 2**31, 2**32 - 1)


def _png_chunk_body(kind: bytes, rng, ihdr_body: bytes) -> bytes:
    """A plausible, damaged or hostile body for a chunk of ``kind``."""
    junk = lambda n: rng.integers(0, 256, int(n), dtype=np.uint8).tobytes()  # noqa: E731
    pick = int(rng.integers(0, 4))
    if kind == b"IHDR":
        w, h, depth, ctype, *rest = struct.unpack(">IIBBBBB", ihdr_body)
        row = w * {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype, 1) * max(1, depth // 8)  # bytes of a row, no filter byte
        if pick == 0:  # the same image data read as another layout: (row / bpp) x h, or 1 x (all rows / 2)
            layouts = [(row // b, h, d, c) for b, d, c in ((1, 8, 0), (3, 8, 2), (4, 8, 6), (2, 16, 0)) if row % b == 0]
            if (h * (1 + row)) % 2 == 0:
                layouts.append((1, h * (1 + row) // 2, 8, 0))
            nw, nh, nd, nc = layouts[int(rng.integers(0, len(layouts)))]
            return struct.pack(">IIBBBBB", nw, nh, nd, nc, *rest)
        sides = [int(rng.choice(_ODD_SIDES)), int(rng.integers(1, 70_000)), w, h, w * 3, h * 3]
        return struct.pack(
            ">IIBBBBB", sides[int(rng.integers(0, 6))], sides[int(rng.integers(0, 6))], depth, ctype, *rest
        )
    if kind == b"PLTE":
        return junk(3 * int(rng.integers(0, 300)) if pick else rng.integers(0, 800))
    if kind == b"tRNS":
        return junk((2, 6, rng.integers(0, 300), 0)[pick])
    if kind in (b"iCCP", b"zTXt"):
        name = (b"icc", b"Comment", b"", b"x" * 90)[pick]
        tail = (b"", b"\x00", b"\x00" + zlib.compress(junk(rng.integers(0, 200))), b"\x01" + junk(8))
        return name + (b"\x00" if rng.random() < 0.8 else b"") + tail[int(rng.integers(0, 4))]
    if kind == b"iTXt":
        return b"Author\x00" + bytes([int(rng.integers(0, 2)), 0]) + b"en\x00\x00" + junk(rng.integers(0, 40))
    if kind == b"eXIf":
        good = Image.Exif()
        good[0x0112] = int(rng.integers(0, 10))
        body = good.tobytes()[6:] if pick else junk(rng.integers(0, 64))
        return body[: int(rng.integers(0, len(body) + 1))] if pick == 1 else body
    if kind == b"acTL":
        return struct.pack(">II", int(rng.integers(0, 5)), int(rng.integers(0, 3)))
    if kind == b"fcTL":
        return struct.pack(">IIIIIHHBB", 0, *(int(v) for v in rng.integers(0, 70, 4)), 1, 10, 0, 0)
    sizes = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"sBIT": 3, b"bKGD": 6, b"pHYs": 9, b"tIME": 7, b"hIST": 24}
    return junk(sizes.get(kind, 16) if pick else rng.integers(0, 40))


_PNG_KINDS = (
    b"IHDR", b"PLTE", b"tRNS", b"iCCP", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD", b"hIST", b"pHYs",
    b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf", b"acTL", b"fcTL", b"IDAT", b"IEND", b"abCD",
)  # fmt: skip


def _mutate_png_raw(chunks, rng) -> None:
    """Inflate the image data, damage the rows (filter types, bytes, length) and deflate it again."""
    at = [i for i, (k, _) in enumerate(chunks) if k == b"IDAT"]
    if not at:
        return
    try:
        raw = bytearray(zlib.decompress(b"".join(chunks[i][1] for i in at)))
    except zlib.error:
        return
    head = chunks[0][1] if chunks[0][0] == b"IHDR" and len(chunks[0][1]) >= 8 else ihdr(1, 1)
    h = struct.unpack(">I", head[4:8])[0]
    stride = max(1, len(raw) // max(1, h))
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(0, 4))
        if op == 0 and raw:  # a row's filter type, mostly valid ones
            raw[int(rng.integers(0, max(1, h))) * stride % len(raw)] = int(rng.choice([0, 1, 2, 3, 4, 5, 255]))
        elif op == 1 and raw:
            raw[int(rng.integers(0, len(raw)))] = int(rng.integers(0, 256))
        elif op == 2:
            del raw[len(raw) - int(rng.integers(0, 8)) :]
        else:
            raw += bytes(int(rng.integers(1, 8)))
    body = zlib.compress(bytes(raw), int(rng.integers(0, 10)))
    chunks[at[0] : at[-1] + 1] = [[b"IDAT", body]]


def mutate_png(data: bytes, rng: np.random.Generator) -> bytes:
    """One to three structure-aware mutations of a PNG: header fields, inserted / deleted / duplicated /
    swapped chunks of every kind, IDAT splits, damaged image rows, chunk bodies, lengths, truncation."""
    chunks = _split_chunks(data)
    head = chunks[0][1] if chunks and chunks[0][0] == b"IHDR" else ihdr(1, 1)
    for _ in range(int(rng.choice([1, 1, 1, 2, 2, 3]))):  # mostly one: a file near valid goes deepest
        op = int(rng.integers(0, 11))
        i = int(rng.integers(0, len(chunks))) if chunks else 0
        if i == 0 and len(chunks) > 1 and rng.random() < 0.8:
            i = int(rng.integers(1, len(chunks)))  # the header has its own mutation (op 0)
        if op == 0 and chunks and chunks[0][0] == b"IHDR":  # one IHDR field
            body = bytearray(chunks[0][1])
            field = int(rng.integers(0, 7))
            if field < 2:
                body[4 * field : 4 * field + 4] = struct.pack(">I", int(rng.choice(_ODD_SIDES)))
            elif len(body) > 6 + field:  # an earlier mutation may have cut the header
                choices = ([1, 2, 4, 8, 16, 0, 3, 255], [0, 2, 3, 4, 6, 1, 7], [0, 1], [0, 1], [0, 1, 2])[field - 2]
                body[6 + field] = int(rng.choice(choices))
            chunks[0][1] = bytes(body)
        elif op in (1, 2):  # insert a chunk of any kind anywhere (after IDAT too, before IHDR too)
            kind = _PNG_KINDS[int(rng.integers(0, len(_PNG_KINDS)))]
            chunks.insert(int(rng.integers(0, len(chunks) + 1)), [kind, _png_chunk_body(kind, rng, head)])
        elif op == 3 and chunks:
            del chunks[i]
        elif op == 4 and chunks:
            chunks.insert(int(rng.integers(0, len(chunks) + 1)), list(chunks[i]))
        elif op == 5 and len(chunks) > 1:
            j = int(rng.integers(0, len(chunks)))
            chunks[i], chunks[j] = chunks[j], chunks[i]
        elif op == 6:  # the image data split anywhere, sometimes with a chunk between the pieces
            at = [k for k, (kind, _) in enumerate(chunks) if kind == b"IDAT"]
            if at:
                body = b"".join(chunks[k][1] for k in at)
                cuts = sorted(int(c) for c in rng.integers(0, len(body) + 1, int(rng.integers(1, 5))))
                pieces = [[b"IDAT", body[a:b]] for a, b in zip([0, *cuts], [*cuts, len(body)])]
                if rng.random() < 0.3:
                    pieces.insert(int(rng.integers(1, len(pieces) + 1)), [b"tEXt", b"a\x00b"])
                chunks[at[0] : at[-1] + 1] = pieces
        elif op == 7:
            _mutate_png_raw(chunks, rng)
        elif op == 8 and chunks:  # bytes of one chunk's body
            body = bytearray(chunks[i][1])
            for _ in range(int(rng.integers(1, 4))):
                if body:
                    body[int(rng.integers(0, len(body)))] = int(rng.integers(0, 256))
            chunks[i][1] = bytes(body)
        elif op == 9 and chunks:  # a body cut or grown
            body = chunks[i][1]
            cut = int(rng.integers(0, len(body) + 1))
            chunks[i][1] = body[:cut] if rng.random() < 0.5 else body + bytes(int(rng.integers(1, 9)))
        elif op == 10 and chunks:  # replace a chunk by a fresh body of its kind
            chunks[i][1] = _png_chunk_body(chunks[i][0], rng, head)
    out = _join_chunks(chunks, rng)
    if rng.random() < 0.1:
        out = mutate_bytes(out, rng)  # lengths, signature, anything
    return out


def mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """One to four byte-level mutations, half of them in the first 512 bytes (the headers): bits flipped,
    bytes set to boundary values, 16/32-bit fields set to extremes, ranges inserted, deleted, duplicated
    or overwritten, the end cut off."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        if not out:
            out = bytearray(rng.integers(0, 256, 16, dtype=np.uint8).tobytes())
        span = min(len(out), 512) if rng.random() < 0.5 else len(out)
        at = int(rng.integers(0, span))
        op = int(rng.integers(0, 8))
        if op == 0:
            out[at] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:
            out[at] = int(rng.choice([0, 1, 0x7F, 0x80, 0xFE, 0xFF]))
        elif op == 2:
            value = int(rng.choice([0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000]))
            fmt = str(rng.choice([">H", "<H", ">I", "<I"]))
            field = struct.pack(fmt, value & (0xFFFF if "H" in fmt else 0xFFFFFFFF))
            out[at : at + len(field)] = field
        elif op == 3:
            out[at:at] = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
        elif op == 4:
            del out[at : at + int(rng.integers(1, 64))]
        elif op == 5:
            n = int(rng.integers(1, 64))
            out[at:at] = out[at : at + n]
        elif op == 6:
            n = int(rng.integers(1, 32))
            out[at : at + n] = rng.integers(0, 256, min(n, len(out) - at), dtype=np.uint8).tobytes()
        else:
            del out[int(rng.integers(len(out) // 2, len(out) + 1)) :]
    return bytes(out)


def fuzz_case(fmt: str, seed: int, index: int) -> bytes:
    """Case ``index`` of the fuzzer of ``fmt`` under ``seed``: the same bytes on every machine and run."""
    rng = np.random.default_rng([FUZZ_FORMATS.index(fmt), seed, index])
    seeds = fuzz_seeds(fmt)
    base = seeds[int(rng.integers(0, len(seeds)))]
    return mutate_png(base, rng) if fmt == "png" else mutate_bytes(base, rng)


class FuzzHang(BaseException):
    """A fuzz case ran past ``FUZZ_CASE_SECONDS`` (a BaseException, so no firewall turns it into a reject)."""


def _pillow_png(data: bytes):
    """Pillow's decode of a PNG in its own mode, or None where Pillow refuses it (or it is too large to check)."""
    try:
        im = Image.open(io.BytesIO(data), formats=["PNG"])
        if im.width * im.height > 4 * FUZZ_MAX_PIXELS:
            return None
        im.load()
        return im
    except Exception:  # noqa: BLE001 - any refusal of Pillow's is "Pillow does not accept it"
        return None


def _same_as_pillow(px: np.ndarray, im) -> str | None:
    """None where read_png's ``px`` are Pillow's pixels of ``im``; else what differs."""
    want = {(2, "u1"): ("L",), (3, "u1"): ("RGB",), (2, "u2"): ("I;16", "I;16B", "I")}.get((px.ndim, px.dtype.str[1:]))
    if px.ndim == 3 and px.shape[2] == 4:
        want = ("RGBA",)
    if want is None or im.mode not in want:
        return f"read_png gives {px.dtype} {px.shape}, Pillow mode {im.mode} {im.size}"
    ref = np.asarray(im)
    if ref.shape != px.shape:
        return f"read_png gives {px.shape}, Pillow {ref.shape}"
    if not np.array_equal(ref.astype(np.int64), px.astype(np.int64)):
        return f"read_png's pixels differ from Pillow's at {int((ref != px).sum())} places"
    return None


def check_case(data: bytes) -> dict:
    """Feed one file to ``pngread.read_png`` and ``decode.decode_image`` and check what comes out.

    Returns ``{"decode": "accepted" or the DecodeError reason, "pngread": "pixels" / "declined" / "refused",
    "escapes": [...], "mismatches": [...], "lenient": [...], "compared": n, "firewalled": bool}``. An
    escape is any exception other than ValueError from read_png or DecodeError from decode_image; a
    mismatch is pixels that differ from Pillow's where both accept the file (read_png against Pillow
    in the file's mode, decode_image's fast path against its own Pillow path); lenient notes where
    s2pdata decodes what Pillow refuses; compared counts the pixel comparisons made; firewalled says
    decode_image's firewall turned another exception into the reject.
    """
    import s2pdata.decode as decode_mod
    from s2pdata.decode import _PNG_IGNORED, DecodeError, decode_image, exception_text
    from s2pdata.pngread import read_png

    out = {"decode": "", "pngread": "declined", "escapes": [], "mismatches": [], "lenient": [], "compared": 0}
    out["firewalled"] = False
    px = None
    try:
        px = read_png(data, ignore=_PNG_IGNORED)
        out["pngread"] = "declined" if px is None else "pixels"
    except ValueError:
        out["pngread"] = "refused"
    except Exception as exc:  # noqa: BLE001 - what the fuzzer looks for
        out["pngread"] = "escape"
        out["escapes"].append(f"read_png: {exception_text(exc)}")
    if px is not None:
        im = _pillow_png(data)
        if im is None:
            out["lenient"].append("read_png decodes a PNG Pillow refuses")
        else:
            out["compared"] += 1
            if (diff := _same_as_pillow(px, im)) is not None:
                out["mismatches"].append(diff)
    rgb = None
    try:
        rgb = decode_image(data, max_pixels=FUZZ_MAX_PIXELS, min_side=1)
        out["decode"] = "accepted"
    except DecodeError as exc:
        out["decode"] = exc.reason
        out["firewalled"] = exc.detail.startswith("decoder failed:")  # another exception, turned into a reject
    except Exception as exc:  # noqa: BLE001
        out["decode"] = "escape"
        out["escapes"].append(f"decode_image: {exception_text(exc)}")
    if rgb is not None and decode_mod._plain_png(data, FUZZ_MAX_PIXELS, 1, decode_mod.FORMATS) is not None:
        real = decode_mod.read_png
        decode_mod.read_png = lambda *a, **k: None  # decode_image's Pillow path: the reference
        try:
            ref = decode_image(data, max_pixels=FUZZ_MAX_PIXELS, min_side=1)
        except DecodeError as exc:
            ref = None
            out["lenient"].append(f"decode_image's fast path decodes what its Pillow path rejects ({exc.reason})")
        except Exception as exc:  # noqa: BLE001
            ref = None
            out["escapes"].append(f"decode_image's Pillow path: {exception_text(exc)}")
        finally:
            decode_mod.read_png = real
        out["compared"] += ref is not None
        if ref is not None and (ref.shape != rgb.shape or not np.array_equal(ref, rgb)):
            out["mismatches"].append(f"decode_image's fast path gives {rgb.shape}, its Pillow path {ref.shape}")
    return out


def fuzz(cases: dict[str, int], seed: int = 0, progress=None) -> dict[str, dict]:
    """Run ``cases[fmt]`` cases of each format's fuzzer; totals per format.

    Each total: cases, accepted, rejected {reason: n}, firewalled n, pngread {outcome: n}, compared n,
    lenient n, and the
    ``(seed, index, what)`` of every escape, hang and pixel mismatch (replay one with
    ``fuzz_case(fmt, seed, index)``). Every case runs under a ``FUZZ_CASE_SECONDS`` alarm.
    """
    import signal
    import warnings

    def alarm(signum, frame):
        raise FuzzHang(f"a case ran past {FUZZ_CASE_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    totals = {}
    try:
        for fmt, n in cases.items():
            t = totals[fmt] = {
                "cases": 0, "accepted": 0, "rejected": {}, "firewalled": 0, "pngread": {}, "compared": 0, "lenient": 0,
                "escapes": [], "mismatches": [], "lenient_cases": [],
            }  # fmt: skip
            if not fuzz_seeds(fmt):
                continue  # no AVIF codec in this Pillow
            for index in range(n):
                data = fuzz_case(fmt, seed, index)
                signal.setitimer(signal.ITIMER_REAL, FUZZ_CASE_SECONDS)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        got = check_case(data)
                except FuzzHang as exc:
                    got = {"decode": "hang", "pngread": "hang", "escapes": [str(exc)], "mismatches": [], "lenient": []}
                    got["compared"], got["firewalled"] = 0, False
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                t["cases"] += 1
                if got["decode"] == "accepted":
                    t["accepted"] += 1
                elif got["decode"] not in ("escape", "hang"):
                    t["rejected"][got["decode"]] = t["rejected"].get(got["decode"], 0) + 1
                t["pngread"][got["pngread"]] = t["pngread"].get(got["pngread"], 0) + 1
                t["lenient"] += bool(got["lenient"])
                t["firewalled"] += got["firewalled"]
                t["compared"] += got["compared"]
                t["lenient_cases"] += [(seed, index, w) for w in got["lenient"]]
                t["escapes"] += [(seed, index, e) for e in got["escapes"]]
                t["mismatches"] += [(seed, index, m) for m in got["mismatches"]]
                if progress is not None:
                    progress(fmt, index)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return totals
