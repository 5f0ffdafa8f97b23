"""How the empirical NTK changes during training: the paper's Appendix B, Fig. 11
(``python -m experiments.ntk_evolution``).

Trains the scaling study's configurations (Table 3) on one image and compares the kernel
at the start (epoch 0), the middle and the end of training: spectra at epoch 0 (dotted)
and at the end (solid) in ``spectra.png`` / ``.json``, and the relative Frobenius change
``||K1 - K0||_F / ||K0||_F`` (:func:`ntkgrid.spectrum.kernel_change`) of 0 -> end,
0 -> middle and middle -> end in ``kernel_change.png`` / ``.json``, with ``report.md``.
The kernels are recomputed in float64 from each run's checkpoints on its spectrum points.
Pointing ``runs_dir`` at the scaling study's runs reuses them (same settings).

Predicted against measured training (the paper's Eqs. 5-7): from the kernel on the whole
training image at epoch 0 and at the middle of training, the linearised network replayed
through the run's own minibatches (:func:`ntkgrid.theory.replay_training`) and SGD's expected
step (:func:`ntkgrid.theory.predict_training`), against the full-image loss at every later
epoch the run measured (``prediction_<config>.png`` / ``.json``: loss curves and the
residual's energy per eigenvalue band), with the relative errors and the kernel-motion share
in ``report.md`` (:func:`ntkgrid.evidence.predicted_vs_measured`).
"""

from __future__ import annotations

from ntkgrid import files, plots
from ntkgrid.analysis import recompute_kernels
from ntkgrid.data import DataError
from ntkgrid.data.images import image_to_dataset
from ntkgrid.evidence import predicted_vs_measured
from ntkgrid.spectrum import kernel_change
from ntkgrid.studies.image_runs import (
    ImageRuns,
    ImageStudyOptions,
    ImageStudyResult,
    Log,
    StudyAnalysisError,
    failed_runs_section,
    run_image_study,
)
from ntkgrid.sweep import SweepError, middle_and_end
from ntkgrid.training.runfolder import RunFolderError

__all__ = ["analyse", "run_ntk_evolution"]


