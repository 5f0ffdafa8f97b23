"""Images as coordinate -> colour datasets (pure NumPy).

Conventions used throughout this module
---------------------------------------
* An *image* is an ``np.ndarray`` of shape ``(H, W, 3)``, dtype ``float32``, values in
  ``[0, 1]`` (linear scaling of the stored code values; no gamma handling).
* Pixel coordinates are normalised to ``[0, 1]`` **including both ends**:
  ``coords[k, 0] = x = col / (W - 1)`` and ``coords[k, 1] = y = row / (H - 1)``, so
  ``(0, 0)`` is the centre of the top-left pixel and ``(1, 1)`` the centre of the
  bottom-right one; ``y`` grows downwards (image convention).
* Pixels are enumerated in row-major order: ``k = row * W + col``, hence
  ``values.reshape(H, W, C)`` gives the image back.

Loading rules (:func:`load_image`)
----------------------------------
* 8-bit data is divided by 255, 16-bit data by 65535 (16-bit colour PNGs, which
  Pillow would silently truncate to 8 bits, are decoded here at full precision),
  floating-point data is taken as already in ``[0, 1]`` and clipped, booleans map
  to 0/1.
* Grey -> RGB by repetition; palette images are expanded through their palette.
* Alpha (RGBA, LA, palette transparency) is **composited over white**:
  ``rgb * a + (1 - a)``; the result has no alpha channel.
* Multi-frame files (GIF, multi-page TIFF) contribute their first frame.
* ``size`` resizes the *short side* down (``skimage.transform.resize`` with
  anti-aliasing) and centre-crops; images smaller than ``size`` are rejected,
  never upsampled.

Every problem with a file raises :class:`ntkgrid.data.DataError` naming the file.
"""

from __future__ import annotations

import functools
import math
import os
import re
import struct
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import DataError

__all__ = [
    "BUNDLED_IMAGE_NAMES",
    "DEFAULT_IMAGE_EXTS",
    "ImageRecord",
    "bundled_image",
    "bundled_images",
    "dataset_to_image",
    "eval_subset",
    "ntk_window",
    "image_to_dataset",
    "load_image",
    "load_records",
    "resize_and_crop",
    "scan_image_folder",
    "shard",
    "to_rgb_float",
]

Size = int | tuple[int, int] | None

#: Photographs shipped inside scikit-image's wheel that load without any download
#: (checked offline with scikit-image 0.26); sorted, so iteration order is fixed.
BUNDLED_IMAGE_NAMES: tuple[str, ...] = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "coffee",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
)

