"""Statistics over a sweep's per-image records (``results/<image_id>.json``): checkpoints
("middle", "end"), per-config summary rows, mean spectra and the paper's ordering.

A record is an :class:`ntkgrid.sweep.records.ImageRecord` (``records.runs[name]`` a
:class:`~ntkgrid.sweep.records.RunRecord`: ``psnr``, ``ms_ssim``, ``diverged``,
``seconds``, ``lambda_min``, ``n_above_floor``, ``checkpoints`` (:func:`middle_and_end`)
and, once loaded by :func:`ntkgrid.sweep.load_sweep`, its absolute ``run_path``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ntkgrid import presets
from ntkgrid.analysis import run_spectra
from ntkgrid.spectrum import Spectrum, mean_spectrum
from ntkgrid.sweep.common import SPECTRUM_LENGTH
from ntkgrid.sweep.records import ImageRecord, RunRecord, middle_and_end

# middle_and_end is re-exported (its home is ntkgrid.sweep.records)
__all__ = ["mean_spectra", "middle_and_end", "ordering", "spectra_curves", "summary_rows"]


def _stats(values: Sequence[float | None]) -> dict:
    """``mean/std/min/max`` (population std) and ``n`` of the finite values (``None`` when there are none)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max()),
            "n": int(v.size)}


def summary_rows(records: Sequence[ImageRecord], names: Sequence[str], paper: Mapping[str, tuple] | None = None
                 ) -> list[dict]:
    """One row per config name over the per-image ``records``.

    Args:
      records: per-image records.
      names: the config names, in row order.
      paper: the paper's ``{name: (psnr dB, ms_ssim)}``.

    Returns:
      ``[{"encoding", "n" images, "n_diverged", "psnr_mean/std/min/max" (dB),
      "ms_ssim_mean/std/min/max", "lambda_min_end_mean", "n_above_floor_end_mean",
      "seconds_mean", "paper_psnr", "paper_ms_ssim"}]``; diverged runs are left out of
      the statistics (population std).
    """
    rows = []
    for n in names:
        runs = [r.runs[n] for r in records if n in r.runs]
        ok = [r for r in runs if not r.diverged]
        ps, ms = _stats([r.psnr for r in ok]), _stats([r.ms_ssim for r in ok])
        row = {"encoding": n, "n": len(runs), "n_diverged": len(runs) - len(ok)}
        row.update({f"psnr_{k}": ps[k] for k in ("mean", "std", "min", "max")})
        row.update({f"ms_ssim_{k}": ms[k] for k in ("mean", "std", "min", "max")})
        row["lambda_min_end_mean"] = _stats([r.lambda_min for r in ok])["mean"]
        row["n_above_floor_end_mean"] = _stats([r.n_above_floor for r in ok])["mean"]
        row["seconds_mean"] = _stats([r.seconds for r in runs])["mean"]
        pp = (paper or {}).get(n)
        row["paper_psnr"], row["paper_ms_ssim"] = (pp if pp is not None else (None, None))
        rows.append(row)
    return rows


def _collect_spectra(records: Sequence[ImageRecord], name: str, groups: Sequence[str], checkpoints: Sequence[str]
                     ) -> tuple[dict[str, dict[str, list[Spectrum]]], dict[str, set[int]]]:
    """The recorded spectra of config ``name`` over images (diverged runs left out):
    ``({group: {checkpoint: [Spectrum]}}, {checkpoint: {epochs}})``."""
    found: dict[str, dict[str, list[Spectrum]]] = {}
    epochs: dict[str, set[int]] = {cp: set() for cp in checkpoints}
    for r in records:
        run = r.runs.get(name)
        if run is None or run.diverged:
            continue
        for cp in checkpoints:
            epoch = run.checkpoints.get(cp)
            spectra = None if epoch is None else run_spectra(run.run_path, epoch)
            if spectra is None:
                continue
            epochs[cp].add(int(epoch))
            for g in groups:
                if g in spectra:
                    found.setdefault(g, {}).setdefault(cp, []).append(spectra[g])
    return found, epochs


