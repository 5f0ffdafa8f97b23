"""The summary of a sweep folder: ``results.json``, ``summary.csv``/``.md``, the figures
(mean spectra, Theorem 1 ratio, training curves) and ``report.md`` (:func:`summarize`)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ntkgrid import evidence, files, plots, presets
from ntkgrid.config import TrainConfig
from ntkgrid.files import markdown_table, write_json, write_text
from ntkgrid.sweep.common import SPECTRUM_LENGTH, Log
from ntkgrid.sweep.folder import load_sweep
from ntkgrid.sweep.records import ImageRecord
from ntkgrid.sweep.stats import mean_spectra, ordering, spectra_curves, summary_rows

#: Sub-folder of a sweep (or merged) folder holding the spectra Theorem 1 recomputes (every
#: network at initialisation, the fan-in-matched baselines; :func:`ntkgrid.evidence.theorem1`),
#: so that a rerun of the report reads them back.
THEOREM1_KERNELS = "theorem1_kernels"

__all__ = ["summarize", "summary_markdown", "sweep_report", "write_csv"]


def summary_markdown(rows: Sequence[Mapping]) -> str:
    """Markdown table of :func:`ntkgrid.sweep.summary_rows`: mean ± std [min, max] per metric, beside the paper."""
    def cell(r, m, d):
        if r[f"{m}_mean"] is None:
            return "-"
        return f"{r[f'{m}_mean']:.{d}f} ± {r[f'{m}_std']:.{d}f} [{r[f'{m}_min']:.{d}f}, {r[f'{m}_max']:.{d}f}]"

    header = ["encoding", "images", "diverged", "PSNR dB mean ± std [min, max]", "paper PSNR",
              "MS-SSIM mean ± std [min, max]", "paper MS-SSIM"]
    body = [[r["encoding"], str(r["n"]), str(r["n_diverged"]), cell(r, "psnr", 2), files.fmt(r["paper_psnr"]),
             cell(r, "ms_ssim", 3), files.fmt(r["paper_ms_ssim"])] for r in rows]
    return markdown_table(header, body)


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping]) -> Path:
    """Rows (dicts with the same keys) as CSV, floats with full precision, ``None`` empty;
    written atomically (:func:`ntkgrid.files.write_text`). Returns the path."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return write_text(path, buf.getvalue())


def _figures(out: Path, records: Sequence[ImageRecord], manifest: Mapping, means: Mapping) -> tuple[dict, dict]:
    """Write ``spectra``, ``theorem1_ratio`` and ``training_curves`` (``.png`` + ``.json``)
    where there is data; returns ``({name: png path}, Theorem 1 claims)``."""
    names = list(manifest.get("configs", {}))
    paths = {}
    curves = spectra_curves(means, names)
    if curves:
        data = {"length": SPECTRUM_LENGTH, "means": means}
        plots.spectra_figure(out / "spectra", [("Mean NTK spectra (dashed: middle, solid: end)", curves)],
                             xlabel=f"eigenvalue index (resampled to {SPECTRUM_LENGTH})", data=data)
        paths["spectra"] = out / "spectra.png"
    claims = evidence.theorem1(records, manifest.get("configs", {}), cache_dir=out / THEOREM1_KERNELS,
                               init_seeds=int(manifest.get("theorem_seeds") or 1))
    ratio = evidence.ratio_curves(claims)
    if ratio:
        plots.curves_figure(out / "theorem1_ratio", [("Theorem 1: MPE / compared spectrum", "log10 ratio",
                                                      ratio)],
                            xlabel="normalised eigenvalue index i/(N-1)",
                            data=claims)
        paths["theorem1_ratio"] = out / "theorem1_ratio.png"
    train_curves = evidence.training_curves(records, names)
    if train_curves:
        def cv(key):
            return [{"name": n, "x": c["epoch"], "y": c[key]} for n, c in train_curves.items()
                    if all(v is not None for v in c[key])]

        plots.curves_figure(out / "training_curves", [("full-image PSNR", "PSNR dB", cv("psnr")),
                                                      ("full-image loss", "MSE", cv("loss"))],
                            logy=[False, True], data={"curves": train_curves})
        paths["training_curves"] = out / "training_curves.png"
    return paths, claims


