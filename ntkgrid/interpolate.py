"""Interpolation on dense and hashed grids, written as flat gathers.

Kernels (:data:`INTERPOLATIONS`), each a tensor product of one-dimensional weights:

* ``"nearest"``: one tap, the node nearest to ``x`` (ties round up: node
  ``floor(pos + 0.5)``, the rule of tiny-cuda-nn's ``Nearest``); piecewise constant, so the
  derivative in ``x`` is zero.
* ``"linear"`` (the default): the ``2**d`` corners of the cell, weights ``1 - t`` and ``t``
  (bi/trilinear). C0.
* ``"smoothstep"``: the same corners, with ``t`` first mapped through ``t^2 (3 - 2t)``
  (tiny-cuda-nn's ``Smoothstep``). C1 in ``x`` but with zero derivative at every node plane.
* ``"cubic"``: the uniform cubic B-spline, ``4**d`` taps (nodes ``i - 1 .. i + 2`` of the
  cell ``[i, i + 1]`` on each axis), weights ``(1-t)^3/6``, ``(4 - 6t^2 + 3t^3)/6``,
  ``(4 - 6(1-t)^2 + 3(1-t)^3)/6``, ``t^3/6``. **Why the B-spline, not Catmull-Rom:** the
  B-spline is C2, a partition of unity and non-negative. Non-negative weights make every
  entry of the grid kernel ``G[n, m] = sum w_nc w_mc' [idx_nc == idx_mc']`` non-negative,
  as for linear interpolation, so a smoother kernel only *adds* positive coupling between
  neighbouring points; Catmull-Rom's negative lobes (weights down to -1/16 per axis)
  would make the grid kernel couple some neighbours negatively and is only C1. The
  B-spline does not interpolate (at a node the value is ``(v_{i-1} + 4 v_i + v_{i+1}) / 6``
  per axis), which does not matter for a learned table: the nodes are free parameters,
  not samples that must be reproduced. Boundary: taps outside the grid are **clamped** to
  the edge node (edge replication, like ``scipy.ndimage.map_coordinates(...,
  mode="nearest")`` or ``grid_sample(padding_mode="border")``), so an edge node can appear
  in several taps of one point; the weights still sum to one.

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

Performance (XLA on CPU; ``python -m benchmarks.bench_interpolate`` measures it against
``torch.nn.functional.grid_sample``). Everything is plain JAX, so ``jit``, ``vmap``,
``grad``, ``jvp`` and higher derivatives all apply. Both interpolants have custom JVPs
(:func:`jax.custom_jvp`, so forward mode keeps working) whose tangents are written so that
their *transposes*, i.e. the backward passes, are programs XLA:CPU runs well.

:func:`interpolate_dense` (dense grids, what :class:`~ntkgrid.encodings.MultiGrid` uses):

* Corner-stacked table. When the batch is large next to the table (``_use_stacked``), the
  table tangent reads the ``2**d`` corners of a cell as ONE row of the ``(T, 2**d k)``
  table whose row ``j`` stacks ``table[j + o_c]`` (``o_c``: the corner offsets). Its
  transpose is one scatter-add of ``2**d k``-wide rows at each point's lower corner, then
  ``2**d`` shifted adds of the accumulator: a quarter (2D) of the scatter indices of the
  per-corner form, which is what a scatter on CPU pays for. Otherwise the corner-major
  form of :func:`gather_interpolate` (below) is used.
* Chunks. The table tangent is a ``lax.scan`` over chunks of points whose body
  (checkpointed) recomputes the cells from ``x``; the backward pass is then a scan that
  scatter-adds chunk by chunk into one carried accumulator. On CPU chunks are sized so that
  one chunk's updates and the accumulator stay within about 24 MiB (``chunk=`` overrides
  it; off CPU the batch is one chunk).
* Memory. XLA:CPU allocates a program's intermediates as one scratch buffer per call.
  glibc serves requests above 32 MiB with fresh ``mmap`` pages, and faulting those pages
  in on every call cost as much as the arithmetic (a one-shot backward at 2^20 points
  needed 56 MiB). Chunking keeps the scratch below that whatever the batch size, and it
  must be a scan: unrolled chunks are reordered by XLA's default (concurrency-optimised)
  scheduler, which computes every chunk's updates before the first scatter.
* The gradient w.r.t. the points gathers each corner separately, so that XLA can fuse
  the gathers into the weighted sums; for large batches (over 12 MiB of corner rows) it is
  checkpointed, so that the backward pass regathers the rows instead of storing them.

:func:`gather_interpolate` (any indices, e.g. hashed):

* The table tangent gathers all ``2**d`` corner rows with ONE gather in corner-major order
  (corner 0 of every point, then corner 1, ...) and splits the result into per-corner
  blocks with ``lax.split``. Its transpose is ONE scatter-add whose indices and updates
  are plain concatenations. Autodiff of per-corner gathers gives ``2**d`` scatter-adds
  into ``2**d`` zero-filled tables; a point-major ``(n, 2**d)`` index array flattened for
  a single scatter makes XLA recompute the index arithmetic element by element in a
  scalar loop. Either is 1.5-3x slower.
* The weight tangent (the path to ``d/dx``) is summed corner by corner and feature by
  feature, so its transpose has no reduction over the tiny feature axis (XLA:CPU runs such
  reductions as a separate, slow kernel) and assembles the ``(..., 2**d)`` weight
  cotangent with one concatenate.

Both: the primal output uses one gather per corner, which XLA fuses into the weighted sum;
cells are found with int32 arithmetic (truncation of the non-negative position, then a
``min``): no ``floor``, no int64.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

__all__ = [
    "INTERPOLATIONS",
    "bspline_weights",
    "check_interpolation",
    "corner_bits",
    "corner_weights",
    "dense_cells",
    "dense_corners",
    "dense_offsets",
    "dense_strides",
    "dense_taps",
    "gather_interpolate",
    "interpolate_dense",
    "taps_per_point",
]

#: Interpolation kernels of dense grids (:func:`interpolate_dense`, :func:`dense_taps`).
INTERPOLATIONS = ("nearest", "linear", "smoothstep", "cubic")
# Kernels whose taps are the 2**d corners of the cell (the fast dense path below).
_CORNER_KERNELS = ("linear", "smoothstep")

# Up to this many features per node the weight tangent is unrolled feature by feature;
# beyond, it broadcasts (fewer ops to compile; a reduction over the features in reverse).
_MAX_UNROLLED_FEATURES = 8
# On CPU the table gradient of a dense grid runs over chunks of points, sized so that one
# chunk's scatter updates plus the gradient accumulator stay within _TEMP_BYTES (and each
# chunk's updates are at least _MIN_CHUNK_BYTES). See "Memory" in the module docstring.
_TEMP_BYTES = 24 * 2**20
_MIN_CHUNK_BYTES = 4 * 2**20


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
    # Built corner by corner from (...,)-shaped factors: after axis a the list holds corners
    # 0 .. 2**(a+1) - 1 in order (bit a of c set: upper factor t_a). Broadcasting the factors
    # along the corner axis instead would make reverse mode reduce over that tiny axis.
    weights = None
    for a in range(frac.shape[-1]):
        t = frac[..., a]
        u = 1.0 - t
        weights = [u, t] if weights is None else [p * u for p in weights] + [p * t for p in weights]
    if weights is None:  # d = 0: a single corner
        return jnp.ones(frac.shape[:-1] + (1,), frac.dtype)
    return jnp.stack(weights, axis=-1)


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
    # pos >= 0, so truncation is floor; x = 1 falls in the last cell, with fraction 1.
    base = jnp.minimum(pos.astype(jnp.int32), (r - 2).astype(np.int32))
    return base, pos - base.astype(x.dtype)


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
    base, w = _dense_base_weights(x, res, interpolation, x.dtype)
    return _dense_corner_idx(base, res), w


def dense_offsets(res: Sequence[int]) -> tuple[int, ...]:
    """Flat-index offset of each of the ``2**d`` corners from its cell's lower corner."""
    return tuple(int(o) for o in corner_bits(len(res)) @ dense_strides(res))


