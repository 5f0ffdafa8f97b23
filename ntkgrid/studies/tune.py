"""Hyper-parameter search with Optuna: how the paper found Tables 2 and 4 (its Appendix D;
``python -m experiments.tune``, whose docstring says what each task searches and writes).

:func:`run_tune` runs (or continues) one search: ``task="image"`` maximises the final PSNR of one
encoding on one image (Table 2), ``task="occupancy"`` minimises the final training loss of one
encoding on one mesh (Table 4), over the step size, the batch size and the encoding's parameters
(:func:`suggest`). The study is stored in ``<out>/study.db`` (SQLite). Optuna is an optional
package, imported when a search runs (:func:`require_optuna`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ntkgrid import files, plots, presets
from ntkgrid import occupancy as occ
from ntkgrid.config import TrainConfig
from ntkgrid.data import DataError
from ntkgrid.data.images import image_to_dataset
from ntkgrid.data.meshes import FreshPoints, load_any
from ntkgrid.sweep import apply_overrides, resolve_image, write_csv
from ntkgrid.training import fit

__all__ = ["BATCH_RANGE", "LR_RANGE", "MAX_FEATURES", "MAX_LEVELS", "OCC_BATCH_RANGE", "OCC_LR_RANGE", "OptunaMissing",
           "TuneInputError", "TuneOptions", "TuneResult", "require_optuna", "run_tune", "suggest"]

Log = Callable[[str], None]

#: Default search ranges of the step size and batch size per preset.
LR_RANGE = {"paper": (0.01, 10.0), "quick": (1.0, 60.0)}
BATCH_RANGE = {"paper": (8, 256), "quick": (16, 256)}
#: The same for ``--task occupancy`` (Table 4's values, 0.78-0.99 and 9267-13187, lie inside the paper ranges).
OCC_LR_RANGE = {"paper": (0.1, 10.0), "quick": (1.0, 60.0)}
OCC_BATCH_RANGE = {"paper": (1024, 32768), "quick": (64, 1024)}
#: Grid limits of Table 4's search: "no more than 3 layers deep and 3 trainable parameters per node".
MAX_LEVELS, MAX_FEATURES = 3, 3


class OptunaMissing(ImportError):
    """Optuna, the optional package the search needs, is not installed."""


class TuneInputError(ValueError):
    """An option or input (image, mesh, ranges) the search cannot use; raised before any trial."""


@dataclasses.dataclass(frozen=True)
class TuneOptions:
    """What :func:`run_tune` searches (the options of ``python -m experiments.tune``)."""

    task: str = "image"  # "image": Table 2, maximise PSNR; "occupancy": Table 4, minimise the training loss
    encoding: str = "multigrid"  # the encoding to tune (ntkgrid.presets.PAPER_ENCODINGS)
    image: str = "chelsea"  # image task: a bundled photo's name or an image file
    mesh: str = "default"  # occupancy: a mesh file, "default" (the procedural shape) or a Stanford name
    hidden: Sequence[int] | None = None  # occupancy: hidden widths instead of the preset's 8x256
    pool_size: int | None = None  # occupancy: held-out (and, quick preset, training) pool size
    trials: int = 30  # trials in all, counting earlier runs of the same study
    timeout: float | None = None  # stop starting trials after this many seconds
    lr_range: Sequence[float] | None = None  # (low, high) step sizes; None: LR_RANGE / OCC_LR_RANGE of the preset
    batch_range: Sequence[int] | None = None  # (low, high) batch sizes; None: BATCH_RANGE / OCC_BATCH_RANGE
    preset: str = "quick"  # "paper" or "quick"
    seed: int = 0  # seed of the sampler, the initialisations and the minibatch order
    out: Path | None = None  # output folder; None: runs/tune
    size: int | None = None  # image task: image side in pixels; None: the preset's
    epochs: int | None = None  # epochs of every trial; None: the preset's
    ntk_points: int | None = None  # NTK points of the base config (trials take no spectra)
    progress: bool = True  # per-epoch progress bars


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """What :func:`run_tune` returns.

    Attributes:
      study_name: the Optuna study's name in ``study.db`` (encodes task, encoding, preset, data, seed).
      out: the output folder.
      best: the best completed trial (an ``optuna.trial.FrozenTrial``), None if no trial completed.
      config: the best trial's config JSON (``best_<encoding>.json`` /
        ``best_occupancy_<encoding>.json``), None if no trial completed.
    """

    study_name: str
    out: Path
    best: Any
    config: Path | None


def require_optuna():
    """The ``optuna`` module; raises :class:`OptunaMissing` if it is not installed."""
    try:
        import optuna
    except ImportError as err:
        raise OptunaMissing(str(err)) from err
    return optuna


def run_tune(options: TuneOptions, *, log: Log = print) -> TuneResult:
    """Run (or continue) the search of ``options`` and write its outputs under ``options.out``.

    Args:
      options: the task, what to tune and the ranges.
      log: where progress lines go (one per trial and the best at the end).

    Returns:
      :class:`TuneResult`. Raises :class:`OptunaMissing` without Optuna and
      :class:`TuneInputError` for an unusable option or input, both before any trial.
    """
    optuna = require_optuna()
    if options.task == "occupancy":
        return _tune_occupancy(options, optuna, log)
    return _tune_image(options, optuna, log)


def _optimize(optuna, opts: TuneOptions, out: Path, study_name: str, direction: str, objective, log: Log, what: str):
    """Create (or resume) the seeded TPE study ``study_name`` in ``out/study.db``, run the
    trials still missing of ``opts.trials``, and return ``(study, completed trials)``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=f"sqlite:///{(out / 'study.db').resolve()}",
                                direction=direction, sampler=optuna.samplers.TPESampler(seed=opts.seed),
                                load_if_exists=True)
    done = len([t for t in study.trials if t.state.is_finished()])
    log(f"{what}, {done} trial(s) done before, running {max(0, opts.trials - done)} more")
    if opts.trials > done:
        study.optimize(objective, n_trials=opts.trials - done, timeout=opts.timeout)
    return study, [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def suggest(trial, base: TrainConfig, encoding: str, lr_range: Sequence[float], batch_range: Sequence[int],
            res_range: Sequence[int] = (8, 160, 320)) -> TrainConfig:
    """The :class:`~ntkgrid.config.TrainConfig` of one trial: ``base`` with the sampled
    step size, batch size and encoding parameters (multigrid: at most
    :data:`MAX_FEATURES` scalars per node and :data:`MAX_LEVELS` levels; coarsest
    resolution in ``res_range[0]..res_range[1]``, finest up to ``res_range[2]``).

    Args:
      trial: an ``optuna.trial.Trial`` (or ``FixedTrial`` to rebuild a trial's config).
      base: the config the trial varies.
      encoding: ``base``'s encoding kind (``"baseline"``, ``"fourier"``, ``"multigrid"``).
      lr_range: ``(low, high)`` SGD step sizes, sampled on a log scale.
      batch_range: ``(low, high)`` minibatch sizes, sampled on a log scale.
      res_range: ``(lowest coarsest, highest coarsest, highest finest)`` grid nodes per side.
    """
    lr = trial.suggest_float("learning_rate", *lr_range, log=True)
    batch = trial.suggest_int("batch_size", *batch_range, log=True)
    enc: dict = {}
    if encoding == "fourier":
        enc["num_frequencies"] = trial.suggest_int("num_frequencies", 2, 12)
    elif encoding == "multigrid":
        enc["features_per_level"] = trial.suggest_int("features_per_level", 1, MAX_FEATURES)
        enc["num_levels"] = trial.suggest_int("num_levels", 1, MAX_LEVELS)
        lo = trial.suggest_int("min_res", res_range[0], res_range[1], log=True)
        hi = trial.suggest_int("max_res", lo, res_range[2], log=True) if enc["num_levels"] > 1 else lo
        enc["min_res"], enc["max_res"] = lo, hi
    return base.replace(learning_rate=lr, batch_size=batch, encoding=enc or None)


def _tune_image(opts: TuneOptions, optuna, log: Log) -> TuneResult:
    """``task="image"``: Table 2's search (see the module docstring)."""
    try:
        if opts.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {opts.trials}")
        lr_range = tuple(opts.lr_range or LR_RANGE[opts.preset])
        batch_range = tuple(opts.batch_range or BATCH_RANGE[opts.preset])
        if not 0 < lr_range[0] < lr_range[1] or not 1 <= batch_range[0] < batch_range[1]:
            raise ValueError(f"bad ranges: --lr-range {lr_range}, --batch-range {batch_range}")
        base = apply_overrides(presets.get(presets.IMAGENET, opts.preset, opts.encoding),
                                     epochs=opts.epochs, ntk_points=opts.ntk_points, seed=opts.seed)
        size = opts.size if opts.size is not None else presets.image_size(opts.preset, sweep=True)  # Table 2's size
        src, image = resolve_image(opts.image, size)
    except (ValueError, KeyError, DataError) as err:
        raise TuneInputError(str(err)) from err
    out = Path(opts.out or "runs/tune")
    out.mkdir(parents=True, exist_ok=True)
    coords, values = image_to_dataset(image)
    search_base = base.replace(ntk_points=0, checkpoints=(base.epochs,))

    def objective(trial) -> float:
        cfg = suggest(trial, search_base, opts.encoding, lr_range, batch_range)
        t0 = time.perf_counter()
        res = fit(cfg, coords, values, image_shape=image.shape[:2], progress=opts.progress,
                  label=f"trial {trial.number}")
        psnr = res.final.get("psnr")
        trial.set_user_attr("diverged", bool(res.diverged))
        trial.set_user_attr("ms_ssim", res.final.get("ms_ssim"))
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        score = 0.0 if res.diverged or psnr is None or not math.isfinite(psnr) else float(psnr)
        log(f"trial {trial.number}: {trial.params} -> PSNR {score:.2f} dB"
            + (" (diverged)" if res.diverged else ""))
        return score

    study_name = f"{opts.encoding}-{opts.preset}-{src.image_id}-{image.shape[0]}px-e{base.epochs}-s{opts.seed}"
    study, trials = _optimize(optuna, opts, out, study_name, "maximize", objective, log,
                              f"tune: {opts.encoding} on {src.source} ({image.shape[0]} px, preset {opts.preset})")
    if not trials:
        return TuneResult(study_name, out, None, None)
    best = study.best_trial
    best_cfg = suggest(optuna.trial.FixedTrial(best.params), base, opts.encoding, lr_range, batch_range)
    path = files.write_json(out / f"best_{opts.encoding}.json", best_cfg.to_dict())
    rows = [{"trial": t.number, "psnr": t.value, **t.params, "diverged": t.user_attrs.get("diverged"),
             "ms_ssim": t.user_attrs.get("ms_ssim"), "seconds": t.user_attrs.get("seconds")} for t in trials]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k) for k in keys} for r in rows]
    write_csv(out / f"trials_{opts.encoding}.csv", rows)
    files.write_json(out / f"trials_{opts.encoding}.json", {"study": study_name, "image": src.source, "trials": rows,
                                                            "best": {"trial": best.number, "psnr": best.value,
                                                                     "params": best.params}})
    xs = [r["trial"] for r in rows]
    ys = [r["psnr"] for r in rows]
    best_so_far = [max(ys[: i + 1]) for i in range(len(ys))]
    plots.curves_figure(out / f"history_{opts.encoding}", [(f"Optuna search: {opts.encoding}", "PSNR dB", [
        {"name": opts.encoding, "x": xs, "y": ys, "linestyle": "none", "marker": "o", "label": "trial"},
        {"name": opts.encoding, "x": xs, "y": best_so_far, "label": "best so far"}])])
    report = [f"# Optuna search for {opts.encoding} on {src.source}", "",
              f"- preset `{opts.preset}`, {image.shape[0]} px, {base.epochs} epochs per trial, {len(rows)} trials, "
              f"lr in {lr_range}, batch in {batch_range}", "",
              f"Best: trial {best.number}, PSNR {best.value:.2f} dB with {best.params}.", "",
              f"Use it: `python -m experiments.imagenet_sweep --config-json {opts.encoding}={path}`", "",
              "![history](history_" + opts.encoding + ".png)", "",
              files.markdown_table(keys, [[r[k] if isinstance(r[k], str) else r[k] for k in keys] for r in rows])]
    files.write_text(out / f"report_{opts.encoding}.md", "\n".join(report))
    log(f"best trial {best.number}: PSNR {best.value:.2f} dB, {best.params}; config: {path}")
    return TuneResult(study_name, out, best, path)


