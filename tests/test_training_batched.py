"""Tests for ntkgrid.training.batched: batched runs equal one-at-a-time ``fit``, divergence masking,
per-run resume and failures, the run folders, device sharding (2 host devices, subprocess),
the precision scope and the automatic batch size."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkgrid.config import MultiGridConfig, TrainConfig
from ntkgrid.data.images import image_to_dataset
from ntkgrid.models import build_model
from ntkgrid.training import TRACE_COUNTS, RunResult, batched, fit, load_run, make_batch_epoch_fn

from ._cases import BACKEND, f32_matmul_tol

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16
CFG = TrainConfig(hidden=(32, 32), learning_rate=10.0, epochs=4, batch_size=16, ntk_points=16,
                  encoding=MultiGridConfig(num_levels=2, features_per_level=2, min_res=8, max_res=32))
#: Batched vs sequential metrics, relative: 1e-6 on the CPU in float32 (the issue's bound; we
#: see equality). On a GPU the batched matmuls run in TF32 along other kernels and the grid
#: gradients' scatter-adds are not ordered, so SGD may drift: 2x the TF32 bound of _cases.
TOL = 2 * f32_matmul_tol(1e-6) if BACKEND != "cpu" else 1e-6


@functools.cache
def images() -> tuple[np.ndarray, ...]:
    from skimage import data
    from skimage.transform import resize

    out = []
    for name in ("astronaut", "chelsea", "coffee"):
        img = getattr(data, name)()[..., :3].astype(np.float64) / 255.0
        out.append(np.clip(resize(img, (SIZE, SIZE), anti_aliasing=True), 0, 1).astype(np.float32))
    return tuple(out)


def runs(root: Path | None, **kw) -> list[batched.BatchRun]:
    return [batched.BatchRun(*image_to_dataset(img), image_shape=(SIZE, SIZE), label=f"img{i}",
                             out_dir=None if root is None else root / f"img{i}", **kw)
            for i, img in enumerate(images())]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    root = tmp_path_factory.mktemp("seq")
    return [fit(CFG, r.coords, r.targets, image_shape=r.image_shape, out_dir=root / r.label, label=r.label,
                      progress=False) for r in runs(None)]


def assert_same_run(a: RunResult, b: RunResult, tol: float = TOL):
    assert [h["epoch"] for h in a.history] == [h["epoch"] for h in b.history]
    assert (a.diverged, a.diverged_epoch, a.params_epoch) == (b.diverged, b.diverged_epoch, b.params_epoch)
    np.testing.assert_allclose(b.losses, a.losses, rtol=tol)
    for ha, hb in zip(a.history, b.history, strict=True):
        for key in ("loss", "psnr", "ms_ssim", "train_loss"):
            if ha[key] is None:
                assert hb[key] is None
            else:
                np.testing.assert_allclose(hb[key], ha[key], rtol=tol, err_msg=key)
        for g, s in ha["spectra"].items():
            np.testing.assert_allclose(hb["spectra"][g].eigenvalues[:4], s.eigenvalues[:4], rtol=10 * tol)
    assert [c["epoch"] for c in a.curve] == [c["epoch"] for c in b.curve] and a.curve
    for ca, cb in zip(a.curve, b.curve, strict=True):
        for key in ("loss", "psnr", "train_loss"):
            if ca[key] is None:
                assert cb[key] is None
            else:
                np.testing.assert_allclose(cb[key], ca[key], rtol=tol, err_msg=f"curve {key}")
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=10 * tol, atol=10 * tol)


def test_three_images_batched_equal_sequential_and_write_fits_files(sequential, tmp_path):
    make_batch_epoch_fn.cache_clear()
    traces = TRACE_COUNTS["batch_epoch"]
    got = batched.fit_batch(CFG, runs(tmp_path), progress=False)
    assert TRACE_COUNTS["batch_epoch"] - traces == 1  # one program for 3 runs x 4 epochs
    for a, b in zip(sequential, got, strict=True):
        assert_same_run(a, b)
        assert not b.diverged and b.history[-1]["psnr"] > b.history[0]["psnr"] + 5
        # The same files, the same keys, readable by load_run.
        seq_dir, bat_dir = a.out_dir, b.out_dir
        files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
        assert files(seq_dir) == files(bat_dir)
        for name in ("run.json", "summary.json"):
            sa, sb = (json.loads((d / name).read_text()) for d in (seq_dir, bat_dir))
            assert sa.keys() == sb.keys() and sa["config"] == sb["config"] and sa["options"] == sb["options"]
        la, lb = ([json.loads(t) for t in (d / "metrics.jsonl").read_text().splitlines()] for d in (seq_dir, bat_dir))
        assert [x.keys() for x in la] == [x.keys() for x in lb]
        assert_same_run(a, load_run(bat_dir))
    # A second call returns the stored runs without training.
    again = batched.fit_batch(CFG, runs(tmp_path), progress=False)
    assert TRACE_COUNTS["batch_epoch"] - traces == 1
    for a, b in zip(got, again, strict=True):
        assert_same_run(a, b, tol=0)


def test_a_diverging_run_stops_alone(sequential):
    lrs = [None, 1e6, None]  # the middle run blows up, the others must not notice
    rs = [dataclass_replace(r, learning_rate=lr) for r, lr in zip(runs(None), lrs, strict=True)]
    got = batched.fit_batch(CFG, rs, progress=False)
    bad = got[1]
    x, y = image_to_dataset(images()[1])
    ref = fit(CFG.replace(learning_rate=1e6), x, y, image_shape=(SIZE, SIZE), progress=False)
    assert bad.diverged and ref.diverged and bad.diverged_epoch == ref.diverged_epoch
    assert bad.losses.size == ref.losses.size and not np.isfinite(bad.losses[-1])
    assert bad.params_epoch == ref.params_epoch and len(bad.history) == len(ref.history)
    assert_same_run(sequential[0], got[0])
    assert_same_run(sequential[2], got[2])


def test_a_batch_of_one_is_fit(sequential):
    (got,) = batched.fit_batch(CFG, runs(None)[:1], progress=False)
    assert_same_run(sequential[0], got, tol=0)  # fit's own program (see _train)


@pytest.mark.parametrize("reduction", ["sum_channels", "sum"])
@pytest.mark.parametrize("n_runs", [1, 2])
def test_every_loss_reduction_trains_as_fit_does(reduction, n_runs):
    # The reductions scale the gradient (by O, or B * O): a batched program that dropped the
    # setting would train with the mean's 3x or 48x smaller steps and miss these by far.
    cfg = CFG.replace(loss_reduction=reduction, learning_rate=0.5, epochs=2, ntk_points=0)
    rs = runs(None)[:n_runs]
    want = [fit(cfg, r.coords, r.targets, image_shape=r.image_shape, progress=False) for r in rs]
    got = batched.fit_batch(cfg, rs, progress=False)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_allclose(b.losses, a.losses, rtol=TOL)
        np.testing.assert_allclose(b.history[-1]["psnr"], a.history[-1]["psnr"], rtol=TOL)


def dataclass_replace(run, **kw):
    import dataclasses

    return dataclasses.replace(run, **kw)


def test_resume_per_run_and_a_run_that_cannot_start(sequential, tmp_path):
    rs = runs(tmp_path)
    first = batched.fit_batch(CFG, rs, progress=False)
    # Interrupt run 1 after its epoch-2 checkpoint: drop its summary and its last epoch.
    d = first[1].out_dir
    (d / "summary.json").unlink()
    (d / "checkpoints" / "epoch_000004.msgpack").unlink()
    lines = (d / "metrics.jsonl").read_text().splitlines()
    (d / "metrics.jsonl").write_text("\n".join(line for line in lines if json.loads(line)["epoch"] <= 2) + "\n")
    # Run 2's folder holds another run: it fails alone, with the file named.
    other = json.loads((rs[2].out_dir / "run.json").read_text())
    other["config"]["learning_rate"] = 123.0
    (rs[2].out_dir / "summary.json").write_text(json.dumps(other))
    got = batched.fit_batch(CFG, rs, progress=False, on_error="return")
    assert isinstance(got[2], ValueError) and "summary.json" in str(got[2])
    assert_same_run(sequential[0], got[0], tol=0)  # loaded, not retrained
    assert_same_run(sequential[1], got[1])  # resumed from epoch 2
    with pytest.raises(ValueError, match="summary.json"):
        batched.fit_batch(CFG, rs, progress=False)


def test_bad_batches_are_refused():
    rs = runs(None)
    small = batched.BatchRun(*image_to_dataset(images()[0][:8, :8]), image_shape=(8, 8))
    with pytest.raises(ValueError, match="one shape"):
        batched.fit_batch(CFG, [rs[0], small], progress=False)
    with pytest.raises(ValueError, match="matmul_precision"):
        batched.fit_batch(CFG, rs, matmul_precision="tf32")
    with pytest.raises(ValueError, match="on_error"):
        batched.fit_batch(CFG, rs, on_error="ignore")
    assert batched.fit_batch(CFG, []) == []


def _lowered_epoch_text() -> str:
    model = build_model(CFG, 2, 3)
    fn = make_batch_epoch_fn(model, "mse", 4, 16)
    v = jax.eval_shape(lambda: jax.vmap(lambda k: model.init(k, jnp.zeros((1, 2))))(
        jax.random.split(jax.random.PRNGKey(0), 2)))
    s = jax.ShapeDtypeStruct
    return fn.lower(v, optax.sgd(1.0).init({}), s((2, 2), jnp.uint32), np.int32(0), s((2,), jnp.float32), s((2,), bool),
                    s((2, 16, 2), jnp.float32), s((2, 16, 3), jnp.float32)).as_text()


def test_precision_scope_reaches_the_training_program_and_stays_scoped():
    assert "precision = [HIGHEST" not in _lowered_epoch_text()
    with batched.precision_scope("highest"):
        assert "precision = [HIGHEST, HIGHEST]" in _lowered_epoch_text()
    assert jax.config.jax_default_matmul_precision is None
    assert "precision = [HIGHEST" not in _lowered_epoch_text()


def test_runs_per_program_follows_memory(monkeypatch):
    big = CFG.replace(hidden=(512, 512), batch_size=10)
    cap = batched.MAX_AUTO_RUNS_PER_DEVICE[jax.default_backend()]
    n_dev = len(jax.local_devices())
    assert 1 <= batched.runs_per_program(big, 128 * 128) <= cap * n_dev
    params = batched._param_count(build_model(big, 2, 3), 2)
    per_run = 4 * (6 * params + 128 * 128 * 6 + 4 * 10 * (1024 + 5))
    monkeypatch.setattr(batched, "_free_bytes", lambda d: 3 * per_run)
    assert batched.runs_per_program(big, 128 * 128, fraction=1.0) == min(cap, 3) * n_dev
    assert batched.runs_per_program(big, 128 * 128, fraction=1.0, devices=jax.local_devices() * 2) == \
        min(cap, 3) * 2 * n_dev
    monkeypatch.setattr(batched, "_free_bytes", lambda d: 1)
    assert batched.runs_per_program(big, 128 * 128) == n_dev
    if jax.default_backend() == "cpu":  # large minibatches keep the cores busy alone
        assert batched.runs_per_program(big.replace(batch_size=batched.CPU_BATCHED_MAX_BATCH), 128 * 128) == 1


SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np, optax
    from ntkgrid.config import TrainConfig
    from ntkgrid.models import build_model
    from ntkgrid.training import TRACE_COUNTS, batched, fit, make_batch_epoch_fn
    assert len(jax.local_devices()) == 2, jax.local_devices()
    cfg = TrainConfig(hidden=(16,), learning_rate=1.0, epochs=3, batch_size=8, ntk_points=0, checkpoints=(3,))
    rng = np.random.default_rng(0)
    x = rng.random((32, 2)).astype(np.float32)
    runs = [batched.BatchRun(x, rng.random((32, 3)).astype(np.float32), seed=s) for s in range(5)]
    got = batched.fit_batch(cfg, runs, progress=False)
    ref = [fit(cfg.replace(seed=s), r.coords, r.targets, progress=False) for s, r in enumerate(runs)]
    mesh = batched.run_mesh()
    fn = make_batch_epoch_fn(build_model(cfg, 2, 3), "mse", 8, 32, 32, mesh)
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    model = build_model(cfg, 2, 3)
    v = jax.vmap(lambda k: model.init(k, x[:1]))(jax.random.split(jax.random.PRNGKey(0), 6))
    args = [jax.device_put(a, sharding) for a in (v, optax.sgd(1.0).init({}), np.zeros((6, 2), np.uint32))]
    rest = [jax.device_put(a, sharding) for a in (np.ones(6, np.float32), np.ones(6, bool),
                                                  np.stack([x] * 6), np.zeros((6, 32, 3), np.float32))]
    v2, _, losses = fn(*args, np.int32(0), *rest)
    shards = [len(leaf.sharding.device_set) for leaf in jax.tree.leaves((v2, losses))]
    print(json.dumps({"got": [g.losses.tolist() for g in got], "ref": [r.losses.tolist() for r in ref],
                      "mesh": int(mesh.devices.size), "traced": TRACE_COUNTS["batch_epoch"],
                      "shards": shards, "spec": str(losses.sharding.spec)}))
""")


def test_run_axis_is_sharded_over_two_host_devices():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SHARDED], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mesh"] == 2 and out["traced"] == 1  # 5 runs padded to 6, one program
    assert set(out["shards"]) == {2} and "runs" in out["spec"]  # state and losses live on both devices
    np.testing.assert_allclose(out["got"], out["ref"], rtol=1e-6)
