"""The shared study runner: runs x spectra x PSNR x report, resumable, with progress.

A study is a list of :class:`StudyRun` trained on one image. :func:`run_study` writes, under
its output folder ``out``::

    study.json              what the study is (name, image, size, seed, preset): a rerun with
                            another identity into the same folder is refused before anything runs
    lr_rule.json            each run's critical step at initialisation and the resulting lr
                            (runs with an ``lr_fraction``), kept so a resumed study reuses them
    runs/<name>/            one ntkgrid.training.fit run (resumed from its last checkpoint)
    records/<name>.json     the run's flat record (cached: a finished run is not measured again)
    results.json            {"format", "study", "image", ..., "machine", "runs": [record, ...], "errors"}
    curves.json             {name: [{"epoch", "loss", "psnr"}, ...]} full-image training curves

A record is flat (one scalar per key): ``name``, ``activation``, ``interpolation`` (the grid's
kernel, None without a grid), ``encoding`` (its kind), ``encoding_params``,
``parameterization``, ``psnr`` (dB), ``ms_ssim``, ``lr``, ``lr_fraction`` (None for a step
set by hand), ``lr_crit`` (the critical step at initialisation, when the rule was used),
``lr_note`` (where the rule cannot speak: a fraction >= 1, or a run that diverged below the
predicted critical step), ``ntk_points``, ``diverged``, ``diverged_epoch``, ``epochs``,
``seconds``, the spectra summary ``<checkpoint>_<group>_<stat>`` for checkpoints
:data:`CHECKPOINTS` (``init`` = epoch 0, ``middle``, ``end``), groups :data:`SPECTRUM_GROUPS`
(``no_grid``/``grid`` only for grid encodings) and stats :data:`SPECTRUM_STATS`, and
``<checkpoint>_grid_offdiag_fraction``; plus the run's ``fields`` and what a study's
``extra_record`` hook adds.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkgrid import (
    files,
    plots,
    stability,  # stability.with_critical_lr looked up per call: tests patch it
)
from ntkgrid.config import TrainConfig
from ntkgrid.data.images import image_to_dataset
from ntkgrid.stability import lr_rule_note
from ntkgrid.sweep import describe_machine, middle_and_end
from ntkgrid.training import fit, predict

__all__ = ["CHECKPOINTS", "RESULTS_FORMAT", "SPECTRUM_GROUPS", "SPECTRUM_STATS", "StudyError", "StudyResult", "StudyRun",
           "checkpoint_epochs", "curves_figure", "reconstructions_figure", "run_study", "runs_table", "spectra_at", "spectra_curves",
           "spectrum_summary"]

#: Version of ``results.json``'s layout.
RESULTS_FORMAT = 1
#: Checkpoint names of a record: epoch 0, the measured epoch nearest the middle, the last.
CHECKPOINTS = ("init", "middle", "end")
#: Kernel groups summarised: the whole kernel, and for grid encodings the paper's "MPE (No Grid)" and the grid's.
SPECTRUM_GROUPS = ("total", "no_grid", "grid")
#: Per-spectrum scalars: largest, median and smallest eigenvalue, how many sit above the
#: numerical floor, the floor, and the effective rank (sum lambda)^2 / sum lambda^2.
SPECTRUM_STATS = ("lambda_max", "lambda_median", "lambda_min", "n_above_floor", "floor", "effective_rank")

Log = Callable[[str], None]


class StudyError(RuntimeError):
    """A study folder that cannot be used (another study's, or unreadable)."""


@dataclasses.dataclass(frozen=True)
class StudyRun:
    """One network of a study.

    Attributes:
      name: unique, file-name safe; the run folder is ``<out>/runs/<name>``.
      config: what to train (its ``learning_rate`` is replaced when ``lr_fraction`` is set).
      lr_fraction: train at this fraction of the network's own critical step at initialisation
        (:func:`ntkgrid.stability.with_critical_lr`); None keeps ``config.learning_rate``.
      fields: extra flat labels copied into the record (e.g. ``{"variant": "siren"}``).
    """

    name: str
    config: TrainConfig
    lr_fraction: float | None = None
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class StudyResult:
    """What :func:`run_study` returns.

    Attributes:
      records: the flat records, in the order of the runs (failed runs left out).
      results: ``{name: RunResult}`` of the runs that trained.
      configs: ``{name: TrainConfig}`` as trained (the lr rule applied).
      errors: ``{name: message}`` of the runs that failed.
      seconds: wall time of this call.
    """

    records: list[dict]
    results: dict
    configs: dict
    errors: dict
    seconds: float


def spectrum_summary(spec) -> dict:
    """:data:`SPECTRUM_STATS` of a :class:`ntkgrid.spectrum.Spectrum` (eigenvalues in kernel units)."""
    lam = np.asarray(spec.eigenvalues, np.float64)
    pos = np.clip(lam, 0.0, None)
    sq = float(np.sum(pos**2))
    return {"lambda_max": float(lam[0]), "lambda_median": float(np.median(lam)), "lambda_min": float(lam[-1]),
            "n_above_floor": int(spec.n_above_floor), "floor": float(spec.floor),
            "effective_rank": float(np.sum(pos) ** 2 / sq) if sq > 0 else None}


def _is_grid(cfg: TrainConfig) -> bool:
    """Whether the config's encoding is a learnable grid (its module class declares ``is_grid``)."""
    return bool(getattr(type(cfg.encoding).module_class(), "is_grid", False))


def checkpoint_epochs(result) -> dict[str, int | None]:
    """``{"init", "middle", "end": epoch or None}`` of a run's recorded history."""
    cps = middle_and_end(result.history, result.config.epochs)
    return {"init": cps["start"], "middle": cps["middle"], "end": cps["end"]}


def spectra_at(result, cp: str) -> tuple[int | None, dict]:
    """``(epoch, {group: Spectrum})`` a run recorded at checkpoint ``cp`` (``{}`` if none)."""
    e = checkpoint_epochs(result)[cp]
    h = {int(x["epoch"]): x for x in result.history}.get(e) if e is not None else None
    return e, ((h or {}).get("spectra") or {})


def _spectra_fields(result) -> dict:
    """The record's ``<checkpoint>_<group>_<stat>`` and ``<checkpoint>_grid_offdiag_fraction`` keys."""
    by_epoch = {int(h["epoch"]): h for h in result.history}
    out: dict[str, Any] = {}
    grid = _is_grid(result.config)
    for cp, epoch in checkpoint_epochs(result).items():
        h = by_epoch.get(epoch) if epoch is not None else None
        out[f"{cp}_epoch"] = epoch
        spectra = (h or {}).get("spectra") or {}
        for g in SPECTRUM_GROUPS:
            if g != "total" and not grid:
                continue
            s = spectra.get(g)
            summary = spectrum_summary(s) if s is not None else dict.fromkeys(SPECTRUM_STATS)
            out.update({f"{cp}_{g}_{k}": v for k, v in summary.items()})
        if grid:
            out[f"{cp}_grid_offdiag_fraction"] = (h or {}).get("grid_offdiag_fraction")
    return out


def _record(run: StudyRun, cfg: TrainConfig, result, lr_info: Mapping | None) -> dict:
    """The flat record of one finished run (module docstring)."""
    f = result.final
    fraction = cfg.lr_fraction
    note = lr_rule_note(fraction)
    if note is None and fraction is not None and result.diverged:
        note = "diverged below the predicted critical step (the linearised bound did not hold for this run)"
    enc = cfg.encoding
    rec = {
        "name": run.name,
        "activation": cfg.activation,
        "interpolation": getattr(enc, "interpolation", None) if _is_grid(cfg) else None,
        "encoding": enc.kind,
        "encoding_params": enc.describe(),
        "parameterization": cfg.parameterization,
        "hidden": "x".join(map(str, cfg.hidden)),
        "psnr": f.get("psnr"),
        "ms_ssim": f.get("ms_ssim"),
        "lr": cfg.learning_rate,
        "lr_fraction": fraction,
        "lr_crit": None if lr_info is None else lr_info["lr_crit_median"],
        "lr_note": note,
        "ntk_points": f.get("ntk_points"),
        "diverged": bool(result.diverged),
        "diverged_epoch": result.diverged_epoch,
        "final_epoch": f.get("epoch"),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "seconds": float(result.seconds),
        **_spectra_fields(result),
    }
    return {**rec, **dict(run.fields)}


def _check_identity(out: Path, identity: Mapping) -> None:
    path = out / "study.json"
    now = files.to_jsonable(identity)
    if path.exists():
        stored = files.read_json(path, error=StudyError)
        diffs = files.diff(stored, now)
        if diffs:
            raise StudyError(f"{path}: {out} holds another study ({'; '.join(diffs)}); use another --out or delete it")
    else:
        files.write_json(path, now)


def _resolve_lr(run: StudyRun, coords, out_dim: int, cache: dict, cache_path: Path, log: Log) -> tuple[TrainConfig,
                                                                                                      dict | None]:
    """``run.config`` at its lr rule (cached in ``lr_rule.json``), and the rule's numbers."""
    if run.lr_fraction is None:
        return run.config, None
    key = files.to_jsonable(run.config.replace(learning_rate=1.0, lr_fraction=None).to_dict())
    hit = cache.get(run.name)
    if hit is not None and hit.get("config") == key and hit.get("fraction") == run.lr_fraction:
        return run.config.replace(learning_rate=hit["lr"], lr_fraction=run.lr_fraction), hit

    t0 = time.perf_counter()
    cfg, pred = stability.with_critical_lr(run.config, run.lr_fraction, coords, out_dim)
    info = {"config": key, "fraction": run.lr_fraction, "lr": cfg.learning_rate,
            "lr_crit_median": pred.lr_crit_median, "lr_crit": pred.lr_crit, "lambda_max": pred.lambda_max,
            "batch_size": pred.batch_size, "seconds": time.perf_counter() - t0}
    cache[run.name] = files.to_jsonable(info)
    files.write_json(cache_path, cache)
    log(f"{run.name}: critical step at init {pred.lr_crit_median:.4g} -> lr {cfg.learning_rate:.4g} "
        f"({run.lr_fraction:g} of it, {info['seconds']:.1f} s)")
    return cfg, cache[run.name]


def _cached_record(out: Path, name: str, cfg: TrainConfig) -> dict | None:
    path = out / "records" / f"{name}.json"
    if not path.exists():
        return None
    try:
        cached = files.read_json(path)
    except ValueError:
        return None
    if cached.get("config") != files.to_jsonable(cfg.to_dict()):
        return None
    return cached["record"]


def run_study(study: str, image: np.ndarray, runs: Sequence[StudyRun], out: str | os.PathLike, *,
              identity: Mapping[str, Any] | None = None, header: Mapping[str, Any] | None = None,
              extra_record: Callable[[StudyRun, TrainConfig, Any, Mapping], Mapping[str, Any]] | None = None,
              log: Log = print, progress: bool = True) -> StudyResult:
    """Train every run on ``image`` (resumably) and write ``results.json`` (module docstring).

    Args:
      study: the study's name (``"activations"``, ``"interpolation"``), stored in the files.
      image: ``(H, W, C)`` float32 in ``[0, 1]``.
      runs: the networks; names must be unique.
      out: the study folder.
      identity: what must match for a rerun into ``out`` to continue it (e.g. image, size,
        seed, preset); stored as ``study.json`` with ``study`` and the run names.
      header: more top-level keys of ``results.json`` (e.g. the command).
      extra_record: ``extra_record(run, config, RunResult, results) -> {key: scalar}`` merged
        into the record of each finished run (e.g. Theorem 1's comparisons); ``results`` is
        ``{name: RunResult}`` of the runs finished before it (order the runs accordingly).
        Cached with the record.
      log: where progress lines go; progress: per-epoch progress bars (a terminal only).

    Returns:
      :class:`StudyResult`. A run that raises is logged, left out and named in ``errors``
      (the others still run). Raises :class:`StudyError` for a folder of another study.
    """
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"study run names must be unique, got {names}")
    bad = [n for n in names if files.safe_name(n) != n]
    if bad:
        raise ValueError(f"study run names must be file-name safe, got {bad}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_identity(out, {"study": study, **dict(identity or {}), "runs": names})
    cache_path = out / "lr_rule.json"
    cache = files.read_json(cache_path, error=StudyError) if cache_path.exists() else {}
    t0 = time.perf_counter()
    records, results, configs, errors, curves = [], {}, {}, {}, {}
    head = {"format": RESULTS_FORMAT, "study": study, **dict(identity or {}), **dict(header or {}),
            "machine": describe_machine(), "image_shape": list(image.shape)}

    def write():
        files.write_json(out / "results.json", {**head, "seconds_this_call": time.perf_counter() - t0,
                                                "runs": records, "errors": errors})
        files.write_json(out / "curves.json", curves)

    for i, run in enumerate(runs, 1):
        tag = f"[{i}/{len(runs)}] {run.name}"
        try:
            coords, values = image_to_dataset(image, pixels=run.config.pixels)
            cfg, lr_info = _resolve_lr(run, coords, values.shape[1], cache, cache_path, log)
            configs[run.name] = cfg
            log(f"{tag}: {cfg.encoding.kind} ({cfg.encoding.describe()}), {cfg.activation}, "
                f"{cfg.parameterization}, lr {cfg.learning_rate:.4g}, {cfg.epochs} epochs")
            t_run = time.perf_counter()
            res = fit(cfg, coords, values, image_shape=image.shape[:2], out_dir=out / "runs" / run.name,
                      progress=progress, label=run.name)
            results[run.name] = res
            rec = _cached_record(out, run.name, cfg)
            if rec is None:
                rec = _record(run, cfg, res, lr_info)
                if extra_record is not None:
                    rec.update(extra_record(run, cfg, res, results))
                rec = files.to_jsonable(rec)
                files.write_json(out / "records" / f"{run.name}.json",
                                 {"config": files.to_jsonable(cfg.to_dict()), "record": rec})
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - one failing run must not lose the others
            errors[run.name] = f"{type(err).__name__}: {err}"
            log(f"{tag}: FAILED ({errors[run.name]})")
            write()
            continue
        records.append(rec)
        curves[run.name] = [{k: c.get(k) for k in ("epoch", "loss", "psnr")} for c in res.curve]
        psnr = rec.get("psnr")
        log(f"{tag}: PSNR {files.fmt(psnr)} dB, MS-SSIM {files.fmt(rec.get('ms_ssim'), 3)}"
            + (f", DIVERGED at epoch {rec['diverged_epoch']}" if rec["diverged"] else "")
            + f" ({time.perf_counter() - t_run:.0f} s)")
        write()
    write()
    return StudyResult(records, results, configs, errors, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- shared outputs


def runs_table(records: Sequence[Mapping], columns: Sequence[tuple[str, str]] | None = None, digits: int = 2) -> str:
    """A markdown table of records; ``columns`` are ``(header, key)`` (default: the common ones)."""
    columns = columns or (("run", "name"), ("activation", "activation"), ("encoding", "encoding_params"),
                          ("interpolation", "interpolation"), ("lr", "lr"), ("lr fraction", "lr_fraction"),
                          ("PSNR dB", "psnr"), ("MS-SSIM", "ms_ssim"), ("λmax end", "end_total_lambda_max"),
                          ("above floor end", "end_total_n_above_floor"), ("diverged", "diverged"))

    def cell(r, key):
        v = r.get(key)
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:.3g}" if key.startswith(("lr", "end_", "init_", "middle_")) else files.fmt(v, digits)
        return "-" if v is None else str(v)

    return files.markdown_table([h for h, _ in columns], [[cell(r, k) for _, k in columns] for r in records])


def spectra_curves(results: Mapping, names: Sequence[str], *, checkpoint: str = "end", group: str = "total",
                   label: Callable[[str], str] | None = None, color: Callable[[str], Any] | None = None) -> list[dict]:
    """Curves for :func:`ntkgrid.plots.spectra_axes`: each run's ``group`` spectrum at
    ``checkpoint`` (``"init"``, ``"middle"``, ``"end"``); runs without one are left out."""
    style = {"init": "start", "middle": "middle", "end": "end"}[checkpoint]
    curves = []
    for n in names:
        r = results.get(n)
        if r is None:
            continue
        e = checkpoint_epochs(r)[checkpoint]
        h = {int(x["epoch"]): x for x in r.history}.get(e) if e is not None else None
        s = ((h or {}).get("spectra") or {}).get(group)
        if s is None:
            continue
        c = {"name": n, "values": s.eigenvalues, "floor": s.floor, "checkpoint": style,
             "label": (label(n) if label else n) + f" ({checkpoint}, epoch {e})"}
        if color is not None:
            c["color"] = color(n)
        curves.append(c)
    return curves


def reconstructions_figure(path: str | os.PathLike, image: np.ndarray, results: Mapping,
                           names: Sequence[str | None], *, ncols: int = 4, title: Callable[[str], str] | None = None,
                           suptitle: str | None = None) -> Path:
    """Each run's prediction (clipped to ``[0, 1]``) with its PSNR / MS-SSIM, in the order of
    ``names``; a ``None`` entry is a ground-truth panel (e.g. one at the start of each row)."""
    panels, data = [], []
    for n in names:
        r = results.get(n) if n is not None else None
        if n is None:
            panels.append(("ground truth", image))
            continue
        if r is None:
            panels.append((f"{n}\n(no result)", np.ones_like(image)))
            continue
        coords, _ = image_to_dataset(image, pixels=r.config.pixels)
        pred = np.clip(predict(r.config, r.params, coords).reshape(image.shape), 0.0, 1.0)
        f = r.final
        t = (title(n) if title else n) + f"\n{files.fmt(f.get('psnr'))} dB, MS-SSIM {files.fmt(f.get('ms_ssim'), 3)}"
        if r.diverged:
            t += f"\n(diverged at epoch {r.diverged_epoch})"
        panels.append((t, pred))
        data.append({"name": n, "psnr": f.get("psnr"), "ms_ssim": f.get("ms_ssim"), "diverged": r.diverged})
    png, _ = plots.image_grid_figure(path, panels, ncols=ncols, suptitle=suptitle, data={"runs": data})
    return png


def curves_figure(path: str | os.PathLike, results: Mapping, names: Sequence[str], *,
                  label: Callable[[str], str] | None = None, color: Callable[[str], Any] | None = None,
                  linestyle: Callable[[str], str] | None = None) -> Path | None:
    """Full-image MSE and PSNR against the epoch for every run with a training curve."""
    loss, psnr = [], []
    for n in names:
        r = results.get(n)
        pts = [c for c in (r.curve if r is not None else []) if c.get("loss") is not None]
        if not pts:
            continue
        extra = {"label": label(n) if label else n, "linestyle": linestyle(n) if linestyle else "-"}
        if color is not None:
            extra["color"] = color(n)
        loss.append({"name": n, "x": [c["epoch"] for c in pts], "y": [c["loss"] for c in pts], **extra})
        pp = [c for c in pts if c.get("psnr") is not None]
        psnr.append({"name": n, "x": [c["epoch"] for c in pp], "y": [c["psnr"] for c in pp], **extra})
    if not loss:
        return None
    png, _ = plots.curves_figure(path, [("full-image MSE (unclipped output)", "MSE", loss),
                                        ("full-image PSNR (clipped output)", "dB", psnr)], logy=[True, False])
    return png
