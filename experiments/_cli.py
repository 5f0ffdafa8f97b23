"""What the command-line programs of ``experiments/`` share: the options of the 2D programs
(:func:`add_run_args`), their checks and the configs they select, the exit-status convention
(:func:`fail`), progress lines (:func:`log`) and the ``main`` of the study CLIs
(:func:`run_study_cli`, :func:`run_image_study_cli`).

Only the programs import this module; no program imports another program, and the studies
themselves live in the library (:mod:`ntkgrid.studies`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

#: Most CPU devices :func:`split_host_cpus` asks XLA for (our choice).
MAX_HOST_DEVICES = 8


def split_host_cpus(n: int | None = None) -> int | None:
    """Ask XLA for ``n`` CPU devices (default: one per core, at most :data:`MAX_HOST_DEVICES`)
    by adding ``--xla_force_host_platform_device_count=n`` to ``XLA_FLAGS``, so that
    batched training (:mod:`ntkgrid.training.batched`) shards its runs over the cores, one thread
    per device. Takes effect only before JAX is imported; does nothing when ``XLA_FLAGS``
    already sets the count (the user's choice wins) or JAX is already imported. Only the
    CPU platform is affected: a GPU stays the default device. Returns the count set, or
    None."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" in sys.modules or "xla_force_host_platform_device_count" in flags:
        return None
    n = min(os.cpu_count() or 1, MAX_HOST_DEVICES) if n is None else int(n)
    if n < 2:
        return None
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    return n


def lr_arg(text: str):
    """argparse ``type`` of ``--lr``: a number (checked by :func:`check_overrides`, as a plain
    ``--lr``) or ``critical:FRACTION`` (:func:`ntkgrid.config.parse_lr`)."""
    from ntkgrid.config import parse_lr

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_lr(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_run_args(ap: argparse.ArgumentParser, *, name: str, default_preset: str | None = "quick",
                 critical_lr: bool = False, sweep: bool = False) -> None:
    """``--preset --seed --out`` and the per-run overrides every 2D experiment takes.

    ``critical_lr=True``: ``--lr`` also takes ``critical:FRACTION`` (the program applies it
    with :func:`apply_lr_rule` once it has the training points). ``sweep=True``: the program
    runs Table 2's sweep, whose quick images are ``presets.QUICK_SWEEP_IMAGE_SIZE`` px."""
    from ntkgrid import presets

    preset_help = ("paper: the paper's table; quick: a few minutes on a 2-core CPU "
                   f"({presets.image_size('quick', sweep=sweep)} px images, "
                   "hand-tuned short runs, see ntkgrid.presets)")
    if default_preset is None:
        ap.add_argument("--preset", choices=("paper", "quick"), default=None,
                        help=preset_help + " (default: quick without --data-root, paper with one)")
    else:
        ap.add_argument("--preset", choices=("paper", "quick"), default=default_preset,
                        help=preset_help + f" (default: {default_preset})")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the initialisation and minibatch order (and of the image choice)")
    ap.add_argument("--out", type=Path, default=None, help=f"output folder (default: runs/{name})")
    g = ap.add_argument_group("overrides (applied to every configuration; for tests and experiments)")
    g.add_argument("--size", type=int, default=None, help="image side in pixels (default: the preset's)")
    g.add_argument("--epochs", type=int, default=None, help="epochs (checkpoints scale along)")
    g.add_argument("--batch-size", type=int, default=None, help="SGD minibatch size")
    if critical_lr:
        g.add_argument("--lr", type=lr_arg, default=None, metavar="X|critical:F",
                       help="SGD step size, or critical:F for F times each network's own critical step at "
                            "initialisation (ntkgrid.stability.critical_lr; F >= 1 is beyond the linearised bound)")
    else:
        g.add_argument("--lr", type=float, default=None, help="SGD step size")
    g.add_argument("--ntk-points", type=int, default=None,
                   help="cap on the NTK points: a contiguous centred window of this many training pixels (0: no "
                        "spectra; default: every training pixel, up to ntkgrid.presets.NTK_POINTS_CAP on this backend)")
    g.add_argument("--reading", default=None, metavar="NAME",
                   help="train under this reading of the paper (ntkgrid.presets.READINGS, experiments/RECIPE.md) "
                        "instead of the preset's")
    ap.add_argument("--no-progress", action="store_true", help="no per-epoch progress bars")


def overrides(args: argparse.Namespace) -> dict:
    """Keyword arguments for :func:`ntkgrid.sweep.apply_overrides` from :func:`add_run_args`."""
    lr = args.lr if isinstance(args.lr, (int, float)) else None  # a critical:F rule: apply_lr_rule
    return {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": lr,
            "ntk_points": args.ntk_points, "seed": args.seed}


def apply_lr_rule(configs: Mapping, args: argparse.Namespace, image, *, log=None) -> dict:
    """``configs`` with ``--lr critical:F`` applied (each config's own critical step at
    initialisation on ``image``'s pixels, :func:`ntkgrid.stability.with_critical_lrs`; the config
    records ``lr_fraction``); unchanged for a number or no ``--lr``."""
    from ntkgrid.config import LrRule

    if not isinstance(args.lr, LrRule):
        return dict(configs)
    from ntkgrid.stability import with_critical_lrs

    return with_critical_lrs(configs, args.lr.fraction, image, log=log)


def check_overrides(args: argparse.Namespace, preset: str | None = None, *, sweep: bool = False) -> None:
    """Reject impossible override values with a ``ValueError`` naming the option (and
    ``--ntk-points`` beyond the training image's pixels, when ``preset`` gives its size;
    ``sweep``: Table 2's sweep's size)."""
    for opt, val, low in (("--size", args.size, 11), ("--epochs", args.epochs, 1),
                          ("--batch-size", args.batch_size, 1), ("--ntk-points", args.ntk_points, 0)):
        if val is not None and val < low:
            raise ValueError(f"{opt} must be >= {low}, got {val}")
    if isinstance(args.lr, (int, float)) and not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0, got {args.lr}")
    preset = preset or getattr(args, "preset", None)
    if args.ntk_points and preset in ("paper", "quick"):
        side = image_side(args, preset, sweep=sweep)
        if args.ntk_points > side * side:
            raise ValueError(f"--ntk-points {args.ntk_points} exceeds the {side}x{side} = {side * side} pixels of "
                             "the training image (leave it out for all of them)")


def configs_for(table: Mapping, preset: str, names, args: argparse.Namespace) -> dict:
    """``{name: TrainConfig}`` of ``table`` for ``preset`` with the overrides of ``args``."""
    from ntkgrid import presets
    from ntkgrid.sweep import apply_overrides

    cfgs = {n: apply_overrides(presets.get(table, preset, n), **overrides(args)) for n in names}
    if getattr(args, "reading", None) is not None:
        cfgs = {n: presets.reading(c, args.reading) for n, c in cfgs.items()}
    return cfgs


def image_side(args: argparse.Namespace, preset: str, *, sweep: bool = False) -> int:
    """``--size``, else the preset's image side (``sweep``: Table 2's sweep's)."""
    from ntkgrid import presets

    return args.size if args.size is not None else presets.image_size(preset, sweep=sweep)


def fail(message: str, code: int = 2) -> int:
    """Print ``error: message`` to stderr and return ``code`` (for ``main``'s return).

    The exit-code convention of every CLI in ``experiments/`` and ``benchmarks/``, each of
    which ends in ``if __name__ == "__main__": sys.exit(main())`` with ``main`` returning:

    * ``0``: everything ran (and every check passed);
    * ``1``: a run or a check failed (the others still ran and their results were written;
      the failures are reported on stderr and in the outputs);
    * ``2``: bad input or usage (an impossible option value, an unreadable config or
      file given on the command line), reported before anything runs; argparse's own
      usage errors exit with 2 too.
    """
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def log(message: str) -> None:
    """Print a progress line (a non-UTF-8 file name's bytes as ``\\xNN``: :func:`ntkgrid.files.printable`)."""
    from ntkgrid.files import printable

    print(printable(message), flush=True)


def study_parser(name: str, table: str, description: str) -> argparse.ArgumentParser:
    """The parser of a study CLI (experiments.activations, experiments.interpolation) with the
    options every study takes first: ``--preset --image --seed --out``; ``table`` names its
    preset table in ``ntkgrid.presets``. The study adds its own, then :func:`add_study_overrides`."""
    ap = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=description)
    ap.add_argument("--preset", choices=("quick", "paper"), default="quick",
                    help="quick: 32 px, 40 epochs, minutes on a 2-core CPU; paper: Table 3's 128 px, 300 epochs "
                         f"(for a GPU); see ntkgrid.presets.{table} (default: %(default)s)")
    ap.add_argument("--image", default="chelsea", help="a bundled photo's name or an image file (default: chelsea)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the initialisation and minibatch order")
    ap.add_argument("--out", type=Path, default=None, help=f"output folder (default: runs/{name}/<image>)")
    return ap


def add_study_overrides(ap: argparse.ArgumentParser, lr_fraction: float) -> argparse.ArgumentParser:
    """The overrides every study CLI takes last (``lr_fraction``: the preset's default
    ``critical:F``); returns ``ap``."""
    ap.add_argument("--size", type=int, default=None, help="image side in pixels (default: the preset's)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs (checkpoints scale along)")
    ap.add_argument("--lr", type=lr_arg, default=None, metavar="X|critical:F",
                    help=f"SGD step by hand, or critical:F = F x each network's critical step at initialisation "
                         f"(default: critical:{lr_fraction:g})")
    ap.add_argument("--ntk-points", type=int, default=None,
                    help="cap on the NTK points (a centred window; default: every training pixel)")
    ap.add_argument("--hidden", type=int, nargs="+", default=None,
                    help="hidden widths of every MLP (default: the preset's, Table 3's 512 512)")
    ap.add_argument("--no-progress", action="store_true", help="no per-epoch progress bars")
    return ap


def run_study_cli(study, args, **choices) -> int:
    """Shared ``main`` of the study CLIs (experiments.activations, experiments.interpolation):
    checks the common options of ``args``, runs ``study`` (a ``ntkgrid.studies`` entry point) with
    them and ``choices`` (the study's own options), and maps the outcome to the exit status: 0 on
    success, 1 if a run failed, 2 for bad arguments or input."""
    from ntkgrid.config import LrRule
    from ntkgrid.data import DataError
    from ntkgrid.studies import StudyError

    for opt, val, low in (("--size", args.size, 11), ("--epochs", args.epochs, 1), ("--ntk-points", args.ntk_points, 1),
                          ("--hidden", min(args.hidden) if args.hidden else None, 1)):
        if val is not None and val < low:
            return fail(f"{opt} must be >= {low}, got {val}")
    rule = isinstance(args.lr, LrRule)
    try:
        result = study(
            preset=args.preset, image=args.image, seed=args.seed, out=args.out, **choices,
            size=args.size, epochs=args.epochs, lr=None if rule else args.lr,
            lr_fraction=args.lr.fraction if rule else None, ntk_points=args.ntk_points, hidden=args.hidden,
            progress=not args.no_progress, log=log)
    except (ValueError, DataError, StudyError) as err:
        return fail(str(err).strip("'\""))
    if not result.records:
        return fail("every run failed: " + "; ".join(f"{k}: {v}" for k, v in result.errors.items()), 1)
    return 1 if result.errors else 0


def add_image_args(ap: argparse.ArgumentParser, *, name: str, critical_lr: bool = False) -> None:
    """Options shared by the single-image programs (scaling, ntk_evolution, inspect_grid):
    ``--image --configs --runs-dir`` and :func:`add_run_args`."""
    from ntkgrid import presets

    configs = tuple(presets.SCALING)
    ap.add_argument("--image", default=presets.SCALING_IMAGE,
                    help=f"a bundled photo's name or an image file (default: {presets.SCALING_IMAGE})")
    ap.add_argument("--configs", nargs="+", default=list(configs), choices=configs,
                    help="which Table 3 configurations to train (default: %(default)s)")
    ap.add_argument("--runs-dir", type=Path, default=None,
                    help="where the training runs live (default: <out>/runs); point it at another "
                         "experiment's runs (e.g. runs/scaling/runs) to reuse them")
    add_run_args(ap, name=name, critical_lr=critical_lr)


def image_study_options(args: argparse.Namespace):
    """The :class:`ntkgrid.studies.image_runs.ImageStudyOptions` of :func:`add_image_args`' options."""
    from ntkgrid.config import LrRule
    from ntkgrid.studies.image_runs import ImageStudyOptions

    rule = isinstance(args.lr, LrRule)
    return ImageStudyOptions(
        image=args.image, configs=tuple(args.configs), preset=args.preset, seed=args.seed, out=args.out,
        runs_dir=args.runs_dir, size=args.size, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=None if rule else args.lr, lr_fraction=args.lr.fraction if rule else None,
        ntk_points=args.ntk_points, reading=args.reading)


def run_image_study_cli(study, args: argparse.Namespace) -> int:
    """Shared ``main`` of the single-image programs: checks the options of ``args``, runs ``study``
    (:func:`ntkgrid.studies.scaling.run_scaling`, ``ntk_evolution.run_ntk_evolution`` or
    ``inspect_grid.run_inspect_grid``), prints its table, its problems (as warnings) and where
    its report is, and maps the outcome to the exit status: 0 on success, 1 if a run failed, could
    not be analysed or every run failed, 2 for bad arguments or input."""
    from ntkgrid.studies.image_runs import StudyAnalysisError, StudyInputError

    try:
        check_overrides(args)
    except ValueError as err:
        return fail(str(err).strip("'\""))
    try:
        result = study(image_study_options(args), log=log, progress=not args.no_progress)
    except StudyInputError as err:
        return fail(str(err).strip("'\""))
    except StudyAnalysisError as err:
        return fail(str(err), 1)
    runs = result.runs
    if result.analysis is None:
        return fail("every run failed: " + "; ".join(f"{k}: {v}" for k, v in runs.errors.items()), 1)
    log(result.analysis["table"])
    for p in result.problems:
        print(f"warning: {p}", file=sys.stderr)
    log(f"report: {result.report}")
    return 1 if (runs.errors or result.problems) else 0