@dataclasses.dataclass(frozen=True)
class _OccupancySearch:
    """What ``--task occupancy`` searches on: the checked arguments, the mesh and its training points."""

    out: Path  # output folder
    mesh: object  # the trimesh.Trimesh
    name: str  # the mesh's safe name
    setup: object  # ntkgrid.occupancy.OccupancySetup (the preset's, with --pool-size applied)
    base: object  # the preset's TrainConfig for --encoding
    data: object  # ntkgrid.occupancy.prepare_data's result (train_x (N, 3), train_y (N, 1), bounds)
    lr_range: tuple  # (low, high) SGD step sizes
    batch_range: tuple  # (low, high) minibatch sizes


def _occupancy_search(opts: TuneOptions) -> _OccupancySearch:
    """Check ``--task occupancy``'s arguments and load its mesh and points; raises ValueError, KeyError
    or DataError for bad arguments or input."""
    if opts.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {opts.trials}")
    if opts.size is not None:
        raise ValueError("--size is for --task image; occupancy runs have no image")
    if opts.hidden and min(opts.hidden) < 1:
        raise ValueError(f"--hidden widths must be >= 1, got {opts.hidden}")
    lr_range = tuple(opts.lr_range or OCC_LR_RANGE[opts.preset])
    batch_range = tuple(opts.batch_range or OCC_BATCH_RANGE[opts.preset])
    if not 0 < lr_range[0] < lr_range[1] or not 1 <= batch_range[0] < batch_range[1]:
        raise ValueError(f"bad ranges: --lr-range {lr_range}, --batch-range {batch_range}")
    out = Path(opts.out or "runs/tune")
    mesh = load_any(opts.mesh, out / "cache")
    name = files.safe_name(Path(opts.mesh).stem if Path(opts.mesh).suffix else opts.mesh, "mesh")
    setup = occ.PAPER_SETUP if opts.preset == "paper" else occ.QUICK_SETUP
    if opts.pool_size is not None:
        if opts.pool_size < 2:
            raise ValueError(f"--pool-size must be >= 2, got {opts.pool_size}")
        half = opts.pool_size // 2
        setup = setup.replace(eval_uniform=opts.pool_size, eval_surface=half,
                              **({"pool_uniform": half, "pool_surface": opts.pool_size - half}
                                 if setup.sampling == "pool" else {}))
    base = occ.configs_for(name, opts.preset, [opts.encoding], opts.seed, setup=setup, epochs=opts.epochs,
                           ntk_points=opts.ntk_points,
                           hidden=tuple(opts.hidden) if opts.hidden else None)[opts.encoding]
    data = occ.prepare_data(mesh, setup, seed=opts.seed, ntk_points=0, cache_dir=out / "pools")
    return _OccupancySearch(out, mesh, name, setup, base, data, lr_range, batch_range)


