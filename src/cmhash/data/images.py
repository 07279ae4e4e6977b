"""Image files -> the pixels a backbone reads: bounded in memory and time for any file accepted,
every Pillow mode converted to 8-bit RGB by one stated rule.

``read_image`` serves dataset folders, ``cmhash encode``, ``cmhash search --image`` and uploads to
the service alike; ``rgb8`` (the mode rule) also serves the service's thumbnails.

Bounds. The pixel count is read from the header and checked before anything is decoded (a
decompression bomb costs nothing). No resized image is larger than 4 x size by size
(``resize_crop``): a 1 x 100000 PNG, whose shorter side scaled to 224 px was a 22-gigapixel
intermediate (a 109-byte upload took a server to 6.5 GB), now resamples only its centre square.
Decoded memory is at most 4 bytes per accepted pixel plus one converted copy for modes Pillow
cannot resample as they are (``benchmarks/bench_service.py --sections uploads`` measures the worst cases).
"""
from __future__ import annotations

import io
import math

import numpy as np

from .base import DataError

MAX_PIXELS = 100_000_000  # an image file larger than this (in pixels) is refused before decoding

# Modes Pillow resamples as they are; every other mode is converted to one of these first (resizable).
_DIRECT = ("L", "LA", "RGB", "RGBA", "I", "F")
_AS_RGB = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa")


def resizable(im):
    """``im`` in a mode Pillow resamples without losing range: 1 -> L; palette -> RGB (with
    transparency: composited over white, ``_palette_over_white``), palette with alpha -> RGBA; 16-bit integer (I;16, I;16B, ...) -> I (same values); La -> LA;
    CMYK, YCbCr, LAB, HSV, RGBX, RGBa -> RGB (Pillow's own colour conversions)."""
    mode = im.mode
    if mode in _DIRECT:
        return im
    if mode == "1":
        return im.convert("L")
    if mode == "P" and "transparency" in im.info:
        return _palette_over_white(im)
    if mode in ("P", "PA"):
        return im.convert("RGBA" if mode == "PA" else "RGB")
    if mode.startswith("I;16"):
        return im.convert("I")
    if mode == "La":
        return im.convert("LA")
    if mode in _AS_RGB:
        return im.convert("RGB")
    raise DataError(f"image mode {mode!r} is not supported")


def _palette_over_white(im):
    """A palette image with transparency -> RGB, each palette entry composited over white by its
    alpha (one index, or PNG's alpha per entry). A pixel's colour and alpha are its entry's, so
    this is ``rgb8``'s compositing done on the palette (resampling is linear: composited before or
    after, the same to rounding), without a full-size RGBA copy and Pillow's premultiplied one
    (a 40-megapixel palette PNG peaked 314 MB above idle that way, 200 MB this way)."""
    im.load()
    pal = np.array(im.getpalette("RGB") or [], np.float64).reshape(-1, 3)  # (n, 3)
    alpha = np.full(len(pal), 255.0)
    t = im.info.pop("transparency")
    if isinstance(t, int) and t < len(pal):
        alpha[t] = 0.0
    elif isinstance(t, (bytes, bytearray)):
        a = np.frombuffer(bytes(t), np.uint8)[:len(pal)]
        alpha[:len(a)] = a
    over = np.rint(pal * alpha[:, None] / 255.0 + 255.0 * (1.0 - alpha[:, None] / 255.0)).astype(np.uint8)
    im.putpalette(over.tobytes(), "RGB")
    return im.convert("RGB")


def rgb8(im) -> np.ndarray:
    """A resampled image in one of ``_DIRECT``'s modes -> uint8 (H, W, 3), by this rule:

    - L, RGB: as they are; L is repeated into the three channels.
    - I (32-bit integers; 16-bit PNGs and TIFFs open as I;16 and become I): the 16-bit range,
      0..65535 -> 0..255 (v * 255 / 65535, rounded), values outside it clipped. Pillow's own
      ``convert("RGB")`` clips at 255 instead, so a 16-bit photo came out pure white.
    - F (32-bit floats): the range 0..1 -> 0..255, clipped (the float-image convention).
    - LA, RGBA (and palettes with transparency): composited over white by their alpha, as a page
      shows them; ``convert("RGB")`` would show whatever colour transparent pixels hide.
    """
    mode = im.mode
    if mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        a = a * (255.0 / 65535.0) if mode == "I" else a * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)[..., None].repeat(3, axis=2)
        return a
    if mode in ("LA", "RGBA"):
        a = np.asarray(im, dtype=np.float32)
        rgb = a[..., :-1] if mode == "RGBA" else a[..., :1].repeat(3, axis=2)
        alpha = a[..., -1:] / 255.0
        return np.clip(np.rint(rgb * alpha + 255.0 * (1.0 - alpha)), 0, 255).astype(np.uint8)
    if mode == "L":
        return np.asarray(im, dtype=np.uint8)[..., None].repeat(3, axis=2)
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    return rgb8(resizable(im))


