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

from ntkgrid.encodings import FourierFeatures, GaussianFourierFeatures, HashGrid, Identity, MulFAGrid, MultiGrid
from ntkgrid.models import CoordinateMLP, NTKDense

__version__ = "0.1.0"

__all__ = [
    "CoordinateMLP",
    "FourierFeatures",
    "GaussianFourierFeatures",
    "HashGrid",
    "Identity",
    "MulFAGrid",
    "MultiGrid",
    "NTKDense",
]
