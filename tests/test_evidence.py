"""ntkgrid.evidence on hand-made results: Theorem 1's rows, curves and report section
(the full pipeline on real runs is tests/test_experiments.py's sweep and ablation tests)."""

from __future__ import annotations

import numpy as np

from ntkgrid import evidence


def _row(comp, cp, verdict="holds"):
    return {"name": "multigrid", "checkpoint": cp, "comparison": comp, "by_construction": comp == "own_no_grid",
            "images": 2, "verdict": verdict, "holds": verdict == "holds", "fraction": 1.0, "n_compared": 10,
            "median_log10_ratio": 0.1, "min_log10_ratio": 0.0, "first_below": None,
            "log10_ratio": np.linspace(0.5, 0.0, 101)}


def _result():
    on_mean = [_row(c, cp, "does not hold" if c == "stated" else "holds")
               for cp in ("init", "end") for c in ("stated", "fan_in_matched", "own_no_grid")]
    per_image = [{**{k: v for k, v in r.items() if k not in ("images", "log10_ratio")}, "image_id": "cat",
                  "kernel": "total", "ntk_points": 101, "grid_offdiag_fraction": 0.01} for r in on_mean]
    summary = {f"multigrid/{r['checkpoint']}/{r['comparison']}": {"images_holding": int(r["holds"]) * 2,
                                                                   "images_compared": 2} for r in on_mean}
    cause = [{"image_id": "cat", "name": "multigrid", "checkpoint": "init", "top_baseline": [238.4, 37.5, 11.2],
              "top_fan_in_matched": [86.65, 9.42, 4.36], "top_mpe": [86.7, 9.5, 4.44],
              "top_no_grid": [86.6, 9.4, 4.3], "grid_lambda_max": 0.296}]
    return {"baseline": "baseline", "mpe": ["multigrid", "hashgrid"], "fan_in": {"multigrid": {"d": 2, "fan_in": 8}},
            "per_image": per_image, "on_mean": on_mean, "summary": summary, "cause": cause, "problems": []}


def test_ratio_curves_name_every_comparison_and_read_old_rows():
    curves = evidence.ratio_curves(_result())
    labels = [c["label"] for c in curves]
    assert "multigrid / baseline (init)" in labels and "multigrid / fan-in-matched baseline (end)" in labels
    assert any("own no-grid kernel (true by construction)" in lab for lab in labels)
    assert {c["linestyle"] for c in curves} == {":", "-"}  # init dotted, end solid
    old = {"on_mean": [{**_row("stated", "end"), "comparison": None, "kernel": "no_grid"}]}
    (curve,) = evidence.ratio_curves(old)  # an old result: the no-grid kernel against the baseline
    assert curve["label"] == "multigrid / baseline (no-grid kernel) (end)" and len(curve["y"]) == 11


def test_theorem1_markdown_states_the_cause_and_the_three_comparisons():
    text = "\n".join(evidence.theorem1_markdown(_result(), figure="theorem1_ratio.png"))
    assert "coordinates scaled by √(2/8) = 0.500" in text
    assert "| multigrid | init | 1 | 238.400, 37.500, 11.200 | 86.650, 9.420, 4.360 |" in text
    assert "| multigrid | stated (vs baseline) | init | **does not hold** | 0/2 |" in text
    assert "fan-in-matched (positive control)" in text and "own no-grid (true by construction)" in text
    assert "`hashgrid`: no raw coordinates appended" in text
    assert "close to an identity" in text and "![ratio](theorem1_ratio.png)" in text
    assert evidence.theorem1_markdown({"per_image": []}) == []


def test_theorem1_without_a_baseline_or_a_grid_compares_nothing():
    configs = {"fourier": {"encoding": {"kind": "fourier"}}, "multigrid": {"encoding": {"kind": "multigrid"}}}
    res = evidence.theorem1([], configs)
    assert res["per_image"] == [] and res["mpe"] == ["multigrid"] and res["on_mean"] == []
    res = evidence.theorem1([], {"baseline": {"encoding": {"kind": "baseline"}}}, compute=False)
    assert res["mpe"] == [] and res["cause"] == []
