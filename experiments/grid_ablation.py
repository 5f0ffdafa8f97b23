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

Theorem 1 as the paper states it (``theorem.json``, ``report.md``, ``theorem1_ratio.png``):
for each image and checkpoint, the multigrid network's eigenvalues (total and no-grid, on
kernels recomputed in float64 from the checkpoints, on the training pixels) against the
baseline network's, index by index (:func:`ntkgrid.theory.compare_spectra`), per image and
on the mean; plus a control built to fail (the trained multigrid network with its MLP
scaled by :data:`CONTROL_SCALE`), whose verdict must be "does not hold". The Weyl bound
(:func:`ntkgrid.spectrum.weyl_bound`) is reported as a check of the kernel split only.

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
from ntkgrid import files
from ntkgrid.presets import PAPER_ENCODINGS

ENCODINGS = PAPER_ENCODINGS  # the encodings the paper compares (ntkgrid.presets; no JAX imported yet)


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
        check_overrides(args, preset)
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


#: Per-layer scale of the constructed control: every dense layer of the trained multigrid
#: network multiplied by this, which lowers its whole NTK below the baseline's, so the
#: Theorem 1 comparison must say "does not hold" for it (the report shows that it does).
CONTROL_SCALE = 0.3


def analyse(sweep_dir: Path, out: Path, *, control: bool = True) -> dict:
    """Group spectra, Theorem 1 against the baseline, Weyl checks; writes figures, JSON, report."""
    from ntkgrid import analysis, plots, sweep
    from ntkgrid.config import TrainConfig
    from ntkgrid.spectrum import mean_spectrum, offdiag_fraction, weyl_bound
    from ntkgrid.theory import compare_spectra

    data = sweep.load_sweep(sweep_dir)
    records = [r for r in data["records"] if "multigrid" in r["runs"]]
    if not records:
        raise sweep.SweepError(f"{sweep_dir}: no image has a multigrid run to analyse")
    mg_cfg = TrainConfig.from_dict(data["manifest"]["configs"]["multigrid"])
    levels = [f"encoding/level_{i}" for i in range(mg_cfg.encoding.num_levels)]
    groups = ["total", "no_grid", "grid", "mlp", *levels]
    names = [n for n in ENCODINGS if n in data["manifest"]["configs"]]
    means = sweep.mean_spectra(data["records"], [n for n in names if n != "multigrid"])

    per_image, failures = [], []
    found: dict[str, dict[str, list]] = {}  # group -> checkpoint -> [Spectrum] of the multigrid network
    epochs: dict[str, set] = {"middle": set(), "end": set()}
    for i, r in enumerate(records):
        mg = r["runs"]["multigrid"]
        entry = {"image_id": r["image_id"], "checkpoints": {}}
        for cp in ("middle", "end"):
            epoch = mg["checkpoints"].get(cp)
            if epoch is None or mg.get("diverged"):
                continue
            try:
                spectra, kernels = analysis.recompute_kernels(mg_cfg, mg["run_path"], epoch, groups="ops",
                                                           solve=("total", "mlp", "grid", *levels))
            except sweep.SweepError as err:
                failures.append(str(err))
                continue
            epochs[cp].add(int(epoch))
            for g in groups:
                found.setdefault(g, {}).setdefault(cp, []).append(spectra[g])
            wb = weyl_bound(kernels["no_grid"], kernels["grid"], kernels["total"])
            res = {"epoch": epoch, "ntk_points": int(kernels["total"].shape[0]),
                   "grid_offdiag_fraction": offdiag_fraction(kernels["grid"]),
                   "weyl_holds": wb["holds"], "max_violation": wb["max_violation"], "tolerance": wb["tolerance"],
                   "lambda_min_grid": wb["lambda_min_grid"], "min_margin": float(np.min(wb["margin"]))}
            base = r["runs"].get("baseline")
            bspec = None
            if base is not None and not base.get("diverged") and base["checkpoints"].get(cp) is not None:
                bspec = analysis.run_spectra(base["run_path"], base["checkpoints"][cp])
            if bspec is not None:
                for key in ("total", "no_grid"):
                    c = compare_spectra(spectra[key], bspec["total"])
                    res[f"theorem1_{key}"] = {k: v for k, v in c.items() if k != "log10_ratio"}
                if control and i == 0 and cp == "end":
                    ctl, _ = analysis.recompute_kernels(mg_cfg, mg["run_path"], epoch, scale_mlp=CONTROL_SCALE)
                    c = compare_spectra(ctl, bspec["total"])
                    res["control"] = {"scale": CONTROL_SCALE, **{k: v for k, v in c.items() if k != "log10_ratio"}}
            entry["checkpoints"][cp] = res
        per_image.append(entry)
    means["multigrid"] = {g: {cp: ({**mean_spectrum(found[g][cp], sweep.SPECTRUM_LENGTH),
                                    "epochs": sorted(epochs[cp])} if found.get(g, {}).get(cp) else None)
                              for cp in ("middle", "end")} for g in groups if g in found}

    curves = sweep.spectra_curves(means, [n for n in ("baseline", "fourier") if n in names])
    curves += sweep.spectra_curves(means, ["multigrid"])
    for c in sweep.spectra_curves(means, ["multigrid"], group="no_grid", label_suffix=" no grid"):
        curves.append({**c, "name": "multigrid_no_grid"})
    out.mkdir(parents=True, exist_ok=True)
    xlabel = f"eigenvalue index (resampled to {sweep.SPECTRUM_LENGTH})"
    plots.spectra_figure(out / "ablation", [("Mean NTK spectra: multigrid with and without K_grid", curves)],
                         xlabel=xlabel, data={"sweep_dir": str(sweep_dir), "means": {n: means.get(n) for n in names}})
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

    on_mean, ratio_curves = {}, []
    for cp in ("middle", "end"):
        b = means.get("baseline", {}).get("total", {}).get(cp)
        for key in ("total", "no_grid"):
            m = means.get("multigrid", {}).get(key, {}).get(cp)
            if b is None or m is None:
                continue
            from ntkgrid.theory import compare_mean_spectra

            c = compare_mean_spectra(m, b)
            on_mean[f"{key}/{cp}"] = {k: v for k, v in c.items() if k != "log10_ratio"}
            x = np.linspace(0.0, 1.0, c["log10_ratio"].size)
            ratio_curves.append({"name": "multigrid" + ("_no_grid" if key == "no_grid" else ""), "x": x[::10],
                                 "y": c["log10_ratio"][::10], "linestyle": "-" if cp == "end" else "--",
                                 "label": f"multigrid{' no grid' if key == 'no_grid' else ''} / baseline ({cp})"})
    if ratio_curves:
        plots.curves_figure(out / "theorem1_ratio", [("mean MPE / mean baseline eigenvalues", "log10 ratio",
                                                      ratio_curves)], xlabel="normalised eigenvalue index")

    summary = {}
    for cp in ("middle", "end"):
        rows = [e["checkpoints"][cp] for e in per_image if cp in e["checkpoints"]]
        if not rows:
            continue
        s = {"images": len(rows), "weyl_holds": sum(x["weyl_holds"] for x in rows),
             "max_violation": max(x["max_violation"] for x in rows),
             "lambda_min_grid_median": float(np.median([x["lambda_min_grid"] for x in rows])),
             "grid_offdiag_fraction_mean": float(np.mean([x["grid_offdiag_fraction"] for x in rows])),
             "ntk_points": sorted({x["ntk_points"] for x in rows})}
        for key in ("total", "no_grid"):
            t = [x[f"theorem1_{key}"] for x in rows if f"theorem1_{key}" in x]
            s[f"theorem1_{key}"] = {
                "images_holding": sum(bool(v["holds"]) for v in t), "images_compared": len(t),
                "fraction_mean": float(np.mean([v["fraction"] for v in t])) if t else None,
                "median_log10_ratio_median": float(np.median([v["median_log10_ratio"] for v in t])) if t else None,
                "min_log10_ratio_min": float(np.min([v["min_log10_ratio"] for v in t])) if t else None,
                "on_mean": on_mean.get(f"{key}/{cp}")}
        summary[cp] = s
    controls = [e["checkpoints"]["end"]["control"] | {"image_id": e["image_id"]} for e in per_image
                if "control" in e["checkpoints"].get("end", {})]
    files.write_json(out / "theorem.json", {"sweep_dir": str(sweep_dir), "summary": summary, "images": per_image,
                                            "control": controls, "problems": failures})
    report = _report(sweep_dir, data, summary, means, names, levels, failures, controls,
                     ratio_figure=bool(ratio_curves))
    files.write_text(out / "report.md", report)
    return {"summary": summary, "per_image": per_image, "control": controls, "problems": failures, "report": report}


