"""The single-image studies' common part: Table 3's configurations trained (or reloaded) on one
image, then analysed (the paper's scaling study, Appendix B's kernel motion, Appendix C's
learned grids: :mod:`~ntkgrid.studies.scaling`, :mod:`~ntkgrid.studies.ntk_evolution`,
:mod:`~ntkgrid.studies.inspect_grid`).

:func:`run_image_study` is the whole of one such study: :func:`train_all` (the configs of
:class:`ImageStudyOptions` trained with :func:`ntkgrid.sweep.run_configs` in
``<runs_dir>/<config>``, resumed or reused from there), then the study's analysis when at
least one run finished.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ntkgrid import presets
from ntkgrid.config import TrainConfig
from ntkgrid.data import DataError
from ntkgrid.readings import reading
from ntkgrid.stability import with_critical_lrs
from ntkgrid.sweep import ImageSource, apply_overrides, resolve_image, run_configs

__all__ = ["CONFIGS", "DEFAULT_IMAGE", "ImageRuns", "ImageStudyOptions", "ImageStudyResult", "StudyAnalysisError",
           "StudyInputError", "failed_runs_section", "run_image_study", "scaling_configs", "train_all"]

#: Table 3's configurations (:data:`ntkgrid.presets.SCALING`), in the paper's order.
CONFIGS = tuple(presets.SCALING)
#: The default image (:data:`ntkgrid.presets.SCALING_IMAGE`).
DEFAULT_IMAGE = presets.SCALING_IMAGE

Log = Callable[[str], None]


class StudyInputError(ValueError):
    """An option or an input (the image, a reading, a step-size rule) a single-image study cannot
    use; raised before anything trains. Its message is one line for the user."""


class StudyAnalysisError(RuntimeError):
    """A run folder that could not be analysed after training (e.g. damaged in between)."""


@dataclasses.dataclass(frozen=True)
class ImageStudyOptions:
    """What a single-image study trains (the options of ``python -m experiments.scaling``,
    ``ntk_evolution`` and ``inspect_grid``)."""

    image: str = DEFAULT_IMAGE  # a bundled photo's name or an image file
    configs: tuple[str, ...] = CONFIGS  # which Table 3 configurations to train, in this order
    preset: str = "quick"  # "paper" or "quick" (ntkgrid.presets.get)
    seed: int = 0  # seed of the initialisation and minibatch order
    out: Path | None = None  # output folder; None: runs/<study name>
    runs_dir: Path | None = None  # where the training runs live; None: <out>/runs
    size: int | None = None  # image side in pixels (None: the preset's); also scales the multigrids
    epochs: int | None = None  # epochs of every run (checkpoints scale along); None: the preset's
    batch_size: int | None = None  # SGD minibatch size; None: the preset's
    learning_rate: float | None = None  # SGD step of every run; None: the preset's (or lr_fraction's)
    lr_fraction: float | None = None  # train at this fraction of each network's own critical step
    ntk_points: int | None = None  # cap on the NTK points (0: no spectra); None: the preset's
    reading: str | None = None  # train under this reading (ntkgrid.readings.READINGS); None: the preset's


@dataclasses.dataclass(frozen=True)
class ImageRuns:
    """The trained runs of a single-image study.

    Attributes:
      name: the study's name (``"scaling"``, ``"ntk_evolution"``, ``"inspect_grid"``).
      out: the output folder.
      runs_dir: the folder of the runs (``<runs_dir>/<config>``).
      source: the image's :class:`~ntkgrid.sweep.ImageSource`.
      image: ``(size, size, 3)`` float32 in ``[0, 1]``, the training image.
      configs: ``{config: TrainConfig}`` as trained (overrides, reading and step rule applied).
      runs: ``{config: RunResult}`` of the runs that finished.
      errors: ``{config: message}`` of the runs that failed.
      seconds: wall time of training and measuring all runs in this call (s).
    """

    name: str
    out: Path
    runs_dir: Path
    source: ImageSource
    image: np.ndarray
    configs: dict[str, TrainConfig]
    runs: dict[str, Any]
    errors: dict[str, str]
    seconds: float


@dataclasses.dataclass(frozen=True)
class ImageStudyResult:
    """What :func:`run_image_study` returns.

    Attributes:
      runs: the trained runs.
      analysis: what the study's analysis returned (``{"table": markdown, ...}``); None when
        every run failed (nothing was analysed or written).
      problems: configs that trained but could not be analysed, one line each.
    """

    runs: ImageRuns
    analysis: Mapping[str, Any] | None
    problems: tuple[str, ...] = ()

    @property
    def report(self) -> Path:
        """The study's ``report.md``."""
        return self.runs.out / "report.md"


