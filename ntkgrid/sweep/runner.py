"""Training a sweep: its runs one image at a time (:func:`run_configs`) or the images of a
group in one compiled program per config (:func:`run_group`), and :func:`run_sweep`, which
trains the images of a shard into a sweep folder with resume (layout: see
:mod:`ntkgrid.sweep`; the per-image results files: :mod:`ntkgrid.sweep.records`)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkgrid import training
from ntkgrid.config import TrainConfig
from ntkgrid.data import DataError
from ntkgrid.data.images import image_to_dataset
from ntkgrid.data.images import shard as take_shard
from ntkgrid.files import write_json
from ntkgrid.sweep.common import FORMAT, Log, SweepError
from ntkgrid.sweep.folder import check_manifest, describe_machine, read_list, set_aside
from ntkgrid.sweep.records import ImageRecord, RunRecord, read_image_record
from ntkgrid.sweep.report import summarize
from ntkgrid.sweep.shards import resolve_shard
from ntkgrid.sweep.sources import ImageSource, load_source
from ntkgrid.training import BatchRun, fit
from ntkgrid.training.runfolder import RunFolder

__all__ = ["group_sizes", "run_configs", "run_group", "run_sweep"]


def _log_run(log: Log, label: str, res, seconds: float | None) -> None:
    """One line: the run's final PSNR/MS-SSIM, whether it diverged, and ``seconds`` if given."""
    f = res.final
    psnr, ms = f.get("psnr"), f.get("ms_ssim")
    msg = f"PSNR {psnr:.2f} dB" if psnr is not None else "no PSNR"
    msg += f", MS-SSIM {ms:.3f}" if ms is not None else ""
    if res.diverged:
        msg += f", DIVERGED at epoch {res.diverged_epoch}"
    log(f"{label}: {msg}" + (f" ({seconds:.1f} s)" if seconds is not None else ""))


def _fit_one(cfg: TrainConfig, coords: np.ndarray, values: np.ndarray, image_shape: tuple[int, int],
             out_dir: Path, progress: bool, label: str):
    """:func:`ntkgrid.training.fit` of one run into ``out_dir`` (resumable)."""
    return fit(cfg, coords, values, image_shape=image_shape, out_dir=out_dir, progress=progress, label=label)


def run_configs(image: np.ndarray, configs: Mapping[str, TrainConfig], runs_dir: str | os.PathLike, *,
                log: Log = print, progress: bool = True, prefix: str = ""
                ) -> tuple[dict[str, Any], dict[str, str]]:
    """Fit every config on one image; ``runs_dir/<name>`` holds each run (resumable).

    Args:
      image: ``(H, W, 3)`` float32 in ``[0, 1]``.
      configs: ``{name: TrainConfig}``.
      runs_dir: the parent folder of the runs.
      log, progress: where progress lines go; per-epoch progress bars.
      prefix: put before every run's label.

    Returns:
      ``(results, errors)``: ``{name: RunResult}`` of the runs that finished, and
      ``{name: message}`` of those that raised (each logged and left out of ``results``;
      the others still run).
    """
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, cfg in configs.items():
        t0 = time.perf_counter()
        try:
            coords, values = image_to_dataset(image, pixels=cfg.pixels)
            res = _fit_one(cfg, coords, values, image.shape[:2], Path(runs_dir) / name, progress, f"{prefix}{name}")
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - one failing run must not lose the others
            errors[name] = f"{type(err).__name__}: {err}"
            log(f"{prefix}{name}: FAILED ({errors[name]})")
            continue
        _log_run(log, f"{prefix}{name}", res, time.perf_counter() - t0)
        out[name] = res
    return out, errors


