"""Training loop: plain SGD on coordinate MLPs, fully jitted, with measured checkpoints.

``fit(cfg, coords, targets)`` trains ``cfg.model(d, O)`` on ``coords`` ``(N, d)`` (in
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
  unless ``cfg.steps_per_epoch`` is set) without replacement
  from the pool with ``jax.random.permutation`` and takes ``ceil(E / B)`` SGD steps on
  minibatches of ``B = cfg.batch_size``. When ``B`` does not divide ``E`` the epoch's
  index list is padded by wrapping around to its start (``jnp.resize``), so the last
  batch is full and its extra points are the first ones of this epoch's order (with
  ``B > E`` points repeat inside the one batch). All sampling happens on the device.
* One epoch is ONE call of a jitted function whose steps run in ``lax.scan``; it is
  traced once per (model, loss, batch, N, E) and reused by later runs with the
  same shapes (:data:`TRACE_COUNTS` counts traces). Python dispatches epoch ``e + 1``
  before reading epoch ``e``'s loss, so the device never waits for the progress bar.
* PRNG: ``PRNGKey(cfg.seed)`` splits into an initialisation key and a data key; epoch
  ``e`` (0-based) uses ``fold_in(data_key, e)``. Same seed, same numbers (on CPU
  bit-for-bit), and a resumed run continues exactly as an uninterrupted one.

At each epoch of ``cfg.checkpoint_epochs()`` plus the final epoch (always measured),
:func:`fit` records a history entry (see :data:`HISTORY_KEYS`): full-data loss,
PSNR/MS-SSIM (images; predictions clipped to ``[0, 1]``, metrics in float64), accuracy
(``bce``), the float64 NTK spectrum on a fixed evaluation subset split by parameter group
(:func:`ntkgrid.spectrum.ntk_spectrum`, ``groups=True``) on the training set
(:func:`training_set_points`: every training point, or a contiguous window of pixels where
the backend's cap requires one), the grid kernel's off-diagonal share, and ``eval_fn``'s
extras.

Files in ``out_dir`` (all written atomically):

* ``run.json``: ``{"format", "label", "config", "options"}``, written at the start;
  ``options`` = ``{"n_points", "dim", "out_dim", "epoch_size", "image_shape",
  "ntk_points", "ntk_selection", "ntk_window", "data_hash", "ntk_hash"}``. A later call with a different config or data
  in the same ``out_dir`` raises ``ValueError`` naming the differing fields.
* ``metrics.jsonl``: one JSON line per measured epoch: the scalar keys of the history
  entry, ``"spectrum"`` as ``{group: {"lambda_max", "lambda_min", "floor",
  "n_above_floor", "n_negative"}}`` (or null), ``"spectrum_file"`` and
  ``"checkpoint_file"`` (paths relative to ``out_dir``). Non-finite numbers are null.
* ``curve.jsonl``: the training curve, one JSON line per epoch of
  ``cfg.curve_epochs()`` and per measured epoch: ``{"epoch", "loss", "psnr", "accuracy",
  "train_loss"}`` measured on all the data (not the minibatch loss).
* ``spectra/epoch_XXXXXX.npz``: per group ``eigenvalues/<group>`` (descending, float64),
  ``floor/<group>``, ``n_above_floor/<group>``, ``n_negative/<group>``,
  ``asymmetry/<group>``, plus ``groups`` (names) and ``epoch``;
  ``spectra/ntk_x.npy`` holds the ``(M, d)`` points the kernels were computed on.
* ``checkpoints/epoch_XXXXXX.msgpack`` (``flax.serialization``): ``{"variables",
  "opt_state", "epoch", "key" (the data key, uint32 (2,)), "losses" (per-epoch, float64),
  "seconds"}``.
* ``summary.json`` at the end: ``{"format", "label", "config", "options", "complete",
  "diverged", "diverged_epoch", "epochs_run", "params_epoch", "seconds", "final" (the last
  metrics line), "losses" (per epoch, null if non-finite)}``.

Rerunning :func:`fit` with the same ``out_dir`` returns the stored result if
``summary.json`` is complete, else continues from the last checkpoint that has its
metrics line (``resume=False`` starts again from epoch 0, replacing the files).

A non-finite epoch loss (or checkpoint loss) stops the run: ``diverged=True`` and
``diverged_epoch`` (1-based epoch whose loss was non-finite) are recorded, the summary is
written and :func:`fit` returns normally, so sweeps carry on.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkgrid.config import TrainConfig
from ntkgrid.spectrum import Spectrum

__all__ = ["HISTORY_KEYS", "RunResult", "TRACE_COUNTS", "fit", "load_run", "load_spectra", "make_epoch_fn",
           "ntk_points_cap", "predict", "training_set_points"]

FORMAT = 1

#: Keys every history entry has (``None`` where not applicable), before ``eval_fn`` extras:
#: epoch (0 = before training), loss (full-data MSE/BCE of the unclipped output), train_loss
#: (mean minibatch loss of that epoch; None at 0), psnr (dB, clipped output, mse only),
#: ms_ssim, ms_ssim_scales, ms_ssim_reduced (images only), accuracy (bce only: logit > 0
#: vs label > 0.5), spectrum (the "total" :class:`Spectrum`), spectra ({group: Spectrum}),
#: ntk_points (how many points the kernels were taken on), grid_offdiag_fraction (share of
#: the grid kernel's squared Frobenius norm off its diagonal: 0 when no two of those points
#: share a grid node; None without a grid), seconds (cumulative wall time of the run).
HISTORY_KEYS = ("epoch", "loss", "train_loss", "psnr", "ms_ssim", "ms_ssim_scales", "ms_ssim_reduced",
                "accuracy", "spectrum", "spectra", "ntk_points", "grid_offdiag_fraction", "seconds")

#: How many times each jitted function was traced (``"epoch"``, ``"predict"``); a Python
#: side effect inside the traced bodies, for tests and profiling.
TRACE_COUNTS: collections.Counter = collections.Counter()


@dataclasses.dataclass
class RunResult:
    """Outcome of :func:`fit` or :func:`load_run`.

    Attributes:
      config: the :class:`TrainConfig` trained.
      label: free-form name given to :func:`fit`.
      params: model variables (``{"params": ...}``) at epoch ``params_epoch``, the last
        measured epoch (the final one unless the run diverged: then the last good one).
      params_epoch: epoch of ``params``.
      history: one dict per measured epoch, keys :data:`HISTORY_KEYS` plus extras.
      losses: ``(epochs_run,)`` float64 mean minibatch loss of each epoch (the last one is
        non-finite when the run diverged).
      diverged: the run stopped on a non-finite loss.
      diverged_epoch: the 1-based epoch whose loss was non-finite (None if not diverged).
      seconds: wall time spent training and measuring, over all sessions of the run.
      complete: the run reached its last epoch or diverged (``summary.json`` exists).
      out_dir: where its files are (None if nothing was written).
      options: the data-dependent settings (see ``run.json`` in the module docstring).
      curve: the training curve: one dict per epoch of ``config.curve_epochs()`` and per
        measured epoch, ``{"epoch", "loss", "psnr", "accuracy", "train_loss"}``: full-data
        loss and PSNR (dB, clipped output; ``mse`` only), accuracy (``bce`` only) and the
        mean minibatch loss of that epoch (None at 0), sorted by epoch.
    """

    config: TrainConfig
    label: str
    params: dict
    params_epoch: int
    history: list[dict]
    losses: np.ndarray
    diverged: bool
    diverged_epoch: int | None
    seconds: float
    complete: bool = True
    out_dir: Path | None = None
    options: dict = dataclasses.field(default_factory=dict)
    curve: list[dict] = dataclasses.field(default_factory=list)

    @property
    def final(self) -> dict:
        """The last history entry (``{}`` if none)."""
        return self.history[-1] if self.history else {}


# ---------------------------------------------------------------------------- jitted pieces


def _loss_fn(loss: str, reduction: str = "mean") -> Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]:
    """``loss_of(out, y)`` for ``(B, O)`` arrays: the mean over all ``B O`` terms times
    :func:`ntkgrid.config.loss_scale` (``reduction``: "mean", "sum_channels", "sum")."""
    if reduction != "mean":
        from ntkgrid.config import loss_scale

        base = _loss_fn(loss)
        return lambda out, y: loss_scale(reduction, out.shape[0], out.shape[-1]) * base(out, y)
    if loss == "mse":
        return lambda out, y: jnp.mean(jnp.square(out - y))
    if loss == "bce":
        return lambda out, y: jnp.mean(optax.sigmoid_binary_cross_entropy(out, y))
    raise ValueError(f"loss must be 'mse' or 'bce', got {loss!r}")


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
    from ntkgrid.config import loss_scale

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


@functools.lru_cache(maxsize=32)
def _jit_init(model: nn.Module) -> Callable:
    return jax.jit(model.init)  # one compilation instead of one per eager op


@functools.lru_cache(maxsize=32)
def _jit_apply(model: nn.Module) -> Callable:
    def apply(variables, x):
        TRACE_COUNTS["predict"] += 1
        return model.apply(variables, x)

    return jax.jit(apply)


def _host_copy(tree):
    """NumPy copies of a pytree's arrays (never views of device buffers)."""
    return jax.tree.map(lambda a: np.array(a, copy=True), jax.device_get(tree))


