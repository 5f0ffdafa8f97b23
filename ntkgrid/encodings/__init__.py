"""Input encodings as Flax Linen modules: ``(..., d) -> (..., F)``.

* :class:`Identity` - no encoding (the paper's baseline).
* :class:`FourierFeatures` - the paper's axis-aligned logarithmic encoding (its Eq. 1).
* :class:`GaussianFourierFeatures` - Tancik et al.'s random Fourier features.
* :class:`MultiGrid` - the paper's multigrid parametric encoding, MPE (its Eq. 3).
* :class:`HashGrid` - Mueller et al.'s multiresolution hash encoding (tiny-cuda-nn).
* :class:`MulFAGrid` - Zhao et al.'s multiplicative-filter Fourier-informed grid.

Coordinates are expected in the unit cube ``[0, 1]^d``. ``MultiGrid`` and ``MulFAGrid``
clamp to it (the encoding is constant outside); ``HashGrid`` follows tiny-cuda-nn and does
not clamp.

The three grids name their common arguments alike: ``num_levels`` (L, tcnn's ``n_levels``),
``features_per_level`` (k or F, tcnn's ``n_features_per_level``), ``min_res`` (nodes per
axis of the coarsest level, tcnn's ``base_resolution``), ``interpolation``,
``include_input`` and ``param_dtype``. Dense grids end at ``max_res``; the hash grid grows
by ``per_level_scale`` per level (tcnn's name) with tables of at most
``2**log2_table_size`` rows (tcnn's ``log2_hashmap_size``). Every grid's parameters are
``level_0 .. level_{L-1}``.

Every encoding class declares, as class variables, what :class:`~ntkgrid.models.CoordinateMLP`
needs to know: ``is_grid`` (a learnable grid, its parameters ``level_0 .. level_{L-1}``, so
``encoding/level_<l>`` in the model) and ``takes_unit_coords`` (True: it always looks up the
``[0, 1]^d`` coordinates; False: ``coords="signed"`` maps them to ``2x - 1`` first). The grids
declare both True, the others both False. Its config class is in :mod:`ntkgrid.config`; the
README's "Adding an encoding" tells how to add one from outside ntkgrid; :func:`tap` (from
:mod:`ntkgrid._taps`) is how a module exposes its parameterised ops to the exact NTK.

Each module is defined in one submodule (``base``, ``fourier``, ``multigrid``, ``hashgrid``,
``mulfagrid``) and re-exported here; the helpers of one encoding are imported from its
submodule (e.g. :func:`ntkgrid.encodings.hashgrid.hash_levels`).
"""

from ntkgrid._taps import tap
from ntkgrid.encodings.base import Identity, check_dim, grid_level, level_resolutions, sparse_structure
from ntkgrid.encodings.fourier import FourierFeatures, GaussianFourierFeatures
from ntkgrid.encodings.hashgrid import HashGrid
from ntkgrid.encodings.mulfagrid import MulFAGrid
from ntkgrid.encodings.multigrid import MultiGrid

__all__ = [
    "FourierFeatures",
    "GaussianFourierFeatures",
    "HashGrid",
    "Identity",
    "MulFAGrid",
    "MultiGrid",
    "check_dim",
    "grid_level",
    "level_resolutions",
    "sparse_structure",
    "tap",
]