def _occupancy_objective(opts: TuneOptions, s: _OccupancySearch, log: Log):
    """Optuna's objective for ``--task occupancy``: the final training loss of one run (inf if diverged)."""
    search_base = s.base.replace(ntk_points=0, checkpoints=(s.base.epochs,))

    def objective(trial) -> float:
        cfg = suggest(trial, search_base, opts.encoding, s.lr_range, s.batch_range, res_range=(8, 128, 256))
        t0 = time.perf_counter()
        kw: dict = {"epoch_size": s.setup.epoch_size(cfg)}
        if s.setup.sampling == "fresh":
            kw = {"epoch_data": FreshPoints(s.mesh, s.data.bounds, s.setup.epoch_size(cfg), seed=opts.seed,
                                            cache_dir=s.out / "pools")}
        res = fit(cfg, s.data.train_x, s.data.train_y, progress=opts.progress, label=f"trial {trial.number}",
                  **kw)
        loss = res.final.get("loss")
        trial.set_user_attr("diverged", bool(res.diverged))
        trial.set_user_attr("accuracy", res.final.get("accuracy"))
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        score = math.inf if res.diverged or loss is None or not math.isfinite(loss) else float(loss)
        log(f"trial {trial.number}: {trial.params} -> training loss {score:.4f}" + (" (diverged)" if res.diverged
                                                                                    else ""))
        return score

    return objective