def _out_dim(variables: Mapping) -> int:
    dense = sorted((k for k in variables["params"] if k.startswith("dense_")), key=lambda k: int(k.split("_")[1]))
    if not dense:
        raise ValueError("variables have no dense_<i> layers; pass the model instead of a config")
    return int(variables["params"][dense[-1]]["kernel"].shape[1])


def predict(cfg_or_model: TrainConfig | nn.Module, variables: Mapping, coords, batch: int = 65536) -> np.ndarray:
    """Model output at ``coords`` ``(N, d)``: ``(N, O)`` float32 NumPy (linear output; logits
    for ``bce``), computed by a jitted apply in batches of ``batch`` points (the last one
    padded, so one compiled shape serves every batch). ``cfg_or_model`` is a
    :class:`TrainConfig` (the output width is read from ``variables``) or a Flax module."""
    x = np.asarray(coords, np.float32)
    if x.ndim != 2:
        raise ValueError(f"coords must have shape (N, d), got {x.shape}")
    model = cfg_or_model
    if isinstance(cfg_or_model, TrainConfig):
        model = cfg_or_model.model(x.shape[1], _out_dim(variables))
    apply = _jit_apply(model)
    variables = jax.device_put(variables)  # once, not once per batch
    n = x.shape[0]
    b = max(1, min(int(batch), n))
    outs = []
    for i in range(0, n, b):
        chunk = x[i:i + b]
        m = chunk.shape[0]
        if m < b:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - m, axis=0)])
        outs.append(apply(variables, chunk)[:m])
    return np.asarray(jnp.concatenate(outs) if len(outs) > 1 else outs[0], np.float32)


