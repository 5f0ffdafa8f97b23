"""Where the multigrid encoding's spectrum comes from (the paper's Fig. 2 and Theorem 1).

    python -m experiments.grid_ablation [--sweep-dir DIR] [--data-root DIR]
        [--num-synsets N] [--preset quick|paper] [--seed 0] [--out runs/grid_ablation]
        [--size PX] [--epochs N] [--batch-size N] [--lr X] [--ntk-points N] [--no-progress]

Splits the NTK of the multigrid network into its grid term ``K_grid`` (the gradients
w.r.t. the grid nodes) and the rest, ``K_no_grid = K_total - K_grid`` (the MLP's
parameters: the paper's "MPE (No Grid)"), and averages their spectra over images beside
baseline and fourier, at the middle (dashed) and the end (solid) of training
(``ablation.png`` / ``.json``, Fig. 2), plus every parameter group of the multigrid
network: the MLP, the whole grid and each level (``levels.png`` / ``.json``).

Theorem 1 as numbers (``theorem.json``, ``report.md``): for each image and checkpoint,
:func:`ntkgrid.spectrum.weyl_bound` checks ``lambda_i(K_no_grid) + lambda_min(K_grid) <=
lambda_i(K_total)`` on kernels recomputed in float64 from the checkpoints, and
:func:`ntkgrid.spectrum.baseline_below` says for how many indices the baseline network's
eigenvalues lie below the multigrid network's (total and no-grid).

The runs are those of the ImageNet sweep (Table 2 settings): ``--sweep-dir`` reads an
existing ``experiments.imagenet_sweep`` output folder; otherwise the sweep is run (or
resumed) in ``<out>/sweep`` with the same options as ``experiments.imagenet_sweep``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from experiments import add_run_args, check_overrides, configs_for, fail, image_side, log

ENCODINGS = ("baseline", "fourier", "multigrid")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.grid_ablation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep-dir", type=Path, default=None,
                    help="analyse this experiments.imagenet_sweep output folder instead of training")
    ap.add_argument("--data-root", type=Path, default=None,
                    help="ImageNet-style folder <root>/<wnid>/<image> (default: scikit-image's bundled photos)")
    ap.add_argument("--num-synsets", type=int, default=100, help="synsets to draw, one image each")
    add_run_args(ap, name="grid_ablation", default_preset=None)
    return ap


def _run_sweep(args, out: Path) -> Path | int:
    from ntkgrid import presets, sweep
    from ntkgrid.data import DataError

    preset = args.preset or ("paper" if args.data_root is not None else "quick")
    try:
        check_overrides(args)
        configs = configs_for(presets.IMAGENET, preset, ENCODINGS, args)
        sources, warns = sweep.select_sources(args.data_root, args.num_synsets, args.seed)
    except DataError as err:
        return fail(f"{err} (expected an ImageNet-style folder <root>/<wnid>/<image>)")
    except (ValueError, KeyError) as err:
        return fail(str(err))
    manifest = {"title": "ImageNet sweep for the grid ablation (Fig. 2)", "table": "imagenet", "preset": preset,
                "seed": args.seed, "data_root": None if args.data_root is None else str(args.data_root.resolve()),
                "num_images": args.num_synsets, "selection_warnings": warns}
    sweep_dir = out / "sweep"
    try:
        sweep.run_sweep(sweep_dir, sources, configs, size=image_side(args, preset), manifest=manifest, log=log,
                        progress=not args.no_progress)
    except sweep.SweepError as err:
        return fail(str(err))
    return sweep_dir


def _log_ratio(a: np.ndarray, b: np.ndarray, fa: float, fb: float) -> float | None:
    """Median over indices of log10(a / b) where both are above their floors."""
    ok = (a > fa) & (b > fb)
    return float(np.median(np.log10(a[ok] / b[ok]))) if ok.any() else None


def analyse(sweep_dir: Path, out: Path) -> dict:
    """Mean group spectra, Weyl checks and baseline comparisons; writes figures, JSON, report."""
    from ntkgrid import plots, sweep
    from ntkgrid.config import TrainConfig
    from ntkgrid.spectrum import baseline_below, weyl_bound

    data = sweep.load_sweep(sweep_dir)
    records = [r for r in data["records"] if "multigrid" in r["runs"]]
    if not records:
        raise sweep.SweepError(f"{sweep_dir}: no image has a multigrid run to analyse")
    mg_cfg = TrainConfig.from_dict(data["manifest"]["configs"]["multigrid"])
    levels = [f"encoding/level_{i}" for i in range(mg_cfg.encoding.num_levels)]
    groups = ["total", "no_grid", "grid", "mlp", *levels]
    names = [n for n in ENCODINGS if n in data["manifest"]["configs"]]
    means = sweep.mean_spectra(data["records"], names, groups=groups)

    curves = sweep.spectra_curves(means, [n for n in ("baseline", "fourier") if n in names])
    curves += sweep.spectra_curves(means, ["multigrid"])
    for c in sweep.spectra_curves(means, ["multigrid"], group="no_grid", label_suffix=" no grid"):
        curves.append({**c, "name": "multigrid_no_grid"})
    out.mkdir(parents=True, exist_ok=True)
    xlabel = f"eigenvalue index (resampled to {sweep.SPECTRUM_LENGTH})"
    plots.spectra_figure(out / "ablation", [("Mean NTK spectra: multigrid with and without K_grid", curves)],
                         xlabel=xlabel, data={"sweep_dir": str(sweep_dir), "means": {n: means[n] for n in names}})
    level_panels = []
    for cp in ("middle", "end"):
        cs = []
        for g in (*levels, "grid", "mlp", "total"):  # total last: it lies on top of the grid kernel
            m = means.get("multigrid", {}).get(g, {}).get(cp)
            if m is None:
                continue
            label = {"total": "total", "mlp": "MLP (= no grid)", "grid": "grid (all levels)"}.get(g, g.split("/")[-1])
            cs.append({"name": "multigrid", "color": _group_color(g, len(levels)), "values": m["mean"],
                       "checkpoint": "end", "floor": m["floor"], "label": f"{label} (n={m['count']})"})
        if cs:
            level_panels.append((f"multigrid NTK by parameter group, {cp} of training", cs))
    if level_panels:
        plots.spectra_figure(out / "levels", level_panels, xlabel=xlabel,
                             data={"groups": {g: means["multigrid"].get(g) for g in groups}})

    per_image, failures = [], []
    for r in records:
        mg = r["runs"]["multigrid"]
        entry = {"image_id": r["image_id"], "checkpoints": {}}
        for cp in ("middle", "end"):
            epoch = mg["checkpoints"].get(cp)
            if epoch is None or mg.get("diverged"):
                continue
            try:
                spectra, kernels = sweep.recompute_kernels(mg_cfg, mg["run_path"], epoch, groups=True)
            except sweep.SweepError as err:
                failures.append(str(err))
                continue
            wb = weyl_bound(kernels["no_grid"], kernels["grid"], kernels["total"])
            res = {"epoch": epoch, "weyl_holds": wb["holds"], "max_violation": wb["max_violation"],
                   "tolerance": wb["tolerance"], "lambda_min_grid": wb["lambda_min_grid"],
                   "min_margin": float(np.min(wb["margin"]))}
            base = r["runs"].get("baseline")
            if base is not None and not base.get("diverged") and base["checkpoints"].get(cp) is not None:
                bspec = sweep.run_spectra(base["run_path"], base["checkpoints"][cp])
                if bspec is not None:
                    b = bspec["total"]
                    for key in ("total", "no_grid"):
                        bb = baseline_below(b, spectra[key])
                        res[f"baseline_below_{key}"] = {"fraction": bb["fraction"], "n_compared": bb["n_compared"],
                                                        "first_above": bb["first_above"]}
                        res[f"log10_ratio_{key}_over_baseline"] = _log_ratio(
                            spectra[key].eigenvalues[: b.eigenvalues.size], b.eigenvalues[: spectra[key].eigenvalues.size],
                            spectra[key].floor, b.floor)
            entry["checkpoints"][cp] = res
        per_image.append(entry)

    summary = {}
    for cp in ("middle", "end"):
        rows = [e["checkpoints"][cp] for e in per_image if cp in e["checkpoints"]]
        if not rows:
            continue
        s = {"images": len(rows), "weyl_holds": sum(x["weyl_holds"] for x in rows),
             "max_violation": max(x["max_violation"] for x in rows),
             "lambda_min_grid_median": float(np.median([x["lambda_min_grid"] for x in rows]))}
        for key in ("total", "no_grid"):
            fr = [x[f"baseline_below_{key}"]["fraction"] for x in rows if f"baseline_below_{key}" in x]
            lr = [x[f"log10_ratio_{key}_over_baseline"] for x in rows
                  if x.get(f"log10_ratio_{key}_over_baseline") is not None]
            s[f"baseline_below_{key}_fraction_mean"] = float(np.mean(fr)) if fr else None
            s[f"log10_ratio_{key}_over_baseline_median"] = float(np.median(lr)) if lr else None
        summary[cp] = s
    sweep.write_json(out / "theorem.json", {"sweep_dir": str(sweep_dir), "summary": summary, "images": per_image,
                                            "problems": failures})
    report = _report(sweep_dir, data, summary, means, names, levels, failures)
    sweep.write_text(out / "report.md", report)
    return {"summary": summary, "per_image": per_image, "problems": failures, "report": report}


def _group_color(group: str, n_levels: int):
    """Colour of a parameter group in the levels figure: total red, MLP grey, grid purple,
    levels along viridis (coarse = dark)."""
    from matplotlib import colormaps

    fixed = {"total": "#d62728", "mlp": "#7f7f7f", "grid": "#9467bd"}
    if group in fixed:
        return fixed[group]
    level = int(group.rsplit("_", 1)[-1])
    return colormaps["viridis"](0.15 + 0.7 * level / max(1, n_levels - 1))


def _report(sweep_dir, data, summary, means, names, levels, failures) -> str:
    from ntkgrid import sweep

    lines = ["# Grid ablation (Fig. 2, Theorem 1)", "",
             f"- runs: `{sweep_dir}` ({len(data['records'])} images, preset `{data['manifest'].get('preset')}`, "
             f"{data['manifest'].get('size')} px)", "",
             "![ablation](ablation.png)", "",
             "Dashed: middle of training, solid: end. `multigrid_no_grid` is K_total - K_grid (the MLP's "
             "parameters only), the paper's \"MPE (No Grid)\".", ""]
    body = []
    for n in names:
        for g in ("total", "no_grid"):
            for cp in ("middle", "end"):
                m = means.get(n, {}).get(g, {}).get(cp)
                if m is not None:
                    body.append([n if g == "total" else f"{n} no grid", cp, str(m["count"]), float(m["mean"][0]),
                                 float(np.median(m["mean"])), float(m["mean"][-1]), float(m["floor"])])
    lines += [sweep.markdown_table(["spectrum", "checkpoint", "images", "mean λ_max", "median of mean",
                                    "mean λ_min", "mean floor"], body)]
    lines += ["## Theorem 1 and the baseline", "",
              "weyl: images where λ_i(K_no_grid) + λ_min(K_grid) <= λ_i(K_total) holds for every i (within the "
              "kernels' floors). below: mean fraction of indices (where either is above its floor) at which the "
              "baseline network's eigenvalue is below the multigrid network's. log10 ratio: median over images of "
              "the median over indices (both above floor) of log10(λ_i(multigrid) / λ_i(baseline)).", ""]
    body = [[cp, f"{s['weyl_holds']} / {s['images']}", s["max_violation"], s["lambda_min_grid_median"],
             s["baseline_below_total_fraction_mean"], s["baseline_below_no_grid_fraction_mean"],
             s["log10_ratio_total_over_baseline_median"], s["log10_ratio_no_grid_over_baseline_median"]]
            for cp, s in summary.items()]
    lines += [sweep.markdown_table(["checkpoint", "weyl holds", "max violation", "median λ_min(K_grid)",
                                    "baseline below total", "baseline below no-grid", "log10 total/baseline",
                                    "log10 no-grid/baseline"], body)]
    lines += ["## Parameter groups of the multigrid network", "", "![levels](levels.png)", "",
              "Mean spectra of the kernel of each parameter group: the MLP, the whole grid and each level "
              f"({', '.join(levels)}). The total kernel is drawn last; where it hides the grid kernel the two "
              "coincide.", ""]
    if failures:
        lines += ["## Problems", ""] + [f"- {f}" for f in failures] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the ablation; 0 on success, 1 if some analysis failed, 2 for bad arguments or input."""
    from ntkgrid import sweep

    args = build_parser().parse_args(argv)
    out = args.out or Path("runs/grid_ablation")
    t0 = time.perf_counter()
    if args.sweep_dir is not None:
        sweep_dir = args.sweep_dir
    else:
        sweep_dir = _run_sweep(args, out)
        if isinstance(sweep_dir, int):
            return sweep_dir
    try:
        res = analyse(Path(sweep_dir), out)
    except sweep.SweepError as err:
        return fail(str(err))
    for cp, s in res["summary"].items():
        log(f"{cp}: Weyl bound holds on {s['weyl_holds']}/{s['images']} images (max violation "
            f"{s['max_violation']:.2e}); baseline below multigrid on {s['baseline_below_total_fraction_mean']} "
            f"of indices, below multigrid-no-grid on {s['baseline_below_no_grid_fraction_mean']}")
    log(f"report: {out / 'report.md'}  ({time.perf_counter() - t0:.0f} s)")
    return 1 if res["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
