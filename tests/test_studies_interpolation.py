"""ntkgrid.studies.interpolation: the geometric off-diagonal share against a dense W W^T, the
runs it builds, and the study end to end at tiny size (12 px, 8-wide MLPs, 1 epoch)."""

from __future__ import annotations

import numpy as np
import pytest

from ntkgrid import files, presets
from ntkgrid.spectrum import offdiag_fraction
from ntkgrid.studies.interpolation import (
    build_runs,
    interpolation_gram_stats,
    interpolation_offdiag_fraction,
    rank_correlation,
    run_interpolation_study,
)


def _dense_gram(x, res, kernel):
    """W W^T from an explicit (N, T) weight matrix built tap by tap."""
    import jax

    from ntkgrid.interpolate import dense_taps

    with jax.enable_x64(True):
        idx, w = (np.asarray(a) for a in dense_taps(np.asarray(x, np.float64), res, kernel))
    weights = np.zeros((x.shape[0], int(np.prod(res))))
    for n in range(x.shape[0]):
        np.add.at(weights[n], idx[n], w[n])
    return weights @ weights.T


@pytest.mark.parametrize("kernel", ["nearest", "linear", "smoothstep", "cubic"])
@pytest.mark.parametrize("res", [(4, 4), (7, 5), (13, 13)], ids=str)
def test_offdiag_fraction_equals_the_dense_gram(kernel, res):
    """Pixel grid of 9 x 9 (corners convention, so edge pixels clamp cubic taps)."""
    side = np.arange(9) / 8
    x = np.stack(np.meshgrid(side, side, indexing="xy"), -1).reshape(-1, 2)
    gram = _dense_gram(x, res, kernel)
    stats = interpolation_gram_stats(x, res, kernel)
    assert stats["offdiag_fraction"] == pytest.approx(offdiag_fraction(gram), rel=1e-12, abs=1e-15)
    assert interpolation_offdiag_fraction(x, res, kernel) == stats["offdiag_fraction"]
    assert stats["diag_mean"] == pytest.approx(np.mean(np.diag(gram)), rel=1e-12)


def test_offdiag_fraction_known_cases():
    x = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert interpolation_offdiag_fraction(x, (3, 3), "nearest") == 0.0  # distinct nodes: diagonal
    same = np.array([[0.5, 0.5]] * 4)  # one point four times: a constant kernel, share 1 - 1/N
    assert interpolation_offdiag_fraction(same, (5, 5), "cubic") == pytest.approx(0.75, rel=1e-12)
    # mean squared weight at a cell centre: bilinear 4 (1/4)^2; cubic B-spline (2 (1/48)^2 + 2 (23/48)^2) per axis
    mid = np.array([[0.375, 0.375]])  # the middle of an interior cell: no clamped taps
    assert interpolation_gram_stats(mid, (5, 5), "linear")["diag_mean"] == pytest.approx(0.25, rel=1e-12)
    per_axis = 2 * ((1 / 48) ** 2 + (23 / 48) ** 2)
    assert interpolation_gram_stats(mid, (5, 5), "cubic")["diag_mean"] == pytest.approx(per_axis**2, rel=1e-12)
    assert interpolation_gram_stats(mid, (5, 5), "nearest")["diag_mean"] == 1.0


def test_rank_correlation():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 2], [1, 2]) is None and rank_correlation([1, 1, 1], [1, 2, 3]) is None
    assert rank_correlation([1, 2, 3, None], [3, 1, 2, 5]) == pytest.approx(-0.5)


def test_build_runs_follow_the_presets():
    runs = build_runs("quick", ["cubic", "nearest", "linear"], hidden=(8,))
    assert [r.name for r in runs] == [f"{g}_{k}" for g in ("coarse", "fine") for k in ("linear", "cubic", "nearest")]
    q = presets.INTERPOLATION_STUDY["quick"]["configs"]
    for r in runs:  # the same grid for every kernel of a row: an equal number of nodes
        grid, kernel = r.name.split("_")
        assert r.fields["grid"] == grid and r.config.encoding == q[grid].encoding.__class__(
            **{**q[grid].encoding.fields(), "interpolation": kernel})
        assert r.lr_fraction == presets.INTERPOLATION_LR_FRACTION and r.config.hidden == (8,)
    assert [r.fields["taps"] for r in runs[:3]] == [4, 16, 1]
    paper = build_runs("paper", ["linear"])
    assert [r.config.encoding.max_res for r in paper] == [100, 200]
    assert paper[0].config.encoding == presets.SCALING["multigrid_coarse"].encoding
    assert build_runs("quick", ["linear"], size=64)[1].config.encoding.max_res == 100
    assert [r.name for r in build_runs("quick", ["linear"], grids=["fine"])] == ["fine_linear"]
    with pytest.raises(ValueError, match="grids must be among"):
        build_runs("quick", ["linear"], grids=["medium"])
    with pytest.raises(ValueError, match="kernels must be among"):
        build_runs("quick", ["lanczos"])
    with pytest.raises(ValueError, match="not both"):
        build_runs("quick", ["linear"], lr=1.0, lr_fraction=0.5)


def test_interpolation_study_end_to_end(tmp_path):
    out = tmp_path / "itp"
    kw = dict(preset="quick", image="camera", size=12, epochs=1, kernels=["nearest", "linear"], grids=["coarse"],
              hidden=(8,), out=out, progress=False, log=lambda _: None)
    res = run_interpolation_study(**kw)
    assert not res.errors and [r["name"] for r in res.records] == ["coarse_linear", "coarse_nearest"]
    for r in res.records:
        assert all(not isinstance(v, (dict, list)) for v in r.values()), r
        assert r["encoding"] == "multigrid" and r["activation"] == "relu" and r["ntk_points"] == 144
        assert r["lr_fraction"] == 0.5 and r["lr"] == pytest.approx(0.5 * r["lr_crit"])
        assert 0 <= r["interp_offdiag_fraction"] < 1 and 0 <= r["end_grid_offdiag_fraction"] < 1
        assert 0 < r["interp_diag_mean"] <= 1 and r["end_grid_trace"] > 0 and r["end_total_trace"] > r["end_grid_trace"]
    by = {r["name"]: r for r in res.records}
    for grid in ("coarse",):
        assert "end_vs_linear_median_log10" not in by[f"{grid}_linear"]
        assert 0 <= by[f"{grid}_nearest"]["end_vs_linear_fraction"] <= 1
        assert np.isfinite(by[f"{grid}_nearest"]["end_grid_vs_linear_median_log10"])
    for name in ("spectra", "grid_spectra", "offdiag", "reconstructions", "curves"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "Kernels at an equal number of nodes" in report and "highest PSNR" in report
    assert files.read_json(out / "results.json")["runs"] == res.records
    again = run_interpolation_study(**kw)  # resumed: every run and record reused
    assert again.records == res.records


def test_cli_bad_input(capsys):
    from experiments import interpolation

    assert interpolation.main(["--size", "5"]) == 2
    assert "--size must be >= 11" in capsys.readouterr().err
    assert interpolation.main(["--image", "no_such_photo", "--size", "12"]) == 2
    with pytest.raises(SystemExit) as e:
        interpolation.main(["--kernels", "bicubic"])
    assert e.value.code == 2
