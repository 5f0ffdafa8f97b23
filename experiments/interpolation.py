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

from experiments._cli import add_study_overrides, run_study_cli, study_parser


def build_parser() -> argparse.ArgumentParser:
    from ntkgrid import presets

    ap = study_parser("interpolation", "INTERPOLATION_STUDY", __doc__.split("\n\n")[0])
    ap.add_argument("--kernels", nargs="+", default=list(presets.INTERPOLATION_KERNELS),
                    choices=list(presets.INTERPOLATION_KERNELS), help="interpolation kernels (default: %(default)s)")
    ap.add_argument("--grids", nargs="+", default=list(presets.INTERPOLATION_GRIDS),
                    choices=list(presets.INTERPOLATION_GRIDS), help="Table 3's grids (default: %(default)s)")
    return add_study_overrides(ap, presets.INTERPOLATION_LR_FRACTION)


def main(argv: list[str] | None = None) -> int:
    """Run the study; 0 on success, 1 if a run failed, 2 for bad arguments or input."""
    args = build_parser().parse_args(argv)
    from ntkgrid.studies.interpolation import run_interpolation_study

    return run_study_cli(run_interpolation_study, args, kernels=args.kernels, grids=args.grids)


if __name__ == "__main__":
    sys.exit(main())
