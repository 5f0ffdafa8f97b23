"""Empirical neural tangent kernels of Flax models.

``empirical_ntk(model, variables, x)`` returns

    K[n, m] = (1/O) sum_o < d f_o(x_n) / d theta , d f_o(x_m) / d theta >      (trace=True)
    K[n, m, o, p] = < d f_o(x_n) / d theta , d f_p(x_m) / d theta >            (trace=False)

for ``x`` of shape ``(N, d)`` and a model with ``O`` outputs. The traced kernel is the
**mean** over outputs, the same convention as neural-tangents' ``trace_axes`` (which
averages, not sums, over the traced axes).

Methods:

* ``"structured"`` (default): exact, and cheap. Every parameterised op in ntkgrid is
  linear in its parameters with an outer-product Jacobian (see :mod:`ntkgrid._taps`), so
  its share of the kernel is a Hadamard product of two N x N Gram matrices: the output
  cotangents at the op, and the op's inputs (activations for dense layers, the sparse
  interpolation weights of points that share grid nodes for grid levels). Cost grows with
  ``N^2`` times the layer widths; no ``N x P`` Jacobian is ever formed, and the kernel is
  assembled in ``block_size`` x ``block_size`` blocks.
* ``"jacobian"``: neural-tangents' jacobian contraction (implementation 1).
* ``"ntvp"``: neural-tangents' NTK-vector products (implementation 2).
* ``"structured_derivatives"`` (neural-tangents' implementation 3) is refused: it
  rewrites jaxprs through JAX internals that no longer exist in current JAX.

Kernels can be split by parameter group (``groups=True``): ``"total"``, ``"mlp"`` (all
dense layers), ``"grid"`` (all grid levels) and one entry per op, e.g. ``"dense_0"`` or
``"encoding/level_1"``. ``total - grid`` is the paper's "MPE (No Grid)" kernel.

The computation runs in the dtype of ``variables`` and ``x``. Spectra need float64:
use :func:`ntkgrid.spectrum.ntk_spectrum`, which scopes x64 around this call.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from ntkgrid._nt_compat import import_nt
from ntkgrid._taps import STRUCTURE, TAPS

__all__ = ["METHODS", "RefusedMethodError", "TapStructure", "empirical_ntk", "nt_ntk", "structured_ntk", "tap_structure"]

METHODS = ("structured", "jacobian", "ntvp")

_REFUSED = {
    "structured_derivatives": (
        "neural-tangents' structured derivatives (implementation 3) cannot be used on current "
        "JAX: it re-derives the network's jaxpr through JAX-internal APIs that changed after JAX "
        "0.4 (it calls jax.interpreters.ad.linearize with the old signature and fails with "
        "\"linearize() got multiple values for argument 'has_aux'\"; its per-primitive rules also "
        "target removed primitives). Use method='structured' (ntkgrid's exact structured kernel, "
        "much faster) or 'jacobian'."
    ),
}


class RefusedMethodError(RuntimeError):
    """A kernel method that exists upstream but cannot give correct results on current JAX."""


class TapStructure(dict):
    """Per-op structure and cotangents: ``{path: (structure, cotangent (O, N, width))}``."""


def tap_structure(model: nn.Module, variables: Mapping, x: jnp.ndarray):
    """Apply ``model`` once recording its taps; return ``(out, {path: (structure, cot)})``.

    ``cot`` has shape ``(O, N, width)``: ``cot[o, n]`` is ``d f_o(x_n) / d(op output at
    x_n)``. Raises if the taps do not cover every parameter of ``variables["params"]``.
    """
    if x.ndim != 2:
        raise ValueError(f"points must have shape (N, d), got {tuple(x.shape)}")
    variables = dict(variables)
    _, state = model.apply(variables, x, mutable=[STRUCTURE, TAPS])
    taps, structure = state.get(TAPS, {}), state.get(STRUCTURE, {})

    def f(t):
        return model.apply({**variables, TAPS: t}, x)

    out, vjp = jax.vjp(f, taps)
    if out.ndim != 2:
        raise ValueError(f"model output must have shape (N, O), got {tuple(out.shape)}")
    eye = jnp.eye(out.shape[-1], dtype=out.dtype)
    cots = jax.vmap(lambda e: vjp(jnp.broadcast_to(e, out.shape))[0])(eye)
    flat_s = traverse_util.flatten_dict(structure, sep="/", is_leaf=lambda k, v: isinstance(v, dict) and "kind" in v)
    flat_c = traverse_util.flatten_dict(cots, sep="/")
    if set(flat_s) != set(flat_c):
        raise ValueError(f"tap structure and perturbations disagree: {sorted(flat_s)} vs {sorted(flat_c)}")
    n_tapped = sum(int(s["n_params"]) for s in flat_s.values())
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables.get("params", {})))
    if n_tapped != n_params:
        raise ValueError(
            f"the structured NTK covers {n_tapped} of the model's {n_params} parameters: some "
            "parameterised op is not built from ntkgrid's tapped layers (NTKDense, grid levels). "
            "Use method='jacobian' for such models."
        )
    paths = sorted(flat_s, key=lambda p: (flat_s[p]["kind"] != "sparse", p))
    return out, TapStructure({_op_name(p): (flat_s[p], flat_c[p]) for p in paths})


def _op_name(path: str) -> str:
    parts = path.split("/")
    if parts[-1] == "out":  # NTKDense taps its output as "out"
        parts = parts[:-1]
    elif len(parts) >= 2 and parts[-1] == parts[-2]:
        parts = parts[:-1]
    return "/".join(parts)


def _rows(a: jnp.ndarray, i: int, b: int) -> jnp.ndarray:
    return jax.lax.dynamic_slice_in_dim(a, i, b, axis=a.ndim - 2 if a.ndim == 3 else 0)


# Sparse ops with at most this many taps per point (linear and smoothstep grids up to d = 3)
# build their Gram pair of taps by pair; more taps (cubic) take a loop over one side's taps.
_UNROLLED_TAPS = 8


def _input_gram(s: dict, i: int, j: int, b: int) -> jnp.ndarray:
    """``(b, b)`` (or ``(k, b, b)`` for per-feature sparse weights) Gram of an op's inputs."""
    if s["kind"] == "dense":
        a_i, a_j = _rows(s["a"], i, b), _rows(s["a"], j, b)
        g = (s["w_scale"] ** 2) * (a_i @ a_j.T)
        return g + s["b_scale"] ** 2 if s["b_scale"] is not None else g
    idx, w = s["idx"], s["w"]
    ii, ij = jax.lax.dynamic_slice_in_dim(idx, i, b, 0), jax.lax.dynamic_slice_in_dim(idx, j, b, 0)
    wi, wj = jax.lax.dynamic_slice_in_dim(w, i, b, 0), jax.lax.dynamic_slice_in_dim(w, j, b, 0)
    per_feature = w.ndim == idx.ndim + 1
    if not per_feature and idx.shape[1] > _UNROLLED_TAPS:
        # Many taps (cubic: 4**d): one step per tap of the row points, vectorised over the
        # column points' taps, so the program has C steps instead of C**2.
        g = 0.0
        for c in range(idx.shape[1]):
            same = (ii[:, c, None, None] == ij[None, :, :]).astype(w.dtype)  # (b, b, C)
            g = g + wi[:, c, None] * jnp.sum(same * wj[None, :, :], axis=-1)
        return g
    g = 0.0
    for c in range(idx.shape[1]):
        for c2 in range(idx.shape[1]):
            same = (ii[:, c, None] == ij[None, :, c2]).astype(w.dtype)
            if per_feature:  # (k, b, b)
                g = g + same[None] * (wi[:, c, :].T[:, :, None] * wj[:, c2, :].T[:, None, :])
            else:
                g = g + same * (wi[:, c, None] * wj[None, :, c2])
    return g


