"""The scaling study on one image (the paper's Table 3, Figs. 3, 4 and 6).

    python -m experiments.scaling [--image NAME|PATH] [--configs ...] [--preset quick|paper]
        [--seed 0] [--out runs/scaling] [--runs-dir DIR] [--size PX] [--epochs N]
        [--batch-size N] [--lr X|critical:F] [--ntk-points N] [--no-progress]

Trains baseline, fourier_low/mid/high (L = 4, 8, 16) and multigrid_coarse/fine (one grid
of 100 / 200 nodes per side; 50 / 100 in the quick preset's 64 px images) on one image
(default: scikit-image's ``chelsea``, a cat, standing in for the paper's dog). ``--size``
also scales the grids (``x * size / 128``) so the coarse grid stays coarser and the fine
grid finer than the image. Writes to
``--out``: ``regressed.png`` (ground truth and every prediction, Fig. 3), ``table.md`` /
``table.csv`` / ``table.json`` (PSNR and MS-SSIM beside the paper's), ``spectra.png`` /
``.json`` (three panels: baseline vs Fourier, baseline vs multigrid, fourier_high vs
multigrid; dashed middle, solid end; Fig. 4), ``curves.png`` / ``.json`` (full-image MSE and
PSNR at regular epochs, from each run's training curve, Fig. 6), ``images/<config>.png`` and
``report.md``. Training runs live in
``--runs-dir`` (default ``<out>/runs``) and are resumed or reused from there. The study itself
is :func:`ntkgrid.studies.scaling.run_scaling`.
"""

from __future__ import annotations

import argparse
import sys

from experiments._cli import add_image_args, run_image_study_cli


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.scaling", description=__doc__.split("\n\n")[0])
    add_image_args(ap, name="scaling", critical_lr=True)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the scaling study; 0 on success, 1 if a run failed, 2 for bad arguments/input."""
    args = build_parser().parse_args(argv)
    from ntkgrid.studies.scaling import run_scaling

    return run_image_study_cli(run_scaling, args)


if __name__ == "__main__":
    sys.exit(main())