def mean_spectra(records: Sequence[ImageRecord], names: Sequence[str], *, groups: Sequence[str] = ("total",),
                 checkpoints: Sequence[str] = ("middle", "end"), length: int = SPECTRUM_LENGTH) -> dict:
    """Mean spectra over images.

    Args:
      records: per-image records with ``run_path`` (:func:`ntkgrid.sweep.load_sweep`).
      names: config names.
      groups: parameter groups (``"total"``, ``"grid"``, ``"no_grid"``, ...).
      checkpoints: ``"middle"`` and/or ``"end"``.
      length: every spectrum is resampled to this many values.

    Returns:
      ``{name: {group: {checkpoint: mean_spectrum dict + "epochs"}}}``
      (:func:`ntkgrid.spectrum.mean_spectrum`: ``"mean"`` ``(length,)`` eigenvalues,
      descending). Diverged runs are left out. A group a config does not have (e.g.
      ``"grid"`` of the baseline) is absent from its dict; a checkpoint no image has is ``None``.
    """
    out: dict[str, dict] = {}
    for n in names:
        found, epochs = _collect_spectra(records, n, groups, checkpoints)
        out[n] = {g: {cp: None if not found[g].get(cp) else {**mean_spectrum(found[g][cp], length),
                                                              "epochs": sorted(epochs[cp])}
                      for cp in checkpoints}
                  for g in groups if g in found}
    return out


def spectra_curves(means: Mapping, names: Sequence[str], group: str = "total",
                   checkpoints: Sequence[str] = ("middle", "end"), label_suffix: str = "") -> list[dict]:
    """Curves for :func:`ntkgrid.plots.spectra_axes` from :func:`mean_spectra` output:
    ``[{"name", "values" (length,), "checkpoint", "floor", "label"}]``."""
    curves = []
    for n in names:
        for cp in checkpoints:
            m = means.get(n, {}).get(group, {}).get(cp)
            if m is None:
                continue
            curves.append({"name": n, "values": m["mean"], "checkpoint": cp, "floor": m["floor"],
                           "label": f"{n}{label_suffix} ({cp}, n={m['count']})"})
    return curves


def _usable_psnr(run: RunRecord | None) -> float | None:
    """A run's PSNR (dB), ``None`` when it has none or diverged."""
    if run is None or run.psnr is None or run.diverged:
        return None
    return run.psnr


def ordering(records: Sequence[ImageRecord], names: Sequence[str],
             expected: Sequence[str] = presets.EXPECTED_ORDER) -> dict:
    """Does mean PSNR follow ``expected`` (best first; the paper's claim,
    :data:`ntkgrid.presets.EXPECTED_ORDER`), and on how many images?

    Returns:
      ``{"expected": the names of ``expected`` among ``names``, "mean_psnr": {name: dB},
      "holds_on_mean": bool (None when a mean is missing), "images_holding",
      "images_compared"}`` (without ``mean_psnr``, and the verdicts ``None``, when fewer than
      two expected names were run). Diverged runs are left out.
    """
    exp = [n for n in expected if n in names]
    if len(exp) < 2:
        return {"expected": exp, "holds_on_mean": None, "images_holding": None, "images_compared": 0}
    n_hold, n_cmp = 0, 0
    for r in records:
        ps = [_usable_psnr(r.runs.get(n)) for n in exp]
        if None in ps:
            continue
        n_cmp += 1
        n_hold += all(a > b for a, b in zip(ps, ps[1:], strict=False))
    means = []
    for n in exp:
        v = [p for p in (_usable_psnr(r.runs.get(n)) for r in records) if p is not None]
        means.append(float(np.mean(v)) if v else None)
    holds = None if None in means else all(a > b for a, b in zip(means, means[1:], strict=False))
    return {"expected": exp, "mean_psnr": dict(zip(exp, means, strict=True)), "holds_on_mean": holds,
            "images_holding": n_hold, "images_compared": n_cmp}