def _op_block(s: dict, cot: jnp.ndarray, i: int, j: int, b: int, trace: bool) -> jnp.ndarray:
    """One op's kernel on rows ``i:i+b`` x columns ``j:j+b``."""
    ci = jax.lax.dynamic_slice_in_dim(cot, i, b, 1)  # (O, b, w)
    cj = jax.lax.dynamic_slice_in_dim(cot, j, b, 1)
    g = _input_gram(s, i, j, b)
    per_feature = g.ndim == 3
    if trace:
        if per_feature:
            return jnp.einsum("onf,omf,fnm->nm", ci, cj, g) / cot.shape[0]
        o, _, w = ci.shape
        ct = jnp.transpose(ci, (1, 0, 2)).reshape(b, o * w) @ jnp.transpose(cj, (1, 0, 2)).reshape(b, o * w).T
        return ct * g / o
    if per_feature:
        return jnp.einsum("onf,pmf,fnm->nmop", ci, cj, g)
    return jnp.einsum("onw,pmw->nmop", ci, cj) * g[:, :, None, None]


_GROUP_OF_KIND = {"dense": "mlp", "sparse": "grid"}


def _group_mode(groups: bool | str) -> str:
    """``False`` -> ``"none"``, ``True`` -> ``"split"``, ``"ops"`` -> ``"ops"``."""
    if groups is False or groups is None:
        return "none"
    if groups is True or groups == "split":
        return "split"
    if groups == "ops":
        return "ops"
    raise ValueError(f"groups must be False, True ('split': total/mlp/grid) or 'ops' (also per op), got {groups!r}")


