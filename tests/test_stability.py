"""Tests for ntkgrid.stability: the minibatch NTK's top eigenvalue against a brute-force
Jacobian, and the linearised SGD step r' = (I - lr 2 s / (B O) Theta_B) r against a real step."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from ntkgrid import presets
from ntkgrid.config import LOSS_REDUCTIONS, TrainConfig, loss_scale
from ntkgrid.data.images import image_to_dataset
from ntkgrid.models import build_model
from ntkgrid.stability import CATAPULT_NOTE, batch_lambda_max, critical_lr, with_critical_lrs
from ntkgrid.training import make_epoch_fn

CFG = TrainConfig(hidden=(24, 24), batch_size=6, ntk_points=0, beta=0.5)
X = np.random.default_rng(0).random((6, 2)).astype(np.float32)
Y = np.random.default_rng(1).random((6, 3)).astype(np.float32)


@functools.cache
def _jacobian_kernel(cfg):
    """(model, variables, brute-force (B O) x (B O) NTK on X) of ``cfg`` (the loss reduction
    does not enter the kernel, so it is normalised away for the cache)."""
    x = X
    model = build_model(cfg, 2, 3)
    init_key, _ = jax.random.split(jax.random.PRNGKey(cfg.seed))
    v = model.init(init_key, jnp.asarray(x[:1]))
    flat, unravel = ravel_pytree(v["params"])
    jac = jax.jacfwd(lambda p: model.apply({"params": unravel(p)}, jnp.asarray(x)).reshape(-1))(flat)
    j = np.asarray(jac, np.float64)  # (B*O, P), rows (point, channel)
    return model, v, j @ j.T


@pytest.mark.parametrize("param", ["ntk", "mean_field"])
def test_lambda_max_matches_brute_force_jacobian(param):
    cfg = CFG.replace(parameterization=param)
    _, _, k = _jacobian_kernel(cfg)
    lam = batch_lambda_max(cfg, X, 3, batch_size=6, n_batches=1)  # all 6 points, any order
    np.testing.assert_allclose(lam[0], np.linalg.eigvalsh(k)[-1], rtol=1e-4)


@pytest.mark.parametrize("reduction", LOSS_REDUCTIONS)
def test_one_sgd_step_is_the_predicted_linear_map(reduction):
    model, v, k = _jacobian_kernel(CFG)
    s = loss_scale(reduction, 6, 3)
    lr = 1e-3 / s  # small enough for the linearisation to hold to ~1e-3
    step = make_epoch_fn(model, "mse", 6, 6, None, reduction)
    r0 = np.asarray(model.apply(v, X), np.float64) - Y
    v1, _, _ = step(jax.tree.map(jnp.array, v), optax.sgd(1.0).init(v["params"]), jax.random.PRNGKey(0),
                    np.int32(0), np.float32(lr), jnp.asarray(X), jnp.asarray(Y))
    r1 = np.asarray(model.apply(v1, X), np.float64) - Y
    predicted = r0.reshape(-1) - lr * 2 * s / 18 * (k @ r0.reshape(-1))
    np.testing.assert_allclose(r1.reshape(-1) - r0.reshape(-1), predicted - r0.reshape(-1), rtol=3e-2, atol=1e-6)


def test_critical_lr_scales_with_the_reduction_and_marks_stability():
    preds = {r: critical_lr(CFG.replace(loss_reduction=r), X, 3, batch_size=6, n_batches=1) for r in LOSS_REDUCTIONS}
    lam = preds["mean"].lambda_max[0]
    assert preds["mean"].lr_crit_median == pytest.approx(18 / lam)
    assert preds["sum_channels"].lr_crit_median == pytest.approx(6 / lam)
    assert preds["sum"].lr_crit_median == pytest.approx(1 / lam)
    assert preds["mean"].stable(0.9 * 18 / lam) and not preds["mean"].stable(1.1 * 18 / lam)


def test_full_batch_gd_diverges_just_above_and_converges_just_below_the_prediction():
    """Full-batch GD on a tiny output-only-trainable problem: the linearised threshold is exact
    when the model is linear in its trainable parameters, so 0.8x converges and 1.2x blows up."""
    cfg = CFG.replace(hidden=(), beta=1.0)  # a single linear layer: f = W x / sqrt(2) + b
    pred = critical_lr(cfg, X, 3, batch_size=6, n_batches=1)
    model = build_model(cfg, 2, 3)
    for factor, ok in ((0.8, True), (1.2, False)):
        v = model.init(jax.random.split(jax.random.PRNGKey(0))[0], jnp.asarray(X[:1]))
        step = make_epoch_fn(model, "mse", 6, 6)
        state = optax.sgd(1.0).init(v["params"])
        for e in range(300):
            lr = np.float32(factor * pred.lr_crit_median)
            v, state, loss = step(v, state, jax.random.PRNGKey(0), np.int32(e), lr, jnp.asarray(X), jnp.asarray(Y))
        assert bool(np.isfinite(float(loss)) and float(loss) < 1.0) == ok, (factor, float(loss))


def test_with_critical_lr_sets_the_fraction_and_records_it():
    from ntkgrid.stability import CATAPULT_NOTE, lr_rule_note, with_critical_lr

    cfg, pred = with_critical_lr(CFG, 0.5, X, 3, n_batches=1)
    ref = critical_lr(CFG, X, 3, n_batches=1)
    assert pred.lr_crit_median == ref.lr_crit_median
    assert cfg.learning_rate == pytest.approx(0.5 * ref.lr_crit_median, rel=1e-12) and cfg.lr_fraction == 0.5
    assert cfg.replace(learning_rate=CFG.learning_rate, lr_fraction=None) == CFG
    assert lr_rule_note(0.5) is None and lr_rule_note(None) is None
    assert lr_rule_note(1.0) == lr_rule_note(3.0) == CATAPULT_NOTE
    with pytest.raises(ValueError, match="> 0"):
        with_critical_lr(CFG, 0.0, X, 3)


def test_critical_step_is_the_one_definition_and_takes_checkpoint_variables():
    """critical_lr is critical_step(lambda_max(Theta_B), g = 2 s / (B O)), also at given variables."""
    from ntkgrid.stability import critical_step
    from ntkgrid.theory import scale_mlp

    model, v, k = _jacobian_kernel(CFG)
    pred = critical_lr(CFG, X, 3, batch_size=6, n_batches=1)
    assert pred.lr_crit_median == pytest.approx(critical_step(pred.lambda_max[0], 2.0 / 18), rel=1e-12)
    assert critical_step(np.array([0.0, 4.0]), 0.5).tolist() == [np.inf, 1.0]
    small = critical_lr(CFG, X, 3, batch_size=6, n_batches=1, variables=scale_mlp(v, 0.5))
    assert small.lambda_max[0] < 0.6 * pred.lambda_max[0] and small.lr_crit_median > pred.lr_crit_median / 0.6


def test_with_critical_lrs_sets_each_configs_own_step_and_records_the_fraction():
    image = np.random.default_rng(0).random((12, 12, 3)).astype(np.float32)
    cfgs = {n: presets.SCALING_QUICK[n].replace(hidden=(8,)) for n in ("baseline", "multigrid_coarse")}
    lines = []
    out = with_critical_lrs(cfgs, 0.5, image, log=lines.append)
    coords, _ = image_to_dataset(image)
    assert list(out) == list(cfgs)
    for n, cfg in out.items():
        assert cfg.lr_fraction == 0.5
        assert cfg.learning_rate == pytest.approx(0.5 * critical_lr(cfgs[n], coords, 3).lr_crit_median, rel=1e-12)
    assert out["baseline"].learning_rate != out["multigrid_coarse"].learning_rate
    assert [line.split(":")[0] for line in lines] == ["baseline", "multigrid_coarse"]
    assert lines[0].startswith("baseline: lr = 0.5 x critical step ") and "(" not in lines[0]
    with_critical_lrs({"baseline": cfgs["baseline"]}, 1.5, image, log=lines.append)  # beyond the linear bound
    assert lines[-1].endswith(f"({CATAPULT_NOTE})")
