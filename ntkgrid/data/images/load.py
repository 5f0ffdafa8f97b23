"""Loading one image file (8/16-bit, float, grey, palette, alpha, CMYK) as RGB float32 in ``[0, 1]``,
resized on its short side and centre-cropped (the conventions are in :mod:`ntkgrid.data.images`)."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np

from ntkgrid.data import DataError

Size = int | tuple[int, int] | None


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: Values of a float image may stray this far outside ``[0, 1]`` (rounding noise from
#: conversions) and are then clipped; anything further out is refused, see :func:`to_rgb_float`.
FLOAT_RANGE_TOLERANCE = 1e-3


def _pixel_limit() -> int | None:
    """Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), read at call time."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else int(limit)


def _check_pixels(path: Path, width: int, height: int) -> None:
    """Refuse an image over the decompression-bomb limit before its pixel data is decoded."""
    limit = _pixel_limit()
    if limit is not None and width * height > limit:
        raise DataError(
            path,
            f"image is {width}x{height} (WxH) = {width * height} pixels, over the decompression-bomb "
            f"limit of {limit} pixels (PIL.Image.MAX_IMAGE_PIXELS); not decoding it",
        )


# EXIF/TIFF orientation tag (274) -> the array operation that shows the image upright
# (the same transforms as PIL.ImageOps.exif_transpose).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _read_tiff(path: Path) -> np.ndarray | None:
    """First page of a TIFF through tifffile (exact 16-bit and float colour samples).

    Returns ``None`` when the samples are not grey or RGB (CMYK, palette, ...) or tifffile
    cannot decode them (e.g. a compression it needs an extra codec for); the caller then
    uses Pillow.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            _check_pixels(path, int(page.imagewidth), int(page.imagelength))
            if int(page.photometric) not in (1, 2):  # only grey (min-is-black) and RGB samples as stored
                return None  # CMYK, palette, min-is-white, YCbCr, ...: Pillow converts them

            arr = np.asarray(page.asarray())
            tag = page.tags.get(274)
            orientation = int(tag.value) if tag is not None else 1
    except DataError:
        raise
    except Exception:  # tifffile raises many types; Pillow gets its turn
        return None
    if arr.ndim == 3 and arr.shape[0] in (1, 2, 3, 4) and arr.shape[2] not in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) storage
    if orientation in _ORIENT:
        arr = _ORIENT[orientation](arr)
    return np.ascontiguousarray(arr)


def _pillow_array(im) -> np.ndarray:
    """A Pillow image (already upright) as a NumPy array whose channels :func:`to_rgb_float` knows.

    CMYK (and YCbCr, LAB, HSV) go through Pillow's conversion to RGB -- for CMYK
    ``R = (255 - C)(255 - K) / 255`` etc., what ``Image.convert("RGB")`` (and so
    torchvision's ImageNet loader) does; embedded ICC profiles are not applied. Premultiplied
    and padded modes are unpacked to RGBA/RGB; palettes are expanded (RGBA when the palette
    or file has transparency).
    """
    mode = im.mode
    if mode == "CMYK":
        return np.asarray(im.convert("RGB"))
    if mode == "P":
        alpha = "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        return np.asarray(im.convert("RGBA" if alpha else "RGB"))
    if mode in ("PA", "La", "RGBa"):
        return np.asarray(im.convert("RGBA" if mode != "La" else "LA"))
    if mode in ("RGBX", "YCbCr", "LAB", "HSV"):
        return np.asarray(im.convert("RGB"))
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    return np.asarray(im)


def _decode(path: Path) -> np.ndarray:
    """Read the first frame of an image file as a raw array (any dtype/channels), upright.

    The format is recognised from the file's content, never its name (a PNG named
    ``.JPEG`` is read as the PNG it is).  TIFFs go through tifffile (then Pillow),
    everything else through Pillow.  Every image is checked against Pillow's
    decompression-bomb limit before its pixels are decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        if path.is_symlink():
            raise DataError(path, "a symbolic link to nothing (its target is missing, or the links form a loop)")
        raise DataError(path, "no such file")
    if path.is_dir():
        raise DataError(path, "is a directory, not an image file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise DataError(path, f"cannot open file ({exc.strerror or exc})") from exc
    if not head:
        raise DataError(path, "empty file (0 bytes), not an image")
    if head[:4] in _TIFF_MAGIC:
        arr = _read_tiff(path)
        if arr is not None:
            return arr
    try:
        with warnings.catch_warnings():
            # Over the limit is refused below (Pillow itself only warns up to twice the limit).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im_file = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DataError(
            path, f"image over the decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS): {exc}; not decoding it"
        ) from exc
    except UnidentifiedImageError as exc:
        raise DataError(path, "not an image file (Pillow recognises no image format in it)") from exc
    except OSError as exc:
        raise DataError(path, f"cannot read image ({exc})") from exc
    with im_file as im:
        _check_pixels(path, im.width, im.height)
        try:
            im.load()
            upright = ImageOps.exif_transpose(im)
            return _pillow_array(upright)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(path, f"truncated or corrupt {im.format or 'image'} data ({first})") from exc