@functools.lru_cache(maxsize=32)
def _compiled(model: nn.Module, trace: bool, b: int, mode: str):
    """Jitted (structure, block) functions for one model, cached so repeated kernels of the
    same model (checkpoints, sweeps) compile once per input shape."""
    static: dict[str, dict] = {}

    @jax.jit
    def traced(v, xx):  # arrays cross the jit boundary; kinds and scales are kept aside
        out, ops = tap_structure(model, v, xx)
        arrays = {}
        for name, (s, c) in ops.items():
            static[name] = {k: val for k, val in s.items() if not isinstance(val, jax.Array)}
            arrays[name] = ({k: val for k, val in s.items() if isinstance(val, jax.Array)}, c)
        return out, arrays

    @jax.jit
    def block(arrays, i, j):
        # One pass: every op's block is computed once from the shared cotangents and summed
        # on the device into the requested groups, so only those cross to the host.
        per_op = {name: _op_block({**static[name], **a}, c, i, j, b, trace) for name, (a, c) in arrays.items()}
        if mode == "none":
            return {"total": sum(per_op.values())}
        sums: dict[str, jnp.ndarray] = {}
        for name, k in per_op.items():
            g = _GROUP_OF_KIND[static[name]["kind"]]
            sums[g] = sums[g] + k if g in sums else k
        return {**sums, **per_op} if mode == "ops" else sums

    return traced, block, static


