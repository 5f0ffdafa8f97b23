"""Zhao et al. (CVPR 2024): grid tangent kernels, their three results, and MulFAGrid.

    python -m experiments.gtk [--preset quick|paper] [--out runs/gtk] [--seed 0]
        [--set FIELD=VALUE ...]

Panels (see experiments/GTK.md):

* (a) ``spectrum_1d.png``, ``spectrum_2d.png``: the GTK's energy per Fourier mode
  (:func:`ntkgrid.gtk.fourier_rayleigh`) and its eigenvalues, dense grid vs MulFAGrid.
* (b) ``bounds.png``: the generalisation bound ``sqrt(2 Y^T G^-1 Y / n)`` of a two-point
  dataset over the labels ``(Y1, Y2)``, for both models.
* (c) ``error_maps.png``: per-pixel error of 2D image fits; ``occupancy_slices.png``: a
  slice of the 3D occupancy fits.
* ``results.json`` / ``results.md``: the checks of results 1 and 2 (GTK against
  neural-tangents, gradient descent against the GTK ODE, GTK stationarity), the panel
  summaries, and PSNR / MS-SSIM / IoU of the fits.

``--set`` overrides any field of :class:`GTKSetup` (a Python literal, e.g.
``--set image_size=32 --set image_lrs="(('multigrid', 30.0),)"``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
from ntkgrid import files
from ntkgrid.config import GRID_KINDS

MODELS = (*GRID_KINDS, "mulfagrid_learnt")  # the grid encodings of ntkgrid.config.ENCODINGS, + learnt filters


@dataclasses.dataclass(frozen=True)
class GTKSetup:
    """Every setting of the experiment. Grids in panels (a), (b) and the checks have one
    level and a sum read-out (:func:`ntkgrid.gtk.grid_model`); the fits use a
    :class:`~ntkgrid.models.CoordinateMLP` (NTK parameterisation) on each encoding."""

    features: int = 2  # k, features per node of the grids in (a), (b) and the checks
    spectrum_points: int = 512  # (a) evenly spaced points on [0, 1] for the 1D GTK
    spectrum_res: int = 32  # (a) nodes of the 1D grids
    lattice: int = 32  # (a) side of the 2D lattice of points (lattice^2 points)
    lattice_res: int = 9  # (a) nodes per axis of the 2D grids
    bound_res: int = 9  # (b) nodes per axis of the 2D grids
    bound_pair: tuple = ((0.30, 0.40), (0.36, 0.47))  # (b) the two data points in [0, 1]^2
    bound_labels: int = 101  # (b) Y1 and Y2 each take this many values in [-1, 1]
    bound_random_pairs: int = 256  # (b) random pairs (second point within one cell of the first)
    bound_ridge: float = 0.0  # (b) lambda in (G + lambda I)^-1 (0: G must be invertible)
    check_points: int = 64  # checks: random points in [0, 1]^2
    check_steps: tuple = (0, 10, 100, 1000)  # checks: gradient-descent steps compared with the ODE
    check_lr: float = 0.05  # checks: step size times lambda_max(G)
    check_models: tuple = ("dense", "hashgrid", "mulfagrid")  # checks: grid models checked
    check_contrast: bool = True  # checks: also measure two models that are not linear in the grid
    grid_levels: int = 4  # fits: levels of every grid encoding
    grid_features: int = 2  # fits: features per node (per table row for the hash grid)
    hash_log2_size: int = 9  # fits (2D): log2 of the hash table rows per level
    hidden: tuple = (64, 64)  # fits: hidden widths of the MLP after the encoding
    image: str = "astronaut"  # fits: bundled scikit-image photo (ntkgrid.data.images)
    image_size: int = 128  # fits: image side in pixels
    image_res: tuple = (8, 32)  # fits: nodes per axis of the coarsest and finest level (log spaced)
    image_epochs: int = 100  # fits: passes over all pixels
    image_batch: int = 256  # fits: pixels per SGD step
    image_lrs: tuple = (("multigrid", 30.0), ("hashgrid", 100.0), ("mulfagrid", 100.0),
                        ("mulfagrid_learnt", 100.0))  # fits: SGD step per model (sweep in GTK.md)
    occ_shape_resolution: int = 128  # occupancy: marching-cubes grid of the procedural default shape
    occ_res: tuple = (8, 32)  # occupancy: nodes per axis of the coarsest and finest level
    occ_hash_log2_size: int = 14  # occupancy: log2 of the hash table rows per level
    occ_pool: int = 100_000  # occupancy: training points (half uniform, half near the surface)
    occ_eval: int = 25_000  # occupancy: held-out points per pool (uniform; near-surface)
    occ_epochs: int = 30  # occupancy: epochs of occ_steps SGD steps each
    occ_steps: int = 10  # occupancy: SGD steps per epoch
    occ_batch: int = 2048  # occupancy: points per SGD step
    occ_lrs: tuple = (("multigrid", 100.0), ("hashgrid", 100.0), ("mulfagrid", 100.0),
                      ("mulfagrid_learnt", 30.0))  # occupancy: SGD step per model (sweep in GTK.md)
    occ_slice: int = 128  # occupancy: pixels per side of the z = 0.5 slice picture
    models: tuple = MODELS  # which encodings the fits train


#: ``--preset quick``: the whole run in minutes on a 2-core CPU (measured in GTK.md).
QUICK = GTKSetup()

#: ``--preset paper``: larger images, grids and budgets (our choice; the poster gives none).
PAPER = GTKSetup(
    spectrum_points=1024, lattice=48, check_points=128, bound_random_pairs=1024,
    image_size=256, image_res=(16, 64), image_epochs=300, hidden=(128, 128), hash_log2_size=11,
    occ_res=(16, 64), occ_pool=400_000, occ_eval=100_000, occ_epochs=200, occ_steps=10, occ_batch=4096,
    occ_hash_log2_size=17, occ_slice=256,
)


def _log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- models


def grid_encodings(setup: GTKSetup, dim: int, res: int, seed: int) -> dict:
    """The one-level dense grid and MulFAGrid of panels (a), (b) and the checks (float64)."""
    import jax.numpy as jnp

    from ntkgrid.encodings import MulFAGrid, MultiGrid

    common = dict(dim=dim, num_levels=1, features_per_level=setup.features, min_res=res, max_res=res,
                  param_dtype=jnp.float64)
    return {"dense": MultiGrid(include_input=False, **common), "mulfagrid": MulFAGrid(filter_seed=seed, **common)}


def fit_encoding(name: str, setup: GTKSetup, dim: int, seed: int):
    """The encoding ``name`` (one of :data:`MODELS`) of the image (2D) or occupancy (3D) fits."""
    from ntkgrid.encodings import HashGrid, MulFAGrid, MultiGrid

    lo, hi = setup.image_res if dim == 2 else setup.occ_res
    common = dict(dim=dim, num_levels=setup.grid_levels, features_per_level=setup.grid_features,
                  min_res=lo, max_res=hi, spacing="log")
    if name == "multigrid":
        return MultiGrid(**common)
    if name == "hashgrid":  # tcnn levels with the same first and last resolution
        scale = (hi / lo) ** (1.0 / max(setup.grid_levels - 1, 1))
        log2 = setup.hash_log2_size if dim == 2 else setup.occ_hash_log2_size
        return HashGrid(dim=dim, num_levels=setup.grid_levels, features_per_level=setup.grid_features,
                        log2_table_size=log2, min_res=lo, per_level_scale=scale)
    if name == "mulfagrid":
        return MulFAGrid(filter_seed=seed, **common)
    if name == "mulfagrid_learnt":
        return MulFAGrid(filter_seed=seed, learn_filters=True, **common)
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def _init(model, seed: int, x):
    import jax

    return jax.jit(model.init)(jax.random.PRNGKey(seed), x[:1])


# ----------------------------------------------------------------------------- checks


def run_checks(setup: GTKSetup, seed: int) -> dict:
    """Results 1 and 2 measured on 2D grid models (float64): GTK vs neural-tangents,
    gradient descent vs the GTK ODE, stationarity; and two non-linear contrasts."""
    import jax
    import jax.numpy as jnp

    from ntkgrid import CoordinateMLP
    from ntkgrid.encodings import HashGrid
    from ntkgrid.gtk import (gd_ode_tolerance, gradient_descent, grid_model, gtk, gtk_change, gtk_gd_prediction,
                             gtk_ode_prediction)
    from ntkgrid.ntk import structured_ntk
    from ntkgrid.spectrum import kernel_change, offdiag_fraction

    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (setup.check_points, 2))
    y = np.sin(2 * np.pi * x[:, :1]) * np.cos(3 * np.pi * x[:, 1:])
    # Node values of order one (init_std / init_scale 0.3), so that training moves them visibly.
    encs = {n: e.clone(init_std=0.3) for n, e in grid_encodings(setup, 2, setup.bound_res, seed).items()}
    encs["hashgrid"] = HashGrid(dim=2, num_levels=2, features_per_level=setup.features, log2_table_size=5,
                                min_res=4, init_scale=0.3, param_dtype=jnp.float64)
    out = {}
    with jax.enable_x64(True):
        xd = jnp.asarray(x)
        for name in setup.check_models:
            enc = encs[name]
            t0 = time.perf_counter()
            model = grid_model(enc)
            v = _init(model, seed, xd)
            g = gtk(model, v, xd)
            g_nt = gtk(model, v, xd, method="jacobian")
            lam_max = float(np.linalg.eigvalsh(g)[-1])
            lr = setup.check_lr / lam_max
            outs, v_end = gradient_descent(model, v, xd, y, lr, setup.check_steps)
            scale = float(np.linalg.norm(outs[0] - y))
            gd_gap = max(float(np.linalg.norm(o - gtk_gd_prediction(g, outs[0], y, lr, s))) for s, o in
                         zip(setup.check_steps, outs)) / scale
            ode_gap = [float(np.linalg.norm(o - gtk_ode_prediction(g, outs[0], y, lr * s))) / scale for s, o in
                       zip(setup.check_steps, outs)]
            out[name] = {
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
        if not setup.check_contrast:
            return out
        # Contrasts: models that are not linear in their grid parameters.
        steps = setup.check_steps[-1]
        mlp = CoordinateMLP(encs["dense"].clone(include_input=True), (16,), 1, param_dtype=jnp.float64)
        vm = _init(mlp, seed, xd)
        lr = setup.check_lr / float(np.linalg.eigvalsh(structured_ntk(mlp, vm, xd))[-1])  # all params move
        _, vm1 = gradient_descent(mlp, vm, xd, y, lr, (steps,))
        learnt = grid_model(encs["mulfagrid"].clone(learn_filters=True))
        vl = _init(learnt, seed, xd)
        lr_l = setup.check_lr / float(np.linalg.eigvalsh(gtk(learnt, vl, xd, method="jacobian"))[-1])
        _, vl1 = gradient_descent(learnt, vl, xd, y, lr_l, (steps,))
        out["contrast"] = {"steps": steps,
                           "coordinate_mlp_grid_term_change": gtk_change(mlp, vm, vm1, xd),
                           "mulfagrid_learnt_filters_gtk_change": gtk_change(learnt, vl, vl1, xd)}
    return out


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ----------------------------------------------------------------------------- panel (a)


def _energy_summary(s: np.ndarray, freqs: np.ndarray, nyquist: float) -> dict:
    s = np.maximum(s, 0.0)
    total = float(s.sum())
    order = np.argsort(freqs, kind="stable")
    cum = np.cumsum(s[order]) / total
    return {"total": total, "above_grid_nyquist": float(s[freqs > nyquist].sum() / total),
            "half_energy_frequency": float(freqs[order][np.searchsorted(cum, 0.5)]),
            "p99_energy_frequency": float(freqs[order][min(np.searchsorted(cum, 0.99), len(cum) - 1)])}


def panel_spectrum(setup: GTKSetup, seed: int, out: Path) -> dict:
    """(a) GTK energy per Fourier mode and eigenvalues, 1D and 2D, dense grid vs MulFAGrid."""
    import jax

    from ntkgrid.gtk import fourier_rayleigh, gtk
    from ntkgrid.spectrum import offdiag_fraction

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
                v = _init(enc, seed, jax.numpy.asarray(x))
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
    _plot_spectrum_1d(curves, eigs, r, out / "spectrum_1d.png")
    _plot_spectrum_2d(maps, setup.lattice_res, out / "spectrum_2d.png")
    return res


def _plot_spectrum_1d(curves, eigs, res, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, (f, s) in curves.items():
        ax[0].semilogy(f, np.maximum(s, 1e-300), label=name)
        ax[1].semilogy(np.arange(1, eigs[name].size + 1), np.maximum(eigs[name], 1e-300), label=name)
    ax[0].axvline((res - 1) / 2, color="grey", ls=":", label="grid Nyquist")
    ax[0].set(xlabel="frequency (cycles per unit)", ylabel="v^H G v / N", title="(a) GTK energy per Fourier mode, 1D")
    top = max(float(e[0]) for e in eigs.values())
    floor = max(e.size for e in eigs.values()) * np.finfo(np.float64).eps * top  # rounding level
    last = max(int(np.sum(e > floor)) for e in eigs.values())
    ax[1].axhline(floor, color="grey", ls=":", label="N eps lambda_max")
    ax[1].set(xlabel="index", ylabel="eigenvalue", title="GTK eigenvalues", ylim=(floor / 10, 3 * top),
              xlim=(0, 1.25 * last))
    for a in ax:
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_spectrum_2d(maps, res, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, len(maps), figsize=(4.6 * len(maps), 4))
    logs = {k: np.log10(np.maximum(s, 1e-300)) for k, (_, s) in maps.items()}
    hi = max(v.max() for v in logs.values())
    for a, (name, (f, _)) in zip(np.atleast_1d(ax), maps.items()):
        im = a.imshow(logs[name].T, origin="lower", extent=(f[0], f[-1], f[0], f[-1]), vmin=hi - 8, vmax=hi,
                      cmap="magma")
        nyq = (res - 1) / 2
        a.plot([-nyq, nyq, nyq, -nyq, -nyq], [-nyq, -nyq, nyq, nyq, -nyq], "w:", lw=1)
        a.set(title=f"{name}: log10 v^H G v / N", xlabel="nu_0 (cycles/unit)", ylabel="nu_1")
        fig.colorbar(im, ax=a, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- panel (b)


def panel_bounds(setup: GTKSetup, seed: int, out: Path) -> dict:
    """(b) Generalisation bound of a two-point dataset over (Y1, Y2), dense vs MulFAGrid."""
    import jax
    import jax.numpy as jnp

    from ntkgrid.gtk import generalisation_bound_map, gtk

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
            v = _init(enc, seed, jnp.asarray(x))
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
    _plot_bounds({"pair": maps, f"mean over {k} random pairs": mean_maps}, labels, out / "bounds.png")
    return {"pair": pair.tolist(), "gtk": {n: g[:2, :2].tolist() for n, g in grams.items()},
            "ridge": setup.bound_ridge,
            "mean_bound": {n: float(m.mean()) for n, m in maps.items()},
            "fraction_mulfagrid_lower": float(lower.mean()),
            "random_pairs": k, "random_pairs_mean_fraction_lower": float(np.mean(fractions)),
            "random_pairs_majority_lower": float(np.mean(np.asarray(fractions) > 0.5)),
            "random_pairs_mean_bound": {n: float(m.mean()) for n, m in mean_maps.items()},
            "random_pairs_mean_map_fraction_lower": float(np.mean(mean_maps["mulfagrid"] < mean_maps["dense"]))}


def _plot_bounds(rows: dict, labels, path):
    """One row per ``{title: {"dense": map, "mulfagrid": map}}``: both bounds and their difference."""
    import matplotlib.pyplot as plt

    ext = (labels[0], labels[-1], labels[0], labels[-1])
    fig, ax = plt.subplots(len(rows), 3, figsize=(13, 3.8 * len(rows)), squeeze=False)
    for r, (title, maps) in enumerate(rows.items()):
        hi = max(m.max() for m in maps.values())
        for a, (name, m) in zip(ax[r], maps.items()):
            im = a.imshow(m, origin="lower", extent=ext, vmin=0, vmax=hi, cmap="viridis")
            a.set(title=f"(b) bound, {name} ({title})", xlabel="Y1", ylabel="Y2")
            fig.colorbar(im, ax=a, fraction=0.046)
        d = maps["mulfagrid"] - maps["dense"]
        lim = float(np.abs(d).max()) or 1.0
        im = ax[r, 2].imshow(d, origin="lower", extent=ext, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax[r, 2].set(title="mulfagrid - dense (blue: MulFAGrid tighter)", xlabel="Y1", ylabel="Y2")
        fig.colorbar(im, ax=ax[r, 2], fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- fits


def _train(model, x, y, loss: str, lr: float, epochs: int, batch: int, epoch_size: int, seed: int):
    """SGD with :func:`ntkgrid.training.make_epoch_fn` (``fit``'s jitted epoch, which accepts any
    module, here float64 ones built outside a config)."""
    import jax
    import jax.numpy as jnp
    import optax

    from ntkgrid.training import make_epoch_fn

    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    v = jax.jit(model.init)(init_key, jnp.asarray(x[:1]))
    state = optax.sgd(lr).init(v["params"])
    step = make_epoch_fn(model, loss, batch, x.shape[0], epoch_size)
    xd, yd = jnp.asarray(x), jnp.asarray(y)
    t0 = time.perf_counter()
    losses = []
    for e in range(epochs):
        v, state, value = step(v, state, data_key, np.int32(e), np.float32(lr), xd, yd)
        losses.append(value)
    losses = [float(a) for a in losses]
    return v, losses, time.perf_counter() - t0


def _n_params(v) -> int:
    import jax

    return int(sum(np.prod(a.shape) for a in jax.tree.leaves(v["params"])))


def fit_image(setup: GTKSetup, seed: int) -> dict:
    """2D image fits: PSNR, MS-SSIM, error maps."""
    import jax

    from ntkgrid import CoordinateMLP, metrics
    from ntkgrid.data.images import bundled_image, image_to_dataset
    from ntkgrid.training import predict

    img = bundled_image(setup.image, setup.image_size)
    x, y = image_to_dataset(img)
    lrs = dict(setup.image_lrs)
    runs = {}
    for name in setup.models:
        model = CoordinateMLP(fit_encoding(name, setup, 2, seed), tuple(setup.hidden), 3)
        v, losses, sec = _train(model, x, y, "mse", lrs[name], setup.image_epochs, setup.image_batch, len(x), seed)
        pred = np.clip(predict(model, v, x).astype(np.float64), 0.0, 1.0).reshape(img.shape)
        with jax.enable_x64(True):
            psnr = float(metrics.psnr(pred, img.astype(np.float64)))
            rep = metrics.ms_ssim_report(pred, img.astype(np.float64))
        runs[name] = {"lr": lrs[name], "params": _n_params(v), "psnr": psnr, "ms_ssim": float(rep["value"]),
                      "ms_ssim_scales": int(rep["scales"]), "final_loss": losses[-1] if losses else None,
                      "diverged": not all(math.isfinite(a) for a in losses), "seconds": sec, "_pred": pred}
        _log(f"  image {name}: PSNR {psnr:.2f} dB, MS-SSIM {rep['value']:.4f} ({sec:.0f} s)")
    return {"image": setup.image, "size": setup.image_size, "target": img, "runs": runs}


def fit_occupancy(setup: GTKSetup, seed: int, cache: Path) -> dict:
    """3D occupancy fits on the default procedural shape: IoU on held-out pools, a slice."""
    from ntkgrid import CoordinateMLP
    from ntkgrid.data.meshes import default_shape, occupancy
    from ntkgrid.occupancy import OccupancySetup, occupancy_metrics, prepare_data
    from ntkgrid.training import predict

    mesh = default_shape(setup.occ_shape_resolution)
    half = setup.occ_pool // 2
    occ_setup = OccupancySetup(pool_uniform=setup.occ_pool - half, pool_surface=half,
                               eval_uniform=setup.occ_eval, eval_surface=setup.occ_eval)
    data = prepare_data(mesh, occ_setup, seed=seed, ntk_points=0, cache_dir=cache)
    t = (np.arange(setup.occ_slice) + 0.5) / setup.occ_slice
    sl = np.stack([*np.meshgrid(t, t, indexing="ij"), np.full((setup.occ_slice,) * 2, 0.5)], -1).reshape(-1, 3)
    truth = occupancy(mesh, sl).reshape(setup.occ_slice, setup.occ_slice)
    lrs = dict(setup.occ_lrs)
    epoch_size = min(setup.occ_steps * setup.occ_batch, len(data.train_x))
    runs = {}
    for name in setup.models:
        model = CoordinateMLP(fit_encoding(name, setup, 3, seed), tuple(setup.hidden), 1)
        v, losses, sec = _train(model, data.train_x, data.train_y, "bce", lrs[name], setup.occ_epochs,
                                setup.occ_batch, epoch_size, seed)
        pools = list(data.eval.items())
        logits = predict(model, v, np.concatenate([px for _, (px, _) in pools] + [sl]))[:, 0]  # one compiled shape
        ious, start = {}, 0
        for pool, (px, py) in pools:
            ious[pool] = occupancy_metrics(logits[start:start + len(px)], py)["iou"]
            start += len(px)
        pred = logits[start:].reshape(truth.shape) > 0
        runs[name] = {"lr": lrs[name], "params": _n_params(v), "iou_uniform": ious["uniform"],
                      "iou_surface": ious["surface"], "final_loss": losses[-1] if losses else None,
                      "diverged": not all(math.isfinite(a) for a in losses), "seconds": sec, "_slice": pred}
        _log(f"  occupancy {name}: IoU {ious['uniform']:.4f} (uniform), {ious['surface']:.4f} (near surface) "
             f"({sec:.0f} s)")
    return {"shape": mesh.metadata.get("ntkgrid", {}).get("source", "default_shape"), "slice_truth": truth,
            "runs": runs}


def _plot_error_maps(image: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    runs = image["runs"]
    img = image["target"]
    errs = {n: np.mean(np.abs(r["_pred"] - img), axis=-1) for n, r in runs.items()}
    hi = max(float(np.percentile(e, 99.5)) for e in errs.values()) or 1.0
    fig, ax = plt.subplots(2, len(runs) + 1, figsize=(3.2 * (len(runs) + 1), 6.4))
    ax[0, 0].imshow(img)
    ax[0, 0].set_title("ground truth")
    ax[1, 0].axis("off")
    for j, (name, r) in enumerate(runs.items(), start=1):
        ax[0, j].imshow(r["_pred"])
        ax[0, j].set_title(f"{name}\n{r['psnr']:.2f} dB")
        im = ax[1, j].imshow(errs[name], cmap="inferno", vmin=0, vmax=hi)
        ax[1, j].set_title("(c) |error|, mean over RGB")
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.colorbar(im, ax=ax[1, :].tolist(), fraction=0.02)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_slices(occ: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    runs = occ["runs"]
    truth = occ["slice_truth"]
    fig, ax = plt.subplots(1, len(runs) + 1, figsize=(3.2 * (len(runs) + 1), 3.9))
    ax[0].imshow(truth.T, origin="lower", cmap="gray")
    ax[0].set_title("ground truth, z = 0.5\n(green: both, red: false +, blue: false -)", fontsize=8)
    for a, (name, r) in zip(ax[1:], runs.items()):
        s = r["_slice"]
        rgb = np.stack([s & ~truth, s & truth, ~s & truth], -1).astype(float)  # red: false +, blue: false -
        a.imshow(np.transpose(rgb, (1, 0, 2)), origin="lower")
        a.set_title(f"{name}\nIoU {r['iou_uniform']:.3f}")
    for a in ax:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- output


def _public(d):
    """Drop the arrays (keys starting with ``_`` and image data) before JSON."""
    if isinstance(d, dict):
        return {k: _public(v) for k, v in d.items() if not k.startswith("_") and k not in ("target", "slice_truth")}
    if isinstance(d, (list, tuple)):
        return [_public(v) for v in d]
    if isinstance(d, float) and not math.isfinite(d):
        return None
    if isinstance(d, (np.floating, np.integer)):
        return d.item()
    return d


def _markdown(res: dict) -> str:
    lines = [f"# GTK experiment ({res['preset']}, seed {res['seed']}, {res['seconds']:.0f} s)", ""]
    lines += ["## Checks (float64, 2D grid models with a sum read-out)", "",
              "| model | GTK vs NT | GD vs (I - eta G)^s | max GD vs ODE | tolerance | GTK change |",
              "|---|---|---|---|---|---|"]
    for name, c in res["checks"].items():
        if name == "contrast":
            continue
        lines.append(f"| {name} | {c['gtk_vs_neural_tangents']:.1e} | {c['gd_vs_discrete_prediction']:.1e} | "
                     f"{max(c['gd_vs_ode']):.2e} | {c['ode_tolerance']:.2e} | {c['gtk_change']:.1e} |")
    c = res["checks"].get("contrast")
    if c:
        lines += ["", f"Not linear in the grid ({c['steps']} GD steps): CoordinateMLP grid-term change "
                      f"{c['coordinate_mlp_grid_term_change']:.3g}; MulFAGrid with learnt filters "
                      f"{c['mulfagrid_learnt_filters_gtk_change']:.3g}."]
    lines += [""]
    lines += ["## (a) GTK energy per Fourier mode", "",
              "The lattices are denser than the grids, so points share nodes as in training: 'off-diag.' is the "
              "share of the GTK's squared Frobenius norm off its diagonal (0 if no two points shared a node).", "",
              "| lattice | model | rank | off-diag. | energy above grid Nyquist "
              "| half-energy freq. | 99%-energy freq. |", "|---|---|---|---|---|---|---|"]
    for dim in ("1d", "2d"):
        for name, s in res["spectrum"][dim].items():
            lines.append(f"| {dim} | {name} | {s['rank']} | {s['grid_offdiag_fraction']:.3f} | "
                         f"{s['above_grid_nyquist']:.4f} | "
                         f"{s['half_energy_frequency']:.2f} | {s['p99_energy_frequency']:.2f} |")
    b = res["bounds"]
    lines += ["", "## (b) Generalisation bound, two points", "",
              f"Pair {b['pair']}: MulFAGrid's bound is lower on {100 * b['fraction_mulfagrid_lower']:.1f}% of the "
              f"(Y1, Y2) grid; mean bound dense {b['mean_bound']['dense']:.4f}, MulFAGrid "
              f"{b['mean_bound']['mulfagrid']:.4f}. Over {b['random_pairs']} random nearby pairs: lower on "
              f"{100 * b['random_pairs_mean_fraction_lower']:.1f}% of the labels on average, on most labels for "
              f"{100 * b['random_pairs_majority_lower']:.1f}% of the pairs; the mean bound over the pairs is "
              f"dense {b['random_pairs_mean_bound']['dense']:.4f}, "
              f"MulFAGrid {b['random_pairs_mean_bound']['mulfagrid']:.4f} "
              f"(MulFAGrid lower on {100 * b['random_pairs_mean_map_fraction_lower']:.1f}% of the labels).", ""]
    lines += ["## Fits", "", "| task | model | params | lr | PSNR (dB) | MS-SSIM | IoU uniform | IoU near surface "
              "| train s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res.get("image", {}).get("runs", {}).items():
        lines.append(f"| image {res['image']['size']}px | {name} | {r['params']} | {r['lr']:g} | {r['psnr']:.2f} | "
                     f"{r['ms_ssim']:.4f} ({r['ms_ssim_scales']} scales) | | | {r['seconds']:.0f} |")
    for name, r in res.get("occupancy", {}).get("runs", {}).items():
        lines.append(f"| occupancy | {name} | {r['params']} | {r['lr']:g} | | | {r['iou_uniform']:.4f} | "
                     f"{r['iou_surface']:.4f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def parse_sets(items: list[str], base: GTKSetup) -> GTKSetup:
    """Apply ``FIELD=VALUE`` overrides (Python literals) to ``base``."""
    fields = {f.name for f in dataclasses.fields(GTKSetup)}
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set expects FIELD=VALUE with FIELD one of {sorted(fields)}, got {item!r}")
        try:
            changes[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"--set {key}: {value!r} is not a Python literal") from err
    setup = dataclasses.replace(base, **changes)
    unknown = set(setup.models) - set(MODELS)
    if unknown:
        raise ValueError(f"--set models: unknown {sorted(unknown)}; choose from {MODELS}")
    return setup


def main(argv: list[str] | None = None) -> dict:
    """Run every panel; write the figures, ``results.json`` and ``results.md`` under ``--out``."""
    ap = argparse.ArgumentParser(prog="python -m experiments.gtk", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=("quick", "paper"), default="quick")
    ap.add_argument("--out", type=Path, default=Path("runs/gtk"))
    ap.add_argument("--seed", type=int, default=0, help="initialisations, filters, points and minibatches")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a GTKSetup field (repeatable)")
    args = ap.parse_args(argv)
    setup = parse_sets(args.sets, QUICK if args.preset == "quick" else PAPER)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = {"preset": args.preset, "seed": args.seed, "setup": dataclasses.asdict(setup), "timings": {}}

    def stage(key, fn, *a):
        t = time.perf_counter()
        _log(f"[gtk] {key} ...")
        res[key] = fn(*a)
        res["timings"][key] = time.perf_counter() - t
        _log(f"[gtk] {key}: {res['timings'][key]:.1f} s")

    stage("checks", run_checks, setup, args.seed)
    stage("spectrum", panel_spectrum, setup, args.seed, out)
    stage("bounds", panel_bounds, setup, args.seed, out)
    if setup.models:
        stage("image", fit_image, setup, args.seed)
        _plot_error_maps(res["image"], out / "error_maps.png")
        stage("occupancy", fit_occupancy, setup, args.seed, out / "pools")
        _plot_slices(res["occupancy"], out / "occupancy_slices.png")
    res["seconds"] = time.perf_counter() - t0
    public = _public(res)
    from ntkgrid.files import write_json, write_text

    write_json(out / "results.json", public)  # atomic: a reader never sees half a file
    write_text(out / "results.md", _markdown(res))
    _log(f"[gtk] done in {res['seconds']:.1f} s; wrote {out}/results.md")
    return res


if __name__ == "__main__":
    main()
