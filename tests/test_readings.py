"""ntkgrid.readings: every candidate reading is a valid config, absolute (not cumulative), and the
presets apply the ones they name."""

from __future__ import annotations

import pytest

from ntkgrid import presets as P
from ntkgrid import readings as R
from ntkgrid.config import TrainConfig


def test_readings_are_valid_configs_and_reading_is_absolute():
    base = P.get(P.SCALING, "paper", "fourier_mid")
    for name, changes in R.READINGS.items():
        cfg = R.reading(base, name)  # validates the fields
        assert set(changes) <= set(R.READING_FIELDS), name
        for f in R.READING_FIELDS:  # every reading field is the reading's or the literal default
            assert getattr(cfg, f) == changes.get(f, getattr(TrainConfig(), f)), (name, f)
        assert (cfg.encoding, cfg.learning_rate, cfg.batch_size, cfg.epochs) == \
            (base.encoding, base.learning_rate, base.batch_size, base.epochs)
    assert R.READINGS["literal"] == {}
    with pytest.raises(KeyError, match="unknown reading"):
        R.reading(base, "bogus")


def test_the_paper_tables_train_under_their_named_readings():
    for key, cfg in P.SCALING.items():
        assert cfg == R.reading(P._SCALING_LITERAL[key], P.SCALING_READING)
    assert P.SCALING_READING != "literal" and cfg.parameterization == R.READINGS[P.SCALING_READING]["parameterization"]
    assert P.READINGS is R.READINGS and P.reading is R.reading  # re-exported, one owner