#: File name endings (compared case-insensitively) treated as images by
#: :func:`scan_image_folder`.
DEFAULT_IMAGE_EXTS: tuple[str, ...] = (
    ".jpeg",
    ".jpg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)


# ----------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------
# Bundled photos (scikit-image)
# ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _bundled_raw(name: str) -> np.ndarray:
    import skimage.data

    arr = getattr(skimage.data, name)()
    arr = to_rgb_float(np.asarray(arr), f"skimage.data.{name}")
    arr.setflags(write=False)
    return arr


def bundled_image(name: str, size: Size = None) -> np.ndarray:
    """One photo shipped with scikit-image, as ``(H, W, 3)`` float32 in ``[0, 1]``.

    ``name``: one of :data:`BUNDLED_IMAGE_NAMES` (grey photos such as ``camera`` are
    repeated to RGB).  ``size`` as in :func:`load_image`.  No network access.
    Raises :class:`DataError` for an unknown name or one that cannot be loaded.
    """
    if name not in BUNDLED_IMAGE_NAMES:
        raise DataError(
            f"skimage.data.{name}",
            f"not a bundled image; choose one of {', '.join(BUNDLED_IMAGE_NAMES)}",
        )
    try:
        img = _bundled_raw(name)
    except DataError:
        raise
    except Exception as exc:  # e.g. a future scikit-image that moved it to a download
        raise DataError(
            f"skimage.data.{name}", f"cannot be loaded offline ({type(exc).__name__}: {exc})"
        ) from exc
    return resize_and_crop(img.copy(), size, f"skimage.data.{name}")


def bundled_images(size: Size = None) -> dict[str, np.ndarray]:
    """All loadable photos of :data:`BUNDLED_IMAGE_NAMES`, in that (sorted) order.

    Returns ``{name: (H, W, 3) float32 in [0, 1]}``; ``size`` as in :func:`load_image`
    (photos smaller than ``size`` are left out with a warning, as are any that this
    scikit-image cannot load without a download).
    """
    out: dict[str, np.ndarray] = {}
    for name in BUNDLED_IMAGE_NAMES:
        try:
            out[name] = bundled_image(name, size)
        except DataError as exc:
            warnings.warn(f"skipping bundled image: {exc}", stacklevel=2)
    return out


# ----------------------------------------------------------------------------------
# ImageNet-style folders
# ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRecord:
    """One image picked from an ImageNet-style folder.

    ``synset``: the class folder name (e.g. ``"n01440764"``); ``path``: the file;
    ``name``: the file name without its extension (e.g. ``"n01440764_10026"``).
    """

    synset: str
    path: Path
    name: str


def _image_files(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    files = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if entry.name.lower().endswith(exts) and entry.is_file():
                files.append(Path(entry.path))
    return sorted(files, key=lambda p: p.name)


def scan_image_folder(
    root: str | os.PathLike[str],
    num_synsets: int = 100,
    seed: int = 0,
    exts: Sequence[str] = DEFAULT_IMAGE_EXTS,
) -> list[ImageRecord]:
    """Pick one image from each of ``num_synsets`` class folders of ``<root>/<wnid>/<image>``.

    Deterministic for a given folder content and ``seed``: the synset folders are
    sorted by name and visited in the order of ``np.random.default_rng(seed)
    .permutation``; folders without image files (by ``exts``, case-insensitive,
    hidden files ignored) are skipped with a warning, until ``num_synsets`` are
    found (fewer available: all are taken, with a warning).  Then, in synset-name
    order, one image per synset is drawn with the same generator.  Returns the
    records sorted by synset.  Raises :class:`DataError` when ``root`` is missing,
    not a folder, or has no synset folders.
    """
    if num_synsets < 1:
        raise ValueError(f"num_synsets must be >= 1, got {num_synsets}")
    root = Path(root)
    if not root.exists():
        raise DataError(root, "image folder does not exist")
    if not root.is_dir():
        raise DataError(root, "is not a folder (expected <root>/<synset>/<image>)")
    ext_t = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in exts)
    synsets = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not synsets:
        raise DataError(root, "image folder is empty (no <synset>/ sub-folders)")
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[Path]] = {}
    for k in rng.permutation(len(synsets)):
        syn = synsets[int(k)]
        files = _image_files(root / syn, ext_t)
        if not files:
            warnings.warn(f"{root / syn}: no image files ({', '.join(ext_t)}); skipped", stacklevel=2)
            continue
        chosen[syn] = files
        if len(chosen) == num_synsets:
            break
    if not chosen:
        raise DataError(root, "no image files in any synset folder")
    if len(chosen) < num_synsets:
        warnings.warn(
            f"{root}: only {len(chosen)} synset folders with images, fewer than the "
            f"{num_synsets} requested; taking all of them",
            stacklevel=2,
        )
    records = []
    for syn in sorted(chosen):
        files = chosen[syn]
        f = files[int(rng.integers(len(files)))]
        records.append(ImageRecord(synset=syn, path=f, name=f.stem))
    return records


