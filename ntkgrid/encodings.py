"""Input encodings as Flax Linen modules: ``(..., d) -> (..., F)``.

* :class:`Identity` - no encoding (the paper's baseline).
* :class:`FourierFeatures` - the paper's axis-aligned logarithmic encoding (its Eq. 1).
* :class:`GaussianFourierFeatures` - Tancik et al.'s random Fourier features.
* :class:`MultiGrid` - the paper's multigrid parametric encoding, MPE (its Eq. 3).
* :class:`HashGrid` - Mueller et al.'s multiresolution hash encoding (tiny-cuda-nn).
* :class:`MulFAGrid` - Zhao et al.'s multiplicative-filter Fourier-informed grid.

Coordinates are expected in the unit cube ``[0, 1]^d``. ``MultiGrid`` clamps to it (the
encoding is constant outside); ``HashGrid`` follows tiny-cuda-nn and does not clamp.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from ntkgrid._taps import tap
from ntkgrid.interpolate import dense_corners, gather_interpolate, interpolate_dense

__all__ = [
    "FourierFeatures",
    "HashGrid",
    "GaussianFourierFeatures",
    "Identity",
    "MulFAGrid",
    "MultiGrid",
    "check_dim",
    "grid_level",
    "level_resolutions",
    "sparse_structure",
]


def check_dim(module: nn.Module, x: jnp.ndarray, dim: int | None) -> None:
    """Raise a ValueError naming the expected and received shapes if ``x.shape[-1] != dim``."""
    if dim is not None and (x.ndim == 0 or x.shape[-1] != dim):
        raise ValueError(
            f"{type(module).__name__} expects coordinates of shape (..., {dim}), got shape {tuple(x.shape)}"
        )


class Identity(nn.Module):
    """No encoding: returns ``x`` unchanged. ``(..., d) -> (..., d)``."""

    dim: int | None = None  # expected coordinate dimension d (None: any)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        check_dim(self, x, self.dim)
        return x


class FourierFeatures(nn.Module):
    """Axis-aligned logarithmic Fourier features, the paper's Eq. 1.

    ``[sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)]``, each block of size
    ``d``, so the output has ``2 d L`` features (plus ``d`` with ``include_input``).
    The paper uses no pi factor and drops the raw input; NeRF's variant multiplies the
    frequencies by pi (``pi_factor=True``) and keeps ``x`` (``include_input=True``).
    """

    num_frequencies: int  # L: frequencies 2^0 .. 2^(L-1) (radians per unit of x)
    pi_factor: bool = False  # multiply every frequency by pi (NeRF's positional encoding)
    include_input: bool = False  # append the raw coordinates after the sinusoids
    dim: int | None = None  # expected coordinate dimension d (None: any)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """``x: (..., d) -> (..., 2 d L [+ d])``."""
        check_dim(self, x, self.dim)
        freqs = 2.0 ** np.arange(self.num_frequencies)
        if self.pi_factor:
            freqs = freqs * np.pi
        arg = x[..., None, :] * jnp.asarray(freqs, x.dtype)[:, None]  # (..., L, d)
        feats = jnp.stack([jnp.sin(arg), jnp.cos(arg)], axis=-2)  # (..., L, 2, d)
        feats = feats.reshape(x.shape[:-1] + (2 * self.num_frequencies * x.shape[-1],))
        return jnp.concatenate([feats, x], axis=-1) if self.include_input else feats


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features of Tancik et al. (2020): ``[sin(2 pi B x), cos(2 pi B x)]``.

    ``B`` is ``(num_features, d)`` with entries drawn once from ``N(0, sigma^2)`` by a
    NumPy generator seeded with ``seed``. It is a constant of the module, not a variable,
    so it is never trained and never enters the NTK.
    """

    num_features: int  # m: rows of B; the output has 2m features
    sigma: float  # standard deviation of B's entries (cycles per unit of x)
    dim: int  # coordinate dimension d
    seed: int = 0  # seed of the NumPy generator that draws B
    include_input: bool = False  # append the raw coordinates

    def frequencies(self) -> np.ndarray:
        """The fixed ``(num_features, dim)`` matrix ``B``."""
        return np.random.default_rng(self.seed).normal(0.0, self.sigma, (self.num_features, self.dim))

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """``x: (..., d) -> (..., 2m [+ d])``."""
        check_dim(self, x, self.dim)
        arg = 2.0 * np.pi * (x @ jnp.asarray(self.frequencies().T, x.dtype))
        feats = jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)
        return jnp.concatenate([feats, x], axis=-1) if self.include_input else feats


def level_resolutions(num_levels: int, min_res: int, max_res: int, spacing: str = "linear") -> list[int]:
    """Nodes per axis of each level, from ``min_res`` (level 0) to ``max_res`` (last level).

    ``spacing="linear"`` rounds ``linspace(min_res, max_res, L)``; ``"log"`` rounds
    ``geomspace`` (a constant growth factor per level, as in hash grids).
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


def _dense_structure(table: jnp.ndarray, x: jnp.ndarray, res: tuple[int, ...], interpolation: str) -> dict:
    return sparse_structure(table, *dense_corners(x, res, interpolation))


class MultiGrid(nn.Module):
    """The paper's multigrid parametric encoding (MPE, its Eq. 3).

    ``L`` dense grids whose resolutions run from ``min_res`` to ``max_res`` nodes per axis;
    every node holds ``k`` learnable scalars. A point is encoded by interpolating each
    level (linear, bilinear or trilinear for d = 1, 2, 3) and concatenating all levels
    with the raw input: ``[g^(0)(x), ..., g^(L-1)(x), x]``, ``L k + d`` features.

    Node values are initialised from ``N(0, init_std^2)``. The paper writes N(0, 0.01)
    after Hadadan et al. (2021), whose PyTorch code calls ``normal_(std=0.01)``; we read
    0.01 as the standard deviation (PyTorch's own convention for that call), so the
    variance is 1e-4.

    Parameters are ``level_0 .. level_{L-1}``, each ``(prod(res_l), k)`` with axis 0
    fastest (see :mod:`ntkgrid.interpolate`).
    """

    dim: int  # coordinate dimension d (1, 2 or 3)
    num_levels: int = 1  # L, number of grids
    features_per_level: int = 2  # k, learnable scalars per node
    min_res: int = 16  # nodes per axis of the coarsest level
    max_res: int = 128  # nodes per axis of the finest level
    spacing: str = "linear"  # how resolutions are spaced between levels: "linear" or "log"
    init_std: float = 0.01  # standard deviation of the N(0, init_std^2) node initialisation
    include_input: bool = True  # concatenate the raw coordinates, as the paper does
    interpolation: str = "linear"  # "linear" (bi/trilinear) or "smoothstep"
    param_dtype: jnp.dtype = jnp.float32  # dtype of the node tables

    def resolutions(self) -> list[int]:
        """Nodes per axis of each level."""
        return level_resolutions(self.num_levels, self.min_res, self.max_res, self.spacing)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """``x: (..., d) -> (..., L k [+ d])``."""
        if self.dim not in (1, 2, 3):
            raise ValueError(f"MultiGrid supports dim 1, 2 or 3, got {self.dim}")
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
            structure = functools.partial(_dense_structure, table, x, res, self.interpolation)
            feats.append(tap(self, f"level_{level}", values, structure))
        if self.include_input:
            feats.append(x)
        return jnp.concatenate(feats, axis=-1)


# Re-exported last: these modules build on the helpers above.
from ntkgrid.hashgrid import HashGrid  # noqa: E402
from ntkgrid.mulfagrid import MulFAGrid  # noqa: E402
