"""3-D occupancy experiment (the paper's Section 5 / Appendix E, Fig. 5b): library logic.

One mesh -> labelled point pools -> one SGD run per encoding -> metrics, spectra,
pictures. :mod:`experiments.occupancy` is the command line around :func:`run_mesh`,
:func:`plot_mean_spectra` and :func:`write_results`.

* **Data.** The mesh is normalised so its longest axis spans ``[0, 1]``
  (:func:`ntkgrid.data.meshes.load_mesh`). Labels (1 = inside) come from
  :func:`ntkgrid.data.meshes.occupancy` (Embree ray parity; winding numbers for open
  meshes). Two ways to draw training points (:class:`OccupancySetup` ``sampling``):
  ``"fresh"`` (Appendix E, the paper preset): every epoch new points uniform in the
  scaled mesh's bounding box, labelled on the fly in batches
  (:class:`ntkgrid.data.meshes.FreshPoints`, labels cached per seed), passed to
  :func:`ntkgrid.training.fit` as ``epoch_data``; ``"pool"`` (the quick preset): a fixed,
  cached pool (uniform plus near-surface points) from which each epoch draws its points
  on the device. Held-out pools (uniform in the box, and near-surface) use another seed.
* **Network.** :class:`~ntkgrid.config.TrainConfig` from :data:`ntkgrid.presets.OCCUPANCY`
  (Table 4: 8x256 ReLU MLP, sigmoid + binary cross-entropy, plain SGD, per-mesh MPE
  settings) or a tuned config (``experiments.tune --task occupancy``): :func:`configs_for`.
* **Measured.** At evenly spaced checkpoints (the IoU curve; middle and end; paper runs
  also 0): loss and accuracy, volumetric IoU and accuracy on both held-out pools
  (:func:`occupancy_metrics`). At 0 (paper), middle and end: the float64 NTK spectra of
  the logit and of the sigmoid output (:func:`checkpoint_spectra`) on ``ntk_points``
  points drawn as training draws them (uniform in the box).
* **Pictures.** A ray-marched render of each network's 0.5 level set beside the
  ground-truth mesh from the same camera (:mod:`ntkgrid.render`), one PNG per mesh; the
  IoU-against-epochs curve; the marching-cubes surface of each network as a ``.ply``;
  the mean spectra across meshes (Fig. 5b), one figure per kernel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ntkgrid.config import TrainConfig
from ntkgrid.data import DataError
from ntkgrid.presets import PAPER_ENCODINGS

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

    from ntkgrid.spectrum import Spectrum

__all__ = [
    "ENCODINGS",
    "KERNEL_CAPTION",
    "NTK_OUTPUTS",
    "PAPER_SETUP",
    "QUICK_SETUP",
    "MeshResult",
    "OccupancyData",
    "OccupancySetup",
    "checkpoint_spectra",
    "configs_for",
    "iou",
    "mesh_preset_key",
    "occupancy_metrics",
    "plot_iou_curves",
    "plot_mean_spectra",
    "prepare_data",
    "region_bounds",
    "results_table",
    "run_mesh",
    "safe_name",
    "write_results",
]

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
    from ntkgrid.presets import OCCUPANCY, OCCUPANCY_QUICK

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


# ----------------------------------------------------------------------------- metrics


def iou(pred, target) -> float:
    """Volumetric intersection over union of two boolean occupancy samples (same shape):
    ``|pred & target| / |pred | target|``; 1.0 when both are empty (nothing to disagree on)."""
    p, t = np.asarray(pred, bool), np.asarray(target, bool)
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape, got {p.shape} and {t.shape}")
    union = int(np.count_nonzero(p | t))
    return 1.0 if union == 0 else int(np.count_nonzero(p & t)) / union


def occupancy_metrics(logits, labels) -> dict[str, float]:
    """IoU and accuracy of predictions ``logits > 0`` (``sigmoid > 0.5``) against ``labels > 0.5``.

    ``logits``, ``labels``: ``(N,)`` or ``(N, 1)``. Returns ``{"iou", "accuracy",
    "inside_pred", "inside_true"}`` (the last two: fractions of points inside).
    """
    z = np.asarray(logits, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1) > 0.5
    if z.shape != y.shape:
        raise ValueError(f"logits and labels must have the same length, got {z.shape} and {y.shape}")
    p = z > 0
    return {"iou": iou(p, y), "accuracy": float(np.mean(p == y)) if y.size else float("nan"),
            "inside_pred": float(np.mean(p)) if y.size else float("nan"),
            "inside_true": float(np.mean(y)) if y.size else float("nan")}


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class OccupancyData:
    """Labelled points of one mesh (``float32``, normalised units; labels 1 = inside).

    ``train_x`` ``(N, 3)`` / ``train_y`` ``(N, 1)``: under "pool" sampling the training
    pool (uniform then near-surface); under "fresh" sampling the held-out uniform pool,
    which then only serves the loss measured at checkpoints (it estimates the expected
    training loss, since training draws from the same distribution). ``fresh``: the
    :class:`~ntkgrid.data.meshes.FreshPoints` sampler of the training points ("fresh"
    sampling; epoch size set by :func:`run_mesh`) or None. ``eval`` ``{"uniform": (x
    (M, 3), y (M,)), "surface": (x, y)}``: the held-out pools; ``ntk_x`` ``(P, 3)``: the
    NTK points, drawn as training draws its uniform points (uniform in the region, by
    the same sampler with another seed); ``bounds`` ``(2, 3)``: the region.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    eval: dict[str, tuple[np.ndarray, np.ndarray]]
    ntk_x: np.ndarray
    seconds: float  # wall time to sample and label (or load) the pools
    bounds: np.ndarray | None = None
    sampling: str = "pool"


