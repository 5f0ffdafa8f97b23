"""Search for the reading of the paper's training under which Tables 2 and 3 train as printed
(issue 13; the evidence is in experiments/RECIPE.md).

    python -m experiments.recipe screen [--readings ...] [--size 64] [--screen-epochs 2] [--out DIR]
    python -m experiments.recipe train  [--readings ...] [--size 64] [--epochs3 30] [--epochs2 10]
        [--images chelsea astronaut coffee] [--tables 2 3] [--out DIR]
    python -m experiments.recipe table  [--out DIR ...] [--long DIR ...]   # the evidence table

``screen``: for every reading (``ntkgrid.presets.READINGS``) and every configuration of
Table 3 (lr 100, batch 32) and Table 2 (its lr and batch), the critical step predicted by
the minibatch NTK at initialisation (:func:`ntkgrid.stability.critical_lr`, median over 4
minibatches of chelsea's pixels) and what happens in ``--screen-epochs`` epochs at the
table's lr: diverged (epoch) or not. ``train``: a reduced schedule with the tables' lr and
batch: Table 3 on chelsea for ``--epochs3`` epochs, Table 2 on ``--images`` for
``--epochs2`` epochs, final full-image PSNR. Images are ``--size`` px squares; Table 3's
grids are scaled with the image (``ntkgrid.presets.scaled_grid``). Writes
``<out>/screen.json`` / ``train.json`` (every number); ``table`` merges the JSON files of
every ``--out`` given (and, as extra columns, the ``train.json`` of every ``--long`` folder:
runs at the printed epoch counts) and prints the one markdown table of experiments/RECIPE.md.
The study itself is :mod:`ntkgrid.studies.recipe`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments._cli import fail, log


def build_parser() -> argparse.ArgumentParser:
    from ntkgrid import presets, readings

    table3, table2 = tuple(presets.SCALING), tuple(presets.IMAGENET)  # ntkgrid.studies.recipe.TABLE3 / TABLE2
    ap = argparse.ArgumentParser(prog="python -m experiments.recipe", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("screen", "train", "table"))
    ap.add_argument("--readings", nargs="+", default=list(readings.READINGS), choices=sorted(readings.READINGS))
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    ap.add_argument("--screen-epochs", type=int, default=2, help="epochs of the observed-stability runs")
    ap.add_argument("--epochs3", type=int, default=30, help="train: Table 3 epochs (paper: 300)")
    ap.add_argument("--epochs2", type=int, default=10, help="train: Table 2 epochs (paper: 100)")
    ap.add_argument("--images", nargs="+", default=["chelsea", "astronaut", "coffee"],
                    help="train: bundled photos for Table 2 (default: %(default)s)")
    ap.add_argument("--tables", nargs="+", default=["2", "3"], choices=["2", "3"])
    ap.add_argument("--configs3", nargs="+", default=list(table3), choices=table3, help="Table 3 rows to run")
    ap.add_argument("--configs2", nargs="+", default=list(table2), choices=table2, help="Table 2 rows to run")
    ap.add_argument("--out", type=Path, nargs="+", default=[Path("runs/recipe")],
                    help="output folder (table: every folder to merge)")
    ap.add_argument("--long", type=Path, nargs="*", default=[],
                    help="table: folders whose train.json hold runs at the printed epoch counts (extra columns)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command; 0 on success, 2 for bad arguments or unreadable results."""
    args = build_parser().parse_args(argv)
    from ntkgrid.studies import recipe

    if args.command == "table":
        for opt, folders in (("--out", args.out), ("--long", args.long)):
            for d in folders:
                if not d.is_dir():
                    return fail(f"{opt} {d}: no such folder")
                if not any((d / n).exists() for n in ("screen.json", "train.json")):
                    return fail(f"{opt} {d}: holds neither screen.json nor train.json (run screen or train first)")
        try:
            log(recipe.table(args.out, args.long))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            return fail(f"recipe table: unreadable results ({type(err).__name__}: {err})")
        return 0
    recipe.run_recipe(recipe.RecipeOptions(**{**vars(args), "out": args.out[0]}), log=log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
