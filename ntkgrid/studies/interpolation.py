"""The interpolation study (issue 22): which interpolation kernel lifts the multigrid NTK most?

``python -m experiments.interpolation`` is argument parsing plus :func:`run_interpolation_study`.

Runs: Table 3's coarse and fine multigrids (:data:`ntkgrid.presets.INTERPOLATION_GRIDS`) x each
interpolation kernel (:data:`ntkgrid.presets.INTERPOLATION_KERNELS`: linear, nearest, smoothstep,
cubic B-spline; definitions in :mod:`ntkgrid.interpolate`). At one grid every kernel has the same
nodes (an equal number of parameters); only how pixels read them differs. Each network trains at
a fraction of its own critical step at initialisation (:func:`ntkgrid.stability.with_critical_lr`),
with float64 spectra on every training pixel at initialisation, the middle and the end, split into
total / no-grid / grid kernels (:mod:`ntkgrid.studies.runner`). On top of the shared record:

* ``grid``, ``nodes_per_side``, ``taps`` (table rows a pixel reads: 1, 4, 4, 16 in 2D);
* ``interp_offdiag_fraction`` and ``interp_diag_mean``: the off-diagonal share and the mean
  diagonal (mean squared weight per pixel) of the interpolation Gram ``W W^T`` on the training
  pixels (:func:`interpolation_gram_stats`): geometry only, no network. The measured
  ``<cp>_grid_offdiag_fraction`` (the runner's) is the same share of the grid's NTK, where the
  network's cotangents weight the Gram; ``<cp>_grid_trace`` / ``<cp>_total_trace`` are the
  kernels' traces (sums of their eigenvalues);
* ``<cp>_vs_linear_*`` and ``<cp>_grid_vs_linear_*``: the total (grid) spectrum index by index
  against the linear kernel's at the same grid and checkpoint (:func:`ntkgrid.theory.compare_spectra`):
  ``fraction`` of resolved indices at or above, ``median_log10`` of the ratio.

Figures: ``spectra.png`` (total kernel, one panel per grid, init dotted, end solid),
``grid_spectra.png`` (the grid kernel), ``offdiag.png`` (PSNR and the spectrum against linear's,
against the grid kernel's off-diagonal share), ``reconstructions.png`` (rows: grids) and
``curves.png``; plus ``results.json``, ``report.md``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid import files, plots, presets, sweep
from ntkgrid.interpolate import INTERPOLATIONS, dense_taps, taps_per_point
from ntkgrid.studies.runner import (
    CHECKPOINTS,
    StudyResult,
    StudyRun,
    curves_figure,
    reconstructions_figure,
    run_study,
    runs_table,
    spectra_at,
    spectra_curves,
)
from ntkgrid.sweep import apply_overrides
from ntkgrid.theory import compare_spectra
from ntkgrid.training import ntk_points_path

__all__ = ["build_runs", "findings", "interpolation_gram_stats", "interpolation_offdiag_fraction", "rank_correlation", "run_interpolation_study",
           "vs_linear_fields", "write_report"]

#: Colour per kernel in the figures (matplotlib tab10).
COLORS = {"nearest": "#7f7f7f", "linear": "#d62728", "smoothstep": "#2ca02c", "cubic": "#1f77b4"}
_LINESTYLE = {"coarse": "--", "fine": "-"}


def _kernels_in_order(kernels: Sequence[str]) -> list[str]:
    """Distinct kernels, linear first (the others are compared with it)."""
    ks = list(dict.fromkeys(kernels))
    return (["linear"] if "linear" in ks else []) + [k for k in ks if k != "linear"]


def build_runs(preset: str, kernels: Sequence[str], *, grids: Sequence[str] | None = None, seed: int = 0,
               size: int | None = None, epochs: int | None = None, lr: float | None = None,
               lr_fraction: float | None = None, ntk_points: int | None = None,
               hidden: Sequence[int] | None = None) -> list[StudyRun]:
    """The study's runs: for each grid of :data:`ntkgrid.presets.INTERPOLATION_STUDY` ``[preset]``
    (coarse, fine) each kernel of ``kernels`` (linear first), named ``<grid>_<kernel>``.

    Args:
      preset: ``"quick"`` or ``"paper"``.
      kernels: interpolation kernels (:data:`ntkgrid.interpolate.INTERPOLATIONS`).
      grids: a subset of the preset's grids (default: all, :data:`ntkgrid.presets.INTERPOLATION_GRIDS`).
      seed: initialisation and minibatch order.
      size: image side; when given the grids are Table 3's scaled to it (:func:`ntkgrid.presets.scaled_grid`).
      epochs: override the preset's epochs (checkpoints scale along).
      lr: a step by hand (then ``lr_fraction`` must be None); lr_fraction: the critical-step fraction
        (default: the preset's).
      ntk_points: cap on the NTK points; hidden: replace the MLP's widths (e.g. for tests).
    """
    if preset not in presets.INTERPOLATION_STUDY:
        raise ValueError(f"preset must be one of {sorted(presets.INTERPOLATION_STUDY)}, got {preset!r}")
    unknown = [k for k in kernels if k not in INTERPOLATIONS]
    if unknown or not kernels:
        raise ValueError(f"kernels must be among {list(INTERPOLATIONS)}, got {list(kernels)}")
    if lr is not None and lr_fraction is not None:
        raise ValueError("give a learning rate by hand or a critical-step fraction, not both")
    p = presets.INTERPOLATION_STUDY[preset]
    grids = list(dict.fromkeys(grids or p["configs"]))
    if not set(grids) <= set(p["configs"]):
        raise ValueError(f"grids must be among {list(p['configs'])}, got {grids}")
    fraction = None if lr is not None else (lr_fraction if lr_fraction is not None else p["lr_fraction"])
    runs = []
    for grid in grids:
        base = p["configs"][grid]
        if size is not None:
            scaled = presets.scaled_grid(presets.INTERPOLATION_STUDY["paper"]["configs"][grid], int(size))
            base = base.replace(encoding=scaled.encoding)
        cfg = apply_overrides(base, epochs=epochs, learning_rate=lr, ntk_points=ntk_points, seed=seed)
        if hidden is not None:
            cfg = cfg.replace(hidden=tuple(int(h) for h in hidden))
        for kernel in _kernels_in_order(kernels):
            c = cfg.replace(encoding={"interpolation": kernel})
            fields = {"grid": grid, "nodes_per_side": c.encoding.max_res, "taps": taps_per_point(2, kernel)}
            runs.append(StudyRun(f"{grid}_{kernel}", c, fraction, fields))
    return runs


def interpolation_offdiag_fraction(x: np.ndarray, res: Sequence[int], interpolation: str) -> float:
    """Off-diagonal share of the interpolation Gram ``W W^T`` on the points ``x``
    (:func:`interpolation_gram_stats`' ``offdiag_fraction``)."""
    return interpolation_gram_stats(x, res, interpolation)["offdiag_fraction"]


def interpolation_gram_stats(x: np.ndarray, res: Sequence[int], interpolation: str) -> dict:
    """Off-diagonal share and mean diagonal of the interpolation Gram ``W W^T`` on the points ``x``.

    ``W`` is the ``(N, prod(res))`` matrix of interpolation weights (row ``n``: the taps of
    point ``n``), so ``(W W^T)[n, m] = sum_{c, c'} w_nc w_mc' [idx_nc == idx_mc']`` is the grid
    kernel without the network's cotangents. Computed from the sparse taps (``||W W^T||_F =
    ||W^T W||_F``), never as an ``N x N`` matrix, so it is cheap at paper scale.

    Args:
      x: ``(N, d)`` points in ``[0, 1]``.
      res: nodes per axis of the dense grid.
      interpolation: a kernel of :data:`ntkgrid.interpolate.INTERPOLATIONS`.

    Returns:
      ``{"offdiag_fraction": (||W W^T||_F^2 - sum_n (W W^T)_nn^2) / ||W W^T||_F^2`` (as
      :func:`ntkgrid.spectrum.offdiag_fraction` of the dense matrix), ``"diag_mean": mean_n
      (W W^T)_nn``}: the second is ``trace(W W^T) / N``, the mean squared weight a pixel puts
      on its nodes (1 for nearest, about 0.44 for bilinear, 0.23 for the cubic B-spline).
    """
    with jax.enable_x64(True):
        idx, w = dense_taps(jnp.asarray(x, jnp.float64), tuple(int(r) for r in res), interpolation)
        idx, w = np.asarray(idx, np.int64), np.asarray(w, np.float64)
    rows = int(np.prod(res))
    pair = w[:, :, None] * w[:, None, :]  # (N, C, C): every pair of one point's taps
    # (W W^T)_nn; repeated taps of a point (clamped cubic taps at the edges) count as one node.
    diag = np.sum(pair * (idx[:, :, None] == idx[:, None, :]), axis=(1, 2))
    # W^T W by node pairs: repeated taps add up under the same key, as their merged weight would.
    _, inverse = np.unique((idx[:, :, None] * rows + idx[:, None, :]).ravel(), return_inverse=True)
    gram = np.bincount(inverse.ravel(), weights=pair.ravel())
    total = float(gram @ gram)
    off = max(0.0, (total - float(diag @ diag)) / total) if total > 0 else float("nan")
    return {"offdiag_fraction": off, "diag_mean": float(np.mean(diag))}


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation of two equal-length sequences (None with fewer than 3 pairs
    or a constant one); ties get their mean rank."""
    pairs = [(float(u), float(v)) for u, v in zip(a, b) if u is not None and v is not None
             and np.isfinite(u) and np.isfinite(v)]
    if len(pairs) < 3:
        return None

    def ranks(v):
        v = np.asarray(v)
        order = np.argsort(v, kind="stable")
        r = np.empty(v.size)
        r[order] = np.arange(v.size, dtype=np.float64)
        for value in np.unique(v):
            r[v == value] = r[v == value].mean()
        return r

    ra, rb = ranks([p[0] for p in pairs]), ranks([p[1] for p in pairs])
    if np.std(ra) == 0 or np.std(rb) == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def vs_linear_fields(run: StudyRun, cfg, result, results: Mapping) -> dict:
    """The record keys ``<cp>_vs_linear_{fraction,median_log10}`` (total kernel) and
    ``<cp>_grid_vs_linear_*`` (grid kernel) against the linear run of the same grid, plus
    ``interp_offdiag_fraction`` on the NTK points (module docstring)."""
    out: dict = {}
    x_path = ntk_points_path(result.out_dir)
    if x_path.exists():
        enc = cfg.encoding
        stats = interpolation_gram_stats(np.load(x_path), (enc.max_res,) * 2, enc.interpolation)
        out["interp_offdiag_fraction"], out["interp_diag_mean"] = stats["offdiag_fraction"], stats["diag_mean"]
    for cp in CHECKPOINTS:  # trace = sum of the eigenvalues: the kernel's total mass
        for group, spec in spectra_at(result, cp)[1].items():
            if group in ("total", "grid") and spec is not None:
                out[f"{cp}_{group}_trace"] = float(np.sum(spec.eigenvalues))
    linear = results.get(f"{run.fields['grid']}_linear")
    if linear is None or linear is result:
        return out
    for cp in CHECKPOINTS:
        ours, theirs = spectra_at(result, cp)[1], spectra_at(linear, cp)[1]
        for group, prefix in (("total", f"{cp}_vs_linear"), ("grid", f"{cp}_grid_vs_linear")):
            a, b = ours.get(group), theirs.get(group)
            if a is None or b is None or a.eigenvalues.size != b.eigenvalues.size:
                continue
            c = compare_spectra(a, b)
            out[f"{prefix}_fraction"] = c["fraction"]
            out[f"{prefix}_median_log10"] = c["median_log10_ratio"]
    return out


# ----------------------------------------------------------------------------- outputs


def _grids(records_or_runs) -> list[str]:
    return list(dict.fromkeys(r["grid"] if isinstance(r, Mapping) else r.fields["grid"] for r in records_or_runs))


def _offdiag_figure(path: Path, records: Sequence[Mapping]) -> Path | None:
    recs = [r for r in records if r.get("end_grid_offdiag_fraction") is not None]
    if not recs:
        return None
    fig, axes = plots.new_figure(1, 2, panel=(5.0, 4.0))
    data = []
    for ax, key, ylabel in ((axes[0][0], "psnr", "PSNR (dB)"),
                            (axes[0][1], "end_vs_linear_median_log10", "median log10 λ_i / λ_i(linear), end")):
        for grid in _grids(recs):
            pts = [(r, 0.0 if key != "psnr" and r["interpolation"] == "linear" else r.get(key))
                   for r in recs if r["grid"] == grid]
            pts = sorted([(r["end_grid_offdiag_fraction"], y, r) for r, y in pts if y is not None],
                         key=lambda p: p[0])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], _LINESTYLE.get(grid, "-"), color="#444444", lw=0.8,
                    alpha=0.5)
            for xv, yv, r in pts:
                ax.scatter([xv], [yv], color=COLORS.get(r["interpolation"], "k"), s=30, zorder=3)
                ax.annotate(f"{r['interpolation']} ({grid})", (xv, yv), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
                data.append({"run": r["name"], "offdiag": xv, "key": key, "value": yv})
        ax.set_xlabel("grid kernel off-diagonal share (end)")
        ax.set_ylabel(ylabel)
    fig.suptitle("kernels at equal nodes: off-diagonal share of the grid NTK vs PSNR and spectrum")
    return plots.save(fig, path, {"points": data})[0]


def _figures(out: Path, image: np.ndarray, result: StudyResult, runs: Sequence[StudyRun]) -> dict[str, Path]:
    res = result.results
    figs: dict[str, Path] = {}
    kernel_of = {r.name: r.config.encoding.interpolation for r in runs}
    color_of = lambda n: COLORS.get(kernel_of.get(n, ""), "#7f7f7f")  # noqa: E731
    label_of = lambda n: kernel_of.get(n, n)  # noqa: E731
    for key, group, title in (("spectra", "total", "total NTK"), ("grid_spectra", "grid", "grid kernel")):
        panels = []
        for grid in _grids(runs):
            names = [r.name for r in runs if r.fields["grid"] == grid]
            curves = spectra_curves(res, names, checkpoint="end", group=group, label=label_of, color=color_of)
            curves += spectra_curves(res, names, checkpoint="init", group=group, label=label_of, color=color_of)
            if curves:
                nodes = next(r.fields["nodes_per_side"] for r in runs if r.fields["grid"] == grid)
                panels.append((f"{grid} grid ({nodes}x{nodes} nodes)", curves))
        if panels:
            figs[key] = plots.spectra_figure(out / key, panels,
                                             suptitle=f"{title} on every training pixel by interpolation kernel "
                                                      "(dotted: init, solid: end)")[0]
    png = _offdiag_figure(out / "offdiag", result.records)
    if png is not None:
        figs["offdiag"] = png
    grid_names = []
    for grid in _grids(runs):
        grid_names += [None] + [r.name for r in runs if r.fields["grid"] == grid]
    ncols = 1 + max(sum(r.fields["grid"] == g for r in runs) for g in _grids(runs))
    figs["reconstructions"] = reconstructions_figure(out / "reconstructions", image, res, grid_names, ncols=ncols,
                                                     suptitle="rows: grids; columns: ground truth, kernels")
    png = curves_figure(out / "curves", res, [r.name for r in runs], color=color_of,
                        linestyle=lambda n: _LINESTYLE.get(n.split("_", 1)[0], "-"))
    if png is not None:
        figs["curves"] = png
    return figs


def _grid_table(recs: Sequence[Mapping]) -> str:
    def f(v, d=3):
        return files.fmt(v, d) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-" if v is None \
            else str(v)

    rows = [[r["interpolation"], str(r.get("taps")), f(r.get("interp_offdiag_fraction")), f(r.get("interp_diag_mean")),
             f"{r.get('end_grid_trace') or float('nan'):.4g}",
             f(r.get("init_grid_offdiag_fraction")), f(r.get("end_grid_offdiag_fraction")),
             f"{r.get('lr') or float('nan'):.3g}", f(r.get("end_vs_linear_median_log10")),
             f(r.get("end_vs_linear_fraction")), f(r.get("end_grid_vs_linear_median_log10")),
             str(r.get("end_total_n_above_floor")), f"{r.get('end_total_effective_rank') or float('nan'):.3g}",
             f(r.get("psnr"), 2), f(r.get("ms_ssim"))] for r in recs]
    return files.markdown_table(
        ["kernel", "taps", "W Wᵀ off-diag", "W Wᵀ mean diag", "grid NTK trace end", "grid NTK off-diag init", "grid NTK off-diag end", "lr",
         "end vs linear: median log10", "end vs linear: fraction ≥", "grid kernel vs linear: median log10",
         "above floor end", "effective rank end", "PSNR dB", "MS-SSIM"], rows)


def findings(records: Sequence[Mapping]) -> list[str]:
    """Plain sentences, per grid: the kernel with the highest PSNR, the one whose end spectrum
    lies highest against linear, and the rank correlations of the grid kernel's off-diagonal
    share (end) with PSNR and with the spectrum (4 kernels: a small sample)."""
    lines = []
    for grid in _grids(records):
        recs = [r for r in records if r["grid"] == grid and not r.get("diverged")]
        if not recs:
            continue
        best = max(recs, key=lambda r: r.get("psnr") or -np.inf)
        spec = {r["interpolation"]: (0.0 if r["interpolation"] == "linear" else r.get("end_vs_linear_median_log10"))
                for r in recs}
        spec = {k: v for k, v in spec.items() if v is not None}
        top = max(spec, key=spec.get) if spec else None
        off = [r.get("end_grid_offdiag_fraction") for r in recs]
        rho_psnr = rank_correlation(off, [r.get("psnr") for r in recs])
        rho_spec = rank_correlation(off, [spec.get(r["interpolation"]) for r in recs])
        rho_trace = rank_correlation([r.get("end_grid_trace") for r in recs],
                                     [spec.get(r["interpolation"]) for r in recs])
        lines.append(f"- {grid} grid ({recs[0].get('nodes_per_side')} nodes per side): highest PSNR "
                     f"{best['interpolation']} ({files.fmt(best.get('psnr'))} dB); highest end spectrum against "
                     f"linear's: {top} (median log10 ratio {files.fmt(spec.get(top), 3)}); rank correlation of the "
                     f"grid NTK's off-diagonal share (end) with PSNR {files.fmt(rho_psnr)}, with the spectrum "
                     f"{files.fmt(rho_spec)}; of the grid NTK's trace (end) with the spectrum {files.fmt(rho_trace)}; "
                     f"over {len(recs)} kernels.")
    return lines


def write_report(out: Path, result: StudyResult, *, image_name: str, image: np.ndarray, preset: str,
                 command: str, figures: Mapping[str, Path]) -> Path:
    """``report.md``: runs, the per-grid comparison of kernels, findings, figures."""
    recs = result.records
    lines = [f"# Interpolation-kernel study on {image_name}", "",
             f"- command: `{command}`",
             f"- image: {image_name}, {image.shape[0]}x{image.shape[1]} px; preset {preset}",
             f"- time for this call: {result.seconds:.0f} s (runs reused from earlier calls count as measured then)",
             "", "## Runs", "", runs_table(recs), "",
             "Every network trains at `lr_fraction` of its own critical SGD step at initialisation "
             "(`ntkgrid.stability.critical_lr`), so no kernel gets a hand-picked step. Kernels "
             "(`ntkgrid.interpolate`): nearest (1 tap), linear (the paper's, 4 taps), smoothstep (4 taps, "
             "t²(3−2t)), cubic = uniform cubic B-spline (16 taps, C², non-negative, clamped at the edges).", ""]
    notes = [f"- {r['name']}: {r['lr_note']}" for r in recs if r.get("lr_note")]
    if notes:
        lines += ["Where the critical-step rule cannot speak:", "", *notes, ""]
    lines += ["## Kernels at an equal number of nodes", "",
              "W Wᵀ off-diag / mean diag: the interpolation Gram's off-diagonal share and mean diagonal (the mean "
              "squared weight a pixel puts on its nodes) on the training pixels (geometry only). Grid NTK trace: "
              "the sum of the grid kernel's eigenvalues. "
              "Grid NTK off-diag: the same share of the grid's NTK (`ntkgrid.spectrum.offdiag_fraction`). "
              "vs linear: the end spectrum index by index against the linear kernel's at the same grid "
              "(median log10 ratio; share of resolved indices at or above).", ""]
    for grid in _grids(recs):
        g = [r for r in recs if r["grid"] == grid]
        lines += [f"### {grid} grid ({g[0].get('nodes_per_side')}x{g[0].get('nodes_per_side')} nodes, "
                  f"{g[0].get('encoding_params')})", "", _grid_table(g), ""]
    lines += ["## Findings (computed from the table above)", "", *findings(recs),
              "", "One image, one seed, four kernels per grid: rank correlations over four points are weak evidence.",
              ""]
    for key, title in (("spectra", "Total NTK spectra"), ("grid_spectra", "Grid-kernel spectra"),
                       ("offdiag", "Off-diagonal share vs PSNR and spectrum"),
                       ("reconstructions", "Reconstructions"), ("curves", "Training curves")):
        if key in figures:
            lines += [f"## {title}", "", f"![{key}]({Path(figures[key]).name})", ""]
    if result.errors:
        lines += ["## Failed runs", ""] + [f"- {k}: {v}" for k, v in result.errors.items()] + [""]
    return files.write_text(out / "report.md", "\n".join(lines))


def run_interpolation_study(*, preset: str = "quick", image: str = "chelsea", seed: int = 0,
                            out: str | Path | None = None, kernels: Sequence[str] | None = None,
                            grids: Sequence[str] | None = None, size: int | None = None, epochs: int | None = None, lr: float | None = None,
                            lr_fraction: float | None = None, ntk_points: int | None = None,
                            hidden: Sequence[int] | None = None, progress: bool = True, log=print) -> StudyResult:
    """The whole study: load the image, train (or resume) every run, write results, figures, report.

    Args:
      preset: ``"quick"`` or ``"paper"`` (:data:`ntkgrid.presets.INTERPOLATION_STUDY`).
      image: a bundled photo's name (scikit-image) or an image file.
      seed: initialisation and minibatch order.
      out: the study folder (default ``runs/interpolation/<image>``).
      kernels: the kernels (default :data:`ntkgrid.presets.INTERPOLATION_KERNELS`).
      grids: the grids (default: coarse and fine, :data:`ntkgrid.presets.INTERPOLATION_GRIDS`).
      size: image side in pixels (default: the preset's); scales the grids as Table 3 does.
      epochs: override the preset's epochs (checkpoints scale along).
      lr: a step by hand for every run (then ``lr_fraction`` must be None).
      lr_fraction: the critical-step fraction (default: the preset's).
      ntk_points: cap on the NTK points (default: every training pixel).
      hidden: replace the MLP's hidden widths (default: the preset's, Table 3's 2 x 512).
      progress, log: progress bars and progress lines.

    Returns:
      :class:`ntkgrid.studies.runner.StudyResult`. Raises ``ValueError`` / ``DataError`` for bad
      arguments or an unreadable image (before anything trains) and
      :class:`~ntkgrid.studies.runner.StudyError` for another study's folder.
    """
    kernels = _kernels_in_order(kernels or presets.INTERPOLATION_KERNELS)
    side = int(size or presets.INTERPOLATION_STUDY.get(preset, {}).get("size", 0) or 0)
    runs = build_runs(preset, kernels, grids=grids, seed=seed, size=size, epochs=epochs, lr=lr, lr_fraction=lr_fraction,
                      ntk_points=ntk_points, hidden=hidden)
    if side < 11:
        raise ValueError(f"image size must be >= 11 pixels (MS-SSIM), got {side}")
    if ntk_points is not None and ntk_points > side * side:
        raise ValueError(f"ntk_points {ntk_points} exceeds the {side}x{side} pixels of the image")
    src, img = sweep.resolve_image(image, side)
    out = Path(out) if out is not None else Path("runs/interpolation") / files.safe_name(src.image_id)
    command = "python -m experiments.interpolation " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    log(f"interpolation: {src.source} at {side}x{side} px, preset {preset}, {len(runs)} runs "
        f"({', '.join(_grids(runs))} grids x {', '.join(kernels)}), output {out}")
    result = run_study("interpolation", img, runs, out,
                       identity={"image": src.source, "size": side, "seed": seed, "preset": preset,
                                 **({} if hidden is None else {"hidden": list(hidden)})},
                       header={"command": command, "kernels": kernels, "grids": _grids(runs)},
                       extra_record=vs_linear_fields, log=log, progress=progress)
    figs = _figures(out, img, result, runs)
    write_report(out, result, image_name=src.source, image=img, preset=preset, command=command, figures=figs)
    log(f"report: {out / 'report.md'}")
    return result
