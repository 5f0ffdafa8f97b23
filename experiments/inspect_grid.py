"""What the grid and the MLP learn (the paper's Appendix C, Figs. 12 and 13).

    python -m experiments.inspect_grid [--image NAME|PATH] [--configs ...]
        [--preset quick|paper] [--seed 0] [--out runs/inspect_grid] [--runs-dir DIR]
        [--size PX] [--epochs N] [--batch-size N] [--lr X] [--ntk-points N] [--no-progress]

Trains the scaling study's configurations (Table 3) on one image, then draws

* ``grid_<config>.png`` for every multigrid config: each level's learned node values,
  one grey-scale image per feature (table ``(r*r, k)`` -> ``(r, r, k)``, rows = y,
  columns = x, as the image), with ``grid_<config>.json`` (per level and feature: min,
  max, mean, std, and the nodes no pixel touches, which keep their initial values) and
  ``grid_<config>.npz`` (the raw ``(r, r, k)`` arrays and the untouched-node masks);
* ``activation_regions.png`` / ``.json``: for every config, the ReLU activation pattern
  (on/off state of all hidden neurons) of each pixel coloured by pattern id, and the
  number of distinct patterns (activation regions, the paper's Eq. 15) over all layers
  and per layer;

and ``report.md``. ``--runs-dir runs/scaling/runs`` reuses the scaling experiment's runs.
The study itself is :func:`ntkgrid.studies.inspect_grid.run_inspect_grid`.
"""

from __future__ import annotations

import argparse
import sys

from experiments._cli import add_image_args, run_image_study_cli


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.inspect_grid", description=__doc__.split("\n\n")[0])
    add_image_args(ap, name="inspect_grid")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; 0 on success, 1 if a run failed, 2 for bad arguments/input."""
    args = build_parser().parse_args(argv)
    from ntkgrid.studies.inspect_grid import run_inspect_grid

    return run_image_study_cli(run_inspect_grid, args)


if __name__ == "__main__":
    sys.exit(main())