MAX_ELONGATION = 4  # up to this aspect ratio the whole image is resized, then cropped (at most 4 x size wide)


def resize_crop(im, size: int):
    """The shorter side resized to ``size`` (each side rounded), then the centre ``size`` x ``size``
    cropped. Up to ``MAX_ELONGATION`` the whole image is resized, then cropped (the pixels every
    cache and index made so far hold); a longer image resamples only the centre square's source
    region (``resize`` with a ``box``), so a 1 x 100000 PNG makes a 224 x 224 image, not a
    224 x 22,400,000 one. The two agree to within 1 grey level (measured on random images)."""
    from PIL import Image

    w, h = im.size
    s = size / min(w, h)
    rw, rh = max(size, round(w * s)), max(size, round(h * s))  # the resized image's sides
    left, top = (rw - size) // 2, (rh - size) // 2
    if max(rw, rh) <= MAX_ELONGATION * size:
        return im.resize((rw, rh), Image.BILINEAR).crop((left, top, left + size, top + size))
    sx, sy = w / rw, h / rh
    return im.resize((size, size), Image.BILINEAR, box=(left * sx, top * sy, (left + size) * sx, (top + size) * sy))


def read_image(source, size: int, max_pixels: int | None = MAX_PIXELS, draft: bool = True) -> np.ndarray:
    """An image file (a path, or its bytes) -> uint8 (3, size, size): RGB (``rgb8``'s rule), the
    centre square of the shorter side, resized to ``size``. Used for dataset folders and for query
    images alike. More than ``max_pixels`` pixels (from the header) is refused before decoding.

    ``draft``: a JPEG is decoded at the smallest of its DCT scales (1/1, 1/2, 1/4, 1/8) whose
    shorter side is still >= 2 x ``size`` (Pillow's ``Image.draft``), then resized as before: a
    12-megapixel camera photo read for a 224 px backbone decodes a 4x smaller image (1000 x 750).
    Twice the size, not the size itself: a JPEG's colour planes are usually stored at half
    resolution, and at the 1/8 scale they fall below 224 px; measured on 1/f-spectrum 12 MP photos,
    EfficientNet-Lite0 features of the 1/8 scale were at cosine 0.9988 to the full-size decode,
    of the 1/4 scale 0.9998 (``benchmarks/bench_inputs.py --sections decode``; tests/data/test_decode.py holds it to
    0.999). Other formats decode as they are."""
    from PIL import Image, UnidentifiedImageError

    name = "upload" if isinstance(source, (bytes, bytearray)) else source
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as im:
            if im.width < 1 or im.height < 1:
                raise DataError(f"{name}: an image of {im.width} x {im.height} pixels has nothing to read")
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise DataError(f"{name}: {im.width} x {im.height} pixels is more than the {max_pixels:,} allowed "
                                "(a decompression bomb, or resize it first)")
            if draft and im.format == "JPEG":
                s = size / min(im.width, im.height)
                im.draft("RGB", (math.ceil(2 * im.width * s), math.ceil(2 * im.height * s)))  # both sides >= these
            return rgb8(resize_crop(resizable(im), size)).transpose(2, 0, 1).copy()  # (3, size, size)
    except UnidentifiedImageError:  # its message names a BytesIO object, not the file
        raise DataError(f"{name}: not a readable image (not an image format Pillow knows)") from None
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{name}: not a readable image ({e})") from None
    except MemoryError:
        raise DataError(f"{name}: not enough memory to decode this image (resize it first)") from None


class FolderImages:
    """Lazy images from files: each read with ``read_image`` (``draft=False`` decodes JPEGs at full
    size, the path before reduced decoding)."""

    def __init__(self, paths, size: int = 224, root=None, draft: bool = True):
        self.paths, self.size, self.root = list(paths), size, root  # root: the folder every path lies in
        self.draft = draft
        self.shape = (len(self.paths), 3, size, size)
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, idx) -> np.ndarray:
        return np.stack([self.read(self.paths[i]) for i in np.asarray(idx, dtype=np.int64)])

    def read(self, path) -> np.ndarray:
        return read_image(path, self.size, draft=self.draft)
