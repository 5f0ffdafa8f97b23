"""Zhao et al. (CVPR 2024): grid tangent kernels, their three results, and MulFAGrid.

    python -m experiments.gtk [--preset quick|paper] [--out runs/gtk] [--seed 0]
        [--set FIELD=VALUE ...]

Panels (see experiments/GTK.md):

* (a) ``spectrum_1d.png``, ``spectrum_2d.png``: the GTK's energy per Fourier mode
  (:func:`ntkgrid.gtk.fourier_rayleigh`) and its eigenvalues, dense grid vs MulFAGrid.
* (b) ``bounds.png``: the generalisation bound ``sqrt(2 Y^T G^-1 Y / n)`` of a two-point
  dataset over the labels ``(Y1, Y2)``, for both models.
* (c) ``error_maps.png``: per-pixel error of 2D image fits; ``occupancy_slices.png``: a
  slice of the 3D occupancy fits.
* ``results.json`` / ``results.md``: the checks of results 1 and 2 (GTK against
  neural-tangents, gradient descent against the GTK ODE, GTK stationarity), the panel
  summaries, and PSNR / MS-SSIM / IoU of the fits.

``--set`` overrides any field of :class:`ntkgrid.gtk_study.GTKSetup` (a Python literal, e.g.
``--set image_size=32 --set image_lrs="(('multigrid', 30.0),)"``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from experiments._cli import fail, log

if TYPE_CHECKING:
    from ntkgrid.gtk_study import GTKSetup


def parse_sets(items: list[str], base: GTKSetup) -> GTKSetup:
    """Apply ``FIELD=VALUE`` overrides (Python literals) to ``base``."""
    from ntkgrid.gtk_study import MODELS, GTKSetup

    fields = {f.name for f in dataclasses.fields(GTKSetup)}
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set expects FIELD=VALUE with FIELD one of {sorted(fields)}, got {item!r}")
        try:
            changes[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"--set {key}: {value!r} is not a Python literal") from err
    setup = dataclasses.replace(base, **changes)
    unknown = set(setup.models) - set(MODELS)
    if unknown:
        raise ValueError(f"--set models: unknown {sorted(unknown)}; choose from {MODELS}")
    return setup


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.gtk", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=("quick", "paper"), default="quick")
    ap.add_argument("--out", type=Path, default=Path("runs/gtk"))
    ap.add_argument("--seed", type=int, default=0, help="initialisations, filters, points and minibatches")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a GTKSetup field (repeatable)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run every panel (:func:`ntkgrid.gtk_study.run_study`): the figures, ``results.json`` and
    ``results.md`` under ``--out``. Returns the exit status (0 ok, 2 a bad ``--set``)."""
    args = build_parser().parse_args(argv)
    from ntkgrid.gtk_study import GTK_PAPER, GTK_QUICK, run_study  # after parsing: --help loads no JAX

    try:
        setup = parse_sets(args.sets, GTK_QUICK if args.preset == "quick" else GTK_PAPER)
    except ValueError as err:
        return fail(str(err))
    run_study(setup, args.out, preset=args.preset, seed=args.seed, log=log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
