"""The studies behind the command-line programs, one module each (the programs only parse).

The paper's single-image studies (Table 3's configurations on one image):

* :mod:`~ntkgrid.studies.image_runs`: what they share: options, training (resumable), the result.
* :mod:`~ntkgrid.studies.scaling`: Table 3, Figs. 3, 4, 6 (``python -m experiments.scaling``).
* :mod:`~ntkgrid.studies.ntk_evolution`: Appendix B, the kernel's motion and predicted against
  measured training (``python -m experiments.ntk_evolution``).
* :mod:`~ntkgrid.studies.inspect_grid`: Appendix C, learned grids and activation regions
  (``python -m experiments.inspect_grid``).

How the paper's numbers were found:

* :mod:`~ntkgrid.studies.recipe`: the readings of the training recipe screened, trained and
  tabulated (``python -m experiments.recipe``, experiments/RECIPE.md).
* :mod:`~ntkgrid.studies.tune`: the Optuna searches of Appendix D (``python -m experiments.tune``).

Beyond the paper, studies that train a list of networks on one image and compare them (issue 22):

* :mod:`~ntkgrid.studies.runner`: the shared machinery: every run trains (resumably) in
  ``<out>/runs/<name>``, at a hand-set step or a fraction of its own critical step
  (:func:`ntkgrid.stability.with_critical_lr`), with spectra on every training pixel at
  initialisation, the middle and the end; each becomes one flat record of ``results.json``
  (:func:`~ntkgrid.studies.runner.run_study`), with shared figures (curves, reconstructions,
  spectra) and a markdown table.
* :mod:`~ntkgrid.studies.activations`: ``python -m experiments.activations``, ReLU / tanh /
  Gaussian / sine (SIREN) networks with and without encodings.

Importing this package (the runner's names below) imports no JAX; the study modules do.
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
