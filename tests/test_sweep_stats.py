"""ntkgrid.sweep.stats: the paper's ordering (presets.EXPECTED_ORDER) over per-image records,
against a brute-force count. Pure Python on hand-made records: no training."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ntkgrid import presets
from ntkgrid.sweep import ordering


def _records(table):
    """[{name: (psnr, diverged) or None}] -> per-image records as run_sweep writes them."""
    return [{"runs": {n: {"psnr": v[0], "diverged": v[1]} for n, v in row.items() if v is not None}} for row in table]


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