def to_rgb_float(arr: np.ndarray, source: str | os.PathLike[str] = "<array>") -> np.ndarray:
    """Convert a decoded image array to ``(H, W, 3)`` float32 in ``[0, 1]``.

    ``arr``: ``(H, W)``, ``(H, W, 1)`` grey, ``(H, W, 2)`` grey+alpha, ``(H, W, 3)`` RGB or
    ``(H, W, 4)`` RGBA; dtype bool, uint8 (/255), uint16 (/65535), 32-bit integers
    (as produced by Pillow's mode ``"I"`` for 16-bit data: /65535 when the maximum is
    at most 65535, else /2**32-1 or /2**31-1), or float.  Float values must already lie
    in ``[0, 1]``: values up to :data:`FLOAT_RANGE_TOLERANCE` outside are clipped, any
    further out (e.g. a float TIFF holding 0-255) raise :class:`DataError` with the range
    found -- never a silent clip to white.  Alpha is composited over white.  ``source``
    only labels error messages.
    """
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise DataError(source, f"unsupported image array shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(source, f"image has no pixels (shape {arr.shape})")
    if arr.dtype == np.bool_:
        x = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype in (np.uint16, np.int16):
        x = np.clip(arr.astype(np.float32), 0, None) / 65535.0
    elif arr.dtype.kind in "iu":
        top = float(arr.max(initial=0))
        if top <= 65535:
            denom = 65535.0
        else:
            denom = float(np.iinfo(arr.dtype).max)
        x = (np.clip(arr.astype(np.float64), 0, None) / denom).astype(np.float32)
    elif arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise DataError(source, "image contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        tol = FLOAT_RANGE_TOLERANCE
        if lo < -tol or hi > 1.0 + tol:
            raise DataError(
                source,
                f"float image with values in [{lo:.6g}, {hi:.6g}]; float images must hold values in [0, 1] "
                f"(e.g. divide 0-255 data by 255, or save it as 8/16-bit integers)",
            )
        x = np.clip(arr, 0.0, 1.0).astype(np.float32)
    else:
        raise DataError(source, f"unsupported image dtype {arr.dtype}")
    c = x.shape[2]
    if c in (2, 4):  # composite over white
        alpha = x[:, :, -1:]
        x = x[:, :, :-1] * alpha + (1.0 - alpha)
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(np.clip(x, 0.0, 1.0), dtype=np.float32)


def _normalise_size(size: Size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"size must be an int or a (height, width) pair, got {size!r}") from exc
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def resize_and_crop(
    img: np.ndarray, size: Size, source: str | os.PathLike[str] = "<array>"
) -> np.ndarray:
    """Scale ``img`` (``(H, W, C)`` float) down so it just covers ``size``, then centre-crop.

    ``size``: ``int`` (square ``size x size``) or ``(h, w)``; ``None`` returns ``img``.
    The scale factor is ``max(h / H, w / W) <= 1`` (the short side, relative to the
    target, lands exactly on the target); resizing uses ``skimage.transform.resize``
    (bilinear, ``anti_aliasing=True``).  Raises :class:`DataError` naming ``source``
    when ``H < h`` or ``W < w`` (no upsampling).  Returns ``(h, w, C)`` float32.
    """
    target = _normalise_size(size)
    if target is None:
        return img
    h, w = target
    H, W = img.shape[:2]
    if H < h or W < w:
        raise DataError(
            source, f"image is {H}x{W} (HxW), smaller than the requested {h}x{w}; not upsampling"
        )
    scale = max(h / H, w / W)
    if scale < 1.0:
        from skimage.transform import resize

        nh = max(h, int(math.floor(H * scale + 0.5)))
        nw = max(w, int(math.floor(W * scale + 0.5)))
        out = resize(
            img, (nh, nw) + img.shape[2:], order=1, mode="reflect", anti_aliasing=True,
            preserve_range=True,
        )
        img = np.clip(out, 0.0, 1.0).astype(np.float32)
    H, W = img.shape[:2]
    top = (H - h) // 2
    left = (W - w) // 2
    return np.ascontiguousarray(img[top : top + h, left : left + w], dtype=np.float32)


def load_image(path: str | os.PathLike[str], size: Size = None) -> np.ndarray:
    """Load an image file as ``(H, W, 3)`` float32 RGB in ``[0, 1]``.

    ``path``: any format Pillow reads (PNG, JPEG, BMP, GIF, WebP, PNM, ...), recognised
    by content, not name; TIFFs through tifffile (exact 16-bit/float colour).
    ``size``: ``None`` (keep), ``int`` (square) or ``(h, w)`` in pixels: the image is
    resized so its short side (relative to the target) matches, then centre-cropped,
    see :func:`resize_and_crop`.  See the module docstring for bit depth, grey,
    palette and alpha handling (alpha is composited over white).

    Raises :class:`DataError` naming the file when it is missing, empty, not an image,
    truncated/corrupt, over Pillow's decompression-bomb pixel limit, a float image
    outside ``[0, 1]``, or smaller than ``size``.
    """
    path = Path(path)
    arr = _decode(path)
    img = to_rgb_float(arr, path)
    return resize_and_crop(img, size, path)

