"""ntkgrid.sweep.stats: checkpoints, summary rows and the paper's ordering (presets.EXPECTED_ORDER)
over per-image records, against hand counts and a brute-force count. Hand-made records: no training."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ntkgrid import presets, sweep
from ntkgrid.sweep import ImageRecord, RunRecord, ordering


def _records(table):
    """[{name: (psnr, diverged) or None}] -> per-image records as run_sweep writes them."""
    return [ImageRecord(f"img{i}", runs={n: RunRecord("x", psnr=v[0], diverged=v[1]) for n, v in row.items()
                                         if v is not None}) for i, row in enumerate(table)]


def _brute(table, exp):
    usable = [[row.get(n) for n in exp] for row in table]
    usable = [r for r in usable if all(v is not None and v[0] is not None and not v[1] for v in r)]
    hold = sum(all(a[0] > b[0] for a, b in itertools.pairwise(r)) for r in usable)
    means = []
    for n in exp:
        v = [row[n][0] for row in table if row.get(n) and row[n][0] is not None and not row[n][1]]
        means.append(np.mean(v) if v else None)
    holds = None if None in means else all(a > b for a, b in itertools.pairwise(means))
    return hold, len(usable), holds, means


CASES = {
    "holds": [{"multigrid": (30.0, False), "fourier": (25.0, False), "baseline": (20.0, False)}] * 2,
    "fails_on_one_image": [{"multigrid": (30.0, False), "fourier": (25.0, False), "baseline": (20.0, False)},
                           {"multigrid": (21.0, False), "fourier": (25.0, False), "baseline": (20.0, False)}],
    "diverged_left_out": [{"multigrid": (99.0, True), "fourier": (25.0, False), "baseline": (20.0, False)},
                          {"multigrid": (30.0, False), "fourier": (22.0, False), "baseline": (21.0, False)}],
    "missing_run_and_psnr": [{"multigrid": (30.0, False), "fourier": None, "baseline": (20.0, False)},
                             {"multigrid": (30.0, False), "fourier": (None, False), "baseline": (20.0, False)},
                             {"multigrid": (30.0, False), "fourier": (24.0, False), "baseline": (25.0, False)}],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_ordering_matches_a_brute_force_count(case):
    table = CASES[case]
    got = ordering(_records(table), ["baseline", "fourier", "multigrid"])
    exp = list(presets.EXPECTED_ORDER)
    hold, compared, holds, means = _brute(table, exp)
    assert got["expected"] == exp  # the paper's order, not the order of the names
    assert (got["images_holding"], got["images_compared"], got["holds_on_mean"]) == (hold, compared, holds)
    assert [got["mean_psnr"][n] for n in exp] == pytest.approx(means)


def test_ordering_needs_two_expected_names():
    recs = _records([{"multigrid": (30.0, False), "hashgrid": (40.0, False)}])
    got = ordering(recs, ["multigrid", "hashgrid"])
    assert got == {"expected": ["multigrid"], "holds_on_mean": None, "images_holding": None, "images_compared": 0}
    two = ordering(recs, ["multigrid", "hashgrid"], expected=("hashgrid", "multigrid"))
    assert two["holds_on_mean"] is True and two["images_holding"] == 1


def test_middle_and_end():
    h = [{"epoch": e} for e in (0, 3, 5, 10)]
    assert sweep.middle_and_end(h, 10) == {"start": 0, "middle": 5, "end": 10}
    assert sweep.middle_and_end(h[:2], 10) == {"start": 0, "middle": None, "end": 3}  # diverged early
    assert sweep.middle_and_end([], 10) == {"start": None, "middle": None, "end": None}


def test_summary_rows_leave_diverged_runs_out():
    recs = [ImageRecord(f"img{p}", runs={"a": RunRecord("x", psnr=p, ms_ssim=0.5, diverged=d, seconds=1.0)})
            for p, d in ((10.0, False), (20.0, False), (99.0, True))]
    (row,) = sweep.summary_rows(recs, ["a"], {"a": (1.0, 0.1)})
    assert (row["n"], row["n_diverged"], row["psnr_mean"], row["psnr_std"]) == (3, 1, 15.0, 5.0)
    assert (row["psnr_min"], row["psnr_max"], row["paper_psnr"], row["paper_ms_ssim"]) == (10.0, 20.0, 1.0, 0.1)
