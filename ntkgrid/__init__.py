"""ntkgrid: neural tangent kernels of coordinate MLPs with Fourier and multigrid encodings.

Import-light: importing ``ntkgrid`` loads no TensorFlow, switches no global JAX setting,
and imports neural-tangents only when one of its kernels is asked for.

    >>> import jax, jax.numpy as jnp
    >>> from ntkgrid import CoordinateMLP, MultiGrid
    >>> model = CoordinateMLP(MultiGrid(dim=2, num_levels=2, min_res=16, max_res=64), hidden=(64, 64))
    >>> variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    >>> model.apply(variables, jnp.full((5, 2), 0.5)).shape
    (5, 3)
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The public API, each name loaded from its module on first use: ``import ntkgrid`` imports
# no JAX, Flax or optax (so ``ntkgrid.config`` and ``ntkgrid.presets`` can be read before a
# CLI sets XLA_FLAGS), and never TensorFlow.
_API = {
    # configs (frozen dataclasses; the paper's settings are named instances in ntkgrid.presets)
    "TrainConfig": "ntkgrid.config", "BaselineConfig": "ntkgrid.config", "FourierConfig": "ntkgrid.config",
    "GaussianConfig": "ntkgrid.config", "MultiGridConfig": "ntkgrid.config", "HashGridConfig": "ntkgrid.config",
    "MulFAGridConfig": "ntkgrid.config", "EncodingConfig": "ntkgrid.config", "register_encoding": "ntkgrid.config",
    # encodings and models (Flax Linen modules)
    "Identity": "ntkgrid.encodings", "FourierFeatures": "ntkgrid.encodings",
    "GaussianFourierFeatures": "ntkgrid.encodings", "MultiGrid": "ntkgrid.encodings", "HashGrid": "ntkgrid.encodings",
    "MulFAGrid": "ntkgrid.encodings", "CoordinateMLP": "ntkgrid.models", "NTKDense": "ntkgrid.models",
    # data, training, runs
    "image_to_dataset": "ntkgrid.data.images",
    "fit": "ntkgrid.training", "fit_batch": "ntkgrid.training", "BatchRun": "ntkgrid.training",
    "load_run": "ntkgrid.training", "predict": "ntkgrid.training",
    # kernels, spectra, the paper's claims
    "empirical_ntk": "ntkgrid.ntk", "ntk_spectrum": "ntkgrid.spectrum", "offdiag_fraction": "ntkgrid.spectrum",
    "compare_spectra": "ntkgrid.theory", "predict_training": "ntkgrid.theory",
    "fan_in_matched_baseline": "ntkgrid.theory", "theorem1_comparisons": "ntkgrid.theory",
    "replay_training": "ntkgrid.theory",
}

__all__ = [  # the names of _API (a test checks they agree)
    "BaselineConfig", "BatchRun", "CoordinateMLP", "EncodingConfig", "FourierConfig", "FourierFeatures",
    "GaussianConfig", "GaussianFourierFeatures", "HashGrid", "HashGridConfig", "Identity", "MulFAGrid",
    "MulFAGridConfig", "MultiGrid", "MultiGridConfig", "NTKDense", "TrainConfig", "compare_spectra", "empirical_ntk",
    "fan_in_matched_baseline", "fit", "fit_batch", "image_to_dataset", "load_run", "ntk_spectrum", "offdiag_fraction",
    "predict", "predict_training", "register_encoding", "replay_training", "theorem1_comparisons",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from ntkgrid.config import (
        BaselineConfig,
        EncodingConfig,
        FourierConfig,
        GaussianConfig,
        HashGridConfig,
        MulFAGridConfig,
        MultiGridConfig,
        TrainConfig,
        register_encoding,
    )
    from ntkgrid.data.images import image_to_dataset
    from ntkgrid.encodings import FourierFeatures, GaussianFourierFeatures, HashGrid, Identity, MulFAGrid, MultiGrid
    from ntkgrid.models import CoordinateMLP, NTKDense
    from ntkgrid.ntk import empirical_ntk
    from ntkgrid.spectrum import ntk_spectrum, offdiag_fraction
    from ntkgrid.theory import (
        compare_spectra,
        fan_in_matched_baseline,
        predict_training,
        replay_training,
        theorem1_comparisons,
    )
    from ntkgrid.training import BatchRun, fit, fit_batch, load_run, predict


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ntkgrid' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