def group_sizes(runs_per_program: int | None, configs: Mapping[str, TrainConfig], size: int,
                n: int) -> dict[str, int]:
    """Images per program for each config.

    Args:
      runs_per_program: a fixed number (>= 1), or ``None`` for each config's
        :func:`ntkgrid.training.runs_per_program` for ``size x size`` images.
      configs: ``{name: TrainConfig}``.
      size: image side in pixels.
      n: images to train; the automatic sizes are at most ``n``.

    Returns:
      ``{name: images per program}``. Raises :class:`SweepError` for ``runs_per_program < 1``.
    """
    if runs_per_program is not None:
        if runs_per_program < 1:
            raise SweepError(f"runs per program must be >= 1, got {runs_per_program}")
        return {name: int(runs_per_program) for name in configs}
    if n == 0:
        return dict.fromkeys(configs, 1)
    return {name: max(1, min(n, training.runs_per_program(c, size * size))) for name, c in configs.items()}


def _fit_chunk(cfg: TrainConfig, chunk: list, name: str, *, log: Log, progress: bool,
               matmul_precision: str | None) -> list:
    """The results of the batch runs ``chunk`` in one program (:func:`ntkgrid.training.fit_batch`);
    if the program itself fails, each run is retried alone, so only the culprit fails.
    Returns one ``RunResult`` or exception per run."""
    try:
        return list(training.fit_batch(cfg, chunk, progress=progress, on_error="return", matmul_precision=matmul_precision))
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 - retry one by one so that only the culprit fails
        log(f"{name}: the batch of {len(chunk)} failed ({type(err).__name__}: {err}); training one at a time")
    results: list = []
    for run in chunk:
        try:
            results.append(_fit_one(cfg, run.coords, run.targets, run.image_shape, run.out_dir, progress, run.label))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001
            results.append(e)
    return results


