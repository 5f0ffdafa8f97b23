"""The images of a sweep: which ones (:func:`select_sources`), and their pixels
(:func:`load_source`, :func:`resolve_image` for the single-image experiments)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np

from ntkgrid import files
from ntkgrid.data import DataError
from ntkgrid.data import images as I

__all__ = ["ImageSource", "load_source", "resolve_image", "select_sources"]

_BUNDLED = "skimage.data."


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """One image of a sweep.

    Attributes:
      image_id: unique, file-name safe id (``<synset>_<file stem>`` or a bundled name).
      source: the file path, or ``skimage.data.<name>`` for a bundled photo.
      synset: the class folder (``None`` for bundled photos).
    """

    image_id: str
    source: str
    synset: str | None = None

    @property
    def bundled(self) -> bool:
        """Whether the image is one of scikit-image's bundled photos."""
        return self.source.startswith(_BUNDLED)


def _bundled_sources(num_images: int, seed: int) -> list[ImageSource]:
    """``num_images`` bundled photos (all when there are fewer; else a ``seed``-drawn subset), in name order."""
    names = list(I.BUNDLED_IMAGE_NAMES)
    if num_images < len(names):
        pick = np.random.default_rng(seed).choice(len(names), num_images, replace=False)
        names = [names[i] for i in sorted(pick)]
    return [ImageSource(n, f"{_BUNDLED}{n}") for n in names]


def select_sources(data_root: str | os.PathLike | None, num_images: int,
                   seed: int) -> tuple[list[ImageSource], list[str]]:
    """The images of a sweep and the warnings raised while choosing them.

    Args:
      data_root: ``None`` for ``num_images`` of scikit-image's bundled photos
        (:data:`ntkgrid.data.images.BUNDLED_IMAGE_NAMES`; all when ``num_images`` is
        larger, else a ``seed``-drawn subset), in name order. Otherwise one image per synset
        of an ImageNet-style folder ``<root>/<wnid>/<image>``
        (:func:`ntkgrid.data.images.scan_image_folder`).
      num_images: how many images (>= 1).
      seed: seed of the draw.

    Returns:
      ``([ImageSource], [warning message])``. Raises :class:`DataError` for a missing or
      empty root, ``ValueError`` for ``num_images < 1``.
    """
    if num_images < 1:
        raise ValueError(f"the number of images must be >= 1, got {num_images}")
    if data_root is None:
        return _bundled_sources(num_images, seed), []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = I.scan_image_folder(data_root, num_images, seed)
    out, seen = [], set()
    for r in records:
        iid = files.safe_name(f"{r.synset}_{r.name}", "image")
        while iid in seen:
            iid += "_"
        seen.add(iid)
        out.append(ImageSource(iid, str(r.path), r.synset))
    return out, [str(w.message) for w in caught]


def load_source(src: ImageSource, size: int) -> np.ndarray:
    """The pixels of ``src``.

    Args:
      src: the image.
      size: side in pixels.

    Returns:
      ``(size, size, 3)`` float32 in ``[0, 1]`` (grey, alpha and 16-bit files are converted
      by :func:`ntkgrid.data.images.load_image`). Raises :class:`DataError` naming the file
      when it cannot be used (unreadable, truncated, not an image, too small).
    """
    if src.bundled:
        return I.bundled_image(src.source.removeprefix(_BUNDLED), size)
    return I.load_image(src.source, size)


def resolve_image(spec: str | os.PathLike, size: int) -> tuple[ImageSource, np.ndarray]:
    """``--image`` of the single-image experiments.

    Args:
      spec: a bundled photo's name (e.g. ``"chelsea"``) or an image file.
      size: side in pixels.

    Returns:
      ``(ImageSource, (size, size, 3) float32 image)``; raises :class:`DataError` naming
      the file (or the unknown name) when unusable.
    """
    text = str(spec)
    if text in I.BUNDLED_IMAGE_NAMES:
        src = ImageSource(text, f"{_BUNDLED}{text}")
    elif not Path(text).exists() and not any(c in text for c in "/\\."):
        raise DataError(text, "neither an image file nor a bundled photo; bundled photos: "
                        + ", ".join(I.BUNDLED_IMAGE_NAMES))
    else:
        src = ImageSource(files.safe_name(Path(text).stem, "image"), str(Path(text)))
    return src, load_source(src, size)
