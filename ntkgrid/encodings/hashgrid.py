"""Multiresolution hash encoding (Mueller et al. 2022), following tiny-cuda-nn exactly.

Every definition here mirrors tiny-cuda-nn (``include/tiny-cuda-nn/common_device.h`` and
``include/tiny-cuda-nn/encodings/grid.h``; names in backquotes are tcnn's):

* ``grid_scale``: level ``l`` has ``scale_l = exp2(l * log2(b)) * N_min - 1`` (float32).
* ``grid_resolution``: ``R_l = ceil(scale_l) + 1`` vertices per axis.
* ``pos_fract``: ``pos = x * scale_l + 0.5``, ``pos_grid = floor(pos)`` (cast to uint32),
  ``frac = pos - pos_grid`` (then identity or smoothstep).
* params per level (``GridEncodingTemplated`` constructor, hash grid):
  ``P_l = min(next_multiple(min(R_l**d, 2**31 - 1), 8), 2**log2_hashmap_size)``.
* ``grid_index``: ``stride = R_l**d`` (``0xFFFFFFFF`` once ``R_l`` exceeds ``MAX_BASES[d]``);
  the dense index ``sum_i pos_grid_i * R_l**i`` unless ``P_l < stride``, then the
  ``coherent_prime_hash`` ``XOR_i pos_grid_i * prime_i``; both ``% P_l``. All index
  arithmetic is uint32 with wrap-around.

:func:`hash_levels` gives the per-level constants, :func:`hash_corners` the corner indices
and weights of one level, and :class:`HashGrid` is the Flax module.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid.encodings.base import check_dim, grid_level
from ntkgrid.interpolate import corner_bits, corner_weights

__all__ = ["HASH_PRIMES", "HashGrid", "HashLevel", "grid_index", "hash_corners", "hash_levels"]

# tcnn's ``coherent_prime_hash`` factors (the default "CoherentPrime" hash); axis 0's factor
# is 1 so neighbouring cells along x_0 land in neighbouring table rows.
HASH_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)

# tcnn's ``MAX_BASES`` in ``grid_index``: the largest resolution whose ``R**d`` fits in uint32.
_MAX_BASES = (0x0, 0xFFFFFFFF, 0xFFFF, 0x659, 0xFF, 0x54, 0x28, 0x17, 0xF, 0xB, 0x9)

# tcnn's ``max_params`` (``uint32 max / 2``) caps ``R**d`` before rounding to a multiple of 8.
_MAX_PARAMS = 0xFFFFFFFF // 2

# floor(pos) is saturated to the int32 range before the cast, where tcnn's ``(int)`` would
# be undefined; 2**31 - 256 is exact in float32 and float64 and below 2**31.
_INT32_LO, _INT32_HI = -(2.0**31), 2.0**31 - 256.0

# tcnn's InterpolationType (encodings/grid.h): Nearest, Linear, Smoothstep. It has no cubic.
_INTERPOLATIONS = ("nearest", "linear", "smoothstep")


def _check_hash_interpolation(interpolation: str) -> None:
    """One-line ``ValueError`` for a kernel tiny-cuda-nn's hash grid lacks (cubic included)."""
    if interpolation == "cubic":
        raise ValueError("HashGrid interpolation 'cubic' is not supported: tiny-cuda-nn's hash grid has only "
                         f"{_INTERPOLATIONS} (cubic is MultiGrid's)")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"HashGrid interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")



@dataclasses.dataclass(frozen=True)
class HashLevel:
    """Constants of one level, as tiny-cuda-nn computes them."""

    level: int  # level index l (0 = coarsest)
    scale: float  # tcnn's grid_scale: exp2(l * log2(b)) * N_min - 1, evaluated in float32
    resolution: int  # tcnn's grid_resolution: ceil(scale) + 1 vertices per axis
    params_in_level: int  # P: table rows (tcnn's hashmap_size for this level)
    hashed: bool  # True: spatial hash; False: dense index (R**d <= P)
    dim: int  # coordinate dimension d

    @property
    def strides(self) -> tuple[int, ...]:
        """Dense strides ``(1, R, R**2, ...)`` (each below 2**32 whenever the level is dense)."""
        return tuple(self.resolution**i for i in range(self.dim))


