"""Loading one image file (8/16-bit, grey, palette, alpha) as RGB float32 in ``[0, 1]``,
resized on its short side and centre-cropped (the conventions are in :mod:`ntkgrid.data.images`)."""

from __future__ import annotations

import math
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from ntkgrid.data import DataError

Size = int | tuple[int, int] | None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_unfilter_row_slow(kind: int, cur: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """PNG 'Average' (3) and 'Paeth' (4) filters: inherently sequential along a row."""
    c = cur.tolist()
    p = prev.tolist()
    o = [0] * len(c)
    if kind == 3:
        for i in range(len(c)):
            a = o[i - bpp] if i >= bpp else 0
            o[i] = (c[i] + ((a + p[i]) >> 1)) & 0xFF
    else:
        for i in range(len(c)):
            if i >= bpp:
                a = o[i - bpp]
                d = p[i - bpp]
            else:
                a = d = 0
            b = p[i]
            pa = abs(b - d)
            pb = abs(a - d)
            pc = abs(a + b - 2 * d)
            if pa <= pb and pa <= pc:
                pred = a
            elif pb <= pc:
                pred = b
            else:
                pred = d
            o[i] = (c[i] + pred) & 0xFF
    return np.asarray(o, dtype=np.uint8)


def _read_png16_colour(path: Path, head: bytes) -> np.ndarray | None:
    """Decode a non-interlaced 16-bit colour PNG (RGB, RGBA or grey+alpha).

    Pillow has no 48/64-bit modes and silently drops such files to 8 bits, so they
    are decoded here.  Returns a ``uint16`` array ``(H, W, C)`` or ``None`` when the
    file is not such a PNG (the caller then uses imageio).
    """
    if not head.startswith(_PNG_SIGNATURE) or len(head) < 33 or head[12:16] != b"IHDR":
        return None
    width, height, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", head[16:29])
    if depth != 16 or ctype not in (2, 4, 6):
        return None
    if interlace:
        warnings.warn(
            f"{path}: interlaced 16-bit colour PNG; decoded through Pillow at 8-bit precision",
            stacklevel=3,
        )
        return None
    data = path.read_bytes()
    pos = len(_PNG_SIGNATURE)
    idat = bytearray()
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if pos + 12 + length > len(data):
            raise DataError(path, f"truncated PNG file (chunk {kind!r} runs past the end)")
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        elif kind == b"IEND":
            break
        pos += 12 + length
    channels = {2: 3, 4: 2, 6: 4}[ctype]
    bpp = 2 * channels
    stride = width * bpp
    try:
        raw = zlib.decompressobj().decompress(bytes(idat))
    except zlib.error as exc:
        raise DataError(path, f"corrupt PNG image data ({exc})") from exc
    if len(raw) < height * (stride + 1) or width == 0 or height == 0:
        raise DataError(path, "truncated PNG file (image data shorter than its header says)")
    rows = np.frombuffer(raw, dtype=np.uint8, count=height * (stride + 1)).reshape(height, stride + 1)
    out = np.empty((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind_f = int(rows[y, 0])
        cur = rows[y, 1:]
        if kind_f == 0:
            row = cur.copy()
        elif kind_f == 1:  # Sub: running sum along each byte lane (uint8 wraps mod 256)
            row = np.cumsum(cur.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind_f == 2:  # Up
            row = cur + prev
        elif kind_f in (3, 4):
            row = _png_unfilter_row_slow(kind_f, cur, prev, bpp)
        else:
            raise DataError(path, f"corrupt PNG file (unknown filter type {kind_f} in row {y})")
        out[y] = row
        prev = row
    return out.view(">u2").reshape(height, width, channels).astype(np.uint16)


def _decode(path: Path) -> np.ndarray:
    """Read the first frame of an image file as a raw array (any dtype/channels)."""
    import imageio.v3 as iio

    if not path.exists():
        raise DataError(path, "no such file")
    if path.is_dir():
        raise DataError(path, "is a directory, not an image file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise DataError(path, f"cannot open file ({exc})") from exc
    if not head:
        raise DataError(path, "empty file (0 bytes), not an image")
    arr = _read_png16_colour(path, head)
    if arr is not None:
        return arr
    # Pillow for everything; tifffile first for TIFF (exact 16-bit/float colour data).
    # Trying imageio's every plugin on a non-image is slow and leaks open files.
    plugins = ["pillow"]
    if path.suffix.lower() in (".tif", ".tiff"):
        plugins.insert(0, "tifffile")
    errors = []
    for plugin in plugins:
        try:
            return np.asarray(iio.imread(path, index=0, plugin=plugin))
        except Exception as exc:  # Pillow/tifffile raise many types (OSError, ValueError, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            errors.append(f"{type(exc).__name__}: {first}")
    raise DataError(path, f"not a readable image file ({'; '.join(errors)})")


def to_rgb_float(arr: np.ndarray, source: str | os.PathLike[str] = "<array>") -> np.ndarray:
    """Convert a decoded image array to ``(H, W, 3)`` float32 in ``[0, 1]``.

    ``arr``: ``(H, W)``, ``(H, W, 1)`` grey, ``(H, W, 2)`` grey+alpha, ``(H, W, 3)`` RGB or
    ``(H, W, 4)`` RGBA; dtype bool, uint8 (/255), uint16 (/65535), 32-bit integers
    (as produced by Pillow's mode ``"I"`` for 16-bit data: /65535 when the maximum is
    at most 65535, else /2**32-1 or /2**31-1), or float (clipped to ``[0, 1]``).
    Alpha is composited over white.  ``source`` only labels error messages.
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

    ``path``: any format imageio/Pillow reads (PNG 8/16-bit, JPEG, BMP, GIF, TIFF, ...).
    ``size``: ``None`` (keep), ``int`` (square) or ``(h, w)`` in pixels: the image is
    resized so its short side (relative to the target) matches, then centre-cropped,
    see :func:`resize_and_crop`.  See the module docstring for bit depth, grey,
    palette and alpha handling (alpha is composited over white).

    Raises :class:`DataError` naming the file when it is missing, empty, not an image,
    truncated/corrupt, or smaller than ``size``.
    """
    path = Path(path)
    arr = _decode(path)
    img = to_rgb_float(arr, path)
    return resize_and_crop(img, size, path)

