"""Hyper-parameter search with Optuna (the paper's Appendix D, how Tables 2 and 4 were found).

    python -m experiments.tune [--task image|occupancy] [--encoding baseline|fourier|multigrid]
        [--image NAME|PATH] [--mesh PATH|default|armadillo|dragon|happy_buddha]
        [--trials 30] [--timeout S] [--preset quick|paper] [--seed 0] [--out runs/tune]
        [--lr-range LO HI] [--batch-range LO HI] [--size PX] [--epochs N] [--no-progress]

``--task occupancy`` (Table 4): minimises the final training loss (binary cross-entropy;
under the paper's fresh sampling measured on a held-out uniform pool of the bounding box,
the distribution training draws from) of one encoding on one mesh, over the learning rate,
the batch size and the encoding's parameters (fourier: L in 2..12; multigrid: k in 1..3,
L in 1..3 levels, coarsest and finest resolutions in 8..256: "no more than 3 layers deep
and 3 trainable parameters per node"). Each trial is a run of
:mod:`experiments.occupancy`'s preset (sampling, epoch size, epochs) without spectra.
Writes ``best_occupancy_<encoding>.json``; load it with ``python -m experiments.occupancy
--config-json <encoding>=<path>`` as the 2D sweep loads ``best_<encoding>.json``.
Diverged trials score +inf (and are reported as such).

``--task image`` (default, Table 2):

Maximises the final PSNR of one encoding on one image over the learning rate (log
scale), the batch size (log scale) and the encoding's parameters (fourier: L in 2..12;
multigrid: k in 1..3, L in 1..3 levels, coarsest and finest resolutions in 8..320), as
the paper's 30 Optuna trials did. Each trial is a full training run of the preset
(Table 2 for ``paper``) without NTK spectra; diverged runs score 0 dB.

Writes to ``--out``: ``best_<encoding>.json``, the best trial as ``TrainConfig.to_dict()``
(load it in the sweep with ``--config-json <encoding>=<path>``), ``trials_<encoding>.csv``
/ ``.json``, ``history_<encoding>.png`` / ``.json`` (PSNR per trial and the best so far)
and ``report_<encoding>.md``. The study is stored in ``study.db`` (SQLite): rerunning
continues it up to ``--trials`` trials in all.

Needs Optuna, an optional extra: ``pip install 'ntkgrid[tune]'`` (or ``uv sync --extra tune``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from experiments._cli import add_run_args, check_overrides, fail, image_side, log
from ntkgrid import files
from ntkgrid.presets import PAPER_ENCODINGS

ENCODINGS = PAPER_ENCODINGS  # the encodings the paper compares (ntkgrid.presets; no JAX imported yet)
MISSING = "experiments.tune needs Optuna, an optional extra: pip install 'ntkgrid[tune]' (or: uv sync --extra tune)"

#: Default search ranges of the step size and batch size per preset.
LR_RANGE = {"paper": (0.01, 10.0), "quick": (1.0, 60.0)}
BATCH_RANGE = {"paper": (8, 256), "quick": (16, 256)}
#: The same for ``--task occupancy`` (Table 4's values, 0.78-0.99 and 9267-13187, lie inside the paper ranges).
OCC_LR_RANGE = {"paper": (0.1, 10.0), "quick": (1.0, 60.0)}
OCC_BATCH_RANGE = {"paper": (1024, 32768), "quick": (64, 1024)}
#: Grid limits of Table 4's search: "no more than 3 layers deep and 3 trainable parameters per node".
MAX_LEVELS, MAX_FEATURES = 3, 3



def _optimize(optuna, args, out: Path, study_name: str, direction: str, objective, what: str):
    """Create (or resume) the seeded TPE study ``study_name`` in ``out/study.db``, run the
    trials still missing of ``args.trials``, and return ``(study, completed trials)``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=f"sqlite:///{(out / 'study.db').resolve()}",
                                direction=direction, sampler=optuna.samplers.TPESampler(seed=args.seed),
                                load_if_exists=True)
    done = len([t for t in study.trials if t.state.is_finished()])
    log(f"{what}, {done} trial(s) done before, running {max(0, args.trials - done)} more")
    if args.trials > done:
        study.optimize(objective, n_trials=args.trials - done, timeout=args.timeout)
    return study, [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.tune", description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=("image", "occupancy"), default="image",
                    help="image: Table 2, maximise PSNR (default); occupancy: Table 4, minimise the training loss")
    ap.add_argument("--encoding", default="multigrid", choices=ENCODINGS, help="what to tune (default multigrid)")
    ap.add_argument("--image", default="chelsea", help="a bundled photo's name or an image file (default chelsea)")
    ap.add_argument("--mesh", default="default",
                    help="occupancy: a mesh file, 'default' (the procedural shape) or a Stanford name "
                         "(downloaded into $NTKGRID_CACHE/meshes)")
    ap.add_argument("--hidden", type=int, nargs="+", default=None, metavar="WIDTH",
                    help="occupancy: override the 8x256 hidden widths (for tiny test runs)")
    ap.add_argument("--pool-size", type=int, default=None,
                    help="occupancy: held-out (and, quick preset, training) pool size, for tiny test runs")
    ap.add_argument("--trials", type=int, default=30, help="trials in all, counting earlier runs (default 30)")
    ap.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    ap.add_argument("--lr-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="step-size range (default: paper 0.01-10, quick 1-60)")
    ap.add_argument("--batch-range", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                    help="batch-size range (default: paper 8-256, quick 16-256)")
    add_run_args(ap, name="tune")
    return ap


def suggest(trial, base, encoding: str, lr_range, batch_range, res_range=(8, 160, 320)):
    """The :class:`~ntkgrid.config.TrainConfig` of one trial: ``base`` with the sampled
    step size, batch size and encoding parameters (multigrid: at most
    :data:`MAX_FEATURES` scalars per node and :data:`MAX_LEVELS` levels; coarsest
    resolution in ``res_range[0]..res_range[1]``, finest up to ``res_range[2]``)."""
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


def main(argv: list[str] | None = None) -> int:
    """Run (or continue) the study; 0 on success, 2 for bad arguments, a missing Optuna or input."""
    args = build_parser().parse_args(argv)
    try:
        import optuna
    except ImportError:
        return fail(MISSING)
    if args.task == "occupancy":
        return _tune_occupancy(args, optuna)
    from ntkgrid import plots, presets, sweep
    from ntkgrid.data import DataError
    from ntkgrid.data.images import image_to_dataset
    from ntkgrid.training import fit

    try:
        check_overrides(args)
        if args.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {args.trials}")
        lr_range = tuple(args.lr_range or LR_RANGE[args.preset])
        batch_range = tuple(args.batch_range or BATCH_RANGE[args.preset])
        if not 0 < lr_range[0] < lr_range[1] or not 1 <= batch_range[0] < batch_range[1]:
            raise ValueError(f"bad ranges: --lr-range {lr_range}, --batch-range {batch_range}")
        base = sweep.apply_overrides(presets.get(presets.IMAGENET, args.preset, args.encoding),
                                     epochs=args.epochs, ntk_points=args.ntk_points, seed=args.seed)
        src, image = sweep.resolve_image(args.image, image_side(args, args.preset))
    except (ValueError, KeyError, DataError) as err:
        return fail(str(err).strip("'\""))
    out = args.out or Path("runs/tune")
    out.mkdir(parents=True, exist_ok=True)
    coords, values = image_to_dataset(image)
    search_base = base.replace(ntk_points=0, checkpoints=(base.epochs,))

    def objective(trial) -> float:
        cfg = suggest(trial, search_base, args.encoding, lr_range, batch_range)
        t0 = time.perf_counter()
        res = fit(cfg, coords, values, image_shape=image.shape[:2], progress=not args.no_progress,
                  label=f"trial {trial.number}")
        psnr = res.final.get("psnr")
        trial.set_user_attr("diverged", bool(res.diverged))
        trial.set_user_attr("ms_ssim", res.final.get("ms_ssim"))
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        score = 0.0 if res.diverged or psnr is None or not math.isfinite(psnr) else float(psnr)
        log(f"trial {trial.number}: {trial.params} -> PSNR {score:.2f} dB"
            + (" (diverged)" if res.diverged else ""))
        return score

    study_name = f"{args.encoding}-{args.preset}-{src.image_id}-{image.shape[0]}px-e{base.epochs}-s{args.seed}"
    study, trials = _optimize(optuna, args, out, study_name, "maximize", objective,
                              f"tune: {args.encoding} on {src.source} ({image.shape[0]} px, preset {args.preset})")
    if not trials:
        return fail("no trial completed", 1)
    best = study.best_trial
    best_cfg = suggest(optuna.trial.FixedTrial(best.params), base, args.encoding, lr_range, batch_range)
    path = files.write_json(out / f"best_{args.encoding}.json", best_cfg.to_dict())
    rows = [{"trial": t.number, "psnr": t.value, **t.params, "diverged": t.user_attrs.get("diverged"),
             "ms_ssim": t.user_attrs.get("ms_ssim"), "seconds": t.user_attrs.get("seconds")} for t in trials]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k) for k in keys} for r in rows]
    sweep.write_csv(out / f"trials_{args.encoding}.csv", rows)
    files.write_json(out / f"trials_{args.encoding}.json", {"study": study_name, "image": src.source, "trials": rows,
                                                            "best": {"trial": best.number, "psnr": best.value,
                                                                     "params": best.params}})
    xs = [r["trial"] for r in rows]
    ys = [r["psnr"] for r in rows]
    best_so_far = [max(ys[: i + 1]) for i in range(len(ys))]
    plots.curves_figure(out / f"history_{args.encoding}", [(f"Optuna search: {args.encoding}", "PSNR dB", [
        {"name": args.encoding, "x": xs, "y": ys, "linestyle": "none", "marker": "o", "label": "trial"},
        {"name": args.encoding, "x": xs, "y": best_so_far, "label": "best so far"}])])
    report = [f"# Optuna search for {args.encoding} on {src.source}", "",
              f"- preset `{args.preset}`, {image.shape[0]} px, {base.epochs} epochs per trial, {len(rows)} trials, "
              f"lr in {lr_range}, batch in {batch_range}", "",
              f"Best: trial {best.number}, PSNR {best.value:.2f} dB with {best.params}.", "",
              f"Use it: `python -m experiments.imagenet_sweep --config-json {args.encoding}={path}`", "",
              "![history](history_" + args.encoding + ".png)", "",
              files.markdown_table(keys, [[r[k] if isinstance(r[k], str) else r[k] for k in keys] for r in rows])]
    files.write_text(out / f"report_{args.encoding}.md", "\n".join(report))
    log(f"best trial {best.number}: PSNR {best.value:.2f} dB, {best.params}; config: {path}")
    return 0


