"""The outcome of one training run, as :func:`~ntkgrid.training.fit` returns it and
:func:`~ntkgrid.training.load_run` reads it back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ntkgrid.config import TrainConfig

__all__ = ["RunResult"]


@dataclasses.dataclass
class RunResult:
    """Outcome of :func:`~ntkgrid.training.fit` or :func:`~ntkgrid.training.load_run`.

    Attributes:
      config: the :class:`TrainConfig` trained.
      label: free-form name given to ``fit``.
      params: model variables (``{"params": ...}``) at epoch ``params_epoch``, the last
        measured epoch (the final one unless the run diverged: then the last good one).
      params_epoch: epoch of ``params``.
      history: one dict per measured epoch, keys :data:`~ntkgrid.training.HISTORY_KEYS` plus extras.
      losses: ``(epochs_run,)`` float64 mean minibatch loss of each epoch (the last one is
        non-finite when the run diverged).
      diverged: the run stopped on a non-finite loss.
      diverged_epoch: the 1-based epoch whose loss was non-finite (None if not diverged).
      seconds: wall time spent training and measuring, over all sessions of the run.
      complete: the run reached its last epoch or diverged (``summary.json`` exists).
      out_dir: where its files are (None if nothing was written).
      options: the data-dependent settings (``run.json``'s ``options``, see
        :mod:`ntkgrid.training.runfolder`).
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
