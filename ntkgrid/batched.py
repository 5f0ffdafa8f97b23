"""Batched training: many independent :func:`ntkgrid.train.fit` runs in one compiled program.

``fit_batch(cfg, runs)`` trains ``R`` runs that share a model shape and a schedule (the
same :class:`~ntkgrid.config.TrainConfig` up to ``seed`` and ``learning_rate``, and data
of the same shape: e.g. many images of one size, or one image under several seeds) as
ONE jitted epoch: :func:`ntkgrid.train.make_epoch_fn`'s epoch, ``jax.vmap``-ed over a
leading run axis. Each run keeps

* its own parameters and optimizer state (stacked along the run axis),
* its own minibatch order: the PRNG derivation of :func:`~ntkgrid.train.fit`
  (``PRNGKey(seed)`` splits into an init key and a data key, epoch ``e`` uses
  ``fold_in(data_key, e)``), so every run computes what ``fit`` computes one at a time
  (on the CPU we see the same numbers bit for bit; the tests allow 1e-6),
* its own divergence flag: a run whose epoch loss (or checkpoint loss) is non-finite
  stops updating (its update is masked with ``jnp.where``) while the others go on,
* its own run folder, in exactly :mod:`ntkgrid.train`'s format (``run.json``,
  ``metrics.jsonl``, ``curve.jsonl``, ``spectra/``, ``checkpoints/``, ``summary.json``), written with
  train.py's own helpers and measured with its ``_measure``; resuming works per run (runs
  of one batch may resume from different epochs: a run is masked until the batch's epoch
  counter reaches its own), and :func:`ntkgrid.train.load_run` reads the folders.

Devices: with several local devices (``jax.local_devices()``) the run axis is sharded
over them (``jax.sharding.NamedSharding`` on a 1-D ``Mesh`` named ``"runs"``; the batch is
padded to a multiple of the device count with masked copies), with at least 2 runs per
device; a batch of one run runs ``fit``'s own epoch program (XLA:CPU ran programs of one
vmap-ed run per device 2-3x slower than ``fit``'s, see ``benchmarks/RESULTS.md``). On a
CPU, XLA exposes one device unless ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
is set before JAX starts (the sweep's CLI does that: :func:`experiments.split_host_cpus`);
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
import io
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkgrid import train as T
from ntkgrid.config import TrainConfig

__all__ = ["MATMUL_PRECISIONS", "MAX_AUTO_RUNS_PER_DEVICE", "TRACE_COUNTS", "BatchRun", "fit_batch",
           "make_batch_epoch_fn", "precision_scope", "run_mesh", "runs_per_program"]

#: Values of ``matmul_precision``: None/"default" (JAX's default: TF32 on recent NVIDIA
#: GPUs) or "highest" (full float32).
MATMUL_PRECISIONS = ("default", "highest")

#: How many times the batched epoch was traced (tests, profiling).
TRACE_COUNTS = T.TRACE_COUNTS

#: Most runs per local device one program holds when sized automatically. On a CPU each
#: run's weights (1-2 MB for Table 2's 2x512 MLP) want to stay in a core's L2 cache: on the
#: 2-core dev box (2 MB L2 per core), 2 runs per device were fastest (1 run per device and
#: 4 or more were slower; measured with ``benchmarks/bench_sweep.py``, our choice). On an
#: accelerator the 100-synset sweep fits in one program.
MAX_AUTO_RUNS_PER_DEVICE = {"cpu": 2, "gpu": 128, "tpu": 128}

#: On a CPU, configs whose minibatch has at least this many points train one run per
#: program when sized automatically: their steps already keep the cores busy, and batched
#: Fourier runs of batch 92 took 1.2-1.3x as long as sequential ones on the dev box
#: (``benchmarks/bench_sweep.py``, three runs; our choice of threshold).
CPU_BATCHED_MAX_BATCH = 64

@dataclasses.dataclass(frozen=True)
class BatchRun:
    """One run of a batch: the arguments :func:`ntkgrid.train.fit` would get.

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


# ---------------------------------------------------------------------------- the program


