"""ntkgrid.studies.recipe: the evidence table and the prediction-against-observation summary from
hand-written screen.json / train.json files (no training), and run_recipe's merging of readings."""

from __future__ import annotations

import json

import pytest

from ntkgrid.files import write_json
from ntkgrid.studies import recipe


def _row(lr, lr_crit, diverged=False, psnr=20.0):
    return {"lr": lr, "batch_size": 32, "lambda_max": [1.0] * 4, "lr_crit": lr_crit,
            "predicted_stable": lr < lr_crit, "diverged": diverged, "diverged_epoch": 1 if diverged else None,
            "psnr": None if diverged else psnr, "seconds": 0.1}


SCREEN = {
    "literal": {"3/baseline": _row(100.0, 10.0, diverged=True), "3/fourier_low": _row(100.0, 20.0, psnr=5.0),
                "2/baseline": _row(0.24, 1.0)},
    "mean_field": {"3/baseline": _row(100.0, 290.0), "3/fourier_low": _row(100.0, 50.0, psnr=25.0),
                   "2/baseline": _row(0.24, 0.1, diverged=True)},
    "_args_screen_literal": {"command": "screen"},
}


def test_table_has_one_row_per_reading_and_the_agreement_counts(tmp_path):
    write_json(tmp_path / "screen.json", SCREEN)
    write_json(tmp_path / "train.json", {"literal": {"3": {"baseline": {"psnr": 21.04, "diverged": False}},
                                                     "2": {"baseline": {"mean_psnr": 30.0, "n_diverged": 1}}}})
    text = recipe.table([tmp_path])
    rows = [line for line in text.splitlines() if line.startswith("| literal") or line.startswith("| mean_field")]
    assert len(rows) == 2
    lit = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert lit[1] == "10-20" and lit[2] == "0/2 / 1/2 (1 collapsed)"  # 5 dB < COLLAPSED_DB: collapsed
    assert lit[3] == "21.0, -, -, -, -, -" and lit[6] == "-, -, 30.0 (1 div)"
    assert "predicted stable (lr < lr_crit): 2 runs, 2 stayed finite (lr / lr_crit of those that diverged: none)" \
        in text
    assert "predicted unstable: 4 runs: 2 diverged, 1 collapsed to a dead output" in text
    assert "1 survived and still fit (catapult; lr / lr_crit 2)" in text
    assert text.endswith("- lr / lr_crit of the runs that diverged: 2.4 to 10")


def test_run_recipe_accumulates_readings_and_rejects_other_commands(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "screen", lambda opts, log: {r: {"3/baseline": _row(1.0, 2.0)} for r in opts.readings})
    for rd in ("literal", "sum"):
        path = recipe.run_recipe(recipe.RecipeOptions(readings=[rd], out=tmp_path), log=lambda m: None)
    doc = json.loads(path.read_text())
    assert {"literal", "sum"} <= set(doc) and doc["_args_screen_sum"]["out"] == str(tmp_path)
    with pytest.raises(ValueError, match="screen or train"):
        recipe.run_recipe(recipe.RecipeOptions(command="table", out=tmp_path))
