"""Batched training: many independent :func:`~ntkgrid.training.fit` runs in one compiled program.

``fit_batch(cfg, runs)`` trains ``R`` runs that share a model shape and a schedule (the
same :class:`~ntkgrid.config.TrainConfig` up to ``seed`` and ``learning_rate``, and data
of the same shape: e.g. many images of one size, or one image under several seeds) as
ONE jitted epoch: ``fit``'s epoch (:func:`~ntkgrid.training.step.make_epoch_fn`),
``jax.vmap``-ed over a leading run axis (:func:`~ntkgrid.training.step.make_batch_epoch_fn`).
Each run keeps

* its own parameters and optimizer state (stacked along the run axis),
* its own minibatch order: ``fit``'s PRNG derivation (:mod:`ntkgrid.training.run`), so
  every run computes what ``fit`` computes one at a time (on the CPU we see the same
  numbers bit for bit; the tests allow 1e-6),
* its own divergence flag: a run whose epoch loss (or checkpoint loss) is non-finite
  stops updating (its update is masked with ``jnp.where``) while the others go on,
* its own run folder, through the same :class:`~ntkgrid.training.run.RunState` and
  :class:`~ntkgrid.training.runfolder.RunFolder` as ``fit`` (so the same files); resuming
  works per run (runs of one batch may resume from different epochs: a run is masked
  until the batch's epoch counter reaches its own), and
  :func:`~ntkgrid.training.load_run` reads the folders.

Devices: with several local devices (``jax.local_devices()``) the run axis is sharded
over them (``jax.sharding.NamedSharding`` on a 1-D ``Mesh`` named ``"runs"``; the batch is
padded to a multiple of the device count with masked copies), with at least 2 runs per
device; a batch of one run runs ``fit``'s own epoch program (XLA:CPU ran programs of one
vmap-ed run per device 2-3x slower than ``fit``'s, see ``benchmarks/RESULTS.md``). On a
CPU, XLA exposes one device unless ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
is set before JAX starts (the sweep's CLI does that: :func:`experiments._cli.split_host_cpus`);
the gain there comes from the cores, since a batch-10 step is bound by arithmetic. Several hosts run
independent shards of a sweep (``jax.process_index()/process_count()``), each on its
local devices.

Precision policy: kernels and spectra are float64 (:mod:`ntkgrid.spectrum` scopes x64),
so they never see TF32. Training runs in float32 with JAX's default matmul precision,
which on NVIDIA GPUs (A100 and later) is TF32 (10-bit mantissa inputs): faster, and the
runs' losses differ from full-float32 ones at about 1e-3 relative. ``matmul_precision=
"highest"`` (``--matmul-precision highest`` on the sweep) trains in full float32 by
scoping ``jax.default_matmul_precision`` around the training only (never globally). On
the CPU both are the same.

Memory: :func:`runs_per_program` sizes a batch from the free memory of a device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid.config import TrainConfig
from ntkgrid.models import build_model
from ntkgrid.training.result import RunResult
from ntkgrid.training.run import Clock, RunState, progress_bar
from ntkgrid.training.step import host_copy, make_batch_epoch_fn, make_epoch_fn

__all__ = ["CPU_BATCHED_MAX_BATCH", "MATMUL_PRECISIONS", "MAX_AUTO_RUNS_PER_DEVICE", "BatchRun", "fit_batch",
           "precision_scope", "run_mesh", "runs_per_program"]

#: Values of ``matmul_precision``: None/"default" (JAX's default: TF32 on recent NVIDIA
#: GPUs) or "highest" (full float32).
MATMUL_PRECISIONS = ("default", "highest")

#: Most runs per local device one program holds when sized automatically. On a CPU each
#: run's weights (1-2 MB for Table 2's 2x512 MLP) want to stay in a core's L2 cache: on the
#: 2-core dev box (2 MB L2 per core), 2 runs per device were fastest (1 run per device and
#: 4 or more were slower; measured with ``benchmarks/bench_sweep.py``, our choice). On an
#: accelerator the 100-synset sweep fits in one program.
MAX_AUTO_RUNS_PER_DEVICE = {"cpu": 2, "gpu": 128, "tpu": 128}

#: On a CPU, configs whose minibatch has at least this many points train one run per
#: program when sized automatically (the occupancy presets' minibatches of 9,799-13,187
#: points keep the cores busy on their own). Below it, batching pays: on the 2-core dev box
#: with no other job running, Table 2's Fourier runs (batch 92) trained 1.36x-1.39x faster
#: 4 to a program than one at a time (``benchmarks/bench_sweep.py --runs-per-program 4``,
#: three runs; 1.26x with 8). An earlier threshold of 64, set from runs on a loaded box,
#: kept them sequential. The value itself is our choice: no batch between 92 and 9,799 was measured.
CPU_BATCHED_MAX_BATCH = 1024


@dataclasses.dataclass(frozen=True)
class BatchRun:
    """One run of a batch: the arguments :func:`~ntkgrid.training.fit` would get.

    Attributes:
      coords: ``(N, d)`` points in ``[0, 1]^d``; ``N, d`` equal over the batch.
      targets: ``(N, O)`` values; ``O`` equal over the batch.
      image_shape: ``(H, W)`` when the points are an image's pixels (as ``fit``).
      out_dir: run folder (None: nothing written).
      label: name stored in the files.
      seed: overrides ``cfg.seed`` for this run (None keeps it).
      learning_rate: overrides ``cfg.learning_rate`` for this run (None keeps it).
      ntk_x: ``(M, d)`` points of the spectra (default as ``fit``).
    """

    coords: Any
    targets: Any
    image_shape: Sequence[int] | None = None
    out_dir: str | os.PathLike | None = None
    label: str = ""
    seed: int | None = None
    learning_rate: float | None = None
    ntk_x: Any = None


# ---------------------------------------------------------------------------- devices and memory


def run_mesh(devices: Sequence | None = None) -> jax.sharding.Mesh | None:
    """A 1-D ``Mesh`` with axis ``"runs"`` over ``devices`` (default: this process's local
    devices), or None for a single device (nothing to shard)."""
    devices = list(jax.local_devices() if devices is None else devices)
    if len(devices) < 2:
        return None
    return jax.sharding.Mesh(np.array(devices), ("runs",))


def _param_count(model, dim: int) -> int:
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, dim), jnp.float32))
    return int(sum(math.prod(s.shape) for s in jax.tree.leaves(shapes)))


def _free_bytes(device) -> int:
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def runs_per_program(cfg: TrainConfig, n_points: int, dim: int = 2, out_dim: int = 3, *,
                     devices: Sequence | None = None, fraction: float = 0.25) -> int:
    """How many runs of ``cfg`` on ``n_points`` points to train in one program (at least one per device).

    Per run (float32): parameters 6 times (parameters, gradients, the update, the masked
    copy, the donated input, the optimizer state), the data ``N (d + O)`` and the epoch's
    index list ``N``, and the activations of a minibatch through the MLP (4 copies of
    ``B * sum(hidden)``). ``fraction`` of the first device's free memory
    (``Device.memory_stats()``, or the host's available memory on a CPU) divided by
    that, times the number of devices, capped at :data:`MAX_AUTO_RUNS_PER_DEVICE` times
    the number of devices. On a CPU, 1 for minibatches of :data:`CPU_BATCHED_MAX_BATCH`
    points or more.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    if devices[0].platform == "cpu" and cfg.batch_size >= CPU_BATCHED_MAX_BATCH:
        return 1
    model = build_model(cfg, dim, out_dim)
    per_run = 4 * (6 * _param_count(model, dim) + n_points * (dim + out_dim + 1)
                   + 4 * cfg.batch_size * (sum(cfg.hidden) + dim + out_dim))
    fit_one = int(fraction * _free_bytes(devices[0]) // max(per_run, 1))
    cap = MAX_AUTO_RUNS_PER_DEVICE.get(devices[0].platform, MAX_AUTO_RUNS_PER_DEVICE["gpu"])
    return max(1, min(cap, fit_one)) * len(devices)


@contextlib.contextmanager
def precision_scope(name: str | None):
    """``jax.default_matmul_precision(name)`` for the ``with`` block only; None or
    ``"default"`` leave JAX's default (TF32 on recent NVIDIA GPUs) in place."""
    if name is None or name == "default":
        yield
        return
    if name not in MATMUL_PRECISIONS:
        raise ValueError(f"matmul_precision must be one of {MATMUL_PRECISIONS} or None, got {name!r}")
    with jax.default_matmul_precision(name):
        yield


# ---------------------------------------------------------------------------- fit_batch


def _same_program(cfgs: Sequence[TrainConfig]) -> None:
    ref = cfgs[0].replace(seed=0, learning_rate=1.0)
    for i, c in enumerate(cfgs[1:], 1):
        if c.replace(seed=0, learning_rate=1.0) != ref:
            raise ValueError(f"run {i}'s config differs from run 0's in more than seed and learning_rate; "
                             "batch only runs of one program")


def fit_batch(cfg: TrainConfig, runs: Sequence[BatchRun], *, resume: bool = True, progress: bool = True,
              eval_fn: Callable | None = None, devices: Sequence | None = None,
              matmul_precision: str | None = None, on_error: str = "raise",
              log: Callable[[str], None] | None = None, epoch_size: int | None = None
              ) -> list[RunResult | Exception]:
    """Train every run of ``runs`` (see :class:`BatchRun`) with ``cfg`` in one compiled program.

    Equivalent to ``[fit(cfg.replace(seed=.., learning_rate=..), run.coords, run.targets,
    image_shape=run.image_shape, out_dir=run.out_dir, label=run.label, ...) for run in
    runs]`` (same history, losses, files, resume and divergence rules; see the module
    docstring), but the epochs of all runs are one ``vmap``-ed, jitted call.

    Args:
      cfg: the shared config (``seed``/``learning_rate`` per run via :class:`BatchRun`).
      runs: the runs; data of equal shapes.
      resume: as :func:`~ntkgrid.training.fit` (per run).
      progress: one tqdm bar for the batch (only on a terminal).
      eval_fn: as ``fit``'s, called per run at its measured epochs.
      devices: devices to shard the run axis over (default: all local devices).
      matmul_precision: None/"default" (TF32 on recent NVIDIA GPUs) or "highest" (full
        float32), scoped around this call.
      on_error: "raise": a run that cannot be set up (bad data, an ``out_dir`` holding
        another run) raises; "return": its place in the result holds the exception and
        the other runs train.
      log: called with a line when a run fails to set up (``on_error="return"``).
      epoch_size: points drawn per epoch, as ``fit``'s (default: all).

    Returns:
      one :class:`~ntkgrid.training.RunResult` (or, with ``on_error="return"``, exception) per
      run, in order. Never raises on divergence.
    """
    if on_error not in ("raise", "return"):
        raise ValueError(f"on_error must be 'raise' or 'return', got {on_error!r}")
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if not runs:
        return []
    cfgs = [cfg.replace(**{k: v for k, v in (("seed", r.seed), ("learning_rate", r.learning_rate))
                           if v is not None}) for r in runs]
    _same_program(cfgs)
    with precision_scope(matmul_precision):
        states = [_open(i, c, r, resume, eval_fn, epoch_size, on_error, log)
                  for i, (c, r) in enumerate(zip(cfgs, runs, strict=True))]
        live = [s for s in states if isinstance(s, RunState) and s.result is None]
        if live:
            shapes = {(s.x.shape, s.y.shape, s.e_size) for s in live}
            if len(shapes) > 1:
                raise ValueError(f"runs of one batch need data of one shape, got (coords, targets, epoch size) "
                                 f"{sorted(shapes)}")
            _train(cfg, live, progress, devices)
    return [s if isinstance(s, Exception) else s.result for s in states]


def _open(i: int, cfg: TrainConfig, run: BatchRun, resume: bool, eval_fn, epoch_size, on_error: str,
          log) -> RunState | Exception:
    """Run ``i``'s :class:`RunState`, or (``on_error="return"``) the exception that stopped it."""
    try:
        return RunState(cfg, run.coords, run.targets, image_shape=run.image_shape, ntk_x=run.ntk_x,
                        out_dir=run.out_dir, label=run.label, resume=resume, eval_fn=eval_fn, epoch_size=epoch_size)
    except Exception as err:  # noqa: BLE001 - per run, so that the others train
        if on_error == "raise":
            raise
        if log is not None:
            log(f"{run.label or f'run {i}'}: FAILED ({type(err).__name__}: {err})")
        return err


# ---------------------------------------------------------------------------- the batch's epochs


@dataclasses.dataclass
class _Program:
    """The batch's compiled epoch and its device state: run axis ``r_pad`` (the runs, padded
    with masked copies of run 0 to a multiple of the device count)."""

    epoch_fn: Callable
    put: Callable
    r_pad: int
    variables: Any
    opt_state: Any
    keys: Any
    lrs: Any
    xs: Any
    ys: Any


def _program(cfg: TrainConfig, runs: list[RunState], devices) -> _Program:
    devices = list(jax.local_devices() if devices is None else devices)
    # At least 2 runs per device: XLA:CPU ran a program with one run per device 2-3x slower
    # than fit's own (same step HLO up to operand order; see benchmarks/RESULTS.md).
    mesh = run_mesh(devices[:max(1, len(runs) // 2)])
    n_dev = 1 if mesh is None else mesh.devices.size
    r_pad = -(-len(runs) // n_dev) * n_dev
    first = runs[0]
    if r_pad == 1:  # one run: fit's own program (see above), on the run axis of length 1
        epoch_fn = _single_run_epoch(make_epoch_fn(first.model, cfg.loss, cfg.batch_size, first.x.shape[0],
                                                   first.e_size, cfg.loss_reduction))
    else:
        epoch_fn = make_batch_epoch_fn(first.model, cfg.loss, cfg.batch_size, first.x.shape[0], first.e_size, mesh,
                                       cfg.loss_reduction)
    where = devices[0] if mesh is None else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    put = functools.partial(jax.device_put, device=where)
    sel = [runs[i] for i in list(range(len(runs))) + [0] * (r_pad - len(runs))]
    return _Program(epoch_fn, put, r_pad, variables=put(_stack([s.variables for s in sel])),
                    opt_state=put(_stack([s.opt_state for s in sel])),
                    keys=put(np.stack([np.asarray(s.data_key) for s in sel])),
                    lrs=put(np.asarray([s.cfg.learning_rate for s in sel], np.float32)),
                    xs=put(np.stack([s.x for s in sel])), ys=put(np.stack([s.y for s in sel])))


def _stack(trees: Sequence) -> Any:
    return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *trees)


def _train(cfg: TrainConfig, runs: list[RunState], progress: bool, devices) -> None:
    """Train ``runs`` (set up, not finished) together to ``cfg.epochs``, then finish each."""
    clock = Clock(runs)
    for r in runs:
        r.measure_start(clock)
    p = _program(cfg, runs, devices)
    first_epoch = min(r.start for r in runs)
    bar = progress_bar(cfg.epochs, first_epoch, runs[0].label if len(runs) == 1 else f"{len(runs)} runs", progress)
    try:
        pending = None  # (epoch number, mask, device losses) not yet read
        for epoch in range(first_epoch, cfg.epochs):
            mask = _active_mask(runs, epoch, p.r_pad)
            if not mask.any():
                break
            p.variables, p.opt_state, value = p.epoch_fn(p.variables, p.opt_state, p.keys, np.int32(epoch), p.lrs,
                                                         p.put(mask), p.xs, p.ys)
            if pending is not None:
                _settle(runs, bar, *pending)
            pending = (epoch + 1, mask, value)
            if epoch + 1 in runs[0].save_epochs or epoch + 1 in runs[0].curve_epochs:
                _settle(runs, bar, *pending)
                pending = None
                _measure(runs, clock, epoch + 1, p)
        if pending is not None:
            _settle(runs, bar, *pending)
    finally:
        bar.close()
    clock.credit()
    host_s = host_copy(p.opt_state)
    for k, r in enumerate(runs):
        r.finish(jax.tree.map(functools.partial(_take, k), host_s))


def _active_mask(runs: list[RunState], epoch: int, r_pad: int) -> np.ndarray:
    """``(r_pad,)`` bool: the runs that train epoch ``epoch`` (not diverged, resumed at or before it)."""
    m = np.zeros(r_pad, bool)
    for k, r in enumerate(runs):
        m[k] = r.training and epoch >= r.start
    return m


def _settle(runs: list[RunState], bar, epoch: int, mask: np.ndarray, value) -> None:
    """Read the batch's losses of (1-based) ``epoch`` and record them for the runs that trained it."""
    values = np.asarray(value, np.float64)
    bar.update(1)
    for k, r in enumerate(runs):
        if mask[k] and r.diverged_epoch is None:
            r.record_loss(epoch, float(values[k]))


def _measure(runs: list[RunState], clock: Clock, epoch: int, p: _Program) -> None:
    """Checkpoint (or curve point) ``epoch`` for every run still training that reached it."""
    todo = [k for k, r in enumerate(runs) if r.training and epoch > r.start]
    if not todo:
        return
    host_v, host_s = host_copy(p.variables), host_copy(p.opt_state)
    for k in todo:
        take = functools.partial(_take, k)
        clock.credit()
        if epoch in runs[k].save_epochs:
            runs[k].checkpoint(epoch, jax.tree.map(take, host_v), jax.tree.map(take, host_s))
        else:
            runs[k].curve_point(epoch, jax.tree.map(take, host_v))


def _single_run_epoch(single: Callable) -> Callable:
    """:func:`~ntkgrid.training.step.make_batch_epoch_fn`'s signature for one run, calling ``fit``'s epoch."""

    def epoch(variables, opt_state, data_keys, epoch_index, learning_rates, active, coords, targets):
        if not bool(np.asarray(active)[0]):
            return variables, opt_state, jnp.full((1,), jnp.nan, jnp.float32)
        first = functools.partial(jax.tree.map, lambda a: a[0])
        v, s, loss = single(first(variables), first(opt_state), data_keys[0], epoch_index, learning_rates[0],
                            coords[0], targets[0])
        return jax.tree.map(lambda a: a[None], v), jax.tree.map(lambda a: a[None], s), loss[None]

    return epoch


def _take(k: int, a: np.ndarray) -> np.ndarray:
    return np.array(a[k], copy=True)
