"""The activation study (issue 22): does the grid's lift of the NTK spectrum survive other activations?

``python -m experiments.activations`` is argument parsing plus :func:`run_activation_study`.

Runs: each activation variant (:data:`ntkgrid.presets.ACTIVATION_VARIANTS`: ReLU, tanh, Gaussian,
sine as a SIREN, optionally sine in the NTK parameterisation) x {baseline, fourier (Table 3's
mid, L = 8), multigrid (Table 3's coarse grid)}, each at a fraction of its own critical step at
initialisation (:func:`ntkgrid.stability.with_critical_lr`). Every run records float64 spectra
on every training pixel at initialisation, the middle and the end, with the total / no-grid /
grid split for multigrid (:mod:`ntkgrid.studies.runner`). On top of the shared record:

* Theorem 1 for each multigrid network (:mod:`ntkgrid.theory`), at each checkpoint: **as stated**
  (against the baseline network of the same activation, trained alike) and **fan-in matched**
  (against :func:`ntkgrid.theory.fan_in_matched_baseline`: the no-encoding network with the MPE
  MLP's first-layer fan-in and the MPE's own weights, fed ``[0..0, x]``). Keys
  ``<cp>_vs_baseline_*`` (every non-baseline run) and ``<cp>_vs_fan_in_matched_*``: ``verdict``,
  ``fraction`` (share of resolved indices at or above), ``median_log10`` (median log10 ratio).
  ``<cp>_grid_lift_median_log10``: the multigrid network's total kernel against its own no-grid
  kernel (positive by Weyl's inequality; its size is the measurement, not its sign).
* Kernel locality at the end of training (:func:`kernel_locality`): how fast the centred,
  normalised kernel ``K(x, x') / sqrt(K(x, x) K(x', x'))`` falls with the distance between
  pixels: ``end_kernel_corr_1px``, ``end_kernel_halfwidth_px`` (first distance where it drops
  below 0.5) and ``end_kernel_far_corr`` (mean ``|corr|`` beyond a quarter of the image): a
  local kernel (a grid's) has a small half-width and a far level near 0; a global embedding
  (Fourier features) keeps correlations across the image.

Figures: ``spectra_by_activation.png`` (one panel per activation, the three encodings),
``spectra_by_encoding.png`` (one panel per encoding, the activations), ``multigrid_split.png``
(total / no-grid / grid per activation), ``reconstructions.png`` (rows: activations),
``curves.png``; plus ``results.json``, ``report.md``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkgrid import files, plots, presets, sweep
from ntkgrid.analysis import checkpoint_variables
from ntkgrid.models import build_model
from ntkgrid.spectrum import ntk_spectrum
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
from ntkgrid.theory import compare_spectra, fan_in_matched_baseline
from ntkgrid.training import ntk_points_path

__all__ = ["ENCODINGS", "build_runs", "kernel_locality", "run_activation_study", "theorem1_fields", "write_report"]

#: The study's encodings, in the order they train (the baseline first: the others compare with it).
ENCODINGS = ("baseline", "fourier", "multigrid")

#: Colour per activation variant in the figures (matplotlib tab10).
COLORS = {"relu": "#d62728", "tanh": "#2ca02c", "gaussian": "#9467bd", "sine": "#1f77b4", "sine_ntk": "#17becf"}
_LINESTYLE = {"baseline": ":", "fourier": "--", "multigrid": "-"}


def build_runs(preset: str, activations: Sequence[str], *, seed: int = 0, epochs: int | None = None,
               lr: float | None = None, lr_fraction: float | None = None, ntk_points: int | None = None,
               hidden: Sequence[int] | None = None) -> list[StudyRun]:
    """The study's runs: for each variant of ``activations`` (keys of
    :data:`ntkgrid.presets.ACTIVATION_VARIANTS`) the baseline, fourier and multigrid networks of
    :data:`ntkgrid.presets.ACTIVATION_STUDY` ``[preset]``. ``lr`` (a step by hand) or
    ``lr_fraction`` (default: the preset's) sets the step; ``epochs`` rescales the checkpoints;
    ``hidden`` replaces the MLP's widths (e.g. for tests)."""
    if preset not in presets.ACTIVATION_STUDY:
        raise ValueError(f"preset must be one of {sorted(presets.ACTIVATION_STUDY)}, got {preset!r}")
    unknown = [a for a in activations if a not in presets.ACTIVATION_VARIANTS]
    if unknown or not activations:
        raise ValueError(f"activations must be among {list(presets.ACTIVATION_VARIANTS)}, got {list(activations)}")
    p = presets.ACTIVATION_STUDY[preset]
    if lr is not None and lr_fraction is not None:
        raise ValueError("give a learning rate by hand or a critical-step fraction, not both")
    fraction = None if lr is not None else (lr_fraction if lr_fraction is not None else p["lr_fraction"])
    runs = []
    for variant in dict.fromkeys(activations):
        for enc in ENCODINGS:
            cfg = apply_overrides(p["configs"][enc], epochs=epochs, learning_rate=lr, ntk_points=ntk_points, seed=seed)
            cfg = cfg.replace(**presets.ACTIVATION_VARIANTS[variant])
            if hidden is not None:
                cfg = cfg.replace(hidden=tuple(int(h) for h in hidden))
            runs.append(StudyRun(f"{variant}_{enc}", cfg, fraction, {"variant": variant, "study_encoding": enc}))
    return runs


def kernel_locality(kernel: np.ndarray, x: np.ndarray, pixel: float, *, anchors: int = 256) -> dict:
    """How local a kernel is over image pixels.

    Args:
      kernel: ``(N, N)`` float64 NTK on the points ``x``.
      x: ``(N, 2)`` pixel coordinates in ``[0, 1]``.
      pixel: the distance between neighbouring pixels in those units (``1 / (W - 1)``).
      anchors: rows used (evenly spaced), which bounds the cost at ``anchors x N``.

    Returns:
      ``{"corr_1px", "halfwidth_px", "far_corr"}``: the mean centred, normalised kernel
      (the constant mode removed, then ``K / sqrt(diag diag)``) at 1 pixel; the first distance
      (pixels, rounded) at which that mean falls below 0.5 (None if it never does); the mean
      ``|corr|`` over pairs at least a quarter of the largest distance apart.
    """
    k = np.asarray(kernel, np.float64)
    n = k.shape[0]
    idx = np.unique(np.linspace(0, n - 1, min(n, anchors)).round().astype(int))
    row_mean = k.mean(axis=1)
    mean = row_mean.mean()
    diag = np.diag(k) - 2.0 * row_mean + mean
    kc = k[idx] - row_mean[idx, None] - row_mean[None, :] + mean
    scale = np.sqrt(np.clip(diag, 1e-300, None))
    corr = kc / (scale[idx, None] * scale[None, :])
    dist = np.linalg.norm(x[idx, None, :] - x[None, :, :], axis=-1) / pixel
    bins = np.rint(dist).astype(np.int64).ravel()
    counts = np.bincount(bins)
    profile = np.bincount(bins, weights=corr.ravel(), minlength=counts.size) / np.maximum(counts, 1)
    below = [d for d in range(1, profile.size) if counts[d] and profile[d] < 0.5]
    far = dist >= dist.max() / 4
    return {"corr_1px": float(profile[1]) if profile.size > 1 and counts[1] else None,
            "halfwidth_px": int(below[0]) if below else None,
            "far_corr": float(np.mean(np.abs(corr[far]))) if far.any() else None}


def _comparison_fields(prefix: str, comparison: Mapping) -> dict:
    return {f"{prefix}_verdict": comparison["verdict"], f"{prefix}_fraction": comparison["fraction"],
            f"{prefix}_median_log10": comparison["median_log10_ratio"],
            f"{prefix}_min_log10": comparison["min_log10_ratio"]}


def _variables_at(result, epoch: int):
    if epoch == result.params_epoch:
        return result.params
    return checkpoint_variables(result.out_dir, epoch)


def theorem1_fields(run: StudyRun, cfg, result, results: Mapping) -> dict:
    """The record keys of Theorem 1's comparisons and the kernel locality (module docstring)."""
    out: dict[str, Any] = {}
    variant, enc = run.fields["variant"], run.fields["study_encoding"]
    base = results.get(f"{variant}_baseline") if enc != "baseline" else None
    x_path = ntk_points_path(result.out_dir)
    x = np.load(x_path) if x_path.exists() else None
    model = build_model(cfg, 2, 3)
    for cp in CHECKPOINTS:
        epoch, spectra = spectra_at(result, cp)
        total = spectra.get("total")
        if total is None:
            continue
        if base is not None:
            b_epoch, b_spectra = spectra_at(base, cp)
            if b_spectra.get("total") is not None and b_spectra["total"].eigenvalues.size == total.eigenvalues.size:
                out.update(_comparison_fields(f"{cp}_vs_baseline", compare_spectra(total, b_spectra["total"])))
        if enc == "multigrid" and x is not None:
            if spectra.get("no_grid") is not None:
                lift = compare_spectra(total, spectra["no_grid"])
                out[f"{cp}_grid_lift_median_log10"] = lift["median_log10_ratio"]
            variables = _variables_at(result, epoch)
            fm_model, fm_vars = fan_in_matched_baseline(model, variables)
            fm_spec, _ = ntk_spectrum(fm_model, fm_vars, x)
            out.update(_comparison_fields(f"{cp}_vs_fan_in_matched", compare_spectra(total, fm_spec)))
            out[f"{cp}_fan_in_matched_lambda_max"] = fm_spec.lambda_max
    if x is not None and result.params is not None:
        _, kernel = ntk_spectrum(model, result.params, x)
        side = max(2, int(round(np.sqrt(x.shape[0]))))
        pixel = float(np.min(np.diff(np.unique(x[:, 0])))) if np.unique(x[:, 0]).size > 1 else 1.0 / (side - 1)
        loc = kernel_locality(kernel, x, pixel)
        out.update({f"end_kernel_{k}": v for k, v in loc.items()})
    return out


# ----------------------------------------------------------------------------- outputs


def _figures(out: Path, image: np.ndarray, result: StudyResult, variants: Sequence[str]) -> dict[str, Path]:
    res = result.results
    figs: dict[str, Path] = {}
    color_of = lambda n: COLORS.get(n.rsplit("_", 1)[0], "#7f7f7f")  # noqa: E731
    panels = []
    for v in variants:
        names = [f"{v}_{e}" for e in ENCODINGS]
        curves = []
        for n in names:
            e = n.rsplit("_", 1)[1]
            for cp in ("init", "end"):
                curves += [{**c, "name": e} for c in spectra_curves(res, [n], checkpoint=cp)]
        if curves:
            panels.append((v, curves))
    if panels:
        figs["spectra_by_activation"] = plots.spectra_figure(
            out / "spectra_by_activation", panels, suptitle="NTK spectra on every training pixel (dotted: init, "
                                                            "solid: end)")[0]
    panels = []
    for e in ENCODINGS:
        names = [f"{v}_{e}" for v in variants]
        curves = spectra_curves(res, names, checkpoint="end", color=color_of)
        curves += spectra_curves(res, names, checkpoint="init", color=color_of)
        if curves:
            panels.append((e, curves))
    if panels:
        figs["spectra_by_encoding"] = plots.spectra_figure(
            out / "spectra_by_encoding", panels, suptitle="NTK spectra by activation (dotted: init, solid: end)")[0]
    panels = []
    for v in variants:
        n = f"{v}_multigrid"
        curves = []
        for g, name in (("total", "multigrid"), ("no_grid", "multigrid_no_grid"), ("grid", "hashgrid")):
            curves += [{**c, "name": name, "label": f"{g} ({c['label'].split('(')[-1]}"}
                       for c in spectra_curves(res, [n], checkpoint="end", group=g)]
        if curves:
            panels.append((f"{v}: multigrid split", curves))
    if panels:
        figs["multigrid_split"] = plots.spectra_figure(
            out / "multigrid_split", panels, suptitle="multigrid network: total, no-grid and grid kernels (end)")[0]
    grid = []
    for v in variants:
        grid += [None] + [f"{v}_{e}" for e in ENCODINGS]
    figs["reconstructions"] = reconstructions_figure(out / "reconstructions", image, res, grid, ncols=4,
                                                     suptitle="rows: activations; columns: ground truth, "
                                                              + ", ".join(ENCODINGS))
    names = [f"{v}_{e}" for v in variants for e in ENCODINGS]
    png = curves_figure(out / "curves", res, names, color=color_of,
                        linestyle=lambda n: _LINESTYLE[n.rsplit("_", 1)[1]])
    if png is not None:
        figs["curves"] = png
    return figs


def _theorem1_table(records: Sequence[Mapping]) -> str:
    rows = []
    for r in records:
        if r.get("study_encoding") != "multigrid":
            continue
        for cp in CHECKPOINTS:
            if r.get(f"{cp}_vs_baseline_verdict") is None and r.get(f"{cp}_vs_fan_in_matched_verdict") is None:
                continue
            rows.append([r["variant"], cp, str(r.get(f"{cp}_epoch")),
                         f"{r.get(f'{cp}_vs_baseline_verdict')} ({files.fmt(r.get(f'{cp}_vs_baseline_fraction'))}, "
                         f"{files.fmt(r.get(f'{cp}_vs_baseline_median_log10'))})",
                         f"{r.get(f'{cp}_vs_fan_in_matched_verdict')} "
                         f"({files.fmt(r.get(f'{cp}_vs_fan_in_matched_fraction'))}, "
                         f"{files.fmt(r.get(f'{cp}_vs_fan_in_matched_median_log10'))})",
                         files.fmt(r.get(f"{cp}_grid_lift_median_log10")),
                         f"{r.get(f'{cp}_total_n_above_floor')} / {r.get(f'{cp}_no_grid_n_above_floor')}"])
    return files.markdown_table(["activation", "checkpoint", "epoch", "as stated: verdict (fraction, median log10)",
                                 "fan-in matched: verdict (fraction, median log10)", "grid lift (median log10)",
                                 "above floor: total / no grid"], rows)


def write_report(out: Path, result: StudyResult, *, image_name: str, image: np.ndarray, preset: str,
                 variants: Sequence[str], command: str, figures: Mapping[str, Path]) -> Path:
    """``report.md`` of the study: the runs, Theorem 1, kernel locality, the lr rule, the figures."""
    recs = result.records
    lines = [f"# Activation study on {image_name}", "",
             f"- command: `{command}`",
             f"- image: {image_name}, {image.shape[0]}x{image.shape[1]} px; preset {preset}; activations "
             f"{', '.join(variants)}",
             f"- time for this call: {result.seconds:.0f} s (runs reused from earlier calls count as measured then)",
             "", "## Runs", "", runs_table(recs), "",
             "Every network trains at `lr_fraction` of its own critical SGD step at initialisation "
             "(`ntkgrid.stability.critical_lr`, column `lr crit` in `results.json`), so no architecture gets a "
             "hand-picked step. sine = SIREN (its own standard parameterisation, ω0 = 30); the others use the "
             "NTK parameterisation.", ""]
    notes = [f"- {r['name']}: {r['lr_note']}" for r in recs if r.get("lr_note")]
    if notes:
        lines += ["Where the critical-step rule cannot speak:", "", *notes, ""]
    lines += ["## Theorem 1 per activation (multigrid network)", "",
              "As stated: against the baseline network of the same activation, trained alike. Fan-in matched: "
              "against `ntkgrid.theory.fan_in_matched_baseline` (the MPE MLP with the encoding's features zeroed). "
              "Fraction: share of resolved eigenvalue indices at or above; median log10 of the index-wise ratio. "
              "Grid lift: the total kernel against its own no-grid kernel (positive by construction; the size "
              "is what is measured).", "", _theorem1_table(recs), ""]
    loc = [[r["name"], files.fmt(r.get("end_kernel_corr_1px"), 3), str(r.get("end_kernel_halfwidth_px")),
            files.fmt(r.get("end_kernel_far_corr"), 3), str(r.get("end_total_n_above_floor")),
            f"{r.get('end_total_effective_rank') or float('nan'):.3g}"] for r in recs]
    lines += ["## Kernel locality (end of training)", "",
              "Centred, normalised kernel K(x,x')/sqrt(K(x,x)K(x',x')) against pixel distance: its mean at 1 px, "
              "the first distance where it drops below 0.5, and the mean |corr| beyond a quarter of the image.", "",
              files.markdown_table(["run", "corr at 1 px", "half-width px", "far |corr|", "above floor",
                                    "effective rank"], loc), ""]
    for key, title in (("spectra_by_activation", "Spectra by activation"),
                       ("spectra_by_encoding", "Spectra by encoding"),
                       ("multigrid_split", "Multigrid: total / no-grid / grid"),
                       ("reconstructions", "Reconstructions"), ("curves", "Training curves")):
        if key in figures:
            lines += [f"## {title}", "", f"![{key}]({Path(figures[key]).name})", ""]
    if result.errors:
        lines += ["## Failed runs", ""] + [f"- {k}: {v}" for k, v in result.errors.items()] + [""]
    return files.write_text(out / "report.md", "\n".join(lines))


def run_activation_study(*, preset: str = "quick", image: str = "chelsea", seed: int = 0,
                         out: str | Path | None = None, activations: Sequence[str] | None = None,
                         size: int | None = None, epochs: int | None = None, lr: float | None = None,
                         lr_fraction: float | None = None, ntk_points: int | None = None,
                         hidden: Sequence[int] | None = None, progress: bool = True, log=print) -> StudyResult:
    """The whole study: load the image, train (or resume) every run, write results, figures, report.

    Args:
      preset: ``"quick"`` or ``"paper"`` (:data:`ntkgrid.presets.ACTIVATION_STUDY`).
      image: a bundled photo's name (scikit-image) or an image file.
      seed: initialisation and minibatch order.
      out: the study folder (default ``runs/activations/<image>``).
      activations: variants (default :data:`ntkgrid.presets.ACTIVATION_DEFAULTS`).
      size: image side in pixels (default: the preset's); scales the grid as Table 3 does.
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
    variants = list(activations or presets.ACTIVATION_DEFAULTS)
    runs = build_runs(preset, variants, seed=seed, epochs=epochs, lr=lr, lr_fraction=lr_fraction,
                      ntk_points=ntk_points, hidden=hidden)
    side = int(size or presets.ACTIVATION_STUDY[preset]["size"])
    if side < 11:
        raise ValueError(f"image size must be >= 11 pixels (MS-SSIM), got {side}")
    if size is not None:  # Table 3's coarse grid scaled to the image, as the presets do
        grid = presets.scaled_grid(presets.ACTIVATION_STUDY["paper"]["configs"]["multigrid"], side).encoding
        runs = [StudyRun(r.name, r.config.replace(encoding=grid) if r.config.encoding.kind == "multigrid"
                         else r.config, r.lr_fraction, r.fields) for r in runs]
    if ntk_points is not None and ntk_points > side * side:
        raise ValueError(f"ntk_points {ntk_points} exceeds the {side}x{side} pixels of the image")
    src, img = sweep.resolve_image(image, side)
    out = Path(out) if out is not None else Path("runs/activations") / files.safe_name(src.image_id)
    command = "python -m experiments.activations " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    log(f"activations: {src.source} at {side}x{side} px, preset {preset}, {len(runs)} runs "
        f"({', '.join(variants)} x {', '.join(ENCODINGS)}), output {out}")
    result = run_study("activations", img, runs, out,
                       identity={"image": src.source, "size": side, "seed": seed, "preset": preset,
                                 **({} if hidden is None else {"hidden": list(hidden)})},
                       header={"command": command, "activations": variants, "encodings": list(ENCODINGS)},
                       extra_record=theorem1_fields, log=log, progress=progress)
    figs = _figures(out, img, result, variants)
    write_report(out, result, image_name=src.source, image=img, preset=preset, variants=variants, command=command,
                 figures=figs)
    log(f"report: {out / 'report.md'}")
    return result
