"""Occupancy settings: the :class:`OccupancySetup` of a run, its two presets, and the
per-mesh :class:`~ntkgrid.config.TrainConfig` of each encoding (Table 4)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ntkgrid.config import TrainConfig
from ntkgrid.presets import OCCUPANCY, OCCUPANCY_QUICK, PAPER_ENCODINGS

ENCODINGS = PAPER_ENCODINGS  # the encodings of the paper's Table 4 (names from ntkgrid.config.ENCODINGS)
EVAL_SEED_OFFSET = 7919  # held-out pools use seed + this, so they never coincide with training ones
NTK_SEED_OFFSET = 104729  # the NTK points: the training sampler's draw for seed + this


SAMPLINGS = ("fresh", "pool")
NTK_OUTPUTS = ("sigmoid", "logit")
REGIONS = ("bbox", "cube")


@dataclasses.dataclass(frozen=True)
class OccupancySetup:
    """Data, sampling, kernel and picture settings of an occupancy run (the network and
    optimiser are a :class:`~ntkgrid.config.TrainConfig`). Sizes are numbers of points."""

    pool_uniform: int  # "pool" sampling: training pool points uniform in the region
    pool_surface: int  # "pool" sampling: training pool surface samples + N(0, sigma^2) jitter
    eval_uniform: int  # held-out pool for IoU/accuracy (and the loss under "fresh"): uniform in the region
    eval_surface: int  # held-out pool for IoU/accuracy: near-surface (same sigma)
    sigma: float = 0.01  # std of the near-surface jitter (normalised units, longest side = 1)
    sampling: str = "fresh"  # "fresh": new uniform points every epoch, labelled on the fly (Appendix E); "pool"
    steps_per_epoch: int = 1  # SGD steps per epoch when points_per_epoch is 0: epoch = steps x batch points
    points_per_epoch: int = 0  # > 0: an epoch is this many points (ceil(points / batch) steps)
    region: str = "bbox"  # where uniform points lie: the scaled mesh's bounding box, or the unit cube
    ntk_output: str = "sigmoid"  # NTK of the sigmoid output (the loss's input) or of the logit before it
    curve_points: int = 10  # IoU measured at this many evenly spaced epochs (the IoU-against-epochs curve)
    ntk_points: int = 1024  # NTK points when the config leaves ntk_points None (uniform in the region, as trained)
    render_size: int = 256  # rendered image side (pixels)
    render_steps: int = 192  # ray-marching samples along the box diagonal
    mc_resolution: int = 128  # marching-cubes grid (nodes per axis) for the .ply surfaces
    view: tuple[float, float] = (210.0, 20.0)  # camera azimuth, elevation (degrees; y up)

    def __post_init__(self):
        if min(self.pool_uniform, self.pool_surface, self.eval_uniform, self.eval_surface) < 0:
            raise ValueError(f"pool sizes must be >= 0, got {self}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.ntk_output not in NTK_OUTPUTS:
            raise ValueError(f"ntk_output must be one of {NTK_OUTPUTS}, got {self.ntk_output!r}")
        if self.region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, got {self.region!r}")
        if self.sampling == "pool" and self.pool_uniform + self.pool_surface < 1:
            raise ValueError("pool sampling needs a training pool of at least one point")
        if self.eval_uniform < 1:
            raise ValueError("the held-out uniform pool needs at least one point")
        if self.steps_per_epoch < 1 or self.points_per_epoch < 0 or self.curve_points < 0:
            raise ValueError(f"need steps_per_epoch >= 1, points_per_epoch >= 0, curve_points >= 0: {self}")
        if self.render_size < 1 or self.render_steps < 1 or self.mc_resolution < 2:
            raise ValueError(f"need render_size, render_steps >= 1 and mc_resolution >= 2: {self}")

    def epoch_size(self, cfg: TrainConfig) -> int:
        """Points per epoch: ``points_per_epoch`` or ``steps_per_epoch x batch`` (under
        "pool" sampling capped at the pool size)."""
        e = self.points_per_epoch or self.steps_per_epoch * cfg.batch_size
        return e if self.sampling == "fresh" else min(e, self.pool_uniform + self.pool_surface)

    def checkpoints(self, epochs: int, paper: bool) -> tuple[int, ...]:
        """Measured epochs: ``curve_points`` evenly spaced ones, the middle and the end
        (and 0 for paper runs)."""
        cps = {epochs // 2, epochs} | ({0} if paper else set())
        if self.curve_points:
            cps |= {math.ceil(epochs * (i + 1) / self.curve_points) for i in range(self.curve_points)}
        return tuple(sorted(c for c in cps if 0 <= c <= epochs))

    def replace(self, **changes: Any) -> OccupancySetup:
        return dataclasses.replace(self, **changes)


#: ``--preset paper``: Appendix E's sampling at Table 4's settings. Every epoch draws
#: ``points_per_epoch`` fresh points uniform in the scaled mesh's bounding box and labels
#: them with Embree; with Table 4's batches (9.3k-13.2k) that is 8 to 11 SGD steps an
#: epoch. The paper does not say how many points an epoch has; why 100k (an epoch is a
#: number of points, not one batch) is measured in experiments/OCCUPANCY.md. Held-out
#: pools, jitter and picture sizes are our choices.
PAPER_SETUP = OccupancySetup(
    pool_uniform=0, pool_surface=0, eval_uniform=200_000, eval_surface=200_000, sigma=0.01,
    sampling="fresh", points_per_epoch=100_000, curve_points=20, ntk_points=1024,
    render_size=384, render_steps=320, mc_resolution=192,
)

#: ``--preset quick`` (our choice: the whole run on one mesh in minutes on a 2-core CPU).
#: A fixed training pool ("pool" sampling), half of it near the surface, so that a few
#: hundred thousand points place the surface; 8 steps of 256 points per epoch.
QUICK_SETUP = OccupancySetup(
    pool_uniform=100_000, pool_surface=100_000, eval_uniform=25_000, eval_surface=25_000,
    sigma=0.01, sampling="pool", steps_per_epoch=8, curve_points=10, ntk_points=256,
    render_size=160, render_steps=80, mc_resolution=64,
)

#: The ``quick`` training settings are :data:`ntkgrid.presets.OCCUPANCY_QUICK`.


_KEYS = (("happy_buddha", ("happy", "buddha")), ("armadillo", ("armadillo",)), ("dragon", ("dragon",)))


def mesh_preset_key(name: str) -> tuple[str, bool]:
    """Which Table 4 row a mesh uses: ``(key, matched)``. A name containing ``armadillo``,
    ``happy``/``buddha`` or ``dragon`` (any case) picks that row; anything else uses
    armadillo's settings with ``matched=False``."""
    low = name.lower()
    for key, words in _KEYS:
        if any(w in low for w in words):
            return key, True
    return "armadillo", False


