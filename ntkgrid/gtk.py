"""The grid tangent kernel (GTK) of Zhao et al. (CVPR 2024) and their three results as numbers.

A grid model ``g(x; w)`` maps points to outputs through grid parameters ``w`` only; its
GTK is ``G[i, j] = <dg(X_i)/dw, dg(X_j)/dw>``: the grid term of the NTK of a model with
no MLP. :class:`GridModel` turns any ntkgrid encoding into such a model and :func:`gtk`
computes the kernel with :func:`ntkgrid.ntk.structured_ntk` (its ``"grid"`` group), or
with neural-tangents restricted to the grid tables.

Zhao et al.'s results, with the loss normalisation used throughout this module:

    L(w) = 1/2 sum_i sum_o (g_o(X_i; w) - Y_io)^2          (a sum, not a mean)

1. Under gradient flow ``dw/dt = -grad L``, ``dO/dt = -G (O - Y)``; for a model linear in
   ``w`` (``G`` constant) ``O(t) = Y + expm(-G t) (O(0) - Y)`` (:func:`gtk_ode_prediction`).
   Gradient descent with step ``eta`` for ``s`` steps is time ``t = s eta``; for a linear
   model it gives exactly ``Y + (I - eta G)^s (O(0) - Y)`` (:func:`gtk_gd_prediction`),
   which differs from the flow by at most :func:`gd_ode_tolerance` times ``|O(0) - Y|``.
   With a mean over ``n`` points instead of the sum, replace ``G`` by ``G / n``.
2. The GTK is stationary, ``G(t) = G(0)`` (:func:`gtk_change`): exact for models linear in
   ``w`` (every ntkgrid grid with a fixed read-out, MulFAGrid with fixed filters).
3. The generalisation bound ``sqrt(2 Y^T G^-1 Y / n)`` (:func:`generalisation_bound`),
   with ``G + ridge I`` when ``G`` is singular.

Kernels are returned as float64 NumPy arrays (computed inside a scoped
``jax.enable_x64(True)``; the global setting is untouched).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid.models import CoordinateMLP
from ntkgrid.ntk import nt_ntk, structured_ntk

__all__ = [
    "GridModel",
    "fourier_rayleigh",
    "gd_ode_tolerance",
    "generalisation_bound",
    "generalisation_bound_map",
    "gradient_descent",
    "grid_model",
    "gtk",
    "gtk_change",
    "gtk_gd_prediction",
    "gtk_ode_prediction",
    "is_grid_param",
]


class GridModel(nn.Module):
    """A grid model: an encoding followed by a fixed (parameter-free) read-out.

    ``readout="sum"``: ``g(x) = sum_f enc(x)_f``, shape ``(N, 1)``, the scalar grid model
    of Zhao et al.; ``"features"``: ``g(x) = enc(x)``, shape ``(N, F)``. The encoding must
    not append raw coordinates (use :func:`grid_model`, which switches that off).
    """

    encoding: nn.Module  # an ntkgrid grid encoding (MultiGrid, HashGrid, MulFAGrid)
    readout: str = "sum"  # "sum" (one output) or "features" (the encoding's outputs)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """``x: (N, d) -> (N, 1)`` or ``(N, F)``."""
        if getattr(self.encoding, "include_input", False):
            raise ValueError(f"{type(self.encoding).__name__} appends raw coordinates; build the grid "
                             "model with ntkgrid.gtk.grid_model(), which switches include_input off")
        f = self.encoding(x)
        if self.readout == "sum":
            return jnp.sum(f, axis=-1, keepdims=True)
        if self.readout == "features":
            return f
        raise ValueError(f"readout must be 'sum' or 'features', got {self.readout!r}")


def grid_model(encoding: nn.Module, readout: str = "sum") -> GridModel:
    """:class:`GridModel` of ``encoding`` with ``include_input`` switched off."""
    if getattr(encoding, "include_input", False):
        encoding = encoding.clone(include_input=False)
    return GridModel(encoding, readout)


def is_grid_param(path: str) -> bool:
    """Whether a ``"/"``-joined parameter path is a grid table (``encoding/.../level_<l>``)."""
    parts = path.split("/")
    return parts[0] == "encoding" and parts[-1].startswith("level_")


def _as_model(model: nn.Module, variables: Mapping) -> tuple[nn.Module, dict]:
    """A bare encoding becomes ``grid_model(encoding)`` with its variables nested under it."""
    if isinstance(model, (GridModel, CoordinateMLP)):
        return model, dict(variables)
    return grid_model(model), {"params": {"encoding": dict(variables)["params"]}}


def _float64(model: nn.Module, variables: Mapping):
    def cast(a):
        a = jnp.asarray(a)
        return a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a

    enc = model.encoding
    if "param_dtype" in getattr(enc, "__dataclass_fields__", {}):
        model = model.clone(encoding=enc.clone(param_dtype=jnp.float64))
    if "param_dtype" in getattr(model, "__dataclass_fields__", {}):
        model = model.clone(param_dtype=jnp.float64)
    return model, jax.tree.map(cast, dict(variables))


def gtk(
    model: nn.Module,
    variables: Mapping,
    x,
    *,
    method: str = "structured",
    trace: bool = True,
    block_size: int = 1024,
) -> np.ndarray:
    """The grid tangent kernel of ``model`` on ``x``, in float64.

    Args:
      model: a :class:`GridModel`, a :class:`~ntkgrid.models.CoordinateMLP` (then the GTK
        is the grid term of its NTK, MLP held fixed) or a bare grid encoding (wrapped as
        ``grid_model(encoding)``, ``variables`` being the encoding's own).
      variables: ``{"params": ...}`` of ``model``.
      x: ``(N, d)`` points.
      method: ``"structured"`` (the ``"grid"`` group of
        :func:`~ntkgrid.ntk.structured_ntk`) or ``"jacobian"`` (neural-tangents restricted
        to the grid tables, :func:`is_grid_param`; also works for MulFAGrid with
        ``learn_filters``).
      trace: mean over outputs ``(N, N)``, or the full ``(N, N, O, O)`` kernel.
      block_size: as in :func:`~ntkgrid.ntk.structured_ntk`.

    Returns:
      float64 kernel, units of output^2 per grid-parameter^2.
    """
    model, variables = _as_model(model, variables)
    with jax.enable_x64(True):
        model, variables = _float64(model, variables)
        x = jnp.asarray(np.asarray(x), jnp.float64)
        if method == "structured":
            kernels = structured_ntk(model, variables, x, trace=trace, groups=True, block_size=block_size)
            if "grid" not in kernels:
                raise ValueError(f"{type(model.encoding).__name__} has no grid levels: its GTK is empty")
            return np.asarray(kernels["grid"], np.float64)
        if method == "jacobian":
            return np.asarray(nt_ntk(model, variables, x, trace=trace, param_filter=is_grid_param), np.float64)
    raise ValueError(f"method must be 'structured' or 'jacobian', got {method!r}")


# ----------------------------------------------------------------------------- result 1


def _flat_kernel(g: np.ndarray, o0: np.ndarray) -> np.ndarray:
    """``G`` as a ``(N O, N O)`` matrix acting on ``O.reshape(-1)`` (row-major ``(N, O)``)."""
    g = np.asarray(g, np.float64)
    if g.ndim == 4:
        n, _, o, _ = g.shape
        if o0.shape != (n, o):
            raise ValueError(f"a (N, N, O, O) = {g.shape} kernel needs outputs of shape ({n}, {o}), got {o0.shape}")
        return g.transpose(0, 2, 1, 3).reshape(n * o, n * o)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or o0.shape[0] != g.shape[0]:
        raise ValueError(f"kernel {g.shape} and outputs {o0.shape} do not match")
    width = int(np.prod(o0.shape[1:]))
    return np.kron(g, np.eye(width)) if width > 1 else g


def gtk_ode_prediction(g, o0, y, t) -> np.ndarray:
    """Outputs under gradient flow with a constant GTK: ``Y + expm(-G t) (O0 - Y)``.

    Args:
      g: ``(N, N)`` GTK (applied to every output column, i.e. ``G kron I``) or the full
        ``(N, N, O, O)`` kernel.
      o0: ``(N,)`` or ``(N, O)`` outputs at ``t = 0``.
      y: targets, same shape as ``o0``.
      t: time (``lr x steps`` for gradient descent on the summed loss), a scalar or a
        ``(T,)`` array.

    Returns:
      ``o0``'s shape, or ``(T,) + o0.shape`` for an array ``t``; float64. Computed from the
      eigendecomposition of the symmetrised ``G`` (negative rounding eigenvalues are
      clipped to 0).
    """
    o0, y = np.asarray(o0, np.float64), np.asarray(y, np.float64)
    k = _flat_kernel(g, o0)
    lam, v = np.linalg.eigh(0.5 * (k + k.T))
    lam = np.maximum(lam, 0.0)
    r = v.T @ (o0 - y).reshape(-1)
    ts = np.atleast_1d(np.asarray(t, np.float64))
    out = np.stack([y + (v @ (np.exp(-lam * ti) * r)).reshape(o0.shape) for ti in ts])
    return out if np.ndim(t) else out[0]


def gtk_gd_prediction(g, o0, y, lr: float, steps: int) -> np.ndarray:
    """Outputs after ``steps`` of gradient descent on a model linear in ``w``:
    ``Y + (I - lr G)^steps (O0 - Y)`` (exact discrete-time dynamics). Shapes as
    :func:`gtk_ode_prediction` with a scalar time."""
    o0, y = np.asarray(o0, np.float64), np.asarray(y, np.float64)
    k = _flat_kernel(g, o0)
    lam, v = np.linalg.eigh(0.5 * (k + k.T))
    r = v.T @ (o0 - y).reshape(-1)
    return y + (v @ ((1.0 - lr * lam) ** int(steps) * r)).reshape(o0.shape)


def gd_ode_tolerance(g, lr: float) -> float:
    """Bound on ``|O_gd(s) - O_ode(s lr)|_2 / |O0 - Y|_2`` over all steps ``s``, for a model
    linear in ``w``: ``max_i a_i / (2 e (1 - a_i))`` with ``a_i = lr lambda_i(G)``.

    Per eigen-direction the gap is ``exp(-a s) - (1 - a)^s``, and ``1 - a >=
    exp(-a - a^2 / (2 (1 - a)))`` gives ``0 <= gap <= s a^2 exp(-a s) / (2 (1 - a)) <= a /
    (2 e (1 - a))``. Needs ``lr lambda_max < 1`` (otherwise descent does not follow the flow).
    """
    g = np.asarray(g, np.float64)
    if g.ndim == 4:
        g = g.transpose(0, 2, 1, 3).reshape(g.shape[0] * g.shape[2], -1)
    lam_max = float(np.linalg.eigvalsh(0.5 * (g + g.T))[-1])  # G kron I has G's eigenvalues
    a = lr * lam_max
    if not 0.0 <= a < 1.0:
        raise ValueError(f"lr * lambda_max(G) = {a:.3g}: gradient descent tracks the flow only below 1")
    return a / (2.0 * np.e * (1.0 - a))


def gradient_descent(model: nn.Module, variables: Mapping, x, y, lr: float, record: Sequence[int]):
    """Full-batch gradient descent on ``L = 1/2 sum (model(x) - y)^2`` over all ``params``.

    Args:
      model, variables: a Flax model and its variables (every ``params`` leaf is trained).
      x: ``(N, d)`` points; y: ``(N, O)`` targets.
      lr: step size ``eta``.
      record: increasing step counts at which to record the outputs (0 allowed).

    Returns:
      ``(outputs, variables_end)``: ``(len(record), N, O)`` NumPy outputs (dtype of the
      computation) and the variables after ``record[-1]`` steps.
    """
    variables = dict(variables)
    x, y = jnp.asarray(x), jnp.asarray(y)

    def out(p):
        return model.apply({**variables, "params": p}, x)

    def loss(p):
        return 0.5 * jnp.sum((out(p) - y) ** 2)

    @jax.jit
    def run(p, n):
        step = lambda _, q: jax.tree.map(lambda a, d: a - lr * d, q, jax.grad(loss)(q))
        return jax.lax.fori_loop(0, n, step, p)

    p, done, outs = variables["params"], 0, []
    for s in record:
        if s < done:
            raise ValueError(f"record must be increasing, got {list(record)}")
        p = run(p, s - done) if s > done else p
        done = s
        outs.append(np.asarray(jax.jit(out)(p)))
    return np.stack(outs), {**variables, "params": p}


# ----------------------------------------------------------------------------- result 2


def gtk_change(model: nn.Module, v0: Mapping, v1: Mapping, x, *, method: str = "jacobian") -> float:
    """Relative Frobenius change ``|G(v1) - G(v0)|_F / |G(v0)|_F`` of the GTK on ``x``.

    ``method="jacobian"`` (default) differentiates the model afresh at each point, so
    the check does not rely on the structured kernel's linearity assumption.
    """
    g0 = gtk(model, v0, x, method=method)
    g1 = gtk(model, v1, x, method=method)
    return float(np.linalg.norm(g1 - g0) / np.linalg.norm(g0))


# ----------------------------------------------------------------------------- result 3


def generalisation_bound(g, y, ridge: float = 0.0) -> float:
    """Zhao et al.'s Theorem 3 term ``sqrt(2 Y^T (G + ridge I)^-1 Y / n)``.

    Args:
      g: ``(n, n)`` GTK on the training points.
      y: ``(n,)`` labels.
      ridge: ``lambda >= 0`` added to the diagonal (units of ``G``), for singular ``G``.

    Raises:
      ValueError: if ``G + ridge I`` is not numerically positive definite (smallest
        eigenvalue at most ``n * eps * lambda_max``): pass a ridge.
    """
    g, y = np.asarray(g, np.float64), np.asarray(y, np.float64).reshape(-1)
    n = y.size
    if g.shape != (n, n):
        raise ValueError(f"GTK {g.shape} does not match {n} labels")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    lam, v = np.linalg.eigh(0.5 * (g + g.T))
    lam = lam + ridge
    floor = n * np.finfo(np.float64).eps * max(abs(lam[-1]), 1e-300)
    if lam[0] <= floor:
        raise ValueError(f"G + {ridge:g} I is singular (lambda_min = {lam[0]:.3g}, floor {floor:.3g}); "
                         "pass a larger ridge")
    return float(np.sqrt(2.0 * np.sum((v.T @ y) ** 2 / lam) / n))


def generalisation_bound_map(g, y1, y2, ridge: float = 0.0) -> np.ndarray:
    """:func:`generalisation_bound` of a two-point dataset over a grid of labels.

    Args:
      g: ``(2, 2)`` GTK of the two points.
      y1, y2: ``(A,)`` and ``(B,)`` label values.

    Returns:
      ``(B, A)`` bounds, row ``j`` for ``y2[j]``, column ``i`` for ``y1[i]`` (image layout).
    """
    g = np.asarray(g, np.float64)
    if g.shape != (2, 2):
        raise ValueError(f"a two-point GTK is (2, 2), got {g.shape}")
    generalisation_bound(g, np.ones(2), ridge)  # validates positive definiteness
    inv = np.linalg.inv(0.5 * (g + g.T) + ridge * np.eye(2))
    a, b = np.meshgrid(np.asarray(y1, np.float64), np.asarray(y2, np.float64))
    q = inv[0, 0] * a * a + 2.0 * inv[0, 1] * a * b + inv[1, 1] * b * b
    return np.sqrt(np.maximum(2.0 * q / 2, 0.0))  # n = 2 points


# ----------------------------------------------------------------------------- spectra


def fourier_rayleigh(g, shape: Sequence[int]) -> np.ndarray:
    """The GTK's energy per Fourier mode on a regular lattice of points.

    For points on a lattice of ``shape`` (row-major, the last axis fastest) and the
    Fourier mode ``v_nu[n] = exp(2 pi i nu . n / shape)``, returns
    ``S(nu) = v_nu^H G v_nu / N``: the diagonal of ``G`` in the Fourier basis. Under
    ``dO/dt = -G (O - Y)`` it is the initial decay rate (per unit time) of the residual's
    component along mode ``nu``: how fast the grid model learns that frequency.

    Returns:
      ``shape``-shaped float64 array in FFT order (``numpy.fft.fftfreq`` per axis).
    """
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape))
    g = np.asarray(g, np.float64)
    if g.shape != (n, n):
        raise ValueError(f"GTK {g.shape} does not match a lattice of {shape} = {n} points")
    axes = tuple(range(len(shape)))
    a = np.fft.fftn(g.reshape(shape + shape), axes=axes)  # sum_n e^{-i nu n} G[n, m]
    b = np.fft.ifftn(a, axes=tuple(len(shape) + i for i in axes)) * n  # ... e^{+i nu' m}
    diag = np.einsum(b.reshape(n, n), [0, 0], [0])
    return np.real(diag).reshape(shape) / n

