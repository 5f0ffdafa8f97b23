"""Sweeps of the paper's 2D experiments: which images, which configs, resumable runs,
shards, merging and summaries; plus the analyses the appendix figures need.

A sweep trains every configuration (``{name: TrainConfig}``, e.g. Table 2's
``baseline``, ``fourier``, ``multigrid``) on every selected image and writes, under its
output folder ``out``::

    manifest.json                 what was selected and with which settings (see below)
    runs/<image_id>/<name>/       one ntkgrid.train.fit run (metrics, spectra, checkpoints)
    results/<image_id>.json       per-image results, written when all its runs are done
    skipped.json                  files that could not be used, each with the reason
    results.json, summary.csv, summary.md, spectra.png/.json, report.md   (summarize)

Resuming: an image whose ``results/<image_id>.json`` exists is skipped; an interrupted
image continues inside ``fit`` from its last checkpoint. ``manifest.json`` pins the
settings that decide the results (configs, image size, seed, the selected images); a
rerun with different ones into the same folder stops with an error naming the
differences before anything is computed, so nothing already computed is lost.

Batching: the images of a shard train in groups (``runs_per_program``, default sized per
config from the device's memory, :func:`ntkgrid.batched.runs_per_program`): per group and
config, its images are one compiled program (:func:`run_group`,
:func:`ntkgrid.batched.fit_batch`), with the numbers and run folders of one-at-a-time
training; several local devices share a program (its run axis is sharded). An image's
results are written when all its configs are done.

Sharding: ``shard="i/n"`` runs images ``i, i+n, ...`` of the selection (use one output
folder per shard); :func:`merge` collects shard folders into one summary equal to that of
an unsharded run (per-image results point at the shards' run folders). ``shard="auto"``
takes ``jax.process_index()/jax.process_count()`` (one shard per process of a
``jax.distributed.initialize()`` job).

Spectra: each run records float64 NTK spectra (by parameter group) at its checkpoints;
"middle" is the measured epoch nearest ``epochs / 2`` and "end" the last one. Mean
spectra resample every image's spectrum to ``length`` (8000, as the paper) values
(:func:`ntkgrid.spectrum.mean_spectrum`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkgrid.config import TrainConfig
from ntkgrid.data import DataError
from ntkgrid import files
from ntkgrid.files import markdown_table, write_json, write_text
from ntkgrid.spectrum import Spectrum, mean_spectrum

__all__ = [
    "FORMAT",
    "ImageSource",
    "SweepError",
    "activation_regions",
    "apply_overrides",
    "checkpoint_variables",
    "describe_machine",
    "grid_tables",
    "load_config_json",
    "load_source",
    "load_sweep",
    "mean_spectra",
    "merge",
    "middle_and_end",
    "recompute_kernels",
    "resolve_image",
    "resolve_shard",
    "run_configs",
    "run_group",
    "run_sweep",
    "select_sources",
    "summarize",
    "summary_rows",
    "unused_nodes",
]

FORMAT = 1
#: Resampled length of mean spectra (the paper scales every spectrum to 8000 values).
SPECTRUM_LENGTH = 8000
#: manifest.json keys that must match for a rerun or a merge to reuse results (the
#: selection is compared by image id, so shards may see the data root at different paths).
IDENTITY_KEYS = ("table", "preset", "size", "seed", "num_images", "configs", "selection")

Log = Callable[[str], None]


class SweepError(RuntimeError):
    """A sweep cannot go on: bad settings, an output folder holding another sweep, or
    inputs that do not fit together. The message names the file and the problem."""


# ----------------------------------------------------------------------------- files


def read_json(path: str | os.PathLike) -> Any:
    """:func:`ntkgrid.files.read_json` raising :class:`SweepError` (naming the file)."""
    return files.read_json(path, error=SweepError)


def safe_name(text: str) -> str:
    """:func:`ntkgrid.files.safe_name` with ``"image"`` for an empty result."""
    return files.safe_name(text, "image")


# ----------------------------------------------------------------------------- configs


def apply_overrides(cfg: TrainConfig, *, epochs: int | None = None, batch_size: int | None = None,
                    learning_rate: float | None = None, ntk_points: int | None = None,
                    seed: int | None = None) -> TrainConfig:
    """``cfg`` with the given fields replaced (``None`` keeps). Changing ``epochs`` maps
    explicit ``checkpoints`` proportionally (``round(c * new / old)``), so "middle" and
    "end" stay the middle and the end."""
    ch: dict[str, Any] = {}
    if epochs is not None and epochs != cfg.epochs:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        ch["epochs"] = int(epochs)
        if cfg.checkpoints is not None:
            ch["checkpoints"] = tuple(sorted({int(round(c * epochs / cfg.epochs)) for c in cfg.checkpoints}))
    for key, val in (("batch_size", batch_size), ("learning_rate", learning_rate), ("ntk_points", ntk_points),
                     ("seed", seed)):
        if val is not None:
            ch[key] = val
    return cfg.replace(**ch) if ch else cfg


def load_config_json(spec: str, allowed: Iterable[str]) -> tuple[str, TrainConfig]:
    """Parse ``"name=path"`` (a ``--config-json`` argument): ``path`` holds a
    ``TrainConfig.to_dict()`` (as written by ``experiments.tune``). Raises ``ValueError``
    naming the file and the problem."""
    name, sep, path = spec.partition("=")
    allowed = list(allowed)
    if not sep or not name or not path:
        raise ValueError(f"--config-json wants NAME=PATH (e.g. multigrid=best.json), got {spec!r}")
    if name not in allowed:
        raise ValueError(f"--config-json {spec!r}: unknown name {name!r}; choose from {', '.join(allowed)}")
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise ValueError(f"{path}: cannot read config JSON ({err.strerror or err})") from err
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if isinstance(data, dict) and "config" in data and "encoding" not in data:
        data = data["config"]  # a run.json / summary.json of ntkgrid.train also works
    try:
        cfg = TrainConfig.from_dict(data)
    except (TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: not a TrainConfig dict ({err})") from err
    return name, cfg


# ----------------------------------------------------------------------------- images


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """One image of a sweep.

    Attributes:
      image_id: unique, file-name safe id (``<synset>_<file stem>`` or a bundled name).
      source: the file path, or ``skimage.data.<name>`` for a bundled photo.
      synset: the class folder (``None`` for bundled photos).
    """

    image_id: str
    source: str
    synset: str | None = None

    @property
    def bundled(self) -> bool:
        return self.source.startswith("skimage.data.")


def select_sources(data_root: str | os.PathLike | None, num_images: int, seed: int) -> tuple[list[ImageSource], list[str]]:
    """The images of a sweep and the warnings raised while choosing them.

    ``data_root=None``: ``num_images`` of scikit-image's bundled photos
    (:data:`ntkgrid.data.images.BUNDLED_IMAGE_NAMES`; all when ``num_images`` is larger,
    else a ``seed``-drawn subset), in name order. Otherwise one image per synset of an
    ImageNet-style folder ``<root>/<wnid>/<image>``
    (:func:`ntkgrid.data.images.scan_image_folder`). Raises :class:`DataError` for a
    missing or empty root.
    """
    from ntkgrid.data import images as I

    if num_images < 1:
        raise ValueError(f"the number of images must be >= 1, got {num_images}")
    if data_root is None:
        names = list(I.BUNDLED_IMAGE_NAMES)
        if num_images < len(names):
            pick = np.random.default_rng(seed).choice(len(names), num_images, replace=False)
            names = [names[i] for i in sorted(pick)]
        return [ImageSource(n, f"skimage.data.{n}") for n in names], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = I.scan_image_folder(data_root, num_images, seed)
    out, seen = [], set()
    for r in records:
        iid = safe_name(f"{r.synset}_{r.name}")
        while iid in seen:
            iid += "_"
        seen.add(iid)
        out.append(ImageSource(iid, str(r.path), r.synset))
    return out, [str(w.message) for w in caught]


def load_source(src: ImageSource, size: int) -> np.ndarray:
    """The ``(size, size, 3)`` float32 image of ``src`` (grey, alpha and 16-bit files are
    converted by :func:`ntkgrid.data.images.load_image`). Raises :class:`DataError` naming
    the file when it cannot be used (unreadable, truncated, not an image, too small)."""
    from ntkgrid.data import images as I

    if src.bundled:
        return I.bundled_image(src.source.removeprefix("skimage.data."), size)
    return I.load_image(src.source, size)


def resolve_image(spec: str | os.PathLike, size: int) -> tuple[ImageSource, np.ndarray]:
    """``--image`` of the single-image experiments: a bundled photo's name (e.g.
    ``"chelsea"``) or an image file. Returns ``(ImageSource, (size, size, 3) image)``;
    raises :class:`DataError` naming the file (or the unknown name) when unusable."""
    from ntkgrid.data import images as I

    text = str(spec)
    if text in I.BUNDLED_IMAGE_NAMES:
        src = ImageSource(text, f"skimage.data.{text}")
    elif not Path(text).exists() and not any(c in text for c in "/\\."):
        raise DataError(text, "neither an image file nor a bundled photo; bundled photos: "
                        + ", ".join(I.BUNDLED_IMAGE_NAMES))
    else:
        src = ImageSource(safe_name(Path(text).stem), str(Path(text)))
    return src, load_source(src, size)


# ----------------------------------------------------------------------------- runs


def middle_and_end(history: Sequence[Mapping], epochs: int) -> dict[str, int | None]:
    """Epochs to call "start", "middle" and "end" among a run's measured ``history``.

    start: epoch 0 if measured; end: the last measured epoch; middle: the measured epoch
    strictly between them nearest ``epochs / 2`` (``None`` when there is none).
    """
    measured = sorted(int(h["epoch"]) for h in history)
    if not measured:
        return {"start": None, "middle": None, "end": None}
    end = measured[-1]
    inner = [e for e in measured if 0 < e < end]
    middle = min(inner, key=lambda e: (abs(e - epochs / 2), e)) if inner else None
    return {"start": 0 if measured[0] == 0 else None, "middle": middle, "end": end}


def _run_record(result, run_dir: str) -> dict:
    """The JSON-ready summary of one :class:`ntkgrid.train.RunResult`."""
    final = result.final
    cps = middle_and_end(result.history, result.config.epochs)
    spec = final.get("spectrum")
    return {
        "run_dir": run_dir,
        "label": result.label,
        "psnr": final.get("psnr"),
        "ms_ssim": final.get("ms_ssim"),
        "ms_ssim_scales": final.get("ms_ssim_scales"),
        "loss": final.get("loss"),
        "final_epoch": final.get("epoch"),
        "epochs_run": int(result.losses.size),
        "diverged": bool(result.diverged),
        "diverged_epoch": result.diverged_epoch,
        "seconds": float(result.seconds),
        "checkpoints": cps,
        "psnr_history": {int(h["epoch"]): h.get("psnr") for h in result.history},
        "lambda_max": None if spec is None else spec.lambda_max,
        "lambda_min": None if spec is None else spec.lambda_min,
        "floor": None if spec is None else spec.floor,
        "n_above_floor": None if spec is None else spec.n_above_floor,
        "ntk_points": None if spec is None else int(spec.eigenvalues.size),
        "ntk_selection": result.options.get("ntk_selection"),
        "grid_offdiag_fraction": final.get("grid_offdiag_fraction"),
        "grid_offdiag_history": {int(h["epoch"]): h.get("grid_offdiag_fraction") for h in result.history},
        "curve": [{k: c.get(k) for k in ("epoch", "loss", "psnr")} for c in result.curve],
    }


def run_configs(image: np.ndarray, configs: Mapping[str, TrainConfig], runs_dir: str | os.PathLike, *,
                log: Log = print, progress: bool = True, prefix: str = "") -> dict[str, Any]:
    """Fit every config on one image; ``runs_dir/<name>`` holds each run (resumable).

    ``image``: ``(H, W, 3)`` float32 in ``[0, 1]``. Returns ``{name: RunResult}``; a run
    that raises is logged and left out (the others still run) and its error is returned
    under ``"_errors"`` as ``{name: message}``.
    """
    from ntkgrid.data.images import image_to_dataset
    from ntkgrid.training import fit

    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, cfg in configs.items():
        t0 = time.perf_counter()
        try:
            coords, values = image_to_dataset(image, pixels=cfg.pixels)
            res = fit(cfg, coords, values, image_shape=image.shape[:2], out_dir=Path(runs_dir) / name,
                      progress=progress, label=f"{prefix}{name}")
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - one failing run must not lose the others
            errors[name] = f"{type(err).__name__}: {err}"
            log(f"{prefix}{name}: FAILED ({errors[name]})")
            continue
        _log_run(log, f"{prefix}{name}", res, time.perf_counter() - t0)
        out[name] = res
    if errors:
        out["_errors"] = errors
    return out


def _group_sizes(runs_per_program: int | None, configs: Mapping[str, TrainConfig], size: int,
                 n: int) -> dict[str, int]:
    """Images per program for each config: ``runs_per_program``, or (None) each config's
    :func:`ntkgrid.batched.runs_per_program` for ``size x size`` images; at most ``n``."""
    if runs_per_program is not None:
        if runs_per_program < 1:
            raise SweepError(f"runs per program must be >= 1, got {runs_per_program}")
        return {name: int(runs_per_program) for name in configs}
    if n == 0:
        return dict.fromkeys(configs, 1)
    from ntkgrid.training import runs_per_program as auto

    return {name: max(1, min(n, auto(c, size * size))) for name, c in configs.items()}


def _log_run(log: Log, label: str, res, seconds: float | None) -> None:
    f = res.final
    psnr, ms = f.get("psnr"), f.get("ms_ssim")
    msg = f"PSNR {psnr:.2f} dB" if psnr is not None else "no PSNR"
    msg += f", MS-SSIM {ms:.3f}" if ms is not None else ""
    if res.diverged:
        msg += f", DIVERGED at epoch {res.diverged_epoch}"
    log(f"{label}: {msg}" + (f" ({seconds:.1f} s)" if seconds is not None else ""))


def run_group(images: Mapping[str, np.ndarray], configs: Mapping[str, TrainConfig], runs_root: str | os.PathLike,
              *, log: Log = print, progress: bool = True, tags: Mapping[str, str] | None = None,
              matmul_precision: str | None = None, sizes: Mapping[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """Fit every config on every image, the images of one config in ONE program
    (:func:`ntkgrid.batched.fit_batch`), or in programs of ``sizes[name]`` images;
    ``runs_root/<image_id>/<name>`` holds each run (resumable, :mod:`ntkgrid.train`'s
    format, the same numbers as :func:`run_configs`).

    ``images``: ``{image_id: (H, W, 3) float32}`` of one size. Returns ``{image_id: {name:
    RunResult}}`` as :func:`run_configs` (a run that raises is left out and its error is
    under ``"_errors"``). A run that cannot start (e.g. its folder holds another run)
    fails alone; if the batched program itself fails, each image of it is retried on its
    own with :func:`ntkgrid.train.fit`, so one bad image loses only itself.
    """
    from ntkgrid.training import BatchRun, fit_batch
    from ntkgrid.data.images import image_to_dataset
    from ntkgrid.training import fit

    tags = dict(tags or {})
    data = {k: image_to_dataset(img) for k, img in images.items()}
    out: dict[str, dict[str, Any]] = {k: {} for k in images}

    def fail(iid: str, name: str, err: BaseException) -> None:
        msg = f"{type(err).__name__}: {err}"
        out[iid].setdefault("_errors", {})[name] = msg
        log(f"{tags.get(iid, iid)} {name}: FAILED ({msg})")

    for name, cfg in configs.items():
        if not images:
            break
        ids = list(images)
        runs = [BatchRun(data[k][0], data[k][1], image_shape=images[k].shape[:2],
                         out_dir=Path(runs_root) / k / name, label=f"{tags.get(k, k)} {name}") for k in ids]
        per = max(1, int((sizes or {}).get(name, len(ids))))
        t0 = time.perf_counter()
        results = []
        for i in range(0, len(runs), per):
            chunk = runs[i:i + per]
            try:
                results += fit_batch(cfg, chunk, progress=progress, on_error="return",
                                     matmul_precision=matmul_precision)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # noqa: BLE001 - retry one by one so that only the culprit fails
                log(f"{name}: the batch of {len(chunk)} failed ({type(err).__name__}: {err}); training one at a time")
                for run in chunk:
                    try:
                        results.append(fit(cfg, run.coords, run.targets, image_shape=run.image_shape,
                                           out_dir=run.out_dir, progress=progress, label=run.label))
                    except KeyboardInterrupt:
                        raise
                    except Exception as e:  # noqa: BLE001
                        results.append(e)
        dt = time.perf_counter() - t0
        log(f"{name}: {len(ids)} image(s) in {-(-len(ids) // per)} program(s), {dt:.1f} s")
        for k, res in zip(ids, results):
            if isinstance(res, BaseException):
                fail(k, name, res)
                continue
            _log_run(log, f"{tags.get(k, k)} {name}", res, None)
            out[k][name] = res
    return out


def resolve_shard(shard: str | None) -> str | None:
    """``"auto"`` -> ``"i/n"`` from ``jax.process_index()`` / ``jax.process_count()`` (after
    ``jax.distributed.initialize()`` on several hosts; ``None`` for a single process);
    anything else is returned unchanged."""
    if shard != "auto":
        return shard
    import jax

    n = jax.process_count()
    return None if n == 1 else f"{jax.process_index()}/{n}"


# ----------------------------------------------------------------------------- sweep


def _identity(manifest: Mapping) -> dict:
    ident = {k: manifest.get(k) for k in IDENTITY_KEYS}
    ident["selection"] = [s["image_id"] for s in ident["selection"] or []]
    return ident


def describe_machine() -> dict:
    """Where the numbers were measured: platform, CPU count, JAX backend and devices."""
    import jax

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}


def _check_manifest(out: Path, manifest: Mapping) -> None:
    path = out / "manifest.json"
    if not path.exists():
        return
    stored = read_json(path)
    diffs = files.diff(files.to_jsonable(_identity(stored)), files.to_jsonable(_identity(manifest)))
    if diffs:
        raise SweepError(
            f"{path}: this folder holds a sweep with other settings ({'; '.join(diffs[:6])}"
            f"{'; ...' if len(diffs) > 6 else ''}); use another --out or delete the folder")


def run_sweep(out: str | os.PathLike, sources: Sequence[ImageSource], configs: Mapping[str, TrainConfig], *,
              size: int, manifest: Mapping, shard: str | None = None, log: Log = print,
              progress: bool = True, runs_per_program: int | None = None,
              matmul_precision: str | None = None) -> dict:
    """Train ``configs`` on each image of ``shard(sources)`` into ``out`` (see the module
    docstring), then :func:`summarize` it.

    Args:
      out: output folder.
      sources: the whole selection (every shard passes the same list).
      configs: ``{name: TrainConfig}``.
      size: image side in pixels.
      manifest: the identity of the sweep: ``table``, ``preset``, ``seed``,
        ``data_root``, ``num_images`` (plus anything else to record); ``size``,
        ``configs`` and ``selection`` are filled in here.
      shard: ``"i/n"``, ``"auto"`` (this process's ``jax.process_index()/process_count()``,
        see :func:`resolve_shard`) or ``None``.
      log: where progress lines go.
      progress: per-epoch progress bars (only on a terminal).
      runs_per_program: images trained together per encoding (:func:`run_group`);
        None sizes the groups from the device's memory
        (:func:`ntkgrid.batched.runs_per_program`). Results do not depend on it.
      matmul_precision: None/"default" or "highest" (see :mod:`ntkgrid.batched`).

    Returns :func:`summarize`'s dict plus ``"ran"``, ``"resumed"``, ``"skipped"``,
    ``"failed"`` (lists of image ids / records of this call) and ``"seconds"``.
    """
    from ntkgrid.data.images import shard as take_shard

    t0 = time.perf_counter()
    out = Path(out)
    shard = resolve_shard(shard)
    mine = take_shard(sources, shard)
    manifest = {**manifest, "format": FORMAT, "size": int(size),
                "configs": {k: c.to_dict() for k, c in configs.items()},
                "selection": [dataclasses.asdict(s) for s in sources], "shard": shard,
                "machine": describe_machine(), "runs_per_program": runs_per_program or "auto",
                "matmul_precision": matmul_precision or "default"}
    _check_manifest(out, manifest)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "manifest.json", manifest)
    skipped_path = out / "skipped.json"
    old_skipped = read_json(skipped_path) if skipped_path.exists() else []
    mine_ids = {s.image_id for s in mine}
    skipped = [s for s in old_skipped if s.get("image_id") not in mine_ids]
    failed_path = out / "failed.json"
    old_failed = read_json(failed_path) if failed_path.exists() else []
    kept_failed = [f for f in old_failed if f.get("image_id") not in mine_ids]
    ran, resumed, failed = [], [], []
    todo = []
    for i, src in enumerate(mine):
        if (out / "results" / f"{src.image_id}.json").exists():
            log(f"[{i + 1}/{len(mine)}] {src.image_id}: done before, skipped")
            resumed.append(src.image_id)
        else:
            todo.append((i, src))
    sizes = _group_sizes(runs_per_program, configs, size, len(todo))
    group = max(sizes.values(), default=1)
    if todo:
        log(f"training {len(todo)} image(s) in groups of {group}; images per program: "
            + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    for g in range(0, len(todo), group):
        images = {}
        for i, src in todo[g:g + group]:
            tag = f"[{i + 1}/{len(mine)}] {src.image_id}"
            try:
                images[src.image_id] = (tag, src, load_source(src, size))
            except DataError as err:
                log(f"{tag}: SKIPPED: {err}")
                skipped.append({"image_id": src.image_id, "source": src.source, "synset": src.synset,
                                "reason": str(err)})
                write_json(skipped_path, skipped)
        runs = run_group({k: img for k, (_, _, img) in images.items()}, configs, out / "runs", log=log,
                         progress=progress, tags={k: t for k, (t, _, _) in images.items()},
                         matmul_precision=matmul_precision, sizes=sizes)
        for iid, (_, src, image) in images.items():
            errors = runs[iid].pop("_errors", {})
            if errors:
                failed.append({"image_id": iid, "source": src.source, "errors": errors})
                continue
            record = {"format": FORMAT, "image_id": iid, "source": src.source, "synset": src.synset,
                      "size": list(image.shape[:2]),
                      "runs": {n: _run_record(r, f"runs/{iid}/{n}") for n, r in runs[iid].items()}}
            write_json(out / "results" / f"{iid}.json", record)
            ran.append(iid)
    write_json(skipped_path, skipped)
    write_json(failed_path, kept_failed + failed)
    summary = summarize(out, log=log, wall_seconds=time.perf_counter() - t0)
    summary.update(ran=ran, resumed=resumed, skipped=skipped, failed=failed, seconds=time.perf_counter() - t0)
    return summary


def load_sweep(out: str | os.PathLike) -> dict:
    """``{"manifest", "records" (per-image results, selection order, run dirs resolved to
    absolute paths), "skipped", "failed", "missing" (selected ids without results and not
    skipped)}`` of a sweep or merged folder."""
    out = Path(out)
    if not (out / "manifest.json").exists():
        raise SweepError(f"{out}: no manifest.json, so not a sweep output folder")
    manifest = read_json(out / "manifest.json")
    records = []
    by_id = {}
    for p in sorted((out / "results").glob("*.json")):
        r = read_json(p)
        for run in r.get("runs", {}).values():
            run["run_path"] = str((out / run["run_dir"]).resolve())
        by_id[r["image_id"]] = r
    order = [s["image_id"] for s in manifest.get("selection", [])]
    records = [by_id[i] for i in order if i in by_id] + [by_id[i] for i in sorted(by_id) if i not in order]
    skipped = read_json(out / "skipped.json") if (out / "skipped.json").exists() else []
    failed = read_json(out / "failed.json") if (out / "failed.json").exists() else []
    done = set(by_id) | {s["image_id"] for s in skipped} | {f["image_id"] for f in failed}
    missing = [i for i in order if i not in done]
    return {"manifest": manifest, "records": records, "skipped": skipped, "failed": failed, "missing": missing}


def merge(out: str | os.PathLike, sources: Sequence[str | os.PathLike] = (), *, log: Log = print) -> dict:
    """Combine shard folders into ``out`` and :func:`summarize` it.

    ``sources``: shard output folders; empty means every sub-folder of ``out`` holding a
    ``manifest.json``. Their manifests must agree on the identity keys (same selection,
    configs, size, seed, ...). Per-image results are copied into ``out/results`` with run
    folders referenced relative to ``out`` (the runs themselves stay where they are); a
    duplicated image must have the same numbers in every shard.
    """
    out = Path(out)
    srcs = [Path(s) for s in sources]
    if not srcs:
        srcs = sorted(p for p in out.iterdir() if (p / "manifest.json").exists()) if out.is_dir() else []
        if not srcs:
            raise SweepError(f"{out}: no shard folders (sub-folders with manifest.json) to merge")
    if any(s.resolve() == out.resolve() for s in srcs):
        raise SweepError(f"{out}: the merge output cannot also be one of the shard folders")
    manifests = []
    for s in srcs:
        if not (s / "manifest.json").exists():
            raise SweepError(f"{s}: no manifest.json, so not a sweep output folder")
        manifests.append(read_json(s / "manifest.json"))
    ref = manifests[0]
    for s, m in zip(srcs[1:], manifests[1:]):
        diffs = files.diff(files.to_jsonable(_identity(ref)), files.to_jsonable(_identity(m)))
        if diffs:
            raise SweepError(f"{s / 'manifest.json'}: does not match {srcs[0] / 'manifest.json'} "
                             f"({'; '.join(diffs[:6])}); only shards of one sweep can be merged")
    merged_manifest = {**ref, "shard": None, "merged_from": [str(s) for s in srcs],
                       "shards": [m.get("shard") for m in manifests]}
    _check_manifest(out, merged_manifest)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    skipped: dict[str, dict] = {}
    failed: dict[str, dict] = {}
    for s in srcs:
        for p in sorted((s / "results").glob("*.json")):
            r = read_json(p)
            for run in r["runs"].values():
                run["run_dir"] = os.path.relpath((s / run["run_dir"]).resolve(), out.resolve())
            iid = r["image_id"]
            if iid in results:
                a = {n: (v.get("psnr"), v.get("ms_ssim")) for n, v in results[iid]["runs"].items()}
                b = {n: (v.get("psnr"), v.get("ms_ssim")) for n, v in r["runs"].items()}
                if a != b:
                    raise SweepError(f"{p}: image {iid} is in several shards with different results")
                continue
            results[iid] = r
        for f, store in (("skipped.json", skipped), ("failed.json", failed)):
            if (s / f).exists():
                for item in read_json(s / f):
                    store.setdefault(item["image_id"], item)
    for iid in results:
        skipped.pop(iid, None)
        failed.pop(iid, None)
    old = {p.stem for p in (out / "results").glob("*.json")}
    for iid, r in results.items():
        write_json(out / "results" / f"{iid}.json", r)
    for stale in old - set(results):
        (out / "results" / f"{stale}.json").unlink()
    write_json(out / "skipped.json", list(skipped.values()))
    write_json(out / "failed.json", list(failed.values()))
    write_json(out / "manifest.json", merged_manifest)
    log(f"merged {len(srcs)} folder(s): {len(results)} image(s) with results, {len(skipped)} skipped")
    return summarize(out, log=log)


# ----------------------------------------------------------------------------- summaries


def _stats(values: Sequence[float]) -> dict:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max()),
            "n": int(v.size)}


def summary_rows(records: Sequence[Mapping], names: Sequence[str], paper: Mapping[str, tuple] | None = None
                 ) -> list[dict]:
    """One row per config name over the per-image ``records``: ``n`` images, ``n_diverged``,
    PSNR and MS-SSIM ``mean/std/min/max`` (population std; diverged runs left out of the
    statistics), mean ``lambda_min``/``n_above_floor`` at the end, mean seconds, and the
    paper's ``(psnr, ms_ssim)`` when ``paper`` has the name."""
    rows = []
    for n in names:
        runs = [r["runs"][n] for r in records if n in r.get("runs", {})]
        ok = [r for r in runs if not r.get("diverged")]
        ps, ms = _stats([r.get("psnr") for r in ok]), _stats([r.get("ms_ssim") for r in ok])
        lmin = _stats([r.get("lambda_min") for r in ok])
        above = _stats([r.get("n_above_floor") for r in ok])
        row = {"encoding": n, "n": len(runs), "n_diverged": len(runs) - len(ok)}
        row.update({f"psnr_{k}": ps[k] for k in ("mean", "std", "min", "max")})
        row.update({f"ms_ssim_{k}": ms[k] for k in ("mean", "std", "min", "max")})
        row["lambda_min_end_mean"] = lmin["mean"]
        row["n_above_floor_end_mean"] = above["mean"]
        row["seconds_mean"] = _stats([r.get("seconds") for r in runs])["mean"]
        pp = (paper or {}).get(n)
        row["paper_psnr"], row["paper_ms_ssim"] = (pp if pp is not None else (None, None))
        rows.append(row)
    return rows


