"""ntkgrid.ablation: the summary over images against a brute-force reference (no kernels, no JAX)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntkgrid import ablation


def _row(rng, *, compared: bool) -> dict:
    row = {"epoch": 3, "ntk_points": int(rng.choice([16, 25])), "grid_offdiag_fraction": float(rng.uniform()),
           "weyl_holds": bool(rng.uniform() < 0.7), "max_violation": float(rng.normal()),
           "tolerance": 1e-9, "lambda_min_grid": float(rng.lognormal()), "min_margin": float(rng.normal())}
    if compared:
        for key in ("total", "no_grid"):
            row[f"theorem1_{key}"] = {"holds": bool(rng.uniform() < 0.5), "fraction": float(rng.uniform()),
                                      "median_log10_ratio": float(rng.normal()),
                                      "min_log10_ratio": float(rng.normal() - 1)}
    return row


def _per_image(seed: int, n_images: int, missing_middle: set[int], uncompared: set[int]) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_images):
        cps = {cp: _row(rng, compared=i not in uncompared) for cp in ("middle", "end")
               if not (cp == "middle" and i in missing_middle)}
        out.append({"image_id": f"img{i}", "checkpoints": cps})
    return out


def _median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _reference(per_image, on_mean) -> dict:
    """The summary computed one loop at a time, in plain Python."""
    summary = {}
    for cp in ("middle", "end"):
        rows = [e["checkpoints"][cp] for e in per_image if cp in e["checkpoints"]]
        if not rows:
            continue
        s = {"images": len(rows), "weyl_holds": 0, "max_violation": -math.inf, "ntk_points": []}
        for x in rows:
            s["weyl_holds"] += 1 if x["weyl_holds"] else 0
            s["max_violation"] = max(s["max_violation"], x["max_violation"])
            if x["ntk_points"] not in s["ntk_points"]:
                s["ntk_points"].append(x["ntk_points"])
        s["ntk_points"].sort()
        s["lambda_min_grid_median"] = _median([x["lambda_min_grid"] for x in rows])
        s["grid_offdiag_fraction_mean"] = sum(x["grid_offdiag_fraction"] for x in rows) / len(rows)
        for key in ("total", "no_grid"):
            t = [x[f"theorem1_{key}"] for x in rows if f"theorem1_{key}" in x]
            s[f"theorem1_{key}"] = {
                "images_holding": len([v for v in t if v["holds"]]), "images_compared": len(t),
                "fraction_mean": sum(v["fraction"] for v in t) / len(t) if t else None,
                "median_log10_ratio_median": _median([v["median_log10_ratio"] for v in t]) if t else None,
                "min_log10_ratio_min": min(v["min_log10_ratio"] for v in t) if t else None,
                "on_mean": on_mean.get(f"{key}/{cp}")}
        summary[cp] = s
    return summary


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return a == b


@pytest.mark.parametrize("seed, n_images, missing_middle, uncompared", [
    (0, 1, set(), set()),
    (1, 4, set(), set()),
    (2, 5, {0, 3}, {1}),             # some images lack the middle checkpoint, one has no baseline
    (3, 3, {0, 1, 2}, {0, 1, 2}),    # no middle checkpoint at all, nothing compared
])
def test_summarise_matches_a_plain_loop(seed, n_images, missing_middle, uncompared):
    per_image = _per_image(seed, n_images, missing_middle, uncompared)
    on_mean = {"total/end": {"verdict": "holds", "fraction": 1.0}}
    got = ablation.summarise(per_image, on_mean)
    want = _reference(per_image, on_mean)
    assert _close(got, want), (got, want)
    assert ("middle" in got) == (len(missing_middle) < n_images)


def test_controls_carry_their_image():
    per_image = _per_image(0, 3, set(), set())
    per_image[1]["checkpoints"]["end"]["control"] = {"scale": ablation.CONTROL_SCALE, "verdict": "does not hold"}
    assert ablation.controls_of(per_image) == [{"scale": ablation.CONTROL_SCALE, "verdict": "does not hold",
                                                "image_id": "img1"}]