def summarize(out: str | os.PathLike, *, log: Log = print, wall_seconds: float | None = None,
              paper: Mapping[str, tuple] | None = None) -> dict:
    """Write ``results.json``, ``summary.csv``, ``summary.md``, the figures (``spectra``,
    ``theorem1_ratio``, ``training_curves``: ``.png`` + ``.json``) and ``report.md`` for the
    sweep in ``out``.

    Args:
      out: a sweep (or merged) folder.
      log: where the closing line goes.
      wall_seconds: the wall time of this invocation before the report (its Theorem 1
        kernels come after), for the report.
      paper: the paper's ``{name: (psnr dB, ms_ssim)}``; default
        ``presets.PAPER_PSNR[manifest["table"]]`` when the table is known.

    Returns:
      ``{"rows" (:func:`ntkgrid.sweep.summary_rows`), "ordering" (:func:`ntkgrid.sweep.ordering`),
      "paths" ({name: Path}), "means" (:func:`ntkgrid.sweep.mean_spectra`)}``.
    """
    out = Path(out)
    sweep = load_sweep(out)
    manifest, records = sweep["manifest"], sweep["records"]
    names = list(manifest.get("configs", {}))
    if paper is None:
        paper = presets.PAPER_PSNR.get(manifest.get("table"), {})
    rows = summary_rows(records, names, paper)
    order = ordering(records, names)
    write_json(out / "results.json", {"manifest": manifest, "summary": rows, "ordering": order,
                                      "images": [r.to_json(with_paths=True) for r in records], "skipped": sweep["skipped"], "failed": sweep["failed"],
                                      "missing": sweep["missing"]})
    write_csv(out / "summary.csv", rows)
    write_text(out / "summary.md", summary_markdown(rows))
    means = mean_spectra(records, names)
    paths = {"results": out / "results.json", "summary_csv": out / "summary.csv", "summary_md": out / "summary.md"}
    figures, claims = _figures(out, records, manifest, means)
    paths.update(figures)
    report = sweep_report(manifest, rows, order, records, sweep, means, wall_seconds,
                          claims=claims, figures=set(paths))
    write_text(out / "report.md", report)
    paths["report"] = out / "report.md"
    log(f"summary of {len(records)} image(s): {out / 'summary.md'}, report: {out / 'report.md'}")
    return {"rows": rows, "ordering": order, "paths": paths, "means": means}


def _config_table(configs: Mapping[str, Mapping]) -> str:
    """Markdown table of the manifest's ``{name: TrainConfig dict}``."""
    rows = []
    for n, d in configs.items():
        try:
            cfg = TrainConfig.from_dict(d)
        except (TypeError, ValueError, AttributeError, KeyError) as err:
            rows.append([n, f"(not a config this version reads: {type(err).__name__})"] + ["-"] * 6)
            continue
        rows.append([n, cfg.encoding.describe(), files.fmt(cfg.learning_rate, 4), str(cfg.epochs), str(cfg.batch_size),
                     "x".join(map(str, cfg.hidden)), str(cfg.ntk_points), str(cfg.seed)])
    return markdown_table(["encoding", "parameters", "lr", "epochs", "batch", "MLP", "NTK points", "seed"], rows)


