"""The paper's claims measured over a sweep's records (the ``results/<image>.json`` runs).

* :func:`theorem1` — Theorem 1 as the paper states it, per image and on the mean over
  images: every grid network (``multigrid``, ``hashgrid``, ``mulfagrid`` configs) against
  the ``baseline`` network at the same checkpoint, for its total kernel and for its
  "No Grid" kernel (:func:`ntkgrid.theory.compare_spectra`).
* :func:`ratio_curves` — the mean ``log10(lambda_i(MPE) / lambda_i(baseline))`` curves
  that the ratio figure draws.
* :func:`training_curves` — the mean full-image PSNR and loss through training per
  configuration (the runs' ``curve.jsonl``; Figs. 6, 8, 10).
* :func:`theorem1_markdown` — the report section.
* :func:`predicted_vs_measured` — the kernel-regression prediction of a run's training
  loss from a checkpoint (the paper's Eqs. 5-7, :func:`ntkgrid.theory.predict_training`)
  against the full-image loss the run measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ntkgrid import files
from ntkgrid.config import GRID_KINDS
from ntkgrid.spectrum import Spectrum, resample
from ntkgrid.sweep.common import SPECTRUM_LENGTH

__all__ = ["FULL_EIGH_MAX_ROWS", "FULL_KERNEL_MAX_ROWS", "GRID_KINDS", "grid_configs", "predicted_vs_measured", "ratio_curves", "theorem1", "theorem1_markdown",
           "training_curves"]

_SCALARS = ("verdict", "holds", "fraction", "n_compared", "median_log10_ratio", "min_log10_ratio", "first_below")


def grid_configs(configs: Mapping[str, Mapping]) -> list[str]:
    """Names of the configs (``{name: TrainConfig dict}``) whose encoding is a grid."""
    return [n for n, d in configs.items() if d.get("encoding", {}).get("kind") in GRID_KINDS]


def _spectra(run: Mapping, checkpoint: str) -> dict[str, Spectrum] | None:
    from ntkgrid.analysis import run_spectra

    epoch = (run.get("checkpoints") or {}).get(checkpoint)
    if epoch is None or run.get("diverged") or "run_path" not in run:
        return None
    return run_spectra(run["run_path"], epoch)


def _offdiag(run: Mapping, checkpoint: str):
    epoch = (run.get("checkpoints") or {}).get(checkpoint)
    hist = run.get("grid_offdiag_history") or {}
    return hist.get(str(epoch), hist.get(epoch))


def _compare_image(r: Mapping, baseline: str, mpe: Sequence[str], checkpoints: Sequence[str],
                   length: int) -> tuple[list[dict], list[tuple[tuple, tuple]]]:
    """One image's Theorem 1 rows and its spectra resampled to ``length`` for the means:
    ``([per-image row], [((name, checkpoint, kernel), (mpe values, mpe floor, baseline values,
    baseline floor))])``; runs on other points than the baseline's are left out."""
    from ntkgrid.theory import compare_spectra

    rows, pooled = [], []
    base_run = r.get("runs", {}).get(baseline)
    for cp in checkpoints if base_run is not None else ():
        base = _spectra(base_run, cp)
        if base is None:
            continue
        b = base["total"]
        for name in mpe:
            run = r["runs"].get(name)
            spectra = None if run is None else _spectra(run, cp)
            for kernel in ("total", "no_grid") if spectra is not None else ():
                s = spectra.get(kernel)
                if s is None or s.eigenvalues.size != b.eigenvalues.size:
                    continue  # no such kernel, or not the same points
                c = compare_spectra(s, b)
                rows.append({"image_id": r["image_id"], "name": name, "checkpoint": cp, "kernel": kernel,
                             "ntk_points": int(s.eigenvalues.size), "grid_offdiag_fraction": _offdiag(run, cp),
                             **{k: c[k] for k in _SCALARS}})
                pooled.append(((name, cp, kernel), (resample(s.eigenvalues, length), s.floor,
                                                    resample(b.eigenvalues, length), b.floor)))
    return rows, pooled


