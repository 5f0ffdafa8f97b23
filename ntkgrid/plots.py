"""Figures of the paper's 2D experiments, drawn with matplotlib's object API (Agg canvas).

No pyplot, so importing or calling this module never changes matplotlib's global backend
and works without a display. Every ``*_figure`` function writes ``<path>.png`` and, where
it draws data, ``<path>.json`` holding exactly the numbers plotted (see :func:`save`).

Encodings are named ``baseline``, ``fourier``, ``multigrid``, ``hashgrid``, ``mulfagrid``
everywhere; variants append a suffix (``fourier_low``, ``multigrid_fine``, ...) and are
drawn in a shade of their family's colour (:func:`style`). Spectra: the end of training is
solid, the middle dashed, the start dotted (the paper's convention); the y axis is
logarithmic and the numerical floor ``N eps lambda_max`` is drawn (:func:`spectra_axes`).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkgrid.files import to_jsonable, write_bytes, write_json

__all__ = [
    "CHECKPOINT_STYLE",
    "FAMILY_COLORS",
    "activation_regions_figure",
    "bar_figure",
    "curves_figure",
    "grid_params_figure",
    "image_grid_figure",
    "new_figure",
    "prediction_figure",
    "save",
    "spectra_axes",
    "spectra_figure",
    "style",
    "to_jsonable",
]

#: Colour of each encoding family (matplotlib's tab10 colours).
FAMILY_COLORS = {
    "baseline": "#7f7f7f",
    "fourier": "#1f77b4",
    "gaussian": "#17becf",
    "multigrid": "#d62728",
    "hashgrid": "#2ca02c",
    "mulfagrid": "#9467bd",
}

#: Line style per checkpoint name: start dotted, middle dashed, end solid.
CHECKPOINT_STYLE = {"start": ":", "middle": "--", "end": "-"}

# Variant suffixes in increasing order of "strength": lighter to darker shades.
_SHADES = {"low": 0.55, "coarse": 0.6, "mid": 0.8, "no_grid": 0.5, "high": 1.0, "fine": 1.0,
           "fan_in_matched": 0.6, "own_no_grid": 0.3}


def _shade(color: str, factor: float) -> tuple[float, float, float]:
    """``color`` mixed with white: ``factor`` 1 keeps it, smaller is lighter."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return tuple(1.0 - factor * (1.0 - c) for c in (r, g, b))


def style(name: str) -> dict:
    """Colour (and label) for an encoding or variant name such as ``"fourier_high"``.

    The family is the part before the first ``_`` (``"multigrid_no_grid"`` ->
    ``multigrid``); unknown families cycle through tab10 by a stable hash of the name.
    Returns ``{"color": rgb tuple or hex, "label": name}``.
    """
    family, _, variant = name.partition("_")
    if family in FAMILY_COLORS:
        color = FAMILY_COLORS[family]
        if variant:
            color = _shade(color, _SHADES.get(variant, 0.75))
        return {"color": color, "label": name}
    from matplotlib import colormaps

    idx = sum(map(ord, name)) % 10
    return {"color": colormaps["tab10"](idx), "label": name}