def check_interpolation(interpolation: str, allowed: Sequence[str] = INTERPOLATIONS, where: str = "interpolation") -> None:
    """Raise a one-line ``ValueError`` naming ``where`` unless ``interpolation`` is in ``allowed``."""
    if interpolation not in allowed:
        raise ValueError(f"{where} must be one of {tuple(allowed)}, got {interpolation!r}")


def taps_per_point(d: int, interpolation: str) -> int:
    """Table rows each point reads: 1 (nearest), ``2**d`` (linear, smoothstep), ``4**d`` (cubic)."""
    check_interpolation(interpolation)
    return {"nearest": 1, "cubic": 4**d}.get(interpolation, 2**d)


def bspline_weights(t: jnp.ndarray) -> list[jnp.ndarray]:
    """The uniform cubic B-spline's four weights of nodes ``i - 1 .. i + 2`` at fraction ``t``.

    Args:
      t: ``(...)`` position inside the cell ``[i, i + 1]``, in ``[0, 1]``.

    Returns:
      Four ``(...)`` arrays, non-negative and summing to one; C2 across cells (each is
      ``B(t - j)`` for the cubic B-spline ``B`` centred on node ``i + j``).
    """
    s = 1.0 - t
    t2, s2 = t * t, s * s
    return [s2 * s / 6.0, (4.0 - 6.0 * t2 + 3.0 * t2 * t) / 6.0, (4.0 - 6.0 * s2 + 3.0 * s2 * s) / 6.0, t2 * t / 6.0]