def _header_lines(m: Mapping, records: Sequence[ImageRecord], sweep: Mapping, wall_seconds: float | None) -> list[str]:
    """Title and the bullet list: images, preset, shard, machine, time."""
    src = m.get("data_root") or "scikit-image's bundled photos (no --data-root)"
    lines = [f"# {m.get('title', 'Sweep')}", ""]
    lines += [f"- images: {src}; {len(m.get('selection', []))} selected (seed {m.get('seed')}), "
              f"{len(records)} with results, {len(sweep['skipped'])} skipped, {len(sweep['failed'])} failed, "
              f"{len(sweep['missing'])} not run yet",
              f"- preset: `{m.get('preset')}`; images {m.get('size')}x{m.get('size')} px; "
              f"shard: {m.get('shard') or 'all'}" + (f"; merged from {len(m['merged_from'])} folders"
                                                      if m.get("merged_from") else "")]
    mach = m.get("machine") or {}
    if mach:
        lines.append(f"- machine: {mach.get('cpu_count')} CPU cores, {mach.get('platform')}, "
                     f"JAX {mach.get('jax')} on {mach.get('backend')}")
    run_s = sum(run.seconds or 0.0 for r in records for run in r.runs.values())
    lines.append(f"- training + measurement time over all runs: {run_s:.0f} s"
                 + (f"; wall time of this invocation before this report: {wall_seconds:.0f} s" if wall_seconds is not None else ""))
    return lines


def _ordering_lines(order: Mapping) -> list[str]:
    """The verdict on the paper's ordering (:data:`ntkgrid.presets.EXPECTED_ORDER`) in mean PSNR."""
    if not order.get("expected"):
        return []
    exp = " > ".join(order["expected"])
    mp = ", ".join(f"{k} {files.fmt(v)}" for k, v in (order.get("mean_psnr") or {}).items())
    verdict = {True: "holds", False: "does NOT hold", None: "cannot be judged"}[order["holds_on_mean"]]
    return [f"Paper's ordering {exp} in mean PSNR: **{verdict}** (mean PSNR: {mp}); per image it holds "
            f"on {order['images_holding']} of {order['images_compared']}.", ""]


def _spectra_row(name: str, cp: str, mm: Mapping, records: Sequence[ImageRecord]) -> list:
    """One row of the NTK spectra table: config ``name`` at checkpoint ``cp`` (mean ``mm``)."""
    runs = [r.runs[name] for r in records if name in r.runs]
    above = [r.n_above_floor for r in runs if r.n_above_floor is not None] if cp == "end" else []
    pts = sorted({r.ntk_points for r in runs if r.ntk_points})
    off = [r.grid_offdiag_fraction for r in runs if r.grid_offdiag_fraction is not None]
    return [name, cp, ",".join(map(str, mm["epochs"])), str(mm["count"]),
            ",".join(map(str, pts)) or "-", files.fmt(float(np.mean(off)), 4) if off else "-",
            float(mm["mean"][0]), float(mm["mean"][-1]), float(mm["floor"]),
            files.fmt(float(np.mean(above)), 1) if above else "-"]


def _spectra_lines(names: Sequence[str], means: Mapping, records: Sequence[ImageRecord]) -> list[str]:
    """The NTK spectra section (empty when no config has spectra)."""
    if not any(means.get(n, {}).get("total") for n in names):
        return []
    lines = ["## NTK spectra", "", "![mean spectra](spectra.png)", "",
             f"Mean over images of each run's float64 NTK eigenvalues (descending), resampled to "
             f"{SPECTRUM_LENGTH} values; dashed: middle of training, solid: end. The dotted line is "
             "the numerical floor N·eps·λmax (largest over the curves): eigenvalues below it are "
             "rounding noise. Data: spectra.json.", ""]
    body = [_spectra_row(n, cp, means[n]["total"][cp], records) for n in names for cp in ("middle", "end")
            if means.get(n, {}).get("total", {}).get(cp) is not None]
    return lines + [
        "Kernels are taken on the training set (every pixel of the training image, or a contiguous "
        "window of it where the backend's cap requires one: never a strided subset). 'grid off-diagonal "
        "share' is the share of the grid kernel's squared Frobenius norm off its diagonal at the end "
        "of training: 0 when no two of the points share a grid node.", "",
        markdown_table(["encoding", "checkpoint", "epoch(s)", "images", "NTK points",
                        "grid off-diagonal share", "mean λ_max", "mean λ_min", "mean floor",
                        "eigenvalues above floor (end, mean)"], body)]


