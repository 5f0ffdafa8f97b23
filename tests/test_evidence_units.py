"""ntkgrid.evidence's building blocks on hand-made records and run folders: which configs
are grids, the mean training curves, the spectra and off-diagonal share a run recorded at a
checkpoint, and the prediction's refusals (tests/test_evidence.py covers Theorem 1's rows,
curves and report; tests/test_experiments.py the pipeline on real runs)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ntkgrid import evidence
from ntkgrid.config import FourierConfig, HashGridConfig, MultiGridConfig, TrainConfig
from ntkgrid.spectrum import Spectrum
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
        {"runs": {"a": {"curve": _curve((0, 10.0, 1.0), (5, 20.0, 0.5), (10, 30.0, 0.25))},
                  "b": {"diverged": True, "curve": _curve((0, 1.0, 9.0))}}},
        {"runs": {"a": {"curve": _curve((0, 12.0, 3.0), (10, None, 0.75))}, "b": {"curve": []}}},
        {"runs": {}},
    ]
    out = evidence.training_curves(records, ["a", "b", "c"])
    assert list(out) == ["a"]  # b: diverged or no curve; c: no run
    assert out["a"] == {"epoch": [0, 10], "psnr": [11.0, None], "loss": [2.0, 0.5], "images": 2}


def _run_folder(tmp_path, epoch, top):
    run = tmp_path / f"run_{top}"
    save_spectra(spectra_path(run, epoch), epoch, {"total": Spectrum(np.array([top, 1.0]), 1e-15, 2, 0)})
    return run


def test_spectra_and_offdiag_of_a_recorded_checkpoint(tmp_path):
    run = {"run_path": str(_run_folder(tmp_path, 4, 7.0)), "checkpoints": {"middle": 2, "end": 4},
           "grid_offdiag_history": {"4": 0.125, 2: 0.5}}
    assert evidence._spectra(run, "end")["total"].lambda_max == 7.0
    assert evidence._spectra(run, "middle") is None  # no file at epoch 2
    assert evidence._spectra({**run, "diverged": True}, "end") is None
    assert evidence._spectra({k: v for k, v in run.items() if k != "run_path"}, "end") is None
    assert evidence._spectra({**run, "checkpoints": {}}, "end") is None
    assert evidence._offdiag(run, "end") == 0.125  # JSON keys are strings
    assert evidence._offdiag(run, "middle") == 0.5  # ...or ints before a round trip
    assert evidence._offdiag({"checkpoints": {"end": 4}}, "end") is None


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
