"""Kernel panels of the GTK study: the checks of Zhao et al.'s results 1 and 2 (GTK against
neural-tangents, gradient descent against the GTK ODE, stationarity), panel (a) (GTK
energy per Fourier mode) and panel (b) (the two-point generalisation bound)."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid.encodings import HashGrid
from ntkgrid.gtk import (
    fourier_rayleigh,
    gd_ode_tolerance,
    generalisation_bound_map,
    gradient_descent,
    grid_model,
    gtk,
    gtk_change,
    gtk_gd_prediction,
    gtk_ode_prediction,
)
from ntkgrid.gtk_study.figures import plot_bounds, plot_spectrum_1d, plot_spectrum_2d
from ntkgrid.gtk_study.setup import GTKSetup, grid_encodings
from ntkgrid.models import CoordinateMLP
from ntkgrid.ntk import structured_ntk
from ntkgrid.spectrum import kernel_change, offdiag_fraction


def init(model, seed: int, x):
    """``model.init`` (jitted) with ``PRNGKey(seed)`` on the first point of ``x``."""
    return jax.jit(model.init)(jax.random.PRNGKey(seed), x[:1])


def check_model(enc, setup: GTKSetup, seed: int, xd, y: np.ndarray) -> dict:
    """Results 1 and 2 on one grid encoding (its model linear in the grid), in float64 (call under
    ``jax.enable_x64``).

    Args:
      enc: the grid encoding (a Flax module, float64 parameters).
      setup: ``check_steps`` and ``check_lr`` (see :func:`run_checks`).
      seed: the initialisation.
      xd: (N, 2) float64 points in ``[0, 1]^2``; y: (N, 1) targets.

    Returns:
      the model's entry of :func:`run_checks` (relative gaps, dimensionless; ``seconds``).
    """
    t0 = time.perf_counter()
    model = grid_model(enc)
    v = init(model, seed, xd)
    g = gtk(model, v, xd)
    g_nt = gtk(model, v, xd, method="jacobian")
    lam_max = float(np.linalg.eigvalsh(g)[-1])
    lr = setup.check_lr / lam_max
    outs, v_end = gradient_descent(model, v, xd, y, lr, setup.check_steps)
    scale = float(np.linalg.norm(outs[0] - y))
    gd_gap = max(float(np.linalg.norm(o - gtk_gd_prediction(g, outs[0], y, lr, s))) for s, o in
                 zip(setup.check_steps, outs, strict=True)) / scale
    ode_gap = [float(np.linalg.norm(o - gtk_ode_prediction(g, outs[0], y, lr * s))) / scale for s, o in
               zip(setup.check_steps, outs, strict=True)]
    return {
        "grid_offdiag_fraction": offdiag_fraction(g),
        "gtk_vs_neural_tangents": _rel(g, g_nt),
        "lambda_max": lam_max, "lr": lr, "steps": list(setup.check_steps),
        "t_lambda_max": [lr * s * lam_max for s in setup.check_steps],
        "gd_vs_discrete_prediction": gd_gap,
        "gd_vs_ode": ode_gap, "ode_tolerance": gd_ode_tolerance(g, lr),
        "residual_end": float(np.linalg.norm(outs[-1] - y)) / scale,
        "gtk_change": kernel_change(g_nt, gtk(model, v_end, xd, method="jacobian")),
        "seconds": time.perf_counter() - t0,
    }


def check_contrasts(encs: dict, setup: GTKSetup, seed: int, xd, y: np.ndarray) -> dict:
    """The GTK change over ``check_steps[-1]`` gradient-descent steps of two models that are not
    linear in their grid parameters: a coordinate MLP on the dense grid, and MulFAGrid with learnt
    filters (float64; call under ``jax.enable_x64``).

    Args:
      encs: ``{"dense", "mulfagrid": encoding}``; setup, seed, xd (N, 2), y (N, 1): as :func:`check_model`.

    Returns:
      ``{"steps", "coordinate_mlp_grid_term_change", "mulfagrid_learnt_filters_gtk_change"}`` (relative).
    """
    steps = setup.check_steps[-1]
    mlp = CoordinateMLP(encs["dense"].clone(include_input=True), (16,), 1, param_dtype=jnp.float64)
    vm = init(mlp, seed, xd)
    lr = setup.check_lr / float(np.linalg.eigvalsh(structured_ntk(mlp, vm, xd))[-1])  # all params move
    _, vm1 = gradient_descent(mlp, vm, xd, y, lr, (steps,))
    learnt = grid_model(encs["mulfagrid"].clone(learn_filters=True))
    vl = init(learnt, seed, xd)
    lr_l = setup.check_lr / float(np.linalg.eigvalsh(gtk(learnt, vl, xd, method="jacobian"))[-1])
    _, vl1 = gradient_descent(learnt, vl, xd, y, lr_l, (steps,))
    return {"steps": steps,
            "coordinate_mlp_grid_term_change": gtk_change(mlp, vm, vm1, xd),
            "mulfagrid_learnt_filters_gtk_change": gtk_change(learnt, vl, vl1, xd)}


def run_checks(setup: GTKSetup, seed: int) -> dict:
    """Results 1 and 2 measured on 2D grid models (float64): GTK vs neural-tangents,
    gradient descent vs the GTK ODE, stationarity; and two non-linear contrasts.

    Args:
      setup: ``check_points`` random points in ``[0, 1]^2``, ``check_steps`` gradient-descent
        steps of size ``check_lr / lambda_max(G)``, ``check_models``, ``check_contrast``.
      seed: points, initialisation and MulFAGrid filters.

    Returns:
      ``{model: {...}}`` with relative gaps (dimensionless): ``gtk_vs_neural_tangents``,
      ``gd_vs_discrete_prediction``, ``gd_vs_ode`` (one per step), ``ode_tolerance``,
      ``gtk_change``, ``residual_end``; ``lambda_max``, ``lr``, ``t_lambda_max``, ``seconds``
      (:func:`check_model`); and ``"contrast"`` (GTK changes of two models not linear in the
      grid, :func:`check_contrasts`) when asked.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (setup.check_points, 2))
    y = np.sin(2 * np.pi * x[:, :1]) * np.cos(3 * np.pi * x[:, 1:])
    # Node values of order one (init_std / init_scale 0.3), so that training moves them visibly.
    encs = {n: e.clone(init_std=0.3) for n, e in grid_encodings(setup, 2, setup.bound_res, seed).items()}
    encs["hashgrid"] = HashGrid(dim=2, num_levels=2, features_per_level=setup.features, log2_table_size=5,
                                min_res=4, init_scale=0.3, param_dtype=jnp.float64)
    with jax.enable_x64(True):
        xd = jnp.asarray(x)
        out = {name: check_model(encs[name], setup, seed, xd, y) for name in setup.check_models}
        if setup.check_contrast:
            out["contrast"] = check_contrasts(encs, setup, seed, xd, y)
    return out


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _energy_summary(s: np.ndarray, freqs: np.ndarray, nyquist: float) -> dict:
    s = np.maximum(s, 0.0)
    total = float(s.sum())
    order = np.argsort(freqs, kind="stable")
    cum = np.cumsum(s[order]) / total
    return {"total": total, "above_grid_nyquist": float(s[freqs > nyquist].sum() / total),
            "half_energy_frequency": float(freqs[order][np.searchsorted(cum, 0.5)]),
            "p99_energy_frequency": float(freqs[order][min(np.searchsorted(cum, 0.99), len(cum) - 1)])}