def _tail_lines(m: Mapping, names: Sequence[str], records: Sequence[ImageRecord], sweep: Mapping) -> list[str]:
    """Per image PSNRs, skipped files, selection warnings, failed runs and images not run yet."""
    lines = []
    if records:
        body = [[r.image_id, r.source] + [
            (files.fmt(r.runs[n].psnr) + (" (diverged)" if r.runs[n].diverged else ""))
            if n in r.runs else "-" for n in names] for r in records]
        lines += ["## Per image", "", markdown_table(["image", "source"] + [f"{n} PSNR" for n in names], body)]
    if sweep["skipped"]:
        lines += ["## Skipped files", ""]
        lines += [f"- `{s.get('source')}`: {s.get('reason')}" for s in sweep["skipped"]] + [""]
    if m.get("selection_warnings"):
        lines += ["## Warnings while selecting images", ""]
        lines += [f"- {w}" for w in m["selection_warnings"]] + [""]
    if sweep["failed"]:
        lines += ["## Failed runs", ""]
        lines += [f"- `{f['image_id']}`: " + "; ".join(f"{k}: {v}" for k, v in f["errors"].items())
                  for f in sweep["failed"]] + [""]
    if sweep.get("corrupt"):
        lines += ["## Unreadable results", "",
                  "These results files cannot be used; rerunning the sweep rebuilds them from their run folders "
                  "(retraining only what the run folders do not hold).", ""]
        lines += [f"- `{c['image_id']}`: {c['reason']}" for c in sweep["corrupt"]] + [""]
    if sweep["missing"]:
        lines += ["## Not run yet", "",
                  f"{len(sweep['missing'])} selected image(s) have no results: "
                  + ", ".join(sweep["missing"][:20]) + (" ..." if len(sweep["missing"]) > 20 else ""), ""]
    return lines


def sweep_report(manifest: Mapping, rows: Sequence[Mapping], order: Mapping, records: Sequence[ImageRecord],
                 sweep: Mapping, means: Mapping, wall_seconds: float | None, *, claims: Mapping | None = None,
                 figures: Iterable[str] = ()) -> str:
    """The ``report.md`` of a sweep (Markdown).

    Args:
      manifest: the sweep's manifest; rows: :func:`ntkgrid.sweep.summary_rows`;
      order: :func:`ntkgrid.sweep.ordering`; records: the per-image records;
      sweep: :func:`ntkgrid.sweep.load_sweep`'s dict (``skipped``, ``failed``, ``missing``);
      means: :func:`ntkgrid.sweep.mean_spectra`; wall_seconds: this invocation's wall time.
      claims: :func:`ntkgrid.evidence.theorem1`'s result.
      figures: the names of the figures written (``"training_curves"``, ...).
    """
    figures = set(figures)
    names = list(manifest.get("configs", {}))
    lines = _header_lines(manifest, records, sweep, wall_seconds)
    lines += ["", "## Settings", "", _config_table(manifest.get("configs", {})), "## Results", "",
              "PSNR of the clipped prediction against the image, MS-SSIM (fewer scales on small "
              "images, see ntkgrid.metrics), at the end of training; diverged runs are left out of "
              "the statistics. Paper: its Table 1.", "", summary_markdown(rows)]
    lines += _ordering_lines(order)
    if "training_curves" in figures:
        lines += ["![training curves](training_curves.png)", "",
                  "Full-image PSNR and loss through training (every image's prediction measured at regular "
                  "epochs, not the minibatch loss), mean over images. Data: training_curves.json.", ""]
    lines += _spectra_lines(names, means, records)
    if claims:
        lines += evidence.theorem1_markdown(claims, figure="theorem1_ratio.png" if "theorem1_ratio" in figures
                                            else None)
    lines += _tail_lines(manifest, names, records, sweep)
    return "\n".join(lines).rstrip() + "\n"
