"""Eigenvalue spectra of empirical NTKs, in float64, with their numerical floor.

float32 kernels cannot resolve these spectra (for a 2x512 MLP on 1024 grid points a
float32 kernel put eigenvalue #500 at 2.8e-4 where float64 gives 2.6e-5, with 300
negative eigenvalues), so :func:`ntk_spectrum` casts the parameters and points to
float64 and computes the kernel inside a scoped ``jax.enable_x64(True)``: the caller's
global JAX configuration is untouched.

Every :class:`Spectrum` carries its floor ``N * eps * lambda_max`` (eps = float64
machine epsilon): eigenvalues below it are rounding noise of the eigensolver and the
kernel's assembly, not signal. Plots draw it.

Eigensolvers follow the backend (:func:`eigvalsh`, :func:`eigh`): on a GPU/TPU JAX's
float64 ``jnp.linalg.eigvalsh``/``eigh`` on the device (at N = 8192 on an H200: 0.85 s
against 10.1 s for NumPy on 16 cores), on a CPU NumPy's LAPACK. A device that runs out
of memory falls back to LAPACK with a warning.

:func:`offdiag_fraction` measures how much of a kernel lies off its diagonal: for the
grid group it is 0 exactly when no two points share a grid node (then the grid kernel is
diagonal and trivially lifts every eigenvalue), so a spectrum that is meant to test the
grid's effect must report it.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid.ntk import empirical_ntk

__all__ = [
    "SPECTRUM_LENGTH",
    "Spectrum",
    "baseline_below",
    "eigh",
    "eigvalsh",
    "full_ntk",
    "kernel_change",
    "mean_spectrum",
    "ntk_kernels",
    "ntk_spectrum",
    "offdiag_fraction",
    "resample",
    "spectrum_from_kernel",
    "weyl_bound",
]

EPS64 = float(np.finfo(np.float64).eps)
#: Resampled length of mean spectra (the paper scales every spectrum to 8000 values).
SPECTRUM_LENGTH = 8000


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """Eigenvalues of a symmetric kernel, sorted descending, with their noise floor.

    Attributes:
      eigenvalues: ``(N,)`` float64, descending (kernel units: output^2 per parameter^2).
      floor: ``N * eps * max|lambda|``; eigenvalues below it are numerical noise.
      n_above_floor: how many eigenvalues exceed ``floor``.
      n_negative: how many eigenvalues are negative (all should be within ``floor`` of 0).
      asymmetry: ``max|K - K^T| / max|K|`` of the kernel it came from.
    """

    eigenvalues: np.ndarray
    floor: float
    n_above_floor: int
    n_negative: int
    asymmetry: float = 0.0

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[-1])

    def resample(self, length: int = 8000) -> np.ndarray:
        """The eigenvalues linearly resampled to ``length`` values (see :func:`resample`)."""
        return resample(self.eigenvalues, length)

    def to_dict(self) -> dict:
        """JSON-ready dict (eigenvalues as a list)."""
        return {
            "eigenvalues": self.eigenvalues.tolist(),
            "floor": self.floor,
            "n_above_floor": self.n_above_floor,
            "n_negative": self.n_negative,
            "asymmetry": self.asymmetry,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Spectrum:
        return cls(np.asarray(d["eigenvalues"], np.float64), float(d["floor"]), int(d["n_above_floor"]),
                   int(d["n_negative"]), float(d.get("asymmetry", 0.0)))

    def to_arrays(self, name: str) -> dict[str, np.ndarray]:
        """This spectrum as named arrays for an ``.npz`` (the one layout of spectrum files,
        :func:`ntkgrid.training.runfolder.save_spectra`): ``eigenvalues/<name>`` ``(N,)``
        float64, ``floor/<name>`` float64, ``n_above_floor/<name>`` int64,
        ``n_negative/<name>`` int64 and ``asymmetry/<name>`` float64 (0-d)."""
        return {
            f"eigenvalues/{name}": np.asarray(self.eigenvalues, np.float64),
            f"floor/{name}": np.float64(self.floor),
            f"n_above_floor/{name}": np.int64(self.n_above_floor),
            f"n_negative/{name}": np.int64(self.n_negative),
            f"asymmetry/{name}": np.float64(self.asymmetry),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping, name: str) -> Spectrum:
        """The spectrum ``name`` of named arrays written by :meth:`to_arrays` (e.g. an open
        ``np.load`` of an ``.npz``)."""
        return cls(np.asarray(arrays[f"eigenvalues/{name}"], np.float64), float(arrays[f"floor/{name}"]),
                   int(arrays[f"n_above_floor/{name}"]), int(arrays[f"n_negative/{name}"]),
                   float(arrays[f"asymmetry/{name}"]))


def _solver_backend(backend: str | None) -> str:
    if backend is not None:
        if backend not in ("numpy", "jax"):
            raise ValueError(f"eigensolver backend must be 'numpy', 'jax' or None, got {backend!r}")
        return backend

    return "numpy" if jax.default_backend() == "cpu" else "jax"


def _symmetric_solve(k: np.ndarray, vectors: bool, backend: str | None):
    """Float64 eigen-decomposition of the symmetric ``k`` (ascending, as LAPACK)."""
    k = np.asarray(k, np.float64)
    if _solver_backend(backend) == "jax":
        try:
            with jax.enable_x64(True):
                kd = jnp.asarray(k, jnp.float64)
                res = jnp.linalg.eigh(kd) if vectors else jnp.linalg.eigvalsh(kd)
                return jax.tree.map(np.asarray, jax.device_get(res))
        except Exception as err:  # noqa: BLE001 - XlaRuntimeError has no stable import path
            if "RESOURCE_EXHAUSTED" not in str(err) and "out of memory" not in str(err).lower():
                raise
            warnings.warn(f"eigensolver on {jax.default_backend()} ran out of memory for N={k.shape[0]}; "
                          "using NumPy's LAPACK on the host", RuntimeWarning, stacklevel=3)
    return np.linalg.eigh(k) if vectors else np.linalg.eigvalsh(k)


def eigvalsh(k: np.ndarray, backend: str | None = None) -> np.ndarray:
    """Eigenvalues of the symmetric ``(N, N)`` ``k`` in float64, **descending**.

    ``backend``: ``"jax"`` (``jnp.linalg.eigvalsh`` on JAX's default device, in x64),
    ``"numpy"`` (LAPACK ``syevd`` on the host), or ``None``: ``"numpy"`` when JAX's default
    backend is the CPU, else ``"jax"``. The two agree to ~1e-13 relative (tested).
    """
    return _symmetric_solve(k, False, backend)[::-1].copy()


def eigh(k: np.ndarray, backend: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(eigenvalues (N,), eigenvectors (N, N))`` of the symmetric ``k``, float64,
    **descending**: column ``i`` of the vectors belongs to eigenvalue ``i``. ``backend``
    as in :func:`eigvalsh`."""
    w, v = _symmetric_solve(k, True, backend)
    return w[::-1].copy(), v[:, ::-1].copy()


def offdiag_fraction(kernel: np.ndarray) -> float:
    """Share of the squared Frobenius norm of an ``(N, N)`` kernel that lies off its diagonal:
    ``(||K||_F^2 - sum_n K_nn^2) / ||K||_F^2`` (0 for a diagonal kernel, ``1 - 1/N`` for a
    constant one; ``nan`` for the zero matrix)."""
    k = np.asarray(kernel, np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"kernel must be square (N, N), got {k.shape}")
    total = float(np.einsum("ij,ij->", k, k))
    if total == 0.0:
        return float("nan")
    d = np.diagonal(k)
    return max(0.0, (total - float(d @ d)) / total)


def spectrum_from_kernel(kernel: np.ndarray, backend: str | None = None) -> Spectrum:
    """Eigenvalues of a traced ``(N, N)`` kernel (or a full ``(N, N, O, O)`` one, flattened to
    ``(N O, N O)``), computed in float64 by :func:`eigvalsh` (``backend`` as there)."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim == 4:
        n, _, o, _ = k.shape
        k = k.transpose(0, 2, 1, 3).reshape(n * o, n * o)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"kernel must be square (N, N) or (N, N, O, O), got {kernel.shape}")
    if k.shape[0] == 0:
        raise ValueError("kernel is empty (0 x 0): a spectrum needs at least one point")
    finite = np.isfinite(k)
    if not finite.all():
        bad = int(k.size - np.count_nonzero(finite))
        raise ValueError(f"kernel has {bad} of {k.size} entries NaN or infinite (non-finite inputs or parameters, "
                         "or a diverged model); no spectrum")
    scale = float(np.max(np.abs(k))) or 1.0
    asym = float(np.max(np.abs(k - k.T))) / scale
    eig = eigvalsh(0.5 * (k + k.T), backend)
    floor = k.shape[0] * EPS64 * max(abs(float(eig[0])), abs(float(eig[-1])))
    return Spectrum(eig, floor, int(np.sum(eig > floor)), int(np.sum(eig < 0)), asym)


def ntk_spectrum(model, variables: Mapping, x, *, method: str = "structured", groups: bool | str = False,
                 block_size: int = 1024, backend: str | None = None, solve: Sequence[str] | None = None):
    """Float64 empirical NTK spectrum of ``model`` at ``variables`` on ``x`` (``(N, d)``).

    The traced kernel (mean over outputs) is used. With ``groups`` (``True`` or ``"ops"``,
    see :func:`ntkgrid.ntk.structured_ntk`) returns ``({group: Spectrum}, {group: kernel})``
    for the groups of :func:`ntkgrid.ntk.empirical_ntk`, plus ``"no_grid"`` when the model
    has a grid: ``total - grid``, the paper's "MPE (No Grid)", which is exactly the
    ``"mlp"`` group (the same array and spectrum, solved once); otherwise
    ``(Spectrum, kernel)``. ``backend``: the eigensolver's (see :func:`eigvalsh`).
    ``solve``: with ``groups``, the groups whose spectra are computed (default: all; the
    kernels are returned for every group). A model without a grid has ``mlp == total``:
    that spectrum is solved once.

    Raises ``ValueError`` when ``x`` has no points or non-finite coordinates, or the kernel
    has non-finite entries (e.g. non-finite parameters) -- never the eigensolver's
    "did not converge".
    """
    xs = np.asarray(x)
    if xs.ndim != 2 or xs.shape[0] == 0:
        raise ValueError(f"x must be (N, d) with N >= 1 points, got shape {xs.shape}")
    if np.issubdtype(xs.dtype, np.number) and not np.isfinite(xs).all():
        bad = int(np.count_nonzero(~np.isfinite(xs).all(axis=1)))
        raise ValueError(f"x has {bad} of {xs.shape[0]} points with NaN or infinite coordinates; no spectrum")
    k = ntk_kernels(model, variables, x, method=method, groups=groups, block_size=block_size)
    if not groups:
        return spectrum_from_kernel(k, backend), k
    wanted = set(k) if solve is None else set(solve) & set(k)
    wanted.add("total")
    if wanted & {"mlp", "no_grid"}:
        wanted |= {"mlp", "no_grid"} & set(k)  # one array, two names
    alias = {"no_grid": "mlp"} if "grid" in k else {"mlp": "total"}  # one kernel under two names
    spectra = {}
    for name in (n for n in k if n in wanted):  # "total" and "mlp" come before their aliases
        source = alias.get(name)
        spectra[name] = spectra[source] if source in spectra else spectrum_from_kernel(k[name], backend)
    return spectra, k


def ntk_kernels(model, variables: Mapping, x, *, method: str = "structured", groups: bool | str = False,
                block_size: int = 1024):
    """The float64 traced kernels :func:`ntk_spectrum` solves, without solving them: the
    ``(N, N)`` kernel, or with ``groups`` ``{group: (N, N) kernel}`` plus ``"no_grid"`` (the
    ``"mlp"`` array) when the model has a grid. ``x``: ``(N, d)`` points."""
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a, dict(variables))
        x64 = jnp.asarray(np.asarray(x), jnp.float64)
        k = empirical_ntk(_float64_model(model), v64, x64, method=method, groups=groups, block_size=block_size)
    if not groups:
        return k
    k = dict(k)
    if "grid" in k:
        k["no_grid"] = k["mlp"]
    return k


def full_ntk(model, variables: Mapping, x, *, method: str = "structured", block_size: int = 1024) -> np.ndarray:
    """Float64 full output-block NTK ``(N O, N O)`` of ``model`` at ``variables`` on ``x``
    ``(N, d)``: row/column ``n O + o`` is output ``o`` at point ``n`` (every output pair, not
    the trace over outputs). Needs ``8 (N O)^2`` bytes."""
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a, dict(variables))
        x64 = jnp.asarray(np.asarray(x), jnp.float64)
        k = np.asarray(empirical_ntk(_float64_model(model), v64, x64, method=method, trace=False,
                                     block_size=block_size), np.float64)
    n, _, o, _ = k.shape
    k = k.transpose(0, 2, 1, 3).reshape(n * o, n * o)
    return 0.5 * (k + k.T)


def _float64_model(model):
    """``model`` with every ``param_dtype`` field (its own and its encoding's) set to float64."""
    changes = {}
    if "param_dtype" in getattr(model, "__dataclass_fields__", {}):
        changes["param_dtype"] = jnp.float64
    enc = getattr(model, "encoding", None)
    if enc is not None and "param_dtype" in getattr(enc, "__dataclass_fields__", {}):
        changes["encoding"] = enc.clone(param_dtype=jnp.float64)
    return model.clone(**changes) if changes else model


def resample(eigenvalues: np.ndarray, length: int = 8000) -> np.ndarray:
    """Resample a descending spectrum to ``length`` values by linear interpolation over the
    normalised index ``i / (N - 1)``, so spectra of different sizes can be averaged (the
    paper scales every spectrum to 8000 values)."""
    e = np.asarray(eigenvalues, np.float64)
    if e.size == 1:
        return np.full(length, e[0])
    return np.interp(np.linspace(0.0, 1.0, length), np.linspace(0.0, 1.0, e.size), e)


def mean_spectrum(spectra: Sequence[Spectrum], length: int = 8000) -> dict:
    """Mean, standard deviation, min and max over runs of spectra resampled to ``length``,
    plus the mean floor. Arrays are ``(length,)``."""
    if not spectra:
        raise ValueError("mean_spectrum needs at least one spectrum")
    r = np.stack([s.resample(length) for s in spectra])
    return {
        "mean": r.mean(0), "std": r.std(0), "min": r.min(0), "max": r.max(0),
        "floor": float(np.mean([s.floor for s in spectra])), "count": len(spectra),
    }


def weyl_bound(k_no_grid: np.ndarray, k_grid: np.ndarray, k_total: np.ndarray | None = None) -> dict:
    """The paper's Theorem 1 as numbers: ``lambda_i(K_no_grid) + lambda_min(K_grid) <=
    lambda_i(K_total)`` for every i (Weyl's inequality, with ``K_total = K_no_grid + K_grid``).

    Returns ``{"holds", "max_violation", "tolerance", "lambda_min_grid", "margin"}`` where
    ``margin[i] = lambda_i(K_total) - lambda_i(K_no_grid) - lambda_min(K_grid)`` (``(N,)``)
    and ``holds`` means no margin is below ``-tolerance`` (the three kernels' floors).
    """
    k_total = k_no_grid + k_grid if k_total is None else k_total
    s_ng, s_g, s_t = (spectrum_from_kernel(k) for k in (k_no_grid, k_grid, k_total))
    margin = s_t.eigenvalues - s_ng.eigenvalues - s_g.lambda_min
    tol = s_ng.floor + s_g.floor + s_t.floor
    viol = float(max(0.0, -margin.min()))
    return {"holds": bool(viol <= tol), "max_violation": viol, "tolerance": tol,
            "lambda_min_grid": s_g.lambda_min, "margin": margin}


def baseline_below(baseline: Spectrum, other: Spectrum) -> dict:
    """For which indices ``i`` the baseline network's ``lambda_i`` lies below ``other``'s.

    Theorem 1 bounds the MPE network by its own embedded MLP, not by the baseline network,
    so this is an empirical comparison. Only indices where at least one of the two is
    above its floor are counted. Returns ``{"below": bool (n,), "fraction": float,
    "n_compared": int, "first_above": int or None}`` over ``n = min(N_a, N_b)``.
    """
    n = min(baseline.eigenvalues.size, other.eigenvalues.size)
    a, b = baseline.eigenvalues[:n], other.eigenvalues[:n]
    valid = (a > baseline.floor) | (b > other.floor)
    below = a < b
    above = np.nonzero(valid & ~below)[0]
    nv = int(valid.sum())
    return {"below": below, "fraction": float((below & valid).sum() / nv) if nv else float("nan"),
            "n_compared": nv, "first_above": int(above[0]) if above.size else None}


def kernel_change(k0: np.ndarray, k1: np.ndarray) -> float:
    """Relative Frobenius change ``||K1 - K0||_F / ||K0||_F``."""
    k0, k1 = np.asarray(k0, np.float64), np.asarray(k1, np.float64)
    return float(np.linalg.norm(k1 - k0) / np.linalg.norm(k0))