def theorem1(records: Sequence[Mapping], configs: Mapping[str, Mapping], *, baseline: str = "baseline",
             checkpoints: Sequence[str] = ("middle", "end"), length: int = SPECTRUM_LENGTH) -> dict:
    """Theorem 1 (MPE eigenvalues at or above the baseline network's, index by index).

    Arguments:
      records: :func:`ntkgrid.sweep.load_sweep`'s records (run paths resolved).
      configs: the manifest's ``{name: config dict}``.
      baseline: the baseline config's name.
      checkpoints: ``"middle"`` and/or ``"end"``.
      length: the mean spectra are over spectra resampled to this many values.

    Returns:
      ``{"baseline", "mpe": [names], "per_image": [{"image_id", "name",
      "checkpoint", "kernel" ("total" | "no_grid"), "ntk_points", "grid_offdiag_fraction",
      ...compare_spectra scalars}], "on_mean": [{"name", "checkpoint", "kernel", "images",
      ...scalars, "log10_ratio" (length,)}], "summary": {(name, checkpoint, kernel) as
      "name/checkpoint/kernel": {"images_holding", "images_compared"}}}``. Without a
      baseline or a grid config, the lists are empty.
    """
    from ntkgrid.theory import compare_spectra

    mpe = grid_configs(configs)
    out: dict = {"baseline": baseline, "mpe": mpe, "per_image": [], "on_mean": [], "summary": {}}
    if baseline not in configs or not mpe:
        return out
    pooled: dict[tuple, list[tuple[np.ndarray, float, np.ndarray, float]]] = {}
    for r in records:
        rows, spectra = _compare_image(r, baseline, mpe, checkpoints, length)
        out["per_image"] += rows
        for key, item in spectra:
            pooled.setdefault(key, []).append(item)
    for (name, cp, kernel), items in pooled.items():
        m = Spectrum(np.mean([i[0] for i in items], 0), float(np.mean([i[1] for i in items])), 0, 0)
        b = Spectrum(np.mean([i[2] for i in items], 0), float(np.mean([i[3] for i in items])), 0, 0)
        c = compare_spectra(m, b)
        out["on_mean"].append({"name": name, "checkpoint": cp, "kernel": kernel, "images": len(items),
                               **{k: c[k] for k in _SCALARS}, "log10_ratio": c["log10_ratio"]})
        rows = [p for p in out["per_image"] if (p["name"], p["checkpoint"], p["kernel"]) == (name, cp, kernel)]
        out["summary"][f"{name}/{cp}/{kernel}"] = {"images_holding": sum(bool(p["holds"]) for p in rows),
                                                    "images_compared": sum(p["holds"] is not None for p in rows)}
    return out


def ratio_curves(result: Mapping) -> list[dict]:
    """Curves for :func:`ntkgrid.plots.curves_figure` from :func:`theorem1`'s ``on_mean``:
    ``log10`` of the mean MPE (or No-Grid) spectrum over the mean baseline spectrum against
    the normalised eigenvalue index."""
    curves = []
    for row in result.get("on_mean", []):
        ratio = np.asarray(row["log10_ratio"], np.float64)
        x = np.linspace(0.0, 1.0, ratio.size)
        ls = {"end": "-", "middle": "--"}.get(row["checkpoint"], ":")
        suffix = " no grid" if row["kernel"] == "no_grid" else ""
        curves.append({"name": row["name"] + ("_no_grid" if suffix else ""), "x": x[::10], "y": ratio[::10],
                       "linestyle": ls, "label": f"{row['name']}{suffix} / baseline ({row['checkpoint']})"})
    return curves


