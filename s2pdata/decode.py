"""Decode stage: encoded image bytes -> ``(H, W, 3) uint8`` RGB, then fit to the training size.

Consumes the bytes a source read for one item; produces the normalised colour image (or raises
``DecodeError`` whose ``reason`` is a short stable code the build counts in its shard stats), and
``FitParams`` + the resized / cropped image the later stages work on.

Normalisation (docs/method.md, Sources): the pixel count is checked from the header before any pixel is
decoded; EXIF orientation is applied; palette, LA, RGBA, 1-bit, CMYK, YCbCr and 16-bit images
become 8-bit RGB; alpha is composited onto white; truncated files are rejected (Pillow's global
``LOAD_TRUNCATED_IMAGES`` is never touched). Animated images (GIF, APNG, WebP, MPO) keep their
first frame: a dataset of illustrations wants the still picture, and Danbooru's few animated
posts are usually excluded by extension upstream.

Pillow decodes, except plain PNGs (8-bit gray / RGB / RGBA without transparency, EXIF or
animation), which ``s2pdata.pngread`` decodes to the same pixels 1.3-3x faster; a file it doubts
goes to Pillow, so every rejection reason is Pillow's (a damaged ancillary chunk, which the fast path
ignores as libpng does, is the one thing Pillow refuses that is decoded here).

Nothing one file does escapes as another exception: whatever a decoder raises on it is its
``DecodeError("corrupt")`` naming the exception (``_decode``), and a ``MemoryError`` is the file's
reject unless the process cannot afford even the header's size (``_out_of_memory``).

Pillow's own decompression-bomb ceiling (``Image.MAX_IMAGE_PIXELS``, error above twice it) is left
as it is; it only matters when ``max_pixels`` is set above ~179 M, and then still rejects with
reason ``too-many-pixels``.
"""

from __future__ import annotations

import dataclasses
import io
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from s2pdata._check import check_array, check_choice
from s2pdata.pngread import png_size, read_png

#: Every ``DecodeError.reason`` this module raises (stable: they are stats keys).
REASONS = ("empty-file", "not-an-image", "truncated", "corrupt", "too-many-pixels", "too-small", "unsupported-mode")

#: Pillow formats tried by default. Restricting the list keeps exotic plugins (EPS calls
#: Ghostscript, for one) away from untrusted files.
FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")

CROPS = ("none", "center", "random")

# Modes carrying alpha; Pillow converts each to RGBA losslessly (premultiplied ones un-premultiply).
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# Modes Pillow's convert("RGB") handles correctly without alpha.
_PLAIN_MODES = ("RGB", "L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX")


class DecodeError(ValueError):
    """An input that cannot become a training image.

    Attributes
    ----------
    reason : str
        Short stable code, one of ``REASONS`` (used as a stats key).
    detail : str
        Human-readable explanation with the offending values.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self):  # build workers send rejects across processes
        return (type(self), (self.reason, self.detail))


def _available_formats(formats) -> list[str]:
    Image.init()
    return [f for f in formats if f in Image.OPEN]


def _classify_oserror(exc: BaseException, stage: str) -> DecodeError:
    text = str(exc)
    if "truncated" in text.lower():
        return DecodeError("truncated", f"{stage}: {text}")
    return DecodeError("corrupt", f"{stage}: {type(exc).__name__}: {text}")


def decode_image(
    data: bytes, *, max_pixels: int = 64_000_000, min_side: int = 32, formats=FORMATS, draft: int | None = None
) -> np.ndarray:
    """Decode and normalise one encoded image to 8-bit RGB.

    Parameters
    ----------
    data : bytes
        The whole encoded file.
    max_pixels : int
        Files whose header claims more than ``max_pixels`` pixels are rejected before decoding.
    min_side : int
        Images whose short side (after EXIF orientation) is below this are rejected.
    formats : sequence of str
        Pillow format names to try; anything else is ``not-an-image``.
    draft : int or None
        Where the short side is at least ``2 * draft``, let the decoder (JPEG's and MPO's; other
        formats ignore it) decode at the largest DCT scale (1/2, 1/4, 1/8) that keeps at least
        ``draft`` pixels on the short side and at least the proportional length on the long side.
        Much faster when the build downsizes anyway; the pixels then differ slightly from a full
        decode + area resize (``decode_fitted``). ``None`` decodes at full size.

    Returns
    -------
    np.ndarray
        ``(H, W, 3) uint8`` RGB, C-contiguous and writable.

    Raises
    ------
    DecodeError
        With ``reason`` one of ``REASONS``; also for any other exception a decoder raises on the file
        (``corrupt``, the detail naming it).
    MemoryError
        Only where the process cannot reserve an image of the header's size (see ``_out_of_memory``).

    Shape
    -----
    bytes -> (H, W, 3) uint8; H, W after EXIF orientation.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}; read the file in 'rb' mode")
    return _decode(data, max_pixels, min_side, formats, draft)[0]


