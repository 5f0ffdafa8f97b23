"""3-D occupancy (the paper's Appendix E and Fig. 5b): baseline vs Fourier vs multigrid.

    python -m experiments.occupancy [--mesh PATH [PATH ...]] [--download NAME [NAME ...]]
        [--preset quick|paper] [--encodings baseline fourier multigrid] [--seed 0]
        [--out runs/occupancy] [--epochs N] [--batch-size N] [--lr LR] [--pool-size N] [--eval-size N]
        [--resolution PX] [--mc-resolution N] [--ntk-points N] [--view AZ EL] [--hidden W ...]
        [--sampling fresh|pool] [--points-per-epoch N] [--steps-per-epoch N] [--region bbox|cube]
        [--ntk-output sigmoid|logit] [--curve-points N] [--config-json ENCODING=PATH ...]

With neither ``--mesh`` nor ``--download`` the procedural default shape
(:func:`ntkgrid.data.meshes.default_shape`) is used (``--mesh default`` adds it to a list).
Each mesh is scaled so its longest
axis spans [0, 1]; its Table 4 row is picked by name (armadillo / happy_buddha / dragon,
otherwise armadillo's). Several meshes: their spectra are averaged (Fig. 5b). A mesh that
cannot be used is reported (file and problem) and the others still run; the exit status
is then 1. Outputs (see experiments/OCCUPANCY.md): ``<out>/<mesh>/{render.png,
iou_curve.png, surface_<enc>.ply, metrics.json, <enc>/...}``, ``<out>/spectra.{png,json}``
(the ``--ntk-output`` kernel) and ``<out>/spectra_<other>.{png,json}``,
``<out>/results.json``, ``<out>/report.md``; labelled pools and per-seed label caches in
``<out>/pools/``. ``--config-json multigrid=runs/tune/best_occupancy_multigrid.json``
replaces that encoding's Table 4 entry by a tuned one (``python -m experiments.tune
--task occupancy``), as ``--config-json`` does in the 2D sweep. The study itself is
:func:`ntkgrid.occupancy.run_occupancy_study`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments._cli import fail
from ntkgrid import occupancy as occ


def build_parser() -> argparse.ArgumentParser:
    from ntkgrid.data.meshes import STANFORD_MODELS

    ap = argparse.ArgumentParser(prog="python -m experiments.occupancy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mesh", nargs="+", default=[], metavar="PATH",
                    help="mesh files (.ply .off .obj .stl, anything trimesh reads); 'default': the procedural shape")
    ap.add_argument("--download", nargs="+", default=[], metavar="NAME", choices=sorted([*STANFORD_MODELS, "paper"]),
                    help="Stanford scans to fetch (cached under --cache) and use; 'paper': the paper's three "
                         "(armadillo, dragon, happy_buddha)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="where downloads go (default: $NTKGRID_CACHE or ~/.cache/ntkgrid, then meshes/)")
    ap.add_argument("--preset", choices=("quick", "paper"), default="quick",
                    help="quick: minutes on a CPU (default); paper: Table 4, 4000 epochs")
    ap.add_argument("--encodings", nargs="+", default=list(occ.ENCODINGS), choices=occ.ENCODINGS)
    ap.add_argument("--seed", type=int, default=0, help="initialisation, minibatches and pools")
    ap.add_argument("--out", type=Path, default=Path("runs/occupancy"), help="output directory")
    ap.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    ap.add_argument("--batch-size", type=int, default=None, help="override the preset's batch size")
    ap.add_argument("--lr", type=float, default=None, help="override the learning rate (every encoding)")
    ap.add_argument("--pool-size", type=int, default=None,
                    help="training pool size (split uniform/near-surface as in the preset)")
    ap.add_argument("--eval-size", type=int, default=None, help="size of each held-out pool")
    ap.add_argument("--resolution", type=int, default=None, help="rendered image side in pixels")
    ap.add_argument("--render-steps", type=int, default=None, help="ray-marching samples per box diagonal")
    ap.add_argument("--mc-resolution", type=int, default=None, help="marching-cubes grid nodes per axis")
    ap.add_argument("--ntk-points", type=int, default=None, help="points of the NTK spectra (0: none)")
    ap.add_argument("--hidden", type=int, nargs="+", default=None, metavar="WIDTH",
                    help="override the 8x256 hidden widths (for tiny test runs)")
    ap.add_argument("--view", type=float, nargs=2, default=None, metavar=("AZ", "EL"),
                    help="camera azimuth and elevation in degrees (y is up)")
    ap.add_argument("--sampling", choices=occ.SAMPLINGS, default=None,
                    help="fresh: new uniform points every epoch, labelled on the fly (Appendix E; paper default); "
                         "pool: a fixed labelled pool, half near the surface (quick default)")
    ap.add_argument("--points-per-epoch", type=int, default=None,
                    help="points an epoch trains on (paper: 100000; 0: use --steps-per-epoch)")
    ap.add_argument("--steps-per-epoch", type=int, default=None,
                    help="SGD steps an epoch takes when --points-per-epoch is 0 (quick: 8)")
    ap.add_argument("--region", choices=occ.REGIONS, default=None,
                    help="uniform points in the scaled mesh's bounding box (default) or the unit cube")
    ap.add_argument("--ntk-output", choices=occ.NTK_OUTPUTS, default=None,
                    help="kernel of spectra.png: sigmoid output (default, what the loss sees) or logit; "
                         "the other one goes to spectra_<other>.png")
    ap.add_argument("--curve-points", type=int, default=None, help="epochs of the IoU curve (evenly spaced)")
    ap.add_argument("--config-json", action="append", default=[], metavar="ENCODING=PATH",
                    help="a TrainConfig JSON (e.g. experiments.tune's best_occupancy_<encoding>.json) "
                         "replacing that encoding's Table 4 entry; repeatable")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def _setup(args) -> occ.OccupancySetup:
    s = occ.QUICK_SETUP if args.preset == "quick" else occ.PAPER_SETUP
    ch = {}
    if args.pool_size is not None:
        total = s.pool_uniform + s.pool_surface
        ch["pool_surface"] = round(args.pool_size * s.pool_surface / total)
        ch["pool_uniform"] = args.pool_size - ch["pool_surface"]
    if args.eval_size is not None:
        ch["eval_uniform"] = ch["eval_surface"] = args.eval_size
    for arg, field in (("resolution", "render_size"), ("render_steps", "render_steps"),
                       ("mc_resolution", "mc_resolution")):
        if getattr(args, arg) is not None:
            ch[field] = getattr(args, arg)
    if args.view is not None:
        ch["view"] = tuple(args.view)
    for arg in ("sampling", "points_per_epoch", "steps_per_epoch", "region", "ntk_output", "curve_points"):
        if getattr(args, arg) is not None:
            ch[arg] = getattr(args, arg)
    return s.replace(**ch)


def _check_args(args) -> None:
    """Impossible option values: a ``ValueError`` naming the option (exit 2 before anything runs)."""
    import math

    for opt, val, low in (("--seed", args.seed, 0), ("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1),
                          ("--pool-size", args.pool_size, 1), ("--eval-size", args.eval_size, 1),
                          ("--resolution", args.resolution, 1), ("--render-steps", args.render_steps, 1),
                          ("--mc-resolution", args.mc_resolution, 2), ("--ntk-points", args.ntk_points, 0),
                          ("--points-per-epoch", args.points_per_epoch, 0),
                          ("--steps-per-epoch", args.steps_per_epoch, 1), ("--curve-points", args.curve_points, 0)):
        if val is not None and val < low:
            raise ValueError(f"{opt} must be >= {low}, got {val}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0, got {args.lr}")
    if args.hidden is not None and min(args.hidden) < 1:
        raise ValueError(f"--hidden widths must be >= 1, got {' '.join(map(str, args.hidden))}")
    if args.view is not None and not all(math.isfinite(v) for v in args.view):
        raise ValueError(f"--view must be two finite angles, got {args.view[0]} {args.view[1]}")


def _check_out(out: Path) -> None:
    """``--out`` must be a folder we can write: a ``ValueError`` naming it otherwise."""
    import tempfile

    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot write there ({exc.strerror or exc})") from exc


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the exit status (0 = every mesh ran, 1 = some failed)."""
    from ntkgrid.sweep import load_config_json

    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        _check_args(args)
        setup = _setup(args)
        overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr,
                     "ntk_points": args.ntk_points,
                     "hidden": tuple(args.hidden) if args.hidden else None}
        tuned = dict(load_config_json(spec, occ.ENCODINGS) for spec in args.config_json)
        for enc, cfg in tuned.items():
            if cfg.loss != "bce":
                raise ValueError(f"--config-json {enc}: a {cfg.loss!r} config is not an occupancy one (loss 'bce')")
        occ.configs_for("default_shape", args.preset, args.encodings, args.seed, setup=setup, tuned=tuned,
                        **overrides)  # validate early
        _check_out(out)
    except ValueError as err:
        return fail(str(err))
    res = occ.run_occupancy_study(
        args.mesh, args.download, out, preset=args.preset, encodings=args.encodings, seed=args.seed, setup=setup,
        tuned=tuned, overrides=overrides, cache=args.cache, progress=not args.no_progress,
        config_json=args.config_json, argv=sys.argv[1:] if argv is None else argv, log=_say, warn=_warn)
    return 1 if res.n_failed or res.diverged else 0


def _say(message: str) -> None:
    print(message, flush=True)


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