def training_curves(records: Sequence[Mapping], names: Sequence[str]) -> dict[str, dict]:
    """Mean full-image curves over images: ``{name: {"epoch": [...], "psnr": [...],
    "loss": [...], "images": n}}`` from each run's ``curve`` (epochs every image measured;
    diverged runs left out)."""
    out = {}
    for n in names:
        curves = [r["runs"][n].get("curve") for r in records
                  if n in r.get("runs", {}) and not r["runs"][n].get("diverged") and r["runs"][n].get("curve")]
        if not curves:
            continue
        common = sorted(set.intersection(*[{int(c["epoch"]) for c in cv} for cv in curves]))
        by_epoch = [{int(c["epoch"]): c for c in cv} for cv in curves]

        def mean(key, common=common, by_epoch=by_epoch):
            vals = [[be[e].get(key) for be in by_epoch] for e in common]
            return [float(np.mean(v)) if all(x is not None for x in v) else None for v in vals]

        out[n] = {"epoch": common, "psnr": mean("psnr"), "loss": mean("loss"), "images": len(curves)}
    return out


def theorem1_markdown(result: Mapping, *, figure: str | None = None) -> list[str]:
    """Report lines for :func:`theorem1`'s result (empty when there is nothing to compare)."""
    if not result.get("per_image"):
        return []
    lines = ["## Theorem 1: the MPE network's eigenvalues against the baseline network's", "",
             f"For each grid network and image, its float64 NTK spectrum against the `{result['baseline']}` "
             "network's (same MLP widths, same points: the training pixels, same checkpoint epoch). "
             "**holds** means λ_i(MPE) ≥ λ_i(baseline) at every index where either eigenvalue is above its "
             "floor (within the two floors); 'fraction' is the share of such indices where it does. "
             "'no grid' is the MPE network's kernel without the grid parameters (the paper's MPE (No Grid)). "
             "The Weyl bound K_total = K_no_grid + K_grid holds by construction and is a unit test, not "
             "evidence. The grid kernel's off-diagonal share (0 when no two points share a node) says whether "
             "the points share grid nodes as in training.", ""]
    body = []
    for row in result["on_mean"]:
        s = result["summary"][f"{row['name']}/{row['checkpoint']}/{row['kernel']}"]
        body.append([row["name"], row["kernel"], row["checkpoint"], f"**{row['verdict']}**",
                     f"{s['images_holding']}/{s['images_compared']}", files.fmt(row["fraction"], 3),
                     files.fmt(row["median_log10_ratio"], 3), files.fmt(row["min_log10_ratio"], 3)])
    lines += ["On the mean spectra over images (resampled to a common length), and the number of images on "
              "which it holds:", "",
              files.markdown_table(["network", "kernel", "checkpoint", "verdict on the mean", "images holding",
                                    "fraction", "median log10 ratio", "min log10 ratio"], body)]
    if figure:
        lines += [f"![ratio]({figure})", "",
                  "log10 of the mean MPE (and No-Grid) spectrum over the mean baseline spectrum against the "
                  "normalised eigenvalue index; above 0 the claim holds at that index.", ""]
    body = [[p["image_id"], p["name"], p["kernel"], p["checkpoint"], str(p["ntk_points"]),
             files.fmt(p["grid_offdiag_fraction"], 4), p["verdict"], files.fmt(p["fraction"], 3),
             files.fmt(p["median_log10_ratio"], 3), files.fmt(p["min_log10_ratio"], 3)] for p in result["per_image"]]
    lines += ["Per image:", "", files.markdown_table(
        ["image", "network", "kernel", "checkpoint", "NTK points", "grid off-diagonal share", "verdict",
         "fraction", "median log10 ratio", "min log10 ratio"], body)]
    return lines


#: Largest ``N O`` for which :func:`predicted_vs_measured` builds the full output-block kernel
#: for the replay (``8 (N O)^2`` bytes: 1.2 GB at 4096 points x 3 channels); above it the
#: replay uses the traced kernel and says so.
FULL_KERNEL_MAX_ROWS = 4096 * 3
#: Largest ``N O`` for which the expected-step prediction eigendecomposes the full kernel
#: (a float64 ``eigh``, cubic in ``N O``); above it it uses the traced kernel's eigenvectors.
FULL_EIGH_MAX_ROWS = 3072


