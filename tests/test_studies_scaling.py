"""The single-image studies end to end on tiny settings (16 px, 2 epochs, 16 NTK points):
ntkgrid.studies.scaling, and ntk_evolution and inspect_grid on the same runs (one module, so the
runs train once). Their shared part without training: tests/test_studies_image_runs.py; the
command-line programs: tests/test_experiments.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from ntkgrid.studies.image_runs import ImageStudyOptions
from ntkgrid.studies.inspect_grid import run_inspect_grid
from ntkgrid.studies.ntk_evolution import run_ntk_evolution
from ntkgrid.studies.scaling import run_scaling

TINY = dict(size=16, epochs=2, ntk_points=16)
TWO = ("baseline", "multigrid_coarse")


def _quiet(message: str) -> None:
    pass


def _json(path: Path):
    return json.loads(Path(path).read_text())


def _is_png(path: Path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


@pytest.fixture(scope="module")
def scaling_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("scaling")
    res = run_scaling(ImageStudyOptions(configs=TWO, out=out, **TINY), log=_quiet, progress=False)
    assert not res.runs.errors and res.analysis["table"] == (out / "table.md").read_text()
    return out


def test_scaling_outputs(scaling_dir):
    for name in ("regressed", "spectra", "curves"):
        assert _is_png(scaling_dir / f"{name}.png"), name
    table = _json(scaling_dir / "table.json")
    rows = {r["config"]: r for r in table["rows"]}
    assert set(rows) == {"baseline", "multigrid_coarse"}
    assert rows["baseline"]["paper_psnr"] == 20.0 and rows["multigrid_coarse"]["paper_ms_ssim"] == 0.37
    for r in rows.values():
        assert 5 < r["psnr"] < 80 and 0 <= r["ms_ssim"] <= 1 and r["epochs"] == 2
    assert "| multigrid_coarse | k=2, L=1, x=12 |" in (scaling_dir / "table.md").read_text()
    spectra = _json(scaling_dir / "spectra.json")
    assert [len(p["curves"]) for p in spectra["panels"]] == [2, 4, 2]  # middle + end per config shown
    assert (scaling_dir / "images" / "baseline.png").exists()


def test_scaling_paper_step_size_diverges_under_the_literal_reading_and_is_reported(tmp_path):
    """Table 3's lr 100 (batch 32) is beyond the stable step of the literal reading (see
    experiments/RECIPE.md): the run stops at epoch 1, and the table says so instead of failing;
    the paper preset's own reading (mean-field head) trains at the same lr."""
    out = tmp_path / "paper"
    opts = ImageStudyOptions(preset="paper", configs=("baseline",), **TINY)
    res = run_scaling(dataclasses.replace(opts, reading="literal", out=out), log=_quiet,
                      progress=False)
    (row,) = res.analysis["rows"]
    assert row == _json(out / "table.json")["rows"][0]
    assert row["lr"] == 100.0 and row["diverged"] and row["diverged_epoch"] == 1
    assert "diverged at epoch 1" in (out / "table.md").read_text()
    run_scaling(dataclasses.replace(opts, out=tmp_path / "own"), log=_quiet, progress=False)
    (row,) = _json(tmp_path / "own" / "table.json")["rows"]
    assert row["lr"] == 100.0 and not row["diverged"] and row["psnr"] > 10


def test_ntk_evolution_reuses_scaling_runs(scaling_dir, tmp_path):
    runs = scaling_dir / "runs"
    stamp = {p: p.stat().st_mtime_ns for p in runs.rglob("summary.json")}
    out = tmp_path / "evo"
    res = run_ntk_evolution(ImageStudyOptions(configs=TWO, runs_dir=runs, out=out, **TINY), log=_quiet,
                            progress=False)
    assert res.problems == () and not res.runs.errors
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp  # nothing retrained
    ev = _json(out / "evolution.json")
    for name in ("baseline", "multigrid_coarse"):
        ch = ev["configs"][name]["kernel_change"]
        assert set(ch) == {"start->end", "start->middle", "middle->end"}
        assert all(0 < v < 10 for v in ch.values())
        assert ev["configs"][name]["epochs"] == {"start": 0, "middle": 1, "end": 2}
    assert _is_png(out / "spectra.png") and _is_png(out / "kernel_change.png")


def test_ntk_evolution_predicts_training_from_the_training_set_kernel(tmp_path):
    """Without an NTK-points cap the kernels are on every pixel, so the kernel-regression
    prediction of the full-image loss is made from epoch 0 and from the middle checkpoint."""
    out = tmp_path / "evo"
    run_ntk_evolution(ImageStudyOptions(configs=("baseline",), size=16, epochs=4, learning_rate=5.0, out=out),
                      log=_quiet, progress=False)
    (first, middle) = _json(out / "evolution.json")["configs"]["baseline"]["prediction"]
    assert (first["from_epoch"], middle["from_epoch"], middle["end_epoch"]) == (0, 2, 4)
    assert first["stable"] and first["critical_learning_rate"] > 5
    assert 0 <= middle["max_relative_error"] < 0.5  # a 2x512 ReLU net near its linear regime
    data = _json(out / "prediction_baseline.json")["predictions"][1]
    assert data["epochs"] == [2, 3, 4] and data["predicted"][0] == pytest.approx(data["measured"][0], rel=1e-6)
    assert _is_png(out / "prediction_baseline.png") and "## Predicted against measured" in (out / "report.md").read_text()


def test_inspect_grid_outputs(scaling_dir, tmp_path):
    out = tmp_path / "grid"
    res = run_inspect_grid(ImageStudyOptions(configs=TWO, runs_dir=scaling_dir / "runs", out=out, **TINY),
                           log=_quiet, progress=False)
    assert set(res.analysis["regions"]) == set(TWO)
    assert _is_png(out / "grid_multigrid_coarse.png") and _is_png(out / "activation_regions.png")
    stats = _json(out / "grid_multigrid_coarse.json")["levels"]
    assert [(s["level"], s["feature"], s["resolution"]) for s in stats] == [(0, 0, 12), (0, 1, 12)]
    with np.load(out / "grid_multigrid_coarse.npz") as z:
        assert z["level_0"].shape == (12, 12, 2) and z["unused_0"].shape == (12, 12)
    regions = _json(out / "activation_regions.json")["regions"]
    for r in regions.values():
        assert 1 <= r["count"] <= 256 and len(r["per_layer"]) == 2 and max(r["per_layer"]) <= r["count"]