def region_bounds(mesh: trimesh.Trimesh, region: str) -> np.ndarray:
    """``(2, 3)`` box uniform points are drawn in: the (normalised) mesh's bounding box
    (``"bbox"``, Appendix E) or the unit cube (``"cube"``)."""
    if region == "bbox":
        return np.asarray(mesh.bounds, np.float64)
    if region == "cube":
        return np.array([[0.0] * 3, [1.0] * 3])
    raise ValueError(f"region must be one of {REGIONS}, got {region!r}")


def prepare_data(mesh: trimesh.Trimesh, setup: OccupancySetup, *, seed: int = 0, ntk_points: int = 256,
                 cache_dir: str | os.PathLike | None = None, source: str | None = None) -> OccupancyData:
    """Sample and label (or load from ``cache_dir``) the held-out pools, the training pool
    ("pool" sampling) and the NTK points.

    Raises :class:`DataError` naming ``source`` (default: the mesh's recorded source) when
    no sampled point is inside the mesh (an open sheet, or a surface enclosing no volume)
    or every point is.
    """
    from ntkgrid.data.meshes import FreshPoints, sample_pools

    source = source or mesh.metadata.get("ntkgrid", {}).get("source", "mesh")
    t0 = time.perf_counter()
    box = region_bounds(mesh, setup.region)
    ev = sample_pools(mesh, setup.eval_uniform, setup.eval_surface, setup.sigma, seed=seed + EVAL_SEED_OFFSET,
                      cache_dir=cache_dir, bounds=box)
    if setup.sampling == "pool":
        tr = sample_pools(mesh, setup.pool_uniform, setup.pool_surface, setup.sigma, seed=seed, cache_dir=cache_dir,
                          bounds=box)
        train_x = np.concatenate([tr["points_uniform"], tr["points_surface"]]).astype(np.float32)
        train_y = np.concatenate([tr["labels_uniform"], tr["labels_surface"]]).astype(np.float32)[:, None]
    else:
        train_x = ev["points_uniform"].astype(np.float32)
        train_y = ev["labels_uniform"].astype(np.float32)[:, None]
    inside = float(train_y.mean())
    if inside == 0.0:
        raise DataError(source, f"none of the {len(train_y)} sampled points is inside the mesh: it encloses "
                                "no volume (an open or flat surface?), so there is no occupancy to learn")
    if inside == 1.0:
        raise DataError(source, f"all {len(train_y)} sampled points are inside the mesh, so there is nothing "
                                "to learn: it fills its bounding box (a box?), or it is not a closed, "
                                "consistently oriented surface")
    ntk_x = FreshPoints(mesh, box, max(ntk_points, 1), seed=seed + NTK_SEED_OFFSET).points(0)[:ntk_points]
    return OccupancyData(
        train_x=train_x, train_y=train_y,
        eval={"uniform": (ev["points_uniform"], ev["labels_uniform"]),
              "surface": (ev["points_surface"], ev["labels_surface"])},
        ntk_x=np.asarray(ntk_x, np.float32), seconds=time.perf_counter() - t0, bounds=box, sampling=setup.sampling)