def run_group(images: Mapping[str, np.ndarray], configs: Mapping[str, TrainConfig], runs_root: str | os.PathLike,
              *, log: Log = print, progress: bool = True, tags: Mapping[str, str] | None = None,
              matmul_precision: str | None = None, sizes: Mapping[str, int] | None = None
              ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """Fit every config on every image, the images of one config in ONE program
    (:func:`ntkgrid.training.fit_batch`), or in programs of ``sizes[name]`` images;
    ``runs_root/<image_id>/<name>`` holds each run (resumable, :mod:`ntkgrid.training`'s
    format, the same numbers as :func:`run_configs`).

    Args:
      images: ``{image_id: (H, W, 3) float32}`` of one size.
      configs: ``{name: TrainConfig}``.
      runs_root: the parent folder of the images' run folders.
      log, progress: where progress lines go; per-epoch progress bars.
      tags: ``{image_id: label}`` for the logs (default: the id).
      matmul_precision: None/"default" or "highest" (see :mod:`ntkgrid.training.batched`).
      sizes: ``{name: images per program}`` (default: all in one).

    Returns:
      ``(results, errors)``: ``{image_id: {name: RunResult}}`` (every image, a run that
      raises left out) and ``{image_id: {name: message}}`` (only images with a failed run;
      a message is ``"<ExceptionType>: <text>"``). A run that cannot start (e.g. its folder
      holds another run) fails alone; if the batched program itself fails, each image of
      it is retried on its own with :func:`ntkgrid.training.fit`, so one bad image loses only itself.
    """
    tags = dict(tags or {})
    data = {k: image_to_dataset(img) for k, img in images.items()}
    out: dict[str, dict[str, Any]] = {k: {} for k in images}
    errors: dict[str, dict[str, str]] = {}
    ids = list(images)
    for name, cfg in configs.items():
        if not ids:
            break
        runs = [BatchRun(data[k][0], data[k][1], image_shape=images[k].shape[:2],
                         out_dir=Path(runs_root) / k / name, label=f"{tags.get(k, k)} {name}") for k in ids]
        per = max(1, int((sizes or {}).get(name, len(ids))))
        t0 = time.perf_counter()
        results = []
        for i in range(0, len(runs), per):
            results += _fit_chunk(cfg, runs[i:i + per], name, log=log, progress=progress,
                                  matmul_precision=matmul_precision)
        log(f"{name}: {len(ids)} image(s) in {-(-len(ids) // per)} program(s), {time.perf_counter() - t0:.1f} s")
        for k, res in zip(ids, results, strict=False):
            if isinstance(res, BaseException):
                msg = f"{type(res).__name__}: {res}"
                errors.setdefault(k, {})[name] = msg
                log(f"{tags.get(k, k)} {name}: FAILED ({msg})")
                continue
            _log_run(log, f"{tags.get(k, k)} {name}", res, None)
            out[k][name] = res
    return out, errors


def _pending(out: Path, mine: Sequence[ImageSource], configs: Mapping[str, TrainConfig],
             log: Log) -> tuple[list[tuple[int, ImageSource]], list[str]]:
    """``([(index, source)] to train, [image ids done before])``: an image is done when its
    results file holds every config's results. An unreadable or incomplete results file is
    set aside (``<image_id>.json.corrupt``, :func:`~ntkgrid.sweep.folder.set_aside`) and its
    image trained again, which loads its finished runs from their folders (no retraining)."""
    todo, resumed = [], []
    for i, src in enumerate(mine):
        path = out / "results" / f"{src.image_id}.json"
        if path.exists():
            record, reason = read_image_record(path)
            if record is not None and set(configs) <= set(record.runs):
                log(f"[{i + 1}/{len(mine)}] {src.image_id}: done before, skipped")
                resumed.append(src.image_id)
                continue
            aside = set_aside(path)
            log(f"[{i + 1}/{len(mine)}] {src.image_id}: {reason or f'{path}: not every encoding has results'}; "
                f"kept as {aside.name}, rebuilding it from the run folders")
        todo.append((i, src))
    return todo, resumed


def _check_run_folders(runs_root: Path, ids: Sequence[str], configs: Mapping[str, TrainConfig], log: Log) -> None:
    """Set aside (``<name>.corrupt``) every run folder of ``ids`` whose ``run.json`` and
    ``summary.json`` are both unreadable (so which run it holds cannot be told), so that its
    config trains again while the image's other runs are kept."""
    for iid in ids:
        for name in configs:
            root = runs_root / iid / name
            if root.is_dir() and RunFolder.unidentifiable(root):
                aside = set_aside(root)
                log(f"{root}: run.json and summary.json unreadable; kept as {aside.name}, training {name} again")


def _load_group(todo: Sequence[tuple[int, ImageSource]], n: int, size: int, skipped: list[dict],
                skipped_path: Path, log: Log) -> dict[str, tuple[str, ImageSource, np.ndarray]]:
    """``{image_id: (tag, source, (size, size, 3) image)}`` of ``todo``; an unusable file is
    logged and appended to ``skipped`` (written to ``skipped_path`` at once)."""
    images = {}
    for i, src in todo:
        tag = f"[{i + 1}/{n}] {src.image_id}"
        try:
            images[src.image_id] = (tag, src, load_source(src, size))
        except DataError as err:
            log(f"{tag}: SKIPPED: {err}")
            skipped.append({"image_id": src.image_id, "source": src.source, "synset": src.synset,
                            "reason": str(err)})
            write_json(skipped_path, skipped)
    return images


def _write_results(out: Path, images: Mapping[str, tuple], runs: Mapping[str, dict],
                   errors: Mapping[str, dict[str, str]]) -> tuple[list[str], list[dict]]:
    """Write ``results/<image_id>.json`` of every image whose runs all finished (``runs``,
    ``errors``: as :func:`run_group` returns them); returns ``([image ids written],
    [failure records {"image_id", "source", "errors"}])``."""
    ran, failed = [], []
    for iid, (_, src, image) in images.items():
        if errors.get(iid):
            failed.append({"image_id": iid, "source": src.source, "errors": dict(errors[iid])})
            continue
        record = ImageRecord(image_id=iid, source=src.source, synset=src.synset, size=tuple(image.shape[:2]),
                             runs={n: RunRecord.from_result(r, f"runs/{iid}/{n}") for n, r in runs[iid].items()})
        write_json(out / "results" / f"{iid}.json", record.to_json())
        ran.append(iid)
    return ran, failed


def run_sweep(out: str | os.PathLike, sources: Sequence[ImageSource], configs: Mapping[str, TrainConfig], *,
              size: int, manifest: Mapping, shard: str | None = None, log: Log = print,
              progress: bool = True, runs_per_program: int | None = None,
              matmul_precision: str | None = None) -> dict:
    """Train ``configs`` on each image of ``shard(sources)`` into ``out`` (see
    :mod:`ntkgrid.sweep`), then :func:`ntkgrid.sweep.summarize` it.

    Args:
      out: output folder.
      sources: the whole selection (every shard passes the same list).
      configs: ``{name: TrainConfig}``.
      size: image side in pixels.
      manifest: the identity of the sweep: ``table``, ``preset``, ``seed``,
        ``data_root``, ``num_images`` (plus anything else to record); ``size``,
        ``configs`` and ``selection`` are filled in here.
      shard: ``"i/n"``, ``"auto"`` (this process's ``jax.process_index()/process_count()``,
        see :func:`ntkgrid.sweep.resolve_shard`) or ``None``.
      log: where progress lines go.
      progress: per-epoch progress bars (only on a terminal).
      runs_per_program: images trained together per encoding (:func:`ntkgrid.sweep.run_group`);
        None sizes the groups from the device's memory
        (:func:`ntkgrid.training.runs_per_program`). Results do not depend on it.
      matmul_precision: None/"default" or "highest" (see :mod:`ntkgrid.training.batched`).

    Returns:
      :func:`ntkgrid.sweep.summarize`'s dict plus ``"ran"``, ``"resumed"``, ``"skipped"``,
      ``"failed"`` (lists of image ids / records of this call) and ``"seconds"``.
    """
    t0 = time.perf_counter()
    out = Path(out)
    shard = resolve_shard(shard)
    mine = take_shard(sources, shard)
    manifest = {**manifest, "format": FORMAT, "size": int(size),
                "configs": {k: c.to_dict() for k, c in configs.items()},
                "selection": [dataclasses.asdict(s) for s in sources], "shard": shard,
                "machine": describe_machine(), "runs_per_program": runs_per_program or "auto",
                "matmul_precision": matmul_precision or "default"}
    check_manifest(out, manifest)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "manifest.json", manifest)
    mine_ids = {s.image_id for s in mine}
    skipped = read_list(out / "skipped.json", mine_ids)
    kept_failed = read_list(out / "failed.json", mine_ids)
    todo, resumed = _pending(out, mine, configs, log)
    sizes = group_sizes(runs_per_program, configs, size, len(todo))
    group = max(sizes.values(), default=1)
    if todo:
        log(f"training {len(todo)} image(s) in groups of {group}; images per program: "
            + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    ran, failed = [], []
    for g in range(0, len(todo), group):
        images = _load_group(todo[g:g + group], len(mine), size, skipped, out / "skipped.json", log)
        _check_run_folders(out / "runs", list(images), configs, log)
        runs, errors = run_group({k: img for k, (_, _, img) in images.items()}, configs, out / "runs", log=log,
                                 progress=progress, tags={k: t for k, (t, _, _) in images.items()},
                                 matmul_precision=matmul_precision, sizes=sizes)
        done, bad = _write_results(out, images, runs, errors)
        ran += done
        failed += bad
    write_json(out / "skipped.json", skipped)
    write_json(out / "failed.json", kept_failed + failed)
    summary = summarize(out, log=log, wall_seconds=time.perf_counter() - t0)
    summary.update(ran=ran, resumed=resumed, skipped=skipped, failed=failed, seconds=time.perf_counter() - t0)
    return summary