def panel_spectrum(setup: GTKSetup, seed: int, out: Path) -> dict:
    """(a) GTK energy per Fourier mode and eigenvalues, 1D and 2D, dense grid vs MulFAGrid.

    Args:
      setup: ``spectrum_points`` points on ``[0, 1]`` and a ``spectrum_res``-node grid (1D);
        a ``lattice x lattice`` point lattice and ``lattice_res`` nodes per axis (2D).
      seed: initialisation and MulFAGrid filters.
      out: folder of ``spectrum_1d.png`` and ``spectrum_2d.png``.

    Returns:
      ``{"1d": {model: summary}, "2d": {...}}``; a summary holds ``total`` energy, the
      share ``above_grid_nyquist``, ``half_energy_frequency`` and ``p99_energy_frequency``
      (cycles per unit), ``grid_nyquist``, ``rank``, ``grid_offdiag_fraction``, ``lambda_max``.
    """
    n, r = setup.spectrum_points, setup.spectrum_res
    x1 = np.linspace(0.0, 1.0, n)[:, None]
    m = setup.lattice
    t = np.linspace(0.0, 1.0, m)
    x2 = np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)  # row-major lattice
    res = {"1d": {}, "2d": {}}
    curves, maps, eigs = {}, {}, {}
    for dim, x, rr, shape in ((1, x1, r, (n,)), (2, x2, setup.lattice_res, (m, m))):
        for name, enc in grid_encodings(setup, dim, rr, seed).items():
            with jax.enable_x64(True):
                v = init(enc, seed, jax.numpy.asarray(x))
            g = gtk(enc, v, x)
            s = fourier_rayleigh(g, shape)
            # Frequencies in cycles per unit of x (lattice spacing 1 / (m - 1)).
            fr = [np.fft.fftfreq(k, d=1.0 / (k - 1)) for k in shape]
            radius = np.max(np.abs(np.stack(np.meshgrid(*fr, indexing="ij"))), axis=0)  # largest per-axis frequency
            nyq = (rr - 1) / 2.0  # a grid with rr nodes resolves (rr - 1) / 2 cycles per unit
            lam = np.linalg.eigvalsh(g)[::-1]
            res[f"{dim}d"][name] = {**_energy_summary(s.reshape(-1), radius.reshape(-1), nyq),
                                    "grid_nyquist": nyq, "rank": int(np.sum(lam > len(lam) * 2.2e-16 * lam[0])),
                                    "grid_offdiag_fraction": offdiag_fraction(g),
                                    "lambda_max": float(lam[0])}
            if dim == 1:
                curves[name] = (np.abs(fr[0][: n // 2 + 1]), s[: n // 2 + 1])
                eigs[name] = lam
            else:
                maps[name] = (np.fft.fftshift(fr[0]), np.fft.fftshift(s))
    plot_spectrum_1d(curves, eigs, r, out / "spectrum_1d.png")
    plot_spectrum_2d(maps, setup.lattice_res, out / "spectrum_2d.png")
    return res


def panel_bounds(setup: GTKSetup, seed: int, out: Path) -> dict:
    """(b) Generalisation bound of a two-point dataset over (Y1, Y2), dense vs MulFAGrid.

    Args:
      setup: ``bound_pair`` (two points in ``[0, 1]^2``), ``bound_labels`` values of each
        label in ``[-1, 1]``, ``bound_random_pairs`` pairs within one cell, ``bound_res``
        nodes per axis, ``bound_ridge``.
      seed: random pairs (``seed + 1``), initialisation and MulFAGrid filters.
      out: folder of ``bounds.png``.

    Returns:
      ``pair``, its 2x2 ``gtk`` per model, ``mean_bound`` per model,
      ``fraction_mulfagrid_lower`` (share of the label grid), and the same over the random
      pairs (``random_pairs_*``).
    """
    rng = np.random.default_rng(seed + 1)
    cell = 1.0 / (setup.bound_res - 1)
    first = rng.uniform(0.0, 1.0 - cell, (setup.bound_random_pairs, 2))
    second = first + rng.uniform(0.0, cell, first.shape)  # overlapping supports
    pair = np.asarray(setup.bound_pair, np.float64).reshape(2, 2)
    x = np.concatenate([pair, first, second])
    labels = np.linspace(-1.0, 1.0, setup.bound_labels)
    maps, grams = {}, {}
    for name, enc in grid_encodings(setup, 2, setup.bound_res, seed).items():
        with jax.enable_x64(True):
            v = init(enc, seed, jnp.asarray(x))
        g = gtk(enc, v, x)
        grams[name] = g
        maps[name] = generalisation_bound_map(g[:2, :2], labels, labels, setup.bound_ridge)
    lower = maps["mulfagrid"] < maps["dense"]
    k = setup.bound_random_pairs
    fractions, mean_maps = [], {n: 0.0 for n in grams}
    for i in range(k):
        idx = [2 + i, 2 + k + i]
        ms = {n: generalisation_bound_map(g[np.ix_(idx, idx)], labels, labels, setup.bound_ridge)
              for n, g in grams.items()}
        fractions.append(float(np.mean(ms["mulfagrid"] < ms["dense"])))
        mean_maps = {n: mean_maps[n] + ms[n] / k for n in ms}
    plot_bounds({"pair": maps, f"mean over {k} random pairs": mean_maps}, labels, out / "bounds.png")
    return {"pair": pair.tolist(), "gtk": {n: g[:2, :2].tolist() for n, g in grams.items()},
            "ridge": setup.bound_ridge,
            "mean_bound": {n: float(m.mean()) for n, m in maps.items()},
            "fraction_mulfagrid_lower": float(lower.mean()),
            "random_pairs": k, "random_pairs_mean_fraction_lower": float(np.mean(fractions)),
            "random_pairs_majority_lower": float(np.mean(np.asarray(fractions) > 0.5)),
            "random_pairs_mean_bound": {n: float(m.mean()) for n, m in mean_maps.items()},
            "random_pairs_mean_map_fraction_lower": float(np.mean(mean_maps["mulfagrid"] < mean_maps["dense"]))}
