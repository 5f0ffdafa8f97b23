"""The scaling study on one image: the paper's Table 3, Figs. 3, 4 and 6
(``python -m experiments.scaling``).

Trains baseline, fourier_low/mid/high (L = 4, 8, 16) and multigrid_coarse/fine (one grid
of 100 / 200 nodes per side; 50 / 100 in the quick preset's 64 px images) on one image
(:mod:`ntkgrid.studies.image_runs`), then :func:`write_outputs` writes to the output folder:
``regressed.png`` (ground truth and every prediction, Fig. 3), ``table.md`` / ``table.csv`` /
``table.json`` (PSNR and MS-SSIM beside the paper's), ``spectra.png`` / ``.json`` (three
panels: baseline vs Fourier, baseline vs multigrid, fourier_high vs multigrid; dashed middle,
solid end; Fig. 4), ``curves.png`` / ``.json`` (full-image MSE and PSNR at regular epochs, from
each run's training curve, Fig. 6), ``images/<config>.png`` and ``report.md``.
"""

from __future__ import annotations

import numpy as np

from ntkgrid import files, plots, presets
from ntkgrid.data.images import image_to_dataset
from ntkgrid.studies.image_runs import (
    ImageRuns,
    ImageStudyOptions,
    ImageStudyResult,
    Log,
    failed_runs_section,
    run_image_study,
)
from ntkgrid.sweep import middle_and_end, write_csv
from ntkgrid.training import predict

__all__ = ["PANELS", "run_scaling", "write_outputs"]

#: The three panels of the paper's Fig. 4: ``(title, configs)``.
PANELS = (
    ("baseline vs Fourier features", ("baseline", "fourier_low", "fourier_mid", "fourier_high")),
    ("baseline vs multigrid", ("baseline", "multigrid_coarse", "multigrid_fine")),
    ("fourier_high vs multigrid", ("fourier_high", "multigrid_coarse", "multigrid_fine")),
)


def _spectrum_curves(runs, names, checkpoints=("middle", "end")):
    curves = []
    for n in names:
        r = runs.get(n)
        if r is None:
            continue
        cps = middle_and_end(r.history, r.config.epochs)
        by_epoch = {h["epoch"]: h for h in r.history}
        for cp in checkpoints:
            e = cps.get(cp)
            spec = None if e is None else by_epoch[e].get("spectrum")
            if spec is None:
                continue
            note = f", diverged at epoch {r.diverged_epoch}" if r.diverged else ""
            curves.append({"name": n, "values": spec.eigenvalues, "checkpoint": cp, "floor": spec.floor,
                           "label": f"{n} ({cp}, epoch {e}{note})", "epoch": e, "n_above_floor": spec.n_above_floor})
    return curves


