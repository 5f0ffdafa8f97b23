"""ntkgrid.evidence's building blocks on hand-made records and run folders: which configs
are grids, the mean training curves, the spectra and off-diagonal share a run recorded at a
checkpoint, and the prediction's refusals (tests/test_evidence.py covers Theorem 1's rows,
curves and report; tests/test_experiments.py the pipeline on real runs)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from ntkgrid import evidence
from ntkgrid.config import FourierConfig, HashGridConfig, MultiGridConfig, TrainConfig
from ntkgrid.spectrum import Spectrum
from ntkgrid.sweep.records import ImageRecord, RunRecord
from ntkgrid.training.runfolder import save_spectra, spectra_path


def test_grid_configs_names_the_grid_encodings_in_order():
    base = TrainConfig(hidden=(16,))
    configs = {"baseline": base.to_dict(), "fourier": base.replace(encoding=FourierConfig()).to_dict(),
               "multigrid": base.replace(encoding=MultiGridConfig()).to_dict(),
               "hashgrid": base.replace(encoding=HashGridConfig()).to_dict(), "odd": {}}
    assert evidence.grid_configs(configs) == ["multigrid", "hashgrid"]
    assert evidence.grid_configs({}) == []


def _curve(*rows):
    return [{"epoch": e, "psnr": p, "loss": lo} for e, p, lo in rows]


def test_training_curves_mean_over_images_on_common_epochs():
    records = [
        ImageRecord("i0", runs={"a": RunRecord("x", curve=_curve((0, 10.0, 1.0), (5, 20.0, 0.5), (10, 30.0, 0.25))),
                                "b": RunRecord("x", diverged=True, curve=_curve((0, 1.0, 9.0)))}),
        ImageRecord("i1", runs={"a": RunRecord("x", curve=_curve((0, 12.0, 3.0), (10, None, 0.75))),
                                "b": RunRecord("x", curve=())}),
        ImageRecord("i2", runs={}),
    ]
    out = evidence.training_curves(records, ["a", "b", "c"])
    assert list(out) == ["a"]  # b: diverged or no curve; c: no run
    assert out["a"] == {"epoch": [0, 10], "psnr": [11.0, None], "loss": [2.0, 0.5], "images": 2}


def _run_folder(tmp_path, epoch, top):
    run = tmp_path / f"run_{top}"
    save_spectra(spectra_path(run, epoch), epoch, {"total": Spectrum(np.array([top, 1.0]), 1e-15, 2, 0)})
    return run


def test_spectra_and_offdiag_of_a_recorded_checkpoint(tmp_path):
    # as read from results/<image_id>.json: the histories' epochs are strings there
    run = RunRecord.from_json({"run_dir": "r", "checkpoints": {"middle": 2, "end": 4},
                               "grid_offdiag_history": {"4": 0.125, "2": 0.5}})
    run = dataclasses.replace(run, run_path=str(_run_folder(tmp_path, 4, 7.0)))
    assert evidence._spectra(run, "end")["total"].lambda_max == 7.0
    assert evidence._spectra(run, "middle") is None  # no file at epoch 2
    assert evidence._spectra(dataclasses.replace(run, diverged=True), "end") is None
    assert evidence._spectra(dataclasses.replace(run, run_path=None), "end") is None
    assert evidence._spectra(dataclasses.replace(run, checkpoints={}), "end") is None
    assert evidence._offdiag(run, "end") == 0.125
    assert evidence._offdiag(run, "middle") == 0.5
    assert evidence._offdiag(RunRecord("r", checkpoints={"end": 4}), "end") is None


def test_prediction_refuses_runs_it_cannot_predict(tmp_path):
    cfg = TrainConfig(hidden=(16,), loss="mse")
    coords, targets = np.zeros((4, 2)), np.zeros((4, 3))
    no_folder = SimpleNamespace(config=cfg, out_dir=None, label="cat baseline", options={}, curve=[])
    with pytest.raises(ValueError, match="cat baseline: has no run folder to read its checkpoints from"):
        evidence.predicted_vs_measured(no_folder, coords, targets, 0)
    window = SimpleNamespace(config=cfg, out_dir=tmp_path, label="x", curve=[],
                             options={"ntk_selection": "window", "ntk_points": 2})
    with pytest.raises(ValueError, match="needs kernels on the whole training set, but its spectra were taken on "
                                         "2 window points"):
        evidence.predicted_vs_measured(window, coords, targets, 0)
    (tmp_path / "spectra").mkdir()
    np.save(tmp_path / "spectra" / "ntk_x.npy", np.zeros((3, 2)))
    other = SimpleNamespace(config=cfg, out_dir=tmp_path, label="x", curve=[], options={"ntk_selection": "all"})
    with pytest.raises(ValueError, match=r"its kernel points \(3, 2\) are not the \(4, 2\) training points"):
        evidence.predicted_vs_measured(other, coords, targets, 0)


def _spec(values):
    return Spectrum(np.asarray(values, np.float64), 1e-12, len(values), 0)


def _recorded_run(root, name, spectra_by_epoch, diverged=False):
    """A run folder holding only recorded spectra, and its record (checkpoints middle 2, end 4)."""
    run = root / name
    for epoch, spectra in spectra_by_epoch.items():
        save_spectra(spectra_path(run, epoch), epoch, {g: _spec(v) for g, v in spectra.items()})
    return RunRecord(f"runs/{name}", checkpoints={"start": None, "middle": 2, "end": 4}, diverged=diverged,
                     grid_offdiag_history={2: 0.5, 4: 0.25}, run_path=str(run))


def test_theorem1_on_recorded_spectra_against_a_brute_force_count(tmp_path):
    """Two images with recorded spectra (a third whose multigrid run diverged): per image and
    on the mean, "stated" holds where every eigenvalue of the MPE is at least the baseline's
    (floors 1e-12), counted here by hand; the own no-grid comparison is marked by construction."""
    base = {"total": [4.0, 3.0, 2.0, 1.0]}
    mpe = {0: [5.0, 3.0, 2.0, 1.5], 1: [3.0, 3.5, 2.0, 1.0]}  # image 0 holds, image 1 fails at index 0
    records = []
    for i in (0, 1, 2):
        d = tmp_path / f"img{i}"
        grid = {"total": mpe[i % 2], "grid": [0.5, 0.1, 0.0, 0.0], "no_grid": [2.0, 1.0, 0.5, 0.25]}
        records.append(ImageRecord(f"img{i}", runs={
            "baseline": _recorded_run(d, "baseline", {2: base, 4: base}),
            "multigrid": _recorded_run(d, "multigrid", {2: grid, 4: grid}, diverged=i == 2)}))
    cfg = TrainConfig(hidden=(16,))
    configs = {"baseline": cfg.to_dict(), "multigrid": cfg.replace(encoding=MultiGridConfig()).to_dict()}
    out = evidence.theorem1(records, configs, checkpoints=("middle", "end"), length=4, compute=False)
    assert out["mpe"] == ["multigrid"] and out["problems"] == []
    stated = [r for r in out["per_image"] if r["comparison"] == "stated"]
    assert [(r["image_id"], r["checkpoint"]) for r in stated] == [
        ("img0", "middle"), ("img0", "end"), ("img1", "middle"), ("img1", "end")]  # img2 diverged: left out
    for r in stated:
        a, b = np.array(mpe[int(r["image_id"][-1])]), np.array(base["total"])
        assert r["holds"] == bool(np.all(a >= b - 2e-12))
        assert r["fraction"] == np.mean(a >= b - 2e-12) and r["n_compared"] == 4
        assert r["grid_offdiag_fraction"] == {"middle": 0.5, "end": 0.25}[r["checkpoint"]]
    assert {r["first_below"] for r in stated if r["image_id"] == "img1"} == {0}
    own = [r for r in out["per_image"] if r["comparison"] == "own_no_grid"]
    assert len(own) == 4 and all(r["by_construction"] and r["holds"] for r in own)
    assert not [r for r in out["per_image"] if r["comparison"] == "fan_in_matched"]  # neither recorded nor computed
    mean_mpe = (np.array(mpe[0]) + np.array(mpe[1])) / 2  # [4, 3.25, 2, 1.25] >= [4, 3, 2, 1]
    (end,) = [r for r in out["on_mean"] if (r["checkpoint"], r["comparison"]) == ("end", "stated")]
    assert end["images"] == 2 and end["holds"] == bool(np.all(mean_mpe >= np.array(base["total"]) - 2e-12))
    np.testing.assert_allclose(end["log10_ratio"], np.log10(mean_mpe / np.array(base["total"])))
    assert out["summary"]["multigrid/end/stated"] == {"images_holding": 1, "images_compared": 2}
    top = [c for c in out["cause"] if (c["image_id"], c["checkpoint"]) == ("img1", "end")][0]
    assert top["top_mpe"] == mpe[1][:3] and top["top_baseline"] == base["total"][:3] and top["grid_lambda_max"] == 0.5


@pytest.mark.parametrize("replay, expected, measured, share", [
    ([1.0, 0.5, 0.30], [1.0, 0.5, 0.20], [1.0, 0.5, 0.25], 1.0),  # replay and expected step equally far
    ([1.0, 0.5, 0.26], [1.0, 0.5, 0.35], [1.0, 0.5, 0.25], 0.1),  # the minibatch order explains 90%
    ([1.0, 4.0, 1e70], [1.0, 0.5, 0.35], [1.0, 0.5, 0.25], None),  # the replay diverges: no share
    ([1.0, 4.0, np.inf], [1.0, 0.5, 0.35], [1.0, 0.5, 0.25], None),
    ([1.0, 0.5, 0.26], [1.0, 0.5, 0.25], [1.0, 0.5, 0.25], None),  # the expected step is exact
])
def test_kernel_motion_share(replay, expected, measured, share):
    got = evidence.kernel_motion_share(np.array(replay), np.array(expected), np.array(measured))
    if share is None:
        assert np.isnan(got)
    else:
        assert got == pytest.approx(share, rel=1e-12)
