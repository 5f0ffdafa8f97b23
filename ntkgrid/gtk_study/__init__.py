"""The grid-tangent-kernel study of Zhao et al. (CVPR 2024) behind ``python -m experiments.gtk``:
the GTK's three results measured on grid models, and MulFAGrid against dense and hashed grids.

Modules: :mod:`~ntkgrid.gtk_study.setup` (:class:`GTKSetup`, the models, their encodings),
:mod:`~ntkgrid.gtk_study.kernels` (the checks of results 1 and 2, panel (a) spectra, panel
(b) bounds), :mod:`~ntkgrid.gtk_study.fits` (panel (c): image and occupancy fits through
:func:`ntkgrid.training.fit`), :mod:`~ntkgrid.gtk_study.figures` (the PNG figures) and
:mod:`~ntkgrid.gtk_study.report` (:func:`run_study`, ``results.json``, ``results.md``).
The kernels themselves are :mod:`ntkgrid.gtk`; the presets are
:data:`ntkgrid.gtk_study.setup.GTK_QUICK` and :data:`ntkgrid.gtk_study.setup.GTK_PAPER`.

Importing this package is cheap (NumPy only): JAX, Flax and matplotlib are imported by the
functions that use them.
"""

from ntkgrid.gtk_study.fits import fit_image, fit_occupancy, train_config
from ntkgrid.gtk_study.kernels import panel_bounds, panel_spectrum, run_checks
from ntkgrid.gtk_study.report import markdown, public, run_study
from ntkgrid.gtk_study.setup import GTK_PAPER, GTK_QUICK, MODELS, GTKSetup, fit_encoding, grid_encodings

__all__ = [
    "GTK_PAPER",
    "GTK_QUICK",
    "MODELS",
    "GTKSetup",
    "fit_encoding",
    "fit_image",
    "fit_occupancy",
    "grid_encodings",
    "markdown",
    "panel_bounds",
    "panel_spectrum",
    "public",
    "run_checks",
    "run_study",
    "train_config",
]
