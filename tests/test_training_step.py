"""Tests for ntkgrid.training.step: the epoch's permutation and wrap-around padding, the loss reduction."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkgrid.models import build_model
from ntkgrid.training import make_epoch_fn

from ._training_cases import SMALL, astronaut


class _Constant(nn.Module):
    """f(x) = c (one scalar parameter), so a zero-learning-rate epoch's loss reveals its indices."""

    @nn.compact
    def __call__(self, x):
        return jnp.broadcast_to(self.param("c", nn.initializers.zeros, ()), x.shape[:-1] + (1,))


@pytest.mark.parametrize("n, batch, epoch_size", [(12, 4, None), (10, 4, None), (10, 16, None), (50, 8, 20)])
def test_epoch_draws_a_permutation_padded_by_wrapping(n, batch, epoch_size):
    x = np.zeros((n, 1), np.float32)
    y = np.arange(n, dtype=np.float32)[:, None]
    epoch = make_epoch_fn(_Constant(), "mse", batch, n, epoch_size)
    key = jax.random.PRNGKey(3)
    e = epoch_size or n
    steps = -(-e // batch)
    for index in (0, 1):
        variables = {"params": {"c": jnp.zeros(())}}
        _, _, loss = epoch(variables, optax.sgd(0.0).init(variables["params"]), key, np.int32(index),
                           np.float32(0.0), x, y)
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, index), n))[:e]
        idx = np.resize(order, steps * batch)
        assert float(loss) == pytest.approx(np.mean(y[idx, 0] ** 2), rel=1e-6)


@pytest.mark.parametrize("reduction,factor", [("mean", 1.0), ("sum_channels", 3.0), ("sum", 8 * 3.0)])
def test_loss_reduction_scales_the_step_but_not_the_reported_loss(reduction, factor):
    x, y = astronaut(8)
    x, y = x[:8], y[:8]
    model = build_model(SMALL, 2, 3)
    v = model.init(jax.random.PRNGKey(0), jnp.asarray(x[:1]))
    outs = {}
    for red in ("mean", reduction):
        step = make_epoch_fn(model, "mse", 8, 8, None, red)
        v1, _, loss = step(jax.tree.map(jnp.array, v), optax.sgd(1.0).init(v["params"]), jax.random.PRNGKey(0),
                           np.int32(0), np.float32(0.1), jnp.asarray(x), jnp.asarray(y))
        outs[red] = (jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), v1, v), float(loss))
    assert outs[reduction][1] == pytest.approx(outs["mean"][1], rel=1e-6)  # always the mean MSE
    leaves = jax.tree.leaves(outs[reduction][0]), jax.tree.leaves(outs["mean"][0])
    for d_red, d_mean in zip(*leaves, strict=True):
        np.testing.assert_allclose(d_red, factor * d_mean, rtol=1e-3, atol=1e-6 * factor)
