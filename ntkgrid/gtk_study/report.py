"""The GTK study end to end (:func:`run_study`): every panel, its figures,
``results.json`` and ``results.md``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from ntkgrid.files import write_json, write_text
from ntkgrid.gtk_study.figures import plot_error_maps, plot_slices
from ntkgrid.gtk_study.fits import fit_image, fit_occupancy
from ntkgrid.gtk_study.kernels import panel_bounds, panel_spectrum, run_checks
from ntkgrid.gtk_study.setup import GTKSetup


def public(res: dict) -> dict:
    """``res`` without its arrays (keys starting with ``_``, ``target``, ``slice_truth``), for
    :func:`ntkgrid.files.write_json` (which turns non-finite numbers into ``null``)."""
    if isinstance(res, dict):
        return {k: public(v) for k, v in res.items() if not k.startswith("_") and k not in ("target", "slice_truth")}
    if isinstance(res, (list, tuple)):
        return [public(v) for v in res]
    return res


def markdown(res: dict) -> str:
    """``results.md``: the checks, panels (a) and (b) and the fits of :func:`run_study`'s result."""
    lines = [f"# GTK experiment ({res['preset']}, seed {res['seed']}, {res['seconds']:.0f} s)", ""]
    lines += ["## Checks (float64, 2D grid models with a sum read-out)", "",
              "| model | GTK vs NT | GD vs (I - eta G)^s | max GD vs ODE | tolerance | GTK change |",
              "|---|---|---|---|---|---|"]
    for name, c in res["checks"].items():
        if name == "contrast":
            continue
        lines.append(f"| {name} | {c['gtk_vs_neural_tangents']:.1e} | {c['gd_vs_discrete_prediction']:.1e} | "
                     f"{max(c['gd_vs_ode']):.2e} | {c['ode_tolerance']:.2e} | {c['gtk_change']:.1e} |")
    c = res["checks"].get("contrast")
    if c:
        lines += ["", f"Not linear in the grid ({c['steps']} GD steps): CoordinateMLP grid-term change "
                      f"{c['coordinate_mlp_grid_term_change']:.3g}; MulFAGrid with learnt filters "
                      f"{c['mulfagrid_learnt_filters_gtk_change']:.3g}."]
    lines += [""]
    lines += ["## (a) GTK energy per Fourier mode", "",
              "The lattices are denser than the grids, so points share nodes as in training: 'off-diag.' is the "
              "share of the GTK's squared Frobenius norm off its diagonal (0 if no two points shared a node).", "",
              "| lattice | model | rank | off-diag. | energy above grid Nyquist "
              "| half-energy freq. | 99%-energy freq. |", "|---|---|---|---|---|---|---|"]
    for dim in ("1d", "2d"):
        for name, s in res["spectrum"][dim].items():
            lines.append(f"| {dim} | {name} | {s['rank']} | {s['grid_offdiag_fraction']:.3f} | "
                         f"{s['above_grid_nyquist']:.4f} | "
                         f"{s['half_energy_frequency']:.2f} | {s['p99_energy_frequency']:.2f} |")
    b = res["bounds"]
    lines += ["", "## (b) Generalisation bound, two points", "",
              f"Pair {b['pair']}: MulFAGrid's bound is lower on {100 * b['fraction_mulfagrid_lower']:.1f}% of the "
              f"(Y1, Y2) grid; mean bound dense {b['mean_bound']['dense']:.4f}, MulFAGrid "
              f"{b['mean_bound']['mulfagrid']:.4f}. Over {b['random_pairs']} random nearby pairs: lower on "
              f"{100 * b['random_pairs_mean_fraction_lower']:.1f}% of the labels on average, on most labels for "
              f"{100 * b['random_pairs_majority_lower']:.1f}% of the pairs; the mean bound over the pairs is "
              f"dense {b['random_pairs_mean_bound']['dense']:.4f}, "
              f"MulFAGrid {b['random_pairs_mean_bound']['mulfagrid']:.4f} "
              f"(MulFAGrid lower on {100 * b['random_pairs_mean_map_fraction_lower']:.1f}% of the labels).", ""]
    lines += ["## Fits", "", "| task | model | params | lr | PSNR (dB) | MS-SSIM | IoU uniform | IoU near surface "
              "| train s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res.get("image", {}).get("runs", {}).items():
        lines.append(f"| image {res['image']['size']}px | {name} | {r['params']} | {r['lr']:g} | {r['psnr']:.2f} | "
                     f"{r['ms_ssim']:.4f} ({r['ms_ssim_scales']} scales) | | | {r['seconds']:.0f} |")
    for name, r in res.get("occupancy", {}).get("runs", {}).items():
        lines.append(f"| occupancy | {name} | {r['params']} | {r['lr']:g} | | | {r['iou_uniform']:.4f} | "
                     f"{r['iou_surface']:.4f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def run_study(setup: GTKSetup, out: str | Path, *, preset: str = "quick", seed: int = 0,
              log: Callable[[str], None] = print) -> dict:
    """Every panel of the study, in order: the checks, (a) spectra, (b) bounds and, when
    ``setup.models`` is not empty, (c) the image and occupancy fits. Writes the figures
    (``spectrum_1d.png``, ``spectrum_2d.png``, ``bounds.png``, ``error_maps.png``,
    ``occupancy_slices.png``), ``results.json`` (:func:`public` of the result) and
    ``results.md`` (:func:`markdown`) under ``out``; occupancy pools are cached in
    ``out/pools``. Returns the result: ``preset``, ``seed``, ``setup`` (dict), ``timings``
    (seconds per stage), one entry per stage, ``seconds`` (total wall time)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = {"preset": preset, "seed": seed, "setup": dataclasses.asdict(setup), "timings": {}}
    stages = [("checks", run_checks, (setup, seed)), ("spectrum", panel_spectrum, (setup, seed, out)),
              ("bounds", panel_bounds, (setup, seed, out))]
    if setup.models:
        stages += [("image", fit_image, (setup, seed, log)),
                   ("occupancy", fit_occupancy, (setup, seed, out / "pools", log))]
    for key, fn, args in stages:
        t = time.perf_counter()
        log(f"[gtk] {key} ...")
        res[key] = fn(*args)
        res["timings"][key] = time.perf_counter() - t
        log(f"[gtk] {key}: {res['timings'][key]:.1f} s")
        if key == "image":
            plot_error_maps(res["image"], out / "error_maps.png")
        elif key == "occupancy":
            plot_slices(res["occupancy"], out / "occupancy_slices.png")
    res["seconds"] = time.perf_counter() - t0
    write_json(out / "results.json", public(res))  # atomic: a reader never sees half a file
    write_text(out / "results.md", markdown(res))
    log(f"[gtk] done in {res['seconds']:.1f} s; wrote {out}/results.md")
    return res
