"""ntkgrid.sweep.configs: command-line overrides of a preset (``--config-json`` files are tested end to end in
tests/test_experiments.py)."""

from __future__ import annotations

import pytest

from ntkgrid import presets, sweep


def test_apply_overrides_scales_checkpoints():
    cfg = presets.IMAGENET_QUICK["baseline"]  # epochs 30, checkpoints (15, 30)
    assert sweep.apply_overrides(cfg, epochs=4).checkpoint_epochs() == (2, 4)
    assert sweep.apply_overrides(cfg) is cfg
    assert sweep.apply_overrides(presets.IMAGENET["baseline"], epochs=4).checkpoint_epochs() == (0, 2, 4)
    with pytest.raises(ValueError):
        sweep.apply_overrides(cfg, epochs=0)