def _occupancy_outputs(opts: TuneOptions, s: _OccupancySearch, study_name: str, trials, best, path) -> None:
    """Write the trials (CSV, JSON), the history figure and the report of ``--task occupancy``."""
    rows = [{"trial": t.number, "train_loss": t.value, **t.params, "diverged": t.user_attrs.get("diverged"),
             "accuracy": t.user_attrs.get("accuracy"), "seconds": t.user_attrs.get("seconds")} for t in trials]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k) for k in keys} for r in rows]
    stem = f"occupancy_{opts.encoding}"
    write_csv(s.out / f"trials_{stem}.csv", rows)
    files.write_json(s.out / f"trials_{stem}.json", {"study": study_name, "mesh": str(opts.mesh), "trials": rows,
                                                      "best": {"trial": best.number, "train_loss": best.value,
                                                               "params": best.params}})
    xs = [r["trial"] for r in rows]
    ys = [r["train_loss"] if math.isfinite(r["train_loss"]) else None for r in rows]
    finite = [y for y in ys if y is not None]
    best_so_far = [min([y for y in ys[: i + 1] if y is not None], default=None) for i in range(len(ys))]
    plots.curves_figure(s.out / f"history_{stem}", [(f"Optuna search: {opts.encoding} on {s.name}", "training loss", [
        {"name": opts.encoding, "x": xs, "y": ys, "linestyle": "none", "marker": "o", "label": "trial"},
        {"name": opts.encoding, "x": xs, "y": best_so_far, "label": "best so far"}])])
    report = [f"# Optuna search (Table 4) for {opts.encoding} on {s.name}", "",
              f"- preset `{opts.preset}`, {s.setup.sampling} sampling, {s.base.epochs} epochs per trial, {len(rows)} "
              f"trials ({len(rows) - len(finite)} diverged), lr in {s.lr_range}, batch in {s.batch_range}, grids of "
              f"at most {MAX_LEVELS} levels and {MAX_FEATURES} scalars per node; minimising the final training loss",
              "", f"Best: trial {best.number}, training loss {best.value:.4f} with {best.params}.", "",
              f"Use it: `python -m experiments.occupancy --preset {opts.preset} --mesh {opts.mesh} "
              f"--config-json {opts.encoding}={path}`", "",
              f"![history](history_{stem}.png)", "",
              files.markdown_table(keys, [[r[k] for k in keys] for r in rows])]
    files.write_text(s.out / f"report_{stem}.md", "\n".join(report))