def configs_for(mesh_name: str, preset: str, encodings: Sequence[str] = ENCODINGS, seed: int = 0,
                setup: OccupancySetup | None = None, tuned: Mapping[str, TrainConfig] | None = None,
                **overrides: Any) -> dict[str, TrainConfig]:
    """``{encoding: TrainConfig}`` for a mesh: Table 4 (``preset="paper"``) or its quick
    version (:data:`ntkgrid.presets.OCCUPANCY_QUICK`); ``tuned[encoding]`` (a config
    written by ``python -m experiments.tune --task occupancy``) replaces the table's entry.
    Then ``seed`` and any ``overrides`` (TrainConfig fields, e.g. ``epochs=2``) are
    applied. A config without ``ntk_points`` (None) gets ``setup.ntk_points``; ``curve_every``
    None becomes 0 (the IoU curve's checkpoints measure the loss too). The
    measured epochs (``checkpoints``) are ``setup``'s
    (:meth:`OccupancySetup.checkpoints`; default the preset's setup): the IoU curve's
    epochs, the middle and the end, and 0 for paper runs."""
    if preset not in ("paper", "quick"):
        raise ValueError(f"preset must be 'paper' or 'quick', got {preset!r}")
    setup = setup or (PAPER_SETUP if preset == "paper" else QUICK_SETUP)
    key, _ = mesh_preset_key(mesh_name)
    table = {**(OCCUPANCY if preset == "paper" else OCCUPANCY_QUICK)[key], **dict(tuned or {})}
    out = {}
    for enc in encodings:
        if enc not in table:
            raise ValueError(f"unknown encoding {enc!r}; choose from {sorted(table)}")
        cfg = table[enc]
        cfg = cfg.replace(seed=seed, **{k: v for k, v in overrides.items() if v is not None})
        cfg = cfg.replace(checkpoints=setup.checkpoints(cfg.epochs, preset == "paper"))
        if cfg.ntk_points is None:  # "the training set" has no meaning under fresh sampling: the setup's count
            cfg = cfg.replace(ntk_points=setup.ntk_points)
        if cfg.curve_every is None:  # the checkpoints are the curve (a full-pool loss every few epochs costs more
            cfg = cfg.replace(curve_every=0)  # than a quick run's training)
        out[enc] = cfg
    return out

