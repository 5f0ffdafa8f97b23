"""ntkgrid.studies.image_runs without training (run_configs replaced by a stand-in): the configs
an options object selects, input errors before anything trains, and when the analysis runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ntkgrid import presets
from ntkgrid.studies import image_runs
from ntkgrid.studies.image_runs import ImageStudyOptions, StudyInputError


def test_scaling_configs_apply_the_overrides_the_reading_and_the_size():
    opts = ImageStudyOptions(configs=("baseline", "multigrid_fine"))
    assert image_runs.scaling_configs(opts) == {n: presets.SCALING_QUICK[n] for n in opts.configs}
    assert image_runs.CONFIGS == tuple(presets.SCALING) and image_runs.DEFAULT_IMAGE == presets.SCALING_IMAGE
    cfgs = image_runs.scaling_configs(ImageStudyOptions(configs=("baseline", "multigrid_fine"), preset="paper",
                                                        size=32, epochs=10, learning_rate=3.0, reading="literal"))
    fine = cfgs["multigrid_fine"].encoding
    assert (fine.min_res, fine.max_res) == (50, 50)  # 200 * 32 / 128: still finer than the 32 px image
    for cfg in cfgs.values():
        assert (cfg.epochs, cfg.learning_rate, cfg.parameterization) == (10, 3.0, "ntk")  # literal: NTK everywhere
    assert presets.SCALING["baseline"].parameterization == "mean_field"  # the paper preset's own reading
    with pytest.raises(KeyError, match="unknown reading"):
        image_runs.scaling_configs(ImageStudyOptions(reading="bogus"))


def _no_training(*a, **k):
    raise AssertionError("trained despite bad input")


@pytest.mark.parametrize(("opts", "needle"), [
    (ImageStudyOptions(image="no_such_photo", size=16), "bundled photos"),
    (ImageStudyOptions(reading="bogus", size=16), "unknown reading"),
    (ImageStudyOptions(epochs=0, size=16), "epochs must be >= 1"),
])
def test_bad_input_raises_before_anything_trains(monkeypatch, opts, needle):
    monkeypatch.setattr(image_runs, "run_configs", _no_training)
    with pytest.raises(StudyInputError, match=needle):
        image_runs.train_all(opts, "scaling", log=lambda m: None)


def test_the_analysis_runs_only_when_a_run_finished(monkeypatch, tmp_path):
    seen = []

    def analyse(ctx):
        seen.append(ctx)
        return {"table": "| t |", "problems": ["baseline: no kernels"]}

    lines = []
    monkeypatch.setattr(image_runs, "run_configs", lambda image, configs, runs_dir, **k: ({"baseline": "run"},
                                                                                           {"fourier_low": "boom"}))
    opts = ImageStudyOptions(configs=("baseline", "fourier_low"), size=16, out=tmp_path / "o")
    res = image_runs.run_image_study(analyse, opts, "scaling", log=lines.append)
    assert seen == [res.runs] and res.problems == ("baseline: no kernels",) and res.analysis["table"] == "| t |"
    assert res.runs.runs_dir == tmp_path / "o" / "runs" and res.report == tmp_path / "o" / "report.md"
    assert res.runs.image.shape == (16, 16, 3) and res.runs.errors == {"fourier_low": "boom"}
    assert lines[0].startswith("scaling: skimage.data.chelsea at 16x16 px, preset quick, configs baseline, fourier_low, output")
    monkeypatch.setattr(image_runs, "run_configs", lambda *a, **k: ({}, {"baseline": "boom"}))
    res = image_runs.run_image_study(analyse, opts, "scaling", log=lines.append)
    assert res.analysis is None and len(seen) == 1  # every run failed: nothing analysed
    default = image_runs.run_image_study(analyse, ImageStudyOptions(configs=("baseline",), size=16), "evo",
                                         log=lines.append)
    assert default.runs.out == Path("runs/evo") and default.runs.runs_dir == Path("runs/evo/runs")


def test_failed_runs_section():
    assert image_runs.failed_runs_section({}) == []
    assert image_runs.failed_runs_section({"a": "ValueError: x"}) == ["## Failed runs", "", "- a: ValueError: x", ""]
