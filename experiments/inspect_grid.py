"""What the grid and the MLP learn (the paper's Appendix C, Figs. 12 and 13).

    python -m experiments.inspect_grid [--image NAME|PATH] [--configs ...]
        [--preset quick|paper] [--seed 0] [--out runs/inspect_grid] [--runs-dir DIR]
        [--size PX] [--epochs N] [--batch-size N] [--lr X] [--ntk-points N] [--no-progress]

Trains the scaling study's configurations (Table 3) on one image, then draws

* ``grid_<config>.png`` for every multigrid config: each level's learned node values,
  one grey-scale image per feature (table ``(r*r, k)`` -> ``(r, r, k)``, rows = y,
  columns = x, as the image), with ``grid_<config>.json`` (per level and feature: min,
  max, mean, std, and the nodes no pixel touches, which keep their initial values) and
  ``grid_<config>.npz`` (the raw ``(r, r, k)`` arrays and the untouched-node masks);
* ``activation_regions.png`` / ``.json``: for every config, the ReLU activation pattern
  (on/off state of all hidden neurons) of each pixel coloured by pattern id, and the
  number of distinct patterns (activation regions, the paper's Eq. 15) over all layers
  and per layer;

and ``report.md``. ``--runs-dir runs/scaling/runs`` reuses the scaling experiment's runs.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from experiments import failed_runs_section, log
from experiments.scaling import add_image_args, train_all
from ntkgrid import files


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.inspect_grid", description=__doc__.split("\n\n")[0])
    add_image_args(ap, name="inspect_grid")
    return ap


def analyse(ctx: dict) -> dict:
    """Grid images and activation regions; writes the figures, data and report."""
    from ntkgrid import analysis, plots
    from ntkgrid.data.images import image_to_dataset

    out, runs, image = ctx["out"], ctx["runs"], ctx["image"]
    out.mkdir(parents=True, exist_ok=True)
    h, w = image.shape[:2]
    grids, regions = {}, {}
    for n, r in runs.items():
        coords, _ = image_to_dataset(image, pixels=r.config.pixels)  # where this run saw the pixels
        if r.config.encoding.kind == "multigrid":
            levels = analysis.grid_tables(r.config, r.params)
            stats, arrays = [], {}
            for lvl, (_title, arr) in enumerate(levels):
                unused = analysis.unused_nodes(arr.shape[0], coords)
                arrays[f"level_{lvl}"], arrays[f"unused_{lvl}"] = arr, unused
                for j in range(arr.shape[-1]):
                    v = arr[..., j]
                    stats.append({"level": lvl, "resolution": int(arr.shape[0]), "feature": j,
                                  "min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()),
                                  "std": float(v.std()), "untouched_nodes": int(unused.sum()),
                                  "untouched_fraction": float(unused.mean())})
            plots.grid_params_figure(out / f"grid_{n}", levels, suptitle=f"{n}: learned grid values",
                                     data={"config": n, "levels": stats})
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            files.write_bytes(out / f"grid_{n}.npz", buf.getvalue())
            grids[n] = stats
        ar = analysis.activation_regions(r.config, r.params, coords)
        regions[n] = {"count": ar["count"], "per_layer": ar["per_layer"], "ids": ar["ids"].reshape(h, w)}
    if regions:
        maps = [(n, v["ids"], v["count"]) for n, v in regions.items()]
        plots.activation_regions_figure(out / "activation_regions", maps, data={
            "image": ctx["src"].source, "shape": [h, w],
            "regions": {n: {"count": v["count"], "per_layer": v["per_layer"]} for n, v in regions.items()}})
    header = ["config", "activation regions (all layers)", "per hidden layer", "pixels"]
    body = [[n, str(v["count"]), ", ".join(map(str, v["per_layer"])), str(h * w)] for n, v in regions.items()]
    table = files.markdown_table(header, body)
    report = [f"# Learned grids and activation regions (Appendix C) on {ctx['src'].source}", "",
              f"- image {h}x{w} px; runs in `{ctx['runs_dir']}`", "", "## Activation regions (Fig. 13)", "",
              "Distinct on/off patterns of all hidden ReLUs over the image's pixels (a pattern = a region):", "",
              table, "![activation regions](activation_regions.png)", ""]
    for n, stats in grids.items():
        report += [f"## Grid of {n} (Fig. 12)", "", f"![grid {n}](grid_{n}.png)", "",
                   files.markdown_table(["level", "nodes/side", "feature", "min", "max", "std", "untouched nodes"],
                                        [[str(s["level"]), str(s["resolution"]), str(s["feature"]), s["min"],
                                          s["max"], s["std"], f"{s['untouched_nodes']} ({100 * s['untouched_fraction']:.1f}%)"]
                                         for s in stats])]
    report += failed_runs_section(ctx["errors"])
    files.write_text(out / "report.md", "\n".join(report))
    return {"grids": grids, "regions": {n: {k: v for k, v in d.items() if k != "ids"} for n, d in regions.items()},
            "table": table}


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; 0 on success, 1 if a run failed, 2 for bad arguments/input."""
    args = build_parser().parse_args(argv)
    ctx, code = train_all(args, "inspect_grid")
    if code is not None:
        return code
    res = analyse(ctx)
    log(res["table"])
    log(f"report: {Path(ctx['out']) / 'report.md'}")
    return 1 if ctx["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
