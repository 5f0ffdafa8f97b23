"""ntkgrid.sweep.shards: which shard a process runs (merging shards is tested end to end in
tests/test_experiments.py)."""

from __future__ import annotations

from ntkgrid import sweep


def test_shard_auto_takes_the_jax_process(monkeypatch):
    import jax

    assert sweep.resolve_shard("auto") is None and sweep.resolve_shard("1/3") == "1/3"  # one process: all
    monkeypatch.setattr(jax, "process_count", lambda: 4)
    monkeypatch.setattr(jax, "process_index", lambda: 2)
    assert sweep.resolve_shard("auto") == "2/4"