def summary_markdown(rows: Sequence[Mapping]) -> str:
    """Markdown table of :func:`summary_rows`: mean ± std [min, max] per metric, beside the paper."""
    def cell(r, m, d):
        if r[f"{m}_mean"] is None:
            return "-"
        return f"{r[f'{m}_mean']:.{d}f} ± {r[f'{m}_std']:.{d}f} [{r[f'{m}_min']:.{d}f}, {r[f'{m}_max']:.{d}f}]"

    header = ["encoding", "images", "diverged", "PSNR dB mean ± std [min, max]", "paper PSNR",
              "MS-SSIM mean ± std [min, max]", "paper MS-SSIM"]
    body = [[r["encoding"], str(r["n"]), str(r["n_diverged"]), cell(r, "psnr", 2), files.fmt(r["paper_psnr"]),
             cell(r, "ms_ssim", 3), files.fmt(r["paper_ms_ssim"])] for r in rows]
    return markdown_table(header, body)


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping]) -> Path:
    """Rows (dicts with the same keys) as CSV, floats with full precision."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return write_text(path, buf.getvalue())


def run_spectra(run_path: str | os.PathLike, epoch: int) -> dict[str, Spectrum] | None:
    """``{group: Spectrum}`` a run recorded at ``epoch`` (``None`` if it has none)."""
    from ntkgrid.training import load_spectra

    p = Path(run_path) / "spectra" / f"epoch_{int(epoch):06d}.npz"
    return load_spectra(p) if p.exists() else None


def mean_spectra(records: Sequence[Mapping], names: Sequence[str], *, groups: Sequence[str] = ("total",),
                 checkpoints: Sequence[str] = ("middle", "end"), length: int = SPECTRUM_LENGTH) -> dict:
    """Mean spectra over images: ``{name: {group: {checkpoint: mean_spectrum dict + "epochs"}}}``.

    Diverged runs are left out. A group a config does not have (e.g. ``"grid"`` of the
    baseline) is absent from its dict; a checkpoint no image has is ``None``.
    """
    out: dict[str, dict] = {}
    for n in names:
        found: dict[str, dict[str, list[Spectrum]]] = {}  # group -> checkpoint -> spectra
        epochs: dict[str, set[int]] = {cp: set() for cp in checkpoints}
        for r in records:
            run = r.get("runs", {}).get(n)
            if run is None or run.get("diverged"):
                continue
            for cp in checkpoints:
                epoch = run["checkpoints"].get(cp)
                spectra = None if epoch is None else run_spectra(run["run_path"], epoch)
                if spectra is None:
                    continue
                epochs[cp].add(int(epoch))
                for g in groups:
                    if g in spectra:
                        found.setdefault(g, {}).setdefault(cp, []).append(spectra[g])
        per_group: dict[str, dict] = {}
        for g in groups:
            if g not in found:
                continue
            per_group[g] = {}
            for cp in checkpoints:
                specs = found[g].get(cp)
                per_group[g][cp] = None if not specs else {**mean_spectrum(specs, length),
                                                           "epochs": sorted(epochs[cp])}
        out[n] = per_group
    return out


def spectra_curves(means: Mapping, names: Sequence[str], group: str = "total",
                   checkpoints: Sequence[str] = ("middle", "end"), label_suffix: str = "") -> list[dict]:
    """Curves for :func:`ntkgrid.plots.spectra_axes` from :func:`mean_spectra` output."""
    curves = []
    for n in names:
        for cp in checkpoints:
            m = means.get(n, {}).get(group, {}).get(cp)
            if m is None:
                continue
            curves.append({"name": n, "values": m["mean"], "checkpoint": cp, "floor": m["floor"],
                           "label": f"{n}{label_suffix} ({cp}, n={m['count']})"})
    return curves


def summarize(out: str | os.PathLike, *, log: Log = print, wall_seconds: float | None = None,
              paper: Mapping[str, tuple] | None = None) -> dict:
    """Write ``results.json``, ``summary.csv``, ``summary.md``, ``spectra.png``/``.json``
    and ``report.md`` for the sweep in ``out``; returns ``{"rows", "ordering", "paths"}``.

    ``paper``: the paper's ``{name: (psnr, ms_ssim)}``; default
    ``presets.PAPER_PSNR[manifest["table"]]`` when the table is known.
    """
    from ntkgrid import plots, presets

    out = Path(out)
    sweep = load_sweep(out)
    manifest, records = sweep["manifest"], sweep["records"]
    names = list(manifest.get("configs", {}))
    if paper is None:
        paper = presets.PAPER_PSNR.get(manifest.get("table"), {})
    rows = summary_rows(records, names, paper)
    order = _ordering(records, names)
    write_json(out / "results.json", {"manifest": manifest, "summary": rows, "ordering": order,
                                      "images": records, "skipped": sweep["skipped"], "failed": sweep["failed"],
                                      "missing": sweep["missing"]})
    write_csv(out / "summary.csv", rows)
    write_text(out / "summary.md", summary_markdown(rows))
    means = mean_spectra(records, names)
    curves = spectra_curves(means, names)
    paths = {"results": out / "results.json", "summary_csv": out / "summary.csv", "summary_md": out / "summary.md"}
    if curves:
        data = {"length": SPECTRUM_LENGTH, "means": means}
        plots.spectra_figure(out / "spectra", [("Mean NTK spectra (dashed: middle, solid: end)", curves)],
                             xlabel=f"eigenvalue index (resampled to {SPECTRUM_LENGTH})", data=data)
        paths["spectra"] = out / "spectra.png"
    from ntkgrid import evidence

    claims = evidence.theorem1(records, manifest.get("configs", {}))
    ratio = evidence.ratio_curves(claims)
    if ratio:
        plots.curves_figure(out / "theorem1_ratio", [("MPE / baseline eigenvalues", "log10 ratio", ratio)],
                            xlabel="normalised eigenvalue index i/(N-1)",
                            data=claims)
        paths["theorem1_ratio"] = out / "theorem1_ratio.png"
    train_curves = evidence.training_curves(records, names)
    if train_curves:
        cv = lambda key: [{"name": n, "x": c["epoch"], "y": c[key]} for n, c in train_curves.items()  # noqa: E731
                          if all(v is not None for v in c[key])]
        plots.curves_figure(out / "training_curves", [("full-image PSNR", "PSNR dB", cv("psnr")),
                                                      ("full-image loss", "MSE", cv("loss"))],
                            logy=[False, True], data={"curves": train_curves})
        paths["training_curves"] = out / "training_curves.png"
    report = sweep_report(manifest, rows, order, records, sweep, means, wall_seconds,
                          claims=claims, figures=set(paths))
    write_text(out / "report.md", report)
    paths["report"] = out / "report.md"
    log(f"summary of {len(records)} image(s): {out / 'summary.md'}, report: {out / 'report.md'}")
    return {"rows": rows, "ordering": order, "paths": paths, "means": means}


def _ordering(records: Sequence[Mapping], names: Sequence[str],
              expected: Sequence[str] = ("multigrid", "fourier", "baseline")) -> dict:
    """Does mean PSNR follow ``expected`` (best first), and on how many images?"""
    exp = [n for n in expected if n in names]
    if len(exp) < 2:
        return {"expected": exp, "holds_on_mean": None, "images_holding": None, "images_compared": 0}
    n_hold, n_cmp = 0, 0
    for r in records:
        ps = [r["runs"].get(n, {}).get("psnr") for n in exp]
        if any(p is None or r["runs"][n].get("diverged") for p, n in zip(ps, exp)):
            continue
        n_cmp += 1
        n_hold += all(a > b for a, b in zip(ps, ps[1:]))
    means = []
    for n in exp:
        v = [r["runs"][n]["psnr"] for r in records
             if n in r["runs"] and r["runs"][n].get("psnr") is not None and not r["runs"][n].get("diverged")]
        means.append(float(np.mean(v)) if v else None)
    holds = None if None in means else all(a > b for a, b in zip(means, means[1:]))
    return {"expected": exp, "mean_psnr": dict(zip(exp, means)), "holds_on_mean": holds,
            "images_holding": n_hold, "images_compared": n_cmp}


def _config_table(configs: Mapping[str, Mapping]) -> str:
    rows = []
    for n, d in configs.items():
        cfg = TrainConfig.from_dict(d)
        rows.append([n, cfg.encoding.describe(), files.fmt(cfg.learning_rate, 4), str(cfg.epochs), str(cfg.batch_size),
                     "x".join(map(str, cfg.hidden)), str(cfg.ntk_points), str(cfg.seed)])
    return markdown_table(["encoding", "parameters", "lr", "epochs", "batch", "MLP", "NTK points", "seed"], rows)


def sweep_report(manifest: Mapping, rows: Sequence[Mapping], order: Mapping, records: Sequence[Mapping],
                 sweep: Mapping, means: Mapping, wall_seconds: float | None, *, claims: Mapping | None = None,
                 figures: Iterable[str] = ()) -> str:
    """The ``report.md`` of a sweep (Markdown). ``claims``: :func:`ntkgrid.evidence.theorem1`'s
    result; ``figures``: the names of the figures written (``"training_curves"``, ...)."""
    from ntkgrid import evidence

    figures = set(figures)
    names = list(manifest.get("configs", {}))
    m = manifest
    src = m.get("data_root") or "scikit-image's bundled photos (no --data-root)"
    lines = [f"# {m.get('title', 'Sweep')}", ""]
    lines += [f"- images: {src}; {len(m.get('selection', []))} selected (seed {m.get('seed')}), "
              f"{len(records)} with results, {len(sweep['skipped'])} skipped, {len(sweep['failed'])} failed, "
              f"{len(sweep['missing'])} not run yet",
              f"- preset: `{m.get('preset')}`; images {m.get('size')}x{m.get('size')} px; "
              f"shard: {m.get('shard') or 'all'}" + (f"; merged from {len(m['merged_from'])} folders"
                                                      if m.get("merged_from") else "")]
    mach = m.get("machine") or {}
    if mach:
        lines.append(f"- machine: {mach.get('cpu_count')} CPU cores, {mach.get('platform')}, "
                     f"JAX {mach.get('jax')} on {mach.get('backend')}")
    run_s = sum(r["runs"][n]["seconds"] for r in records for n in r["runs"])
    lines.append(f"- training + measurement time over all runs: {run_s:.0f} s"
                 + (f"; wall time of this invocation: {wall_seconds:.0f} s" if wall_seconds is not None else ""))
    lines += ["", "## Settings", "", _config_table(m.get("configs", {})), "## Results", "",
              "PSNR of the clipped prediction against the image, MS-SSIM (fewer scales on small "
              "images, see ntkgrid.metrics), at the end of training; diverged runs are left out of "
              "the statistics. Paper: its Table 1.", "", summary_markdown(rows)]
    if order.get("expected"):
        exp = " > ".join(order["expected"])
        mp = ", ".join(f"{k} {files.fmt(v)}" for k, v in (order.get("mean_psnr") or {}).items())
        verdict = {True: "holds", False: "does NOT hold", None: "cannot be judged"}[order["holds_on_mean"]]
        lines += [f"Paper's ordering {exp} in mean PSNR: **{verdict}** (mean PSNR: {mp}); per image it holds "
                  f"on {order['images_holding']} of {order['images_compared']}.", ""]
    if "training_curves" in figures:
        lines += ["![training curves](training_curves.png)", "",
                  "Full-image PSNR and loss through training (every image's prediction measured at regular "
                  "epochs, not the minibatch loss), mean over images. Data: training_curves.json.", ""]
    if any(means.get(n, {}).get("total") for n in names):
        lines += ["## NTK spectra", "", "![mean spectra](spectra.png)", "",
                  f"Mean over images of each run's float64 NTK eigenvalues (descending), resampled to "
                  f"{SPECTRUM_LENGTH} values; dashed: middle of training, solid: end. The dotted line is "
                  "the numerical floor N·eps·λmax (largest over the curves): eigenvalues below it are "
                  "rounding noise. Data: spectra.json.", ""]
        body = []
        for n in names:
            for cp in ("middle", "end"):
                mm = means.get(n, {}).get("total", {}).get(cp)
                if mm is None:
                    continue
                above = [r["runs"][n]["n_above_floor"] for r in records if n in r["runs"]
                         and r["runs"][n].get("n_above_floor") is not None] if cp == "end" else []
                runs = [r["runs"][n] for r in records if n in r["runs"]]
                pts = sorted({r.get("ntk_points") for r in runs if r.get("ntk_points")})
                off = [r.get("grid_offdiag_fraction") for r in runs if r.get("grid_offdiag_fraction") is not None]
                body.append([n, cp, ",".join(map(str, mm["epochs"])), str(mm["count"]),
                             ",".join(map(str, pts)) or "-", files.fmt(float(np.mean(off)), 4) if off else "-",
                             float(mm["mean"][0]), float(mm["mean"][-1]), float(mm["floor"]),
                             files.fmt(float(np.mean(above)), 1) if above else "-"])
        lines += ["Kernels are taken on the training set (every pixel of the training image, or a contiguous "
                  "window of it where the backend's cap requires one: never a strided subset). 'grid off-diagonal "
                  "share' is the share of the grid kernel's squared Frobenius norm off its diagonal at the end "
                  "of training: 0 when no two of the points share a grid node.", "",
                  markdown_table(["encoding", "checkpoint", "epoch(s)", "images", "NTK points",
                                  "grid off-diagonal share", "mean λ_max", "mean λ_min", "mean floor",
                                  "eigenvalues above floor (end, mean)"], body)]
    if claims:
        lines += evidence.theorem1_markdown(claims, figure="theorem1_ratio.png" if "theorem1_ratio" in figures
                                            else None)
    if records:
        lines += ["## Per image", ""]
        body = [[r["image_id"], r["source"]] + [
            (files.fmt(r["runs"][n]["psnr"]) + (" (diverged)" if r["runs"][n].get("diverged") else ""))
            if n in r["runs"] else "-" for n in names] for r in records]
        lines += [markdown_table(["image", "source"] + [f"{n} PSNR" for n in names], body)]
    if sweep["skipped"]:
        lines += ["## Skipped files", ""]
        lines += [f"- `{s.get('source')}`: {s.get('reason')}" for s in sweep["skipped"]] + [""]
    if m.get("selection_warnings"):
        lines += ["## Warnings while selecting images", ""]
        lines += [f"- {w}" for w in m["selection_warnings"]] + [""]
    if sweep["failed"]:
        lines += ["## Failed runs", ""]
        lines += [f"- `{f['image_id']}`: " + "; ".join(f"{k}: {v}" for k, v in f["errors"].items())
                  for f in sweep["failed"]] + [""]
    if sweep["missing"]:
        lines += ["## Not run yet", "",
                  f"{len(sweep['missing'])} selected image(s) have no results: "
                  + ", ".join(sweep["missing"][:20]) + (" ..." if len(sweep["missing"]) > 20 else ""), ""]
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- analyses


def checkpoint_variables(run_path: str | os.PathLike, epoch: int) -> dict:
    """The model variables a run saved at ``epoch`` (its
    ``checkpoints/epoch_XXXXXX.msgpack``, see :mod:`ntkgrid.train`), as NumPy arrays."""
    import flax.serialization

    p = Path(run_path) / "checkpoints" / f"epoch_{int(epoch):06d}.msgpack"
    try:
        state = flax.serialization.msgpack_restore(p.read_bytes())
    except FileNotFoundError as err:
        raise SweepError(f"{p}: no checkpoint for epoch {epoch}") from err
    except Exception as err:  # noqa: BLE001 - msgpack raises several types
        raise SweepError(f"{p}: unreadable checkpoint ({type(err).__name__}: {err})") from err
    return state["variables"]


def recompute_kernels(cfg: TrainConfig, run_path: str | os.PathLike, epoch: int, *, out_dim: int = 3,
                      groups: bool | str = False, solve: Sequence[str] | None = None, scale_mlp: float | None = None):
    """Float64 NTK of a run's checkpoint at ``epoch`` on the run's own spectrum points
    (``spectra/ntk_x.npy``): ``(Spectrum, kernel)`` or, with ``groups`` (``True`` or
    ``"ops"``), ``({group: Spectrum}, {group: kernel})`` as
    :func:`ntkgrid.spectrum.ntk_spectrum` (``solve``: the groups to solve). ``scale_mlp``:
    first scale the dense layers (:func:`ntkgrid.theory.scale_mlp`; a constructed control)."""
    from ntkgrid.spectrum import ntk_spectrum

    x_path = Path(run_path) / "spectra" / "ntk_x.npy"
    if not x_path.exists():
        raise SweepError(f"{x_path}: the run recorded no NTK points (ntk_points=0?)")
    x = np.load(x_path)
    variables = checkpoint_variables(run_path, epoch)
    if scale_mlp is not None:
        from ntkgrid.theory import scale_mlp as scale

        variables = scale(variables, scale_mlp)
    model = cfg.model(x.shape[1], out_dim)
    return ntk_spectrum(model, variables, x, method=cfg.ntk_method, groups=groups, solve=solve)


def grid_tables(cfg: TrainConfig, variables: Mapping) -> list[tuple[str, np.ndarray]]:
    """The learned levels of a 2-D multigrid encoding as images.

    Returns ``[(f"level {l} ({r}x{r})", (r, r, k) array)]``: the level's ``(r*r, k)``
    table reshaped C-order, so (axis 0 = x is fastest) rows are y and columns are x,
    the same orientation as the image (:mod:`ntkgrid.interpolate`).
    """
    if cfg.encoding.kind != "multigrid":
        raise ValueError(f"grid_tables needs a multigrid encoding, got {cfg.encoding.kind!r}")
    enc = cfg.encoding.build(2)
    params = variables["params"]["encoding"]
    out = []
    for level, r in enumerate(enc.resolutions()):
        table = np.asarray(params[f"level_{level}"], np.float64)
        if table.shape[0] != r * r:
            raise ValueError(f"level_{level} has {table.shape[0]} nodes, expected {r}x{r}")
        out.append((f"level {level} ({r}x{r})", table.reshape(r, r, table.shape[1])))
    return out


def unused_nodes(resolution: int, coords: np.ndarray) -> np.ndarray:
    """``(r, r)`` bool: nodes of an ``r x r`` grid that no point of ``coords`` ``(N, 2)``
    touches with a non-zero bilinear weight (they keep their initial values; the
    "small gaps" of the paper's Fig. 12). Rows are y, columns x."""
    from ntkgrid.interpolate import dense_corners

    idx, w = dense_corners(np.asarray(coords, np.float32), (resolution, resolution))
    used = np.zeros(resolution * resolution, bool)
    used[np.asarray(idx)[np.asarray(w) > 0]] = True
    return ~used.reshape(resolution, resolution)


def activation_regions(cfg: TrainConfig, variables: Mapping, coords: np.ndarray, *, out_dim: int = 3,
                       batch: int = 8192) -> dict:
    """ReLU activation patterns of the network at ``coords`` ``(N, 2)`` (the paper's Eq. 15).

    A point's pattern is the on/off state (``> 0``) of every hidden neuron
    (``CoordinateMLP.features``); points with the same pattern share an activation
    region. Returns ``{"ids": (N,) int64 region id per point (ids numbered by first
    appearance), "count": distinct patterns over all layers, "per_layer": distinct patterns
    of each hidden layer alone}``.
    """
    import jax

    model = cfg.model(coords.shape[1], out_dim)
    feats = jax.jit(lambda v, x: [f > 0 for f in model.apply(v, x, method=model.features)])
    layers: list[list[np.ndarray]] = []
    x = np.asarray(coords, np.float32)
    for i in range(0, x.shape[0], batch):
        chunk = [np.packbits(np.asarray(a), axis=1) for a in feats(variables, x[i:i + batch])]
        layers.append(chunk)
    per_layer = [np.concatenate([c[j] for c in layers]) for j in range(len(layers[0]))]
    allbits = np.concatenate(per_layer, axis=1)
    _, first, inv = np.unique(allbits, axis=0, return_index=True, return_inverse=True)
    # renumber by first appearance so ids are stable and neighbouring regions get distinct ids
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(first.size)
    ids = rank[inv.reshape(-1)].astype(np.int64)
    return {"ids": ids, "count": int(first.size),
            "per_layer": [int(np.unique(p, axis=0).shape[0]) for p in per_layer]}
