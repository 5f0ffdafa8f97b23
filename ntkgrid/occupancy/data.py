"""Occupancy data and metrics: labelled point pools of one mesh, volumetric IoU and
accuracy, and the held-out evaluation :func:`ntkgrid.training.fit` calls at checkpoints."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np

from ntkgrid.data import DataError
from ntkgrid.data.meshes import FreshPoints, sample_pools
from ntkgrid.files import to_jsonable
from ntkgrid.occupancy.setup import EVAL_SEED_OFFSET, NTK_SEED_OFFSET, REGIONS, OccupancySetup

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

    from ntkgrid.spectrum import Spectrum


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


@dataclasses.dataclass
class MeshResult:
    """Everything measured for one mesh.

    ``runs[encoding]`` holds ``config`` (dict), ``history`` (list of ``{epoch, loss,
    accuracy, iou_uniform, accuracy_uniform, iou_surface, accuracy_surface, seconds}``),
    ``final`` (the last of those), ``diverged``, ``diverged_epoch`` (1-based, or None), ``seconds`` (``train``, ``surface``,
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
    settings: dict | None = None  # {"setup": OccupancySetup as a dict, "seed": int}: what a rerun must match to reuse

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name not in ("spectra", "spectra_by_output")}
        return to_jsonable(d)
