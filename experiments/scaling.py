"""The scaling study on one image (the paper's Table 3, Figs. 3, 4 and 6).

    python -m experiments.scaling [--image NAME|PATH] [--configs ...] [--preset quick|paper]
        [--seed 0] [--out runs/scaling] [--runs-dir DIR] [--size PX] [--epochs N]
        [--batch-size N] [--lr X|critical:F] [--ntk-points N] [--no-progress]

Trains baseline, fourier_low/mid/high (L = 4, 8, 16) and multigrid_coarse/fine (one grid
of 100 / 200 nodes per side; 50 / 100 in the quick preset's 64 px images) on one image
(default: scikit-image's ``chelsea``, a cat, standing in for the paper's dog). ``--size``
also scales the grids (``x * size / 128``) so the coarse grid stays coarser and the fine
grid finer than the image. Writes to
``--out``: ``regressed.png`` (ground truth and every prediction, Fig. 3), ``table.md`` /
``table.csv`` / ``table.json`` (PSNR and MS-SSIM beside the paper's), ``spectra.png`` /
``.json`` (three panels: baseline vs Fourier, baseline vs multigrid, fourier_high vs
multigrid; dashed middle, solid end; Fig. 4), ``curves.png`` / ``.json`` (full-image MSE and
PSNR at regular epochs, from each run's training curve, Fig. 6), ``images/<config>.png`` and
``report.md``. Training runs live in
``--runs-dir`` (default ``<out>/runs``) and are resumed or reused from there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from experiments import (
    add_run_args,
    apply_lr_rule,
    check_overrides,
    configs_for,
    fail,
    failed_runs_section,
    image_side,
    log,
)
from ntkgrid import files

CONFIGS = ("baseline", "fourier_low", "fourier_mid", "fourier_high", "multigrid_coarse", "multigrid_fine")
DEFAULT_IMAGE = "chelsea"

#: The three panels of the paper's Fig. 4.
PANELS = (
    ("baseline vs Fourier features", ("baseline", "fourier_low", "fourier_mid", "fourier_high")),
    ("baseline vs multigrid", ("baseline", "multigrid_coarse", "multigrid_fine")),
    ("fourier_high vs multigrid", ("fourier_high", "multigrid_coarse", "multigrid_fine")),
)


def add_image_args(ap: argparse.ArgumentParser, *, name: str, configs=CONFIGS, critical_lr: bool = False) -> None:
    """Options shared by the single-image experiments (scaling, ntk_evolution, inspect_grid)."""
    ap.add_argument("--image", default=DEFAULT_IMAGE,
                    help=f"a bundled photo's name or an image file (default: {DEFAULT_IMAGE})")
    ap.add_argument("--configs", nargs="+", default=list(configs), choices=CONFIGS,
                    help="which Table 3 configurations to train (default: %(default)s)")
    ap.add_argument("--runs-dir", type=Path, default=None,
                    help="where the training runs live (default: <out>/runs); point it at another "
                         "experiment's runs (e.g. runs/scaling/runs) to reuse them")
    add_run_args(ap, name=name, critical_lr=critical_lr)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.scaling", description=__doc__.split("\n\n")[0])
    add_image_args(ap, name="scaling", critical_lr=True)
    return ap


def prepare(args, name: str):
    """Validate the arguments, load the image, build the configs.

    Returns ``(out, runs_dir, src, image, configs)``; raises ``ValueError`` /
    :class:`ntkgrid.data.DataError` with a message for the user.
    """
    from ntkgrid import presets, sweep

    check_overrides(args)
    configs = configs_for(presets.SCALING, args.preset, args.configs, args)
    size = image_side(args, args.preset)
    if args.size is not None:  # keep the paper's coarse < pixels per side < fine
        for n, c in configs.items():
            if c.encoding.kind == "multigrid":
                g = presets.scaled_grid(presets.SCALING[n], size).encoding
                configs[n] = c.replace(encoding={"min_res": g.min_res, "max_res": g.max_res})
    src, image = sweep.resolve_image(args.image, size)
    configs = apply_lr_rule(configs, args, image, log=log)
    out = args.out or Path(f"runs/{name}")
    runs_dir = args.runs_dir or out / "runs"
    return out, runs_dir, src, image, configs


def train_all(args, name: str):
    """:func:`prepare` then train (or reload) every config; ``(ctx dict, exit code or None)``.

    The exit code is 2 for bad arguments or input and 1 when every run failed."""
    from ntkgrid import sweep
    from ntkgrid.data import DataError

    try:
        out, runs_dir, src, image, configs = prepare(args, name)
    except (ValueError, KeyError, DataError) as err:
        return None, fail(str(err).strip("'\""))
    log(f"{name}: {src.source} at {image.shape[0]}x{image.shape[1]} px, preset {args.preset}, "
        f"configs {', '.join(configs)}, output {out}")
    t0 = time.perf_counter()
    runs = sweep.run_configs(image, configs, runs_dir, log=log, progress=not args.no_progress)
    errors = runs.pop("_errors", {})
    ctx = {"out": Path(out), "runs_dir": Path(runs_dir), "src": src, "image": image, "configs": configs,
           "runs": runs, "errors": errors, "seconds": time.perf_counter() - t0}
    if not runs:
        return ctx, fail("every run failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items()), 1)
    return ctx, None


def _spectrum_curves(runs, names, checkpoints=("middle", "end")):
    from ntkgrid.sweep import middle_and_end

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


def write_outputs(ctx: dict) -> dict:
    """Figures, tables and report of the scaling study; returns the table rows."""
    from ntkgrid import plots, presets, sweep
    from ntkgrid.data.images import image_to_dataset
    from ntkgrid.training import predict

    out, runs, image, src = ctx["out"], ctx["runs"], ctx["image"], ctx["src"]
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
    sweep.write_csv(out / "table.csv", rows)
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
              f"- image: {src.source}, {image.shape[0]}x{image.shape[1]} px; runs in `{ctx['runs_dir']}`",
              f"- time for training and measuring all runs in this call: {ctx['seconds']:.0f} s", "",
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
    report += failed_runs_section(ctx["errors"])
    files.write_text(out / "report.md", "\n".join(report))
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    """Run the scaling study; 0 on success, 1 if a run failed, 2 for bad arguments/input."""
    args = build_parser().parse_args(argv)
    ctx, code = train_all(args, "scaling")
    if code is not None:
        return code
    write_outputs(ctx)
    log((ctx["out"] / "table.md").read_text())
    log(f"report: {ctx['out'] / 'report.md'}")
    return 1 if ctx["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