@functools.lru_cache(maxsize=32)
def make_batch_epoch_fn(model, loss: str, batch_size: int, n_points: int, epoch_size: int | None = None,
                        mesh: jax.sharding.Mesh | None = None) -> Callable:
    """The jitted batched epoch: ``epoch(variables, opt_state, data_keys, epoch_index,
    learning_rates, active, coords, targets) -> (variables, opt_state, losses)``.

    Every array argument but ``epoch_index`` (int32 scalar, shared) has a leading run axis
    ``R``: stacked ``variables``/``opt_state``, ``data_keys`` ``(R, 2)`` uint32,
    ``learning_rates`` ``(R,)`` float32, ``active`` ``(R,)`` bool, ``coords`` ``(R, N, d)``,
    ``targets`` ``(R, N, O)``. Run ``r`` does one epoch of :func:`ntkgrid.train.make_epoch_fn`
    (the very same function, ``vmap``-ed) where ``active[r]``; elsewhere its state is
    returned unchanged and its loss is NaN. ``losses`` ``(R,)`` float32. With ``mesh`` (a
    1-D ``Mesh`` with axis ``"runs"``) the outputs are sharded along the run axis.
    """
    single = T.make_epoch_fn(model, loss, batch_size, n_points, epoch_size)
    mapped = jax.vmap(single, in_axes=(0, 0, 0, None, 0, 0, 0))

    def epoch(variables, opt_state, data_keys, epoch_index, learning_rates, active, coords, targets):
        T.TRACE_COUNTS["batch_epoch"] += 1  # runs only while tracing
        new_v, new_s, losses = mapped(variables, opt_state, data_keys, epoch_index, learning_rates, coords, targets)

        def keep(new, old):
            return jnp.where(active.reshape(active.shape + (1,) * (new.ndim - 1)), new, old)

        return (jax.tree.map(keep, new_v, variables), jax.tree.map(keep, new_s, opt_state),
                jnp.where(active, losses, jnp.nan))

    kwargs = {}
    if mesh is not None:
        kwargs["out_shardings"] = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    return jax.jit(epoch, donate_argnums=(0, 1), **kwargs)


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
    model = cfg.model(dim, out_dim)
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


# ---------------------------------------------------------------------------- one run's bookkeeping