@dataclass(frozen=True)
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


def _occupancy_search(args) -> _OccupancySearch:
    """Check ``--task occupancy``'s arguments and load its mesh and points; raises ValueError, KeyError
    or DataError for bad arguments or input."""
    from ntkgrid import occupancy as occ
    from ntkgrid.data.meshes import load_any

    check_overrides(args)
    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    if args.size is not None:
        raise ValueError("--size is for --task image; occupancy runs have no image")
    if args.hidden and min(args.hidden) < 1:
        raise ValueError(f"--hidden widths must be >= 1, got {args.hidden}")
    lr_range = tuple(args.lr_range or OCC_LR_RANGE[args.preset])
    batch_range = tuple(args.batch_range or OCC_BATCH_RANGE[args.preset])
    if not 0 < lr_range[0] < lr_range[1] or not 1 <= batch_range[0] < batch_range[1]:
        raise ValueError(f"bad ranges: --lr-range {lr_range}, --batch-range {batch_range}")
    out = args.out or Path("runs/tune")
    mesh = load_any(args.mesh, out / "cache")
    name = files.safe_name(Path(args.mesh).stem if Path(args.mesh).suffix else args.mesh, "mesh")
    setup = occ.PAPER_SETUP if args.preset == "paper" else occ.QUICK_SETUP
    if args.pool_size is not None:
        if args.pool_size < 2:
            raise ValueError(f"--pool-size must be >= 2, got {args.pool_size}")
        half = args.pool_size // 2
        setup = setup.replace(eval_uniform=args.pool_size, eval_surface=half,
                              **({"pool_uniform": half, "pool_surface": args.pool_size - half}
                                 if setup.sampling == "pool" else {}))
    base = occ.configs_for(name, args.preset, [args.encoding], args.seed, setup=setup, epochs=args.epochs,
                           ntk_points=args.ntk_points,
                           hidden=tuple(args.hidden) if args.hidden else None)[args.encoding]
    data = occ.prepare_data(mesh, setup, seed=args.seed, ntk_points=0, cache_dir=out / "pools")
    return _OccupancySearch(out, mesh, name, setup, base, data, lr_range, batch_range)