def _group_color(group: str, n_levels: int):
    """Colour of a parameter group in the levels figure: total red, MLP grey, grid purple,
    levels along viridis (coarse = dark)."""
    from matplotlib import colormaps

    fixed = {"total": "#d62728", "mlp": "#7f7f7f", "grid": "#9467bd"}
    if group in fixed:
        return fixed[group]
    level = int(group.rsplit("_", 1)[-1])
    return colormaps["viridis"](0.15 + 0.7 * level / max(1, n_levels - 1))


def _verdict(v) -> str:
    return "-" if v is None else f"**{v['verdict']}** (fraction {v['fraction']:.3f})"


def _report(sweep_dir, data, summary, means, names, levels, failures, controls, ratio_figure) -> str:
    lines = ["# Grid ablation (Fig. 2, Theorem 1)", "",
             f"- runs: `{sweep_dir}` ({len(data['records'])} images, preset `{data['manifest'].get('preset')}`, "
             f"{data['manifest'].get('size')} px)", "",
             "![ablation](ablation.png)", "",
             "Dashed: middle of training, solid: end. `multigrid_no_grid` is K_total - K_grid (the MLP's "
             "parameters only), the paper's \"MPE (No Grid)\". Kernels are on the training set (every pixel, or "
             "a contiguous window where the backend's cap requires one).", ""]
    body = []
    for n in names:
        for g in ("total", "no_grid"):
            for cp in ("middle", "end"):
                m = (means.get(n) or {}).get(g, {}).get(cp)
                if m is not None:
                    body.append([n if g == "total" else f"{n} no grid", cp, str(m["count"]), float(m["mean"][0]),
                                 float(np.median(m["mean"])), float(m["mean"][-1]), float(m["floor"])])
    lines += [files.markdown_table(["spectrum", "checkpoint", "images", "mean λ_max", "median of mean",
                                    "mean λ_min", "mean floor"], body)]
    lines += ["## Theorem 1: the multigrid network against the baseline network", "",
              "Verdict **holds** when λ_i(multigrid) ≥ λ_i(baseline) at every index where either is above its "
              "floor (within the floors), on the same points at the same checkpoint; 'fraction' is the share of "
              "indices where it does. 'on the mean': the same test on the mean spectra over images.", ""]
    body = []
    for cp, s in summary.items():
        for key in ("total", "no_grid"):
            t = s[f"theorem1_{key}"]
            body.append([cp, "multigrid" if key == "total" else "multigrid no grid", str(s["ntk_points"]),
                         f"{s['grid_offdiag_fraction_mean']:.4f}", _verdict(t["on_mean"]),
                         f"{t['images_holding']} / {t['images_compared']}", t["fraction_mean"],
                         t["median_log10_ratio_median"], t["min_log10_ratio_min"]])
    lines += [files.markdown_table(["checkpoint", "kernel", "NTK points", "grid off-diagonal share",
                                    "verdict on the mean", "images holding", "mean fraction",
                                    "median log10 ratio (median)", "min log10 ratio (min)"], body)]
    if ratio_figure:
        lines += ["![ratio](theorem1_ratio.png)", "",
                  "log10 of the mean multigrid (and no-grid) spectrum over the mean baseline spectrum; above 0 the "
                  "claim holds at that index.", ""]
    if controls:
        c = controls[0]
        lines += [f"**Control (constructed to fail).** The trained multigrid network of `{c['image_id']}` with "
                  f"every dense layer scaled by {c['scale']} (its whole NTK falls): verdict **{c['verdict']}** "
                  f"(fraction {c['fraction']:.3f}, median log10 ratio {c['median_log10_ratio']:.2f}). The test "
                  "above can fail, and does when the claim is false.", ""]
    lines += ["## The Weyl bound (a unit check of the split, not evidence)", "",
              "λ_i(K_no_grid) + λ_min(K_grid) ≤ λ_i(K_total) holds for any K_total = K_no_grid + K_grid with both "
              "parts symmetric: it checks that the kernels were split correctly, not the paper's claim.", ""]
    body = [[cp, f"{s['weyl_holds']} / {s['images']}", s["max_violation"], s["lambda_min_grid_median"]]
            for cp, s in summary.items()]
    lines += [files.markdown_table(["checkpoint", "weyl holds", "max violation", "median λ_min(K_grid)"], body)]
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
        for key in ("total", "no_grid"):
            t = s[f"theorem1_{key}"]
            log(f"{cp}: Theorem 1 ({key} vs baseline) holds on {t['images_holding']}/{t['images_compared']} images, "
                f"on the mean: {(t['on_mean'] or {}).get('verdict', '-')}")
    for c in res["control"]:
        log(f"control (MLP scaled by {c['scale']}): {c['verdict']}")
    log(f"report: {out / 'report.md'}  ({time.perf_counter() - t0:.0f} s)")
    return 1 if res["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
