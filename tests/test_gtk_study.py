"""The GTK study behind ``python -m experiments.gtk`` (ntkgrid.gtk_study): a tiny run of
every panel through the CLI, checked against the GTK's results."""

import math

import pytest

from ntkgrid.files import read_json
from ntkgrid.gtk_study import MODELS, GTKSetup, fit_encoding


def test_every_listed_model_has_an_encoding():
    """MODELS names the fits' models explicitly, and fit_encoding builds each of them."""
    assert GTKSetup().models == MODELS == ("multigrid", "hashgrid", "mulfagrid", "mulfagrid_learnt")
    for dim in (2, 3):
        kinds = [fit_encoding(name, GTKSetup(), dim, seed=1).kind for name in MODELS]
        assert kinds == ["multigrid", "hashgrid", "mulfagrid", "mulfagrid"]
    assert fit_encoding("mulfagrid_learnt", GTKSetup(), 2, seed=1).learn_filters
    with pytest.raises(ValueError, match="unknown model"):
        fit_encoding("fourier", GTKSetup(), 2, seed=1)


def test_experiment_main_tiny(tmp_path, capsys):
    from experiments import gtk as exp

    sets = ["spectrum_points=48", "spectrum_res=6", "lattice=10", "lattice_res=4", "bound_res=4", "bound_labels=9",
            "bound_random_pairs=4", "check_points=12", "check_steps=(0, 5, 30)", "check_models=('mulfagrid',)",
            "check_contrast=False", "image_size=16", "grid_levels=2", "image_res=(3, 5)", "image_epochs=2",
            "occ_shape_resolution=48", "occ_res=(3, 4)", "occ_pool=1000", "occ_eval=200", "occ_epochs=1",
            "occ_steps=1", "occ_batch=128", "occ_slice=8", "hidden=(4,)", "models=('mulfagrid',)",
            "image_lrs=(('mulfagrid', 1.0),)", "occ_lrs=(('mulfagrid', 1.0),)"]
    assert exp.main(["--out", str(tmp_path), "--seed", "3", *[a for s in sets for a in ("--set", s)]]) == 0
    res = read_json(tmp_path / "results.json")
    for name in ("spectrum_1d.png", "spectrum_2d.png", "bounds.png", "error_maps.png", "occupancy_slices.png",
                 "results.json", "results.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    c = res["checks"]["mulfagrid"]
    assert c["gtk_vs_neural_tangents"] <= 1e-10 and c["gtk_change"] <= 1e-12
    assert c["gd_vs_discrete_prediction"] <= 1e-9 and max(c["gd_vs_ode"]) <= c["ode_tolerance"]
    assert res["spectrum"]["1d"]["mulfagrid"]["rank"] > res["spectrum"]["1d"]["dense"]["rank"]
    assert res["spectrum"]["2d"]["dense"]["grid_offdiag_fraction"] > 0.3 and c["grid_offdiag_fraction"] > 0.1
    assert 0.0 <= res["bounds"]["fraction_mulfagrid_lower"] <= 1.0
    run = res["image"]["runs"]["mulfagrid"]
    assert math.isfinite(run["psnr"]) and run["params"] == 2 * (9 + 25) + (4 * 4 + 4) + (4 * 3 + 3)  # grid + MLP
    assert 0.0 <= res["occupancy"]["runs"]["mulfagrid"]["iou_uniform"] <= 1.0
    assert "| image 16px | mulfagrid |" in (tmp_path / "results.md").read_text()
    capsys.readouterr()
    assert exp.main(["--out", str(tmp_path), "--set", "no_such_field=1"]) == 2  # bad input: experiments._cli.fail
    assert "FIELD=VALUE" in capsys.readouterr().err