def analyse(ctx: ImageRuns) -> dict:
    """Kernel changes, spectra and predicted-against-measured training per config; writes the
    figures, ``evolution.json`` and ``report.md`` under ``ctx.out``.

    Args:
      ctx: the trained runs (:func:`ntkgrid.studies.image_runs.train_all`).

    Returns:
      ``{"results": {config: {"epochs", "kernel_change" (relative Frobenius changes, unitless),
      "spectra", "prediction", ...}}, "problems": [one line per config not analysed],
      "table": the markdown table of the kernel changes}``. Raises ``SweepError``,
      ``RunFolderError`` or ``DataError`` for a run folder that cannot be read.
    """
    out, runs = ctx.out, ctx.runs
    out.mkdir(parents=True, exist_ok=True)
    results, curves, problems = {}, [], []
    computed: dict[str, dict] = {}  # {config: {checkpoint: (Spectrum, traced kernel)}} reused by the predictions
    for n, r in runs.items():
        cps = middle_and_end(r.history, r.config.epochs)
        if cps["start"] is None or cps["end"] is None or cps["end"] == 0:
            problems.append(f"{n}: needs measurements at epoch 0 and after training (has "
                            f"{sorted(h['epoch'] for h in r.history)})")
            continue
        path = r.out_dir
        kernels, spectra = {}, {}
        for cp in ("start", "middle", "end"):
            if cps[cp] is None:
                continue
            spectra[cp], kernels[cp] = recompute_kernels(r.config, path, cps[cp])
        computed[n] = {cp: (spectra[cp], kernels[cp]) for cp in ("start", "middle") if cp in kernels}
        change = {"start->end": kernel_change(kernels["start"], kernels["end"])}
        if "middle" in kernels:
            change["start->middle"] = kernel_change(kernels["start"], kernels["middle"])
            change["middle->end"] = kernel_change(kernels["middle"], kernels["end"])
        results[n] = {"epochs": cps, "kernel_change": change, "diverged": r.diverged,
                      "spectra": {cp: {"lambda_max": s.lambda_max, "lambda_min": s.lambda_min, "floor": s.floor,
                                       "n_above_floor": s.n_above_floor} for cp, s in spectra.items()}}
        for cp in ("start", "end"):
            s = spectra[cp]
            curves.append({"name": n, "values": s.eigenvalues, "checkpoint": cp, "floor": s.floor,
                           "label": f"{n} (epoch {cps[cp]})"})
    if curves:
        plots.spectra_figure(out / "spectra", [("NTK spectra: dotted = epoch 0, solid = end of training", curves)])
    if results:
        plots.bar_figure(out / "kernel_change", {n: v["kernel_change"] for n, v in results.items()},
                         ylabel="||K1 - K0||_F / ||K0||_F", title="relative change of the NTK during training")
    notes: list[str] = []
    predictions = _predictions(ctx, runs, problems, notes, computed)
    for n, v in predictions.items():
        results.setdefault(n, {})["prediction"] = [
            {k: p[k] for k in ("from_epoch", "end_epoch", "max_relative_error", "final_relative_error",
                               "expected_max_relative_error", "expected_final_relative_error", "kernel_motion_share",
                               "replay_kernel", "expected_kernel", "stable", "expected_stable",
                               "critical_learning_rate")} for p in v]
    files.write_json(out / "evolution.json", {"image": ctx.source.source, "configs": results,
                                                        "problems": problems})
    header = ["config", "epochs (start, middle, end)", "0 -> end", "0 -> middle", "middle -> end",
              "λ_min at 0", "λ_min at end"]
    body = [[n, f"{v['epochs']['start']}, {v['epochs']['middle']}, {v['epochs']['end']}",
             v["kernel_change"]["start->end"], v["kernel_change"].get("start->middle"),
             v["kernel_change"].get("middle->end"), v["spectra"]["start"]["lambda_min"],
             v["spectra"]["end"]["lambda_min"]] for n, v in results.items() if "kernel_change" in v]
    table = files.markdown_table(header, body)
    report = [f"# NTK change during training (Appendix B, Fig. 11) on {ctx.source.source}", "",
              f"- runs in `{ctx.runs_dir}`; kernels recomputed in float64 from the checkpoints", "",
              "Relative Frobenius change ||K1 - K0||_F / ||K0||_F of the traced NTK on the spectrum points:", "",
              table, "![spectra](spectra.png)", "", "![kernel change](kernel_change.png)", ""]
    if predictions:
        report += ["## Predicted against measured training (Eqs. 5-7)", "",
                   "From the float64 NTK Θ on every training pixel at a checkpoint, frozen from then on, two "
                   "predictions of the full-image loss (g = 2/(B O) for the mean squared error; see "
                   "ntkgrid.theory). **Replay**: the linearised network through the run's own minibatch sequence "
                   "(the same per-epoch permutations, from its seed), r ← r − η g Θ[:, B] r_B: exact for a model "
                   "linear in its parameters, so what remains between replay and measurement is the kernel's "
                   "motion alone. **Expected step**: r ← (I − η g (B/N) Θ) r, SGD's expectation over i.i.d. "
                   "minibatches (an approximation in the sampling too; training reshuffles once per epoch). "
                   "'kernel' says whether the full output-block kernel ((N O)×(N O)) or the traced one (outputs "
                   "assumed independent; used where the full one does not fit) was used. 'rel. error': "
                   "|predicted − measured| / measured (max over the later measured epochs, and at the last). "
                   "'kernel-motion share' = |replay − measured| / |expected − measured| at the last epoch: the "
                   "share of the expected-step error left once the minibatch order is exact. η_crit is "
                   "ntkgrid.stability.critical_lr at the checkpoint: 2 / (g λ_max(Θ_B)) on the full minibatch "
                   "kernel (median over 4 minibatches).", ""]

        def err(p, key):
            return p[key] if p["stable"] else "diverges (η > η_crit)"

        body = [[n, str(p["from_epoch"]), str(p["end_epoch"]), f"{p['replay_kernel']} / {p['expected_kernel']}",
                 err(p, "max_relative_error"), err(p, "final_relative_error"),
                 err(p, "expected_final_relative_error"), err(p, "kernel_motion_share"), p["critical_learning_rate"],
                 ctx.configs[n].learning_rate] for n, v in predictions.items() for p in v]
        report += [files.markdown_table(["config", "from epoch", "to epoch", "kernel (replay / expected)",
                                         "replay max rel. error", "replay final rel. error",
                                         "expected-step final rel. error", "kernel-motion share", "η_crit",
                                         "η used"], body),
                   "Where η exceeds η_crit at a checkpoint the linear prediction diverges; a run that still trains "
                   "has left the linear regime (its largest eigenvalues fall early in training: compare λ_max at "
                   "epoch 0 and later in spectra.json).", ""]
        report += [f"![prediction {n}](prediction_{n}.png)" for n in predictions] + [""]
    report += [f"- {x}" for x in notes] + ([""] if notes else [])
    if problems:
        report += ["## Not analysed", ""] + [f"- {p}" for p in problems] + [""]
    report += failed_runs_section(ctx.errors)
    files.write_text(out / "report.md", "\n".join(report))
    return {"results": results, "problems": problems, "table": table}


