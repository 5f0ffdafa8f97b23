"""``fit``: plain SGD on a coordinate MLP, fully jitted, with measured checkpoints.

``fit(cfg, coords, targets)`` trains ``build_model(cfg, d, O)`` on ``coords`` ``(N, d)`` (in
``[0, 1]^d``) and ``targets`` ``(N, O)`` as in Audia et al. (2025):

* ``cfg.loss == "mse"`` (images): mean squared error of the linear output against RGB
  values in ``[0, 1]``, averaged over the minibatch and the ``O`` channels; SGD follows
  that mean times ``ntkgrid.config.loss_scale(cfg.loss_reduction, B, O)`` (1, ``O`` for
  ``"sum_channels"``, ``B O`` for ``"sum"``), while every loss reported stays the mean.
  ``cfg.loss == "bce"`` (occupancy): the output is a logit, the loss is
  ``optax.sigmoid_binary_cross_entropy(logit, label)`` averaged the same way.
* ``optax.sgd(cfg.learning_rate)`` (no momentum). Under the NTK parameterisation
  learning rates up to ~100 are normal.
* Every epoch draws ``E = epoch_size`` points (default: ``cfg.epoch_size(N)``, all ``N``
  unless ``cfg.steps_per_epoch`` is set) without replacement and takes ``ceil(E / B)``
  SGD steps of ``B = cfg.batch_size`` points in one jitted call
  (:func:`ntkgrid.training.step.make_epoch_fn`). Python dispatches epoch ``e + 1`` before
  reading epoch ``e``'s loss, so the device never waits for the progress bar.
* PRNG and resume: see :mod:`ntkgrid.training.run`; files: :mod:`ntkgrid.training.runfolder`.

At each epoch of ``cfg.checkpoint_epochs()`` plus the final epoch (always measured),
:func:`fit` records a history entry (:func:`ntkgrid.training.measure.measure`), and at each
epoch of ``cfg.curve_epochs()`` a point of the training curve.

Rerunning :func:`fit` with the same ``out_dir`` returns the stored result if
``summary.json`` is complete, else continues from the last checkpoint that has its
metrics line (``resume=False`` starts again from epoch 0, replacing the files).

A non-finite epoch loss (or checkpoint loss) stops the run: ``diverged=True`` and
``diverged_epoch`` (1-based epoch whose loss was non-finite) are recorded, the summary is
written and :func:`fit` returns normally, so sweeps carry on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid.config import TrainConfig
from ntkgrid.training.result import RunResult
from ntkgrid.training.run import Clock, RunState, fresh_epoch, progress_bar
from ntkgrid.training.step import host_copy, make_epoch_fn

__all__ = ["fit"]


def fit(
    cfg: TrainConfig,
    coords,
    targets,
    *,
    image_shape: Sequence[int] | None = None,
    ntk_x=None,
    eval_fn: Callable[[Callable, dict], Mapping[str, Any]] | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    label: str = "",
    epoch_size: int | None = None,
    epoch_data: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
) -> RunResult:
    """Train ``build_model(cfg, d, O)`` by SGD on ``(coords, targets)``; see the module docstring.

    Args:
      cfg: what to build and how to train it.
      coords: ``(N, d)`` points in ``[0, 1]^d`` (float32); the pool for ``epoch_size``.
      targets: ``(N, O)`` values: RGB in ``[0, 1]`` (``mse``) or labels in ``[0, 1]`` (``bce``).
      image_shape: ``(H, W)`` (or ``(H, W, O)``) with ``H W = N`` when the points are an
        image's pixels in row-major order; enables MS-SSIM, and a cap on the NTK points
        then takes a contiguous window of pixels (:func:`~ntkgrid.training.training_set_points`).
      ntk_x: ``(M, d)`` points for the NTK spectra; default: chosen from ``coords`` by
        :func:`~ntkgrid.training.training_set_points` with ``cfg.ntk_points`` (the whole
        training set up to the backend's cap; the same points for every ``cfg.seed``);
        ``cfg.ntk_points == 0`` and no ``ntk_x``: no spectra.
      eval_fn: ``eval_fn(apply, variables) -> {name: value}`` called at every measured
        epoch; ``apply(variables, x)`` is the jitted model. Values should be numbers.
      out_dir: the run folder (:mod:`ntkgrid.training.runfolder`); None writes nothing.
      resume: continue the run stored in ``out_dir`` (see the module docstring); False
        starts again from epoch 0. Either way an ``out_dir`` holding a run with another
        config or other data is refused (``ValueError``).
      progress: show a tqdm bar (only when stderr is a terminal).
      label: name shown on the bar and stored in the files.
      epoch_size: points drawn per epoch from the ``N``-point pool (default
        ``cfg.epoch_size(N)``: ``N``, or ``cfg.steps_per_epoch`` minibatches).
      epoch_data: ``epoch_data(e) -> (x (E, d), y (E, O))``, fresh training points for
        epoch ``e`` (0-based; must be a deterministic function of ``e`` so that resuming
        is exact). When given, epoch ``e`` trains on those ``E`` points (shuffled, all of
        them: ``epoch_size`` must be None) and ``(coords, targets)`` only serve the
        checkpoint measurements. Epoch ``e + 1``'s points are prepared on the host while
        the device runs epoch ``e``.

    Returns:
      :class:`~ntkgrid.training.RunResult`. Never raises on divergence.
    """
    run = RunState(cfg, coords, targets, image_shape=image_shape, ntk_x=ntk_x, out_dir=out_dir, label=label,
                   resume=resume, eval_fn=eval_fn, epoch_size=epoch_size, epoch_data=epoch_data)
    if run.result is not None:  # finished before: returned as stored
        return run.result
    clock = Clock([run])
    bar = progress_bar(cfg.epochs, run.start, label, progress)
    opt_state = run.opt_state
    try:
        run.measure_start(clock)
        if run.training:
            opt_state = _train(run, clock, bar, epoch_data)
    finally:
        bar.close()
    clock.credit()
    return run.finish(host_copy(opt_state))


def _train(run: RunState, clock: Clock, bar, epoch_data: Callable | None):
    """Epochs ``run.start .. cfg.epochs`` (until divergence), measuring at the checkpoint
    and curve epochs; returns the final optimizer state (on the device)."""
    cfg = run.cfg
    epoch_fn = make_epoch_fn(run.model, cfg.loss, cfg.batch_size, run.pool_size, run.e_size, cfg.loss_reduction)
    lr, key = np.float32(cfg.learning_rate), jnp.asarray(run.data_key)
    xd, yd = map(jnp.asarray, _epoch_points(run, epoch_data, run.start))
    variables, opt_state = jax.device_put(run.variables), run.opt_state
    epoch, pending = run.start, None  # pending: (epoch number, device loss) not yet read
    while run.training and epoch < cfg.epochs:
        variables, opt_state, value = epoch_fn(variables, opt_state, key, np.int32(epoch), lr, xd, yd)
        epoch += 1
        if epoch_data is not None and epoch < cfg.epochs:  # host work overlaps the dispatched epoch
            xd, yd = map(jnp.asarray, _epoch_points(run, epoch_data, epoch))
        if pending is not None and not _settle(run, bar, *pending):
            return opt_state
        pending = (epoch, value)
        if epoch in run.save_epochs or epoch in run.curve_epochs:
            pending = None
            if not _settle(run, bar, epoch, value):
                return opt_state
            clock.credit()
            if epoch in run.save_epochs:  # copies: the device buffers are donated to the next epoch
                run.checkpoint(epoch, host_copy(variables), host_copy(opt_state))
            else:
                run.curve_point(epoch, variables)
    if pending is not None and run.training:
        _settle(run, bar, *pending)
    return opt_state


def _epoch_points(run: RunState, epoch_data: Callable | None, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The points epoch ``epoch`` trains on: the pool, or ``epoch_data(epoch)``."""
    if epoch_data is None:
        return run.x, run.y
    if epoch == 0:
        return run.first_fresh
    return fresh_epoch(epoch_data, epoch, run.x.shape[1], run.y.shape[1], run.e_size)


def _settle(run: RunState, bar, epoch: int, value) -> bool:
    """Read epoch ``epoch``'s loss from the device, record it and show it; False if non-finite."""
    v = float(value)
    bar.update(1)
    post = {"loss": f"{v:.3e}"}
    if run.cfg.loss == "mse" and v > 0 and math.isfinite(v):
        post["psnr"] = f"{-10 * math.log10(v):.2f}"
    bar.set_postfix(post, refresh=False)
    return run.record_loss(epoch, v)
