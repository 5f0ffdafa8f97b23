"""Interpolation kernels and the multigrid encoding's NTK (issue 22; the paper's second open question).

    python -m experiments.interpolation [--preset quick|paper] [--image NAME|PATH] [--seed 0]
        [--out DIR] [--kernels linear nearest smoothstep cubic] [--grids coarse fine] [--size PX] [--epochs N]
        [--lr X|critical:F] [--ntk-points N] [--hidden W ...] [--no-progress]

Trains Table 3's coarse and fine multigrid networks with each interpolation kernel (nearest,
linear, smoothstep, cubic B-spline: an equal number of nodes per grid), every one at a fraction
of its own critical SGD step at initialisation (default critical:0.5); records float64 NTK
spectra on every training pixel at initialisation, middle and end (total / no-grid / grid), the
grid kernel's off-diagonal share, each spectrum against the linear kernel's, PSNR / MS-SSIM and
training curves. Writes ``results.json`` (a flat ``runs`` list), ``report.md`` and figures to
``--out`` (default ``runs/interpolation/<image>``); rerunning the same command resumes. The study
itself is :func:`ntkgrid.studies.interpolation.run_interpolation_study`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments._cli import lr_arg, run_study_cli


def build_parser() -> argparse.ArgumentParser:
    from ntkgrid import presets

    ap = argparse.ArgumentParser(prog="python -m experiments.interpolation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=("quick", "paper"), default="quick",
                    help="quick: 32 px, 40 epochs, minutes on a 2-core CPU; paper: Table 3's 128 px, 300 epochs "
                         "(for a GPU); see ntkgrid.presets.INTERPOLATION_STUDY (default: %(default)s)")
    ap.add_argument("--image", default="chelsea", help="a bundled photo's name or an image file (default: chelsea)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the initialisation and minibatch order")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: runs/interpolation/<image>)")
    ap.add_argument("--kernels", nargs="+", default=list(presets.INTERPOLATION_KERNELS),
                    choices=list(presets.INTERPOLATION_KERNELS), help="interpolation kernels (default: %(default)s)")
    ap.add_argument("--grids", nargs="+", default=list(presets.INTERPOLATION_GRIDS),
                    choices=list(presets.INTERPOLATION_GRIDS), help="Table 3's grids (default: %(default)s)")
    ap.add_argument("--size", type=int, default=None, help="image side in pixels (default: the preset's)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs (checkpoints scale along)")
    ap.add_argument("--lr", type=lr_arg, default=None, metavar="X|critical:F",
                    help=f"SGD step by hand, or critical:F = F x each network's critical step at initialisation "
                         f"(default: critical:{presets.INTERPOLATION_LR_FRACTION:g})")
    ap.add_argument("--ntk-points", type=int, default=None,
                    help="cap on the NTK points (a centred window; default: every training pixel)")
    ap.add_argument("--hidden", type=int, nargs="+", default=None,
                    help="hidden widths of every MLP (default: the preset's, Table 3's 512 512)")
    ap.add_argument("--no-progress", action="store_true", help="no per-epoch progress bars")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the study; 0 on success, 1 if a run failed, 2 for bad arguments or input."""
    args = build_parser().parse_args(argv)
    from ntkgrid.studies.interpolation import run_interpolation_study

    return run_study_cli(run_interpolation_study, args, kernels=args.kernels, grids=args.grids)


if __name__ == "__main__":
    sys.exit(main())
