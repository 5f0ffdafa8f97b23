"""ntkgrid.studies.tune without a search: what a trial samples, and bad input or a missing Optuna
reported before any trial. The searches end to end: tests/test_experiments.py (image) and
tests/test_occupancy.py (occupancy)."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from ntkgrid import presets
from ntkgrid.studies import tune

optuna = pytest.importorskip("optuna")


def test_suggest_applies_the_trial_to_the_base_config():
    base = presets.IMAGENET_QUICK["multigrid"]
    params = {"learning_rate": 3.0, "batch_size": 32, "features_per_level": 2, "num_levels": 2, "min_res": 9,
              "max_res": 40}
    cfg = tune.suggest(optuna.trial.FixedTrial(params), base, "multigrid", (1.0, 60.0), (16, 256))
    assert (cfg.learning_rate, cfg.batch_size) == (3.0, 32)
    enc = cfg.encoding
    assert (enc.features_per_level, enc.num_levels, enc.min_res, enc.max_res) == (2, 2, 9, 40)
    assert (cfg.epochs, cfg.hidden) == (base.epochs, base.hidden)
    one = tune.suggest(optuna.trial.FixedTrial({**params, "num_levels": 1}), base, "multigrid", (1.0, 60.0), (16, 256))
    assert one.encoding.min_res == one.encoding.max_res == 9  # one level: no finest resolution sampled
    ff = tune.suggest(optuna.trial.FixedTrial({"learning_rate": 2.0, "batch_size": 64, "num_frequencies": 5}),
                      presets.IMAGENET_QUICK["fourier"], "fourier", (1.0, 60.0), (16, 256))
    assert ff.encoding.num_frequencies == 5


@pytest.mark.parametrize(("options", "needle"), [
    (tune.TuneOptions(trials=0), "--trials must be >= 1"),
    (tune.TuneOptions(lr_range=(5.0, 1.0)), "bad ranges"),
    (tune.TuneOptions(image="no_such_photo"), "bundled photos"),
    (tune.TuneOptions(task="occupancy", size=16), "--size is for --task image"),
    (tune.TuneOptions(task="occupancy", pool_size=1), "--pool-size must be >= 2"),
])
def test_bad_input_is_reported_before_any_trial(tmp_path, options, needle):
    with pytest.raises(tune.TuneInputError, match=needle):
        tune.run_tune(dataclasses.replace(options, out=tmp_path / "o"), log=lambda m: None)
    assert not (tmp_path / "o" / "study.db").exists()


def test_missing_optuna(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(tune.OptunaMissing):
        tune.run_tune(tune.TuneOptions())
