"""The paper's claims as checks that can fail, and its training prediction (Eqs. 5-7).

**Theorem 1 as stated.** Audia et al. claim that the eigenvalues of the MPE network's NTK
sit above those of the network without an encoding (the "baseline"), index by index, on
the training set. Weyl's inequality (:func:`ntkgrid.spectrum.weyl_bound`) only relates
``K_total = K_no_grid + K_grid`` to its own parts, so it holds by construction and is a
unit test of the group split, not evidence. :func:`compare_spectra` compares the two
*networks* (same MLP, same points, same checkpoint epoch): the fraction of indices with
``lambda_i(MPE) >= lambda_i(baseline)``, the median and minimum ``log10`` ratio, and a
verdict that is "does not hold" as soon as one resolved eigenvalue falls below (beyond
the two spectra's floors). :func:`scale_mlp` builds the counter-example the tests use: an
MPE network whose MLP is scaled down until its kernel sits below the baseline's.

**Predicted training (Eqs. 5-7).** Linearising the network around a checkpoint (its NTK
``K`` on the ``N`` training points, fixed from then on) and taking SGD's expected step,
the training residual ``r = f(X) - Y`` evolves as

    r_{s+1} = (I - eta * g * (B / N) * K) r_s        per SGD step,

where ``g`` is the loss's gradient scale (``dL_B / df(x_b, o) = g * r_{b,o}``; ``g = 2/(B O)``
for the mean over a minibatch of ``B`` points and ``O`` channels) and the full kernel is
taken as ``K_full[n, m, o, p] = delta_op K[n, m]`` (``K`` is the traced kernel, the mean
over outputs). In ``K``'s eigenbasis ``K = Q diag(lambda) Q^T`` every component decays on
its own: ``c_i(s) = (1 - eta g (B/N) lambda_i)^s c_i(0)``, which for small steps is the
paper's Eq. 7, ``|Q (f - Y)| = exp(-Lambda t) |Q Y|``, with ``t = eta g (B/N) s``.
:func:`predict_training` evaluates this from a checkpoint, epoch by epoch
(``ceil(E / B)`` steps of an epoch of ``E`` points), and splits the residual's energy into
eigenvalue bands. At the checkpoint itself the prediction equals the measurement by
construction (the eigenvectors span the residual); the test is the epochs after it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ntkgrid.spectrum import Spectrum

__all__ = ["band_edges", "band_energies", "compare_spectra", "compare_mean_spectra", "loss_gradient_scale", "predict_training",
           "scale_mlp"]


def compare_spectra(mpe: Spectrum, baseline: Spectrum) -> dict:
    """Theorem 1 as the paper states it: is ``lambda_i(mpe) >= lambda_i(baseline)`` for every i?

    Both spectra are descending and taken on the same points (sizes may differ; the first
    ``min(N_a, N_b)`` indices are compared). Indices where neither eigenvalue is above its
    floor are rounding noise and are not compared. Ratios use eigenvalues clamped at their
    floors.

    Returns ``{"holds": bool or None, "verdict": "holds" | "does not hold" | "cannot be
    judged", "fraction": share of compared indices with mpe >= baseline, "n_compared",
    "median_log10_ratio", "min_log10_ratio", "first_below": first index below (or None),
    "log10_ratio": (n,) array (nan where not compared)}``. "holds" needs every compared
    index at or above the baseline within the two floors' sum.
    """
    n = min(mpe.eigenvalues.size, baseline.eigenvalues.size)
    a, b = mpe.eigenvalues[:n], baseline.eigenvalues[:n]
    valid = (a > mpe.floor) | (b > baseline.floor)
    ratio = np.full(n, np.nan)
    ratio[valid] = np.log10(np.maximum(a[valid], mpe.floor) / np.maximum(b[valid], baseline.floor))
    tol = mpe.floor + baseline.floor
    below = valid & (a < b - tol)
    nv = int(valid.sum())
    if nv == 0:
        return {"holds": None, "verdict": "cannot be judged", "fraction": float("nan"), "n_compared": 0,
                "median_log10_ratio": float("nan"), "min_log10_ratio": float("nan"), "first_below": None,
                "log10_ratio": ratio}
    idx_below = np.nonzero(below)[0]
    holds = idx_below.size == 0
    return {
        "holds": bool(holds),
        "verdict": "holds" if holds else "does not hold",
        "fraction": float(np.sum(valid & (a >= b - tol)) / nv),
        "n_compared": nv,
        "median_log10_ratio": float(np.median(ratio[valid])),
        "min_log10_ratio": float(np.min(ratio[valid])),
        "first_below": int(idx_below[0]) if idx_below.size else None,
        "log10_ratio": ratio,
    }


def compare_mean_spectra(mpe_mean: Mapping, baseline_mean: Mapping) -> dict:
    """:func:`compare_spectra` on two :func:`ntkgrid.spectrum.mean_spectrum` dicts (mean
    eigenvalue curves resampled to the same length, floors averaged): the verdict "on the
    mean" over images."""
    mk = lambda m: Spectrum(np.asarray(m["mean"], np.float64), float(m["floor"]), 0, 0)  # noqa: E731
    return compare_spectra(mk(mpe_mean), mk(baseline_mean))


