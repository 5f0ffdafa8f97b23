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

__all__ = ["THEOREM1_COMPARISONS", "band_edges", "band_energies", "compare_mean_spectra", "compare_spectra",
           "fan_in_matched_baseline", "loss_gradient_scale", "predict_training", "scale_mlp", "theorem1_comparisons"]

#: Theorem 1's three comparisons, each ``name: what the MPE network's spectrum is compared with``.
THEOREM1_COMPARISONS = {
    "stated": "the no-encoding (baseline) network: the paper's statement",
    "fan_in_matched": "the no-encoding network whose first layer has the MPE MLP's fan-in, fed [0, ..., 0, x] with "
                      "the MPE network's dense_0 weights (fan_in_matched_baseline): the positive control",
    "own_no_grid": "the MPE network's own no-grid kernel (Weyl: lambda_i(K_MPE) >= lambda_i(K_no_grid) + "
                   "lambda_min(K_grid)): true by construction",
}


def compare_spectra(mpe: Spectrum, baseline: Spectrum, *, rtol: float = 0.0) -> dict:
    """Theorem 1 as the paper states it: is ``lambda_i(mpe) >= lambda_i(baseline)`` for every i?

    Both spectra are descending and taken on the same ``N`` points: spectra of different
    lengths are of different points and raise ``ValueError``. Indices where neither
    eigenvalue is above its floor are rounding noise and are not compared. Ratios use
    eigenvalues clamped at their floors. An index is below when ``lambda_i(mpe) <
    lambda_i(baseline) (1 - rtol) - (floor_mpe + floor_baseline)``.

    Args:
      mpe: the MPE network's spectrum, ``(N,)`` eigenvalues.
      baseline: the spectrum it is compared with, ``(N,)``.
      rtol: relative tolerance (0: within the two floors only).

    Returns ``{"holds": bool or None, "verdict": "holds" | "does not hold" | "cannot be
    judged", "fraction": share of compared indices with mpe >= baseline (within the
    tolerance), "n_compared", "median_log10_ratio", "min_log10_ratio", "first_below": first
    index below (or None), "log10_ratio": (N,) array (nan where not compared)}``. "holds"
    needs every compared index at or above the baseline within the tolerance.
    """
    if mpe.eigenvalues.size != baseline.eigenvalues.size:
        raise ValueError(f"spectra of different lengths ({mpe.eigenvalues.size} and {baseline.eigenvalues.size}) "
                         "are of different points and cannot be compared index by index")
    if not (rtol >= 0.0 and np.isfinite(rtol)):
        raise ValueError(f"rtol must be a finite number >= 0, got {rtol!r}")
    n = mpe.eigenvalues.size
    a, b = mpe.eigenvalues, baseline.eigenvalues
    valid = (a > mpe.floor) | (b > baseline.floor)
    ratio = np.full(n, np.nan)
    ratio[valid] = np.log10(np.maximum(a[valid], mpe.floor) / np.maximum(b[valid], baseline.floor))
    limit = b - rtol * np.abs(b) - (mpe.floor + baseline.floor)
    below = valid & (a < limit)
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
        "fraction": float(np.sum(valid & (a >= limit)) / nv),
        "n_compared": nv,
        "median_log10_ratio": float(np.median(ratio[valid])),
        "min_log10_ratio": float(np.min(ratio[valid])),
        "first_below": int(idx_below[0]) if idx_below.size else None,
        "log10_ratio": ratio,
    }


