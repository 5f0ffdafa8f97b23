"""MulFAGrid: the multiplicative Fourier adaptive grid of Zhao et al. (CVPR 2024).

A grid model outputs ``g(x) = sum_c phi_c(x) w[idx_c(x)]``: node features ``w`` weighted
by a kernel ``phi`` over the ``C = 2**d`` corners of the cell around ``x``. Dense grids
use the fixed multilinear kernel. MulFAGrid replaces it by a kernel computed by a
multiplicative filter network (MFN, Fathony et al. 2021) whose first layer sees Fourier
features of ``x`` (Tancik et al. 2020) and whose filters are evaluated at the corner
nodes ("multiplicative filters inform the model with node information"), normalised over
the corners. The definition implemented here is in :class:`MulFAGrid`'s docstring.

:func:`mfn_filters` draws the filter constants, :func:`mfn_logits` evaluates the MFN and
:func:`mulfa_weights` turns its logits into the interpolation kernel.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from ntkgrid._taps import tap
from ntkgrid.encodings.base import check_dim, level_resolutions, sparse_structure
from ntkgrid.interpolate import corner_bits, corner_weights, dense_cells, dense_strides

__all__ = ["MulFAGrid", "fourier_features", "mfn_filters", "mfn_logits", "mulfa_weights"]


def fourier_features(u: jnp.ndarray, num_frequencies: int) -> jnp.ndarray:
    """``[sin(2^j pi u), cos(2^j pi u)]`` for ``j < J``: ``(..., d) -> (..., 2 J d)``.

    ``u`` is in grid units (node spacing 1), so frequency ``2^j pi`` has period
    ``2^(1-j)`` cells: two cells for ``j = 0``, one cell for ``j = 1``, and so on.
    """
    freqs = jnp.asarray(np.pi * 2.0 ** np.arange(num_frequencies), u.dtype)
    arg = u[..., None, :] * freqs[:, None]  # (..., J, d)
    return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-2).reshape(u.shape[:-1] + (-1,))


def mfn_filters(
    seed: int, dim: int, num_frequencies: int, width: int, layers: int, out: int, node_frequency_std: float
) -> dict[str, np.ndarray]:
    """The MFN's constants, drawn from ``numpy.random.default_rng(seed)`` (float64).

    Returns ``{"W_i", "b_i", "omega_i", "phi_i" for i < layers; "W_out", "b_out"}`` with
    ``W_0: (2 J d, width)``, ``W_i: (width, width)``, ``omega_i: (d, width)`` (radians per
    node), ``phi_i: (width,)``, ``W_out: (width, out)``. Linear weights are uniform in
    ``+-sqrt(6 / fan_in)`` (variance ``2 / fan_in``, which cancels the mean square 1/2 of a
    random-phase sine, so every layer keeps unit-order activations), biases zero,
    ``omega ~ N(0, node_frequency_std^2)``, phases uniform in ``[-pi, pi)``.
    """
    if layers < 1 or width < 1 or num_frequencies < 1:
        raise ValueError(f"need layers, width, num_frequencies >= 1; got {layers}, {width}, {num_frequencies}")
    rng = np.random.default_rng(seed)
    f = {}
    fan_in = 2 * num_frequencies * dim
    for i in range(layers):
        f[f"W_{i}"] = rng.uniform(-1.0, 1.0, (fan_in, width)) * np.sqrt(6.0 / fan_in)
        f[f"b_{i}"] = np.zeros(width)
        f[f"omega_{i}"] = rng.normal(0.0, node_frequency_std, (dim, width))
        f[f"phi_{i}"] = rng.uniform(-np.pi, np.pi, width)
        fan_in = width
    f["W_out"] = rng.uniform(-1.0, 1.0, (width, out)) * np.sqrt(6.0 / width)
    f["b_out"] = np.zeros(out)
    return f


def mfn_logits(filters: dict, feats: jnp.ndarray, nodes: jnp.ndarray) -> jnp.ndarray:
    """The MFN at every corner.

    ``z_0 = W_0 feats + b_0`` (shared by the corners), then for each layer ``i``
    ``z_i = (W_i z_{i-1} + b_i) * sin(omega_i . node_c + phi_i)`` (``z_{-1} = feats``), and
    the logits ``W_out z + b_out``.

    Args:
      filters: as returned by :func:`mfn_filters` (arrays in the computation dtype).
      feats: ``(..., 2 J d)`` Fourier features of the point.
      nodes: ``(..., C, d)`` integer node coordinates of its corners, as floats.

    Returns:
      ``(..., C, out)`` logits.
    """
    layers = sum(1 for k in filters if k.startswith("omega_"))
    z = (feats @ filters["W_0"] + filters["b_0"])[..., None, :]  # (..., 1, width)
    for i in range(layers):
        if i > 0:
            z = z @ filters[f"W_{i}"] + filters[f"b_{i}"]
        z = z * jnp.sin(nodes @ filters[f"omega_{i}"] + filters[f"phi_{i}"])  # (..., C, width)
    return z @ filters["W_out"] + filters["b_out"]


def mulfa_weights(bilinear: jnp.ndarray, logits: jnp.ndarray) -> jnp.ndarray:
    """``phi_c = b_c exp(m_c) / sum_c' b_c' exp(m_c')``, per output channel.

    Args:
      bilinear: ``(..., C)`` multilinear weights ``b_c`` (non-negative, summing to one).
      logits: ``(..., C, K)`` MFN logits ``m_c``.

    Returns:
      ``(..., C, K)`` weights, non-negative and summing to one over ``C``. The shift by
      ``max_c m_c`` cancels in the ratio and keeps ``exp`` finite; the denominator is at
      least ``exp(min_c m_c - max_c m_c) > 0``.
    """
    e = bilinear[..., None] * jnp.exp(logits - jnp.max(logits, axis=-2, keepdims=True))
    return e / jnp.sum(e, axis=-2, keepdims=True)


class MulFAGrid(nn.Module):
    """Multiplicative Fourier adaptive grid (Zhao et al., CVPR 2024), ``(..., d) -> (..., L k)``.

    ``L`` dense levels with ``r_l`` nodes per axis (resolutions as
    :class:`~ntkgrid.encodings.MultiGrid`: node ``i`` at ``i / (r_l - 1)``, ``x`` clamped to
    the unit cube), each node holding ``k`` learnable features. Level ``l`` outputs

        ``g_l(x)_f = sum_c phi_{c,f}(x) w_l[idx_c(x), f]``,

    with the kernel ``phi`` built per corner ``c`` of the cell around ``x``:

    1. Fourier features of the point in grid units ``u = x (r_l - 1)``:
       ``gamma(u) = [sin(2^j pi u), cos(2^j pi u)]_{j < J}`` (the authors' released
       snippet uses the same features, ``J = 4``).
    2. An MFN whose multiplicative filters are evaluated at the corner node ``p_c``
       (integer node coordinates): ``z_0 = W_0 gamma(u) + b_0``,
       ``z_i = (W_i z_{i-1} + b_i) * sin(Omega_i p_c + phi_i)``, logits
       ``m_c = W_out z + b_out``.
    3. Normalisation over the corners with a multilinear prior:
       ``phi_c = b_c(x) exp(m_c) / sum_c' b_c'(x) exp(m_c')``.

    Choices where the poster leaves the definition open (each tested in
    ``tests/test_mulfagrid.py``):

    * **Normalisation.** The authors' released snippet (their Eq. 8) divides the raw MFN
      outputs by their sum over the corners, which can vanish or change sign. Here the MFN
      output is a logit and the multilinear weight ``b_c`` a prior, so the weights are
      positive, sum to one, and the kernel is continuous across cell faces (a corner's ``b_c`` vanishes on the faces
      away from it, and the MFN depends on ``x`` and the node only, not on the cell). With
      a constant MFN output (``filter_scale = 0``) MulFAGrid *is* multilinear
      interpolation.
    * **Node information.** The filters take integer node coordinates ``p_c`` (the
      snippet feeds the flat node index, a float that loses precision on large grids).
    * **One kernel per feature** (``K = k`` MFN outputs), so ``phi`` has shape
      ``(..., C, k)``; ``shared_kernel=True`` uses one output for all features, as the
      snippet does.
    * **Fixed filters by default.** The MFN's constants are drawn once from
      ``numpy.random.default_rng(filter_seed + level)`` (:func:`mfn_filters`) and are not
      trained, so the model is linear in its node features: the GTK is exactly the
      structured sparse kernel of the ``(..., C, k)`` weights, it is stationary under
      training (Zhao et al.'s Theorem 2 holds exactly), and every parameter is covered by
      the NTK taps. ``learn_filters=True`` makes them parameters (``mfn_<level>``,
      initialised to the same values) trained jointly with the grid, as in the paper's
      experiments; the model is then no longer linear in its parameters and
      :func:`ntkgrid.ntk.structured_ntk` refuses it (use ``method="jacobian"``).
    * **Initialisation.** Node features ``N(0, init_std^2)`` as MultiGrid; the MFN as in
      :func:`mfn_filters`, with logits of unit order times ``filter_scale``.
    * ``include_input`` defaults to False: grid models output grid features only.

    Parameters: ``level_0 .. level_{L-1}`` of shape ``(prod(res_l), k)`` (axis 0 fastest),
    plus ``mfn_<l>`` dicts when ``learn_filters``.
    """

    is_grid: ClassVar[bool] = True  # a learnable grid: its parameters are level_0 .. level_{L-1}
    takes_unit_coords: ClassVar[bool] = True  # looks up x in [0, 1]^d whatever the coords

    dim: int  # coordinate dimension d (1, 2 or 3)
    num_levels: int = 1  # L, number of grids (tcnn: n_levels)
    features_per_level: int = 2  # k, learnable scalars per node (tcnn: n_features_per_level)
    min_res: int = 16  # nodes per axis of the coarsest level (tcnn: base_resolution)
    max_res: int = 128  # nodes per axis of the finest level
    spacing: str = "linear"  # resolutions between levels: "linear" or "log" (as MultiGrid)
    init_std: float = 0.01  # node features start N(0, init_std^2)
    num_frequencies: int = 4  # J: Fourier features sin/cos(2^j pi u), j < J, u in grid units
    filter_width: int = 16  # hidden width of the MFN
    filter_layers: int = 2  # number of multiplicative filter layers
    node_frequency_std: float = 1.0  # std of the filter frequencies Omega (radians per node)
    filter_scale: float = 1.0  # multiplies the MFN logits; 0 gives multilinear interpolation
    shared_kernel: bool = False  # one kernel for all k features instead of one per feature
    learn_filters: bool = False  # train the MFN too (not linear in params; no structured NTK)
    filter_seed: int = 0  # level l draws its MFN constants with seed filter_seed + l
    include_input: bool = False  # append the raw coordinates after the levels
    param_dtype: jnp.dtype = jnp.float32  # dtype of the node tables (and learnt filters)

    def resolutions(self) -> list[int]:
        """Nodes per axis of each level."""
        return level_resolutions(self.num_levels, self.min_res, self.max_res, self.spacing)

    def filters(self, level: int) -> dict[str, np.ndarray]:
        """Level ``level``'s initial MFN constants (float64 NumPy arrays)."""
        out = 1 if self.shared_kernel else self.features_per_level
        return mfn_filters(self.filter_seed + level, self.dim, self.num_frequencies, self.filter_width,
                           self.filter_layers, out, self.node_frequency_std)

    def kernel(self, x: jnp.ndarray, level: int, filters: dict | None = None):
        """Corner indices and MulFAGrid weights of one level.

        Args:
          x: ``(..., d)`` coordinates (clamped to the unit cube).
          level: level index.
          filters: MFN arrays (default: the fixed constants of :meth:`filters`).

        Returns:
          ``(idx, w)``: ``(..., C)`` int32 flat node indices and ``(..., C, K)`` weights
          (``K = 1`` with ``shared_kernel``, else ``k``), dtype of ``x``.
        """
        res = (self.resolutions()[level],) * self.dim
        if filters is None:
            filters = self.filters(level)
        filters = {k: jnp.asarray(v, x.dtype) for k, v in filters.items()}
        base, frac = dense_cells(x, res)
        nodes = base[..., None, :] + jnp.asarray(corner_bits(self.dim))  # (..., C, d)
        idx = jnp.sum(nodes * jnp.asarray(dense_strides(res)), axis=-1)
        u = jnp.clip(x, 0.0, 1.0) * (res[0] - 1)
        logits = self.filter_scale * mfn_logits(filters, fourier_features(u, self.num_frequencies),
                                                nodes.astype(x.dtype))
        return idx, mulfa_weights(corner_weights(frac), logits)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """``x: (..., d) -> (..., L k [+ d])``."""
        if self.dim not in (1, 2, 3):
            raise ValueError(f"MulFAGrid supports dim 1, 2 or 3, got {self.dim}")
        check_dim(self, x, self.dim)
        dtype = jnp.result_type(x.dtype, self.param_dtype)
        x = x.astype(dtype)
        k = self.features_per_level
        feats = []
        for level, r in enumerate(self.resolutions()):
            name = f"level_{level}"
            table = self.param(name, nn.initializers.normal(self.init_std), (r**self.dim, k), self.param_dtype)
            filters = None
            if self.learn_filters:
                filters = self.param(f"mfn_{level}", lambda _key, lv=level: {
                    n: jnp.asarray(a, self.param_dtype) for n, a in self.filters(lv).items()})
            idx, w = self.kernel(x, level, filters)
            w = jnp.broadcast_to(w, w.shape[:-1] + (k,))
            table = table.astype(dtype)
            out = sum(w[..., c, :] * jnp.take(table, idx[..., c], axis=0, mode="clip") for c in range(idx.shape[-1]))
            feats.append(tap(self, name, out, sparse_structure(table, idx, w)))
        if self.include_input:
            feats.append(x)
        return jnp.concatenate(feats, axis=-1)