def dense_taps(x: jnp.ndarray, res: Sequence[int], interpolation: str = "linear") -> tuple[jnp.ndarray, jnp.ndarray]:
    """Flat node indices and weights of every tap of any kernel (module docstring).

    Args:
      x: ``(..., d)`` coordinates in ``[0, 1]`` (clamped).
      res: nodes per axis (length ``d``), each at least 2.
      interpolation: one of :data:`INTERPOLATIONS`.

    Returns:
      ``(idx, w)``: ``(..., C)`` int32 indices into a ``(prod(res), k)`` table and ``(..., C)``
      weights (dtype of ``x``), ``C = taps_per_point(d, interpolation)``. Linear and
      smoothstep give :func:`dense_corners`; cubic taps are ordered with axis 0's offset
      (``-1 .. 2``) fastest, and taps past the grid's edge are clamped to the edge node.
    """
    check_interpolation(interpolation)
    if interpolation in _CORNER_KERNELS:
        return dense_corners(x, res, interpolation)
    d = x.shape[-1]
    if len(res) != d:
        raise ValueError(f"grid has {len(res)} axes but points have d={d}")
    base, frac = dense_cells(x, res)
    strides = dense_strides(res)
    if interpolation == "nearest":  # node floor(pos + 0.5) = base + (frac >= 0.5), ties up
        node = base + (frac >= 0.5).astype(jnp.int32)
        flat = node[..., 0]
        for a in range(1, d):
            flat = flat + node[..., a] * strides[a]
        return flat[..., None], jnp.ones(x.shape[:-1] + (1,), x.dtype)
    # cubic: tensor product built axis by axis, the new axis outermost (so axis 0 is fastest);
    # broadcast outer products, a few ops per axis whatever the number of taps.
    offsets = jnp.arange(-1, 3, dtype=jnp.int32)
    idx, w = None, None
    for a, r in enumerate(res):
        ia = jnp.clip(base[..., a, None] + offsets, 0, r - 1) * strides[a]  # (..., 4)
        wa = jnp.stack(bspline_weights(frac[..., a]), axis=-1)
        if idx is None:
            idx, w = ia, wa
        else:
            idx = (ia[..., :, None] + idx[..., None, :]).reshape(*ia.shape[:-1], -1)
            w = (wa[..., :, None] * w[..., None, :]).reshape(*wa.shape[:-1], -1)
    return idx, w.astype(x.dtype)


