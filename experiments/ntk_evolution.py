"""How the empirical NTK changes during training (the paper's Appendix B, Fig. 11).

    python -m experiments.ntk_evolution [--image NAME|PATH] [--configs ...]
        [--preset quick|paper] [--seed 0] [--out runs/ntk_evolution] [--runs-dir DIR]
        [--size PX] [--epochs N] [--batch-size N] [--lr X] [--ntk-points N] [--no-progress]

Trains the scaling study's configurations (Table 3) on one image and compares the kernel
at the start (epoch 0), the middle and the end of training: spectra at epoch 0 (dotted)
and at the end (solid) in ``spectra.png`` / ``.json``, and the relative Frobenius change
``||K1 - K0||_F / ||K0||_F`` (:func:`ntkgrid.spectrum.kernel_change`) of 0 -> end,
0 -> middle and middle -> end in ``kernel_change.png`` / ``.json``, with ``report.md``.
The kernels are recomputed in float64 from each run's checkpoints on its spectrum points.
``--runs-dir runs/scaling/runs`` reuses the scaling experiment's runs (same settings).

Predicted against measured training (the paper's Eqs. 5-7): from the kernel on the whole
training image at epoch 0 and at the middle of training, the linearised network replayed
through the run's own minibatches (:func:`ntkgrid.theory.replay_training`) and SGD's expected
step (:func:`ntkgrid.theory.predict_training`), against the full-image loss at every later
epoch the run measured (``prediction_<config>.png`` / ``.json``: loss curves and the
residual's energy per eigenvalue band), with the relative errors and the kernel-motion share
in ``report.md`` (:func:`ntkgrid.evidence.predicted_vs_measured`). The study itself is
:func:`ntkgrid.studies.ntk_evolution.run_ntk_evolution`.
"""

from __future__ import annotations

import argparse
import sys

from experiments._cli import add_image_args, fail, run_image_study_cli


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.ntk_evolution", description=__doc__.split("\n\n")[0])
    add_image_args(ap, name="ntk_evolution")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; 0 on success, 1 if some run failed or could not be analysed, 2 for bad input."""
    args = build_parser().parse_args(argv)
    if args.ntk_points == 0:
        return fail("--ntk-points 0 means no kernels, and ntk_evolution measures how the kernel moves: "
                    "give N >= 1 points or leave --ntk-points out (every training pixel)")
    from ntkgrid.studies.ntk_evolution import run_ntk_evolution

    return run_image_study_cli(run_ntk_evolution, args)


if __name__ == "__main__":
    sys.exit(main())
