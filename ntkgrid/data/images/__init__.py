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
* The format is recognised from the file's content (a PNG named ``.JPEG`` loads as the
  PNG it is).  Pillow decodes everything but TIFF, which goes through tifffile (then
  Pillow).  Every file is checked against Pillow's decompression-bomb limit
  (``PIL.Image.MAX_IMAGE_PIXELS`` pixels, read at call time; ``None`` disables it)
  before its pixels are decoded; larger images raise :class:`ntkgrid.data.DataError`.
* EXIF orientation is applied (``PIL.ImageOps.exif_transpose``; the TIFF orientation
  tag likewise), so a rotated camera JPEG loads upright.
* 8-bit data is divided by 255, 16-bit grey data by 65535 (full precision).  16-bit
  *colour* PNGs (RGB, RGBA, grey+alpha) are read by Pillow at 8 bits per sample (the
  high byte, ``v // 256 / 255``); Pillow has no 16-bit colour mode and no other
  installed library decodes them.  16-bit colour TIFFs keep full precision (tifffile).
  Booleans map to 0/1.
* Floating-point data (e.g. float TIFF) must already be in ``[0, 1]``: values at most
  ``FLOAT_RANGE_TOLERANCE`` (1e-3) outside are clipped, anything further out (a float
  TIFF holding 0-255, say) or NaN/inf is refused with the range found, never clipped.
* CMYK (e.g. ImageNet's CMYK JPEGs) is converted to RGB by Pillow's
  ``Image.convert("RGB")``, ``R = (255 - C)(255 - K) / 255`` etc. (as torchvision's
  ImageNet loader does; embedded ICC profiles are not applied).  YCbCr, LAB and HSV
  images are converted to RGB by Pillow.
* Grey -> RGB by repetition; palette images are expanded through their palette.
* Alpha (RGBA, LA, PA, palette transparency; premultiplied modes are unpacked first) is
  **composited over white**: ``rgb * a + (1 - a)``; the result has no alpha channel.
* Multi-frame files (GIF, multi-page TIFF) contribute their first frame.
* ``size`` resizes the *short side* down (``skimage.transform.resize`` with
  anti-aliasing) and centre-crops; images smaller than ``size`` are rejected,
  never upsampled.

Every problem with a file raises :class:`ntkgrid.data.DataError` naming the file.

Modules: :mod:`~ntkgrid.data.images.load` (one file to an image),
:mod:`~ntkgrid.data.images.sources` (bundled photos, ImageNet-style folders, shards) and
:mod:`~ntkgrid.data.images.datasets` (pixel-grid datasets and pixel selections).
"""

from ntkgrid.data.images.datasets import dataset_to_image, eval_subset, image_to_dataset, ntk_window
from ntkgrid.data.images.load import load_image, resize_and_crop, to_rgb_float
from ntkgrid.data.images.sources import (
    BUNDLED_IMAGE_NAMES,
    DEFAULT_IMAGE_EXTS,
    ImageRecord,
    bundled_image,
    bundled_images,
    load_records,
    scan_image_folder,
    shard,
)

__all__ = [
    "BUNDLED_IMAGE_NAMES",
    "DEFAULT_IMAGE_EXTS",
    "ImageRecord",
    "bundled_image",
    "bundled_images",
    "dataset_to_image",
    "eval_subset",
    "image_to_dataset",
    "load_image",
    "load_records",
    "ntk_window",
    "resize_and_crop",
    "scan_image_folder",
    "shard",
    "to_rgb_float",
]
