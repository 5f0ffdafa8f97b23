"""How the empirical NTK changes during training (the paper's Appendix B, Fig. 11).

    python -m experiments.ntk_evolution [--image NAME|PATH] [--configs ...]
        [--preset quick|paper] [--seed 0] [--out runs/ntk_evolution] [--runs-dir DIR]
        [--size PX] [--epochs N] [--batch-size N] [--lr X] [--ntk-points N] [--no-progress]

Trains the scaling study's configurations (Table 3) on one image and compares the kernel
at the start (epoch 0), the middle and the end of training: spectra at epoch 0 (dotted)
and at the end (solid) in ``spectra.png`` / ``.json``, and the relative Frobenius change
``||K1 - K0||_F / ||K0||_F`` (:func:`ntkgrid.spectrum.kernel_change`) of 0 -> end,
0 -> middle and middle -> end in ``kernel_change.png`` / ``.json``, with ``report.md``.
The kernels are recomputed in float64 from each run's checkpoints on its spectrum points.
``--runs-dir runs/scaling/runs`` reuses the scaling experiment's runs (same settings).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments import failed_runs_section, log
from experiments.scaling import add_image_args, train_all


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.ntk_evolution", description=__doc__.split("\n\n")[0])
    add_image_args(ap, name="ntk_evolution")
    return ap


def analyse(ctx: dict) -> dict:
    """Kernel changes and spectra per config; writes the figures, JSON and report."""
    from ntkgrid import plots, sweep
    from ntkgrid.spectrum import kernel_change

    out, runs = ctx["out"], ctx["runs"]
    out.mkdir(parents=True, exist_ok=True)
    results, curves, problems = {}, [], []
    for n, r in runs.items():
        cps = sweep.middle_and_end(r.history, r.config.epochs)
        if cps["start"] is None or cps["end"] is None or cps["end"] == 0:
            problems.append(f"{n}: needs measurements at epoch 0 and after training (has "
                            f"{sorted(h['epoch'] for h in r.history)})")
            continue
        path = r.out_dir
        kernels, spectra = {}, {}
        for cp in ("start", "middle", "end"):
            if cps[cp] is None:
                continue
            spectra[cp], kernels[cp] = sweep.recompute_kernels(r.config, path, cps[cp])
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
    sweep.write_json(out / "evolution.json", {"image": ctx["src"].source, "configs": results,
                                                        "problems": problems})
    header = ["config", "epochs (start, middle, end)", "0 -> end", "0 -> middle", "middle -> end",
              "λ_min at 0", "λ_min at end"]
    body = [[n, f"{v['epochs']['start']}, {v['epochs']['middle']}, {v['epochs']['end']}",
             v["kernel_change"]["start->end"], v["kernel_change"].get("start->middle"),
             v["kernel_change"].get("middle->end"), v["spectra"]["start"]["lambda_min"],
             v["spectra"]["end"]["lambda_min"]] for n, v in results.items()]
    table = sweep.markdown_table(header, body)
    report = [f"# NTK change during training (Appendix B, Fig. 11) on {ctx['src'].source}", "",
              f"- runs in `{ctx['runs_dir']}`; kernels recomputed in float64 from the checkpoints", "",
              "Relative Frobenius change ||K1 - K0||_F / ||K0||_F of the traced NTK on the spectrum points:", "",
              table, "![spectra](spectra.png)", "", "![kernel change](kernel_change.png)", ""]
    if problems:
        report += ["## Not analysed", ""] + [f"- {p}" for p in problems] + [""]
    report += failed_runs_section(ctx["errors"])
    sweep.write_text(out / "report.md", "\n".join(report))
    return {"results": results, "problems": problems, "table": table}


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; 0 on success, 1 if some run failed or could not be analysed, 2 for bad input."""
    args = build_parser().parse_args(argv)
    ctx, code = train_all(args, "ntk_evolution")
    if code is not None:
        return code
    res = analyse(ctx)
    log(res["table"])
    for p in res["problems"]:
        print(f"warning: {p}", file=sys.stderr)
    log(f"report: {Path(ctx['out']) / 'report.md'}")
    return 1 if (ctx["errors"] or res["problems"]) else 0


if __name__ == "__main__":
    sys.exit(main())
