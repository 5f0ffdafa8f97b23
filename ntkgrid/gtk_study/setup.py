"""Settings of the grid-tangent-kernel study (Zhao et al., CVPR 2024): :class:`GTKSetup`,
the models it compares, the encodings it builds, and its presets :data:`GTK_QUICK` and
:data:`GTK_PAPER` (here rather than in :mod:`ntkgrid.presets`, so that presets import no study)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ntkgrid.config import HashGridConfig, MulFAGridConfig, MultiGridConfig
from ntkgrid.encodings import MulFAGrid, MultiGrid

#: The models the fits compare, each built by :func:`fit_encoding`: the three grid encodings
#: (dense, hashed, MulFAGrid) and MulFAGrid with learnt filters. Named here, not read from
#: ntkgrid.config.GRID_KINDS, so that registering another grid kind does not add a model.
MODELS = ("multigrid", "hashgrid", "mulfagrid", "mulfagrid_learnt")


@dataclasses.dataclass(frozen=True)
class GTKSetup:
    """Every setting of the experiment. Grids in panels (a), (b) and the checks have one
    level and a sum read-out (:func:`ntkgrid.gtk.grid_model`); the fits use a
    :class:`~ntkgrid.models.CoordinateMLP` (NTK parameterisation) on each encoding."""

    features: int = 2  # k, features per node of the grids in (a), (b) and the checks
    spectrum_points: int = 512  # (a) evenly spaced points on [0, 1] for the 1D GTK
    spectrum_res: int = 32  # (a) nodes of the 1D grids
    lattice: int = 32  # (a) side of the 2D lattice of points (lattice^2 points)
    lattice_res: int = 9  # (a) nodes per axis of the 2D grids
    bound_res: int = 9  # (b) nodes per axis of the 2D grids
    bound_pair: tuple = ((0.30, 0.40), (0.36, 0.47))  # (b) the two data points in [0, 1]^2
    bound_labels: int = 101  # (b) Y1 and Y2 each take this many values in [-1, 1]
    bound_random_pairs: int = 256  # (b) random pairs (second point within one cell of the first)
    bound_ridge: float = 0.0  # (b) lambda in (G + lambda I)^-1 (0: G must be invertible)
    check_points: int = 64  # checks: random points in [0, 1]^2
    check_steps: tuple = (0, 10, 100, 1000)  # checks: gradient-descent steps compared with the ODE
    check_lr: float = 0.05  # checks: step size times lambda_max(G)
    check_models: tuple = ("dense", "hashgrid", "mulfagrid")  # checks: grid models checked
    check_contrast: bool = True  # checks: also measure two models that are not linear in the grid
    grid_levels: int = 4  # fits: levels of every grid encoding
    grid_features: int = 2  # fits: features per node (per table row for the hash grid)
    hash_log2_size: int = 9  # fits (2D): log2 of the hash table rows per level
    hidden: tuple = (64, 64)  # fits: hidden widths of the MLP after the encoding
    image: str = "astronaut"  # fits: bundled scikit-image photo (ntkgrid.data.images)
    image_size: int = 128  # fits: image side in pixels
    image_res: tuple = (8, 32)  # fits: nodes per axis of the coarsest and finest level (log spaced)
    image_epochs: int = 100  # fits: passes over all pixels
    image_batch: int = 256  # fits: pixels per SGD step
    image_lrs: tuple = (("multigrid", 30.0), ("hashgrid", 100.0), ("mulfagrid", 100.0),
                        ("mulfagrid_learnt", 100.0))  # fits: SGD step per model (sweep in GTK.md)
    occ_shape_resolution: int = 128  # occupancy: marching-cubes grid of the procedural default shape
    occ_res: tuple = (8, 32)  # occupancy: nodes per axis of the coarsest and finest level
    occ_hash_log2_size: int = 14  # occupancy: log2 of the hash table rows per level
    occ_pool: int = 100_000  # occupancy: training points (half uniform, half near the surface)
    occ_eval: int = 25_000  # occupancy: held-out points per pool (uniform; near-surface)
    occ_epochs: int = 30  # occupancy: epochs of occ_steps SGD steps each
    occ_steps: int = 10  # occupancy: SGD steps per epoch
    occ_batch: int = 2048  # occupancy: points per SGD step
    occ_lrs: tuple = (("multigrid", 100.0), ("hashgrid", 100.0), ("mulfagrid", 100.0),
                      ("mulfagrid_learnt", 30.0))  # occupancy: SGD step per model (sweep in GTK.md)
    occ_slice: int = 128  # occupancy: pixels per side of the z = 0.5 slice picture
    models: tuple = MODELS  # which encodings the fits train


def grid_encodings(setup: GTKSetup, dim: int, res: int, seed: int) -> dict:
    """The one-level dense grid and MulFAGrid of panels (a), (b) and the checks (float64)."""
    common = dict(dim=dim, num_levels=1, features_per_level=setup.features, min_res=res, max_res=res,
                  param_dtype=jnp.float64)
    return {"dense": MultiGrid(include_input=False, **common), "mulfagrid": MulFAGrid(filter_seed=seed, **common)}


def fit_encoding(name: str, setup: GTKSetup, dim: int, seed: int) -> MultiGridConfig | HashGridConfig | MulFAGridConfig:
    """The encoding ``name`` (one of :data:`MODELS`) of the image (``dim = 2``) or occupancy
    (``dim = 3``) fits, as the encoding config (:data:`ntkgrid.config.ENCODINGS`) their
    :class:`~ntkgrid.config.TrainConfig` trains: ``setup.grid_levels`` levels of
    ``setup.grid_features`` features, resolutions log-spaced over ``setup.image_res`` or
    ``setup.occ_res``; MulFAGrid's fixed filters drawn with ``seed``."""
    lo, hi = setup.image_res if dim == 2 else setup.occ_res
    common = dict(num_levels=setup.grid_levels, features_per_level=setup.grid_features, min_res=lo, max_res=hi,
                  spacing="log")
    if name == "multigrid":
        return MultiGridConfig(**common)
    if name == "hashgrid":  # tcnn levels with the same first and last resolution
        scale = (hi / lo) ** (1.0 / max(setup.grid_levels - 1, 1))
        log2 = setup.hash_log2_size if dim == 2 else setup.occ_hash_log2_size
        return HashGridConfig(num_levels=setup.grid_levels, features_per_level=setup.grid_features,
                              log2_table_size=log2, min_res=lo, per_level_scale=scale)
    if name == "mulfagrid":
        return MulFAGridConfig(filter_seed=seed, **common)
    if name == "mulfagrid_learnt":
        return MulFAGridConfig(filter_seed=seed, learn_filters=True, **common)
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


# ----------------------------------------------------------------------------- presets
# ``python -m experiments.gtk --preset quick|paper``.

#: ``--preset quick``: the whole run in minutes on a 2-core CPU (measured in GTK.md).
GTK_QUICK = GTKSetup()

#: ``--preset paper``: larger images, grids and budgets (our choice; the poster gives none).
GTK_PAPER = GTKSetup(
    spectrum_points=1024, lattice=48, check_points=128, bound_random_pairs=1024,
    image_size=256, image_res=(16, 64), image_epochs=300, hidden=(128, 128), hash_log2_size=11,
    occ_res=(16, 64), occ_pool=400_000, occ_eval=100_000, occ_epochs=200, occ_steps=10, occ_batch=4096,
    occ_hash_log2_size=17, occ_slice=256,
)
