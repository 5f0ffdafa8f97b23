"""Fourier-feature encodings: the paper's axis-aligned logarithmic features (its Eq. 1) and
Tancik et al.'s random Gaussian features. Neither has learnable parameters."""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from ntkgrid.encodings.base import check_dim

__all__ = ["FourierFeatures", "GaussianFourierFeatures"]


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
    is_grid: ClassVar[bool] = False  # not a learnable grid
    takes_unit_coords: ClassVar[bool] = False  # coords="signed" maps x to 2x - 1 first

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
    is_grid: ClassVar[bool] = False  # not a learnable grid
    takes_unit_coords: ClassVar[bool] = False  # coords="signed" maps x to 2x - 1 first

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
