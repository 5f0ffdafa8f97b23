"""Multilinear interpolation on dense and hashed grids, written as flat gathers.

Conventions (shared by every grid encoding and by the structured NTK):

* Coordinates ``x`` have shape ``(..., d)`` with ``d`` in {1, 2, 3} and live in the unit
  cube. Values outside ``[0, 1]`` are **clamped** to it before interpolation, so the
  encoding is constant outside the domain (its derivative there is zero).
* A dense grid with ``res`` nodes per axis (a tuple ``(r_0, ..., r_{d-1})``) puts node
  ``i`` of axis ``a`` at ``i / (r_a - 1)``: the first and last nodes sit exactly on 0 and 1,
  like ``torch.nn.functional.grid_sample(..., align_corners=True)``. ``x = 1`` lands on the
  last node (cell ``r_a - 2`` with fraction 1).
* Node tables are flat, ``(T, k)`` with ``T = prod(res)``, indexed with axis 0 fastest:
  ``flat = i_0 + r_0 * (i_1 + r_1 * i_2)`` (tiny-cuda-nn's dense order). So a 2D table
  reshaped to ``(r_1, r_0, k)`` is an image with rows along ``x_1`` and columns along
  ``x_0``.
* Corner ``c`` in ``0 .. 2**d - 1`` takes the upper node on axis ``a`` when bit ``a`` of
  ``c`` is set.

Every interpolant here is ``sum_c w_c(x) * table[idx_c(x)]``: linear in the table, which is
why the grid part of the NTK reduces to a Gram matrix of these sparse weights
(:mod:`ntkgrid.ntk`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

__all__ = [
    "corner_bits",
    "corner_weights",
    "dense_cells",
    "dense_corners",
    "dense_strides",
    "gather_interpolate",
    "interpolate_dense",
]


def corner_bits(d: int) -> np.ndarray:
    """``(2**d, d)`` int array; row ``c`` holds the bits of corner ``c`` (axis 0 first)."""
    c = np.arange(2**d)[:, None]
    return ((c >> np.arange(d)[None, :]) & 1).astype(np.int32)


def corner_weights(frac: jnp.ndarray, interpolation: str = "linear") -> jnp.ndarray:
    """Tensor-product weights of the ``2**d`` cell corners.

    Args:
      frac: ``(..., d)`` position inside the cell, in ``[0, 1]``.
      interpolation: ``"linear"`` (multilinear) or ``"smoothstep"`` (the fraction is
        first mapped through ``3t^2 - 2t^3``, as tiny-cuda-nn's ``Smoothstep``).

    Returns:
      ``(..., 2**d)`` weights that sum to one.
    """
    if interpolation == "smoothstep":
        frac = frac * frac * (3.0 - 2.0 * frac)
    elif interpolation != "linear":
        raise ValueError(f"interpolation must be 'linear' or 'smoothstep', got {interpolation!r}")
    d = frac.shape[-1]
    bits = corner_bits(d)
    w = jnp.ones(frac.shape[:-1] + (2**d,), frac.dtype)
    for a in range(d):  # d <= 3 factors; each is one fused elementwise op
        fa = frac[..., a : a + 1]
        w = w * jnp.where(bits[:, a] == 1, fa, 1.0 - fa)
    return w


def dense_strides(res: Sequence[int]) -> np.ndarray:
    """Flat-index strides of a dense grid, axis 0 fastest: ``(1, r_0, r_0 r_1)``."""
    return np.concatenate([[1], np.cumprod(np.asarray(res[:-1], dtype=np.int64))]).astype(np.int32)


def dense_cells(x: jnp.ndarray, res: Sequence[int]) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Lower cell corner and in-cell fraction of ``x`` on a node-aligned dense grid.

    Args:
      x: ``(..., d)`` coordinates; clamped to ``[0, 1]``.
      res: nodes per axis, each at least 2.

    Returns:
      ``(base, frac)``: ``(..., d)`` int32 lower-node indices in ``[0, r - 2]`` and
      ``(..., d)`` fractions in ``[0, 1]`` (``x = 1`` gives ``base = r - 2, frac = 1``).
    """
    r = np.asarray(res)
    if np.any(r < 2):
        raise ValueError(f"every grid axis needs at least 2 nodes, got {tuple(res)}")
    pos = jnp.clip(x, 0.0, 1.0) * (r - 1).astype(x.dtype)
    base = jnp.clip(jnp.floor(pos), 0, r - 2)
    return base.astype(jnp.int32), pos - base


def dense_corners(
    x: jnp.ndarray, res: Sequence[int], interpolation: str = "linear"
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Flat node indices and weights of the ``2**d`` corners around each point.

    Args:
      x: ``(..., d)`` coordinates in ``[0, 1]`` (clamped).
      res: nodes per axis (length ``d``).
      interpolation: ``"linear"`` or ``"smoothstep"``.

    Returns:
      ``(idx, w)``: ``(..., 2**d)`` int32 indices into a ``(prod(res), k)`` table and
      ``(..., 2**d)`` weights (dtype of ``x``).
    """
    d = x.shape[-1]
    if len(res) != d:
        raise ValueError(f"grid has {len(res)} axes but points have d={d}")
    base, frac = dense_cells(x, res)
    strides = jnp.asarray(dense_strides(res))
    flat_base = jnp.sum(base * strides, axis=-1, keepdims=True)
    offsets = jnp.asarray(corner_bits(d) @ dense_strides(res))  # (2**d,)
    return flat_base + offsets, corner_weights(frac, interpolation)


def gather_interpolate(table: jnp.ndarray, idx: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """``sum_c w[..., c] * table[idx[..., c]]``.

    Args:
      table: ``(T, k)`` node values.
      idx: ``(..., C)`` int indices into ``table``'s first axis.
      w: ``(..., C)`` weights.

    Returns:
      ``(..., k)`` interpolated features, in ``table``'s dtype.
    """
    w = w.astype(table.dtype)
    out = None
    for c in range(idx.shape[-1]):  # one flat gather per corner, weight fused into the sum
        term = w[..., c : c + 1] * jnp.take(table, idx[..., c], axis=0, mode="clip")
        out = term if out is None else out + term
    return out


def interpolate_dense(
    table: jnp.ndarray, x: jnp.ndarray, res: Sequence[int], interpolation: str = "linear"
) -> jnp.ndarray:
    """Linear / bilinear / trilinear interpolation of a dense node table.

    Args:
      table: ``(prod(res), k)`` node values, axis 0 fastest (see module docstring).
      x: ``(..., d)`` coordinates in ``[0, 1]`` (clamped).
      res: nodes per axis.
      interpolation: ``"linear"`` or ``"smoothstep"``.

    Returns:
      ``(..., k)`` values.

    Example:
      >>> import jax.numpy as jnp
      >>> table = jnp.arange(4.0).reshape(4, 1)        # 2x2 grid, values 0 1 / 2 3
      >>> interpolate_dense(table, jnp.array([[0.5, 0.5], [1.0, 0.0]]), (2, 2))[:, 0]
      Array([1.5, 1. ], dtype=float32)
    """
    if table.shape[0] != int(np.prod(res)):
        raise ValueError(f"table has {table.shape[0]} rows, grid {tuple(res)} needs {int(np.prod(res))}")
    idx, w = dense_corners(x, res, interpolation)
    return gather_interpolate(table, idx, w)