def write_outputs(ctx: ImageRuns) -> dict:
    """Figures, tables and report of the scaling study (the files listed in the module docstring,
    under ``ctx.out``).

    Args:
      ctx: the trained runs (:func:`ntkgrid.studies.image_runs.train_all`).

    Returns:
      ``{"rows": [one dict per run: config, encoding, lr, epochs, batch_size, psnr (dB), ms_ssim,
      paper_psnr, paper_ms_ssim, diverged, ...], "table": the markdown table of table.md}``.
    """
    out, runs, image, src = ctx.out, ctx.runs, ctx.image, ctx.source
    out.mkdir(parents=True, exist_ok=True)
    paper = presets.PAPER_PSNR["scaling"]
    rows, panels = [], [("ground truth", image)]
    for n, r in runs.items():
        f = r.final
        coords, _ = image_to_dataset(image, pixels=r.config.pixels)
        pred = np.clip(predict(r.config, r.params, coords).reshape(image.shape), 0.0, 1.0)
        plots.image_grid_figure(out / "images" / n, [(n, pred)], ncols=1)
        title = f"{n}\nPSNR {files.fmt(f.get('psnr'))} dB, MS-SSIM {files.fmt(f.get('ms_ssim'), 3)}"
        if r.diverged:
            title += f"\n(diverged at epoch {r.diverged_epoch})"
        panels.append((title, pred))
        pp = paper.get(n, (None, None))
        rows.append({"config": n, "encoding": r.config.encoding.describe(), "lr": r.config.learning_rate,
                     "lr_fraction": r.config.lr_fraction,
                     "epochs": r.config.epochs, "batch_size": r.config.batch_size, "psnr": f.get("psnr"),
                     "ms_ssim": f.get("ms_ssim"), "ms_ssim_scales": f.get("ms_ssim_scales"),
                     "paper_psnr": pp[0], "paper_ms_ssim": pp[1], "diverged": r.diverged,
                     "diverged_epoch": r.diverged_epoch, "final_epoch": f.get("epoch"), "seconds": r.seconds})
    plots.image_grid_figure(out / "regressed", panels, ncols=4, suptitle=f"{src.source}",
                            data={"rows": rows, "image": src.source})
    write_csv(out / "table.csv", rows)
    files.write_json(out / "table.json", {"image": src.source, "rows": rows})
    header = ["config", "parameters", "lr", "epochs", "batch", "PSNR dB", "paper PSNR", "MS-SSIM", "paper MS-SSIM"]
    body = [[r["config"], r["encoding"], files.fmt(r["lr"]), str(r["epochs"]), str(r["batch_size"]),
             files.fmt(r["psnr"]) + (f" (diverged at epoch {r['diverged_epoch']})" if r["diverged"] else ""),
             files.fmt(r["paper_psnr"]), files.fmt(r["ms_ssim"], 3), files.fmt(r["paper_ms_ssim"])]
            for r in rows]
    table_md = files.markdown_table(header, body)
    files.write_text(out / "table.md", table_md)

    spectra_panels = [(title, _spectrum_curves(runs, names)) for title, names in PANELS]
    spectra_panels = [(t, c) for t, c in spectra_panels if c]
    if spectra_panels:
        plots.spectra_figure(out / "spectra", spectra_panels,
                             suptitle="NTK spectra (dashed: middle of training, solid: end)")
    curves_loss, curves_psnr = [], []
    for n, r in runs.items():  # Fig. 6: full-image MSE and PSNR at regular epochs (RunResult.curve)
        pts = [c for c in r.curve if c.get("loss") is not None]
        if not pts:
            continue
        curves_loss.append({"name": n, "x": [c["epoch"] for c in pts], "y": [c["loss"] for c in pts]})
        pp = [c for c in pts if c.get("psnr") is not None]
        curves_psnr.append({"name": n, "x": [c["epoch"] for c in pp], "y": [c["psnr"] for c in pp]})
    if curves_loss:
        plots.curves_figure(out / "curves", [("full-image MSE (unclipped output)", "MSE", curves_loss),
                                             ("full-image PSNR (clipped output)", "dB", curves_psnr)],
                            logy=[True, False])
    report = [f"# Scaling study (Table 3, Figs. 3, 4, 6) on {src.source}", "",
              f"- image: {src.source}, {image.shape[0]}x{image.shape[1]} px; runs in `{ctx.runs_dir}`",
              f"- time for training and measuring all runs in this call: {ctx.seconds:.0f} s", "",
              "## PSNR and MS-SSIM (paper: its Tables 1 and 3)", "", table_md,
              "![regressed images](regressed.png)", ""]
    if spectra_panels:
        report += ["## NTK spectra", "", "![spectra](spectra.png)", "",
                   "Float64 NTK eigenvalues on the run's spectrum points, descending; the dotted line is the "
                   "numerical floor N·eps·λmax.", ""]
        body = [[c["name"], c["checkpoint"], str(c["epoch"]), float(c["values"][0]), float(c["values"][-1]),
                 float(c["floor"]), str(c["n_above_floor"])] for _, cs in spectra_panels for c in cs]
        seen, uniq = set(), []
        for b in body:
            if (b[0], b[1]) not in seen:
                seen.add((b[0], b[1]))
                uniq.append(b)
        report += [files.markdown_table(["config", "checkpoint", "epoch", "λ_max", "λ_min", "floor",
                                         "above floor"], uniq)]
    if curves_loss:
        report += ["## Training curves (Fig. 6)", "", "![curves](curves.png)", "",
                   "MSE and PSNR of the whole image (not the minibatch loss), measured every "
                   "`curve_every` epochs (`curves.json` holds the numbers).", ""]
    report += failed_runs_section(ctx.errors)
    files.write_text(out / "report.md", "\n".join(report))
    return {"rows": rows, "table": table_md}


def run_scaling(options: ImageStudyOptions, *, log: Log = print, progress: bool = True) -> ImageStudyResult:
    """The scaling study: train (or reuse) the runs of ``options`` and write the outputs.

    Args:
      options: the image, configs, preset and overrides.
      log: where progress lines go.
      progress: per-epoch progress bars.

    Returns:
      :class:`~ntkgrid.studies.image_runs.ImageStudyResult` (``analysis``: what
      :func:`write_outputs` returns; None when every run failed). Raises
      :class:`~ntkgrid.studies.image_runs.StudyInputError` for an unusable option or image.
    """
    return run_image_study(write_outputs, options, "scaling", log=log, progress=progress)
