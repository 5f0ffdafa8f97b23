"""Images as coordinate -> colour datasets: pixel grids, the inverse reshape, evenly
spread evaluation pixels and the NTK window of pixels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def image_to_dataset(img: np.ndarray, pixels: str = "corners") -> tuple[np.ndarray, np.ndarray]:
    """Turn an image into a regression dataset.

    ``img``: ``(H, W)`` or ``(H, W, C)``, ``H, W >= 2``.
    Returns ``coords`` ``(H*W, 2)`` float32 in ``[0, 1]`` and ``values`` ``(H*W, C)``
    float32 (``C = 1`` for a 2-D input), pixels in row-major order so
    ``values.reshape(H, W, C)`` is the image. ``pixels="corners"`` (default):
    ``coords[:, 0] = col / (W-1)`` (x) and ``coords[:, 1] = row / (H-1)`` (y), the ends
    included (pixel (0, 0) at (0, 0)); ``pixels="centres"``: ``(col + 0.5) / W`` and
    ``(row + 0.5) / H`` (pixel (0, 0) at (0.5/W, 0.5/H), the centre of its cell).
    """
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {img.shape}")
    if pixels not in ("corners", "centres"):
        raise ValueError(f"pixels must be 'corners' or 'centres', got {pixels!r}")
    H, W, C = img.shape
    if H < 2 or W < 2:
        raise ValueError(f"image must be at least 2x2 pixels to normalise coordinates, got {H}x{W}")
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    if pixels == "corners":
        coords = np.stack([cols / (W - 1), rows / (H - 1)], axis=-1)
    else:
        coords = np.stack([(cols + 0.5) / W, (rows + 0.5) / H], axis=-1)
    values = img.reshape(H * W, C)
    return coords.reshape(H * W, 2).astype(np.float32), np.ascontiguousarray(values, dtype=np.float32)


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