def new_figure(nrows: int = 1, ncols: int = 1, *, panel: tuple[float, float] = (4.5, 3.6), **kw):
    """A ``Figure`` on an Agg canvas with an ``(nrows, ncols)`` array of axes.

    ``panel`` is the size of one panel in inches. Returns ``(fig, axes)`` with ``axes`` a
    2-D object array (``squeeze=False``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def panel_grid(n: int, ncols: int, panel: tuple[float, float]):
    """``new_figure`` with ``n`` picture panels in rows of at most ``ncols``, every axis
    off (the spare ones stay blank). Returns ``(fig, axes)``, ``axes`` flat."""
    ncols = max(1, min(ncols, n))
    fig, axes = new_figure(-(-n // ncols), ncols, panel=panel)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def save(fig, path: str | os.PathLike, data: Any = None, dpi: int = 120) -> tuple[Path, Path | None]:
    """Write ``fig`` to ``<path>.png`` (any suffix of ``path`` is replaced) and, when
    ``data`` is given, ``<path>.json`` (through :func:`to_jsonable`). Both atomically.
    Returns ``(png_path, json_path or None)``."""
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".png", ".json") else base
    png = base.with_name(base.name + ".png")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    write_bytes(png, buf.getvalue())
    js = None
    if data is not None:
        js = base.with_name(base.name + ".json")
        write_json(js, data)
    return png, js


# ----------------------------------------------------------------------------- spectra


def spectra_axes(ax, curves: Sequence[Mapping], *, title: str | None = None, xlabel: str | None = None,
                 legend: bool = True) -> dict:
    """Draw descending eigenvalue curves on ``ax`` (log y) with the numerical floor.

    Args:
      ax: a matplotlib ``Axes``.
      curves: dicts with ``name`` (encoding / variant, picks the colour), ``values``
        (``(n,)`` eigenvalues, descending), optional ``checkpoint`` (``"start"``,
        ``"middle"``, ``"end"``: line style), ``floor`` (float: that spectrum's numerical
        floor), ``band`` (``(lo, hi)`` arrays, e.g. min/max over images, drawn shaded),
        ``label`` (legend text; default ``name`` plus the checkpoint), ``color`` (overrides
        the colour picked by ``name``).
      title, xlabel: axis texts; x is the eigenvalue index (normalised to ``[0, 1]`` when
        curves have different lengths, else ``0 .. n-1``).

    Non-positive values cannot be drawn on a log axis and are left out. The floor is the
    largest ``floor`` of the curves, drawn as a black dotted line with the region below
    it shaded grey: eigenvalues there are rounding noise, not signal.

    Returns ``{"floor": float or None, "x": "index" or "normalised index"}``.
    """
    lengths = {len(c["values"]) for c in curves}
    normalise = len(lengths) > 1
    floors = [float(c["floor"]) for c in curves if c.get("floor") is not None and math.isfinite(c["floor"])]
    for c in curves:
        v = np.asarray(c["values"], np.float64)
        x = np.linspace(0.0, 1.0, v.size) if normalise else np.arange(v.size)
        st = style(c["name"])
        color = c.get("color") or st["color"]
        ls = CHECKPOINT_STYLE.get(c.get("checkpoint", "end"), "-")
        label = c.get("label") or (st["label"] + (f" ({c['checkpoint']})" if c.get("checkpoint") else ""))
        y = np.where(v > 0, v, np.nan)
        ax.plot(x, y, ls, color=color, lw=1.6 if ls == "-" else 1.2, label=label)
        if c.get("band") is not None:
            lo, hi = (np.where(np.asarray(b) > 0, np.asarray(b, np.float64), np.nan) for b in c["band"])
            ax.fill_between(x, lo, hi, color=color, alpha=0.12, lw=0)
    floor = max(floors) if floors else None
    ax.set_yscale("log")
    if floor is not None and floor > 0:
        ax.axhline(floor, color="k", ls=":", lw=1.0, label="numerical floor")
        lo = ax.get_ylim()[0]
        ax.axhspan(min(lo, floor), floor, color="0.85", alpha=0.5, lw=0, zorder=0)
        ax.set_ylim(bottom=min(lo, floor / 10))
    ax.set_xlabel(xlabel or ("eigenvalue index (normalised)" if normalise else "eigenvalue index"))
    ax.set_ylabel("NTK eigenvalue")
    if title:
        ax.set_title(title, fontsize=10)
    if legend and curves:
        ax.legend(fontsize=7, loc="lower left")
    ax.grid(True, which="major", alpha=0.3)
    return {"floor": floor, "x": "normalised index" if normalise else "index"}


def spectra_figure(path: str | os.PathLike, panels: Sequence[tuple[str, Sequence[Mapping]]], *,
                   suptitle: str | None = None, xlabel: str | None = None, data: Mapping | None = None
                   ) -> tuple[Path, Path | None]:
    """One :func:`spectra_axes` panel per ``(title, curves)``, side by side, saved with
    :func:`save`. The JSON holds ``data`` if given, else the curves as drawn."""
    if not panels:
        raise ValueError(f"{path}: spectra_figure needs at least one panel")
    fig, axes = new_figure(1, len(panels), panel=(5.0, 4.0))
    floors = []
    for ax, (title, curves) in zip(axes[0], panels):
        floors.append(spectra_axes(ax, curves, title=title, xlabel=xlabel)["floor"])
    if suptitle:
        fig.suptitle(suptitle)
    if data is None:
        data = {"panels": [{"title": t, "floor": f, "curves": [dict(c) for c in cs]}
                           for (t, cs), f in zip(panels, floors)]}
    return save(fig, path, data)


# ----------------------------------------------------------------------------- images


def image_grid_figure(path: str | os.PathLike, images: Sequence[tuple[str, np.ndarray]], *, ncols: int = 4,
                      suptitle: str | None = None, data: Mapping | None = None) -> tuple[Path, Path | None]:
    """Images in a grid, each ``(title, (H, W, 3) or (H, W) array in [0, 1])``; values are
    clipped to ``[0, 1]``. ``data`` (e.g. the metrics shown in the titles) goes to the JSON."""
    fig, axes = panel_grid(len(images), ncols, panel=(3.0, 3.2))
    for ax, (title, img) in zip(axes, images):
        a = np.clip(np.asarray(img, np.float64), 0.0, 1.0)
        ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return save(fig, path, data)


def grid_params_figure(path: str | os.PathLike, levels: Sequence[tuple[str, np.ndarray]], *,
                       suptitle: str | None = None, data: Mapping | None = None) -> tuple[Path, Path | None]:
    """Learned grid parameters as grey-scale images (the paper's Fig. 12).

    ``levels``: ``(title, (r, r, k) array)`` with rows = y and columns = x (a 2-D level
    table ``(r*r, k)`` reshaped C-order, axis 0 = x fastest). One row of panels per level,
    one column per feature; each panel is scaled to its own min..max (colour bar).
    """
    k = max(int(np.asarray(a).shape[-1]) for _, a in levels)
    fig, axes = new_figure(len(levels), k, panel=(3.2, 3.0))
    for row, (title, arr) in zip(axes, levels):
        arr = np.asarray(arr, np.float64)
        for j, ax in enumerate(row):
            if j >= arr.shape[-1]:
                ax.axis("off")
                continue
            im = ax.imshow(arr[..., j], cmap="gray", interpolation="nearest")
            ax.set_title(f"{title}, feature {j}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle)
    return save(fig, path, data)


def activation_regions_figure(path: str | os.PathLike, maps: Sequence[tuple[str, np.ndarray, int]], *,
                              ncols: int = 3, seed: int = 0, data: Mapping | None = None
                              ) -> tuple[Path, Path | None]:
    """Per-pixel activation-region maps (the paper's Fig. 13).

    ``maps``: ``(name, (H, W) int pattern ids, number of regions)``. Ids are coloured by a
    fixed random permutation of a cyclic colour map (so neighbouring ids differ visibly);
    the title carries the count.
    """
    from matplotlib import colormaps

    fig, axes = panel_grid(len(maps), ncols, panel=(3.2, 3.4))
    rng = np.random.default_rng(seed)
    for ax, (name, ids, count) in zip(axes, maps):
        ids = np.asarray(ids)
        hues = rng.permutation(max(int(ids.max()) + 1, 1)) / max(int(ids.max()) + 1, 1)
        ax.imshow(colormaps["hsv"](hues[ids])[..., :3], interpolation="nearest")
        ax.set_title(f"{name}: {count} regions", fontsize=9)
    return save(fig, path, data)


# ----------------------------------------------------------------------------- curves


def curves_figure(path: str | os.PathLike, panels: Sequence[tuple[str, str, Sequence[Mapping]]], *,
                  logy: Sequence[bool] | None = None, suptitle: str | None = None,
                  data: Mapping | None = None, xlabel: str = "epoch") -> tuple[Path, Path | None]:
    """Line plots, one panel per ``(title, ylabel, curves)``; a curve is ``{"name", "x",
    "y"}`` (``name`` picks the colour, optional ``label``, ``linestyle``, ``marker``, ``color``).
    ``logy[i]`` makes panel ``i``'s y axis logarithmic. The JSON holds ``data`` or the curves."""
    fig, axes = new_figure(1, len(panels), panel=(4.8, 3.8))
    for i, (ax, (title, ylabel, curves)) in enumerate(zip(axes[0], panels)):
        for c in curves:
            st = style(c["name"])
            ax.plot(np.asarray(c["x"]), np.asarray(c["y"], np.float64), linestyle=c.get("linestyle", "-"),
                    marker=c.get("marker"), ms=4, color=c.get("color") or st["color"], label=c.get("label", st["label"]))
        if logy is not None and logy[i]:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    if data is None:
        data = {"panels": [{"title": t, "ylabel": yl, "curves": [dict(c) for c in cs]} for t, yl, cs in panels]}
    return save(fig, path, data)


def bar_figure(path: str | os.PathLike, values: Mapping[str, Mapping[str, float]], *, ylabel: str,
               title: str | None = None, logy: bool = False) -> tuple[Path, Path | None]:
    """Grouped bars: ``values[name][series]`` (e.g. ``{"baseline": {"0 -> end": 0.8}}``);
    one group per name (coloured by :func:`style`), one hatch per series."""
    names = list(values)
    series = list(dict.fromkeys(s for v in values.values() for s in v))
    fig, axes = new_figure(1, 1, panel=(max(4.5, min(12.0, 0.45 * len(names) * max(1, len(series)))), 3.8))
    ax = axes[0, 0]
    width = 0.8 / max(1, len(series))
    hatches = ["", "//", "..", "xx"]
    for j, s in enumerate(series):
        for i, n in enumerate(names):
            v = values[n].get(s)
            if v is None or not math.isfinite(v):
                continue
            ax.bar(i + (j - (len(series) - 1) / 2) * width, v, width, color=style(n)["color"],
                   hatch=hatches[j % len(hatches)], edgecolor="k", lw=0.5, label=s if i == 0 else None)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    return save(fig, path, {"values": values, "ylabel": ylabel})


def prediction_figure(path: str | os.PathLike, name: str, predictions: Sequence[Mapping]) -> tuple[Path, Path | None]:
    """Predicted (the linearised network from a checkpoint: replayed through the run's
    minibatches, dashed; SGD's expected step, dotted) against measured (solid) full-data loss
    through training, and the residual's energy per eigenvalue band at the
    checkpoint, predicted and measured at the end. ``predictions``: dicts of
    :func:`ntkgrid.evidence.predicted_vs_measured`, one per starting checkpoint."""
    fig, axes = new_figure(1, 2, panel=(5.0, 3.8))
    ax, bx = axes[0]
    color = style(name)["color"]
    measured_drawn = False
    for k, p in enumerate(predictions):
        if not measured_drawn:
            ax.plot(p["epochs"], p["measured"], "-", color=color, lw=1.8, label="measured (full image)")
            measured_drawn = True
        if not p["stable"]:  # the linear prediction diverges: nothing finite to draw
            ax.plot([], [], "--", color=_shade(color, 0.6 + 0.3 * k),
                    label=f"from epoch {p['from_epoch']}: unstable (lr > lr_crit = {p['critical_learning_rate']:.3g})")
            continue
        pred = np.asarray(p["predicted"], np.float64)
        ok = np.isfinite(pred) & (pred > 0)
        ax.plot(np.asarray(p["epochs"])[ok], pred[ok], "--", color=_shade(color, 0.6 + 0.3 * k), marker="o", ms=3,
                label=f"replay from epoch {p['from_epoch']} (max rel. err. {p['max_relative_error']:.2f})")
        if p.get("predicted_expected") is not None:
            exp = np.asarray(p["predicted_expected"], np.float64)
            ok = np.isfinite(exp) & (exp > 0)
            ax.plot(np.asarray(p["epochs"])[ok], exp[ok], ":", color=_shade(color, 0.6 + 0.3 * k), marker="x",
                    ms=3, label=f"expected step from epoch {p['from_epoch']}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE")
    ax.set_title(f"{name}: loss, predicted vs measured")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    if predictions:
        p = next((q for q in predictions if q["stable"]), predictions[0])
        edges = np.asarray(p["edges"], np.float64)
        centers = np.sqrt(np.maximum(edges[:-1], edges[1] / 10) * edges[1:])
        series = [(f"at epoch {p['from_epoch']}", p["bands_start"], "-", "o"),
                  (f"expected step at epoch {p['end_epoch']}", p["bands_predicted_end"], "--", "s")]
        if p.get("bands_replay_end") is not None:
            series.append((f"replay at epoch {p['end_epoch']}", p["bands_replay_end"], "-.", "d"))
        if p.get("bands_measured_end") is not None:
            series.append((f"measured at epoch {p['end_epoch']}", p["bands_measured_end"], ":", "^"))
        top = 0.0
        for label, values, ls, marker in series:
            v = np.asarray(values, np.float64)
            ok = np.isfinite(v) & (v > 0)
            bx.plot(centers[ok], v[ok], ls, marker=marker, ms=4, color=color, label=label)
            top = max(top, float(v[ok].max()) if ok.any() else 0.0)
        bx.set_xscale("log")
        bx.set_yscale("log")
        if top > 0:  # a fully decayed band is ~1e-280: show 12 decades below the largest
            bx.set_ylim(bottom=top * 1e-12, top=top * 3)
        bx.set_xlabel("eigenvalue band (decade centre; first band: below the floor)")
        bx.set_ylabel("residual energy (MSE share)")
        bx.set_title("residual per eigenvalue band")
        bx.grid(True, alpha=0.3)
        bx.legend(fontsize=7)
    return save(fig, path, {"name": name, "predictions": [dict(p) for p in predictions]})