def _logits(apply: Callable, variables, x: np.ndarray, chunk: int = 32768) -> np.ndarray:
    """``apply(variables, x)[:, 0]`` in padded chunks of one shape (one compilation)."""
    import jax.numpy as jnp

    x = np.asarray(x, np.float32)
    out = np.empty(len(x), np.float32)
    c = max(1, min(chunk, len(x)))
    for s in range(0, len(x), c):
        part = x[s:s + c]
        n = len(part)
        if n < c:
            part = np.concatenate([part, np.zeros((c - n, 3), np.float32)])
        out[s:s + n] = np.asarray(apply(variables, jnp.asarray(part)))[:n, 0]
    return out


def make_eval_fn(data: OccupancyData) -> Callable[[Callable, Any], dict[str, float]]:
    """``eval_fn(apply, variables)`` for :func:`ntkgrid.training.fit`: ``iou_<pool>`` and
    ``accuracy_<pool>`` on each held-out pool (``uniform``, ``surface``)."""

    def eval_fn(apply, variables) -> dict[str, float]:
        out = {}
        for pool, (x, y) in data.eval.items():
            if len(x) == 0:
                continue
            m = occupancy_metrics(_logits(apply, variables, x), y)
            out[f"iou_{pool}"], out[f"accuracy_{pool}"] = m["iou"], m["accuracy"]
        return out

    return eval_fn


# ----------------------------------------------------------------------------- one mesh


@dataclasses.dataclass
class MeshResult:
    """Everything measured for one mesh.

    ``runs[encoding]`` holds ``config`` (dict), ``history`` (list of ``{epoch, loss,
    accuracy, iou_uniform, accuracy_uniform, iou_surface, accuracy_surface, seconds}``),
    ``final`` (the last of those), ``diverged``, ``seconds`` (``train``, ``surface``,
    ``render``), ``surface`` (path of the ``.ply``, or None), ``surface_faces``,
    ``surface_watertight``; ``spectra[encoding][epoch]`` the total NTK :class:`Spectrum`
    of the setup's ``ntk_output`` at the spectra epochs, ``spectra_by_output[output]`` the
    same for both outputs (not written to JSON: the run directories hold the ``.npz``).
    """

    name: str
    source: str
    preset_key: str
    preset_matched: bool
    info: dict
    data_seconds: float
    runs: dict[str, dict]
    spectra: dict[str, dict[int, Spectrum]]
    render: str | None
    gt_render_seconds: float
    load_seconds: float = 0.0  # wall time the caller spent loading/generating the mesh
    spectra_by_output: dict[str, dict[str, dict[int, Spectrum]]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name not in ("spectra", "spectra_by_output")}
        return json.loads(json.dumps(_json_safe(d)))