def _next_multiple(v: int, m: int) -> int:
    return -(-v // m) * m


def hash_levels(
    dim: int,
    num_levels: int = 16,
    log2_table_size: int = 19,
    min_res: int = 16,
    per_level_scale: float = 2.0,
) -> list[HashLevel]:
    """Per-level scale, resolution, table size and dense/hash choice, as tcnn computes them.

    The scale is evaluated in float32 exactly as tcnn's host code does (``per_level_scale``
    is a float there, ``log2`` and ``exp2`` are float32), so resolutions agree with tcnn's
    even where ``scale`` is close to an integer.

    Args:
      dim: coordinate dimension d (1..7).
      num_levels: L, number of levels (tcnn: ``n_levels``).
      log2_table_size: log2 of the most rows a level's table may have (tcnn: ``log2_hashmap_size``).
      min_res: N_min, vertices per axis of level 0 (tcnn: ``base_resolution``).
      per_level_scale: b, growth of the scale between levels (tcnn: ``per_level_scale``).

    Returns:
      ``num_levels`` :class:`HashLevel` s, coarsest first.
    """
    if not 1 <= dim <= len(HASH_PRIMES):
        raise ValueError(f"HashGrid supports dim 1..{len(HASH_PRIMES)} (one hash prime per axis), got {dim}")
    if num_levels < 1:
        raise ValueError(f"num_levels must be at least 1, got {num_levels}")
    if not 0 <= log2_table_size <= 31:
        raise ValueError(f"log2_table_size must be in 0..31, got {log2_table_size}")
    if min_res < 1 or not per_level_scale > 0:
        raise ValueError(
            f"need min_res >= 1 and per_level_scale > 0, got {min_res}, {per_level_scale}"
        )
    log2_b = np.log2(np.float32(per_level_scale))
    hashmap_size = 1 << log2_table_size
    levels = []
    for level in range(num_levels):
        scale = np.exp2(np.float32(level) * log2_b) * np.float32(min_res) - np.float32(1.0)
        if not np.isfinite(scale) or scale < 0:
            raise ValueError(f"level {level} has scale {scale}; per_level_scale={per_level_scale} is out of range")
        resolution = int(np.ceil(scale)) + 1
        dense = resolution**dim
        params = _next_multiple(_MAX_PARAMS if dense > 2**31 else dense, 8)
        params = min(params, hashmap_size)
        stride = dense if resolution <= _MAX_BASES[dim] else 0xFFFFFFFF
        levels.append(HashLevel(level, float(scale), resolution, params, params < stride, dim))
    return levels


def grid_index(pos_grid: jnp.ndarray, level: HashLevel) -> jnp.ndarray:
    """tcnn's ``grid_index`` for a hash grid: table row of integer vertices.

    Args:
      pos_grid: ``(..., d)`` uint32 vertex coordinates (negative ones already wrapped).
      level: the level's constants.

    Returns:
      ``(...,)`` int32 rows in ``[0, level.params_in_level)``.
    """
    pos_grid = pos_grid.astype(jnp.uint32)
    factors = HASH_PRIMES if level.hashed else level.strides
    index = None
    for i in range(level.dim):  # uint32 products wrap modulo 2**32, as in CUDA
        term = pos_grid[..., i] * jnp.uint32(factors[i])
        if index is None:
            index = term
        else:
            index = index ^ term if level.hashed else index + term
    index = index % jnp.uint32(level.params_in_level)
    return index.astype(jnp.int32)  # < params_in_level <= 2**31


def hash_corners(x: jnp.ndarray, level: HashLevel, interpolation: str = "linear") -> tuple[jnp.ndarray, jnp.ndarray]:
    """Table rows and interpolation weights of one level (tcnn's ``pos_fract`` + ``grid_index``).

    Args:
      x: ``(..., d)`` float coordinates, not clamped (see :class:`HashGrid`).
      level: the level's constants.
      interpolation: ``"linear"``, ``"smoothstep"`` or ``"nearest"``.

    Returns:
      ``(idx, w)``: ``(..., C)`` int32 rows and ``(..., C)`` weights (dtype of ``x``), with
      ``C = 2**d`` corners in :mod:`ntkgrid.interpolate`'s order, or ``C = 1`` for
      ``"nearest"``.
    """
    _check_hash_interpolation(interpolation)
    pos = x * jnp.asarray(level.scale, x.dtype) + jnp.asarray(0.5, x.dtype)
    floor = jnp.floor(pos)
    frac = pos - floor
    as_int = jnp.clip(floor, _INT32_LO, _INT32_HI).astype(jnp.int32)
    pos_grid = jax.lax.bitcast_convert_type(as_int, jnp.uint32)  # tcnn's (uint32_t)(int)
    if interpolation == "nearest":  # tcnn: the vertex at floor(pos), weight 1, zero d/dx
        return grid_index(pos_grid, level)[..., None], jnp.ones(x.shape[:-1] + (1,), x.dtype)
    bits = jnp.asarray(corner_bits(level.dim), jnp.uint32)  # (C, d)
    corners = pos_grid[..., None, :] + bits  # (..., C, d), uint32 wrap-around like tcnn
    return grid_index(corners, level), corner_weights(frac, interpolation)


class HashGrid(nn.Module):
    """Multiresolution hash encoding of Mueller et al. (2022), as in tiny-cuda-nn.

    ``x: (..., d) -> (..., num_levels * features_per_level)``: level ``l`` interpolates a
    table of ``P_l`` rows of ``F`` learnable features at the ``2**d`` vertices around
    ``x``, and the levels are concatenated (level-major, as tcnn's output). Definitions
    (scale, resolution, table size, dense index vs. spatial hash) are tcnn's; see
    :mod:`ntkgrid.encodings.hashgrid` and :func:`hash_levels`.

    **Half-cell offset.** Level ``l`` places vertex ``i`` at ``x = (i - 0.5) / scale_l``
    (tcnn's ``pos = x * scale + 0.5``, which staggers levels against each other), so
    ``x = 0`` is the middle of cell 0 and ``x = 1`` lies in cell ``floor(scale + 0.5)``.
    :class:`~ntkgrid.encodings.MultiGrid` is node-aligned instead (vertex ``i`` at
    ``i / (R - 1)``, vertices on 0 and 1), so equal resolutions do not give equal
    interpolants. Points with ``x * scale + 0.5 >= R - 1`` (``x = 1`` whenever ``scale``
    is an integer or its fractional part is at least 0.5) use vertex ``R``, one past the
    grid: on dense levels its index ``R + R * j`` aliases vertex ``(0, j + 1)``, a padding
    row, or wraps modulo ``P_l``. This is tcnn's documented wrap-around; we reproduce it.

    **Outside [0, 1].** Like tcnn (and unlike the other grid encodings here) ``x`` is
    *not* clamped. Negative vertex coordinates wrap to uint32 as in tcnn's
    ``(uint32_t)(int)floor(pos)``, and every index is taken modulo ``P_l``, so indices
    stay valid for any finite ``x``: dense levels wrap around, hashed levels hash as
    usual. The encoding is therefore neither constant nor periodic outside the cube;
    clamp the input yourself if that matters. ``floor(pos)`` is saturated to the int32
    range first, where tcnn's cast would be undefined (``|x| * scale >= 2**31``).

    **Parameters.** ``level_0 .. level_{L-1}``, each ``(P_l, F)``, initialised uniform in
    ``[-init_scale, init_scale]`` (tcnn: ``[-1e-4, 1e-4]``). Each level is tapped with
    :func:`~ntkgrid.encodings.base.grid_level`, so the structured NTK sees it as a sparse op.

    Differences from tiny-cuda-nn, and why:

    * Parameter layout: one ``(P_l, F)`` table per level instead of one flat buffer, so
      that each level is a separate parameter for the structured NTK. The contents are
      identical: tcnn's buffer is ``concat_l(level_l.ravel())``
      (:meth:`to_tcnn_params` / :meth:`from_tcnn_params` convert).
    * Precision: tcnn computes positions in float32 and stores parameters in float or
      half; here everything is computed in ``result_type(x, param_dtype)``, so float64
      works (under ``jax.enable_x64``). Level scales are tcnn's float32 values in every
      precision. In float64, or where the compiler does not fuse ``x * scale + 0.5`` into
      one fma as tcnn's ``fmaf`` does, a point within one rounding error of a cell
      boundary may fall in the neighbouring cell; the linear and smoothstep interpolants
      are continuous there (except at tcnn's own dense wrap-around), so outputs differ by
      rounding only. Positions are computed in at least float32 (as tcnn) even when the
      tables are half precision.
    * ``d = 1`` is allowed (tcnn compiles only d = 2, 3, 4 by default, but its formulas
      cover any d); d up to 7, the number of hash primes.
    * Only tcnn's default grid: hash grid type with the ``CoherentPrime`` hash,
      deterministic (no ``stochastic_interpolation``), no ``fixed_point_pos``, no
      per-point ``max_level`` masking. ``"nearest"`` is supported as in tcnn (vertex
      ``floor(x * scale + 0.5)``, zero derivative in ``x``).
    * ``include_input`` (default False, as tcnn) appends the raw coordinates.
    * Gradients in ``x`` come from autodiff of the same expression; they equal tcnn's
      ``dy_dx`` (``scale * (right - left) * interp'(frac)`` per axis).
    """

    is_grid: ClassVar[bool] = True  # a learnable grid: its parameters are level_0 .. level_{L-1}
    takes_unit_coords: ClassVar[bool] = True  # looks up x in [0, 1]^d whatever the coords

    dim: int  # coordinate dimension d (1..7; tcnn compiles 2, 3, 4)
    num_levels: int = 16  # L, number of levels (tcnn: n_levels)
    features_per_level: int = 2  # F, learnable features per table row (tcnn: n_features_per_level)
    log2_table_size: int = 19  # T = 2**log2_table_size, most rows a level's table may have (tcnn: log2_hashmap_size)
    min_res: int = 16  # N_min: level 0 has scale N_min - 1 and N_min vertices per axis (tcnn: base_resolution)
    per_level_scale: float = 2.0  # b: growth of the scale between levels (tcnn default 2.0)
    interpolation: str = "linear"  # "linear", "smoothstep" or "nearest", as tcnn's interpolation (no cubic)
    init_scale: float = 1e-4  # tables start uniform in [-init_scale, init_scale] (tcnn: 1e-4)
    include_input: bool = False  # append the raw coordinates after the levels (tcnn: no)
    param_dtype: jnp.dtype = jnp.float32  # dtype of the tables

    def levels(self) -> list[HashLevel]:
        """Per-level constants (scale, resolution, rows, hashed)."""
        return hash_levels(self.dim, self.num_levels, self.log2_table_size, self.min_res, self.per_level_scale)

    def n_params(self) -> int:
        """Total learnable scalars, tcnn's ``n_params()``: ``F * sum_l P_l``."""
        return self.features_per_level * sum(lv.params_in_level for lv in self.levels())

    def output_dim(self) -> int:
        """Number of output features: ``L F`` (plus ``d`` with ``include_input``)."""
        return self.num_levels * self.features_per_level + (self.dim if self.include_input else 0)

    def to_tcnn_params(self, params: dict) -> jnp.ndarray:
        """This module's ``params`` dict -> tcnn's flat ``(n_params,)`` parameter buffer."""
        return jnp.concatenate([params[f"level_{lv.level}"].reshape(-1) for lv in self.levels()])

    def from_tcnn_params(self, flat: jnp.ndarray) -> dict:
        """tcnn's flat ``(n_params,)`` buffer -> this module's ``params`` dict."""
        if flat.shape != (self.n_params(),):
            raise ValueError(f"expected a flat buffer of shape ({self.n_params()},), got {tuple(flat.shape)}")
        out, offset, k = {}, 0, self.features_per_level
        for lv in self.levels():
            size = lv.params_in_level * k
            out[f"level_{lv.level}"] = flat[offset : offset + size].reshape(lv.params_in_level, k)
            offset += size
        return out

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """``x: (..., d) -> (..., L F [+ d])``."""
        check_dim(self, x, self.dim)
        _check_hash_interpolation(self.interpolation)
        dtype = jnp.result_type(x.dtype, self.param_dtype)
        x = x.astype(dtype)
        x_pos = x.astype(jnp.promote_types(dtype, jnp.float32))  # tcnn: float32 positions
        init = nn.initializers.uniform(2.0 * self.init_scale)
        feats = []
        for lv in self.levels():
            name = f"level_{lv.level}"
            table = self.param(
                name,
                lambda key, shape, dt: init(key, shape, dt) - jnp.asarray(self.init_scale, dt),
                (lv.params_in_level, self.features_per_level),
                self.param_dtype,
            )
            idx, w = hash_corners(x_pos, lv, self.interpolation)
            feats.append(grid_level(self, name, table.astype(dtype), idx, w))
        if self.include_input:
            feats.append(x)
        return jnp.concatenate(feats, axis=-1)
