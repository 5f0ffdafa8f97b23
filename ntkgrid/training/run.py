"""One run's bookkeeping, shared by :func:`~ntkgrid.training.fit` and
:func:`~ntkgrid.training.fit_batch`: its data checked, its model initialised, its folder
opened (or resumed), and its measured epochs recorded.

PRNG: ``PRNGKey(cfg.seed)`` splits into an initialisation key and a data key; epoch ``e``
(0-based) uses ``fold_in(data_key, e)``. Same seed, same numbers (on CPU bit-for-bit), and
a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkgrid.config import TrainConfig
from ntkgrid.models import build_model
from ntkgrid.training.measure import curve_point, kernel_points, measure
from ntkgrid.training.result import RunResult
from ntkgrid.training.runfolder import RunFolder, checkpoint_state, load_run
from ntkgrid.training.step import host_copy, jit_init

__all__ = ["Clock", "RunState", "progress_bar"]


class RunState:
    """What one run keeps while it trains: host copies of its starting variables and
    optimizer state, its losses, history and curve, and its :class:`RunFolder`.

    Arguments are those of :func:`~ntkgrid.training.fit`. After construction either
    ``result`` is set (a finished run found in ``out_dir``) or ``start`` is the epoch to
    train from (0, or the resumed checkpoint's). ``first_fresh`` is ``epoch_data(0)`` checked.
    """

    def __init__(self, cfg: TrainConfig, coords, targets, *, image_shape: Sequence[int] | None = None, ntk_x=None,
                 out_dir: str | os.PathLike | None = None, label: str = "", resume: bool = True,
                 eval_fn: Callable | None = None, epoch_size: int | None = None,
                 epoch_data: Callable | None = None):
        self.cfg, self.label, self.eval_fn = cfg, label, eval_fn
        x, y, shape, e_size = validate(cfg, coords, targets, image_shape, epoch_size)
        self.first_fresh = None
        if epoch_data is not None:
            if epoch_size is not None:
                raise ValueError("epoch_size and epoch_data exclude each other (epoch_data sets the epoch's points)")
            self.first_fresh = fresh_epoch(epoch_data, 0, x.shape[1], y.shape[1])
            e_size = self.first_fresh[0].shape[0]
        self.x, self.y, self.shape, self.e_size = x, y, shape, e_size
        self.ntk_x, selection = kernel_points(x, ntk_x, cfg.ntk_points, shape)
        self.ntk_window = selection["ntk_window"]
        self.options = _options(x, y, e_size, shape, selection, self.ntk_x, self.first_fresh)
        self.save_epochs = sorted(set(cfg.checkpoint_epochs()) | {cfg.epochs})
        self.curve_epochs = set(cfg.curve_epochs())
        self.model = build_model(cfg, x.shape[1], y.shape[1])
        init_key, self.data_key = jax.random.split(jax.random.PRNGKey(cfg.seed))
        variables = jit_init(self.model)(init_key, jnp.asarray(x[:1]))
        opt_state = optax.sgd(cfg.learning_rate).init(variables["params"])
        self.start, self.losses, self.history, self.curve, self.seconds0 = 0, [], [], [], 0.0
        self.result: RunResult | None = None
        self.folder = RunFolder(out_dir) if out_dir is not None else None
        if self.folder is not None:
            variables, opt_state = self._open(resume, variables, opt_state)
        self.variables, self.opt_state = host_copy(variables), host_copy(opt_state)
        self.kept, self.kept_epoch = self.variables, self.start  # the last measured (or the starting) epoch
        self.diverged_epoch: int | None = None
        self.measure_seconds = 0.0  # wall time of this session's measurements
        self.shared_seconds = 0.0  # this run's share of this session's training time

    def _open(self, resume: bool, variables, opt_state):
        """Check the folder holds this run; load it if finished, else resume or restart it."""
        folder, config = self.folder, self.cfg.to_dict()
        folder.check_same_run(config, self.options)
        if resume and folder.complete():
            self.result = load_run(folder.root)
            return variables, opt_state
        template = checkpoint_state(variables, opt_state, 0, self.data_key, np.zeros(0), 0.0)
        restored = folder.restore(template) if resume else None
        folder.begin(self.label, config, self.options, self.ntk_x, None if restored is None else restored.epoch)
        if restored is None:
            return variables, opt_state
        state = restored.state
        self.start, self.history, self.curve = restored.epoch, restored.history, restored.curve
        self.losses = [float(v) for v in np.asarray(state["losses"])]
        self.seconds0 = float(state["seconds"])
        return state["variables"], state["opt_state"]

    @property
    def training(self) -> bool:
        """Neither finished before this session nor diverged."""
        return self.result is None and self.diverged_epoch is None

    @property
    def pool_size(self) -> int:
        """Points the epoch program draws from: all ``N``, or the ``E`` fresh points of an epoch."""
        return self.x.shape[0] if self.first_fresh is None else self.e_size

    def elapsed(self) -> float:
        """Wall time of the run over all its sessions (seconds)."""
        return self.seconds0 + self.shared_seconds + self.measure_seconds

    def record_loss(self, epoch: int, value: float) -> bool:
        """Append the mean minibatch loss of (1-based) ``epoch``; False (and diverged) if non-finite."""
        self.losses.append(value)
        if not math.isfinite(value):
            self.diverged_epoch = epoch
            return False
        return True

    def measure_start(self, clock: Clock) -> None:
        """Measure epoch 0 (a checkpoint or a curve point) if the run starts from scratch."""
        if self.start != 0:
            return
        if not self.history and 0 in self.save_epochs:
            clock.credit()
            self.checkpoint(0, self.variables, self.opt_state)
        elif not self.curve and 0 in self.curve_epochs and 0 not in self.save_epochs:
            clock.credit()
            self.curve_point(0, self.variables)

    def checkpoint(self, epoch: int, host: dict, opt_state) -> bool:
        """Measure ``epoch`` (``host``: NumPy copies of its variables) and save it with
        ``opt_state``; False (and diverged) if its loss is non-finite."""
        t0 = time.perf_counter()
        ntk_x = self.ntk_x if self.cfg.takes_spectra(epoch) else None
        entry = measure(self.cfg, self.model, host, self.x, self.y, self.shape, ntk_x, self.eval_fn,
                        self.ntk_window, last=epoch == self.cfg.epochs)
        self.measure_seconds += time.perf_counter() - t0
        if not self._add_curve_point(epoch, entry):
            return False
        entry["epoch"] = epoch
        entry["train_loss"] = self.losses[epoch - 1] if epoch > 0 else None
        entry["seconds"] = self.elapsed()
        self.history.append(entry)
        self.kept, self.kept_epoch = host, epoch
        if self.folder is not None:
            self.folder.write_checkpoint(epoch, entry, self._state(epoch, host, opt_state))
        return True

    def curve_point(self, epoch: int, variables) -> bool:
        """A training-curve point at a curve epoch that is not a checkpoint; False (and
        diverged) if its loss is non-finite."""
        t0 = time.perf_counter()
        point = curve_point(self.cfg, self.model, variables, self.x, self.y)
        self.measure_seconds += time.perf_counter() - t0
        return self._add_curve_point(epoch, point)

    def _add_curve_point(self, epoch: int, point: Mapping) -> bool:
        self.curve.append({"epoch": epoch, **{k: point.get(k) for k in ("loss", "psnr", "accuracy")},
                           "train_loss": self.losses[epoch - 1] if epoch > 0 else None})
        if self.folder is not None:
            self.folder.write_curve(self.curve)
        if point.get("loss") is not None and math.isfinite(point["loss"]):
            return True
        self.diverged_epoch = epoch
        return False

    def _state(self, epoch: int, host: dict, opt_state) -> dict:
        return checkpoint_state(host, opt_state, epoch, self.data_key, self.losses[:epoch], self.elapsed())

    def finish(self, opt_state) -> RunResult:
        """The run's :class:`RunResult`, its summary written (and, if it diverged before any
        checkpoint, the kept variables saved with ``opt_state``, host copies)."""
        folder = self.folder
        if folder is not None and not folder.has_checkpoint(self.kept_epoch):  # diverged before any checkpoint
            folder.save_state(self.kept_epoch, self._state(self.kept_epoch, self.kept, opt_state))
        self.result = RunResult(
            config=self.cfg, label=self.label, params=jax.tree.map(jnp.asarray, self.kept),
            params_epoch=self.kept_epoch, history=self.history, losses=np.asarray(self.losses, np.float64),
            diverged=self.diverged_epoch is not None, diverged_epoch=self.diverged_epoch, seconds=self.elapsed(),
            complete=True, out_dir=None if folder is None else folder.root, options=self.options, curve=self.curve)
        if folder is not None:
            folder.write_summary(self.result)
        return self.result


class Clock:
    """Splits wall time over runs trained together: each :meth:`credit` gives every run an
    equal share of the time since the last call, less the runs' own measuring time (so
    their ``seconds`` add up to the wall time)."""

    def __init__(self, runs: Sequence[RunState]):
        self.runs = list(runs)
        self.t = time.perf_counter()
        self.measured = self._measured()

    def _measured(self) -> float:
        return sum(r.measure_seconds for r in self.runs)

    def credit(self) -> None:
        now, measured = time.perf_counter(), self._measured()
        dt = max(0.0, now - self.t - (measured - self.measured))
        for r in self.runs:
            r.shared_seconds += dt / len(self.runs)
        self.t, self.measured = now, measured


def _options(x, y, e_size: int, shape, selection: Mapping, ntk_x, fresh) -> dict:
    """``run.json``'s ``options``: the data-dependent settings that identify a run."""
    options = {"n_points": x.shape[0], "dim": x.shape[1], "out_dim": y.shape[1], "epoch_size": e_size,
               "image_shape": list(shape) if shape else None, **selection,
               "data_hash": _hash(x, y), "ntk_hash": None if ntk_x is None else _hash(ntk_x)}
    if fresh is not None:  # identifies the stream of fresh points by its first epoch
        options["fresh_hash"] = _hash(*fresh)
    return options


