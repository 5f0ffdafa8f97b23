"""Where the multigrid encoding's spectrum comes from (the paper's Fig. 2 and Theorem 1).

    python -m experiments.grid_ablation [--sweep-dir DIR] [--data-root DIR]
        [--num-synsets N] [--preset quick|paper] [--seed 0] [--out runs/grid_ablation]
        [--size PX] [--epochs N] [--batch-size N] [--lr X] [--ntk-points N] [--no-progress]

Splits the NTK of the multigrid network into its grid term ``K_grid`` (the gradients
w.r.t. the grid nodes) and the rest, ``K_no_grid = K_total - K_grid`` (the MLP's
parameters: the paper's "MPE (No Grid)"), and averages their spectra over images beside
baseline and fourier, at the middle (dashed) and the end (solid) of training
(``ablation.png`` / ``.json``, Fig. 2), plus every parameter group of the multigrid
network: the MLP, the whole grid and each level (``levels.png`` / ``.json``).

Theorem 1 as three comparisons (``theorem.json``'s ``comparisons``, ``report.md``,
``theorem1_ratio.png``; :func:`ntkgrid.evidence.theorem1`), per image and on the mean, at
initialisation, the middle and the end: the multigrid network's eigenvalues against the
baseline network's (``stated``, the paper's statement), against the no-encoding network with
the multigrid MLP's first-layer fan-in (``fan_in_matched``, the positive control), and
against its own no-grid kernel (``own_no_grid``, true by construction). Then the stated
comparison on kernels recomputed by parameter group (total and no-grid against the
baseline, :func:`ntkgrid.theory.compare_spectra`); plus a control built to fail (the trained multigrid network with its MLP
scaled by :data:`ntkgrid.ablation.CONTROL_SCALE`), whose verdict must be "does not hold". The Weyl bound
(:func:`ntkgrid.spectrum.weyl_bound`) is reported as a check of the kernel split only.

The study is :mod:`ntkgrid.ablation`; this module is its CLI.

The runs are those of the ImageNet sweep (Table 2 settings): ``--sweep-dir`` reads an
existing ``experiments.imagenet_sweep`` output folder; otherwise the sweep is run (or
resumed) in ``<out>/sweep`` with the same options as ``experiments.imagenet_sweep``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from experiments._cli import add_run_args, check_overrides, configs_for, fail, image_side, log
from ntkgrid.presets import PAPER_ENCODINGS

ENCODINGS = PAPER_ENCODINGS  # the encodings the paper compares (ntkgrid.presets; no JAX imported yet)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.grid_ablation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep-dir", type=Path, default=None,
                    help="analyse this experiments.imagenet_sweep output folder instead of training")
    ap.add_argument("--data-root", type=Path, default=None,
                    help="ImageNet-style folder <root>/<wnid>/<image> (default: scikit-image's bundled photos)")
    ap.add_argument("--num-synsets", type=int, default=100, help="synsets to draw, one image each")
    add_run_args(ap, name="grid_ablation", default_preset=None, sweep=True)
    return ap


def _run_sweep(args, out: Path) -> Path | int:
    from ntkgrid import presets, sweep
    from ntkgrid.data import DataError

    preset = args.preset or ("paper" if args.data_root is not None else "quick")
    try:
        check_overrides(args, preset, sweep=True)
        configs = configs_for(presets.IMAGENET, preset, ENCODINGS, args)
        sources, warns = sweep.select_sources(args.data_root, args.num_synsets, args.seed)
    except DataError as err:
        return fail(f"{err} (expected an ImageNet-style folder <root>/<wnid>/<image>)")
    except (ValueError, KeyError) as err:
        return fail(str(err))
    manifest = {"title": "ImageNet sweep for the grid ablation (Fig. 2)", "table": "imagenet", "preset": preset,
                "seed": args.seed, "data_root": None if args.data_root is None else str(args.data_root.resolve()),
                "num_images": args.num_synsets, "selection_warnings": warns}
    sweep_dir = out / "sweep"
    try:
        sweep.run_sweep(sweep_dir, sources, configs, size=image_side(args, preset, sweep=True), manifest=manifest, log=log,
                        progress=not args.no_progress)
    except sweep.SweepError as err:
        return fail(str(err))
    return sweep_dir


def main(argv: list[str] | None = None) -> int:
    """Run the ablation; 0 on success, 1 if some analysis failed, 2 for bad arguments or input."""
    args = build_parser().parse_args(argv)
    from ntkgrid import ablation, sweep  # after parsing: --help loads no JAX

    out = args.out or Path("runs/grid_ablation")
    t0 = time.perf_counter()
    if args.sweep_dir is not None:
        sweep_dir = args.sweep_dir
    else:
        sweep_dir = _run_sweep(args, out)
        if isinstance(sweep_dir, int):
            return sweep_dir
    try:
        res = ablation.analyse(Path(sweep_dir), out)
    except sweep.SweepError as err:
        return fail(str(err))
    for cp, s in res["summary"].items():
        for key in ("total", "no_grid"):
            t = s[f"theorem1_{key}"]
            log(f"{cp}: Theorem 1 ({key} vs baseline) holds on {t['images_holding']}/{t['images_compared']} images, "
                f"on the mean: {(t['on_mean'] or {}).get('verdict', '-')}")
    for row in res["comparisons"].get("on_mean", []):
        log(f"{row['checkpoint']}: Theorem 1, {row['comparison']} comparison, on the mean: {row['verdict']}")
    for c in res["control"]:
        log(f"control (MLP scaled by {c['scale']}): {c['verdict']}")
    log(f"report: {out / 'report.md'}  ({time.perf_counter() - t0:.0f} s)")
    return 1 if res["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