def _occupancy_objective(args, s: _OccupancySearch):
    """Optuna's objective for ``--task occupancy``: the final training loss of one run (inf if diverged)."""
    from ntkgrid.data.meshes import FreshPoints
    from ntkgrid.training import fit

    search_base = s.base.replace(ntk_points=0, checkpoints=(s.base.epochs,))

    def objective(trial) -> float:
        cfg = suggest(trial, search_base, args.encoding, s.lr_range, s.batch_range, res_range=(8, 128, 256))
        t0 = time.perf_counter()
        kw: dict = {"epoch_size": s.setup.epoch_size(cfg)}
        if s.setup.sampling == "fresh":
            kw = {"epoch_data": FreshPoints(s.mesh, s.data.bounds, s.setup.epoch_size(cfg), seed=args.seed,
                                            cache_dir=s.out / "pools")}
        res = fit(cfg, s.data.train_x, s.data.train_y, progress=not args.no_progress, label=f"trial {trial.number}",
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


def _occupancy_outputs(args, s: _OccupancySearch, study_name: str, trials, best, path) -> None:
    """Write the trials (CSV, JSON), the history figure and the report of ``--task occupancy``."""
    from ntkgrid import plots, sweep

    rows = [{"trial": t.number, "train_loss": t.value, **t.params, "diverged": t.user_attrs.get("diverged"),
             "accuracy": t.user_attrs.get("accuracy"), "seconds": t.user_attrs.get("seconds")} for t in trials]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k) for k in keys} for r in rows]
    stem = f"occupancy_{args.encoding}"
    sweep.write_csv(s.out / f"trials_{stem}.csv", rows)
    files.write_json(s.out / f"trials_{stem}.json", {"study": study_name, "mesh": str(args.mesh), "trials": rows,
                                                      "best": {"trial": best.number, "train_loss": best.value,
                                                               "params": best.params}})
    xs = [r["trial"] for r in rows]
    ys = [r["train_loss"] if math.isfinite(r["train_loss"]) else None for r in rows]
    finite = [y for y in ys if y is not None]
    best_so_far = [min([y for y in ys[: i + 1] if y is not None], default=None) for i in range(len(ys))]
    plots.curves_figure(s.out / f"history_{stem}", [(f"Optuna search: {args.encoding} on {s.name}", "training loss", [
        {"name": args.encoding, "x": xs, "y": ys, "linestyle": "none", "marker": "o", "label": "trial"},
        {"name": args.encoding, "x": xs, "y": best_so_far, "label": "best so far"}])])
    report = [f"# Optuna search (Table 4) for {args.encoding} on {s.name}", "",
              f"- preset `{args.preset}`, {s.setup.sampling} sampling, {s.base.epochs} epochs per trial, {len(rows)} "
              f"trials ({len(rows) - len(finite)} diverged), lr in {s.lr_range}, batch in {s.batch_range}, grids of "
              f"at most {MAX_LEVELS} levels and {MAX_FEATURES} scalars per node; minimising the final training loss",
              "", f"Best: trial {best.number}, training loss {best.value:.4f} with {best.params}.", "",
              f"Use it: `python -m experiments.occupancy --preset {args.preset} --mesh {args.mesh} "
              f"--config-json {args.encoding}={path}`", "",
              f"![history](history_{stem}.png)", "",
              files.markdown_table(keys, [[r[k] for k in keys] for r in rows])]
    files.write_text(s.out / f"report_{stem}.md", "\n".join(report))