def _hash(*arrays: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=12)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fresh_epoch(epoch_data: Callable, epoch: int, d: int, o: int, size: int | None = None):
    """``epoch_data(epoch)`` checked: float32 ``(E, d)`` points and ``(E, o)`` targets
    (``E == size`` when given)."""
    x, y = epoch_data(epoch)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if x.ndim != 2 or y.ndim != 2 or x.shape != (x.shape[0], d) or y.shape != (x.shape[0], o) or not len(x):
        raise ValueError(f"epoch_data({epoch}) must give (E, {d}) points and (E, {o}) targets, "
                         f"got {x.shape} and {y.shape}")
    if size is not None and x.shape[0] != size:
        raise ValueError(f"epoch_data({epoch}) gave {x.shape[0]} points; every epoch must give {size}")
    return x, y


def validate(cfg: TrainConfig, coords, targets, image_shape, epoch_size):
    """``(x (N, d), y (N, O))`` float32, the image ``(H, W)`` or None, and the epoch size;
    ``TypeError``/``ValueError`` naming the bad argument."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    x = np.asarray(coords, np.float32)
    y = np.asarray(targets, np.float32)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"coords must be (N, d) and targets (N, O) with the same N >= 1, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("coords and targets must be finite")
    if cfg.loss == "bce" and (y.min() < 0 or y.max() > 1):
        raise ValueError(f"bce targets must lie in [0, 1], got range [{y.min()}, {y.max()}]")
    shape = None
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        bad_c = len(shape) == 3 and shape[2] != y.shape[1]
        if len(shape) not in (2, 3) or shape[0] * shape[1] != x.shape[0] or bad_c:
            raise ValueError(f"image_shape {tuple(image_shape)} does not fit {x.shape[0]} points "
                             f"with {y.shape[1]} channels")
        shape = shape[:2]
    e = cfg.epoch_size(x.shape[0]) if epoch_size is None else int(epoch_size)
    if not 1 <= e <= x.shape[0]:
        raise ValueError(f"epoch_size must be in 1..{x.shape[0]} (the number of points), got {epoch_size}")
    return x, y, shape, e


class _NoBar:
    def update(self, *_):
        pass

    def set_postfix(self, *_, **__):
        pass

    def close(self):
        pass


def progress_bar(total: int, initial: int, label: str, progress: bool):
    """A tqdm bar over epochs when ``progress`` and stderr is a terminal, else one that shows nothing."""
    if not progress or not sys.stderr.isatty():
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=label or "fit", unit="epoch", leave=False)
