"""A fast reader for the PNG maps s2pdata stores (sketch, hint, regions), whole or one window,
and for plain PNG sources (``s2pdata.decode``).

The shards' flat maps are PNGs with the 'up' filter and run-length deflate. OpenCV reads them
through a zlib whose inflate copies run-length matches a byte at a time: a 512 x 751 hint map,
3 KB on disk, takes it ~4.5 ms, most of the loader's decode time. Here zlib-ng (``zlib_ng``,
a dependency; the standard library's ``zlib`` when it is missing) inflates the same stream in
~0.2 ms, and a Numba kernel undoes the row filters of only the columns a crop keeps, down to
its last row. The result equals ``cv2.imdecode`` pixel for pixel (tests check every filter
type against it), in the file's own channel order: RGB(A), not OpenCV's BGR(A).

Only the layouts s2pdata writes are read here: 8-bit gray, RGB or RGBA and 16-bit gray, not
interlaced, with no chunks besides IHDR, IDAT, IEND and those the caller names to ignore. For
anything else ``read_png`` returns None and the caller decodes with OpenCV (or Pillow). Chunk
CRCs and the deflate stream's checksum are verified, and no more than the header's size is
inflated, so damaged bytes raise ``ValueError`` as OpenCV's failure would. So does any file that
breaks the chunk order libpng enforces: IHDR first and only once (the size every check reads is
the first header's, so the pixels are never decoded at another), IDAT chunks in one run.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from numba import njit

from ._jit import JIT, register_warmup

try:  # zlib-ng inflates run-length matches 10-20x faster than zlib 1.2/1.3
    from zlib_ng import zlib_ng as _inflater
except ImportError:  # pragma: no cover - the dependency is declared; stay correct without it
    _inflater = zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 6: 4}  # colour type -> channels (gray, RGB, RGBA)
_MAX_PIXELS = 1 << 30  # OpenCV's own default limit (CV_IO_MAX_IMAGE_PIXELS)


def png_size(data: bytes) -> tuple[int, int] | None:
    """(H, W) from a PNG's header, without decoding; None when ``data`` is not a PNG."""
    if len(data) < 24 or data[:8] != _SIGNATURE or data[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", data[16:24])
    return h, w


def check_window(window: tuple[int, int, int, int] | None, hw: tuple[int, int]) -> None:
    """Raise ValueError unless ``window`` = (y, x, h, w) is None or a non-empty part of an ``hw`` image."""
    if window is not None:
        y, x, h, w = window
        if y < 0 or x < 0 or h < 1 or w < 1 or y + h > hw[0] or x + w > hw[1]:
            raise ValueError(f"window {window} is not inside the {hw[0]}x{hw[1]} image")


def _chunks(data: bytes):
    """(type, payload as a view of ``data``) of each chunk, CRC checked; raises ValueError on a
    damaged or truncated file."""
    view, at, n = memoryview(data), 8, len(data)
    while at + 12 <= n:
        size, kind = struct.unpack_from(">I4s", view, at)
        end = at + 12 + size
        if end > n:
            break
        if zlib.crc32(view[at + 4 : end - 4]) != struct.unpack_from(">I", view, end - 4)[0]:
            raise ValueError(f"PNG chunk {kind!r} at byte {at} fails its CRC (damaged bytes)")
        yield kind, view[at + 8 : end - 4]
        if kind == b"IEND":
            return
        at = end
    raise ValueError(f"PNG truncated at byte {at} of {n}: no IEND chunk")


def read_png(
    data: bytes, window: tuple[int, int, int, int] | None = None, *, ignore: frozenset = frozenset()
) -> np.ndarray | None:
    """Decode a PNG, or only ``window`` = (y, x, h, w) of it, to uint8 (H, W[, C]) or uint16 (H, W).

    Returns None when the file is not a layout this reader takes (see the module notes); the
    caller then decodes it with OpenCV. Channels are in the file's order (RGB / RGBA). Chunks
    named in ``ignore`` (e.g. ``b"pHYs"``, text) are skipped rather than refused, for callers to
    whom they do not change the pixels.

    Raises
    ------
    ValueError
        Damaged or truncated bytes, or a window that is not inside the image.
    """
    if data[:8] != _SIGNATURE:
        return None
    header, idat, idat_ended = None, [], False
    for kind, body in _chunks(data):
        if header is None and kind != b"IHDR":
            raise ValueError(f"PNG whose first chunk is {bytes(kind)!r}, not IHDR (damaged or hostile bytes)")
        if kind == b"IHDR":
            # One header only, and it comes first: the size checks (png_size, Pillow, OpenCV) read the
            # first, so decoding by another would let a 64 x 64 header stand for 1 x 60000 image data.
            if header is not None:
                raise ValueError(
                    "PNG with a second IHDR chunk (damaged or hostile bytes): its size is not the one checked"
                )
            if len(body) != 13:
                raise ValueError(f"PNG header of {len(body)} bytes, not 13")
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            if idat_ended:
                raise ValueError("PNG whose IDAT chunks are not consecutive (damaged bytes)")
            idat.append(body)
        elif kind != b"IEND" and kind not in ignore:
            return None  # palette, transparency, gamma, text...: OpenCV's business
        else:
            idat_ended = bool(idat)
    w, h, depth, ctype, method, filter_method, interlace = header
    if not (0 < w < 2**31 and 0 < h < 2**31) or method or filter_method:
        raise ValueError(
            f"PNG header says {w}x{h}, compression method {method}, filter method {filter_method}: "
            "sides must be 1 to 2^31 - 1 and both methods 0 (damaged bytes)"
        )
    if interlace or ctype not in _CHANNELS or (depth, ctype) not in ((8, 0), (8, 2), (8, 6), (16, 0)):
        return None
    if h * w > _MAX_PIXELS:
        return None  # past any map s2pdata writes: OpenCV applies its own limit
    check_window(window, (h, w))
    y, x, wh, ww = (0, 0, h, w) if window is None else window
    channels = _CHANNELS[ctype]
    bpp = channels * depth // 8  # bytes per pixel
    size = h * (1 + w * bpp)
    stream = _inflater.decompressobj()
    try:  # never more than the header's size (+1 to notice more): a deflate bomb costs nothing
        raw = stream.decompress(idat[0] if len(idat) == 1 else b"".join(idat), size + 1)
    except _inflater.error as exc:
        raise ValueError(f"PNG image data does not inflate ({exc})") from exc
    if len(raw) != size or not stream.eof:
        got = (
            f"more than {size}"
            if len(raw) > size
            else f"{len(raw)}{'' if stream.eof else ' (the stream does not end)'}"
        )
        raise ValueError(f"PNG image data inflates to {got} bytes, not {h} rows of {1 + w * bpp}")
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + w * bpp)
    out = np.empty((y + wh, ww * bpp), np.uint8)
    if not _unfilter(rows, bpp, y + wh, x * bpp, out):
        raise ValueError("PNG row with an unknown filter type (damaged bytes)")
    a = out[y:]
    if depth == 16:
        return a.view(">u2").astype(np.uint16)
    return a.reshape(wh, ww, channels) if channels > 1 else a