def _predictions(ctx: ImageRuns, runs: dict, problems: list[str], notes: list[str],
                 computed: dict | None = None) -> dict:
    """Predicted vs measured loss per config from epoch 0 and from the middle checkpoint
    (``computed``: kernels already recomputed, ``{config: {checkpoint: (Spectrum, kernel)}}``)."""
    coords, values = image_to_dataset(ctx.image)
    out = {}
    for n, r in runs.items():
        if r.diverged:
            continue
        if r.options.get("ntk_selection") != "all":
            notes.append(f"{n}: no prediction: its kernels are on {r.options.get('ntk_points')} "
                         f"({r.options.get('ntk_selection')}) of the {r.options.get('n_points')} training points; "
                         "the prediction needs them all (leave --ntk-points out)")
            continue
        cps = middle_and_end(r.history, r.config.epochs)
        preds = []
        for cp in ("start", "middle"):
            if cps[cp] is None:
                continue
            try:
                preds.append(predicted_vs_measured(r, coords, values, cps[cp],
                                                   traced=(computed or {}).get(n, {}).get(cp)))
            except (ValueError, SweepError, RunFolderError) as err:
                problems.append(f"{n}: no prediction from epoch {cps[cp]}: {err}")
        if preds:
            plots.prediction_figure(ctx.out / f"prediction_{n}", n, preds)
            out[n] = preds
    return out


def _analyse_or_fail(ctx: ImageRuns) -> dict:
    try:
        return analyse(ctx)
    except (SweepError, RunFolderError, DataError) as err:  # a run folder damaged between training and analysis
        raise StudyAnalysisError(f"analysis failed: {err}") from err


def run_ntk_evolution(options: ImageStudyOptions, *, log: Log = print, progress: bool = True) -> ImageStudyResult:
    """The kernel-motion study: train (or reuse) the runs of ``options``, then :func:`analyse`.

    Args:
      options: the image, configs, preset and overrides (``ntk_points=0`` leaves nothing to analyse).
      log: where progress lines go.
      progress: per-epoch progress bars.

    Returns:
      :class:`~ntkgrid.studies.image_runs.ImageStudyResult` (``problems``: the configs not
      analysed). Raises :class:`~ntkgrid.studies.image_runs.StudyInputError` for an unusable
      option or image and :class:`~ntkgrid.studies.image_runs.StudyAnalysisError` for a run
      folder that cannot be read after training.
    """
    return run_image_study(_analyse_or_fail, options, "ntk_evolution", log=log, progress=progress)