def structured_ntk(
    model: nn.Module,
    variables: Mapping,
    x: jnp.ndarray,
    *,
    trace: bool = True,
    groups: bool | str = False,
    block_size: int = 1024,
) -> np.ndarray | dict[str, np.ndarray]:
    """Exact empirical NTK from per-op Gram matrices (see the module docstring).

    Args:
      model: a Flax module built from ntkgrid's tapped ops (``CoordinateMLP`` with any
        ntkgrid encoding).
      variables: ``{"params": ...}`` as returned by ``model.init``.
      x: ``(N, d)`` points.
      trace: mean over outputs (``(N, N)``) or the full ``(N, N, O, O)`` kernel.
      groups: ``False``: the total kernel only. ``True`` (or ``"split"``): a dict with
        ``"total"``, ``"mlp"`` (all dense layers) and, when the model has grid levels,
        ``"grid"``; ``total = mlp + grid`` exactly. ``"ops"``: also one kernel per op
        (``"dense_0"``, ``"encoding/level_1"``, ...). The groups come from one pass over the
        blocks (the cotangents and each op's Gram block are computed once, summed on the
        device), so ``True`` costs about one extra ``N x N`` host array per group.
      block_size: rows and columns per block; bounds the working memory.

    Returns:
      The kernel as a NumPy array (dtype of the computation), or a dict of them.
    """
    mode = _group_mode(groups)
    n = x.shape[0]
    b = int(min(block_size, n))
    n_pad = -(-n // b) * b
    x_pad = jnp.concatenate([x, jnp.broadcast_to(x[:1], (n_pad - n, x.shape[1]))]) if n_pad > n else x
    traced, block, static = _compiled(model, trace, b, mode)
    out, arrays = traced(variables, x_pad)
    o = out.shape[-1]
    shape = (n, n) if trace else (n, n, o, o)
    kinds = {static[name]["kind"] for name in arrays}
    keys = ["total"] if mode == "none" else [_GROUP_OF_KIND[k] for k in ("dense", "sparse") if k in kinds]
    if mode == "ops":
        keys += list(arrays)
    result = {k: np.empty(shape, dtype=np.dtype(out.dtype)) for k in keys}

    for i in range(0, n, b):
        for j in range(i, n, b):
            blocks = jax.device_get(block(arrays, i, j))
            ri, rj = slice(i, min(i + b, n)), slice(j, min(j + b, n))
            ni, nj = ri.stop - ri.start, rj.stop - rj.start
            for key, k in blocks.items():
                k = k[:ni, :nj]
                result[key][ri, rj] = k
                if j != i:
                    result[key][rj, ri] = np.swapaxes(k, 0, 1) if trace else np.transpose(k, (1, 0, 3, 2))
    if mode == "none":
        return result["total"]
    present = [result[g] for g in ("mlp", "grid") if g in result]
    total = present[0] + present[1] if len(present) == 2 else present[0].copy()
    return {"total": total, **result}


def _param_subset(params: Mapping, keep: Callable[[str], bool]):
    flat = traverse_util.flatten_dict(dict(params), sep="/")
    kept = {k: v for k, v in flat.items() if keep(k)}
    if not kept:
        raise ValueError("param_filter kept no parameters")
    rest = {k: v for k, v in flat.items() if not keep(k)}
    return kept, rest


def nt_ntk(
    model: nn.Module | Callable,
    variables: Mapping,
    x: jnp.ndarray,
    *,
    method: str = "jacobian",
    trace: bool = True,
    param_filter: Callable[[str], bool] | None = None,
    **nt_kwargs: Any,
) -> jnp.ndarray:
    """neural-tangents' empirical NTK of ``model.apply`` w.r.t. ``variables["params"]``.

    Args:
      model: a Flax module (its ``apply`` is used) or any ``f(variables, x)``.
      variables: ``{"params": ...}``; other collections are held fixed.
      x: ``(N, d)`` points.
      method: ``"jacobian"`` (implementation 1) or ``"ntvp"`` (implementation 2).
      trace: ``trace_axes=(-1,)`` (mean over outputs) or ``()`` (``(N, N, O, O)``).
      param_filter: keep only parameters whose ``"/"``-joined path passes, e.g.
        ``lambda p: p.startswith("encoding/")`` for the grid-only kernel.
      **nt_kwargs: passed to ``neural_tangents.empirical_ntk_fn``.
    """
    if method in _REFUSED:
        raise RefusedMethodError(_REFUSED[method])
    nt = import_nt()
    impl = {"jacobian": nt.NtkImplementation.JACOBIAN_CONTRACTION, "ntvp": nt.NtkImplementation.NTK_VECTOR_PRODUCTS}
    if method not in impl:
        raise ValueError(f"method must be one of {sorted(impl)}, got {method!r}")
    apply = model.apply if isinstance(model, nn.Module) else model
    variables = dict(variables)
    keep = param_filter or (lambda _: True)
    kept, rest = _param_subset(variables["params"], keep)

    def f(p, xx):
        params = traverse_util.unflatten_dict({**rest, **p}, sep="/")
        return apply({**variables, "params": params}, xx)

    fn = nt.empirical_ntk_fn(
        f, trace_axes=(-1,) if trace else (), vmap_axes=0, implementation=impl[method], **nt_kwargs
    )
    with warnings.catch_warnings():
        # neural-tangents 0.6.5 calls np.size on ShapeDtypeStruct, which JAX deprecates.
        warnings.filterwarnings("ignore", message="size requires ndarray", category=DeprecationWarning)
        return fn(x, None, kept)


def empirical_ntk(
    model: nn.Module,
    variables: Mapping,
    x: jnp.ndarray,
    *,
    method: str = "structured",
    trace: bool = True,
    groups: bool | str = False,
    block_size: int = 1024,
):
    """Empirical NTK of ``model`` at ``variables`` on points ``x`` (``(N, d)``).

    ``method`` is ``"structured"`` (default, exact), ``"jacobian"`` or ``"ntvp"``
    (neural-tangents). ``groups=True`` (structured only) returns a dict of kernels by
    parameter group. See the module docstring for conventions.
    """
    if method == "structured":
        return structured_ntk(model, variables, x, trace=trace, groups=groups, block_size=block_size)
    if method in _REFUSED:
        raise RefusedMethodError(_REFUSED[method])
    if groups:
        raise ValueError("groups=True needs method='structured'")
    return np.asarray(nt_ntk(model, variables, x, method=method, trace=trace))
