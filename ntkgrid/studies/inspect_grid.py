"""What the grid and the MLP learn: the paper's Appendix C, Figs. 12 and 13
(``python -m experiments.inspect_grid``).

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

and ``report.md``. Pointing ``runs_dir`` at the scaling study's runs reuses them.
"""

from __future__ import annotations

import io

import numpy as np

from ntkgrid import analysis, files, plots
from ntkgrid.data.images import image_to_dataset
from ntkgrid.studies.image_runs import (
    ImageRuns,
    ImageStudyOptions,
    ImageStudyResult,
    Log,
    failed_runs_section,
    run_image_study,
)

__all__ = ["analyse", "run_inspect_grid"]


def analyse(ctx: ImageRuns) -> dict:
    """Grid images and activation regions; writes the figures, data and ``report.md`` under ``ctx.out``.

    Args:
      ctx: the trained runs (:func:`ntkgrid.studies.image_runs.train_all`).

    Returns:
      ``{"grids": {config: [per level and feature: min, max, mean, std, untouched nodes]},
      "regions": {config: {"count", "per_layer"}}, "table": the markdown table of the regions}``.
    """
    out, runs, image = ctx.out, ctx.runs, ctx.image
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
            "image": ctx.source.source, "shape": [h, w],
            "regions": {n: {"count": v["count"], "per_layer": v["per_layer"]} for n, v in regions.items()}})
    header = ["config", "activation regions (all layers)", "per hidden layer", "pixels"]
    body = [[n, str(v["count"]), ", ".join(map(str, v["per_layer"])), str(h * w)] for n, v in regions.items()]
    table = files.markdown_table(header, body)
    report = [f"# Learned grids and activation regions (Appendix C) on {ctx.source.source}", "",
              f"- image {h}x{w} px; runs in `{ctx.runs_dir}`", "", "## Activation regions (Fig. 13)", "",
              "Distinct on/off patterns of all hidden ReLUs over the image's pixels (a pattern = a region):", "",
              table, "![activation regions](activation_regions.png)", ""]
    for n, stats in grids.items():
        report += [f"## Grid of {n} (Fig. 12)", "", f"![grid {n}](grid_{n}.png)", "",
                   files.markdown_table(["level", "nodes/side", "feature", "min", "max", "std", "untouched nodes"],
                                        [[str(s["level"]), str(s["resolution"]), str(s["feature"]), s["min"],
                                          s["max"], s["std"], f"{s['untouched_nodes']} ({100 * s['untouched_fraction']:.1f}%)"]
                                         for s in stats])]
    report += failed_runs_section(ctx.errors)
    files.write_text(out / "report.md", "\n".join(report))
    return {"grids": grids, "regions": {n: {k: v for k, v in d.items() if k != "ids"} for n, d in regions.items()},
            "table": table}


def run_inspect_grid(options: ImageStudyOptions, *, log: Log = print, progress: bool = True) -> ImageStudyResult:
    """The learned-grid study: train (or reuse) the runs of ``options``, then :func:`analyse`.

    Args:
      options: the image, configs, preset and overrides.
      log: where progress lines go.
      progress: per-epoch progress bars.

    Returns:
      :class:`~ntkgrid.studies.image_runs.ImageStudyResult`. Raises
      :class:`~ntkgrid.studies.image_runs.StudyInputError` for an unusable option or image.
    """
    return run_image_study(analyse, options, "inspect_grid", log=log, progress=progress)