def scale_mlp(variables: Mapping, factor: float) -> dict:
    """``variables`` with every dense layer's kernel and bias multiplied by ``factor``
    (grid tables and other parameters unchanged). With ReLU layers this scales the
    network's output by ``factor**L`` and its gradients accordingly, so ``factor < 1``
    lowers the whole NTK: the constructed case where Theorem 1's comparison fails."""
    params = dict(variables["params"])
    for name, layer in params.items():
        if name.startswith("dense_"):
            params[name] = {k: np.asarray(v) * factor for k, v in layer.items()}
    return {**variables, "params": params}


def loss_gradient_scale(loss: str, batch_size: int, n_outputs: int, reduction: str = "mean") -> float:
    """``g`` with ``dL_B / df_o(x_b) = g * r_{b,o}`` for the minibatch loss ``L_B``.

    ``loss="mse"``: ``reduction="mean"`` (over the ``B`` points and ``O`` channels, as
    :mod:`ntkgrid.training`) gives ``2 / (B O)``; ``"sum_channels"`` (mean over points, sum over
    channels) ``2 / B``; ``"sum"`` (sum over both) ``2``. Other losses have no constant
    ``g`` (the linear prediction is for the squared error) and raise ``ValueError``.
    """
    if loss != "mse":
        raise ValueError(f"the kernel-regression prediction needs the squared-error loss, got {loss!r}")
    scales = {"mean": 2.0 / (batch_size * n_outputs), "sum_channels": 2.0 / batch_size, "sum": 2.0}
    if reduction not in scales:
        raise ValueError(f"loss reduction must be one of {sorted(scales)}, got {reduction!r}")
    return scales[reduction]


def band_edges(eigenvalues: np.ndarray, floor: float) -> np.ndarray:
    """Decade edges ``10^k`` covering the eigenvalues above ``floor`` (ascending), plus a
    first band ``[0, 10^k_min)`` for the unresolved ones."""
    lam = np.asarray(eigenvalues, np.float64)
    top = max(float(lam.max()), floor * 10, 1e-300)
    lo = math.floor(math.log10(max(floor, top * 1e-16)))
    hi = math.floor(math.log10(top)) + 1  # 10^hi > top
    return np.concatenate([[0.0], 10.0 ** np.arange(lo, hi + 1)])


def band_energies(eigenvalues: np.ndarray, coefficients: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Energy ``sum_i sum_o c_{i,o}^2 / (N O)`` of a residual whose components in the
    eigenbasis are ``coefficients`` ``(N, O)``, per eigenvalue band ``[edges[k], edges[k+1])``
    (``(len(edges) - 1,)``; the last band is closed). Sums to the residual's mean square."""
    lam = np.asarray(eigenvalues, np.float64)
    c2 = np.sum(np.square(np.asarray(coefficients, np.float64)), axis=1) / np.asarray(coefficients).size
    band = np.clip(np.searchsorted(edges, lam, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(band, weights=c2, minlength=len(edges) - 1)


def predict_training(eigenvalues: np.ndarray, eigenvectors: np.ndarray, residual: np.ndarray, *,
                     learning_rate: float, gradient_scale: float, batch_size: int, epoch_size: int,
                     epochs: Sequence[int], floor: float = 0.0) -> dict:
    """Predicted training-set loss and residual bands after ``epochs`` more epochs.

    Args:
      eigenvalues: ``(N,)`` of the traced training-set kernel at the checkpoint (any order).
      eigenvectors: ``(N, N)``, column ``i`` for eigenvalue ``i``.
      residual: ``(N, O)`` ``f(X) - Y`` at the checkpoint (unclipped output).
      learning_rate: SGD step ``eta``.
      gradient_scale: ``g`` of :func:`loss_gradient_scale`.
      batch_size: ``B``; epoch_size: ``E`` points per epoch (``ceil(E/B)`` steps).
      epochs: epochs after the checkpoint to predict (0 = the checkpoint).
      floor: the spectrum's floor (for the band edges).

    Returns ``{"epochs": (T,), "loss": (T,) predicted mean square residual, "steps_per_epoch",
    "rate": (N,) per-step factor ``1 - eta g (B/N) lambda``, "stable": all |rate| <= 1,
    "coefficients": (N, O) at the checkpoint, "edges": band edges, "bands": (T, n_bands)
    predicted energy per band}``.
    """
    lam = np.asarray(eigenvalues, np.float64)
    q = np.asarray(eigenvectors, np.float64)
    r = np.asarray(residual, np.float64)
    n = lam.size
    if q.shape != (n, n) or r.ndim != 2 or r.shape[0] != n:
        raise ValueError(f"need eigenvectors ({n}, {n}) and residual ({n}, O); got {q.shape} and {r.shape}")
    steps = -(-int(epoch_size) // int(batch_size))
    rate = 1.0 - learning_rate * gradient_scale * (batch_size / n) * lam
    coef = q.T @ r  # (N, O)
    ep = np.asarray(list(epochs), np.int64)
    edges = band_edges(lam, floor)
    with np.errstate(over="ignore", invalid="ignore"):
        decay = np.power(rate[None, :], 2 * steps * ep[:, None])  # (T, N): squared factor per component
    energy = np.sum(np.square(coef), axis=1) / r.size  # (N,)
    loss = decay @ energy
    band = np.clip(np.searchsorted(edges, lam, side="right") - 1, 0, len(edges) - 2)
    bands = np.stack([np.bincount(band, weights=d * energy, minlength=len(edges) - 1) for d in decay])
    return {"epochs": ep, "loss": loss, "steps_per_epoch": steps, "rate": rate,
            "stable": bool(np.all(np.abs(rate) <= 1.0)), "coefficients": coef, "edges": edges, "bands": bands}