def failed_runs_section(errors: Mapping[str, str]) -> list[str]:
    """A report's "Failed runs" section as markdown lines, from ``{config: message}`` (none when
    nothing failed)."""
    if not errors:
        return []
    return ["## Failed runs", ""] + [f"- {k}: {v}" for k, v in errors.items()] + [""]


def scaling_configs(options: ImageStudyOptions) -> dict[str, TrainConfig]:
    """``{config: TrainConfig}`` of Table 3 for ``options``: the preset's config with the
    overrides (epochs, batch size, step, NTK points, seed), the reading, and with ``size`` set,
    the multigrids' resolutions scaled to it (:func:`ntkgrid.presets.scaled_grid`), so that the
    coarse grid stays coarser and the fine one finer than the image. Raises ``KeyError`` for an
    unknown preset, config or reading and ``ValueError`` for an impossible override."""
    o = options
    configs = {n: apply_overrides(presets.get(presets.SCALING, o.preset, n), epochs=o.epochs, batch_size=o.batch_size,
                                  learning_rate=o.learning_rate, ntk_points=o.ntk_points, seed=o.seed)
               for n in o.configs}
    if o.reading is not None:
        configs = {n: reading(c, o.reading) for n, c in configs.items()}
    if o.size is not None:  # keep the paper's coarse < pixels per side < fine
        for n, c in configs.items():
            if c.encoding.kind == "multigrid":
                g = presets.scaled_grid(presets.SCALING[n], o.size).encoding
                configs[n] = c.replace(encoding={"min_res": g.min_res, "max_res": g.max_res})
    return configs


def _prepare(options: ImageStudyOptions, name: str, log: Log):
    o = options
    try:
        configs = scaling_configs(o)
        src, image = resolve_image(o.image, o.size if o.size is not None else presets.image_size(o.preset))
        if o.lr_fraction is not None:
            configs = with_critical_lrs(configs, o.lr_fraction, image, log=log)
    except (ValueError, KeyError, DataError) as err:
        raise StudyInputError(str(err)) from err
    out = Path(o.out) if o.out is not None else Path(f"runs/{name}")
    runs_dir = Path(o.runs_dir) if o.runs_dir is not None else out / "runs"
    return out, runs_dir, src, image, configs


def train_all(options: ImageStudyOptions, name: str, *, log: Log = print, progress: bool = True) -> ImageRuns:
    """Load the image, build the configs and train (or reload) every one.

    Args:
      options: what to train.
      name: the study's name (default output folder ``runs/<name>``, the progress lines).
      log: where progress lines go.
      progress: per-epoch progress bars.

    Returns:
      The :class:`ImageRuns` (a run that fails is left out of ``runs`` and named in ``errors``).
      Raises :class:`StudyInputError` for an unusable option or image, before anything trains.
    """
    out, runs_dir, src, image, configs = _prepare(options, name, log)
    log(f"{name}: {src.source} at {image.shape[0]}x{image.shape[1]} px, preset {options.preset}, "
        f"configs {', '.join(configs)}, output {out}")
    t0 = time.perf_counter()
    runs, errors = run_configs(image, configs, runs_dir, log=log, progress=progress)
    return ImageRuns(name=name, out=out, runs_dir=runs_dir, source=src, image=image, configs=configs, runs=runs,
                     errors=errors, seconds=time.perf_counter() - t0)


def run_image_study(analyse: Callable[[ImageRuns], Mapping[str, Any]], options: ImageStudyOptions, name: str, *,
                    log: Log = print, progress: bool = True) -> ImageStudyResult:
    """:func:`train_all`, then ``analyse`` (which writes the study's outputs under ``out``) if at
    least one run finished; its ``"problems"`` (configs it could not analyse) are returned apart.
    Raises :class:`StudyInputError` as :func:`train_all` does."""
    runs = train_all(options, name, log=log, progress=progress)
    if not runs.runs:
        return ImageStudyResult(runs, None)
    analysis = analyse(runs)
    return ImageStudyResult(runs, analysis, tuple(analysis.get("problems", ())))
