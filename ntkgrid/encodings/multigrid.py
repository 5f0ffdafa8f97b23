"""The paper's multigrid parametric encoding (MPE, its Eq. 3): dense learnable grids."""

from __future__ import annotations

import functools
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from ntkgrid._taps import tap
from ntkgrid.encodings.base import check_dim, dense_structure, level_resolutions
from ntkgrid.interpolate import check_interpolation, interpolate_dense

__all__ = ["MultiGrid"]


class MultiGrid(nn.Module):
    """The paper's multigrid parametric encoding (MPE, its Eq. 3).

    ``L`` dense grids whose resolutions run from ``min_res`` to ``max_res`` nodes per axis;
    every node holds ``k`` learnable scalars. A point is encoded by interpolating each
    level (by default linear, bilinear or trilinear for d = 1, 2, 3) and concatenating all
    levels with the raw input: ``[g^(0)(x), ..., g^(L-1)(x), x]``, ``L k + d`` features.

    ``interpolation`` picks the kernel (:data:`ntkgrid.interpolate.INTERPOLATIONS`; the
    definitions are in :mod:`ntkgrid.interpolate`): ``"nearest"`` (1 tap per point, ties
    round up), ``"linear"`` (the paper's, ``2**d`` taps), ``"smoothstep"`` (the same taps,
    tiny-cuda-nn's ``t^2 (3 - 2t)`` fraction) or ``"cubic"``: the uniform cubic B-spline,
    ``4**d`` taps, chosen over Catmull-Rom because it is C2, a partition of unity and
    non-negative (so the grid's NTK has no negative couplings); it does not interpolate
    the nodes, which a learned table does not need. Cubic taps past the grid's edge are
    clamped to the edge node.

    Node values are initialised from ``N(0, init_std^2)``. The paper writes N(0, 0.01)
    after Hadadan et al. (2021), whose PyTorch code calls ``normal_(std=0.01)``; we read
    0.01 as the standard deviation (PyTorch's own convention for that call), so the
    variance is 1e-4.

    Parameters are ``level_0 .. level_{L-1}``, each ``(prod(res_l), k)`` with axis 0
    fastest (see :mod:`ntkgrid.interpolate`).
    """

    is_grid: ClassVar[bool] = True  # a learnable grid: its parameters are level_0 .. level_{L-1}
    takes_unit_coords: ClassVar[bool] = True  # looks up x in [0, 1]^d whatever the coords

    dim: int  # coordinate dimension d (1, 2 or 3)
    num_levels: int = 1  # L, number of grids (tcnn: n_levels)
    features_per_level: int = 2  # k, learnable scalars per node (tcnn: n_features_per_level)
    min_res: int = 16  # nodes per axis of the coarsest level (tcnn: base_resolution)
    max_res: int = 128  # nodes per axis of the finest level
    spacing: str = "linear"  # how resolutions are spaced between levels: "linear" or "log"
    init_std: float = 0.01  # standard deviation of the N(0, init_std^2) node initialisation
    include_input: bool = True  # concatenate the raw coordinates, as the paper does
    interpolation: str = "linear"  # kernel: "nearest", "linear" (bi/trilinear), "smoothstep" or "cubic" (B-spline)
    param_dtype: jnp.dtype = jnp.float32  # dtype of the node tables

    def resolutions(self) -> list[int]:
        """Nodes per axis of each level."""
        return level_resolutions(self.num_levels, self.min_res, self.max_res, self.spacing)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """``x: (..., d) -> (..., L k [+ d])``."""
        if self.dim not in (1, 2, 3):
            raise ValueError(f"MultiGrid supports dim 1, 2 or 3, got {self.dim}")
        check_interpolation(self.interpolation, where="MultiGrid interpolation")
        check_dim(self, x, self.dim)
        dtype = jnp.result_type(x.dtype, self.param_dtype)
        x = x.astype(dtype)
        feats = []
        for level, r in enumerate(self.resolutions()):
            res = (r,) * self.dim
            table = self.param(
                f"level_{level}",
                nn.initializers.normal(self.init_std),
                (int(np.prod(res)), self.features_per_level),
                self.param_dtype,
            )
            table = table.astype(dtype)
            # interpolate_dense, not grid_level: its backward pass is faster than the generic
            # gather's. The corners for the NTK's structure are found only when it records them.
            values = interpolate_dense(table, x, res, self.interpolation)
            structure = functools.partial(dense_structure, table, x, res, self.interpolation)
            feats.append(tap(self, f"level_{level}", values, structure))
        if self.include_input:
            feats.append(x)
        return jnp.concatenate(feats, axis=-1)