def _dense_base_weights(
    x: jnp.ndarray, res: Sequence[int], interpolation: str, dtype
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(...,)`` int32 flat index of each point's lower corner and ``(..., 2**d)`` weights."""
    d = x.shape[-1]
    if len(res) != d:
        raise ValueError(f"grid has {len(res)} axes but points have d={d}")
    base, frac = dense_cells(x, res)
    strides = dense_strides(res)
    flat = base[..., 0]
    for a in range(1, d):  # int32: any table that fits in memory has prod(res) < 2**31
        flat = flat + base[..., a] * strides[a]
    return flat, corner_weights(frac, interpolation).astype(dtype)


def _dense_corner_idx(base: jnp.ndarray, res: Sequence[int]) -> jnp.ndarray:
    """``(...,)`` lower-corner indices -> ``(..., 2**d)`` indices of all corners."""
    return base[..., None] + jnp.asarray(dense_offsets(res), jnp.int32)


# ----------------------------------------------------------------------------- gathers


def _take_rows(table: jnp.ndarray, idx: jnp.ndarray) -> jnp.ndarray:
    """``table[idx]``, ``idx.shape + (k,)``, for in-range integer ``idx`` of any shape."""
    return lax.gather(
        table,
        idx[..., None],
        lax.GatherDimensionNumbers(offset_dims=(idx.ndim,), collapsed_slice_dims=(0,), start_index_map=(0,)),
        slice_sizes=(1, table.shape[1]),
        mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )


def _corner_blocks(table: jnp.ndarray, idx: jnp.ndarray) -> list[jnp.ndarray]:
    """``[table[idx[..., c]] for c]``, each ``(n, k)`` with ``n = prod(idx.shape[:-1])``.

    One gather in corner-major order, split into blocks: the transpose (reverse mode) is a
    concatenation of per-corner updates and a single scatter-add.
    """
    n_corners = idx.shape[-1]
    flat = idx.reshape(-1, n_corners)
    corner_major = jnp.concatenate([flat[:, c] for c in range(n_corners)])
    return lax.split(_take_rows(table, corner_major), [flat.shape[0]] * n_corners, axis=0)


def _weighted_blocks(w: jnp.ndarray, blocks: list[jnp.ndarray]) -> jnp.ndarray:
    """``sum_c w[..., c] * blocks[c]`` -> ``(n, k)``; ``w`` is the primal ``(..., C)`` weight."""
    w = w.reshape(-1, w.shape[-1])
    out = w[:, 0, None] * blocks[0]
    for c in range(1, len(blocks)):
        out = out + w[:, c, None] * blocks[c]
    return out


def _weighted_rows(table: jnp.ndarray, idx: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """Primal ``sum_c w[..., c] * table[idx[..., c]]``: a gather per corner, fused by XLA."""
    out = w[..., 0, None] * _take_rows(table, idx[..., 0])
    for c in range(1, idx.shape[-1]):
        out = out + w[..., c, None] * _take_rows(table, idx[..., c])
    return out


@jax.custom_jvp
def _interpolate(table: jnp.ndarray, idx: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    return _weighted_rows(table, idx, w)


def _weight_tangent(blocks: list[jnp.ndarray], dw: jnp.ndarray) -> jnp.ndarray:
    """``sum_c dw[..., c] * blocks[c]`` -> ``(n, k)``: the tangent through the weights.

    Summed corner by corner and, for few features, feature by feature: the transpose then
    has no reduction over the tiny feature axis (see the module docstring).
    """
    n_corners = len(blocks)
    # lax.split (not slicing) so that the transpose concatenates instead of padding.
    dws = [v[:, 0] for v in lax.split(dw.reshape(-1, n_corners), [1] * n_corners, axis=1)]
    if blocks[0].shape[1] > _MAX_UNROLLED_FEATURES:
        return sum(dws[c][:, None] * blocks[c] for c in range(n_corners))
    cols = []
    for j in range(blocks[0].shape[1]):
        col = dws[0] * blocks[0][:, j]
        for c in range(1, n_corners):
            col = col + dws[c] * blocks[c][:, j]
        cols.append(col)
    return jnp.stack(cols, axis=-1)


def _interpolate_jvp(primals, tangents):
    table, idx, w = primals
    dtable, _, dw = tangents  # idx is integer: no tangent
    out_shape = idx.shape[:-1] + (table.shape[1],)
    tangent = None
    if isinstance(dw, SymbolicZero):
        out = _weighted_rows(table, idx, w)
    else:  # x is differentiated: the corner rows are needed for the weight tangent too
        blocks = _corner_blocks(table, idx)
        out = _weighted_blocks(w, blocks).reshape(out_shape)
        tangent = _weight_tangent(blocks, dw).reshape(out_shape)
    if not isinstance(dtable, SymbolicZero):
        t = _weighted_blocks(w, _corner_blocks(dtable, idx)).reshape(out_shape)
        tangent = t if tangent is None else tangent + t
    if tangent is None:
        tangent = jnp.zeros_like(out)
    return out, tangent


_interpolate.defjvp(_interpolate_jvp, symbolic_zeros=True)


def gather_interpolate(table: jnp.ndarray, idx: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """``sum_c w[..., c] * table[idx[..., c]]``.

    Args:
      table: ``(T, k)`` node values.
      idx: ``(..., C)`` int indices into ``table``'s first axis; out-of-range indices are
        clamped to ``[0, T - 1]``.
      w: ``(..., C)`` weights.

    Returns:
      ``(..., k)`` interpolated features, in ``table``'s dtype. Differentiable in ``table``
      and ``w`` in forward and reverse mode (see the module docstring for how).
    """
    w = w.astype(table.dtype)
    return _interpolate(table, jnp.clip(idx, 0, table.shape[0] - 1), w)


# ----------------------------------------------------------------------------- dense grids


def _stack_shifted(table: jnp.ndarray, offsets: Sequence[int]) -> jnp.ndarray:
    """``(T, k) -> (T, C k)``: row ``j`` holds ``table[j + o_c]`` for every corner ``c``.

    Rows past the end are zero-padded; they are never read, since a cell's lower corner
    ``j`` always has ``j + o_c < T``.
    """
    k = table.shape[1]
    shifted = [table if o == 0 else jnp.concatenate([table[o:], jnp.zeros((o, k), table.dtype)]) for o in offsets]
    return jnp.concatenate(shifted, axis=1)


def _use_stacked(n_rows: int, n_points: int, n_corners: int, k: int) -> bool:
    """Interpolate the table tangent from the corner-stacked table (module docstring)?

    Stacking saves ``C - 1`` scatter indices per point and costs about a quarter of an
    index's time per accumulator value (zero-fill and the shifted adds), ``T C k`` of them
    (measured on XLA:CPU for 2D grids with ``k`` = 2 and 4).
    """
    return 4 * (n_corners - 1) * n_points >= n_rows * n_corners * k


def _default_chunk(n_rows: int, n_corners: int, k: int, stacked: bool, itemsize: int) -> int | None:
    """Points per chunk of the table-tangent scan; ``None`` (a single chunk) off CPU.

    The largest power of two whose scatter updates (``C k`` values of ``itemsize`` bytes
    per point) fit beside the gradient accumulator in ``_TEMP_BYTES``.
    """
    if jax.default_backend() != "cpu":
        return None
    accumulator = n_rows * (n_corners * k if stacked else k) * itemsize
    budget = max(_MIN_CHUNK_BYTES, _TEMP_BYTES - accumulator)
    return 1 << max(0, (budget // (n_corners * k * itemsize)).bit_length() - 1)


def _dense_table_tangent(
    dtable: jnp.ndarray, x: jnp.ndarray, res: tuple[int, ...], interpolation: str, chunk: int | None
) -> jnp.ndarray:
    """``sum_c w_c(x) dtable[idx_c(x)]``, ``(n, k)``: linear in ``dtable``.

    Written as a scan over chunks of points whose body recomputes the cells from ``x``, so
    that its transpose, the table gradient, scatter-adds chunk by chunk into one carried
    accumulator and holds no per-point intermediates of the whole batch.
    """
    n, d = x.shape
    rows, k = dtable.shape
    offsets = dense_offsets(res)
    n_corners = len(offsets)
    stacked = _use_stacked(rows, n, n_corners, k)
    source = _stack_shifted(dtable, offsets) if stacked else dtable

    def one_chunk(xc):
        base, w = _dense_base_weights(xc, res, interpolation, dtable.dtype)
        if stacked:
            # One gather of C k contiguous values per point; its transpose is ONE scatter-add
            # of (C k)-wide rows at the lower corner into the stacked accumulator.
            blocks = lax.split(_take_rows(source, base), [k] * n_corners, axis=1)
        else:
            blocks = _corner_blocks(source, _dense_corner_idx(base, res))
        return _weighted_blocks(w, blocks)

    if chunk is None:
        chunk = _default_chunk(rows, n_corners, k, stacked, jnp.dtype(dtable.dtype).itemsize)
    if chunk is None or n <= chunk:
        return one_chunk(x)
    # Recompute the cells of each chunk in the backward pass instead of saving them all.
    one_chunk = jax.checkpoint(one_chunk)
    n_chunks = n // chunk
    m = n_chunks * chunk
    head = x if m == n else x[:m]
    _, out = lax.scan(lambda carry, xc: (carry, one_chunk(xc)), None, head.reshape(n_chunks, chunk, d))
    out = out.reshape(m, k)
    if m < n:
        out = jnp.concatenate([out, one_chunk(x[m:])])
    return out


def _dense_point_tangent(
    table: jnp.ndarray, x: jnp.ndarray, dx: jnp.ndarray, res: tuple[int, ...], interpolation: str
) -> jnp.ndarray:
    """``sum_c (dw_c(x) . dx) table[idx_c(x)]``, ``(n, k)``: the lower corner is piecewise
    constant in ``x``, so only the weights vary. One gather per corner, which XLA fuses
    into the weighted sums (and into their transpose) instead of storing the rows."""
    base, _ = _dense_base_weights(x, res, interpolation, table.dtype)
    _, dw = jax.jvp(lambda p: _dense_base_weights(p, res, interpolation, table.dtype)[1], (x,), (dx,))
    idx = _dense_corner_idx(base, res)
    return _weight_tangent([_take_rows(table, idx[:, c]) for c in range(idx.shape[1])], dw)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _interpolate_dense(table, x, res, interpolation, chunk):
    """``(T, k), (n, d) -> (n, k)``; see :func:`interpolate_dense`."""
    base, w = _dense_base_weights(x, res, interpolation, table.dtype)
    return _weighted_rows(table, _dense_corner_idx(base, res), w)


def _interpolate_dense_jvp(res, interpolation, chunk, primals, tangents):
    table, x = primals
    dtable, dx = (None if isinstance(t, SymbolicZero) else t for t in tangents)
    out = _interpolate_dense(table, x, res, interpolation, chunk)
    parts = []
    if dx is not None:
        point_tangent = _dense_point_tangent
        corner_rows = x.shape[0] * 2 ** len(res) * table.shape[1] * jnp.dtype(table.dtype).itemsize
        if corner_rows > _TEMP_BYTES // 2:  # recompute the corner rows in the backward pass
            point_tangent = jax.checkpoint(point_tangent, static_argnums=(3, 4))
        parts.append(point_tangent(table, x, dx, res, interpolation))
    if dtable is not None:
        parts.append(_dense_table_tangent(dtable, x, res, interpolation, chunk))
    return out, sum(parts[1:], parts[0]) if parts else jnp.zeros_like(out)


_interpolate_dense.defjvp(_interpolate_dense_jvp, symbolic_zeros=True)


def interpolate_dense(
    table: jnp.ndarray,
    x: jnp.ndarray,
    res: Sequence[int],
    interpolation: str = "linear",
    *,
    chunk: int | None = None,
) -> jnp.ndarray:
    """Interpolation of a dense node table (linear by default; see the module docstring).

    Args:
      table: ``(prod(res), k)`` node values, axis 0 fastest (see module docstring).
      x: ``(..., d)`` coordinates in ``[0, 1]`` (clamped).
      res: nodes per axis.
      interpolation: one of :data:`INTERPOLATIONS`: ``"linear"`` (multilinear),
        ``"smoothstep"``, ``"nearest"`` or ``"cubic"`` (uniform cubic B-spline, ``4**d``
        taps, clamped at the edges).
      chunk: points per chunk of the table-gradient scan (default on CPU: sized to keep
        the backward pass's scratch memory near 24 MiB; elsewhere one chunk); linear and
        smoothstep only. Affects speed and memory only, never the result.

    Returns:
      ``(..., k)`` values, in ``table``'s dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> table = jnp.arange(4.0).reshape(4, 1)        # 2x2 grid, values 0 1 / 2 3
      >>> interpolate_dense(table, jnp.array([[0.5, 0.5], [1.0, 0.0]]), (2, 2))[:, 0]
      Array([1.5, 1. ], dtype=float32)
    """
    res = tuple(int(r) for r in res)  # hashable: a static argument of the custom JVP
    if table.shape[0] != int(np.prod(res)):
        raise ValueError(f"table has {table.shape[0]} rows, grid {res} needs {int(np.prod(res))}")
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be a positive number of points, got {chunk}")
    check_interpolation(interpolation)
    if interpolation not in _CORNER_KERNELS:
        # nearest and cubic: the generic gather of their taps (clamped cubic taps have no
        # fixed offsets from the cell, which the corner-stacked fast path relies on).
        return gather_interpolate(table, *dense_taps(x, res, interpolation))
    # The grid, dimension and interpolation are checked where they are used (dense_cells,
    # _dense_base_weights, corner_weights), while the custom JVP traces its function.
    out = _interpolate_dense(table, x.reshape(-1, x.shape[-1]), res, interpolation, chunk)
    return out.reshape(x.shape[:-1] + (table.shape[1],))