_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def shard(records: Sequence, spec: str | None) -> list:
    """Deterministic shard ``"i/n"`` of ``records``: items ``i, i+n, i+2n, ...``.

    ``spec``: ``"i/n"`` with integers ``n >= 1`` and ``0 <= i < n``; ``None`` means all.
    The ``n`` shards partition ``records`` (their sizes differ by at most one).
    Raises ``ValueError`` for a malformed spec.
    """
    if spec is None:
        return list(records)
    m = _SHARD_RE.match(str(spec))
    if not m:
        raise ValueError(f"shard spec must look like 'i/n' (e.g. '0/4'), got {spec!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1:
        raise ValueError(f"shard spec {spec!r}: the number of shards n must be >= 1")
    if not 0 <= i < n:
        raise ValueError(f"shard spec {spec!r}: the shard index i must be in 0..{n - 1}")
    return list(records)[i::n]


def load_records(
    records: Iterable[ImageRecord], size: Size
) -> tuple[list[tuple[ImageRecord, np.ndarray]], list[tuple[ImageRecord, str]]]:
    """Load each record's image with :func:`load_image` (``size`` as there).

    Returns ``(loaded, skipped)``: ``loaded`` is ``[(record, (h, w, 3) float32)]`` in
    input order; ``skipped`` is ``[(record, reason)]`` for files that could not be
    used (unreadable, truncated, too small, ...), each also reported with
    ``warnings.warn``.  One bad file never discards the others.
    """
    loaded: list[tuple[ImageRecord, np.ndarray]] = []
    skipped: list[tuple[ImageRecord, str]] = []
    for rec in records:
        try:
            img = load_image(rec.path, size)
        except DataError as exc:
            reason = str(exc)
        except Exception as exc:  # never lose the results already loaded
            reason = f"{rec.path}: {type(exc).__name__}: {exc}"
        else:
            loaded.append((rec, img))
            continue
        warnings.warn(f"skipping image: {reason}", stacklevel=2)
        skipped.append((rec, reason))
    return loaded, skipped


# ----------------------------------------------------------------------------------
# Pixel grids <-> datasets
# ----------------------------------------------------------------------------------


def image_to_dataset(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn an image into a regression dataset.

    ``img``: ``(H, W)`` or ``(H, W, C)``, ``H, W >= 2``.
    Returns ``coords`` ``(H*W, 2)`` float32 with ``coords[:, 0] = col / (W-1)`` (x) and
    ``coords[:, 1] = row / (H-1)`` (y), both in ``[0, 1]`` with the ends included, and
    ``values`` ``(H*W, C)`` float32 (``C = 1`` for a 2-D input), pixels in row-major
    order so ``values.reshape(H, W, C)`` is the image.
    """
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {img.shape}")
    H, W, C = img.shape
    if H < 2 or W < 2:
        raise ValueError(f"image must be at least 2x2 pixels to normalise coordinates, got {H}x{W}")
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    coords = np.stack([cols / (W - 1), rows / (H - 1)], axis=-1).reshape(H * W, 2)
    values = img.reshape(H * W, C)
    return coords.astype(np.float32), np.ascontiguousarray(values, dtype=np.float32)


def dataset_to_image(values: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`image_to_dataset` for the values.

    ``values``: ``(H*W, C)`` or ``(H*W,)``; ``shape``: ``(H, W)`` or ``(H, W, C)``.
    Returns ``(H, W, C)`` (``C = 1`` for 1-D values), same dtype as ``values``.
    """
    values = np.asarray(values)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (H, W) or (H, W, C), got {tuple(shape)}")
    H, W = int(shape[0]), int(shape[1])
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] != H * W:
        raise ValueError(f"values of shape {values.shape} do not fit an image of {H}x{W} pixels")
    if len(shape) == 3 and values.shape[1] != int(shape[2]):
        raise ValueError(f"values have {values.shape[1]} channels, shape says {shape[2]}")
    return values.reshape(H, W, values.shape[1])


def _spread(k: int, n: int) -> np.ndarray:
    """``k`` distinct integers evenly spread over ``0..n-1`` including both ends."""
    if k >= n:
        return np.arange(n)
    if k == 1:
        return np.array([(n - 1) // 2])
    i = np.arange(k, dtype=np.int64)
    return (2 * i * (n - 1) + (k - 1)) // (2 * (k - 1))  # round(i*(n-1)/(k-1)), half up


def eval_subset(shape: Sequence[int], n_points: int) -> np.ndarray:
    """Fixed regular sub-grid of pixels, e.g. for NTK spectra on a subset.

    ``shape``: ``(H, W[, C])``; ``n_points``: wanted number of pixels.
    Returns flat row-major pixel indices (``int64``, sorted, distinct) into the
    ``H*W`` rows of :func:`image_to_dataset`'s arrays.  Rows and columns are each
    spread evenly over the whole image, first and last included:

    * ``n_points >= H*W``: every pixel;
    * ``n_points = k*k`` with ``k <= min(H, W)``: exactly a ``k x k`` grid (``n_points``);
    * otherwise an ``r x c`` grid with ``r/c`` close to ``H/W`` and ``r*c`` close to
      ``n_points`` (within a row or column of it).
    """
    H, W = int(shape[0]), int(shape[1])
    n = int(n_points)
    if n < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    if n >= H * W:
        return np.arange(H * W, dtype=np.int64)
    k = math.isqrt(n)
    if k * k == n and k <= min(H, W):
        r = c = k
    else:
        r = int(min(H, max(1, round(math.sqrt(n * H / W)))))
        c = int(min(W, max(1, round(n / r))))
        r = int(min(H, max(1, round(n / c))))
    rows = _spread(r, H)
    cols = _spread(c, W)
    return (rows[:, None] * W + cols[None, :]).reshape(-1).astype(np.int64)


def ntk_window(shape: Sequence[int], n_points: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A contiguous, centred block of pixels for NTK spectra on the training set.

    The NTK of a grid model is only meaningful on points that share grid nodes as they do
    in training; a strided subset (:func:`eval_subset`) makes the grid kernel diagonal. So
    a cap on the number of kernel points takes a window of the image at training
    resolution, every pixel of one block, never a strided or random subset.

    ``shape``: ``(H, W[, C])``; ``n_points``: the cap, ``1 <= n_points <= H*W``.
    Returns ``(indices, (h, w))``: flat row-major pixel indices (``int64``, sorted) of the
    ``h x w`` block centred in the image, with ``h = min(H, isqrt(n))`` and
    ``w = min(W, n // h)`` (so ``h*w <= n``, and ``h*w == n`` for a square ``n`` that fits),
    and the block's shape. ``n_points >= H*W`` is an error: ask for all pixels instead.
    """
    H, W = int(shape[0]), int(shape[1])
    n = int(n_points)
    if n < 1:
        raise ValueError(f"NTK window: n_points must be >= 1, got {n_points}")
    if n > H * W:
        raise ValueError(f"NTK window: {n} points requested but the image has only {H}x{W} = {H * W} pixels")
    h = min(H, math.isqrt(n))
    w = min(W, n // h)
    h = min(H, n // w)
    r0, c0 = (H - h) // 2, (W - w) // 2
    rows, cols = np.arange(r0, r0 + h), np.arange(c0, c0 + w)
    return (rows[:, None] * W + cols[None, :]).reshape(-1).astype(np.int64), (h, w)
