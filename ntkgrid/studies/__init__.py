"""Studies that train a list of networks on one image and compare them (issue 22).

* :mod:`~ntkgrid.studies.runner`: the shared machinery: every run trains (resumably) in
  ``<out>/runs/<name>``, at a hand-set step or a fraction of its own critical step
  (:func:`ntkgrid.stability.with_critical_lr`), with spectra on every training pixel at
  initialisation, the middle and the end; each becomes one flat record of ``results.json``
  (:func:`~ntkgrid.studies.runner.run_study`), with shared figures (curves, reconstructions,
  spectra) and a markdown table.
* :mod:`~ntkgrid.studies.activations`: ``python -m experiments.activations``, ReLU / tanh /
  Gaussian / sine (SIREN) networks with and without encodings.

Nothing here imports JAX at import time.
"""

from ntkgrid.studies.runner import (
    CHECKPOINTS,
    RESULTS_FORMAT,
    SPECTRUM_GROUPS,
    SPECTRUM_STATS,
    StudyError,
    StudyResult,
    StudyRun,
    curves_figure,
    reconstructions_figure,
    run_study,
    runs_table,
    spectra_curves,
    spectrum_summary,
)

__all__ = ["CHECKPOINTS", "RESULTS_FORMAT", "SPECTRUM_GROUPS", "SPECTRUM_STATS", "StudyError", "StudyResult", "StudyRun",
           "curves_figure", "reconstructions_figure", "run_study", "runs_table", "spectra_curves", "spectrum_summary"]
