"""One mesh, every encoding: train, measure, take spectra, extract and render the
surfaces, and write the mesh's files (:func:`run_mesh`)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ntkgrid import render as R
from ntkgrid.config import TrainConfig
from ntkgrid.data.meshes import FreshPoints, mesh_info
from ntkgrid.files import to_jsonable, write_json
from ntkgrid.models import build_model
from ntkgrid.occupancy.data import MeshResult, OccupancyData, make_eval_fn, prepare_data  # MeshResult re-exported
from ntkgrid.occupancy.report import na, plot_iou_curves
from ntkgrid.occupancy.setup import NTK_OUTPUTS, OccupancySetup, mesh_preset_key
from ntkgrid.occupancy.spectra import checkpoint_spectra
from ntkgrid.training import fit

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

    from ntkgrid.spectrum import Spectrum


def run_settings(setup: OccupancySetup, seed: int) -> dict:
    """The settings besides the configs that a mesh's results depend on, as stored in its
    ``metrics.json`` (``settings``): the setup and the pool/NTK-point seed."""
    return to_jsonable({"setup": dataclasses.asdict(setup), "seed": int(seed)})


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

    Args:
      mesh: the normalised mesh (longest side spanning ``[0, 1]``).
      name: the mesh's name (folder-safe); picks its Table 4 row (:func:`mesh_preset_key`).
      configs: ``{encoding: TrainConfig}`` (:func:`configs_for`), trained in this order.
      setup: sampling, kernel and picture settings.
      out_dir: the mesh's folder.
      seed: pools, fresh points and NTK points (the configs carry the training seed).
      cache_dir: labelled pools and per-seed label caches (None: nothing cached).
      progress: per-epoch progress bars.
      log: where the one-line summaries go.
      load_seconds: wall time the caller spent loading the mesh (stored in the result).

    Returns:
      The :class:`MeshResult`, also written as ``metrics.json``.
    """
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
        runs[enc], panel, both = _run_encoding(mesh, name, enc, cfg, setup, data, eval_fn, camera, out, seed=seed,
                                               cache_dir=cache_dir, progress=progress, log=log)
        panels.append(panel)
        for o in NTK_OUTPUTS:
            spectra_all[o][enc] = {e: g["total"] for e, g in both[o].items()}
        spectra[enc] = spectra_all[setup.ntk_output][enc]
    render_path = out / "render.png"
    R.save_panel(render_path, panels, suptitle=f"{name}: 0.5 level sets, one camera (IoU held-out uniform / "
                                               "near-surface)")
    plot_iou_curves(runs, out / "iou_curve.png", title=f"{name}: held-out IoU against epochs")
    result = MeshResult(name=name, source=source, preset_key=key, preset_matched=matched, info=mesh_info(mesh),
                        data_seconds=data.seconds, runs=runs, spectra=spectra, render=str(render_path),
                        gt_render_seconds=gt_seconds, load_seconds=load_seconds, spectra_by_output=spectra_all,
                        settings=run_settings(setup, seed))
    write_json(out / "metrics.json", result.to_json())
    return result



def _run_encoding(mesh: trimesh.Trimesh, name: str, enc: str, cfg: TrainConfig, setup: OccupancySetup,
                  data: OccupancyData, eval_fn: Callable, camera: Any, out: Path, *, seed: int,
                  cache_dir: str | os.PathLike | None, progress: bool, log: Callable[[str], None]
                  ) -> tuple[dict, tuple, dict]:
    """Train ``cfg`` on ``mesh`` (:func:`ntkgrid.training.fit` in ``out/enc``), take its spectra,
    extract its surface (``out/surface_<enc>.ply``) and render it from ``camera``.

    Returns ``(run, panel, spectra)``: the :class:`MeshResult` ``runs`` entry, the
    render panel ``(title, image, note)`` and :func:`checkpoint_spectra`'s dict."""
    sampler = None
    kw: dict[str, Any] = {"epoch_size": setup.epoch_size(cfg)}
    if setup.sampling == "fresh":
        sampler = FreshPoints(mesh, data.bounds, setup.epoch_size(cfg), seed=seed,
                              cache_dir=None if cache_dir is None else Path(cache_dir))
        kw = {"epoch_data": sampler}
    res = fit(cfg.replace(ntk_points=0), data.train_x, data.train_y, eval_fn=eval_fn, out_dir=out / enc,
              progress=progress, label=f"{name}/{enc}", **kw)
    hist = [{k: h.get(k) for k in ("epoch", "loss", "train_loss", "accuracy", "iou_uniform", "accuracy_uniform",
                                   "iou_surface", "accuracy_surface", "seconds")} for h in res.history]
    t_ntk = time.perf_counter()
    spec_epochs = [e for e in (0, cfg.epochs // 2, cfg.epochs) if e in cfg.checkpoint_epochs()
                   and e <= res.params_epoch]
    both = checkpoint_spectra(cfg, out / enc, sorted(set(spec_epochs)), data.ntk_x[:cfg.ntk_points]) \
        if cfg.ntk_points else {o: {} for o in NTK_OUTPUTS}
    t_ntk = time.perf_counter() - t_ntk
    field = R.network_field(build_model(cfg, 3, 1).apply, res.params)
    t1 = time.perf_counter()
    surf = R.extract_surface(field, setup.mc_resolution)
    ply = out / f"surface_{enc}.ply"
    surf.export(ply)
    t2 = time.perf_counter()
    img = R.render_field(field, camera, n_steps=setup.render_steps)
    t3 = time.perf_counter()
    fin = hist[-1] if hist else {}
    e_size = setup.epoch_size(cfg)
    run = {"config": cfg.to_dict(), "history": hist, "final": fin, "diverged": res.diverged,
           "diverged_epoch": res.diverged_epoch,
           "epoch_points": e_size, "steps_per_epoch": -(-e_size // cfg.batch_size),
           "seconds": {"train": res.seconds, "spectra": t_ntk, "surface": t2 - t1, "render": t3 - t2},
           "labelling": None if sampler is None else {"points": sampler.labelled,
                                                      "seconds": sampler.seconds_labelling},
           "surface": str(ply), "surface_faces": len(surf.faces),
           "surface_watertight": bool(len(surf.faces) and surf.is_watertight)}
    title = f"{enc}  IoU {na(fin.get('iou_uniform'))} / {na(fin.get('iou_surface'))}"
    if res.diverged:
        title += f" (diverged @ {res.diverged_epoch})"
    note = None if img.mask.any() else "nothing predicted inside:\nthe 0.5 level set is empty"
    log(f"[{name}] {enc:9s} epochs {res.params_epoch} ({e_size} points, "
        f"{run['steps_per_epoch']} steps each): loss {na(fin.get('loss'), 4)}  "
        f"IoU uniform {na(fin.get('iou_uniform'))}  near-surface {na(fin.get('iou_surface'))}  "
        f"acc {na(fin.get('accuracy_uniform'))}/{na(fin.get('accuracy_surface'))}  "
        f"(train {res.seconds:.0f} s, spectra {t_ntk:.1f} s, surface {t2 - t1:.1f} s, render {t3 - t2:.1f} s)")
    return run, (title, img.image, note), both
