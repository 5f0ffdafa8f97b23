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

from ntkgrid.config import EncodingConfig, TrainConfig
from ntkgrid.encodings import FourierFeatures, GaussianFourierFeatures, HashGrid, Identity, MulFAGrid, MultiGrid
from ntkgrid.models import CoordinateMLP, NTKDense

__version__ = "0.1.0"

# Loaded on first use, so that ``import ntkgrid`` stays light (no optax, no LAPACK work).
_LAZY = {
    "fit": "ntkgrid.train", "load_run": "ntkgrid.train", "predict": "ntkgrid.train",
    "fit_batch": "ntkgrid.batched", "BatchRun": "ntkgrid.batched",
    "empirical_ntk": "ntkgrid.ntk", "ntk_spectrum": "ntkgrid.spectrum", "offdiag_fraction": "ntkgrid.spectrum",
    "compare_spectra": "ntkgrid.theory", "predict_training": "ntkgrid.theory",
    "image_to_dataset": "ntkgrid.data.images",
}

__all__ = [
    "CoordinateMLP",
    "EncodingConfig",
    "FourierFeatures",
    "GaussianFourierFeatures",
    "HashGrid",
    "Identity",
    "MulFAGrid",
    "MultiGrid",
    "NTKDense",
    "TrainConfig",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ntkgrid' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