def _tune_occupancy(args, optuna) -> int:
    """``--task occupancy``: Table 4's search (see the module docstring)."""
    from ntkgrid.data import DataError

    try:
        s = _occupancy_search(args)
    except (ValueError, KeyError, DataError) as err:
        return fail(str(err).strip("'\""))
    s.out.mkdir(parents=True, exist_ok=True)
    study_name = (f"occupancy-{args.encoding}-{args.preset}-{s.name}-{s.setup.sampling}-e{s.base.epochs}-s{args.seed}"
                  f"-h{'x'.join(map(str, s.base.hidden))}")
    study, trials = _optimize(optuna, args, s.out, study_name, "minimize", _occupancy_objective(args, s),
                              f"tune occupancy: {args.encoding} on {s.name} (preset {args.preset}, "
                              f"{s.setup.sampling} sampling)")
    if not trials:
        return fail("no trial completed", 1)
    best = study.best_trial
    best_cfg = suggest(optuna.trial.FixedTrial(best.params), s.base.replace(checkpoints=None), args.encoding,
                       s.lr_range, s.batch_range, res_range=(8, 128, 256))
    path = files.write_json(s.out / f"best_occupancy_{args.encoding}.json", best_cfg.to_dict())
    _occupancy_outputs(args, s, study_name, trials, best, path)
    log(f"best trial {best.number}: training loss {best.value:.4f}, {best.params}; config: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
