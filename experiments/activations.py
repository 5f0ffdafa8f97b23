"""Activation functions and the multigrid encoding's NTK (issue 22; the paper's first open question).

    python -m experiments.activations [--preset quick|paper] [--image NAME|PATH] [--seed 0]
        [--out DIR] [--activations relu tanh gaussian sine [sine_ntk]] [--size PX] [--epochs N]
        [--lr X|critical:F] [--ntk-points N] [--hidden W ...] [--no-progress]

Trains ReLU, tanh, Gaussian and sine (SIREN) networks, each without an encoding, with Table 3's
mid Fourier features and with its coarse multigrid, every one at a fraction of its own critical
SGD step at initialisation (default critical:0.5); records float64 NTK spectra on every training
pixel at initialisation, middle and end (total / no-grid / grid for multigrid), Theorem 1 as
stated and fan-in matched per activation, kernel locality, PSNR / MS-SSIM and training curves.
Writes ``results.json`` (a flat ``runs`` list), ``report.md`` and figures to ``--out``
(default ``runs/activations/<image>``); rerunning the same command resumes. The study itself is
:func:`ntkgrid.studies.activations.run_activation_study`.
"""

from __future__ import annotations

import argparse
import sys

from experiments._cli import add_study_overrides, run_study_cli, study_parser


def build_parser() -> argparse.ArgumentParser:
    from ntkgrid import presets

    ap = study_parser("activations", "ACTIVATION_STUDY", __doc__.split("\n\n")[0])
    ap.add_argument("--activations", nargs="+", default=list(presets.ACTIVATION_DEFAULTS),
                    choices=list(presets.ACTIVATION_VARIANTS), help="activation variants (default: %(default)s)")
    return add_study_overrides(ap, presets.ACTIVATION_LR_FRACTION)


def main(argv: list[str] | None = None) -> int:
    """Run the study; 0 on success, 1 if a run failed, 2 for bad arguments or input."""
    args = build_parser().parse_args(argv)
    from ntkgrid.studies.activations import run_activation_study

    return run_study_cli(run_activation_study, args, activations=args.activations)


if __name__ == "__main__":
    sys.exit(main())