class _Slot:
    """One run of a batch: what :func:`ntkgrid.train.fit` keeps in its locals, set up (and
    resumed) the same way, plus the measuring and file writing of its checkpoints."""

    def __init__(self, cfg: TrainConfig, run: BatchRun, resume: bool, eval_fn, epoch_size: int | None = None):
        self.cfg, self.run, self.eval_fn = cfg, run, eval_fn
        x, y, shape, e_size = T._validate(cfg, run.coords, run.targets, run.image_shape, epoch_size)
        self.x, self.y, self.shape, self.e_size = x, y, shape, e_size
        n, d = x.shape
        o = y.shape[1]
        ntk_x, selection = T.kernel_points(x, run.ntk_x, cfg.ntk_points, shape)
        self.ntk_x, self.selection = ntk_x, selection
        self.options = {"n_points": n, "dim": d, "out_dim": o, "epoch_size": e_size,
                        "image_shape": list(shape) if shape else None, **selection,
                        "data_hash": T._hash(x, y), "ntk_hash": None if ntk_x is None else T._hash(ntk_x)}
        config = cfg.to_dict()
        self.model = cfg.model(d, o)
        init_key, self.data_key = jax.random.split(jax.random.PRNGKey(cfg.seed))
        variables = T._jit_init(self.model)(init_key, jnp.asarray(x[:1]))
        opt_state = optax.sgd(cfg.learning_rate).init(variables["params"])
        self.out = out = Path(run.out_dir) if run.out_dir is not None else None
        self.start, self.losses, self.history, self.lines, self.seconds0, self.curve = 0, [], [], {}, 0.0, []
        self.result: T.RunResult | None = None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            T._check_same_run(out, config, self.options)
            summary = out / "summary.json"
            if resume and summary.exists() and T._read_json(summary).get("complete"):
                self.result = T.load_run(out)
                return
            restored = None
            if resume:
                self.lines = T._history_lines(out)
                template = {"variables": variables, "opt_state": opt_state, "epoch": 0, "key": self.data_key,
                            "losses": np.zeros(0), "seconds": 0.0}
                restored = T._latest_checkpoint(out, template, self.lines)
            if restored is None:
                T._clear(out)
                self.lines = {}
            else:
                self.start, state = restored
                T._clear(out, after=self.start)
                summary.unlink(missing_ok=True)
                variables, opt_state = state["variables"], state["opt_state"]
                self.losses = [float(v) for v in np.asarray(state["losses"])]
                self.seconds0 = float(state["seconds"])
                self.lines = {k: v for k, v in self.lines.items() if k <= self.start}
                self.history = [h for h in T._read_history(out) if h["epoch"] <= self.start]
                self.curve = [c for c in T._read_curve(out) if c["epoch"] <= self.start]
            T._write_json(out / "run.json", {"format": T.FORMAT, "label": run.label, "config": config,
                                             "options": self.options})
            if ntk_x is not None:
                buf = io.BytesIO()
                np.save(buf, ntk_x)
                T._write_bytes(out / "spectra" / "ntk_x.npy", buf.getvalue())
        self.variables = T._host_copy(variables)
        self.opt_state = T._host_copy(opt_state)
        self.kept, self.kept_epoch = self.variables, self.start
        self.diverged_epoch: int | None = None
        self.measure_seconds = 0.0
        self.shared_seconds = 0.0  # this run's share of the batch's training time

    def elapsed(self) -> float:
        return self.seconds0 + self.shared_seconds + self.measure_seconds

    @property
    def training(self) -> bool:
        return self.result is None and self.diverged_epoch is None

    def save_state(self, epoch: int, host: dict, opt_state) -> None:
        state = {"variables": host, "opt_state": opt_state, "epoch": epoch, "key": np.asarray(self.data_key),
                 "losses": np.asarray(self.losses[:epoch], np.float64), "seconds": self.elapsed()}
        T._write_bytes(T._ckpt_path(self.out, epoch), flax.serialization.to_bytes(state))

    def checkpoint(self, epoch: int, host: dict, opt_state) -> bool:
        """``fit``'s ``checkpoint``: measure and save ``epoch``; False if its loss is non-finite."""
        t0 = time.perf_counter()
        entry = T._measure(self.cfg, self.model, host, self.x, self.y, self.shape, self.ntk_x, self.eval_fn,
                           self.selection["ntk_window"], last=epoch == self.cfg.epochs)
        self.measure_seconds += time.perf_counter() - t0
        if not self.add_curve_point(epoch, entry):
            return False
        entry["epoch"] = epoch
        entry["train_loss"] = self.losses[epoch - 1] if epoch > 0 else None
        entry["seconds"] = self.elapsed()
        self.history.append(entry)
        self.kept, self.kept_epoch = host, epoch
        if self.out is not None:
            out = self.out
            spec_file = None
            if entry["spectra"] is not None:
                T._save_spectra(T._spec_path(out, epoch), epoch, entry["spectra"])
                spec_file = str(T._spec_path(out, epoch).relative_to(out))
            self.save_state(epoch, host, opt_state)
            self.lines[epoch] = T._line(entry, spec_file, str(T._ckpt_path(out, epoch).relative_to(out)))
            T._write_json(out / "metrics.jsonl", [self.lines[k] for k in sorted(self.lines)], lines=True)
        return True

    def add_curve_point(self, epoch: int, point: Mapping) -> bool:
        """``fit``'s ``add_curve_point``: record ``epoch``'s full-data loss/PSNR; False if the
        loss is non-finite."""
        self.curve.append({"epoch": epoch, **{k: point.get(k) for k in ("loss", "psnr", "accuracy")},
                           "train_loss": self.losses[epoch - 1] if epoch > 0 else None})
        if self.out is not None:
            T._write_json(self.out / "curve.jsonl", self.curve, lines=True)
        return point.get("loss") is not None and math.isfinite(point["loss"])

    def curve_point(self, epoch: int, host: dict) -> bool:
        """A training-curve point at a curve epoch that is not a checkpoint."""
        t0 = time.perf_counter()
        point = T._curve_point(self.cfg, self.model, host, self.x, self.y)
        self.measure_seconds += time.perf_counter() - t0
        return self.add_curve_point(epoch, point)

    def finish(self, opt_state) -> T.RunResult:
        out = self.out
        if out is not None and not T._ckpt_path(out, self.kept_epoch).exists():  # diverged before any checkpoint
            self.save_state(self.kept_epoch, self.kept, opt_state)
        self.result = T.RunResult(
            config=self.cfg, label=self.run.label, params=jax.tree.map(jnp.asarray, self.kept),
            params_epoch=self.kept_epoch, history=self.history, losses=np.asarray(self.losses, np.float64),
            diverged=self.diverged_epoch is not None, diverged_epoch=self.diverged_epoch, seconds=self.elapsed(),
            complete=True, out_dir=out, options=self.options, curve=self.curve)
        if out is not None:
            T._write_json(out / "summary.json", T._summary(self.result, self.lines))
        return self.result


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
              ) -> list[T.RunResult | Exception]:
    """Train every run of ``runs`` (see :class:`BatchRun`) with ``cfg`` in one compiled program.

    Equivalent to ``[fit(cfg.replace(seed=.., learning_rate=..), run.coords, run.targets,
    image_shape=run.image_shape, out_dir=run.out_dir, label=run.label, ...) for run in
    runs]`` (same history, losses, files, resume and divergence rules; see the module
    docstring), but the epochs of all runs are one ``vmap``-ed, jitted call.

    Args:
      cfg: the shared config (``seed``/``learning_rate`` per run via :class:`BatchRun`).
      runs: the runs; data of equal shapes.
      resume: as :func:`ntkgrid.train.fit` (per run).
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
      one :class:`ntkgrid.train.RunResult` (or, with ``on_error="return"``, exception) per
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
        slots: list[_Slot | Exception] = []
        for i, (c, r) in enumerate(zip(cfgs, runs)):
            try:
                slots.append(_Slot(c, r, resume, eval_fn, epoch_size))
            except Exception as err:  # noqa: BLE001 - per run, so that the others train
                if on_error == "raise":
                    raise
                if log is not None:
                    log(f"{r.label or f'run {i}'}: FAILED ({type(err).__name__}: {err})")
                slots.append(err)
        live = [s for s in slots if isinstance(s, _Slot) and s.result is None]
        if live:
            shapes = {(s.x.shape, s.y.shape, s.e_size) for s in live}
            if len(shapes) > 1:
                raise ValueError(f"runs of one batch need data of one shape, got (coords, targets, epoch size) "
                                 f"{sorted(shapes)}")
            _train(cfg, live, progress, devices)
    return [s if isinstance(s, Exception) else s.result for s in slots]


def _stack(trees: Sequence) -> Any:
    return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *trees)


def _train(cfg: TrainConfig, slots: list[_Slot], progress: bool, devices) -> None:
    save_epochs = sorted(set(cfg.checkpoint_epochs()) | {cfg.epochs})
    devices = list(jax.local_devices() if devices is None else devices)
    # At least 2 runs per device: XLA:CPU ran a program with one run per device 2-3x slower
    # than fit's own (same step HLO up to operand order; see benchmarks/RESULTS.md).
    mesh = run_mesh(devices[:max(1, len(slots) // 2)])
    n_dev = 1 if mesh is None else mesh.devices.size
    r_real = len(slots)
    r_pad = -(-r_real // n_dev) * n_dev
    index = list(range(r_real)) + [0] * (r_pad - r_real)  # padding: masked copies of run 0
    clock = {"t": time.perf_counter(), "measured": 0.0}

    def credit() -> None:
        """Split the batch's wall time since the last call, less the runs' own measuring
        time, equally over its runs (their ``seconds`` add up to the batch's time)."""
        now, measured = time.perf_counter(), sum(s.measure_seconds for s in slots)
        dt = max(0.0, now - clock["t"] - (measured - clock["measured"]))
        for s in slots:
            s.shared_seconds += dt / r_real
        clock.update(t=now, measured=measured)

    def measure(slot: _Slot, epoch: int, host, opt_host) -> None:
        credit()
        if not slot.checkpoint(epoch, host, opt_host):
            slot.diverged_epoch = epoch

    curve_epochs = set(cfg.curve_epochs())
    for s in slots:
        if s.start == 0 and not s.history and 0 in save_epochs:
            measure(s, 0, s.variables, s.opt_state)
        elif s.start == 0 and not s.curve and 0 in curve_epochs and 0 not in save_epochs:
            credit()
            if not s.curve_point(0, s.variables):
                s.diverged_epoch = 0

    model = slots[0].model
    if r_pad == 1:  # one run: fit's own program (see above), on the run axis of length 1
        epoch_fn = _single_run_epoch(T.make_epoch_fn(model, cfg.loss, cfg.batch_size, slots[0].x.shape[0],
                                                     slots[0].e_size))
    else:
        epoch_fn = make_batch_epoch_fn(model, cfg.loss, cfg.batch_size, slots[0].x.shape[0], slots[0].e_size, mesh)
    where = devices[0] if mesh is None else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    put = functools.partial(jax.device_put, device=where)
    sel = [slots[i] for i in index]
    variables = put(_stack([s.variables for s in sel]))
    opt_state = put(_stack([s.opt_state for s in sel]))
    keys = put(np.stack([np.asarray(s.data_key) for s in sel]))
    lrs = put(np.asarray([s.cfg.learning_rate for s in sel], np.float32))
    xs = put(np.stack([s.x for s in sel]))
    ys = put(np.stack([s.y for s in sel]))
    starts = np.asarray([s.start for s in sel])
    bar = T._progress_bar(cfg.epochs, int(starts.min()), slots[0].run.label if r_real == 1 else f"{r_real} runs",
                          progress)

    def active_mask(epoch: int) -> np.ndarray:
        m = np.zeros(r_pad, bool)
        for k, s in enumerate(slots):
            m[k] = s.training and epoch >= s.start
        return m

    def settle(pending) -> None:
        epoch, mask, value = pending
        values = np.asarray(value, np.float64)
        bar.update(1)
        for k, s in enumerate(slots):
            if mask[k] and s.diverged_epoch is None:
                v = float(values[k])
                s.losses.append(v)
                if not math.isfinite(v):
                    s.diverged_epoch = epoch

    try:
        pending = None
        for epoch in range(int(starts.min()), cfg.epochs):
            mask = active_mask(epoch)
            if not mask.any():
                break
            variables, opt_state, value = epoch_fn(variables, opt_state, keys, np.int32(epoch), lrs, put(mask),
                                                   xs, ys)
            if pending is not None:
                settle(pending)
            pending = (epoch + 1, mask, value)
            if epoch + 1 in save_epochs or epoch + 1 in curve_epochs:
                settle(pending)
                pending = None
                todo = [k for k, s in enumerate(slots) if s.training and epoch + 1 > s.start]
                if todo:
                    host_v, host_s = T._host_copy(variables), T._host_copy(opt_state)
                    for k in todo:
                        take = functools.partial(_take, k)
                        if epoch + 1 in save_epochs:
                            measure(slots[k], epoch + 1, jax.tree.map(take, host_v), jax.tree.map(take, host_s))
                        else:
                            credit()
                            if not slots[k].curve_point(epoch + 1, jax.tree.map(take, host_v)):
                                slots[k].diverged_epoch = epoch + 1
        if pending is not None:
            settle(pending)
    finally:
        bar.close()
    credit()
    host_s = T._host_copy(opt_state)
    for k, s in enumerate(slots):
        s.finish(jax.tree.map(functools.partial(_take, k), host_s))


def _single_run_epoch(single: Callable) -> Callable:
    """:func:`make_batch_epoch_fn`'s signature for one run, calling ``fit``'s epoch."""

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

