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
The search itself is :func:`ntkgrid.studies.tune.run_tune`.
"""

from __future__ import annotations

import argparse
import sys

from experiments._cli import add_run_args, check_overrides, fail, log
from ntkgrid.presets import PAPER_ENCODINGS

ENCODINGS = PAPER_ENCODINGS  # the encodings the paper compares (ntkgrid.presets; no JAX imported yet)
MISSING = "experiments.tune needs Optuna, an optional extra: pip install 'ntkgrid[tune]' (or: uv sync --extra tune)"


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


def main(argv: list[str] | None = None) -> int:
    """Run (or continue) the study; 0 on success, 1 if no trial completed, 2 for bad arguments, a missing
    Optuna or input."""
    args = build_parser().parse_args(argv)
    from ntkgrid.studies import tune

    try:
        tune.require_optuna()
    except tune.OptunaMissing:
        return fail(MISSING)
    try:
        check_overrides(args)
    except ValueError as err:
        return fail(str(err).strip("'\""))
    options = tune.TuneOptions(
        task=args.task, encoding=args.encoding, image=args.image, mesh=args.mesh, hidden=args.hidden,
        pool_size=args.pool_size, trials=args.trials, timeout=args.timeout, lr_range=args.lr_range,
        batch_range=args.batch_range, preset=args.preset, seed=args.seed, out=args.out, size=args.size,
        epochs=args.epochs, ntk_points=args.ntk_points, progress=not args.no_progress)
    try:
        result = tune.run_tune(options, log=log)
    except tune.TuneInputError as err:
        return fail(str(err).strip("'\""))
    if result.best is None:
        return fail("no trial completed", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
