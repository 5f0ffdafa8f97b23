"""Tests for ntkgrid.occupancy and experiments.occupancy: metrics, settings, data, the CLI."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import trimesh

from experiments import occupancy as cli
from ntkgrid import occupancy as occ
from ntkgrid.data import DataError
from ntkgrid.data import meshes as M
from ntkgrid.presets import OCCUPANCY, OCCUPANCY_QUICK, OCCUPANCY_QUICK_LR_SCALE

from ._cases import write_off

TINY = ["--epochs", "2", "--pool-size", "3000", "--eval-size", "500", "--resolution", "24",
        "--render-steps", "24", "--mc-resolution", "16", "--ntk-points", "16", "--hidden", "16", "16",
        "--no-progress"]


# ----------------------------------------------------------------------------- metrics


def test_iou_against_hand_computed_values():
    pred = np.array([1, 1, 0, 0, 1, 0], bool)
    target = np.array([1, 0, 1, 0, 1, 0], bool)
    assert occ.iou(pred, target) == pytest.approx(2 / 4)  # |{0,4}| / |{0,1,2,4}|
    assert occ.iou(pred, pred) == 1.0
    assert occ.iou(pred, ~pred) == 0.0
    assert occ.iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0  # nothing to disagree on
    assert occ.iou(np.zeros((2, 2), bool), np.eye(2, dtype=bool)) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        occ.iou(pred, target[:3])


def test_occupancy_metrics_threshold_at_logit_zero():
    logits = np.array([2.0, -1.0, 0.5, -3.0, 0.0])  # predicted inside: 0, 2 (0.0 is not > 0)
    labels = np.array([[1.0], [1.0], [1.0], [0.0], [0.0]])  # inside: 0, 1, 2
    m = occ.occupancy_metrics(logits, labels)
    assert m["iou"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 5)
    assert m["inside_pred"] == pytest.approx(2 / 5) and m["inside_true"] == pytest.approx(3 / 5)


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize("name, key, matched", [
    ("Armadillo", "armadillo", True), ("dragon_vrip", "dragon", True), ("happy_vrip", "happy_buddha", True),
    ("buddha", "happy_buddha", True), ("bunny", "armadillo", False), ("default_shape", "armadillo", False),
])
def test_mesh_preset_key(name, key, matched):
    assert occ.mesh_preset_key(name) == (key, matched)


def test_configs_for_paper_quick_and_overrides():
    paper = occ.configs_for("dragon", "paper")
    assert paper["multigrid"] == OCCUPANCY["dragon"]["multigrid"]
    assert paper["multigrid"].encoding.max_res == 136 and paper["fourier"].encoding.num_frequencies == 7
    assert paper["baseline"].hidden == (256,) * 8 and paper["baseline"].loss == "bce"
    quick = occ.configs_for("x", "quick", ["multigrid"], seed=3, epochs=7, hidden=(4,))
    q = quick["multigrid"]
    assert q.encoding == OCCUPANCY["armadillo"]["multigrid"].encoding
    assert (q.epochs, q.seed, q.hidden, q.ntk_points) == (7, 3, (4,), 256)
    assert q.checkpoint_epochs() == (3, 7) and paper["baseline"].checkpoint_epochs() == (0, 2000, 4000)
    assert q.learning_rate == pytest.approx(OCCUPANCY["armadillo"]["multigrid"].learning_rate * 20.0)
    assert q.batch_size == OCCUPANCY_QUICK["armadillo"]["multigrid"].batch_size == 256
    for mesh, table in OCCUPANCY_QUICK.items():  # only the run length, batch and lr differ from Table 4
        for name, cfg in table.items():
            paper_cfg = OCCUPANCY[mesh][name]
            run = {f: getattr(paper_cfg, f) for f in ("epochs", "batch_size", "ntk_points", "learning_rate")}
            assert cfg.replace(**run) == paper_cfg
            assert cfg.learning_rate == pytest.approx(paper_cfg.learning_rate * OCCUPANCY_QUICK_LR_SCALE)
    assert occ.configs_for("x", "paper", ["fourier"], learning_rate=3.0)["fourier"].learning_rate == 3.0
    with pytest.raises(ValueError, match="unknown encoding"):
        occ.configs_for("x", "quick", ["hashgridd"])
    with pytest.raises(ValueError, match="preset"):
        occ.configs_for("x", "fast")
    setup = occ.QUICK_SETUP
    assert setup.epoch_size(q.replace(batch_size=10)) == setup.steps_per_epoch * 10
    assert setup.epoch_size(q.replace(batch_size=10**6)) == setup.pool_uniform + setup.pool_surface


# ----------------------------------------------------------------------------- data


def test_prepare_data_pools_labels_and_cache(tmp_path):
    box = M.mesh_from_arrays(*_box_arrays(), source="box")  # normalised: [0,1] x [0.25,0.75] x [0.25,0.75]
    setup = occ.QUICK_SETUP.replace(pool_uniform=600, pool_surface=400, eval_uniform=300, eval_surface=200)
    data = occ.prepare_data(box, setup, seed=1, ntk_points=50, cache_dir=tmp_path)
    assert data.train_x.shape == (1000, 3) and data.train_y.shape == (1000, 1)
    assert data.eval["uniform"][0].shape == (300, 3) and data.eval["surface"][0].shape == (200, 3)
    np.testing.assert_array_equal(data.ntk_x, data.eval["uniform"][0][:50])
    # labels agree with the analytic box
    for x, y in [(data.train_x, data.train_y[:, 0]), *data.eval.values()]:
        inside = np.all((x > [0, 0.25, 0.25]) & (x < [1, 0.75, 0.75]), axis=1)
        assert np.mean(inside == (y > 0.5)) > 0.99
    # held-out points are not training points
    assert not (set(map(tuple, data.eval["uniform"][0])) & set(map(tuple, data.train_x)))
    assert len(list(tmp_path.glob("pools_*.npz"))) == 2
    again = occ.prepare_data(box, setup, seed=1, ntk_points=50, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.train_x, data.train_x)


def test_prepare_data_rejects_a_surface_enclosing_no_volume():
    sheet = M.mesh_from_arrays([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]],
                               source="sheet.off")
    setup = occ.QUICK_SETUP.replace(pool_uniform=200, pool_surface=100, eval_uniform=50, eval_surface=50)
    with pytest.warns(UserWarning, match="not watertight"), pytest.raises(DataError, match="sheet.off: none of"):
        occ.prepare_data(sheet, setup)


def _box_arrays():
    b = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    return b.vertices, b.faces


# ----------------------------------------------------------------------------- the CLI


def test_main_tiny_run_writes_outputs_and_reports_bad_meshes(tmp_path, capsys):
    good = tmp_path / "blob.ply"
    trimesh.creation.icosphere(subdivisions=2, radius=1.0).export(good)
    not_mesh = tmp_path / "notes.obj"
    not_mesh.write_text("this is not a mesh\n")
    empty = tmp_path / "empty.off"
    empty.write_text("")
    degenerate = write_off(tmp_path / "degenerate.off", [[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]],
                           [[0, 1, 2], [1, 2, 3]])  # collinear: every face has zero area
    sheet = write_off(tmp_path / "sheet.off", [[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    out = tmp_path / "run"
    argv = ["--mesh", str(not_mesh), str(good), str(empty), str(degenerate), str(sheet), "--out", str(out), *TINY]
    with pytest.warns(UserWarning):  # the open sheet is labelled by winding numbers, with a warning
        rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback" not in err
    for bad in (not_mesh, empty, degenerate, sheet):
        assert f"error: {bad}:" in err
    assert "4 of 5 mesh(es) failed" in err
    # the good mesh ran completely
    mdir = out / "blob"
    for f in ["render.png", "metrics.json", "surface_baseline.ply", "surface_fourier.ply", "surface_multigrid.ply",
              "baseline/summary.json", "fourier/metrics.jsonl", "multigrid/spectra/epoch_000002.npz"]:
        assert (mdir / f).is_file(), f
    for f in ["spectra.png", "spectra.json", "results.json", "report.md"]:
        assert (out / f).is_file(), f
    assert list((out / "pools").glob("pools_*.npz"))
    res = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in res["meshes"]] == ["blob"]
    assert sorted(e["mesh"] for e in res["errors"]) == ["degenerate", "empty", "notes", "sheet"]
    run = res["meshes"][0]["runs"]["multigrid"]
    assert [h["epoch"] for h in run["history"]] == [1, 2]  # quick: middle and end
    for key in ("iou_uniform", "iou_surface", "accuracy_uniform", "accuracy_surface"):
        assert 0.0 <= run["final"][key] <= 1.0
    assert run["config"]["hidden"] == [16, 16] and run["config"]["epochs"] == 2
    report = (out / "report.md").read_text()
    assert "| blob | multigrid |" in report and "* sheet: " in report


def test_download_offline_is_a_clear_error(tmp_path, capsys, monkeypatch):
    def offline(*_a, **_k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    rc = cli.main(["--download", "bunny", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "o"), *TINY])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "bunny.tar.gz" in err and "--mesh PATH" in err


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert cli.main(["--out", str(tmp_path), "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--encodings", "nerf"])