# ---------------------------------------------------------------------------- measurements


def _bce_np(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits.astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def _curve_point(cfg: TrainConfig, model, variables, coords, targets) -> dict:
    """Full-data loss, PSNR (``mse``; dB of the output clipped to [0, 1]) and accuracy
    (``bce``) of ``variables``: one point of the training curve (no spectra, no MS-SSIM)."""
    pred = predict(model, variables, coords).astype(np.float64)
    y = np.asarray(targets, np.float64)
    point: dict[str, Any] = {"loss": None, "psnr": None, "accuracy": None}
    if cfg.loss == "mse":
        point["loss"] = float(np.mean(np.square(pred - y)))
        if math.isfinite(point["loss"]):
            mse = float(np.mean(np.square(np.clip(pred, 0.0, 1.0) - y)))
            point["psnr"] = float("inf") if mse == 0 else float(-10.0 * np.log10(mse))
    else:
        point["loss"] = _bce_np(pred, y)
        point["accuracy"] = float(np.mean((pred > 0) == (y > 0.5)))
    return point


def _is_out_of_memory(err: BaseException) -> bool:
    text = f"{type(err).__name__}: {err}"
    return isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def _spectra_with_fallback(cfg: TrainConfig, model, variables, ntk_x: np.ndarray, window,
                           all_groups: bool = True) -> tuple[dict, dict]:
    """``({group: Spectrum}, {group: kernel})`` on ``ntk_x``; if the kernel does not fit in
    memory, warns and retries on the CPU cap (:data:`ntkgrid.presets.NTK_POINTS_CAP`):
    a centred window of ``window`` ``(h, w)`` (image points), else the first points.
    ``all_groups=False`` solves only the total kernel's spectrum (the group kernels are
    still returned, e.g. for the grid's off-diagonal share)."""
    from ntkgrid.spectrum import ntk_spectrum

    groups = cfg.ntk_method == "structured"

    def solve(points):
        spec, kernels = ntk_spectrum(model, variables, points, method=cfg.ntk_method, groups=groups,
                                     solve=None if all_groups else ("total",))
        return (spec, kernels) if groups else ({"total": spec}, {"total": kernels})

    try:
        return solve(ntk_x)
    except Exception as err:  # noqa: BLE001 - XlaRuntimeError has no stable import path
        cap = ntk_points_cap("cpu")
        if not _is_out_of_memory(err) or ntk_x.shape[0] <= cap:
            raise
        if window is not None:
            from ntkgrid.data.images import ntk_window

            idx, _ = ntk_window(window, cap)
        else:
            idx = np.arange(cap)
        warnings.warn(f"NTK on {ntk_x.shape[0]} points ran out of memory ({type(err).__name__}); "
                      f"spectra on {idx.size} points instead (ntkgrid.presets.NTK_POINTS_CAP['cpu'])",
                      RuntimeWarning, stacklevel=2)
        return solve(ntk_x[idx])


def _measure(cfg: TrainConfig, model, variables, coords, targets, image_shape, ntk_x, eval_fn,
             ntk_window=None, last: bool = True) -> dict:
    """A history entry (without epoch/train_loss/seconds) for ``variables``."""
    from ntkgrid import metrics

    pred = predict(model, variables, coords)
    y = targets.astype(np.float64)
    entry: dict[str, Any] = dict.fromkeys(HISTORY_KEYS)
    if cfg.loss == "mse":
        entry["loss"] = float(np.mean(np.square(pred.astype(np.float64) - y)))
    else:
        entry["loss"] = _bce_np(pred, y)
        entry["accuracy"] = float(np.mean((pred > 0) == (targets > 0.5)))
    if not math.isfinite(entry["loss"]):
        return entry
    if cfg.loss == "mse":
        clipped = np.clip(pred.astype(np.float64), 0.0, 1.0)
        mse = float(np.mean(np.square(clipped - y)))
        entry["psnr"] = float("inf") if mse == 0 else float(-10.0 * np.log10(mse))
        if image_shape is not None:
            h, w = image_shape
            if min(h, w) >= 11:  # metrics' window size: smaller images have no MS-SSIM
                with jax.enable_x64(True):
                    rep = metrics.ms_ssim_report(clipped.reshape(h, w, -1), y.reshape(h, w, -1))
                    entry["ms_ssim"] = float(rep["value"])
                entry["ms_ssim_scales"], entry["ms_ssim_reduced"] = int(rep["scales"]), bool(rep["reduced"])
            else:
                entry["ms_ssim_scales"], entry["ms_ssim_reduced"] = 0, True
    if ntk_x is not None:
        all_groups = last or cfg.ntk_group_spectra == "every"
        spectra, kernels = _spectra_with_fallback(cfg, model, variables, ntk_x, ntk_window, all_groups)
        entry["spectra"], entry["spectrum"] = spectra, spectra["total"]
        entry["ntk_points"] = int(spectra["total"].eigenvalues.size)
        if "grid" in kernels:
            from ntkgrid.spectrum import offdiag_fraction

            entry["grid_offdiag_fraction"] = offdiag_fraction(kernels["grid"])
    if eval_fn is not None:
        extra = dict(eval_fn(_jit_apply(model), variables))
        clash = sorted(set(extra) & set(HISTORY_KEYS))
        if clash:
            raise ValueError(f"eval_fn returned reserved history keys {clash}; rename them")
        entry.update({k: _plain(v) for k, v in extra.items()})
    return entry


def _plain(v):
    """numpy/jax scalars and arrays -> Python numbers and lists (for JSON)."""
    if isinstance(v, (jax.Array, np.ndarray, np.generic)):
        a = np.asarray(v)
        return a.item() if a.ndim == 0 else a.tolist()
    return v


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _spectrum_summary(spectra: Mapping[str, Spectrum] | None) -> dict | None:
    if spectra is None:
        return None
    return {g: {"lambda_max": s.lambda_max, "lambda_min": s.lambda_min, "floor": s.floor,
                "n_above_floor": s.n_above_floor, "n_negative": s.n_negative} for g, s in spectra.items()}


def _line(entry: Mapping, spectrum_file: str | None, checkpoint_file: str | None) -> dict:
    line = {k: v for k, v in entry.items() if k not in ("spectrum", "spectra")}
    line["spectrum"] = _spectrum_summary(entry.get("spectra"))
    line["spectrum_file"], line["checkpoint_file"] = spectrum_file, checkpoint_file
    return _json_safe(line)


# ---------------------------------------------------------------------------- files


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_json(path: Path, obj, lines: bool = False) -> None:
    if lines:
        text = "".join(json.dumps(_json_safe(o), allow_nan=False) + "\n" for o in obj)
    else:
        text = json.dumps(_json_safe(obj), indent=1, allow_nan=False) + "\n"
    _write_bytes(path, text.encode())


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read it as JSON ({err})") from err


def _ckpt_path(out: Path, epoch: int) -> Path:
    return out / "checkpoints" / f"epoch_{epoch:06d}.msgpack"


def _spec_path(out: Path, epoch: int) -> Path:
    return out / "spectra" / f"epoch_{epoch:06d}.npz"


def _save_spectra(path: Path, epoch: int, spectra: Mapping[str, Spectrum]) -> None:
    arrays: dict[str, np.ndarray] = {"groups": np.array(list(spectra)), "epoch": np.int64(epoch)}
    for g, s in spectra.items():
        arrays[f"eigenvalues/{g}"] = s.eigenvalues
        arrays[f"floor/{g}"] = np.float64(s.floor)
        arrays[f"n_above_floor/{g}"] = np.int64(s.n_above_floor)
        arrays[f"n_negative/{g}"] = np.int64(s.n_negative)
        arrays[f"asymmetry/{g}"] = np.float64(s.asymmetry)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _write_bytes(path, buf.getvalue())


def load_spectra(path: str | os.PathLike) -> dict[str, Spectrum]:
    """``{group: Spectrum}`` from a ``spectra/epoch_XXXXXX.npz`` file."""
    with np.load(path) as z:
        return {str(g): Spectrum(z[f"eigenvalues/{g}"], float(z[f"floor/{g}"]), int(z[f"n_above_floor/{g}"]),
                                 int(z[f"n_negative/{g}"]), float(z[f"asymmetry/{g}"])) for g in z["groups"]}


def _read_history(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    history = []
    for i, text in enumerate(path.read_text().splitlines()):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{path}: line {i + 1} is not JSON ({err})") from err
        entry = {k: v for k, v in line.items() if k not in ("spectrum_file", "checkpoint_file")}
        entry["spectra"] = entry["spectrum"] = None
        if line.get("spectrum_file"):
            entry["spectra"] = load_spectra(out / line["spectrum_file"])
            entry["spectrum"] = entry["spectra"]["total"]
        history.append(entry)
    return history


def _read_curve(out: Path) -> list[dict]:
    path = out / "curve.jsonl"
    if not path.exists():
        return []
    try:
        return [json.loads(t) for t in path.read_text().splitlines() if t.strip()]
    except ValueError as err:
        raise ValueError(f"{path}: not JSON lines ({err})") from err


def _history_lines(out: Path) -> dict[int, dict]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return {}
    return {json.loads(t)["epoch"]: json.loads(t) for t in path.read_text().splitlines() if t.strip()}


def _restore_ckpt(path: Path, template: dict | None = None) -> dict | None:
    try:
        data = path.read_bytes()
        return flax.serialization.from_bytes(template, data) if template is not None else \
            flax.serialization.msgpack_restore(data)
    except Exception:  # noqa: BLE001 - a truncated or foreign file is skipped, not fatal
        return None


def _latest_checkpoint(out: Path, template: dict, lines: Mapping[int, dict]):
    """Newest checkpoint that restores and has its metrics line: ``(epoch, state)`` or None."""
    files = sorted((out / "checkpoints").glob("epoch_*.msgpack"), reverse=True)
    for f in files:
        epoch = int(f.stem.split("_")[1])
        if epoch not in lines:
            continue
        state = _restore_ckpt(f, template)
        if state is not None and int(state["epoch"]) == epoch:
            return epoch, state
    return None


def _clear(out: Path, after: int = -1) -> None:
    """Remove this module's files for epochs > ``after`` (all files with ``after=-1``)."""
    for sub, pat in (("checkpoints", "epoch_*.msgpack"), ("spectra", "epoch_*.npz")):
        for f in (out / sub).glob(pat):
            if int(f.name.split("_")[1].split(".")[0]) > after:
                f.unlink()
    if after < 0:
        for name in ("summary.json", "metrics.jsonl", "curve.jsonl"):
            (out / name).unlink(missing_ok=True)


def _diff(a: Mapping, b: Mapping, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: stored {va!r}, now {vb!r}")
    return out


def _check_same_run(out: Path, config: dict, options: dict) -> None:
    for name in ("summary.json", "run.json"):
        path = out / name
        if path.exists():
            meta = _read_json(path)
            stored = meta.get("config", {})
            try:  # fields added since the run was written take their defaults
                stored = _json_safe(TrainConfig.from_dict(stored).to_dict())
            except (TypeError, ValueError):
                pass
            diffs = _diff({"config": stored, "options": meta.get("options", {})},
                          _json_safe({"config": config, "options": options}))
            if diffs:
                raise ValueError(
                    f"{path}: out_dir holds a different run ({'; '.join(diffs)}); "
                    "use another out_dir or delete this one")
            return


# ---------------------------------------------------------------------------- fit


def _hash(*arrays: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=12)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def ntk_points_cap(backend: str | None = None) -> int:
    """Most kernel points taken by default on ``backend`` (JAX's default backend if None):
    :data:`ntkgrid.presets.NTK_POINTS_CAP`."""
    from ntkgrid.presets import NTK_POINTS_CAP

    return NTK_POINTS_CAP.get(backend or jax.default_backend(), NTK_POINTS_CAP["cpu"])


def kernel_points(x: np.ndarray, ntk_x, n: int | None, image_shape=None) -> tuple[np.ndarray | None, dict]:
    """The NTK points of a run and how they were chosen: ``ntk_x`` as given (checked to be
    ``(M, d)``; "all" when it is the training image itself), else
    :func:`training_set_points` of ``x`` with ``n`` (``TrainConfig.ntk_points``)."""
    if ntk_x is None:
        return training_set_points(x, n, image_shape)
    ntk_x = np.asarray(ntk_x, np.float32)
    d = x.shape[1]
    if ntk_x.ndim != 2 or ntk_x.shape[1] != d:
        raise ValueError(f"ntk_x must have shape (M, {d}), got {ntk_x.shape}")
    whole = image_shape is not None and np.array_equal(ntk_x, x)  # the training image itself
    return ntk_x, {"ntk_points": int(ntk_x.shape[0]), "ntk_selection": "all" if whole else "given",
                   "ntk_window": list(image_shape) if whole else None}


def training_set_points(coords: np.ndarray, n: int | None, image_shape=None) -> tuple[np.ndarray | None, dict]:
    """The points NTK spectra are computed on, and how they were chosen.

    ``coords``: ``(N, d)`` training points; ``n``: ``TrainConfig.ntk_points`` (``None``:
    the whole training set up to :func:`ntk_points_cap`; ``0``: none; ``n``: a cap of ``n``
    points). For images (``image_shape`` given) a cap is a contiguous centred window of
    pixels (:func:`ntkgrid.data.images.ntk_window`); for other data a uniform random subset
    drawn with seed 0 (training draws its points uniformly from the same pool).

    Returns ``(points (M, d) or None, {"ntk_points": M, "ntk_selection": "all" | "window" |
    "random" | None, "ntk_window": [h, w] or None})``. Raises ``ValueError`` naming the
    value when an explicit ``n`` exceeds the ``N`` training points.
    """
    none = {"ntk_points": 0, "ntk_selection": None, "ntk_window": None}
    total = coords.shape[0]
    if n is not None and int(n) <= 0:
        return None, none
    if n is not None and int(n) > total:
        raise ValueError(f"ntk_points={n} exceeds the {total} training points; use ntk_points=None for all of them")
    cap = ntk_points_cap() if n is None else int(n)
    if cap >= total:
        return coords, {"ntk_points": total, "ntk_selection": "all",
                        "ntk_window": list(image_shape[:2]) if image_shape is not None else None}
    if n is None:
        warnings.warn(f"NTK spectra on {cap} of the {total} training points (the {jax.default_backend()} cap, "
                      "ntkgrid.presets.NTK_POINTS_CAP)", RuntimeWarning, stacklevel=3)
    if image_shape is not None:
        from ntkgrid.data.images import ntk_window

        idx, hw = ntk_window(image_shape, cap)
        return coords[idx], {"ntk_points": int(idx.size), "ntk_selection": "window", "ntk_window": list(hw)}
    idx = np.sort(np.random.default_rng(0).choice(total, cap, replace=False))
    return coords[idx], {"ntk_points": cap, "ntk_selection": "random", "ntk_window": None}


def _fresh_epoch(epoch_data, epoch: int, d: int, o: int, size: int | None = None):
    """``epoch_data(epoch)`` checked: float32 ``(E, d)`` points and ``(E, o)`` targets."""
    x, y = epoch_data(epoch)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if x.ndim != 2 or y.ndim != 2 or x.shape != (x.shape[0], d) or y.shape != (x.shape[0], o) or not len(x):
        raise ValueError(f"epoch_data({epoch}) must give (E, {d}) points and (E, {o}) targets, "
                         f"got {x.shape} and {y.shape}")
    if size is not None and x.shape[0] != size:
        raise ValueError(f"epoch_data({epoch}) gave {x.shape[0]} points; every epoch must give {size}")
    return x, y


def _validate(cfg: TrainConfig, coords, targets, image_shape, epoch_size):
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
    """Train ``cfg.model(d, O)`` by SGD on ``(coords, targets)``; see the module docstring.

    Args:
      cfg: what to build and how to train it.
      coords: ``(N, d)`` points in ``[0, 1]^d`` (float32); the pool for ``epoch_size``.
      targets: ``(N, O)`` values: RGB in ``[0, 1]`` (``mse``) or labels in ``[0, 1]`` (``bce``).
      image_shape: ``(H, W)`` (or ``(H, W, O)``) with ``H W = N`` when the points are an
        image's pixels in row-major order; enables MS-SSIM, and a cap on the NTK points
        then takes a contiguous window of pixels (:func:`training_set_points`).
      ntk_x: ``(M, d)`` points for the NTK spectra; default: chosen from ``coords`` by
        :func:`training_set_points` with ``cfg.ntk_points`` (the whole training set up to
        the backend's cap; the same points for every ``cfg.seed``); ``cfg.ntk_points == 0``
        and no ``ntk_x``: no spectra.
      eval_fn: ``eval_fn(apply, variables) -> {name: value}`` called at every measured
        epoch; ``apply(variables, x)`` is the jitted model. Values should be numbers.
      out_dir: directory for the files listed in the module docstring; None writes none.
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
      :class:`RunResult`. Never raises on divergence.
    """
    x, y, shape, e_size = _validate(cfg, coords, targets, image_shape, epoch_size)
    fresh = None
    if epoch_data is not None:
        if epoch_size is not None:
            raise ValueError("epoch_size and epoch_data exclude each other (epoch_data sets the epoch's points)")
        fresh = _fresh_epoch(epoch_data, 0, x.shape[1], y.shape[1])
        e_size = fresh[0].shape[0]
    save_epochs = sorted(set(cfg.checkpoint_epochs()) | {cfg.epochs})
    curve_epochs = set(cfg.curve_epochs())
    n, d = x.shape
    o = y.shape[1]
    ntk_x, selection = kernel_points(x, ntk_x, cfg.ntk_points, shape)
    options = {"n_points": n, "dim": d, "out_dim": o, "epoch_size": e_size,
               "image_shape": list(shape) if shape else None, **selection,
               "data_hash": _hash(x, y), "ntk_hash": None if ntk_x is None else _hash(ntk_x)}
    if fresh is not None:  # identifies the stream of fresh points by its first epoch
        options["fresh_hash"] = _hash(*fresh)
    config = cfg.to_dict()

    model = cfg.model(d, o)
    init_key, data_key = jax.random.split(jax.random.PRNGKey(cfg.seed))
    variables = _jit_init(model)(init_key, jnp.asarray(x[:1]))
    opt_state = optax.sgd(cfg.learning_rate).init(variables["params"])

    out = Path(out_dir) if out_dir is not None else None
    start, losses, history, lines, seconds0, curve = 0, [], [], {}, 0.0, []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _check_same_run(out, config, options)
        summary = out / "summary.json"
        if resume and summary.exists() and _read_json(summary).get("complete"):
            return load_run(out)
        restored = None
        if resume:
            lines = _history_lines(out)
            template = {"variables": variables, "opt_state": opt_state, "epoch": 0, "key": data_key,
                        "losses": np.zeros(0), "seconds": 0.0}
            restored = _latest_checkpoint(out, template, lines)
        if restored is None:
            _clear(out)
            lines = {}
        else:
            start, state = restored
            _clear(out, after=start)
            summary.unlink(missing_ok=True)
            variables, opt_state = state["variables"], state["opt_state"]
            losses = [float(v) for v in np.asarray(state["losses"])]
            seconds0 = float(state["seconds"])
            lines = {k: v for k, v in lines.items() if k <= start}
            history = [h for h in _read_history(out) if h["epoch"] <= start]
            curve = [c for c in _read_curve(out) if c["epoch"] <= start]
        _write_json(out / "run.json", {"format": FORMAT, "label": label, "config": config, "options": options})
        if ntk_x is not None:
            buf = io.BytesIO()
            np.save(buf, ntk_x)
            _write_bytes(out / "spectra" / "ntk_x.npy", buf.getvalue())

    t0 = time.perf_counter()
    elapsed = lambda: seconds0 + time.perf_counter() - t0  # noqa: E731
    diverged_epoch = None
    kept = _host_copy(variables)  # variables of the last measured (or the starting) epoch
    kept_epoch = start

    def save_state(epoch: int, host: dict) -> Path:
        state = {"variables": host, "opt_state": _host_copy(opt_state), "epoch": epoch,
                 "key": np.asarray(data_key), "losses": np.asarray(losses[:epoch], np.float64), "seconds": elapsed()}
        _write_bytes(_ckpt_path(out, epoch), flax.serialization.to_bytes(state))
        return _ckpt_path(out, epoch)

    def add_curve_point(epoch: int, point: Mapping) -> bool:
        """Record ``epoch``'s full-data loss/PSNR; False if the loss is non-finite."""
        curve.append({"epoch": epoch, **{k: point.get(k) for k in ("loss", "psnr", "accuracy")},
                      "train_loss": losses[epoch - 1] if epoch > 0 else None})
        if out is not None:
            _write_json(out / "curve.jsonl", curve, lines=True)
        return point.get("loss") is not None and math.isfinite(point["loss"])

    def checkpoint(epoch: int) -> bool:
        """Measure and save ``epoch``; False if its loss is non-finite (divergence)."""
        nonlocal kept, kept_epoch
        host = _host_copy(variables)  # a copy: the device buffers are donated to the next epoch
        entry = _measure(cfg, model, host, x, y, shape, ntk_x, eval_fn, selection["ntk_window"],
                         last=epoch == cfg.epochs)
        if not add_curve_point(epoch, entry):
            return False
        entry["epoch"] = epoch
        entry["train_loss"] = losses[epoch - 1] if epoch > 0 else None
        entry["seconds"] = elapsed()
        history.append(entry)
        kept, kept_epoch = host, epoch
        if out is not None:
            spec_file = None
            if entry["spectra"] is not None:
                _save_spectra(_spec_path(out, epoch), epoch, entry["spectra"])
                spec_file = str(_spec_path(out, epoch).relative_to(out))
            ckpt = save_state(epoch, host)
            lines[epoch] = _line(entry, spec_file, str(ckpt.relative_to(out)))
            _write_json(out / "metrics.jsonl", [lines[k] for k in sorted(lines)], lines=True)
        return True

    bar = _progress_bar(cfg.epochs, start, label, progress)
    try:
        if start == 0 and not history and 0 in save_epochs and not checkpoint(0):
            diverged_epoch = 0
        elif start == 0 and not curve and 0 in curve_epochs and 0 not in save_epochs:
            add_curve_point(0, _curve_point(cfg, model, variables, x, y))
        epoch_fn = make_epoch_fn(model, cfg.loss, cfg.batch_size, n if fresh is None else e_size, e_size,
                                 cfg.loss_reduction)
        lr = np.float32(cfg.learning_rate)
        xd, yd, kd = jnp.asarray(x), jnp.asarray(y), jnp.asarray(data_key)
        if fresh is not None:
            if start:
                fresh = _fresh_epoch(epoch_data, start, d, o, e_size)
            xd, yd = jnp.asarray(fresh[0]), jnp.asarray(fresh[1])
        variables = jax.device_put(variables)
        pending = None  # (epoch number, device loss) not yet read

        def settle() -> bool:
            nonlocal pending, diverged_epoch
            epoch, value = pending
            pending = None
            v = float(value)
            losses.append(v)
            bar.update(1)
            post = {"loss": f"{v:.3e}"}
            if cfg.loss == "mse" and v > 0 and math.isfinite(v):
                post["psnr"] = f"{-10 * math.log10(v):.2f}"
            bar.set_postfix(post, refresh=False)
            if not math.isfinite(v):
                diverged_epoch = epoch
                return False
            return True

        epoch = start
        while diverged_epoch is None and epoch < cfg.epochs:
            variables, opt_state, value = epoch_fn(variables, opt_state, kd, np.int32(epoch), lr, xd, yd)
            epoch += 1
            if fresh is not None and epoch < cfg.epochs:  # host work overlaps the dispatched epoch
                xd, yd = map(jnp.asarray, _fresh_epoch(epoch_data, epoch, d, o, e_size))
            if pending is not None and not settle():
                break
            pending = (epoch, value)
            if epoch in save_epochs:
                if not settle():
                    break
                if not checkpoint(epoch):
                    diverged_epoch = epoch
            elif epoch in curve_epochs:
                if not settle():
                    break
                if not add_curve_point(epoch, _curve_point(cfg, model, variables, x, y)):
                    diverged_epoch = epoch
        if pending is not None and diverged_epoch is None:
            settle()
    finally:
        bar.close()
    if out is not None and not _ckpt_path(out, kept_epoch).exists():  # diverged before any checkpoint
        save_state(kept_epoch, kept)

    result = RunResult(
        config=cfg, label=label, params=jax.tree.map(jnp.asarray, kept), params_epoch=kept_epoch,
        history=history, losses=np.asarray(losses, np.float64), diverged=diverged_epoch is not None,
        diverged_epoch=diverged_epoch, seconds=elapsed(), complete=True, out_dir=out, options=options,
        curve=curve)
    if out is not None:
        _write_json(out / "summary.json", _summary(result, lines))
    return result


def _summary(r: RunResult, lines: Mapping[int, dict]) -> dict:
    return {"format": FORMAT, "label": r.label, "config": r.config.to_dict(), "options": r.options,
            "complete": r.complete, "diverged": r.diverged, "diverged_epoch": r.diverged_epoch,
            "epochs_run": int(r.losses.size), "params_epoch": r.params_epoch, "seconds": r.seconds,
            "final": lines[max(lines)] if lines else None, "losses": [float(v) for v in r.losses],
            "curve": r.curve}


class _NoBar:
    def update(self, *_):
        pass

    def set_postfix(self, *_, **__):
        pass

    def close(self):
        pass


def _progress_bar(total: int, initial: int, label: str, progress: bool):
    if not progress or not sys.stderr.isatty():
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=label or "fit", unit="epoch", leave=False)


# ---------------------------------------------------------------------------- load_run


def load_run(out_dir: str | os.PathLike) -> RunResult:
    """The :class:`RunResult` stored in ``out_dir``: complete (``summary.json``) or partial
    (an interrupted run: ``run.json`` and its checkpoints; ``complete=False``).

    ``params`` are those of the last measured epoch; spectra come from the ``.npz`` files.
    """
    out = Path(out_dir)
    summary_path, run_path = out / "summary.json", out / "run.json"
    if summary_path.exists():
        meta = _read_json(summary_path)
    elif run_path.exists():
        meta = _read_json(run_path)
    else:
        raise FileNotFoundError(f"{out}: no summary.json or run.json, so not an ntkgrid run directory")
    try:
        cfg = TrainConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{summary_path if summary_path.exists() else run_path}: bad config ({err})") from err
    history = _read_history(out)
    complete = bool(meta.get("complete", False))
    params_epoch = meta.get("params_epoch") if complete else (history[-1]["epoch"] if history else None)
    params, losses, seconds = None, np.zeros(0), float(meta.get("seconds") or 0.0)
    if params_epoch is not None:
        state = _restore_ckpt(_ckpt_path(out, params_epoch))
        if state is None:
            raise ValueError(f"{_ckpt_path(out, params_epoch)}: missing or unreadable checkpoint")
        params = jax.tree.map(jnp.asarray, state["variables"])
        losses = np.asarray(state["losses"], np.float64)
        if not complete:
            seconds = float(state["seconds"])
    if complete:
        losses = np.asarray([np.nan if v is None else v for v in meta["losses"]], np.float64)
    return RunResult(
        config=cfg, label=meta.get("label", ""), params=params, params_epoch=params_epoch, history=history,
        losses=losses, diverged=bool(meta.get("diverged", False)), diverged_epoch=meta.get("diverged_epoch"),
        seconds=seconds, complete=complete, out_dir=out, options=meta.get("options", {}),
        curve=_read_curve(out))
