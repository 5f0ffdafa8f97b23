"""3-D occupancy experiment (the paper's Section 5 / Appendix E, Fig. 5b): library logic.

One mesh -> labelled point pools -> one SGD run per encoding -> metrics, spectra,
pictures. :mod:`experiments.occupancy` is the command line around :func:`run_mesh`,
:func:`plot_mean_spectra` and :func:`write_results`.

* **Data.** The mesh is normalised so its longest axis spans ``[0, 1]``
  (:func:`ntkgrid.data.meshes.load_mesh`). Labels (1 = inside) come from
  :func:`ntkgrid.data.meshes.occupancy`, computed once for a *training pool* (uniform in
  the box plus near-surface points) and for separate *held-out pools* (uniform and
  near-surface, another seed), all cached as ``.npz`` (:func:`prepare_data`). Training
  draws ``epoch_size`` fresh points from the training pool every epoch, on the device
  (:func:`ntkgrid.train.fit`); the mesh is never queried inside the training loop.
* **Network.** :class:`~ntkgrid.config.TrainConfig` from :data:`ntkgrid.presets.OCCUPANCY`
  (Table 4: 8x256 ReLU MLP, sigmoid + binary cross-entropy, plain SGD, per-mesh MPE
  settings): :func:`configs_for`.
* **Measured.** At the checkpoints (middle and end; paper runs also 0): training-pool
  loss and accuracy,
  the float64 NTK spectrum on ``ntk_points`` held-out uniform points, and volumetric IoU
  and accuracy on both held-out pools (:func:`occupancy_metrics`).
* **Pictures.** A ray-marched render of each network's 0.5 level set beside the
  ground-truth mesh (:mod:`ntkgrid.render`), one PNG per mesh; the marching-cubes
  surface of each network as a ``.ply``; the mean spectra across meshes (Fig. 5b).
"""

from __future__ import annotations

import dataclasses
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

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

    from ntkgrid.spectrum import Spectrum

__all__ = [
    "ENCODINGS",
    "PAPER_SETUP",
    "QUICK_SETUP",
    "MeshResult",
    "OccupancyData",
    "OccupancySetup",
    "configs_for",
    "iou",
    "mesh_preset_key",
    "occupancy_metrics",
    "plot_mean_spectra",
    "prepare_data",
    "results_table",
    "run_mesh",
    "safe_name",
    "write_results",
]

ENCODINGS = ("baseline", "fourier", "multigrid")
EVAL_SEED_OFFSET = 7919  # held-out pools use seed + this, so they never coincide with training ones


@dataclasses.dataclass(frozen=True)
class OccupancySetup:
    """Data, sampling and picture settings of an occupancy run (the network and optimiser
    are a :class:`~ntkgrid.config.TrainConfig`). Sizes are numbers of points."""

    pool_uniform: int  # training pool: points uniform in [0, 1]^3
    pool_surface: int  # training pool: surface samples + N(0, sigma^2) jitter
    eval_uniform: int  # held-out pool for IoU/accuracy: uniform in [0, 1]^3
    eval_surface: int  # held-out pool for IoU/accuracy: near-surface (same sigma)
    sigma: float = 0.01  # std of the near-surface jitter (normalised units, longest side = 1)
    steps_per_epoch: int = 1  # SGD steps per epoch: epoch_size = steps_per_epoch * batch_size
    render_size: int = 256  # rendered image side (pixels)
    render_steps: int = 192  # ray-marching samples along the box diagonal
    mc_resolution: int = 128  # marching-cubes grid (nodes per axis) for the .ply surfaces
    view: tuple[float, float] = (210.0, 20.0)  # camera azimuth, elevation (degrees; y up)

    def __post_init__(self):
        if min(self.pool_uniform, self.pool_surface, self.eval_uniform, self.eval_surface) < 0:
            raise ValueError(f"pool sizes must be >= 0, got {self}")
        if self.pool_uniform + self.pool_surface < 1 or self.eval_uniform + self.eval_surface < 1:
            raise ValueError("the training and held-out pools need at least one point each")
        if self.steps_per_epoch < 1 or self.render_size < 1 or self.render_steps < 1 or self.mc_resolution < 2:
            raise ValueError(f"need steps_per_epoch, render_size, render_steps >= 1 and mc_resolution >= 2: {self}")

    def epoch_size(self, cfg: TrainConfig) -> int:
        """Points drawn from the training pool per epoch (capped at the pool size)."""
        return min(self.steps_per_epoch * cfg.batch_size, self.pool_uniform + self.pool_surface)

    def replace(self, **changes: Any) -> OccupancySetup:
        return dataclasses.replace(self, **changes)


