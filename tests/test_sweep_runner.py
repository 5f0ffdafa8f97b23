"""ntkgrid.sweep.runner without training: run records, programs' sizes, and how a group
of images reports its failed runs (fit_batch / fit replaced by stand-ins)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

import ntkgrid.training
from ntkgrid.config import TrainConfig
from ntkgrid.spectrum import Spectrum
from ntkgrid.sweep import runner
from ntkgrid.sweep.common import SweepError
from ntkgrid.sweep.records import read_image_record
from ntkgrid.sweep.sources import ImageSource

CFG = TrainConfig(hidden=(16,), epochs=4, batch_size=16)


def _result(label="r", psnr=20.0, diverged=False):
    spec = Spectrum(np.array([3.0, 1.0, 0.5]), 1e-12, 3, 0)
    history = [{"epoch": 0, "psnr": 5.0}, {"epoch": 2, "psnr": 12.0}, {"epoch": 4, "psnr": psnr}]
    return SimpleNamespace(
        label=label, config=CFG, losses=np.ones(4), diverged=diverged, diverged_epoch=3 if diverged else None,
        seconds=1.5, history=history, options={"ntk_selection": "all"},
        final={"epoch": 4, "psnr": psnr, "ms_ssim": 0.5, "ms_ssim_scales": 2, "loss": 0.01, "spectrum": spec,
               "grid_offdiag_fraction": 0.25},
        curve=[{"epoch": 1, "loss": 0.1, "psnr": 10.0, "accuracy": None, "train_loss": 0.2}])


def test_group_sizes_fixed_automatic_and_invalid():
    configs = {"a": CFG, "b": CFG.replace(hidden=(32,))}
    assert runner.group_sizes(3, configs, 16, 10) == {"a": 3, "b": 3}
    assert runner.group_sizes(None, configs, 16, 0) == {"a": 1, "b": 1}
    auto = runner.group_sizes(None, configs, 16, 2)
    assert set(auto) == {"a", "b"} and all(1 <= v <= 2 for v in auto.values())
    with pytest.raises(SweepError, match="runs per program must be >= 1, got 0"):
        runner.group_sizes(0, configs, 16, 10)


def _images(*ids):
    rng = np.random.default_rng(0)
    return {k: rng.random((8, 8, 3)).astype(np.float32) for k in ids}


def test_run_group_returns_results_and_errors(monkeypatch, tmp_path):
    calls = []

    def fake_fit_batch(cfg, runs, **kw):
        calls.append([r.label for r in runs])
        assert kw["on_error"] == "return"
        return [ValueError("lr too large") if "bad" in r.label else _result(r.label) for r in runs]

    monkeypatch.setattr(ntkgrid.training, "fit_batch", fake_fit_batch)
    lines = []
    configs = {"baseline": CFG, "wide": CFG.replace(hidden=(32,))}
    results, errors = runner.run_group(_images("ok", "bad"), configs, tmp_path, log=lines.append, progress=False,
                                       sizes={"baseline": 1})
    assert calls == [["ok baseline"], ["bad baseline"], ["ok wide", "bad wide"]]  # sizes: 1 per program, else all
    assert set(results) == {"ok", "bad"} and results["bad"] == {}
    assert list(results["ok"]) == ["baseline", "wide"] and results["ok"]["wide"].label == "ok wide"
    assert errors == {"bad": {"baseline": "ValueError: lr too large", "wide": "ValueError: lr too large"}}
    assert "bad baseline: FAILED (ValueError: lr too large)" in lines


def test_run_group_retries_alone_when_the_program_fails(monkeypatch, tmp_path):
    def broken(cfg, runs, **kw):
        raise RuntimeError("out of memory")

    def fit_one(cfg, coords, values, image_shape, out_dir, progress, label):
        if label.startswith("bad"):
            raise FloatingPointError("nan")
        return _result(label)

    monkeypatch.setattr(ntkgrid.training, "fit_batch", broken)
    monkeypatch.setattr(runner, "_fit_one", fit_one)
    lines = []
    results, errors = runner.run_group(_images("a", "bad"), {"baseline": CFG}, tmp_path, log=lines.append,
                                       progress=False, tags={"a": "[1/2] a"})
    assert list(results["a"]) == ["baseline"] and results["bad"] == {}
    assert errors == {"bad": {"baseline": "FloatingPointError: nan"}}
    assert any("the batch of 2 failed (RuntimeError: out of memory); training one at a time" in ln for ln in lines)
    assert any(ln.startswith("[1/2] a baseline: PSNR 20.00 dB") for ln in lines)


def test_write_results_writes_finished_images_and_records_failed_ones(tmp_path):
    images = {"a": ("t", ImageSource("a", "skimage.data.a"), np.zeros((8, 8, 3))),
              "b": ("t", ImageSource("b", "/data/b.png", "n01"), np.zeros((8, 8, 3)))}
    runs = {"a": {"baseline": _result("a baseline")}, "b": {}}
    ran, failed = runner._write_results(tmp_path, images, runs, {"b": {"baseline": "ValueError: x"}})
    assert ran == ["a"]
    assert failed == [{"image_id": "b", "source": "/data/b.png", "errors": {"baseline": "ValueError: x"}}]
    rec = json.loads((tmp_path / "results" / "a.json").read_text())
    assert rec["image_id"] == "a" and rec["size"] == [8, 8] and rec["format"] == runner.FORMAT
    assert rec["runs"]["baseline"]["run_dir"] == "runs/a/baseline" and rec["runs"]["baseline"]["psnr"] == 20.0
    back, reason = read_image_record(tmp_path / "results" / "a.json")
    assert reason is None and back.runs["baseline"].psnr == 20.0 and back.runs["baseline"].label == "a baseline"
    assert not (tmp_path / "results" / "b.json").exists()


def test_pending_skips_complete_images_and_sets_damaged_results_aside(tmp_path):
    """An image whose results hold every config is done; one missing a config, or whose file
    is unreadable, is trained again and its file kept as ``.corrupt``; one without results is new."""
    srcs = [ImageSource(i, f"/data/{i}.png") for i in ("done", "partial", "broken", "new")]
    images = {s.image_id: ("t", s, np.zeros((8, 8, 3))) for s in srcs[:2]}
    runner._write_results(tmp_path, images, {"done": {"a": _result(), "b": _result()}, "partial": {"a": _result()}},
                          {})
    (tmp_path / "results" / "broken.json").write_text("{truncated")
    lines = []
    todo, resumed = runner._pending(tmp_path, srcs, {"a": CFG, "b": CFG}, lines.append)
    assert resumed == ["done"] and [(i, s.image_id) for i, s in todo] == [(1, "partial"), (2, "broken"), (3, "new")]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        "broken.json.corrupt", "done.json", "partial.json.corrupt"]
    assert "[2/4] partial: " in lines[1] and "not every encoding has results; kept as partial.json.corrupt" in lines[1]


def test_run_configs_returns_results_and_errors_apart(monkeypatch, tmp_path):
    def fake_fit(cfg, coords, values, image_shape, out_dir, progress, label):
        if label == "bad":
            raise ValueError("lr too large")
        return _result(label)

    monkeypatch.setattr(runner, "_fit_one", fake_fit)
    lines = []
    results, errors = runner.run_configs(_images("x")["x"], {"good": CFG, "bad": CFG}, tmp_path, log=lines.append,
                                         progress=False)
    assert list(results) == ["good"] and results["good"].label == "good"
    assert errors == {"bad": "ValueError: lr too large"}
    assert "bad: FAILED (ValueError: lr too large)" in lines
    assert runner.run_configs(_images("x")["x"], {"good": CFG}, tmp_path, log=lines.append)[1] == {}