@njit(**JIT)
def _unfilter(rows, bpp, nrows, c0, out):
    """Undo the PNG row filters of rows ``[0, nrows)`` for the byte columns ``[c0, c0 + out.shape[1])``
    into ``out``; False on a filter type above 4. Rows filtered 'none' or 'up' read no column to
    their left, so they are undone for the window's columns only; if any row uses 'sub',
    'average' or 'paeth', every row is undone from column 0 in a scratch buffer."""
    ncols = out.shape[1]
    local = True
    for r in range(nrows):
        f = rows[r, 0]
        if f > 4:
            return False
        local = local and (f == 0 or f == 2)
    start = c0 if local else 0
    buf = out if local or c0 == 0 else np.empty((nrows, c0 + ncols), np.uint8)
    width = buf.shape[1]
    for r in range(nrows):
        f = rows[r, 0]
        src = rows[r, 1 + start : 1 + start + width]
        if f == 0 or (f == 2 and r == 0):
            buf[r, :] = src
        elif f == 2:
            for c in range(width):
                buf[r, c] = src[c] + buf[r - 1, c]
        else:
            _filtered_row(src, f, bpp, buf[r], buf[r - 1] if r > 0 else buf[r], r > 0)
    if start != c0:
        out[:, :] = buf[:, c0:]
    return True


@njit(**JIT)
def _filtered_row(src, f, bpp, dst, prev, has_prev):
    """One row with filter 1 (sub), 2 (up), 3 (average) or 4 (paeth), from column 0."""
    for c in range(src.shape[0]):
        a = np.int32(dst[c - bpp]) if c >= bpp else np.int32(0)
        b = np.int32(prev[c]) if has_prev else np.int32(0)
        d = np.int32(prev[c - bpp]) if has_prev and c >= bpp else np.int32(0)
        if f == 1:
            p = a
        elif f == 2:
            p = b
        elif f == 3:
            p = (a + b) >> 1
        else:
            pa, pb, pc = abs(b - d), abs(a - d), abs(a + b - 2 * d)
            p = a if pa <= pb and pa <= pc else (b if pb <= pc else d)
        dst[c] = (np.int32(src[c]) + p) & 255


@register_warmup
def warmup() -> None:
    """Compile (or load from Numba's cache) the unfilter kernel in this process: a loader calls it
    before it forks its workers, which then inherit it instead of each loading it every epoch
    (about a third of a fresh worker's first-shard time, profiled)."""
    rows = np.zeros((2, 1 + 4 * 2), np.uint8)
    rows[1, 0] = 4
    _unfilter(rows, 4, 2, 0, np.empty((2, 8), np.uint8))
    _unfilter(rows, 4, 2, 4, np.empty((2, 4), np.uint8))