def _tune_occupancy(opts: TuneOptions, optuna, log: Log) -> TuneResult:
    """``task="occupancy"``: Table 4's search (see the module docstring)."""
    try:
        s = _occupancy_search(opts)
    except (ValueError, KeyError, DataError) as err:
        raise TuneInputError(str(err)) from err
    s.out.mkdir(parents=True, exist_ok=True)
    study_name = (f"occupancy-{opts.encoding}-{opts.preset}-{s.name}-{s.setup.sampling}-e{s.base.epochs}-s{opts.seed}"
                  f"-h{'x'.join(map(str, s.base.hidden))}")
    study, trials = _optimize(optuna, opts, s.out, study_name, "minimize", _occupancy_objective(opts, s, log), log,
                              f"tune occupancy: {opts.encoding} on {s.name} (preset {opts.preset}, "
                              f"{s.setup.sampling} sampling)")
    if not trials:
        return TuneResult(study_name, s.out, None, None)
    best = study.best_trial
    best_cfg = suggest(optuna.trial.FixedTrial(best.params), s.base.replace(checkpoints=None), opts.encoding,
                       s.lr_range, s.batch_range, res_range=(8, 128, 256))
    path = files.write_json(s.out / f"best_occupancy_{opts.encoding}.json", best_cfg.to_dict())
    _occupancy_outputs(opts, s, study_name, trials, best, path)
    log(f"best trial {best.number}: training loss {best.value:.4f}, {best.params}; config: {path}")
    return TuneResult(study_name, s.out, best, path)


