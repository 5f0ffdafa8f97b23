"""ntkgrid.plots: colours, JSON conversion, and the figures' files and drawn data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from ntkgrid import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_no_global_backend_change():
    before = matplotlib.get_backend()
    fig, _ = plots.new_figure(1, 2)
    assert fig.canvas.__class__.__name__ == "FigureCanvasAgg"
    assert matplotlib.get_backend() == before


def test_style_families_and_shades():
    base = {n: plots.style(n)["color"] for n in ("baseline", "fourier", "multigrid", "hashgrid", "mulfagrid")}
    assert len(set(base.values())) == 5
    from matplotlib.colors import to_rgb

    lum = lambda c: sum(to_rgb(c))  # noqa: E731 - lighter shades have a larger sum
    assert lum(plots.style("fourier_low")["color"]) > lum(plots.style("fourier_mid")["color"]) > lum(
        plots.style("fourier_high")["color"]) - 1e-12
    assert lum(plots.style("multigrid_no_grid")["color"]) > lum(plots.style("multigrid")["color"])
    assert plots.style("fourier_high")["label"] == "fourier_high"
    assert plots.style("something_else")["color"] == plots.style("something_else")["color"]


def test_to_jsonable():
    d = plots.to_jsonable({"a": np.array([1.0, np.nan, np.inf]), "b": np.float32(2.5), "c": (1, 2),
                           "p": Path("x/y"), "m": np.arange(4).reshape(2, 2), "n": float("nan"), 3: True})
    assert d == {"a": [1.0, None, None], "b": 2.5, "c": [1, 2], "p": "x/y", "m": [[0, 1], [2, 3]], "n": None,
                 "3": True}
    json.dumps(d, allow_nan=False)


def test_save_replaces_suffix_and_writes_both(tmp_path):
    fig, axes = plots.new_figure()
    axes[0, 0].plot([0, 1], [1, 2])
    png, js = plots.save(fig, tmp_path / "sub" / "fig.png", {"x": np.array([1, 2])})
    assert png == tmp_path / "sub" / "fig.png" and js == tmp_path / "sub" / "fig.json"
    assert _png_size(png)[0] > 100
    assert json.loads(js.read_text()) == {"x": [1, 2]}
    png2, js2 = plots.save(fig, tmp_path / "nodata")
    assert png2.exists() and js2 is None and not (tmp_path / "nodata.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_spectra_axes_floor_and_log_scale():
    fig, axes = plots.new_figure()
    ax = axes[0, 0]
    a = np.array([10.0, 1.0, 1e-3, 1e-9, -1e-14])  # a negative (noise) eigenvalue
    b = np.geomspace(5.0, 1e-2, 8)  # another length: x becomes normalised
    info = plots.spectra_axes(ax, [{"name": "baseline", "values": a, "checkpoint": "end", "floor": 1e-13},
                                   {"name": "multigrid", "values": b, "checkpoint": "middle", "floor": 1e-12}])
    assert info == {"floor": 1e-12, "x": "normalised index"}
    assert ax.get_yscale() == "log"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert lines["baseline (end)"].get_linestyle() == "-"
    assert lines["multigrid (middle)"].get_linestyle() == "--"
    y = lines["baseline (end)"].get_ydata()
    assert np.isnan(y[-1]) and y[0] == 10.0  # non-positive values are not drawn
    floor_line = lines["numerical floor"]
    assert np.allclose(floor_line.get_ydata(), 1e-12)
    assert ax.get_ylim()[0] <= 1e-12 / 10 * 1.0001
    np.testing.assert_allclose(lines["multigrid (middle)"].get_xdata(), np.linspace(0, 1, 8))


def test_spectra_figure_json_holds_the_curves(tmp_path):
    curves = [{"name": "fourier", "values": np.array([3.0, 2.0, 1.0]), "checkpoint": "end", "floor": 1e-15}]
    png, js = plots.spectra_figure(tmp_path / "s", [("one", curves), ("two", curves)])
    w, h = _png_size(png)
    assert w > h  # two panels side by side
    data = json.loads(js.read_text())
    assert [p["title"] for p in data["panels"]] == ["one", "two"]
    assert data["panels"][0]["curves"][0]["values"] == [3.0, 2.0, 1.0]
    assert data["panels"][0]["floor"] == 1e-15


def test_image_grid_and_grid_params(tmp_path):
    img = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32) * 1.5  # out of range: clipped
    png, js = plots.image_grid_figure(tmp_path / "g", [("a", img), ("b", img[..., 0]), ("c", img)], ncols=2,
                                      data={"psnr": [1.0, math.nan]})
    assert png.exists() and json.loads(js.read_text()) == {"psnr": [1.0, None]}
    levels = [("level 0", np.zeros((4, 4, 2))), ("level 1", np.arange(27.0).reshape(3, 3, 3))]
    png, js = plots.grid_params_figure(tmp_path / "grid", levels)
    assert png.exists() and js is None


def test_activation_regions_and_curves_and_bars(tmp_path, monkeypatch):
    figs = []
    real_save = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path, data=None: (figs.append(fig), real_save(fig, path, data))[1])
    ids = np.arange(16).reshape(4, 4) % 5
    png, js = plots.activation_regions_figure(tmp_path / "ar", [("baseline", ids, 5)], data={"count": 5})
    assert png.exists() and json.loads(js.read_text()) == {"count": 5}
    png, js = plots.curves_figure(tmp_path / "c", [("loss", "MSE", [
        {"name": "baseline", "x": [1, 2], "y": [0.5, 0.25]},
        {"name": "baseline", "x": [0, 2], "y": [0.6, 0.2], "linestyle": "none", "marker": "o", "label": "measured"}])],
        logy=[True])
    assert json.loads(js.read_text())["panels"][0]["curves"][0]["y"] == [0.5, 0.25]
    lines = {ln.get_label(): ln for ln in figs[-1].axes[0].get_lines()}
    assert lines["measured"].get_linestyle() == "None" and lines["measured"].get_marker() == "o"
    assert lines["baseline"].get_linestyle() == "-"
    png, js = plots.bar_figure(tmp_path / "b", {"baseline": {"0 -> end": 0.5, "mid -> end": math.nan}},
                               ylabel="change")
    assert json.loads(js.read_text())["values"] == {"baseline": {"0 -> end": 0.5, "mid -> end": None}}


def test_spectra_figure_empty_inputs(tmp_path):
    with pytest.raises(ValueError, match="at least one panel"):
        plots.spectra_figure(tmp_path / "x", [])
    png, js = plots.spectra_figure(tmp_path / "y", [("nothing measured", [])])
    assert png.exists() and json.loads(js.read_text())["panels"][0]["floor"] is None


def test_prediction_figure_draws_an_unstable_prediction_as_a_note(tmp_path):
    """A linear prediction above lr_crit overflows; the figure says so instead of failing."""
    import numpy as np

    from ntkgrid import plots

    common = {"epochs": [0, 1, 2], "measured": [1.0, 0.5, 0.2], "edges": [0.0, 1e-3, 1e-2, 1e-1, 1.0],
              "bands_start": [0.1, 0.2, 0.3, 0.4], "bands_measured_end": [0.1, 0.1, 0.0, 0.0], "end_epoch": 2,
              "critical_learning_rate": 12.8}
    unstable = {**common, "from_epoch": 0, "predicted": [1.0, 1e200, np.inf], "stable": False,
                "max_relative_error": np.inf, "bands_predicted_end": [0.1, np.inf, np.inf, np.nan]}
    stable = {**common, "from_epoch": 1, "predicted": [0.5, 0.3, 0.2], "stable": True, "max_relative_error": 0.4,
              "bands_predicted_end": [0.1, 0.05, 0.01, 0.0]}
    png, js = plots.prediction_figure(tmp_path / "p", "baseline", [unstable, stable])
    assert png.stat().st_size > 1000 and js.exists()