def _decode(data, max_pixels, min_side, formats, draft, fit=None) -> tuple[np.ndarray, tuple[int, int], int]:
    """``decode_image``'s body: the RGB image, the full-scale (H, W) after EXIF orientation and the
    EXIF orientation (1-8) applied. With ``fit`` (the short side ``decode_fitted`` will resize to), the
    resized image's pixels are held to ``max_pixels`` too, from the header: a 32 x 2,000,000 strip
    passes a 64 MP limit but would be 512 x 32,000,000 (49 GB) once fitted.

    The firewall of one item: whatever a decoder raises on the file's bytes (Pillow's plugins raise
    ``IndexError``, ``RuntimeError``, ``struct.error``, ``KeyError``... on hostile files) becomes
    ``DecodeError("corrupt")`` with the exception's type and message; see ``_out_of_memory`` for
    ``MemoryError``. ``KeyboardInterrupt`` and ``SystemExit`` pass.
    """
    if int(max_pixels) < 1 or int(min_side) < 1:
        raise ValueError(f"max_pixels and min_side must be >= 1, got {max_pixels!r}, {min_side!r}")
    if draft is not None and (isinstance(draft, bool) or not isinstance(draft, (int, np.integer)) or draft < 1):
        raise ValueError(f"draft must be a positive int or None, got {draft!r}")
    if len(data) == 0:
        raise DecodeError("empty-file", "0 bytes")
    header = [0]  # the pixel count of the header once checked: what decoding this file may legitimately take
    try:
        with warnings.catch_warnings():
            # DecompressionBombWarning (between Pillow's limit and twice it) and palette notes:
            # our own max_pixels check below is the policy.
            warnings.simplefilter("ignore")
            rgb = _plain_png(bytes(data), int(max_pixels), int(min_side), formats, header, fit)
            if rgb is not None:
                return rgb, rgb.shape[:2], 1
            im, full_hw, orientation = _open_checked(
                bytes(data), int(max_pixels), int(min_side), formats, draft, header, fit
            )
            try:
                rgb = _to_rgb(im)
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise _classify_oserror(exc, "normalising") from exc
    except DecodeError:
        raise
    except MemoryError as exc:
        raise _out_of_memory(exc, header[0]) from exc
    except Exception as exc:  # noqa: BLE001 - the firewall: any fault of one file is that file's reject
        raise DecodeError("corrupt", f"decoder failed: {exception_text(exc)}") from exc
    return rgb, full_hw, orientation