def predicted_vs_measured(run, coords: np.ndarray, targets: np.ndarray, from_epoch: int, *,
                          full_kernel_max_rows: int = FULL_KERNEL_MAX_ROWS,
                          full_eigh_max_rows: int = FULL_EIGH_MAX_ROWS) -> dict:
    """The linearised network's training-set loss after ``from_epoch`` (the paper's Eqs. 5-7),
    against the loss the run measured (its ``curve``).

    Two predictions from the checkpoint's float64 kernel, frozen from then on:

    * replay (``"predicted"``; :func:`ntkgrid.theory.replay_training`): the run's own
      minibatch sequence (:func:`ntkgrid.training.epoch_batches` from its seed), exact for a
      model linear in its parameters, so its gap to the measurement is the kernel's motion;
    * expected step (``"predicted_expected"``; :func:`ntkgrid.theory.predict_training`): SGD's
      expectation over i.i.d. minibatches, an approximation also in the sampling.

    Both use the full output-block kernel ``(N O) x (N O)`` where ``N O`` is at most
    ``full_kernel_max_rows`` (replay) or ``full_eigh_max_rows`` (expected step), else the
    traced one; ``"replay_kernel"`` and ``"expected_kernel"`` say which. ``eta_crit`` is
    :func:`ntkgrid.stability.critical_lr` at the checkpoint (the full minibatch kernel).

    ``run``: a :class:`ntkgrid.training.RunResult` with an ``out_dir``, whose spectra were
    taken on the whole training set (``options["ntk_selection"] == "all"``, so the kernel's
    points are ``coords`` in order) and with a checkpoint at ``from_epoch``; ``coords``
    ``(N, d)`` and ``targets`` ``(N, O)``: its training data; ``mse`` loss only.

    Returns ``{"from_epoch", "epochs" (T,), "measured" (T,), "predicted" (T,) replay,
    "predicted_expected" (T,), "relative_error" (T,) |replay - meas| / meas,
    "max_relative_error" (after from_epoch), "final_relative_error", "expected_max_relative_error",
    "expected_final_relative_error", "kernel_motion_share" (|replay - meas| / |expected - meas|
    at the last epoch: the share of the expected-step model's final error that the exact
    minibatch order leaves, i.e. the kernel's motion), "replay_kernel", "expected_kernel",
    "stable" (lr < eta_crit), "expected_stable" (the expected-step rates all within 1), "edges",
    "bands_start", "bands_predicted_end" (expected step), "bands_replay_end", "bands_measured_end"
    (energy per eigenvalue band of the expected step's kernel at from_epoch, predicted and
    measured at the last curve epoch; measured = the final residual projected on the
    kernel's eigenvectors at from_epoch), "end_epoch", "lambda_max" (the expected step's
    kernel), "critical_learning_rate" (eta_crit)}``. Raises ``ValueError`` naming what is missing.
    """
    from ntkgrid.analysis import checkpoint_variables, recompute_kernels
    from ntkgrid.spectrum import eigh, full_ntk, spectrum_from_kernel
    from ntkgrid.stability import critical_lr
    from ntkgrid.theory import band_energies, loss_gradient_scale, predict_training, replay_training
    from ntkgrid.training import epoch_batches, predict

    cfg = run.config
    if run.out_dir is None:
        raise ValueError(f"{run.label or 'run'}: has no run folder to read its checkpoints from")
    if run.options.get("ntk_selection") != "all":
        raise ValueError(f"{run.out_dir}: the prediction needs kernels on the whole training set, but its spectra "
                         f"were taken on {run.options.get('ntk_points')} {run.options.get('ntk_selection')} points")
    from ntkgrid.training.runfolder import ntk_points_path

    ntk_x = np.load(ntk_points_path(run.out_dir))
    if ntk_x.shape != np.shape(coords):
        raise ValueError(f"{run.out_dir}: its kernel points {ntk_x.shape} are not the {np.shape(coords)} "
                         "training points")
    coords = ntk_x  # the run's own training coordinates (its pixel convention), in order
    o = int(np.asarray(targets).shape[1])
    n = int(coords.shape[0])
    g = loss_gradient_scale(cfg.loss, cfg.batch_size, o, getattr(cfg, "loss_reduction", "mean"))
    y = np.asarray(targets, np.float64)
    later = [c for c in run.curve if c["epoch"] >= from_epoch and c.get("loss") is not None]
    if len(later) < 2:
        raise ValueError(f"{run.out_dir}: no full-data losses measured after epoch {from_epoch} (curve_every=0?)")
    variables = checkpoint_variables(run.out_dir, from_epoch)
    spectrum, traced = recompute_kernels(cfg, run.out_dir, from_epoch, out_dim=o)
    full = None
    if n * o <= full_kernel_max_rows:
        full = full_ntk(cfg.model(coords.shape[1], o), variables, coords, method=cfg.ntk_method)
    if full is not None and n * o <= full_eigh_max_rows:
        lam, q = eigh(full)
        floor = spectrum_from_kernel(full).floor
    else:
        lam, q = eigh(traced)
        floor = spectrum.floor
    resid = predict(cfg, variables, coords).astype(np.float64) - y
    epochs = np.array([c["epoch"] for c in later])
    measured = np.array([c["loss"] for c in later], np.float64)
    epoch_size = int(run.options.get("epoch_size", len(y)))
    pred = predict_training(lam, q, resid, learning_rate=cfg.learning_rate, gradient_scale=g,
                            batch_size=cfg.batch_size, epoch_size=epoch_size, epochs=epochs - from_epoch, floor=floor)
    batches = [epoch_batches(cfg.seed, from_epoch + e, n, cfg.batch_size, epoch_size)
               for e in range(int(epochs[-1]) - from_epoch)]
    rep = replay_training(full if full is not None else traced, resid, learning_rate=cfg.learning_rate,
                          gradient_scale=g, batches=batches, epochs=epochs - from_epoch)
    crit = critical_lr(cfg, coords, o, variables=variables)
    end = int(epochs[-1])
    resid_end = predict(cfg, checkpoint_variables(run.out_dir, end), coords).astype(np.float64) - y \
        if end in {int(h["epoch"]) for h in run.history} else None

    def project(r):
        return q.T @ (r if pred["kernel"] == "traced" else r.reshape(-1, 1))

    with np.errstate(over="ignore", invalid="ignore"):
        rel = np.abs(rep["loss"] - measured) / measured
        rel_exp = np.abs(pred["loss"] - measured) / measured
        gap_exp = abs(pred["loss"][-1] - measured[-1])
        share = float(abs(rep["loss"][-1] - measured[-1]) / gap_exp) if gap_exp > 0 else float("nan")
        bands_replay = band_energies(lam, project(rep["residuals"][-1]), pred["edges"])
    return {
        "from_epoch": int(from_epoch), "epochs": epochs, "measured": measured, "predicted": rep["loss"],
        "predicted_expected": pred["loss"], "relative_error": rel, "max_relative_error": float(rel[1:].max()),
        "final_relative_error": float(rel[-1]), "expected_max_relative_error": float(rel_exp[1:].max()),
        "expected_final_relative_error": float(rel_exp[-1]), "kernel_motion_share": share,
        "replay_kernel": rep["kernel"], "expected_kernel": pred["kernel"],
        "stable": crit.stable(cfg.learning_rate), "expected_stable": pred["stable"], "edges": pred["edges"],
        "bands_start": band_energies(lam, pred["coefficients"], pred["edges"]),
        "bands_predicted_end": pred["bands"][-1], "bands_replay_end": bands_replay,
        "bands_measured_end": None if resid_end is None else band_energies(lam, project(resid_end), pred["edges"]),
        "end_epoch": end, "lambda_max": float(np.max(lam)), "critical_learning_rate": crit.lr_crit_median,
    }
