"""Occupancy pictures and reports: the IoU-against-epochs curve, the mean spectra across
meshes (Fig. 5b), ``results.json`` and ``report.md``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ntkgrid.files import fmt, write_json, write_text
from ntkgrid.occupancy.setup import NTK_OUTPUTS
from ntkgrid.spectrum import mean_spectrum

if TYPE_CHECKING:  # pragma: no cover
    from ntkgrid.occupancy.data import MeshResult


def plot_iou_curves(runs: Mapping[str, dict], path: str | os.PathLike, *, title: str = "") -> None:
    """IoU on the held-out uniform (solid) and near-surface (dashed) pools against the
    epoch, one colour per encoding, from ``runs[encoding]["history"]``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for enc, run in runs.items():
        h = [r for r in run["history"] if r.get("iou_uniform") is not None]
        c = _COLORS.get(enc)
        ax.plot([r["epoch"] for r in h], [r["iou_uniform"] for r in h], "-o", ms=3, color=c, label=f"{enc} uniform")
        ax.plot([r["epoch"] for r in h], [r["iou_surface"] for r in h], "--", color=c, label=f"{enc} near-surface")
    ax.set_xlabel("epoch")
    ax.set_ylabel("IoU (held-out points)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


_COLORS = {"baseline": "tab:gray", "fourier": "tab:blue", "multigrid": "tab:red"}


def na(v, digits: int = 3) -> str:
    """A table/log number: :func:`ntkgrid.files.fmt` with ``n/a`` for a missing value."""
    return fmt(v, digits, missing="n/a")


KERNEL_CAPTION = {
    "sigmoid": "NTK of the sigmoid output sigma(f(x)), the probability the BCE loss sees (--ntk-output sigmoid, "
               "default); the logit kernel is the other figure",
    "logit": "NTK of the logit f(x) before the sigmoid (--ntk-output logit); the sigmoid-output kernel "
             "D K D, D = diag(sigma'(f)), is the other figure",
}


def plot_mean_spectra(results: Sequence[MeshResult], path: str | os.PathLike, *, output: str | None = None,
                      title: str | None = None) -> dict:
    """Fig. 5b: per encoding, the mean over meshes of the NTK spectrum at the end of
    training (solid) and at its middle (dashed), each with its mean numerical floor
    (dotted, same colour), on a log scale against the eigenvalue index. ``output``
    (``"sigmoid"`` or ``"logit"``) picks the kernel from each result's
    ``spectra_by_output`` (default: ``result.spectra``, the run's ``ntk_output``); the
    caption under the plot names the kernel drawn and the other one.

    Spectra of different sizes are resampled to the smallest size before averaging.
    Returns ``{encoding: {"end": {...}, "mid": {...}}}`` of
    :func:`ntkgrid.spectrum.mean_spectrum` summaries (``mean``/``floor``/``count``;
    ``{}`` for an encoding with no spectra).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt


    def spectra_of(r: MeshResult) -> dict:
        return r.spectra if output is None else r.spectra_by_output.get(output, {})

    encs = list(dict.fromkeys(e for r in results for e in spectra_of(r)))
    colors = _COLORS
    summary: dict[str, dict] = {}
    fig, ax = plt.subplots(figsize=(6.4, 4.9))
    for enc in encs:
        summary[enc] = {}
        for which, style in (("end", "-"), ("mid", "--")):
            specs = []
            for r in results:
                s = spectra_of(r).get(enc, {})
                if not s:
                    continue
                epochs = sorted(s)
                end = epochs[-1]
                if which == "end":
                    specs.append(s[end])
                else:
                    inner = [e for e in epochs if 0 < e < end]
                    if inner:
                        specs.append(s[min(inner, key=lambda e: abs(e - end / 2))])
            if not specs:
                continue
            length = min(sp.eigenvalues.size for sp in specs)
            m = mean_spectrum(specs, length)
            summary[enc][which] = {"mean": m["mean"].tolist(), "floor": m["floor"], "count": m["count"]}
            c = colors.get(enc)
            idx = np.arange(1, length + 1)
            pos = np.where(m["mean"] > 0, m["mean"], np.nan)
            ax.semilogy(idx, pos, style, color=c, label=f"{enc} ({which}, n={m['count']})")
            if which == "end":
                ax.axhline(m["floor"], color=c, ls=":", lw=0.8)
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("eigenvalue of the empirical NTK")
    ax.set_title(title or f"Mean NTK spectra over {len(results)} mesh(es); dotted: numerical floor", fontsize=10)
    if any(summary.get(e) for e in encs):
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no spectra (ntk_points = 0)", transform=ax.transAxes, ha="center")
    if output is not None:
        fig.text(0.01, 0.01, "Kernel: " + KERNEL_CAPTION[output] + ".", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.06 if output is not None else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return summary


def write_results(results: Sequence[MeshResult], errors: Sequence[dict], out_dir: str | os.PathLike,
                  meta: Mapping[str, Any]) -> tuple[Path, Path]:
    """``results.json`` (``meta``, per-mesh :meth:`MeshResult.to_json`, ``errors``) and
    ``report.md`` (one table row per mesh and encoding, the figures, the failures) in
    ``out_dir``.

    Args:
      results: the meshes that ran.
      errors: ``{"mesh", "source", "error"}`` of the meshes that failed.
      out_dir: the run folder.
      meta: the run's settings (``preset``, ``seed``, ``ntk_output``, ...), stored as is.

    Returns:
      ``(results.json path, report.md path)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"meta": dict(meta), "meshes": [r.to_json() for r in results], "errors": list(errors)}
    jpath = out / "results.json"
    write_json(jpath, doc)
    lines = [results_table(results)]
    if results:
        output = meta.get("ntk_output", "sigmoid")
        other = next(o for o in NTK_OUTPUTS if o != output)
        lines.append(f"\nMean NTK spectra over {len(results)} mesh(es) (Fig. 5b): `spectra.png` "
                     f"(numbers: `spectra.json`). Kernel: {KERNEL_CAPTION[output]} (`spectra_{other}.png`, "
                     f"`spectra_{other}.json`). NTK points: drawn as training draws its uniform points "
                     "(uniform in the scaled mesh's bounding box).")
        lines.append("\nIoU against epochs: `<mesh>/iou_curve.png`.")
        lines += [f"\n{r.name} ({r.source}; Table 4 row {r.preset_key}"
                  f"{'' if r.preset_matched else ', name not recognised'}): `{r.name}/render.png`, "
                  + ", ".join(f"`{r.name}/surface_{e}.ply`" for e in r.runs) for r in results]
    if errors:
        lines.append("\nFailed:\n")
        done = {r.name for r in results}
        lines += [f"* {e['mesh']}: {e['error']}"
                  + (" (a rerun failed; the results above are the earlier run's, kept)" if e["mesh"] in done else "")
                  for e in errors]
    mpath = out / "report.md"
    write_text(mpath, "\n".join(lines) + "\n")
    return jpath, mpath


def results_table(results: Sequence[MeshResult]) -> str:
    """Markdown table: final held-out IoU/accuracy, training loss and time per mesh and encoding."""
    header = ("| mesh | encoding | IoU uniform | IoU near-surface | acc. uniform | acc. near-surface | "
              "train loss | train s |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for enc, run in r.runs.items():
            f = run["final"]
            lines.append(f"| {r.name} | {enc} | {na(f.get('iou_uniform'))} | {na(f.get('iou_surface'))} | "
                         f"{na(f.get('accuracy_uniform'))} | {na(f.get('accuracy_surface'))} | "
                         f"{na(f.get('loss'), 4)} | {run['seconds']['train']:.0f} |")
    return "\n".join(lines)