def exception_text(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` of an exception for a reject's detail, on one line, at most ``limit`` characters."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Bytes per pixel the probe of ``_out_of_memory`` reserves: an RGBA copy of the header's image.
_PROBE_BYTES_PER_PIXEL = 4


def _out_of_memory(exc: MemoryError, header_pixels: int) -> BaseException:
    """What a ``MemoryError`` while decoding one file becomes: the file's reject, or the process's failure.

    Decoding allocates in proportion to the header's size, which was checked against ``max_pixels``
    before any pixel was decoded. A ``MemoryError`` is then either the file's doing (a decoder asked
    for far more than its header justifies) or the process's (it cannot afford even a legitimate
    decode). The failed allocation is released by now, so probe: reserve an RGBA image of the
    header's size (address space only, no pages touched). If that succeeds the file was at fault,
    and it is rejected as ``corrupt``; if it fails the process is out of memory, and the
    ``MemoryError`` goes on up to stop the build rather than turn every later item into a reject
    that another machine would have kept (builds must not depend on the machine's memory).
    """
    try:
        probe = np.empty(max(int(header_pixels), 1) * _PROBE_BYTES_PER_PIXEL, np.uint8)
    except MemoryError:
        return exc
    del probe
    return DecodeError(
        "corrupt",
        f"decoder failed: {exception_text(exc)} (more memory than the header's {header_pixels} pixels need)",
    )


_MAGIC = (
    (b"GIF8", "GIF"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"\x7fELF", "an ELF executable"),
    (b"\x1aE\xdf\xa3", "Matroska/WebM video"),
    (b"RIFF", "a RIFF file (WAV/AVI)"),
    (b"8BPS", "a Photoshop document"),
    (b"\xff\xd8", "JPEG"),
    (b"\x89PNG", "PNG"),
)


def sniff(data: bytes) -> str:
    """What ``data`` looks like, for a reject's detail: a type name, never the bytes themselves
    (a rejected file may be anything a link pointed at, and the rejects log is shared)."""
    head = bytes(data[:16])
    if not head:
        return "nothing"
    if head[4:8] == b"ftyp":
        return "an MP4/QuickTime/HEIF container"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    sample = bytes(data[:4096])
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data"
    return "text" if all(c.isprintable() or c in "\r\n\t" for c in text) else "unrecognised binary data"


def _open_checked(
    data: bytes, max_pixels: int, min_side: int, formats, draft, header: list, fit: int | None = None
) -> tuple[Image.Image, tuple[int, int], int]:
    """Open lazily, check the header's size, then decode pixels (at a reduced scale where ``draft``
    allows) and apply EXIF orientation; returns the image, its full-scale oriented (H, W) and the
    orientation (1-8) applied. ``header[0]`` gets the header's pixel count once it passed the check."""
    try:
        im = Image.open(io.BytesIO(data), formats=_available_formats(formats))
    except UnidentifiedImageError as exc:
        raise DecodeError(
            "not-an-image", f"{len(data)} bytes of {sniff(data)}; no decoder among {list(formats)} recognises them"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise DecodeError("too-many-pixels", f"Pillow's bomb limit: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _classify_oserror(exc, "reading header") from exc
    w, h = im.size
    if w * h > max_pixels:
        raise DecodeError("too-many-pixels", f"header says {w}x{h} = {w * h} > max_pixels={max_pixels}")
    if min(w, h) < min_side:
        raise DecodeError("too-small", f"{w}x{h}: short side {min(w, h)} < min_side={min_side}")
    if fit and _fitted_pixels(h, w, fit) > max_pixels:
        rh, rw = plan_fit((h, w), size=fit).resized
        raise DecodeError(
            "too-many-pixels",
            f"header says {w}x{h}; fitted to a short side of {fit} it would be {rw}x{rh} = {rw * rh} > "
            f"max_pixels={max_pixels}",
        )
    header[0] = w * h
    if draft is not None and min(w, h) >= 2 * draft:
        _request_draft(im, w, h, int(draft))
    try:
        im.load()  # first frame of an animated file
    except Image.DecompressionBombError as exc:
        raise DecodeError("too-many-pixels", f"Pillow's bomb limit: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # MemoryError: see _out_of_memory
        raise _classify_oserror(exc, "decoding") from exc
    try:
        orientation = im.getexif().get(_ORIENTATION, 1)
        turned = orientation in (5, 6, 7, 8)  # the ones exif_transpose turns by 90 degrees
        ImageOps.exif_transpose(im, in_place=True)
    except Exception as exc:  # noqa: BLE001 - malformed EXIF takes many exception types
        raise DecodeError("corrupt", f"EXIF orientation: {type(exc).__name__}: {exc}") from exc
    return im, ((w, h) if turned else (h, w)), orientation if orientation in _ORIGIN_AT else 1


_ORIENTATION = 0x0112  # the EXIF orientation tag
# Where exif_transpose puts the stored image's top-left corner, per orientation: (at the bottom, at the right).
_ORIGIN_AT = {1: (0, 0), 2: (0, 1), 3: (1, 1), 4: (1, 0), 5: (0, 0), 6: (0, 1), 7: (1, 1), 8: (1, 0)}


def _fitted_pixels(h: int, w: int, size: int) -> int:
    """Pixels of an (h, w) image once ``plan_fit`` brought its short side to ``size``."""
    rh, rw = plan_fit((h, w), size=size).resized
    return rh * rw


def _request_draft(im: Image.Image, w: int, h: int, short: int) -> None:
    """Ask the decoder for its largest reduced scale that still leaves ``short`` pixels on the short side
    and the proportional (rounded up) length on the long one. Integer arithmetic, so every machine asks
    the same; decoders without reduced scales (all but JPEG / MPO in Pillow) ignore the request."""
    low = min(w, h)
    im.draft(None, (-(-w * short // low), -(-h * short // low)))


# Chunks that change nothing ``decode_image`` keeps: colour management it does not apply, text,
# time, resolution, significant bits, background colour (alpha goes onto white), palette notes.
_PNG_IGNORED = frozenset(
    {b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"pHYs", b"tEXt", b"zTXt", b"iTXt", b"tIME", b"sBIT", b"bKGD", b"sPLT"}
)


def _plain_png(
    data: bytes, max_pixels: int, min_side: int, formats, header: list | None = None, fit: int | None = None
) -> np.ndarray | None:
    """RGB of a plain PNG (8-bit gray, RGB or RGBA, no transparency chunk, no EXIF, not animated)
    through ``s2pdata.pngread`` (zlib-ng + Numba: 2-4x Pillow on 2.5 MP art), or None: then
    Pillow decodes it, and names any fault or limit exactly as for every other file.

    The size checked here is the first IHDR's, and ``read_png`` refuses (ValueError) any file
    with another IHDR, so it never decodes at a size other than the one checked."""
    hw = png_size(data) if "PNG" in formats else None
    if hw is None or hw[0] * hw[1] > max_pixels or min(hw) < min_side:
        return None
    if fit and _fitted_pixels(hw[0], hw[1], fit) > max_pixels:
        return None  # Pillow's path names the reason
    if header is not None:
        header[0] = hw[0] * hw[1]
    try:
        a = read_png(data, ignore=_PNG_IGNORED)
    except ValueError:
        return None
    if a is None or a.dtype != np.uint8:
        return None
    if a.ndim == 2:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2RGB)
    return _composite_white(a) if a.shape[2] == 4 else a


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any supported Pillow mode -> (H, W, 3) uint8 RGB with alpha composited onto white."""
    mode = im.mode
    if mode in _PLAIN_MODES and "transparency" in im.info and mode in ("P", "L", "RGB", "1"):
        im, mode = im.convert("RGBA"), "RGBA"  # tRNS chunk / GIF transparent index
    if mode in _ALPHA_MODES:
        rgba = np.asarray(im.convert("RGBA") if mode != "RGBA" else im)
        return _composite_white(rgba)
    if mode in _PLAIN_MODES:
        return np.array(im.convert("RGB") if mode != "RGB" else im)
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_depth_gray(im)
    raise DecodeError("unsupported-mode", f"Pillow mode {mode!r} ({im.format})")


def _composite_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 straight alpha -> (H, W, 3) uint8 over white, rounded.

    ``(c a + 255 (255 - a) + 127) // 255`` equals ``255 - round(a (255 - c) / 255)`` (an integer over
    255 is never half-way), which OpenCV's scaled multiply rounds exactly in a few SIMD passes (~10x
    numpy's uint16 arithmetic; tests/test_decode.py checks all 65,536 (a, c) pairs).
    """
    rgb = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
    alpha = cv2.cvtColor(np.ascontiguousarray(rgba[..., 3]), cv2.COLOR_GRAY2RGB)
    return cv2.bitwise_not(cv2.multiply(cv2.bitwise_not(rgb), alpha, scale=1 / 255))


def _high_depth_gray(im: Image.Image) -> np.ndarray:
    """16-bit / 32-bit integer / float gray -> 8-bit RGB by scaling the 16-bit range."""
    g = np.asarray(im)
    if im.mode == "F":
        # float TIFFs: [0, 1] if they look normalised, otherwise treated like 16-bit samples
        g = g.astype(np.float64)
        top = 1.0 if np.nanmax(g, initial=0.0) <= 1.0 else 65535.0
        g8 = np.clip(np.nan_to_num(g) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    else:
        g = np.clip(g.astype(np.int64), 0, 65535)
        g8 = ((g * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257)
    return np.ascontiguousarray(np.repeat(g8[..., None], 3, axis=2))


# ---------------------------------------------------------------------------------------------
# fitting to the training size


@dataclasses.dataclass(frozen=True)
class FitParams:
    """How one image is brought to the training size; JSON-able for the sample's record.

    ``in_shape`` (H, W) of the decoded image, ``resized`` (H, W) after scaling so the short side
    equals the target, ``scale`` = resized / in (same on both axes up to rounding),
    ``interpolation`` one of "none", "area" (shrinking), "cubic" (enlarging), and ``crop``
    (top, left, height, width) in resized coordinates or ``None``.
    """

    in_shape: tuple[int, int]
    resized: tuple[int, int]
    scale: float
    interpolation: str
    crop: tuple[int, int, int, int] | None

    @property
    def out_shape(self) -> tuple[int, int]:
        """(H, W) of the image ``apply_fit`` returns."""
        return self.resized if self.crop is None else (self.crop[2], self.crop[3])

    def to_json(self) -> dict:
        """Plain dict of lists / numbers / strings."""
        return {
            "in_shape": list(self.in_shape),
            "resized": list(self.resized),
            "scale": self.scale,
            "interpolation": self.interpolation,
            "crop": None if self.crop is None else list(self.crop),
        }

    @classmethod
    def from_json(cls, d: dict) -> FitParams:
        """Inverse of ``to_json``."""
        return cls(
            tuple(d["in_shape"]),
            tuple(d["resized"]),
            float(d["scale"]),
            str(d["interpolation"]),
            None if d["crop"] is None else tuple(d["crop"]),
        )


def plan_fit(shape, *, size: int | None = 512, crop: str = "none", rng: np.random.Generator | None = None) -> FitParams:
    """Plan the resize (short side -> ``size``) and the optional square crop.

    Parameters
    ----------
    shape : tuple
        Shape of the image; only (H, W) = ``shape[:2]`` is used.
    size : int or None
        Target short side; ``None`` or 0 keeps the image's size (then ``crop`` must be "none").
    crop : {"none", "center", "random"}
        Crop a ``size`` x ``size`` square after resizing; "random" needs ``rng``.
    rng : numpy.random.Generator, optional
        Draws the random crop's corner (uniform over valid positions).

    Returns
    -------
    FitParams

    Shape
    -----
    (H, W[, C]) -> resized (round(H * s), round(W * s)) with s = size / min(H, W); crop (size, size).
    """
    check_choice("crop", crop, CROPS)
    if len(shape) < 2 or int(shape[0]) < 1 or int(shape[1]) < 1:
        raise ValueError(f"shape must start with positive (H, W), got {tuple(shape)!r}")
    h, w = int(shape[0]), int(shape[1])
    if size is None or size == 0:
        if crop != "none":
            raise ValueError(f"crop={crop!r} needs a positive size, got size={size!r}; pass size=N or crop='none'")
        return FitParams((h, w), (h, w), 1.0, "none", None)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"size must be a positive int, None or 0, got {size!r}")
    size = int(size)
    short = min(h, w)
    scale = size / short
    # the short side is exactly size; the long side rounds and is never below size
    rh = size if h == short else max(size, int(round(h * scale)))
    rw = size if w == short else max(size, int(round(w * scale)))
    interp = "none" if (rh, rw) == (h, w) else ("area" if size < short else "cubic")
    box = None
    if crop == "center":
        box = ((rh - size) // 2, (rw - size) // 2, size, size)
    elif crop == "random":
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"crop='random' needs rng, a numpy Generator, got {type(rng).__name__}; "
                "use s2pdata._rng.sample_rng(seed, key, 'fit')"
            )
        box = (int(rng.integers(0, rh - size + 1)), int(rng.integers(0, rw - size + 1)), size, size)
    return FitParams((h, w), (rh, rw), float(scale), interp, box)


_CV2_INTERP = {"area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}


def apply_fit(image: np.ndarray, params: FitParams) -> np.ndarray:
    """Apply ``params`` (from ``plan_fit``) to an image; the input is not modified.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W)`` or ``(H, W, C)`` uint8 with ``(H, W) == params.in_shape``.
    params : FitParams

    Returns
    -------
    np.ndarray
        A new C-contiguous uint8 array of shape ``params.out_shape (+ C)``.

    Shape
    -----
    (H, W[, C]) -> (H', W'[, C]) = params.out_shape.
    """
    image = check_array("image", image, ndim=(2, 3))
    if not isinstance(params, FitParams):
        raise TypeError(f"params must be FitParams, got {type(params).__name__}; use plan_fit")
    if tuple(image.shape[:2]) != tuple(params.in_shape):
        raise ValueError(
            f"image has (H, W) {image.shape[:2]} but params were made for "
            f"{params.in_shape}; call plan_fit(image.shape, ...)"
        )
    if params.interpolation == "none":
        out = image
    else:
        rh, rw = params.resized
        out = cv2.resize(image, (rw, rh), interpolation=_CV2_INTERP[params.interpolation])  # (x, y) size
        if out.ndim < image.ndim:  # cv2 drops a trailing channel axis of length 1
            out = out[..., None]
    return _crop(image.copy() if out is image else out, params)


def _crop(resized: np.ndarray, params: FitParams) -> np.ndarray:
    """``params.crop`` of an image of ``params.resized``, in its own contiguous memory (as is without a crop)."""
    if params.crop is None:
        return resized
    top, left, ch, cw = params.crop
    return resized[top : top + ch, left : left + cw].copy()


def fit_size(
    color: np.ndarray, *, size: int | None = 512, crop: str = "none", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Resize so the short side equals ``size`` (area when shrinking, cubic when enlarging), then
    optionally crop a ``size`` x ``size`` square. Shorthand for ``plan_fit`` + ``apply_fit``.

    Shape
    -----
    (H, W, 3) uint8 -> (round(H s), round(W s), 3), s = size / min(H, W); (size, size, 3) if cropped.
    """
    color = check_array("color", color, ndim=(2, 3))
    return apply_fit(color, plan_fit(color.shape, size=size, crop=crop, rng=rng))


def decode_fitted(
    data: bytes,
    *,
    size: int | None = 512,
    crop: str = "none",
    rng: np.random.Generator | None = None,
    exact: bool = False,
    max_pixels: int = 64_000_000,
    min_side: int = 32,
    formats=FORMATS,
) -> tuple[np.ndarray, tuple[int, int], FitParams]:
    """Decode ``data`` and bring it to the training size, decoding at a reduced scale where that is exact enough.

    Where ``size`` is at most half the source's short side, the decoder (JPEG, MPO) is asked for
    its largest DCT scale (1/2, 1/4, 1/8) that still leaves at least the fitted size; a bilinear
    resample of the picture's exact extent (area where the decoder left 2x or more) then finishes.
    The fit is planned from the full-scale size, so the plan (and the random crop it draws) is the
    same as with ``exact=True``; only pixels differ, by about what a resampling filter does
    (tests/test_decode.py states the PSNR).

    Parameters
    ----------
    data : bytes
        The whole encoded file.
    size, crop, rng
        As for ``plan_fit``.
    exact : bool
        Always decode at full size (the ``--exact-decode`` build flag).
    max_pixels, min_side, formats
        As for ``decode_image``; the pixel limit is read from the header before any decoding, and
        holds for the image once fitted too (a 1,000,000 x 32 strip would be 16,000,000 x 512).

    Returns
    -------
    color : np.ndarray
        ``params.out_shape + (3,)`` uint8 RGB.
    full_hw : tuple of int
        (H, W) of the image at full scale after EXIF orientation.
    params : FitParams
        The plan, made for ``full_hw``.

    Raises
    ------
    DecodeError
        As ``decode_image``.

    Shape
    -----
    bytes -> (H', W', 3) uint8 with (H', W') = params.out_shape.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}; read the file in 'rb' mode")
    draft = None if exact or not size else size
    image, full_hw, orientation = _decode(data, max_pixels, min_side, formats, draft, fit=size or None)
    params = plan_fit(full_hw, size=size, crop=crop, rng=rng)
    if tuple(image.shape[:2]) != full_hw:  # decoded at a reduced scale: always at least the fitted size
        return _finish_reduced(image, params, full_hw, orientation), full_hw, params
    return apply_fit(image, params), full_hw, params


def _finish_reduced(image: np.ndarray, params: FitParams, full_hw, orientation: int) -> np.ndarray:
    """A reduced-scale decode ``image`` (h, w, 3) -> ``params.out_shape + (3,)``, sampling the picture's exact extent.

    The decoder's scale ``s`` (2, 4, 8) leaves ``ceil(H / s)`` pixels: a partial last DCT block
    makes the image up to one pixel longer than the picture's ``H / s``, at the end the stored
    image had (EXIF orientation may move it to the start). Where less than 2x is left on both axes
    (always, up to the decoder's 1/8) a bilinear ``warpAffine`` samples exactly the picture's box:
    as close to the full decode + area resize as area itself and several times faster than
    OpenCV's area path at such non-integer ratios (benchmarks/RESULTS.md). Otherwise area, as planned.
    """
    h, w = image.shape[:2]
    (full_h, full_w), (rh, rw) = full_hw, params.resized
    scale = next((s for s in (2, 4, 8) if -(-full_h // s) == h and -(-full_w // s) == w), None)
    if scale is None or h >= 2 * rh or w >= 2 * rw:
        return apply_fit(image, dataclasses.replace(params, in_shape=(h, w)))
    ky, kx = full_h / scale / rh, full_w / scale / rw  # reduced pixels per output pixel
    at_bottom, at_right = _ORIGIN_AT[orientation]  # the picture ends flush with the image's far side there
    oy, ox = (h - full_h / scale) * at_bottom, (w - full_w / scale) * at_right
    m = np.array([[kx, 0.0, ox + 0.5 * kx - 0.5], [0.0, ky, oy + 0.5 * ky - 0.5]])  # output -> reduced (x, y)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return _crop(cv2.warpAffine(image, m, (rw, rh), flags=flags, borderMode=cv2.BORDER_REPLICATE), params)
