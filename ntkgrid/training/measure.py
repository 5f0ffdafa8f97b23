"""Measurement of a model at checkpoints and curve points, and the points its NTK is taken on. No files.

A history entry (:data:`HISTORY_KEYS`) holds the full-data loss, PSNR/MS-SSIM (images;
predictions clipped to ``[0, 1]``, metrics in float64), accuracy (``bce``), the float64
NTK spectrum on a fixed evaluation subset split by parameter group
(:func:`ntkgrid.spectrum.ntk_spectrum`, ``groups=True``) on the training set
(:func:`training_set_points`: every training point, or a contiguous window of pixels where
the backend's cap requires one), the grid kernel's off-diagonal share, and ``eval_fn``'s
extras.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid import metrics, spectrum  # spectrum.ntk_spectrum looked up per call: tests patch it
from ntkgrid.config import TrainConfig
from ntkgrid.data.images import ntk_window as window_indices
from ntkgrid.models import build_model
from ntkgrid.presets import NTK_POINTS_CAP
from ntkgrid.training.step import jit_apply

__all__ = ["HISTORY_KEYS", "curve_point", "kernel_points", "measure", "ntk_points_cap", "predict",
           "training_set_points"]

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


def _out_dim(variables: Mapping) -> int:
    dense = sorted((k for k in variables["params"] if k.startswith("dense_")), key=lambda k: int(k.split("_")[1]))
    if not dense:
        raise ValueError("variables have no dense_<i> layers; pass the model instead of a config")
    return int(variables["params"][dense[-1]]["kernel"].shape[1])


def predict(cfg_or_model: TrainConfig | nn.Module, variables: Mapping, coords, batch: int = 65536) -> np.ndarray:
    """Model output at ``coords``, computed by a jitted apply in batches.

    Args:
      cfg_or_model: a :class:`TrainConfig` (the output width is read from ``variables``) or a Flax module.
      variables: the model variables (``{"params": ...}``).
      coords: ``(N, d)`` points.
      batch: points per call (the last batch is padded, so one compiled shape serves every batch).

    Returns:
      ``(N, O)`` float32 NumPy: the linear output (logits for ``bce``).
    """
    x = np.asarray(coords, np.float32)
    if x.ndim != 2:
        raise ValueError(f"coords must have shape (N, d), got {x.shape}")
    model = cfg_or_model
    if isinstance(cfg_or_model, TrainConfig):
        model = build_model(cfg_or_model, x.shape[1], _out_dim(variables))
    apply = jit_apply(model)
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


def _bce_np(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits.astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def curve_point(cfg: TrainConfig, model, variables, coords, targets) -> dict:
    """One point of the training curve (no spectra, no MS-SSIM).

    Returns ``{"loss", "psnr", "accuracy"}``: the full-data loss of the unclipped output,
    PSNR (dB of the output clipped to [0, 1]; ``mse`` only) and accuracy (``bce`` only)."""
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
    try:
        return _spectra(cfg, model, variables, ntk_x, all_groups)
    except Exception as err:  # noqa: BLE001 - XlaRuntimeError has no stable import path
        cap = ntk_points_cap("cpu")
        if not _is_out_of_memory(err) or ntk_x.shape[0] <= cap:
            raise
        if window is not None:
            idx, _ = window_indices(window, cap)
        else:
            idx = np.arange(cap)
        warnings.warn(f"NTK on {ntk_x.shape[0]} points ran out of memory ({type(err).__name__}); "
                      f"spectra on {idx.size} points instead (ntkgrid.presets.NTK_POINTS_CAP['cpu'])",
                      RuntimeWarning, stacklevel=2)
        return _spectra(cfg, model, variables, ntk_x[idx], all_groups)


def _spectra(cfg: TrainConfig, model, variables, points: np.ndarray, all_groups: bool) -> tuple[dict, dict]:
    groups = cfg.ntk_method == "structured"
    spec, kernels = spectrum.ntk_spectrum(model, variables, points, method=cfg.ntk_method, groups=groups,
                                 solve=None if all_groups else ("total",))
    return (spec, kernels) if groups else ({"total": spec}, {"total": kernels})


def measure(cfg: TrainConfig, model, variables, coords, targets, image_shape, ntk_x, eval_fn,
            ntk_window=None, last: bool = True) -> dict:
    """A history entry (without epoch/train_loss/seconds) for ``variables``.

    Args:
      cfg, model: the run's config and its Flax module.
      variables: host copies of the model variables.
      coords, targets: ``(N, d)`` and ``(N, O)`` float32, the full data set measured.
      image_shape: ``(H, W)`` when the points are an image's pixels (enables MS-SSIM), else None.
      ntk_x: ``(M, d)`` kernel points, or None for no spectra.
      eval_fn: ``eval_fn(apply, variables) -> {name: value}`` or None.
      ntk_window: ``(h, w)`` of ``ntk_x`` when it is a window of the image (the out-of-memory fallback).
      last: the run's final epoch: every group's spectrum is solved (else only the total's,
        unless ``cfg.ntk_group_spectra == "every"``; never with ``"none"``).

    Returns:
      ``{key: value}`` for :data:`HISTORY_KEYS` plus ``eval_fn``'s extras; nothing beyond the
      loss when the loss is non-finite.
    """
    entry: dict[str, Any] = dict.fromkeys(HISTORY_KEYS)
    pred = predict(model, variables, coords)
    y = targets.astype(np.float64)
    if cfg.loss == "mse":
        entry["loss"] = float(np.mean(np.square(pred.astype(np.float64) - y)))
    else:
        entry["loss"] = _bce_np(pred, y)
        entry["accuracy"] = float(np.mean((pred > 0) == (targets > 0.5)))
    if not math.isfinite(entry["loss"]):
        return entry
    if cfg.loss == "mse":
        entry.update(_image_metrics(pred, y, image_shape))
    if ntk_x is not None:
        all_groups = cfg.ntk_group_spectra == "every" or (last and cfg.ntk_group_spectra == "last")
        spectra, kernels = _spectra_with_fallback(cfg, model, variables, ntk_x, ntk_window, all_groups)
        entry["spectra"], entry["spectrum"] = spectra, spectra["total"]
        entry["ntk_points"] = int(spectra["total"].eigenvalues.size)
        if "grid" in kernels:
            entry["grid_offdiag_fraction"] = spectrum.offdiag_fraction(kernels["grid"])
    if eval_fn is not None:
        extra = dict(eval_fn(jit_apply(model), variables))
        clash = sorted(set(extra) & set(HISTORY_KEYS))
        if clash:
            raise ValueError(f"eval_fn returned reserved history keys {clash}; rename them")
        entry.update({k: _plain(v) for k, v in extra.items()})
    return entry


def _image_metrics(pred: np.ndarray, y: np.ndarray, image_shape) -> dict:
    """PSNR (dB) of ``pred`` ``(N, O)`` clipped to [0, 1] against ``y`` (float64), and
    MS-SSIM when ``image_shape`` ``(H, W)`` is given (0 scales below 11 pixels)."""
    clipped = np.clip(pred.astype(np.float64), 0.0, 1.0)
    mse = float(np.mean(np.square(clipped - y)))
    out: dict[str, Any] = {"psnr": float("inf") if mse == 0 else float(-10.0 * np.log10(mse))}
    if image_shape is None:
        return out
    h, w = image_shape
    if min(h, w) < 11:  # metrics' window size: smaller images have no MS-SSIM
        return out | {"ms_ssim_scales": 0, "ms_ssim_reduced": True}
    with jax.enable_x64(True):
        rep = metrics.ms_ssim_report(clipped.reshape(h, w, -1), y.reshape(h, w, -1))
        out["ms_ssim"] = float(rep["value"])
    return out | {"ms_ssim_scales": int(rep["scales"]), "ms_ssim_reduced": bool(rep["reduced"])}


def _plain(v):
    """numpy/jax scalars and arrays -> Python numbers and lists (non-finite values kept)."""
    if isinstance(v, (jax.Array, np.ndarray, np.generic)):
        a = np.asarray(v)
        return a.item() if a.ndim == 0 else a.tolist()
    return v


def ntk_points_cap(backend: str | None = None) -> int:
    """Most kernel points taken by default on ``backend`` (JAX's default backend if None):
    :data:`ntkgrid.presets.NTK_POINTS_CAP`."""
    return NTK_POINTS_CAP.get(backend or jax.default_backend(), NTK_POINTS_CAP["cpu"])


def kernel_points(x: np.ndarray, ntk_x, n: int | None, image_shape=None) -> tuple[np.ndarray | None, dict]:
    """The NTK points of a run and how they were chosen.

    Args:
      x: ``(N, d)`` training points.
      ntk_x: ``(M, d)`` points given by the caller (checked; "all" when it is the training
        image itself), or None: :func:`training_set_points` of ``x`` with ``n``.
      n: ``TrainConfig.ntk_points``.
      image_shape: ``(H, W)`` when ``x`` are an image's pixels.

    Returns:
      as :func:`training_set_points`.
    """
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
        idx, hw = window_indices(image_shape, cap)
        return coords[idx], {"ntk_points": int(idx.size), "ntk_selection": "window", "ntk_window": list(hw)}
    idx = np.sort(np.random.default_rng(0).choice(total, cap, replace=False))
    return coords[idx], {"ntk_points": cap, "ntk_selection": "random", "ntk_window": None}
