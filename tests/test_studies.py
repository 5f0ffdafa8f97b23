"""ntkgrid.studies: the shared study runner (records, the lr rule, resume, identity) and the activation
study end to end at tiny size (12 px, 8-wide MLPs, 1-2 epochs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ntkgrid import files, presets
from ntkgrid.config import MultiGridConfig, TrainConfig
from ntkgrid.studies import SPECTRUM_STATS, StudyError, StudyRun, run_study
from ntkgrid.studies.activations import build_runs, kernel_locality, run_activation_study

IMAGE = np.random.default_rng(0).random((12, 12, 3)).astype(np.float32)
CFG = TrainConfig(hidden=(8,), epochs=2, batch_size=16, checkpoints=(0, 1, 2), ntk_group_spectra="every",
                  curve_every=1)
GRID = MultiGridConfig(num_levels=1, features_per_level=2, min_res=5, max_res=5)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    runs = [StudyRun("base", CFG, 0.5, {"tag": "b"}), StudyRun("grid", CFG.replace(encoding=GRID, learning_rate=3.0))]
    res = run_study("test", IMAGE, runs, out, identity={"image": "noise"}, log=lambda _: None, progress=False)
    return out, runs, res


def test_records_are_flat_and_hold_the_required_fields(study):
    out, _, res = study
    data = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in data["runs"]] == ["base", "grid"] and data["errors"] == {}
    for r in data["runs"]:
        assert all(not isinstance(v, (dict, list)) for v in r.values()), r
        for key in ("activation", "interpolation", "encoding", "psnr", "ms_ssim", "lr", "lr_fraction", "ntk_points",
                    "diverged"):
            assert key in r
        assert r["ntk_points"] == 144 and r["activation"] == "relu" and r["diverged"] is False
        for cp in ("init", "middle", "end"):
            assert r[f"{cp}_total_lambda_max"] > 0
    base, grid = data["runs"]
    assert base["interpolation"] is None and grid["interpolation"] == "linear" and base["tag"] == "b"
    assert (base["init_epoch"], base["middle_epoch"], base["end_epoch"]) == (0, 1, 2)
    assert "init_grid_lambda_max" not in base
    for cp in ("init", "middle", "end"):  # the grid's split at every checkpoint
        assert all(grid[f"{cp}_{g}_{s}"] is not None for g in ("no_grid", "grid") for s in SPECTRUM_STATS)
        assert 0 < grid[f"{cp}_grid_offdiag_fraction"] < 1
    # the summary is the recorded spectrum's
    spec = res.results["grid"].history[-1]["spectra"]["grid"]
    assert grid["end_grid_lambda_max"] == pytest.approx(float(spec.eigenvalues[0]), rel=1e-12)
    assert grid["end_grid_lambda_median"] == pytest.approx(float(np.median(spec.eigenvalues)), rel=1e-12)


def test_lr_rule_is_applied_and_recorded(study):
    from ntkgrid.data.images import image_to_dataset
    from ntkgrid.stability import critical_lr

    out, _, res = study
    base, grid = res.records
    coords, _ = image_to_dataset(IMAGE)
    crit = critical_lr(CFG, coords, 3).lr_crit_median
    assert base["lr_fraction"] == 0.5 and base["lr_crit"] == pytest.approx(crit, rel=1e-9)
    assert base["lr"] == pytest.approx(0.5 * crit, rel=1e-9) and res.configs["base"].learning_rate == base["lr"]
    assert (grid["lr"], grid["lr_fraction"], grid["lr_crit"]) == (3.0, None, None)  # by hand
    stored = json.loads((out / "runs" / "base" / "run.json").read_text())["config"]
    assert stored["lr_fraction"] == 0.5 and stored["learning_rate"] == pytest.approx(0.5 * crit, rel=1e-9)


def test_resume_reuses_runs_lr_and_records(study, monkeypatch):
    import ntkgrid.stability

    out, runs, res = study
    monkeypatch.setattr(ntkgrid.stability, "with_critical_lr", lambda *a, **k: pytest.fail("lr recomputed"))
    before = (out / "records" / "base.json").stat().st_mtime_ns
    again = run_study("test", IMAGE, runs, out, identity={"image": "noise"}, log=lambda _: None, progress=False)
    assert again.records == res.records
    assert (out / "records" / "base.json").stat().st_mtime_ns == before


def test_another_study_in_the_same_folder_is_refused(study):
    out, runs, _ = study
    with pytest.raises(StudyError, match="holds another study"):
        run_study("test", IMAGE, runs, out, identity={"image": "other"}, log=lambda _: None, progress=False)


def test_failing_run_is_reported_and_the_others_kept(tmp_path):
    bad = StudyRun("bad", CFG.replace(ntk_points=10_000))  # more NTK points than pixels: fit raises
    res = run_study("test", IMAGE, [bad, StudyRun("ok", CFG)], tmp_path, log=lambda _: None, progress=False)
    assert list(res.errors) == ["bad"] and "exceeds" in res.errors["bad"]
    assert [r["name"] for r in res.records] == ["ok"]
    assert json.loads((tmp_path / "results.json").read_text())["errors"]["bad"] == res.errors["bad"]


def test_bad_run_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        run_study("t", IMAGE, [StudyRun("a", CFG), StudyRun("a", CFG)], tmp_path)
    with pytest.raises(ValueError, match="file-name safe"):
        run_study("t", IMAGE, [StudyRun("a/b", CFG)], tmp_path)


def test_kernel_locality_of_known_kernels():
    side = 32  # centring removes the constant mode: a local kernel's far level is then about -(its row mean)
    g = np.stack(np.meshgrid(np.linspace(0, 1, side), np.linspace(0, 1, side)), -1).reshape(-1, 2)
    pixel = 1 / (side - 1)
    d2 = np.sum((g[:, None] - g[None]) ** 2, -1) / pixel**2
    local = kernel_locality(np.exp(-d2 / (2 * 2.0**2)), g, pixel)  # RBF, 2 px length: corr 0.5 near 2.4 px
    white = kernel_locality(np.eye(side * side), g, pixel)
    assert local["halfwidth_px"] in (2, 3) and local["corr_1px"] > 0.8 and local["far_corr"] < 0.05
    assert white["halfwidth_px"] == 1 and abs(white["corr_1px"]) < 0.02 and white["far_corr"] < 0.02
    rng = np.random.default_rng(0)  # a global rank-3 embedding of smooth features: correlated far away
    feats = np.stack([np.cos(np.pi * g[:, 0]), np.cos(np.pi * g[:, 1]), g.sum(1)], 1) + 0.01 * rng.random((side * side, 3))
    assert kernel_locality(feats @ feats.T, g, pixel)["far_corr"] > 0.3


def test_build_runs_follow_the_presets():
    runs = build_runs("quick", ["relu", "sine"], lr_fraction=0.25, hidden=(8,))
    assert [r.name for r in runs] == [f"{a}_{e}" for a in ("relu", "sine") for e in ("baseline", "fourier", "multigrid")]
    q = presets.ACTIVATION_STUDY["quick"]["configs"]
    assert runs[2].config.encoding == q["multigrid"].encoding and runs[1].config.encoding == q["fourier"].encoding
    assert runs[3].config.parameterization == "siren" and runs[3].config.activation == "sine"
    assert runs[0].config.parameterization == "ntk" and all(r.lr_fraction == 0.25 for r in runs)
    assert all(r.config.hidden == (8,) for r in runs)
    paper = build_runs("paper", ["relu"])
    assert paper[2].config.encoding == presets.SCALING["multigrid_coarse"].encoding
    assert paper[0].config.epochs == 300 and paper[0].lr_fraction == presets.ACTIVATION_LR_FRACTION
    with pytest.raises(ValueError, match="activations must be among"):
        build_runs("quick", ["swish"])
    with pytest.raises(ValueError, match="not both"):
        build_runs("quick", ["relu"], lr=1.0, lr_fraction=0.5)


def test_activation_study_end_to_end(tmp_path):
    out = tmp_path / "act"
    res = run_activation_study(preset="quick", image="astronaut", size=12, epochs=1, activations=["sine"],
                               hidden=(8,), out=out, progress=False, log=lambda _: None)
    assert not res.errors and len(res.records) == 3
    by = {r["name"]: r for r in res.records}
    for a in ("sine",):  # SIREN: its own parameterisation, and the fan-in matched baseline copies it
        mg = by[f"{a}_multigrid"]
        for cp in ("init", "end"):
            assert mg[f"{cp}_vs_baseline_verdict"] in ("holds", "does not hold")
            assert mg[f"{cp}_vs_fan_in_matched_verdict"] in ("holds", "does not hold")
            assert 0 <= mg[f"{cp}_vs_fan_in_matched_fraction"] <= 1
            assert mg[f"{cp}_grid_lift_median_log10"] >= 0  # Weyl: the grid only adds
        assert by[f"{a}_fourier"]["end_vs_baseline_verdict"] is not None
        assert "end_vs_fan_in_matched_verdict" not in by[f"{a}_fourier"]
        assert all(by[f"{a}_{e}"]["end_kernel_halfwidth_px"] is None or by[f"{a}_{e}"]["end_kernel_halfwidth_px"] >= 1
                   for e in ("baseline", "fourier", "multigrid"))
    for name in ("spectra_by_activation", "spectra_by_encoding", "multigrid_split", "reconstructions", "curves"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "Theorem 1 per activation" in report and "fan-in matched" in report
    assert files.read_json(out / "results.json")["runs"] == res.records
