"""Panel (c) of the GTK study: image and occupancy fits of every model, trained by
:func:`ntkgrid.training.fit`, with PSNR / MS-SSIM and IoU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from ntkgrid import metrics
from ntkgrid.config import TrainConfig
from ntkgrid.data.images import bundled_image, image_to_dataset
from ntkgrid.data.meshes import default_shape, occupancy
from ntkgrid.gtk_study.setup import GTKSetup, fit_encoding
from ntkgrid.models import build_model
from ntkgrid.occupancy import OccupancySetup, occupancy_metrics, prepare_data
from ntkgrid.training import fit, predict


def train_config(name: str, setup: GTKSetup, dim: int, seed: int, *, loss: str, learning_rate: float, epochs: int,
                 batch_size: int, steps_per_epoch: int | None = None) -> TrainConfig:
    """The :class:`~ntkgrid.config.TrainConfig` of model ``name`` in a fit: the encoding of
    :func:`~ntkgrid.gtk_study.setup.fit_encoding`, ``setup.hidden`` (NTK parameterisation),
    plain SGD; measured only at the last epoch, no training curve, no spectra."""
    return TrainConfig(encoding=fit_encoding(name, setup, dim, seed), hidden=tuple(setup.hidden),
                       learning_rate=learning_rate, epochs=epochs, batch_size=batch_size, loss=loss,
                       steps_per_epoch=steps_per_epoch, checkpoints=(), curve_every=0, ntk_points=0, seed=seed)


def _train(cfg: TrainConfig, x: np.ndarray, y: np.ndarray):
    """:func:`ntkgrid.training.fit` in memory (no files). Returns ``(model, variables, losses
    (per epoch, list of float), seconds, diverged)``; after a divergence the variables are
    the initial ones (fit keeps the last finite measured epoch) and the caller reports NaN."""
    res = fit(cfg, x, y, progress=False)
    model = build_model(cfg, x.shape[1], y.shape[1])
    return model, res.params, [float(a) for a in res.losses], res.seconds, res.diverged


def _n_params(v) -> int:
    return int(sum(np.prod(a.shape) for a in jax.tree.leaves(v["params"])))


def fit_image(setup: GTKSetup, seed: int, log: Callable[[str], None] = print) -> dict:
    """2D image fits: PSNR, MS-SSIM, error maps.

    Args:
      setup: ``image`` (bundled photo) at ``image_size`` px, ``image_epochs`` passes of
        ``image_batch``-pixel SGD steps at ``image_lrs[model]``, for each of ``models``.
      seed: initialisation, minibatch order and MulFAGrid filters.
      log: where one line per model goes.

    Returns:
      ``{"image", "size", "target" (H, W, 3) float32 in [0, 1], "runs": {model: {"lr",
      "params", "psnr" (dB), "ms_ssim", "ms_ssim_scales", "final_loss", "diverged",
      "seconds", "_pred" (H, W, 3) float64}}}``.
    """
    img = bundled_image(setup.image, setup.image_size)
    x, y = image_to_dataset(img)
    lrs = dict(setup.image_lrs)
    runs = {}
    for name in setup.models:
        cfg = train_config(name, setup, 2, seed, loss="mse", learning_rate=lrs[name], epochs=setup.image_epochs,
                           batch_size=setup.image_batch)
        model, v, losses, sec, diverged = _train(cfg, x, y)
        pred = np.clip(predict(model, v, x).astype(np.float64), 0.0, 1.0).reshape(img.shape)
        if diverged:  # the network's output is NaN after a divergence
            pred = np.full_like(pred, np.nan)
        with jax.enable_x64(True):
            psnr = float(metrics.psnr(pred, img.astype(np.float64)))
            rep = metrics.ms_ssim_report(pred, img.astype(np.float64))
        runs[name] = {"lr": lrs[name], "params": _n_params(v), "psnr": psnr, "ms_ssim": float(rep["value"]),
                      "ms_ssim_scales": int(rep["scales"]), "final_loss": losses[-1] if losses else None,
                      "diverged": diverged, "seconds": sec, "_pred": pred}
        log(f"  image {name}: PSNR {psnr:.2f} dB, MS-SSIM {rep['value']:.4f} ({sec:.0f} s)")
    return {"image": setup.image, "size": setup.image_size, "target": img, "runs": runs}


def fit_occupancy(setup: GTKSetup, seed: int, cache: Path, log: Callable[[str], None] = print) -> dict:
    """3D occupancy fits on the default procedural shape: IoU on held-out pools, a slice.

    Args:
      setup: ``occ_pool`` training points (half near the surface), ``occ_eval`` held-out
        points per pool, ``occ_epochs`` epochs of ``occ_steps`` steps of ``occ_batch``
        points at ``occ_lrs[model]``, a ``occ_slice``-pixel slice at ``z = 0.5``.
      seed: pools, initialisation, minibatch order and MulFAGrid filters.
      cache: folder of the labelled pools.
      log: where one line per model goes.

    Returns:
      ``{"shape", "slice_truth" (S, S) bool, "runs": {model: {"lr", "params",
      "iou_uniform", "iou_surface", "final_loss", "diverged", "seconds", "_slice" (S, S)
      bool}}}``.
    """
    mesh = default_shape(setup.occ_shape_resolution)
    half = setup.occ_pool // 2
    occ_setup = OccupancySetup(pool_uniform=setup.occ_pool - half, pool_surface=half,
                               eval_uniform=setup.occ_eval, eval_surface=setup.occ_eval)
    data = prepare_data(mesh, occ_setup, seed=seed, ntk_points=0, cache_dir=cache)
    t = (np.arange(setup.occ_slice) + 0.5) / setup.occ_slice
    sl = np.stack([*np.meshgrid(t, t, indexing="ij"), np.full((setup.occ_slice,) * 2, 0.5)], -1).reshape(-1, 3)
    truth = occupancy(mesh, sl).reshape(setup.occ_slice, setup.occ_slice)
    lrs = dict(setup.occ_lrs)
    runs = {}
    for name in setup.models:
        cfg = train_config(name, setup, 3, seed, loss="bce", learning_rate=lrs[name], epochs=setup.occ_epochs,
                           batch_size=setup.occ_batch, steps_per_epoch=setup.occ_steps)
        model, v, losses, sec, diverged = _train(cfg, data.train_x, data.train_y)
        pools = list(data.eval.items())
        logits = predict(model, v, np.concatenate([px for _, (px, _) in pools] + [sl]))[:, 0]  # one compiled shape
        if diverged:  # the network's output is NaN after a divergence: nothing predicted inside
            logits = np.full_like(logits, np.nan)
        ious, start = {}, 0
        for pool, (px, py) in pools:
            ious[pool] = occupancy_metrics(logits[start:start + len(px)], py)["iou"]
            start += len(px)
        pred = logits[start:].reshape(truth.shape) > 0
        runs[name] = {"lr": lrs[name], "params": _n_params(v), "iou_uniform": ious["uniform"],
                      "iou_surface": ious["surface"], "final_loss": losses[-1] if losses else None,
                      "diverged": diverged, "seconds": sec, "_slice": pred}
        log(f"  occupancy {name}: IoU {ious['uniform']:.4f} (uniform), {ious['surface']:.4f} (near surface) "
             f"({sec:.0f} s)")
    return {"shape": mesh.metadata.get("ntkgrid", {}).get("source", "default_shape"), "slice_truth": truth,
            "runs": runs}