def fan_in_matched_baseline(model, variables: Mapping) -> tuple:
    """The no-encoding network with an MPE network's first-layer fan-in: Theorem 1's positive control.

    Under the NTK parameterisation a dense layer scales its input by ``1/sqrt(fan_in)``. An
    encoding with ``F`` features (``include_input``: the last ``d`` of them are the raw
    coordinates) widens the first layer from ``d`` to ``F`` inputs, so the coordinates enter
    the MPE network scaled by ``sqrt(d/F)`` against the baseline's. The network returned
    here removes that difference: it is ``model`` with the encoding replaced by
    ``Identity(pad=F - d)``, i.e. its first layer is fed ``[0, ..., 0, x]`` ``(..., F)``
    (zeros where the encoding's features were), and it carries ``variables``' dense layers
    unchanged: ``dense_0``'s ``(F, width)`` kernel (so the coordinate rows are the MPE
    network's; the rows facing the zeros neither change the output nor enter the NTK) and
    every later layer. Every other field of ``model`` (hidden widths, ``out_dim``,
    parameterisation, ``beta``, ``coords``, and any activation field) is kept (``model.clone``).

    Args:
      model: a :class:`ntkgrid.models.CoordinateMLP` whose encoding has ``include_input``
        set (its last ``d`` features are the raw coordinates) and a ``dim`` field ``d``.
      variables: its Flax variables; ``params["dense_0"]["kernel"]`` is ``(F, width)``.

    Returns:
      ``(baseline_model, baseline_variables)``: a CoordinateMLP mapping ``(..., d)`` to
      ``(..., out_dim)``, and ``{"params": {"dense_0": ..., "dense_L": ...}}`` (the
      encoding's parameters dropped). Raises ``ValueError`` when the encoding has no raw
      coordinate input.
    """
    from ntkgrid.encodings import Identity

    enc = model.encoding
    d = getattr(enc, "dim", None)
    if not getattr(enc, "include_input", False) or not d:
        raise ValueError(f"fan_in_matched_baseline needs an encoding that appends the raw coordinates "
                         f"(include_input=True) and has a dim; got {type(enc).__name__} with include_input="
                         f"{getattr(enc, 'include_input', None)}, dim={d}")
    params = variables["params"]
    fan_in = int(np.shape(params["dense_0"]["kernel"])[0])
    if fan_in <= d:
        raise ValueError(f"the first layer's fan-in {fan_in} is not above the coordinate dimension {d}")
    base = model.clone(parent=None, encoding=Identity(dim=d, pad=fan_in - d))
    dense = {k: v for k, v in params.items() if k.startswith("dense_")}
    return base, {"params": dense}


def theorem1_comparisons(mpe: Spectrum, *, baseline: Spectrum | None = None, fan_in_matched: Spectrum | None = None,
                         no_grid: Spectrum | None = None, rtol: float = 0.0) -> dict[str, dict]:
    """Theorem 1's three comparisons (:data:`THEOREM1_COMPARISONS`) of one MPE spectrum.

    Args:
      mpe: the MPE network's spectrum ``(N,)`` on ``N`` points.
      baseline: the no-encoding network's on the same points (``"stated"``).
      fan_in_matched: the :func:`fan_in_matched_baseline` network's (``"fan_in_matched"``).
      no_grid: the MPE network's own no-grid kernel's (``"own_no_grid"``).
      rtol: relative tolerance of :func:`compare_spectra`.

    Returns:
      ``{comparison: compare_spectra result + {"comparison", "by_construction"}}`` for the
      comparisons whose spectrum was given; ``by_construction`` is True for ``own_no_grid``
      (Weyl's inequality with ``K_grid`` positive semi-definite: a unit test of the group
      split, not evidence).
    """
    out = {}
    for name, other in (("stated", baseline), ("fan_in_matched", fan_in_matched), ("own_no_grid", no_grid)):
        if other is not None:
            out[name] = {**compare_spectra(mpe, other, rtol=rtol), "comparison": name,
                         "by_construction": name == "own_no_grid"}
    return out


def compare_mean_spectra(mpe_mean: Mapping, baseline_mean: Mapping) -> dict:
    """:func:`compare_spectra` on two :func:`ntkgrid.spectrum.mean_spectrum` dicts (mean
    eigenvalue curves resampled to the same length, floors averaged): the verdict "on the
    mean" over images."""
    mk = lambda m: Spectrum(np.asarray(m["mean"], np.float64), float(m["floor"]), 0, 0)  # noqa: E731
    return compare_spectra(mk(mpe_mean), mk(baseline_mean))


def scale_mlp(variables: Mapping, factor: float) -> dict:
    """``variables`` with every dense layer's kernel and bias multiplied by ``factor``
    (grid tables and other parameters unchanged).

    Because the biases are scaled too, the output is NOT ``factor**L`` times the original:
    with ReLU layers (positively homogeneous) the weight-only path scales by ``factor**L``,
    layer ``l``'s bias term by ``factor**(L - l + 1)`` (the last layer's by ``factor``). For
    ``0 < factor < 1`` every term of the output and of its gradients shrinks, so the whole
    NTK drops (in practice far below the baseline's): the control built for Theorem 1's
    comparison to fail."""
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