def safe_name(name: str) -> str:
    """``name`` reduced to ``[A-Za-z0-9_.-]`` for use as a directory name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "mesh"


def checkpoint_spectra(cfg: TrainConfig, run_dir: str | os.PathLike, epochs: Sequence[int], ntk_x: np.ndarray
                       ) -> dict[str, dict[int, dict[str, Spectrum]]]:
    """Float64 NTK spectra of a finished :func:`ntkgrid.training.fit` run at ``epochs`` (read
    from its ``checkpoints/``), on ``ntk_x`` ``(P, 3)``, for both outputs.

    Returns ``{"logit": {epoch: {group: Spectrum}}, "sigmoid": {...}}``. ``logit``: the
    kernel ``K = J J^T`` of the network's last linear layer (before the sigmoid), from
    :func:`ntkgrid.spectrum.ntk_spectrum` (groups ``total``, ``grid``, ``no_grid`` for
    multigrid). ``sigmoid``: the kernel of ``sigmoid(logit)``, the output the loss sees,
    ``D K D`` with ``D = diag(s (1 - s))``, ``s = sigmoid(logit(ntk_x))`` (chain rule;
    computed in float64 from the same ``K``). Stored as ``<run_dir>/ntk/epoch_XXXXXX.npz``
    (``eigenvalues/<output>/<group>``, ``floor/...``, ``n_above_floor/...``,
    ``n_negative/...``, ``asymmetry/...``, ``ntk_hash``) and reused when the points match.
    """
    import flax.serialization
    import jax
    import jax.numpy as jnp

    from ntkgrid.spectrum import Spectrum, ntk_spectrum, spectrum_from_kernel

    run_dir = Path(run_dir)
    ntk_x = np.ascontiguousarray(ntk_x, np.float32)
    key = hashlib.sha256(ntk_x.tobytes() + str(ntk_x.shape).encode()).hexdigest()[:16] + cfg.ntk_method
    model = cfg.model(3, 1)
    out: dict[str, dict[int, dict[str, Spectrum]]] = {o: {} for o in NTK_OUTPUTS}
    fields = ("floor", "n_above_floor", "n_negative", "asymmetry")
    for epoch in epochs:
        cache = run_dir / "ntk" / f"epoch_{int(epoch):06d}.npz"
        if cache.exists():
            with np.load(cache) as z:
                if str(z["ntk_hash"]) == key:
                    for o in NTK_OUTPUTS:
                        groups = [k.split("/", 2)[2] for k in z.files if k.startswith(f"eigenvalues/{o}/")]
                        out[o][epoch] = {g: Spectrum(z[f"eigenvalues/{o}/{g}"], float(z[f"floor/{o}/{g}"]),
                                                     int(z[f"n_above_floor/{o}/{g}"]), int(z[f"n_negative/{o}/{g}"]),
                                                     float(z[f"asymmetry/{o}/{g}"])) for g in groups}
                    continue
        ckpt = run_dir / "checkpoints" / f"epoch_{int(epoch):06d}.msgpack"
        if not ckpt.exists():
            continue
        variables = flax.serialization.msgpack_restore(ckpt.read_bytes())["variables"]
        groups = cfg.ntk_method == "structured"
        specs, kernels = ntk_spectrum(model, variables, ntk_x, method=cfg.ntk_method, groups=groups)
        if not groups:
            specs, kernels = {"total": specs}, {"total": kernels}
        with jax.enable_x64(True):
            v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
            z64 = np.asarray(model.apply(v64, jnp.asarray(ntk_x, jnp.float64)), np.float64)[:, 0]
        sig = 1.0 / (1.0 + np.exp(-z64))
        d = sig * (1.0 - sig)
        out["logit"][epoch] = dict(specs)
        out["sigmoid"][epoch] = {g: spectrum_from_kernel(d[:, None] * np.asarray(k, np.float64) * d[None, :])
                                 for g, k in kernels.items()}
        arrays: dict[str, Any] = {"ntk_hash": np.array(key), "epoch": np.array(int(epoch))}
        for o in NTK_OUTPUTS:
            for g, sp in out[o][epoch].items():
                arrays[f"eigenvalues/{o}/{g}"] = sp.eigenvalues
                for f in fields:
                    arrays[f"{f}/{o}/{g}"] = np.asarray(getattr(sp, f))
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, cache)
    return out


def run_mesh(mesh: trimesh.Trimesh, name: str, configs: Mapping[str, TrainConfig], setup: OccupancySetup,
             out_dir: str | os.PathLike, *, seed: int = 0, cache_dir: str | os.PathLike | None = None,
             progress: bool = True, log: Callable[[str], None] = print, load_seconds: float = 0.0) -> MeshResult:
    """Train every configuration on ``mesh`` and write its files under ``out_dir``.

    Training points: "fresh" sampling draws ``setup.epoch_size(cfg)`` new points uniform
    in the region every epoch (:class:`~ntkgrid.data.meshes.FreshPoints`, labels cached
    under ``cache_dir``); "pool" sampling draws them from the fixed training pool.

    Files: ``<encoding>/`` (the :func:`ntkgrid.training.fit` run: ``metrics.jsonl``,
    ``summary.json``, ``checkpoints/``; ``ntk/epoch_*.npz`` the spectra of both
    outputs, :func:`checkpoint_spectra`), ``surface_<encoding>.ply`` (marching cubes of
    ``sigmoid(logit) = 0.5`` at ``setup.mc_resolution``), ``render.png`` (ground truth
    beside each encoding, one camera), ``iou_curve.png`` (held-out IoU against epochs),
    ``metrics.json`` (:meth:`MeshResult.to_json`). A rerun reuses finished runs.
    """
    from ntkgrid import render as R
    from ntkgrid.data.meshes import FreshPoints, mesh_info
    from ntkgrid.training import fit

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = str(mesh.metadata.get("ntkgrid", {}).get("source", name))
    key, matched = mesh_preset_key(name)
    ntk_points = max((c.ntk_points or 0 for c in configs.values()), default=0)
    data = prepare_data(mesh, setup, seed=seed, ntk_points=ntk_points, cache_dir=cache_dir, source=source)
    what = ("fresh uniform points every epoch, labelled on the fly" if setup.sampling == "fresh"
            else f"a fixed pool of {len(data.train_x)} points ({100 * data.train_y.mean():.1f} % inside)")
    log(f"[{name}] training on {what}; held-out {len(data.eval['uniform'][0])} uniform + "
        f"{len(data.eval['surface'][0])} near-surface ({data.seconds:.1f} s)")
    camera = R.Camera.orbit(setup.view[0], setup.view[1], 2.3, width=setup.render_size, height=setup.render_size)
    t0 = time.perf_counter()
    gt = R.render_mesh(mesh, camera)
    gt_seconds = time.perf_counter() - t0
    eval_fn = make_eval_fn(data)
    panels = [("ground truth", gt.image)]
    runs: dict[str, dict] = {}
    spectra: dict[str, dict[int, Spectrum]] = {}
    spectra_all: dict[str, dict[str, dict[int, Spectrum]]] = {o: {} for o in NTK_OUTPUTS}
    for enc, cfg in configs.items():
        label = f"{name}/{enc}"
        sampler = None
        kw: dict[str, Any] = {"epoch_size": setup.epoch_size(cfg)}
        if setup.sampling == "fresh":
            sampler = FreshPoints(mesh, data.bounds, setup.epoch_size(cfg), seed=seed,
                                  cache_dir=None if cache_dir is None else Path(cache_dir))
            kw = {"epoch_data": sampler}
        res = fit(cfg.replace(ntk_points=0), data.train_x, data.train_y, eval_fn=eval_fn, out_dir=out / enc,
                  progress=progress, label=label, **kw)
        hist = [{k: h.get(k) for k in ("epoch", "loss", "train_loss", "accuracy", "iou_uniform", "accuracy_uniform",
                                       "iou_surface", "accuracy_surface", "seconds")} for h in res.history]
        t_ntk = time.perf_counter()
        spec_epochs = [e for e in (0, cfg.epochs // 2, cfg.epochs) if e in cfg.checkpoint_epochs()
                       and e <= res.params_epoch]
        both = checkpoint_spectra(cfg, out / enc, sorted(set(spec_epochs)), data.ntk_x[:cfg.ntk_points]) \
            if cfg.ntk_points else {o: {} for o in NTK_OUTPUTS}
        for o in NTK_OUTPUTS:
            spectra_all[o][enc] = {e: g["total"] for e, g in both[o].items()}
        spectra[enc] = spectra_all[setup.ntk_output][enc]
        t_ntk = time.perf_counter() - t_ntk
        model = cfg.model(3, 1)
        field = R.network_field(model.apply, res.params)
        t1 = time.perf_counter()
        surf = R.extract_surface(field, setup.mc_resolution)
        ply = out / f"surface_{enc}.ply"
        surf.export(ply)
        t2 = time.perf_counter()
        img = R.render_field(field, camera, n_steps=setup.render_steps)
        t3 = time.perf_counter()
        fin = hist[-1] if hist else {}
        e_size = setup.epoch_size(cfg)
        runs[enc] = {"config": cfg.to_dict(), "history": hist, "final": fin, "diverged": res.diverged,
                     "epoch_points": e_size, "steps_per_epoch": -(-e_size // cfg.batch_size),
                     "seconds": {"train": res.seconds, "spectra": t_ntk, "surface": t2 - t1, "render": t3 - t2},
                     "labelling": None if sampler is None else {"points": sampler.labelled,
                                                                "seconds": sampler.seconds_labelling},
                     "surface": str(ply), "surface_faces": len(surf.faces),
                     "surface_watertight": bool(len(surf.faces) and surf.is_watertight)}
        title = f"{enc}  IoU {_fmt(fin.get('iou_uniform'))} / {_fmt(fin.get('iou_surface'))}"
        if res.diverged:
            title += f" (diverged @ {res.diverged_epoch})"
        note = None if img.mask.any() else "nothing predicted inside:\nthe 0.5 level set is empty"
        panels.append((title, img.image, note))
        log(f"[{name}] {enc:9s} epochs {res.params_epoch} ({e_size} points, "
            f"{runs[enc]['steps_per_epoch']} steps each): loss {_fmt(fin.get('loss'), 4)}  "
            f"IoU uniform {_fmt(fin.get('iou_uniform'))}  near-surface {_fmt(fin.get('iou_surface'))}  "
            f"acc {_fmt(fin.get('accuracy_uniform'))}/{_fmt(fin.get('accuracy_surface'))}  "
            f"(train {res.seconds:.0f} s, spectra {t_ntk:.1f} s, surface {t2 - t1:.1f} s, render {t3 - t2:.1f} s)")
    render_path = out / "render.png"
    R.save_panel(render_path, panels, suptitle=f"{name}: 0.5 level sets, one camera (IoU held-out uniform / "
                                               "near-surface)")
    plot_iou_curves(runs, out / "iou_curve.png", title=f"{name}: held-out IoU against epochs")
    result = MeshResult(name=name, source=source, preset_key=key, preset_matched=matched, info=mesh_info(mesh),
                        data_seconds=data.seconds, runs=runs, spectra=spectra, render=str(render_path),
                        gt_render_seconds=gt_seconds, load_seconds=load_seconds, spectra_by_output=spectra_all)
    (out / "metrics.json").write_text(json.dumps(_json_safe(result.to_json()), indent=1) + "\n")
    return result


def plot_iou_curves(runs: Mapping[str, dict], path: str | os.PathLike, *, title: str = "") -> None:
    """IoU on the held-out uniform (solid) and near-surface (dashed) pools against the
    epoch, one colour per encoding, from ``runs[encoding]["history"]``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for enc, run in runs.items():
        h = [r for r in run["history"] if r.get("iou_uniform") is not None]
        c = _COLORS.get(enc)
        ax.plot([r["epoch"] for r in h], [r["iou_uniform"] for r in h], "-o", ms=3, color=c, label=f"{enc} uniform")
        ax.plot([r["epoch"] for r in h], [r["iou_surface"] for r in h], "--", color=c, label=f"{enc} near-surface")
    ax.set_xlabel("epoch")
    ax.set_ylabel("IoU (held-out points)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


_COLORS = {"baseline": "tab:gray", "fourier": "tab:blue", "multigrid": "tab:red"}


def _fmt(v, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, np.generic):
        return _json_safe(v.item())
    return v


# ----------------------------------------------------------------------------- across meshes


KERNEL_CAPTION = {
    "sigmoid": "NTK of the sigmoid output sigma(f(x)), the probability the BCE loss sees (--ntk-output sigmoid, "
               "default); the logit kernel is the other figure",
    "logit": "NTK of the logit f(x) before the sigmoid (--ntk-output logit); the sigmoid-output kernel "
             "D K D, D = diag(sigma'(f)), is the other figure",
}


def plot_mean_spectra(results: Sequence[MeshResult], path: str | os.PathLike, *, output: str | None = None,
                      title: str | None = None) -> dict:
    """Fig. 5b: per encoding, the mean over meshes of the NTK spectrum at the end of
    training (solid) and at its middle (dashed), each with its mean numerical floor
    (dotted, same colour), on a log scale against the eigenvalue index. ``output``
    (``"sigmoid"`` or ``"logit"``) picks the kernel from each result's
    ``spectra_by_output`` (default: ``result.spectra``, the run's ``ntk_output``); the
    caption under the plot names the kernel drawn and the other one.

    Spectra of different sizes are resampled to the smallest size before averaging.
    Returns ``{encoding: {"end": {...}, "mid": {...}}}`` of
    :func:`ntkgrid.spectrum.mean_spectrum` summaries (``mean``/``floor``/``count``;
    ``{}`` for an encoding with no spectra).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ntkgrid.spectrum import mean_spectrum

    def spectra_of(r: MeshResult) -> dict:
        return r.spectra if output is None else r.spectra_by_output.get(output, {})

    encs = list(dict.fromkeys(e for r in results for e in spectra_of(r)))
    colors = _COLORS
    summary: dict[str, dict] = {}
    fig, ax = plt.subplots(figsize=(6.4, 4.9))
    for enc in encs:
        summary[enc] = {}
        for which, style in (("end", "-"), ("mid", "--")):
            specs = []
            for r in results:
                s = spectra_of(r).get(enc, {})
                if not s:
                    continue
                epochs = sorted(s)
                end = epochs[-1]
                if which == "end":
                    specs.append(s[end])
                else:
                    inner = [e for e in epochs if 0 < e < end]
                    if inner:
                        specs.append(s[min(inner, key=lambda e: abs(e - end / 2))])
            if not specs:
                continue
            length = min(sp.eigenvalues.size for sp in specs)
            m = mean_spectrum(specs, length)
            summary[enc][which] = {"mean": m["mean"].tolist(), "floor": m["floor"], "count": m["count"]}
            c = colors.get(enc)
            idx = np.arange(1, length + 1)
            pos = np.where(m["mean"] > 0, m["mean"], np.nan)
            ax.semilogy(idx, pos, style, color=c, label=f"{enc} ({which}, n={m['count']})")
            if which == "end":
                ax.axhline(m["floor"], color=c, ls=":", lw=0.8)
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("eigenvalue of the empirical NTK")
    ax.set_title(title or f"Mean NTK spectra over {len(results)} mesh(es); dotted: numerical floor", fontsize=10)
    if any(summary.get(e) for e in encs):
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no spectra (ntk_points = 0)", transform=ax.transAxes, ha="center")
    if output is not None:
        fig.text(0.01, 0.01, "Kernel: " + KERNEL_CAPTION[output] + ".", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.06 if output is not None else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return summary


def write_results(results: Sequence[MeshResult], errors: Sequence[dict], out_dir: str | os.PathLike,
                  meta: Mapping[str, Any]) -> tuple[Path, Path]:
    """``results.json`` (``meta``, per-mesh :meth:`MeshResult.to_json`, ``errors``) and
    ``report.md`` (one table row per mesh and encoding, the figures, the failures) in
    ``out_dir``. Returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"meta": dict(meta), "meshes": [r.to_json() for r in results], "errors": list(errors)}
    jpath = out / "results.json"
    jpath.write_text(json.dumps(_json_safe(doc), indent=1) + "\n")
    lines = [results_table(results)]
    if results:
        output = meta.get("ntk_output", "sigmoid")
        other = next(o for o in NTK_OUTPUTS if o != output)
        lines.append(f"\nMean NTK spectra over {len(results)} mesh(es) (Fig. 5b): `spectra.png` "
                     f"(numbers: `spectra.json`). Kernel: {KERNEL_CAPTION[output]} (`spectra_{other}.png`, "
                     f"`spectra_{other}.json`). NTK points: drawn as training draws its uniform points "
                     "(uniform in the scaled mesh's bounding box).")
        lines.append("\nIoU against epochs: `<mesh>/iou_curve.png`.")
        lines += [f"\n{r.name} ({r.source}; Table 4 row {r.preset_key}"
                  f"{'' if r.preset_matched else ', name not recognised'}): `{r.name}/render.png`, "
                  + ", ".join(f"`{r.name}/surface_{e}.ply`" for e in r.runs) for r in results]
    if errors:
        lines.append("\nFailed:\n")
        lines += [f"* {e['mesh']}: {e['error']}" for e in errors]
    mpath = out / "report.md"
    mpath.write_text("\n".join(lines) + "\n")
    return jpath, mpath


def results_table(results: Sequence[MeshResult]) -> str:
    """Markdown table: final held-out IoU/accuracy, training loss and time per mesh and encoding."""
    header = ("| mesh | encoding | IoU uniform | IoU near-surface | acc. uniform | acc. near-surface | "
              "train loss | train s |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for enc, run in r.runs.items():
            f = run["final"]
            lines.append(f"| {r.name} | {enc} | {_fmt(f.get('iou_uniform'))} | {_fmt(f.get('iou_surface'))} | "
                         f"{_fmt(f.get('accuracy_uniform'))} | {_fmt(f.get('accuracy_surface'))} | "
                         f"{_fmt(f.get('loss'), 4)} | {run['seconds']['train']:.0f} |")
    return "\n".join(lines)
