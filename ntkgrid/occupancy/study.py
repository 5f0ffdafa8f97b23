"""The occupancy study over several meshes (``python -m experiments.occupancy``): each mesh
trained and measured in its own folder (:func:`~ntkgrid.occupancy.run.run_mesh`), reused when it
finished earlier with the same settings, merged with earlier results, the mean spectra
(Fig. 5b) drawn and ``results.json`` / ``report.md`` written. A mesh that cannot be used is
reported (file and problem) and the others still run.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ntkgrid.config import TrainConfig
from ntkgrid.data import DataError
from ntkgrid.data import meshes as M
from ntkgrid.files import write_json, write_text
from ntkgrid.occupancy.data import MeshResult
from ntkgrid.occupancy.report import plot_mean_spectra, results_table, write_results
from ntkgrid.occupancy.results import finished_result, legacy_folder, merge_results, mesh_folder_name
from ntkgrid.occupancy.run import run_mesh
from ntkgrid.occupancy.setup import NTK_OUTPUTS, OccupancySetup, configs_for, mesh_preset_key

__all__ = ["PAPER_MESHES", "MeshSource", "OccupancyStudyResult", "load_source", "mesh_sources", "run_occupancy_study"]

#: The paper's three Stanford scans (Table 4's rows, Fig. 5b's meshes).
PAPER_MESHES = ("armadillo", "dragon", "happy_buddha")

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class MeshSource:
    """One mesh of the study.

    Attributes:
      name: its folder under the output folder (see :func:`mesh_sources`).
      kind: ``"file"`` (``what`` is the path), ``"download"`` (``what`` is a Stanford model's
        name) or ``"default"`` (the procedural shape, ``what`` is None).
      what: the path or model name.
    """

    name: str
    kind: str
    what: Any


@dataclasses.dataclass(frozen=True)
class OccupancyStudyResult:
    """What :func:`run_occupancy_study` returns.

    Attributes:
      results: every mesh's result in the output folder after the merge (earlier ones included).
      errors: ``{"mesh", "source", "error"}`` of every failed mesh after the merge.
      n_failed: meshes that failed in this call.
      n_tried: meshes this call handled (run, reused or failed).
      diverged: one line per ``mesh/encoding`` run of this call that diverged.
      seconds: wall time of this call's meshes (s).
    """

    results: list[MeshResult]
    errors: list[dict]
    n_failed: int
    n_tried: int
    diverged: list[str]
    seconds: float


def mesh_sources(meshes: Sequence[str], downloads: Sequence[str], out: Path, *,
                 log: Log = print) -> list[MeshSource]:
    """The meshes of a study, each once.

    Args:
      meshes: mesh files; ``"default"`` (when no such file exists) is the procedural shape.
      downloads: Stanford model names; ``"paper"`` stands for :data:`PAPER_MESHES`.
      out: the output folder (an older version's folder for the same file is reused).
      log: where the note on a mesh given twice goes.

    Returns:
      ``[MeshSource]``; ``name`` is the mesh's folder under ``out``: ``<stem>-<content hash>``
      for a file (:func:`ntkgrid.occupancy.mesh_folder_name`; the bare stem when ``out`` holds
      that file's finished folder from an older version), the model name for a download,
      ``default_shape`` for the procedural shape (also when nothing is given). The same mesh
      given twice runs once.
    """
    out_list = []
    for p in meshes:
        if p == "default" and not Path(p).exists():
            out_list.append(("default_shape", "default", None))
        else:
            out_list.append((legacy_folder(out, p) or mesh_folder_name(p), "file", p))
    names = [m for n in downloads for m in (PAPER_MESHES if n == "paper" else (n,))]
    out_list += [(n, "download", n) for n in dict.fromkeys(names)]
    if not out_list:
        out_list.append(("default_shape", "default", None))
    unique: dict[str, MeshSource] = {}
    for name, kind, what in out_list:
        if name in unique:
            log(f"note: {what if kind == 'file' else name} is the same mesh as {unique[name].what or name} "
                f"(folder {name}); it runs once")
            continue
        unique[name] = MeshSource(name, kind, what)
    return list(unique.values())


def load_source(source: MeshSource, cache: Path | None):
    """The ``trimesh.Trimesh`` of ``source`` (a download goes to ``<cache>/meshes``, default
    :func:`ntkgrid.data.meshes.default_cache_dir`); raises :class:`DataError` naming the file."""
    if source.kind == "default":
        return M.default_shape()
    if source.kind == "download":
        root = cache if cache is not None else M.default_cache_dir()
        return M.load_mesh(M.download_stanford(source.what, root / "meshes"))
    return M.load_mesh(source.what)


def _traceback_note(out: Path, name: str) -> str:
    """Write the current exception's traceback to ``<out>/logs/<name>.traceback.txt`` (for a bug
    report; the terminal gets one line) and say where; nothing when that cannot be written."""
    path = out / "logs" / f"{name}.traceback.txt"
    try:
        write_text(path, traceback.format_exc())
    except OSError:
        return ""
    return f" (traceback: {path})"


def run_occupancy_study(meshes: Sequence[str], downloads: Sequence[str], out: Path, *, preset: str,
                        encodings: Sequence[str],
                        seed: int, setup: OccupancySetup, tuned: Mapping[str, TrainConfig] | None = None,
                        overrides: Mapping[str, Any] | None = None, cache: Path | None = None,
                        progress: bool = True, config_json: Sequence[str] = (), argv: Sequence[str] = (),
                        log: Log = print, warn: Log = print) -> OccupancyStudyResult:
    """Train and measure every mesh of ``sources`` and write the study's outputs under ``out``.

    Args:
      meshes: mesh files (``"default"``: the procedural shape); see :func:`mesh_sources`.
      downloads: Stanford model names (``"paper"``: :data:`PAPER_MESHES`).
      out: the output folder (``<out>/<mesh>/``, ``spectra*.png``, ``results.json``, ``report.md``;
        labelled pools in ``<out>/pools``).
      preset: ``"paper"`` (Table 4) or ``"quick"``.
      encodings: the encodings to train on every mesh.
      seed: initialisation, minibatches and pools.
      setup: sampling, evaluation and picture settings.
      tuned: ``{encoding: TrainConfig}`` replacing that encoding's Table 4 entry.
      overrides: per-run overrides for :func:`~ntkgrid.occupancy.configs_for` (epochs, batch_size,
        learning_rate, ntk_points, hidden).
      cache: where downloads go (``<cache>/meshes``).
      progress: per-epoch progress bars.
      config_json: the ``ENCODING=PATH`` specs ``tuned`` came from, recorded in ``results.json``.
      argv: the command line, recorded in ``results.json``.
      log: where progress lines go.
      warn: where errors and warnings go (one line each).

    Returns:
      :class:`OccupancyStudyResult`.
    """
    tuned, overrides = dict(tuned or {}), dict(overrides or {})
    sources = mesh_sources(meshes, downloads, out, log=log)
    t_start = time.perf_counter()
    results, errors, reused = [], [], []
    for source in sources:
        name, kind, what = source.name, source.kind, source.what
        label = what if kind == "file" else (f"--download {what}" if kind == "download" else "default shape")
        log(f"== {name} ({label})")
        try:
            configs = configs_for(name, preset, encodings, seed, setup=setup, tuned=tuned, **overrides)
            done = finished_result(out / name, configs, setup, seed, setup.ntk_output)
            if done is not None:
                log(f"[{name}] finished earlier with these settings: reused as it is ({out / name})")
                reused.append(done)
                continue
            t_load = time.perf_counter()
            mesh = load_source(source, cache)
            t_load = time.perf_counter() - t_load
            key, matched = mesh_preset_key(name)
            log(f"[{name}] Table 4 row: {key}" + ("" if matched else " (name not recognised: armadillo's)"))
            res = run_mesh(mesh, name, configs, setup, out / name, seed=seed, cache_dir=out / "pools",
                           progress=progress, log=log, load_seconds=t_load)
            results.append(res)
        except DataError as err:
            warn(f"error: {err}")
            errors.append({"mesh": name, "source": err.source, "error": str(err)})
        except Exception as err:  # noqa: BLE001 - one mesh's failure must not lose the others
            first = (str(err).strip().splitlines() or [""])[0]
            msg = f"{type(err).__name__}: {first}" if not isinstance(err, ValueError) else first
            warn(f"error: {name}: {msg}{_traceback_note(out, name)}")
            errors.append({"mesh": name, "source": str(what), "error": msg})
    total = time.perf_counter() - t_start
    diverged = [f"{r.name}/{enc} diverged at epoch {run.get('diverged_epoch')} (non-finite loss; training stopped "
                "there)" for r in results + reused for enc, run in r.runs.items() if run.get("diverged")]
    new_results, n_failed, n_tried = bool(results), len(errors), len(errors) + len(results) + len(reused)
    results, errors = merge_results(out, results + reused, errors, warn=warn, ntk_output=setup.ntk_output)
    untouched = not new_results and not n_failed and (out / "results.json").is_file()
    if untouched:
        log(f"nothing new: every mesh finished earlier with these settings; {out} left as it was")
    if new_results or (results and not (out / "spectra.png").is_file()):
        for output in (setup.ntk_output, *(o for o in NTK_OUTPUTS if o != setup.ntk_output)):
            stem = "spectra" if output == setup.ntk_output else f"spectra_{output}"
            summary = plot_mean_spectra(results, out / f"{stem}.png", output=output)
            write_json(out / f"{stem}.json", {"kernel": output, **summary}, indent=None)
            counts = {e: {w: v.get("count") for w, v in s.items()} for e, s in summary.items()}
            log(f"spectra ({output} kernel): {out / f'{stem}.png'} (meshes averaged: {counts})")
    if (results or errors) and not untouched:
        meta = {"preset": preset, "seed": seed, "encodings": encodings, "ntk_output": setup.ntk_output,
                "config_json": list(config_json), "setup": dataclasses.asdict(setup), "argv": list(argv),
                "seconds": total}
        jpath, mpath = write_results(results, errors, out, meta)
        if results:
            log(results_table(results))
        log(f"results: {jpath}, {mpath}  ({total:.0f} s)")
    for line in diverged:
        warn(f"error: {line}")
    if n_failed:
        warn(f"{n_failed} of {n_tried} mesh(es) failed: " + ", ".join(e["mesh"] for e in errors[-n_failed:]))
    return OccupancyStudyResult(results, errors, n_failed, n_tried, diverged, total)
