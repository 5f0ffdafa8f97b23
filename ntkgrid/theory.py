"""The paper's claims as checks that can fail, and its training prediction (Eqs. 5-7).

**Theorem 1, three comparisons** (:data:`THEOREM1_COMPARISONS`,
:func:`theorem1_comparisons`). Audia et al. claim that the eigenvalues of the MPE
network's NTK sit above those of the network without an encoding (the "baseline"), index by
index, on the training set. :func:`compare_spectra` compares two spectra on the same points:
the fraction of indices with ``lambda_i(MPE) >= lambda_i(other)``, the median and minimum
``log10`` ratio, and a verdict that is "does not hold" as soon as one resolved eigenvalue
falls below (beyond the two spectra's floors and an optional relative tolerance).

* ``stated``: against the no-encoding network, as the paper states it. It fails, and the
  cause is the first layer's fan-in: with ``include_input`` the MPE MLP's first layer takes
  ``F`` inputs (grid features and the raw coordinates; 8 for Table 2's multigrid) where the
  baseline's takes ``d = 2``, and under the NTK parameterisation both scale by
  ``1/sqrt(fan_in)``, so the coordinates enter the MPE network scaled by ``sqrt(d/F)``.
* ``fan_in_matched``: against :func:`fan_in_matched_baseline`, the no-encoding network whose
  first layer has the MPE MLP's fan-in, fed ``[0, ..., 0, x]`` with the MPE network's
  ``dense_0`` weights: the positive control. At initialisation it is close to an identity
  (grid features start at ``N(0, 0.01^2)``, so the MPE network's no-grid kernel is close to
  this network's); after training it tests whether the grid still adds on top.
* ``own_no_grid``: against the network's own no-grid kernel. In the paper's Eq. 12 the MLP
  terms are evaluated at the embedding, so Weyl gives ``lambda_i(K_MPE) >= lambda_i(K_no_grid)
  + lambda_min(K_grid)`` for any split of any network's parameters
  (:func:`ntkgrid.spectrum.weyl_bound`): true by construction, a unit test of the group
  split, not evidence. Nothing is proved against the no-encoding network.

:func:`scale_mlp` builds the control built to fail: an MPE network whose MLP is scaled down
until its kernel sits below the baseline's.

**Predicted training (Eqs. 5-7).** Linearising the network around a checkpoint (its NTK
``Theta`` on the ``N`` training points, fixed from then on), one SGD step on minibatch ``B``
changes the training residual ``r = f(X) - Y`` by ``r <- r - eta g Theta[:, B] r_B``, where
``g`` is the loss's gradient scale (``dL_B / df(x_b, o) = g * r_{b,o}``; ``g = 2/(B O)``
for the mean over a minibatch of ``B`` points and ``O`` channels). Two modes:

* :func:`replay_training` runs that update through the run's own minibatch sequence (the
  same per-epoch permutations, :func:`ntkgrid.training.epoch_batches`): exact for a model
  linear in its parameters, so what remains against a measurement is the kernel's motion.
* :func:`predict_training` takes SGD's expected step, ``r_{s+1} = (I - eta g (B/N) Theta)
  r_s``: in the kernel's eigenbasis ``Theta = Q diag(lambda) Q^T`` every component decays on
  its own, ``c_i(s) = (1 - eta g (B/N) lambda_i)^s c_i(0)``, which for small steps is the
  paper's Eq. 7, ``|Q (f - Y)| = exp(-Lambda t) |Q Y|`` with ``t = eta g (B/N) s``. An
  approximation (i.i.d. minibatches; its docstring gives the size of the error), kept for
  the per-band picture. At the checkpoint itself the prediction equals the measurement by
  construction (the eigenvectors span the residual); the test is the epochs after it.

Both take the full output-block kernel ``(N O) x (N O)`` or, where that does not fit in
memory, the traced ``(N, N)`` one (which assumes independent outputs, ``Theta[n, m, o, p] =
delta_op K[n, m]``), and say which. The critical step is :func:`ntkgrid.stability.critical_step`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ntkgrid.encodings import Identity
from ntkgrid.spectrum import Spectrum

__all__ = ["THEOREM1_COMPARISONS", "band_edges", "band_energies", "compare_mean_spectra", "compare_spectra",
           "fan_in_matched_baseline", "loss_gradient_scale", "predict_training", "replay_training", "scale_mlp",
           "theorem1_comparisons"]

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


def _kernel_layout(n_rows: int, residual: np.ndarray) -> str:
    """``"full"`` for an ``(N O) x (N O)`` kernel, ``"traced"`` for ``(N, N)`` (``residual`` ``(N, O)``)."""
    n, o = residual.shape
    if n_rows == n * o and o > 1:
        return "full"
    if n_rows == n:
        return "traced"
    raise ValueError(f"the kernel has {n_rows} rows: need N = {n} (traced) or N O = {n * o} (full output blocks) "
                     f"for a residual of shape {residual.shape}")


def predict_training(eigenvalues: np.ndarray, eigenvectors: np.ndarray, residual: np.ndarray, *,
                     learning_rate: float, gradient_scale: float, batch_size: int, epoch_size: int,
                     epochs: Sequence[int], floor: float = 0.0) -> dict:
    """Expected-step prediction: the training-set loss and residual bands after ``epochs`` more epochs.

    An approximation twice over: the kernel is frozen at the checkpoint (linearisation), and
    every step is replaced by its expectation over i.i.d. minibatches, ``r <- (I - eta g (B/N)
    Theta) r``, while training reshuffles once per epoch (every point once per epoch). The
    second approximation alone is not small. On a fixed diagonal kernel ``d I`` (``N = 64``,
    ``B = 16``, residual 1; tests/test_theory.py), 5 epochs at ``eta g d = 0.31`` predict a loss
    of ``(1 - 0.31/4)^40 = 0.0397`` where reshuffled SGD, which visits every point once per
    epoch, reaches ``0.69^10 = 0.0245`` (i.i.d. minibatches: ``(0.75 + 0.25 * 0.69^2)^20 =
    0.0604`` in expectation); at ``eta g d = 2.5`` this model says "stable" (``|1 - eta g (B/N)
    d| <= 1``) while reshuffled SGD grows as ``1.5^2`` per epoch (1.9e5 after 15 epochs). :func:`replay_training` removes it (exact for a
    model linear in its parameters).

    The kernel is either the full output-block kernel ``Theta`` (``(N O) x (N O)``, rows
    ``n O + o``; exact for a linearised network) or the traced ``K = mean_o Theta[n, m, o, o]``
    ``(N, N)``, which assumes ``Theta[n, m, o, p] = delta_op K[n, m]`` (independent outputs);
    the result's ``"kernel"`` says which was given.

    Args:
      eigenvalues: ``(M,)`` of the kernel at the checkpoint (any order); ``M = N O`` (full)
        or ``N`` (traced).
      eigenvectors: ``(M, M)``, column ``i`` for eigenvalue ``i``.
      residual: ``(N, O)`` ``f(X) - Y`` at the checkpoint (unclipped output).
      learning_rate: SGD step ``eta``.
      gradient_scale: ``g`` of :func:`loss_gradient_scale`.
      batch_size: ``B``; epoch_size: ``E`` points per epoch (``ceil(E/B)`` steps).
      epochs: epochs after the checkpoint to predict (0 = the checkpoint).
      floor: the spectrum's floor: eigenvalues below it are rounding noise, clamped at 0 (for
        the rates, ``stable`` and the band edges).

    Returns ``{"epochs": (T,), "loss": (T,) predicted mean square residual, "steps_per_epoch",
    "kernel": "full" | "traced", "rate": (M,) per-step factor ``1 - eta g (B/N) lambda``,
    "stable": all |rate| <= 1, "coefficients": (M, O) (traced) or (M, 1) (full) at the
    checkpoint, "edges": band edges, "bands": (T, n_bands) predicted energy per band}``.
    """
    lam = np.asarray(eigenvalues, np.float64)
    q = np.asarray(eigenvectors, np.float64)
    r = np.asarray(residual, np.float64)
    if r.ndim != 2:
        raise ValueError(f"residual must be (N, O), got {r.shape}")
    n = r.shape[0]
    m = lam.size
    kind = _kernel_layout(m, r)
    if q.shape != (m, m):
        raise ValueError(f"need eigenvectors ({m}, {m}) for {m} eigenvalues, got {q.shape}")
    lam = np.where(lam < floor, 0.0, lam)  # rounding noise (incl. negative -floor values) is no mode
    steps = -(-int(epoch_size) // int(batch_size))
    rate = 1.0 - learning_rate * gradient_scale * (batch_size / n) * lam
    coef = q.T @ (r if kind == "traced" else r.reshape(-1, 1))  # (M, O) or (M, 1)
    ep = np.asarray(list(epochs), np.int64)
    edges = band_edges(lam, floor)
    with np.errstate(over="ignore", invalid="ignore"):
        decay = np.power(rate[None, :], 2 * steps * ep[:, None])  # (T, M): squared factor per component
    energy = np.sum(np.square(coef), axis=1) / r.size  # (M,)
    loss = decay @ energy
    band = np.clip(np.searchsorted(edges, lam, side="right") - 1, 0, len(edges) - 2)
    bands = np.stack([np.bincount(band, weights=d * energy, minlength=len(edges) - 1) for d in decay])
    return {"epochs": ep, "loss": loss, "steps_per_epoch": steps, "kernel": kind, "rate": rate,
            "stable": bool(np.all(np.abs(rate) <= 1.0)), "coefficients": coef, "edges": edges, "bands": bands}


def replay_training(kernel: np.ndarray, residual: np.ndarray, *, learning_rate: float, gradient_scale: float,
                    batches: Sequence[np.ndarray], epochs: Sequence[int]) -> dict:
    """Replay mode: the linearised network through the run's own minibatch sequence.

    Every SGD step on minibatch ``B`` (a list of point indices, repeats counted as often as
    they occur, as the training step's padded batches) changes the residual by

        r <- r - eta g Theta[:, B] r_B

    (``Theta`` the kernel frozen at the checkpoint). For a model linear in its parameters
    this is SGD itself, step for step (exact up to rounding); for a network, what remains
    between the replay and the measured loss is the kernel's motion alone.

    Args:
      kernel: the full output-block kernel ``(N O, N O)`` (rows ``n O + o``; exact) or the
        traced ``(N, N)`` (assumes independent outputs, ``Theta = delta_op K``).
      residual: ``(N, O)`` ``f(X) - Y`` at the checkpoint.
      learning_rate: ``eta``.
      gradient_scale: ``g`` of :func:`loss_gradient_scale`.
      batches: one ``(S, B)`` integer array per epoch after the checkpoint (the epoch's
        ``S`` minibatches in order; :func:`ntkgrid.training.epoch_batches`), at least
        ``max(epochs)`` of them.
      epochs: epochs after the checkpoint to report (0 = the checkpoint).

    Returns:
      ``{"epochs": (T,), "loss": (T,) mean square residual, "kernel": "full" | "traced",
      "residuals": (T, N, O)}``; non-finite once the replay diverges.
    """
    k = np.asarray(kernel, np.float64)
    r = np.array(residual, np.float64)
    if r.ndim != 2 or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"need a square kernel and a (N, O) residual, got {k.shape} and {r.shape}")
    kind = _kernel_layout(k.shape[0], r)
    n, o = r.shape
    ep = [int(e) for e in epochs]
    if ep and max(ep) > len(batches):
        raise ValueError(f"epochs up to {max(ep)} need as many epochs of batches, got {len(batches)}")
    c = learning_rate * gradient_scale
    flat = r.reshape(-1)  # a view: r and flat change together
    want = set(ep)
    snaps = {0: r.copy()} if 0 in want else {}
    with np.errstate(over="ignore", invalid="ignore"):
        for e in range(1, max(ep, default=0) + 1):
            for idx in np.asarray(batches[e - 1]).reshape(-1, np.shape(batches[e - 1])[-1]):
                idx = np.asarray(idx, np.int64)
                if kind == "traced":
                    r -= c * (k[:, idx] @ r[idx])
                else:
                    cols = (idx[:, None] * o + np.arange(o)[None, :]).reshape(-1)
                    flat -= c * (k[:, cols] @ flat[cols])
            if e in want:
                snaps[e] = r.copy()
    res = np.stack([snaps[e] for e in ep]) if ep else np.zeros((0, n, o))
    return {"epochs": np.asarray(ep, np.int64), "loss": np.mean(np.square(res), axis=(1, 2)), "kernel": kind,
            "residuals": res}
