"""Tests for ntkgrid.training.run: the clock that splits a batch's wall time over its runs."""

from __future__ import annotations

import time
from types import SimpleNamespace

from ntkgrid.training.run import Clock


def test_clock_splits_training_time_equally_and_leaves_measuring_time_to_its_run():
    runs = [SimpleNamespace(measure_seconds=0.0, shared_seconds=0.0) for _ in range(3)]
    before = time.perf_counter()
    clock = Clock(runs)
    after = time.perf_counter()
    time.sleep(0.02)  # "training": shared by all three
    t = time.perf_counter()
    time.sleep(0.03)  # run 1 measures on its own
    runs[1].measure_seconds += time.perf_counter() - t
    clock.credit()
    time.sleep(0.02)
    end_before = time.perf_counter()
    clock.credit()
    end_after = time.perf_counter()
    shares = [r.shared_seconds for r in runs]
    assert shares[0] == shares[1] == shares[2] > 0.0
    # The runs' seconds add up to the wall time: run 1's measuring counted once, not also split over all three.
    total = sum(shares) + sum(r.measure_seconds for r in runs)
    assert end_before - after <= total <= end_after - before
