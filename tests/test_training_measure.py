"""Tests for ntkgrid.training.measure: the kernel points, the out-of-memory fallback, the MS-SSIM oracle."""

from __future__ import annotations

import numpy as np
import pytest

from ntkgrid.config import MultiGridConfig
from ntkgrid.training import fit, predict, training_set_points

from ._training_cases import MULTIGRID, SMALL, astronaut


def test_training_set_points_default_cap_and_errors(monkeypatch):
    x, _ = astronaut(16)
    pts, sel = training_set_points(x, None, (16, 16))
    assert pts is x and sel == {"ntk_points": 256, "ntk_selection": "all", "ntk_window": [16, 16]}
    pts, sel = training_set_points(x, 64, (16, 16))
    assert sel["ntk_selection"] == "window" and sel["ntk_window"] == [8, 8] and pts.shape == (64, 2)
    assert training_set_points(x, 0, (16, 16))[0] is None
    with pytest.raises(ValueError, match="ntk_points=300 exceeds the 256 training points"):
        training_set_points(x, 300, (16, 16))
    from ntkgrid import presets

    monkeypatch.setitem(presets.NTK_POINTS_CAP, "cpu", 100)
    with pytest.warns(RuntimeWarning, match="100 of the 256 training points"):
        pts, sel = training_set_points(x, None, (16, 16))
    assert sel == {"ntk_points": 100, "ntk_selection": "window", "ntk_window": [10, 10]}
    _, sel = training_set_points(x, 50, None)  # not an image: a uniform random subset
    assert sel["ntk_selection"] == "random" and sel["ntk_points"] == 50


def test_out_of_memory_kernel_falls_back_to_the_cpu_cap_with_a_warning(monkeypatch):
    """A kernel that does not fit in memory is retried on a centred window of the CPU cap;
    the run goes on and records the points actually used."""
    from ntkgrid import presets, spectrum

    real = spectrum.ntk_spectrum

    def small_memory(model, variables, x, **kw):
        if x.shape[0] > 64:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 2.0GiB")
        return real(model, variables, x, **kw)

    monkeypatch.setattr(spectrum, "ntk_spectrum", small_memory)
    monkeypatch.setitem(presets.NTK_POINTS_CAP, "cpu", 64)
    x, y = astronaut(16)
    with pytest.warns(RuntimeWarning) as record:
        r = fit(SMALL.replace(encoding=MULTIGRID, epochs=1, checkpoints=(1,)), x, y, image_shape=(16, 16),
                      ntk_x=x, progress=False)
    assert any("ran out of memory" in str(w.message) for w in record)
    assert r.final["ntk_points"] == 64 and r.final["spectrum"].eigenvalues.shape == (64,)
    assert r.options["ntk_selection"] == "all"  # ntk_x was the whole image: the fallback is its centred 8x8


@pytest.mark.oracle
def test_ms_ssim_matches_pytorch_msssim_on_trained_model_output():
    torch = pytest.importorskip("torch", reason="torch is needed for the pytorch-msssim oracle")
    pytorch_msssim = pytest.importorskip("pytorch_msssim", reason="pytorch-msssim is not installed")
    x, y = astronaut(crop=176)  # > 160 px: all five scales
    cfg = SMALL.replace(encoding=MultiGridConfig(num_levels=1, min_res=64, max_res=64),
                        epochs=2, batch_size=256, checkpoints=(2,))
    r = fit(cfg, x, y, image_shape=(176, 176))
    ours = r.history[-1]
    assert ours["ms_ssim_scales"] == 5 and not ours["ms_ssim_reduced"]
    pred = np.clip(predict(cfg, r.params, x).astype(np.float64), 0.0, 1.0)
    to_t = lambda a: torch.from_numpy(a.reshape(176, 176, 3).transpose(2, 0, 1)[None].copy())  # noqa: E731
    ref = float(pytorch_msssim.ms_ssim(to_t(pred), to_t(y.astype(np.float64)), data_range=1.0))
    assert 0.2 < ref < 0.99  # a partly trained model: neither noise nor a copy of the image
    assert abs(ours["ms_ssim"] - ref) <= 1e-5
