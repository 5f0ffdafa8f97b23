"""Shared pieces of the encodings: input checks, grid resolutions, tapped grid levels, and
:class:`Identity` (the paper's baseline, no encoding).

Coordinates are expected in the unit cube ``[0, 1]^d``.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from ntkgrid._taps import tap
from ntkgrid.interpolate import dense_taps, gather_interpolate

__all__ = ["Identity", "check_dim", "dense_structure", "grid_level", "level_resolutions", "sparse_structure"]


def check_dim(module: nn.Module, x: jnp.ndarray, dim: int | None) -> None:
    """Raise a ValueError naming the expected and received shapes if ``x.shape[-1] != dim``."""
    if dim is not None and (x.ndim == 0 or x.shape[-1] != dim):
        raise ValueError(
            f"{type(module).__name__} expects coordinates of shape (..., {dim}), got shape {tuple(x.shape)}"
        )


class Identity(nn.Module):
    """No encoding: returns ``x`` unchanged. ``(..., d) -> (..., d)``.

    With ``pad > 0`` it returns ``[0, ..., 0, x]`` ``(..., pad + d)``: the fan-in-matched
    baseline (:func:`ntkgrid.theory.fan_in_matched_baseline`) feeds a first layer as wide as
    an encoded network's the raw coordinates in the encoding's raw-coordinate columns and
    zeros in place of the encoding's features.
    """

    is_grid: ClassVar[bool] = False  # not a learnable grid
    takes_unit_coords: ClassVar[bool] = False  # coords="signed" maps x to 2x - 1 first

    dim: int | None = None  # expected coordinate dimension d (None: any)
    pad: int = 0  # zero features prepended before x (0: x unchanged)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        check_dim(self, x, self.dim)
        if self.pad < 0:
            raise ValueError(f"Identity pad must be >= 0, got {self.pad}")
        if self.pad:
            return jnp.concatenate([jnp.zeros(x.shape[:-1] + (self.pad,), x.dtype), x], axis=-1)
        return x


def level_resolutions(num_levels: int, min_res: int, max_res: int, spacing: str = "linear") -> list[int]:
    """Nodes per axis of each level, from ``min_res`` (level 0) to ``max_res`` (last level).

    ``spacing="linear"`` rounds ``linspace(min_res, max_res, L)``; ``"log"`` rounds
    ``geomspace`` (a constant growth factor per level, as in hash grids).

    Args:
      num_levels: L, number of levels (tcnn: ``n_levels``).
      min_res: nodes per axis of level 0, at least 2 (tcnn: ``base_resolution``).
      max_res: nodes per axis of level L - 1 (the only level when L = 1).
      spacing: ``"linear"`` or ``"log"``.

    Returns:
      ``L`` integers, nodes per axis of each level (coarsest first).
    """
    if num_levels < 1 or min_res < 2 or max_res < min_res:
        raise ValueError(f"need num_levels >= 1 and 2 <= min_res <= max_res, got {num_levels}, {min_res}, {max_res}")
    if num_levels == 1:
        return [int(max_res)]
    if spacing == "linear":
        r = np.linspace(min_res, max_res, num_levels)
    elif spacing == "log":
        r = np.geomspace(min_res, max_res, num_levels)
    else:
        raise ValueError(f"spacing must be 'linear' or 'log', got {spacing!r}")
    return [int(v) for v in np.round(r)]


def grid_level(module: nn.Module, name: str, table: jnp.ndarray, idx: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """Interpolate one grid level and tap it for the structured NTK.

    Args:
      module: the encoding that owns ``table``.
      name: the parameter's name (also the tap's name).
      table: ``(T, k)`` node features.
      idx: ``(..., C)`` node indices of each point's corners.
      w: ``(..., C)`` interpolation weights.

    Returns:
      ``(..., k)`` features.
    """
    return tap(module, name, gather_interpolate(table, idx, w), sparse_structure(table, idx, w))


def sparse_structure(table: jnp.ndarray, idx: jnp.ndarray, w: jnp.ndarray) -> dict:
    """The tap structure of ``sum_c w[..., c] table[idx[..., c]]`` (see :mod:`ntkgrid._taps`)."""
    return {"kind": "sparse", "idx": idx, "w": w.astype(table.dtype), "n_params": table.size}


def dense_structure(table: jnp.ndarray, x: jnp.ndarray, res: tuple[int, ...], interpolation: str) -> dict:
    """The tap structure of a dense level: :func:`sparse_structure` of the taps of ``x`` on the
    ``res`` grid (1, ``2**d`` or ``4**d`` per point, :func:`~ntkgrid.interpolate.dense_taps`;
    found only when the structured NTK records them)."""
    return sparse_structure(table, *dense_taps(x, res, interpolation))