#: ``--preset paper``. The paper samples "randomly ... each epoch in the scaled mesh's
#: bounding box" (Appendix E) and trains 4000 epochs with Table 4's batch sizes, but gives
#: no epoch size. Our choices: a 2M-point uniform training pool, 10 SGD steps (about 100k
#: points) per epoch, which makes lr x steps comparable with the quick preset's (plain SGD
#: at Table 4's lr ~ 1 moves the grid nodes too little in a few thousand steps: measured,
#: see experiments/OCCUPANCY.md). Held-out pools, jitter and picture sizes are ours too.
PAPER_SETUP = OccupancySetup(
    pool_uniform=2_000_000, pool_surface=0, eval_uniform=200_000, eval_surface=200_000,
    sigma=0.01, steps_per_epoch=10, render_size=384, render_steps=320, mc_resolution=192,
)

#: ``--preset quick`` (our choice: the whole run on the default shape in under 10 minutes
#: on a 2-core CPU). Half the training pool lies near the surface, so that a few hundred
#: thousand points are enough to place the surface; 8 steps of 256 points per epoch.
QUICK_SETUP = OccupancySetup(
    pool_uniform=100_000, pool_surface=100_000, eval_uniform=25_000, eval_surface=25_000,
    sigma=0.01, steps_per_epoch=8, render_size=160, render_steps=80, mc_resolution=64,
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
                **overrides: Any) -> dict[str, TrainConfig]:
    """``{encoding: TrainConfig}`` for a mesh: Table 4 (``preset="paper"``) or its quick
    version (:data:`ntkgrid.presets.OCCUPANCY_QUICK`), with ``seed`` and any ``overrides``
    (TrainConfig fields, e.g. ``epochs=2``) applied. Quick runs measure at the middle and
    the end of training only (paper runs also at epoch 0), unless ``checkpoints`` is
    overridden."""
    from ntkgrid.presets import OCCUPANCY, OCCUPANCY_QUICK

    if preset not in ("paper", "quick"):
        raise ValueError(f"preset must be 'paper' or 'quick', got {preset!r}")
    key, _ = mesh_preset_key(mesh_name)
    table = (OCCUPANCY if preset == "paper" else OCCUPANCY_QUICK)[key]
    out = {}
    for enc in encodings:
        if enc not in table:
            raise ValueError(f"unknown encoding {enc!r}; choose from {sorted(table)}")
        cfg = table[enc]
        cfg = cfg.replace(seed=seed, **{k: v for k, v in overrides.items() if v is not None})
        if preset == "quick" and cfg.checkpoints is None:  # Fig. 5b needs the middle and the end only
            cfg = cfg.replace(checkpoints=(cfg.epochs // 2, cfg.epochs))
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

    ``train_x`` ``(N, 3)`` / ``train_y`` ``(N, 1)``: the training pool (uniform then
    near-surface); ``eval`` ``{"uniform": (x (M, 3), y (M,)), "surface": (x, y)}``: the
    held-out pools; ``ntk_x`` ``(P, 3)``: the points the NTK spectra are computed on.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    eval: dict[str, tuple[np.ndarray, np.ndarray]]
    ntk_x: np.ndarray
    seconds: float  # wall time to sample and label (or load) the pools


def prepare_data(mesh: trimesh.Trimesh, setup: OccupancySetup, *, seed: int = 0, ntk_points: int = 256,
                 cache_dir: str | os.PathLike | None = None, source: str | None = None) -> OccupancyData:
    """Sample and label (or load from ``cache_dir``) the training and held-out pools.

    Raises :class:`DataError` naming ``source`` (default: the mesh's recorded source) when
    no sampled point is inside the mesh (an open sheet, or a surface enclosing no volume)
    or every point is.
    """
    from ntkgrid.data.meshes import sample_pools

    source = source or mesh.metadata.get("ntkgrid", {}).get("source", "mesh")
    t0 = time.perf_counter()
    tr = sample_pools(mesh, setup.pool_uniform, setup.pool_surface, setup.sigma, seed=seed, cache_dir=cache_dir)
    ev = sample_pools(mesh, setup.eval_uniform, setup.eval_surface, setup.sigma, seed=seed + EVAL_SEED_OFFSET,
                      cache_dir=cache_dir)
    train_x = np.concatenate([tr["points_uniform"], tr["points_surface"]]).astype(np.float32)
    train_y = np.concatenate([tr["labels_uniform"], tr["labels_surface"]]).astype(np.float32)[:, None]
    inside = float(train_y.mean())
    if inside == 0.0:
        raise DataError(source, f"none of the {len(train_y)} sampled points is inside the mesh: it encloses "
                                "no volume (an open or flat surface?), so there is no occupancy to learn")
    if inside == 1.0:
        raise DataError(source, f"all {len(train_y)} sampled points are inside the mesh; its faces are "
                                "probably inconsistently oriented or it is not a closed surface")
    if ntk_points > 0 and setup.eval_uniform < ntk_points:
        ntk_x = np.concatenate([ev["points_uniform"], ev["points_surface"]])[:ntk_points]
    else:
        ntk_x = ev["points_uniform"][:ntk_points]
    return OccupancyData(
        train_x=train_x, train_y=train_y,
        eval={"uniform": (ev["points_uniform"], ev["labels_uniform"]),
              "surface": (ev["points_surface"], ev["labels_surface"])},
        ntk_x=np.asarray(ntk_x, np.float32), seconds=time.perf_counter() - t0)


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
    """``eval_fn(apply, variables)`` for :func:`ntkgrid.train.fit`: ``iou_<pool>`` and
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
    at each checkpoint (not written to JSON: the run directories hold the ``.npz``).
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

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("spectra")
        return d


def safe_name(name: str) -> str:
    """``name`` reduced to ``[A-Za-z0-9_.-]`` for use as a directory name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "mesh"


def run_mesh(mesh: trimesh.Trimesh, name: str, configs: Mapping[str, TrainConfig], setup: OccupancySetup,
             out_dir: str | os.PathLike, *, seed: int = 0, cache_dir: str | os.PathLike | None = None,
             progress: bool = True, log: Callable[[str], None] = print, load_seconds: float = 0.0) -> MeshResult:
    """Train every configuration on ``mesh`` and write its files under ``out_dir``.

    Files: ``<encoding>/`` (the :func:`ntkgrid.train.fit` run: ``metrics.jsonl``,
    ``summary.json``, ``checkpoints/``, ``spectra/``), ``surface_<encoding>.ply``
    (marching cubes of ``sigmoid(logit) = 0.5`` at ``setup.mc_resolution``),
    ``render.png`` (ground truth beside each encoding), ``metrics.json``
    (:meth:`MeshResult.to_json`). A rerun reuses finished runs (``fit`` resumes).
    """
    from ntkgrid import render as R
    from ntkgrid.data.meshes import mesh_info
    from ntkgrid.train import fit

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = str(mesh.metadata.get("ntkgrid", {}).get("source", name))
    key, matched = mesh_preset_key(name)
    ntk_points = max((c.ntk_points for c in configs.values()), default=0)
    data = prepare_data(mesh, setup, seed=seed, ntk_points=ntk_points, cache_dir=cache_dir, source=source)
    log(f"[{name}] pools: {len(data.train_x)} training points ({100 * data.train_y.mean():.1f} % inside), "
        f"held-out {len(data.eval['uniform'][0])} uniform + {len(data.eval['surface'][0])} near-surface "
        f"({data.seconds:.1f} s)")
    camera = R.Camera.orbit(setup.view[0], setup.view[1], 2.3, width=setup.render_size, height=setup.render_size)
    t0 = time.perf_counter()
    gt = R.render_mesh(mesh, camera)
    gt_seconds = time.perf_counter() - t0
    eval_fn = make_eval_fn(data)
    panels = [("ground truth", gt.image)]
    runs: dict[str, dict] = {}
    spectra: dict[str, dict[int, Spectrum]] = {}
    for enc, cfg in configs.items():
        label = f"{name}/{enc}"
        res = fit(cfg, data.train_x, data.train_y, ntk_x=data.ntk_x[:cfg.ntk_points] if cfg.ntk_points else None,
                  eval_fn=eval_fn, out_dir=out / enc, progress=progress, label=label,
                  epoch_size=setup.epoch_size(cfg))
        hist = [{k: h.get(k) for k in ("epoch", "loss", "accuracy", "iou_uniform", "accuracy_uniform",
                                       "iou_surface", "accuracy_surface", "seconds")} for h in res.history]
        spectra[enc] = {h["epoch"]: h["spectrum"] for h in res.history if h.get("spectrum") is not None}
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
        runs[enc] = {"config": cfg.to_dict(), "history": hist, "final": fin, "diverged": res.diverged,
                     "seconds": {"train": res.seconds, "surface": t2 - t1, "render": t3 - t2},
                     "surface": str(ply), "surface_faces": len(surf.faces),
                     "surface_watertight": bool(len(surf.faces) and surf.is_watertight)}
        title = f"{enc}  IoU {_fmt(fin.get('iou_uniform'))} / {_fmt(fin.get('iou_surface'))}"
        if res.diverged:
            title += f" (diverged @ {res.diverged_epoch})"
        note = None if img.mask.any() else "nothing predicted inside:\nthe 0.5 level set is empty"
        panels.append((title, img.image, note))
        log(f"[{name}] {enc:9s} epochs {res.params_epoch}: loss {_fmt(fin.get('loss'), 4)}  "
            f"IoU uniform {_fmt(fin.get('iou_uniform'))}  near-surface {_fmt(fin.get('iou_surface'))}  "
            f"acc {_fmt(fin.get('accuracy_uniform'))}/{_fmt(fin.get('accuracy_surface'))}  "
            f"(train {res.seconds:.0f} s, surface {t2 - t1:.1f} s, render {t3 - t2:.1f} s)")
    render_path = out / "render.png"
    R.save_panel(render_path, panels, suptitle=f"{name}: 0.5 level sets (IoU held-out uniform / near-surface)")
    result = MeshResult(name=name, source=source, preset_key=key, preset_matched=matched, info=mesh_info(mesh),
                        data_seconds=data.seconds, runs=runs, spectra=spectra, render=str(render_path),
                        gt_render_seconds=gt_seconds, load_seconds=load_seconds)
    (out / "metrics.json").write_text(json.dumps(_json_safe(result.to_json()), indent=1) + "\n")
    return result


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


def plot_mean_spectra(results: Sequence[MeshResult], path: str | os.PathLike, *, title: str | None = None) -> dict:
    """Fig. 5b: per encoding, the mean over meshes of the NTK spectrum at the end of
    training (solid) and at its middle (dashed), each with its mean numerical floor
    (dotted, same colour), on a log scale against the eigenvalue index.

    Spectra of different sizes are resampled to the smallest size before averaging.
    Returns ``{encoding: {"end": {...}, "mid": {...}}}`` of
    :func:`ntkgrid.spectrum.mean_spectrum` summaries (``mean``/``floor``/``count``;
    ``{}`` for an encoding with no spectra).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ntkgrid.spectrum import mean_spectrum

    encs = list(dict.fromkeys(e for r in results for e in r.spectra))
    colors = {"baseline": "tab:gray", "fourier": "tab:blue", "multigrid": "tab:red"}
    summary: dict[str, dict] = {}
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for enc in encs:
        summary[enc] = {}
        for which, style in (("end", "-"), ("mid", "--")):
            specs = []
            for r in results:
                s = r.spectra.get(enc, {})
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
    ax.set_title(title or f"Mean NTK spectra over {len(results)} mesh(es); dotted: numerical floor")
    if encs:
        ax.legend(fontsize=8)
    fig.tight_layout()
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
        lines.append(f"\nMean NTK spectra over {len(results)} mesh(es) (Fig. 5b): `spectra.png` "
                     "(numbers: `spectra.json`).")
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
