"""Where images come from: scikit-image's bundled photos, ImageNet-style folders (one
sub-folder per synset) scanned into :class:`ImageRecord` lists, and shards of those lists."""

from __future__ import annotations

import errno
import functools
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ntkgrid.data import DataError
from ntkgrid.data.images.load import Size, load_image, resize_and_crop, to_rgb_float

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



@functools.cache
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


def _os_problem(err: OSError) -> str:
    """A short name for why a path cannot be used (a symlink loop says so)."""
    if err.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    return err.strerror or type(err).__name__


def _image_files(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    """The image files of a synset folder (by extension, hidden files ignored), by name. An
    entry that cannot be followed (a symlink loop, no permission) and a folder that cannot
    be listed are skipped with a warning naming the path and the problem."""
    files = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.startswith(".") or not entry.name.lower().endswith(exts):
                    continue
                try:
                    ok = entry.is_file()
                except OSError as err:
                    warnings.warn(f"{entry.path}: {_os_problem(err)}; skipped", stacklevel=3)
                    continue
                if ok:
                    files.append(Path(entry.path))
    except OSError as err:
        warnings.warn(f"{folder}: cannot be listed ({_os_problem(err)}); skipped", stacklevel=3)
        return []
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
    try:
        synsets = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as err:
        raise DataError(root, f"image folder cannot be listed ({_os_problem(err)})") from err
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

