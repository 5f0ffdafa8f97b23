"""The pure, jitted pieces of training: losses, one epoch of SGD, and its batched form. No files.

One epoch is ONE call of a jitted function whose steps run in ``lax.scan``. Every epoch
draws ``E = epoch_size`` points without replacement from the pool with
``jax.random.permutation`` (the key is ``fold_in(data_key, epoch_index)``) and takes
``ceil(E / B)`` SGD steps on minibatches of ``B = batch_size``. When ``B`` does not divide
``E`` the epoch's index list is padded by wrapping around to its start (``jnp.resize``),
so the last batch is full and its extra points are the first ones of this epoch's order
(with ``B > E`` points repeat inside the one batch). All sampling happens on the device.
The functions are traced once per (model, loss, batch, N, E) and reused by later runs with
the same shapes (:data:`TRACE_COUNTS` counts traces).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkgrid.config import loss_scale

__all__ = ["TRACE_COUNTS", "epoch_batches", "host_copy", "jit_apply", "jit_init", "make_batch_epoch_fn", "make_epoch_fn"]

#: How many times each jitted function was traced (``"epoch"``, ``"batch_epoch"``,
#: ``"predict"``); a Python side effect inside the traced bodies, for tests and profiling.
TRACE_COUNTS: collections.Counter = collections.Counter()


def _loss_fn(loss: str, reduction: str = "mean") -> Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]:
    """``loss_of(out, y)`` for ``(B, O)`` arrays: the mean over all ``B O`` terms times
    :func:`ntkgrid.config.loss_scale` (``reduction``: "mean", "sum_channels", "sum").

    ``loss``: ``"mse"`` (squared error of the linear output) or ``"bce"``
    (``optax.sigmoid_binary_cross_entropy`` of the output as a logit)."""
    if reduction != "mean":
        base = _loss_fn(loss)
        return lambda out, y: loss_scale(reduction, out.shape[0], out.shape[-1]) * base(out, y)
    if loss == "mse":
        return lambda out, y: jnp.mean(jnp.square(out - y))
    if loss == "bce":
        return lambda out, y: jnp.mean(optax.sigmoid_binary_cross_entropy(out, y))
    raise ValueError(f"loss must be 'mse' or 'bce', got {loss!r}")


def epoch_batches(seed: int, epoch_index: int, n_points: int, batch_size: int, epoch_size: int | None = None
                  ) -> np.ndarray:
    """The minibatches of one training epoch, as :func:`make_epoch_fn` draws them.

    Args:
      seed: the run's ``cfg.seed`` (its data key is ``split(PRNGKey(seed))[1]``, as
        :mod:`ntkgrid.training.run`).
      epoch_index: 0-based epoch (the epoch from checkpoint ``e`` to ``e + 1`` is ``e``).
      n_points: ``N``, the pool size; epoch_size: ``E`` (default ``N``).
      batch_size: ``B``.

    Returns:
      ``(ceil(E / B), B)`` int64 point indices: the epoch's steps in order (the last one
      padded by wrapping around, as in training).
    """
    e = int(n_points if epoch_size is None else epoch_size)
    steps = -(-e // batch_size)
    _, data_key = jax.random.split(jax.random.PRNGKey(seed))
    order = jax.random.permutation(jax.random.fold_in(data_key, np.int32(epoch_index)), n_points)
    if e < n_points:
        order = order[:e]
    return np.asarray(jnp.resize(order, (steps, batch_size)), np.int64)


@functools.lru_cache(maxsize=32)
def make_epoch_fn(model: nn.Module, loss: str, batch_size: int, n_points: int,
                  epoch_size: int | None = None, loss_reduction: str = "mean") -> Callable:
    """The jitted epoch: ``epoch(variables, opt_state, data_key, epoch_index, learning_rate,
    coords, targets) -> (variables, opt_state, mean_loss)``.

    ``coords`` ``(n_points, d)`` and ``targets`` ``(n_points, O)`` stay on the device;
    ``data_key`` is a ``PRNGKey``; ``epoch_index`` (int32 scalar, 0-based) is folded into
    it; ``learning_rate`` is a float32 scalar (traced, so a learning-rate sweep reuses the
    compiled code; ``opt_state`` is ``optax.sgd(lr).init(params)``, which holds nothing).
    The epoch draws ``epoch_size`` (default ``n_points``) indices without replacement,
    pads them to ``ceil(E / batch_size) * batch_size`` by wrapping around, and runs that
    many ``optax.sgd(learning_rate)`` steps in ``lax.scan`` on the minibatch loss reduced as
    ``loss_reduction`` says (:func:`ntkgrid.config.loss_scale`). ``mean_loss`` is the mean of
    the steps' minibatch losses, each evaluated before its update and always as the MEAN over
    the minibatch's points and channels (so it is comparable across reductions). ``variables`` and
    ``opt_state`` are donated. Cached: equal arguments give the same compiled function.
    """
    e = int(n_points if epoch_size is None else epoch_size)
    if not 1 <= e <= n_points:
        raise ValueError(f"epoch_size must be in 1..{n_points} (the pool size), got {epoch_size}")
    steps = -(-e // batch_size)
    loss_of = _loss_fn(loss)

    def epoch(variables, opt_state, data_key, epoch_index, learning_rate, coords, targets):
        TRACE_COUNTS["epoch"] += 1  # runs only while tracing
        optimizer = optax.sgd(learning_rate)
        key = jax.random.fold_in(data_key, epoch_index)
        order = jax.random.permutation(key, n_points)
        if e < n_points:
            order = order[:e]
        batches = jnp.resize(order, (steps, batch_size))  # wrap-around padding
        rest = {k: v for k, v in variables.items() if k != "params"}

        def step(carry, idx):
            params, state = carry
            x, y = coords[idx], targets[idx]
            scale = loss_scale(loss_reduction, batch_size, y.shape[-1])

            def objective(p):
                mean = loss_of(model.apply({**rest, "params": p}, x), y)
                return scale * mean, mean

            (_, value), grads = jax.value_and_grad(objective, has_aux=True)(params)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        (params, opt_state), values = jax.lax.scan(step, (variables["params"], opt_state), batches)
        return {**rest, "params": params}, opt_state, jnp.mean(values)

    return jax.jit(epoch, donate_argnums=(0, 1))


def make_batch_epoch_fn(model: nn.Module, loss: str, batch_size: int, n_points: int, epoch_size: int | None = None,
                        mesh: jax.sharding.Mesh | None = None, loss_reduction: str = "mean") -> Callable:
    """The jitted batched epoch: ``epoch(variables, opt_state, data_keys, epoch_index,
    learning_rates, active, coords, targets) -> (variables, opt_state, losses)``.

    Every array argument but ``epoch_index`` (int32 scalar, shared) has a leading run axis
    ``R``: stacked ``variables``/``opt_state``, ``data_keys`` ``(R, 2)`` uint32,
    ``learning_rates`` ``(R,)`` float32, ``active`` ``(R,)`` bool, ``coords`` ``(R, N, d)``,
    ``targets`` ``(R, N, O)``. Run ``r`` does one epoch of :func:`make_epoch_fn`
    (the very same function, ``vmap``-ed) where ``active[r]``; elsewhere its state is
    returned unchanged and its loss is NaN. ``losses`` ``(R,)`` float32. With ``mesh`` (a
    1-D ``Mesh`` with axis ``"runs"``) the outputs are sharded along the run axis.
    ``loss_reduction`` as :func:`make_epoch_fn`.
    """
    return _batch_epoch_fn(model, loss, batch_size, n_points, epoch_size, mesh, loss_reduction)


@functools.lru_cache(maxsize=32)
def _batch_epoch_fn(model, loss, batch_size, n_points, epoch_size, mesh, loss_reduction) -> Callable:
    """:func:`make_batch_epoch_fn` with every argument given, so that equal settings share one
    cache entry however they were passed."""
    single = make_epoch_fn(model, loss, batch_size, n_points, epoch_size, loss_reduction)
    mapped = jax.vmap(single, in_axes=(0, 0, 0, None, 0, 0, 0))

    def epoch(variables, opt_state, data_keys, epoch_index, learning_rates, active, coords, targets):
        TRACE_COUNTS["batch_epoch"] += 1  # runs only while tracing
        new_v, new_s, losses = mapped(variables, opt_state, data_keys, epoch_index, learning_rates, coords, targets)

        def keep(new, old):
            return jnp.where(active.reshape(active.shape + (1,) * (new.ndim - 1)), new, old)

        return (jax.tree.map(keep, new_v, variables), jax.tree.map(keep, new_s, opt_state),
                jnp.where(active, losses, jnp.nan))

    kwargs = {}
    if mesh is not None:
        kwargs["out_shardings"] = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    return jax.jit(epoch, donate_argnums=(0, 1), **kwargs)


make_batch_epoch_fn.cache_clear = _batch_epoch_fn.cache_clear  # as the cached make_epoch_fn has


@functools.lru_cache(maxsize=32)
def jit_init(model: nn.Module) -> Callable:
    """``jax.jit(model.init)``: one compilation instead of one per eager op."""
    return jax.jit(model.init)


@functools.lru_cache(maxsize=32)
def jit_apply(model: nn.Module) -> Callable:
    """The jitted ``apply(variables, x) -> model output``, cached per model."""

    def apply(variables, x):
        TRACE_COUNTS["predict"] += 1
        return model.apply(variables, x)

    return jax.jit(apply)


def host_copy(tree):
    """NumPy copies of a pytree's arrays (never views of device buffers, which the next
    epoch may donate)."""
    return jax.tree.map(lambda a: np.array(a, copy=True), jax.device_get(tree))
