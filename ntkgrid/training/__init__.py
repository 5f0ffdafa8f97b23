"""Training coordinate MLPs by SGD, with measured checkpoints, in run folders.

* :mod:`~ntkgrid.training.step`: losses and the pure jitted epoch (and its batched form); no files.
* :mod:`~ntkgrid.training.measure`: what is measured at checkpoints and curve points; no files.
* :mod:`~ntkgrid.training.runfolder`: the run folder, the only module that knows its paths and formats.
* :mod:`~ntkgrid.training.run`: one run's bookkeeping, shared by ``fit`` and ``fit_batch``.
* :mod:`~ntkgrid.training.loop`: :func:`fit`, one run (a module named ``fit`` would be shadowed by the function).
* :mod:`~ntkgrid.training.batched`: :func:`fit_batch`, many runs in one compiled program.
"""

from ntkgrid.training.batched import BatchRun, fit_batch, precision_scope, runs_per_program
from ntkgrid.training.loop import fit
from ntkgrid.training.measure import HISTORY_KEYS, kernel_points, ntk_points_cap, predict, training_set_points
from ntkgrid.training.result import RunResult
from ntkgrid.training.runfolder import (
    FORMAT,
    checkpoint_path,
    load_checkpoint,
    load_run,
    load_spectra,
    ntk_points_path,
    spectra_path,
)
from ntkgrid.training.step import TRACE_COUNTS, epoch_batches, make_batch_epoch_fn, make_epoch_fn

__all__ = ["FORMAT", "HISTORY_KEYS", "TRACE_COUNTS", "BatchRun", "RunResult", "checkpoint_path", "epoch_batches", "fit",
           "fit_batch",
           "kernel_points", "load_checkpoint", "load_run", "load_spectra", "make_batch_epoch_fn", "make_epoch_fn",
           "ntk_points_cap", "ntk_points_path", "precision_scope", "predict", "runs_per_program", "spectra_path",
           "training_set_points"]
