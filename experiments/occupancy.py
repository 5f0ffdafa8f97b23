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
--task occupancy``), as ``--config-json`` does in the 2D sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from experiments._cli import fail
from ntkgrid import occupancy as occ
from ntkgrid.files import write_json

#: The paper's three Stanford scans (Table 4's rows, Fig. 5b's meshes).
PAPER_MESHES = ("armadillo", "dragon", "happy_buddha")


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


def _sources(args, out: Path) -> list[tuple[str, str, object]]:
    """``[(name, kind, what)]``: kind "file" (path), "download" (model name) or "default".

    ``name`` is the mesh's folder under ``out``: ``<stem>-<content hash>`` for a file
    (:func:`ntkgrid.occupancy.mesh_folder_name`; the bare stem when ``out`` holds that file's
    finished folder from an older version), the model name for a download,
    ``default_shape`` for the procedural shape. The same mesh given twice runs once."""
    out_list = []
    for p in args.mesh:
        if p == "default" and not Path(p).exists():
            out_list.append(("default_shape", "default", None))
        else:
            out_list.append((occ.legacy_folder(out, p) or occ.mesh_folder_name(p), "file", p))
    names = [m for n in args.download for m in (PAPER_MESHES if n == "paper" else (n,))]
    out_list += [(n, "download", n) for n in dict.fromkeys(names)]
    if not out_list:
        out_list.append(("default_shape", "default", None))
    unique: dict[str, tuple[str, str, object]] = {}
    for name, kind, what in out_list:
        if name in unique:
            print(f"note: {what if kind == 'file' else name} is the same mesh as {unique[name][2] or name} "
                  f"(folder {name}); it runs once", flush=True)
            continue
        unique[name] = (name, kind, what)
    return list(unique.values())


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


def _load(kind: str, what, cache: Path | None):
    from ntkgrid.data import meshes as M

    if kind == "default":
        return M.default_shape()
    if kind == "download":
        root = cache if cache is not None else M.default_cache_dir()
        return M.load_mesh(M.download_stanford(what, root / "meshes"))
    return M.load_mesh(what)


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the exit status (0 = every mesh ran, 1 = some failed)."""
    from ntkgrid.data import DataError
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
    t_start = time.perf_counter()
    results, errors, reused = [], [], []
    for name, kind, what in _sources(args, out):
        label = what if kind == "file" else (f"--download {what}" if kind == "download" else "default shape")
        print(f"== {name} ({label})", flush=True)
        try:
            configs = occ.configs_for(name, args.preset, args.encodings, args.seed, setup=setup, tuned=tuned,
                                      **overrides)
            done = occ.finished_result(out / name, configs, setup, args.seed, setup.ntk_output)
            if done is not None:
                print(f"[{name}] finished earlier with these settings: reused as it is ({out / name})", flush=True)
                reused.append(done)
                continue
            t_load = time.perf_counter()
            mesh = _load(kind, what, args.cache)
            t_load = time.perf_counter() - t_load
            key, matched = occ.mesh_preset_key(name)
            print(f"[{name}] Table 4 row: {key}" + ("" if matched else " (name not recognised: armadillo's)"),
                  flush=True)
            res = occ.run_mesh(mesh, name, configs, setup, out / name, seed=args.seed, cache_dir=out / "pools",
                               progress=not args.no_progress, log=lambda m: print(m, flush=True),
                               load_seconds=t_load)
            results.append(res)
        except DataError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            errors.append({"mesh": name, "source": err.source, "error": str(err)})
        except Exception as err:  # noqa: BLE001 - one mesh's failure must not lose the others
            first = (str(err).strip().splitlines() or [""])[0]
            msg = f"{type(err).__name__}: {first}" if not isinstance(err, ValueError) else first
            print(f"error: {name}: {msg}{_traceback_note(out, name)}", file=sys.stderr, flush=True)
            errors.append({"mesh": name, "source": str(what), "error": msg})
    total = time.perf_counter() - t_start
    diverged = [f"{r.name}/{enc} diverged at epoch {run.get('diverged_epoch')} (non-finite loss; training stopped "
                "there)" for r in results + reused for enc, run in r.runs.items() if run.get("diverged")]
    new_results, n_failed, n_tried = bool(results), len(errors), len(errors) + len(results) + len(reused)
    results, errors = occ.merge_results(out, results + reused, errors,
                                        warn=lambda m: print(m, file=sys.stderr, flush=True),
                                        ntk_output=setup.ntk_output)
    untouched = not new_results and not n_failed and (out / "results.json").is_file()
    if untouched:
        print(f"nothing new: every mesh finished earlier with these settings; {out} left as it was")
    if new_results or (results and not (out / "spectra.png").is_file()):
        for output in (setup.ntk_output, *(o for o in occ.NTK_OUTPUTS if o != setup.ntk_output)):
            stem = "spectra" if output == setup.ntk_output else f"spectra_{output}"
            summary = occ.plot_mean_spectra(results, out / f"{stem}.png", output=output)
            write_json(out / f"{stem}.json", {"kernel": output, **summary}, indent=None)
            counts = {e: {w: v.get("count") for w, v in s.items()} for e, s in summary.items()}
            print(f"spectra ({output} kernel): {out / f'{stem}.png'} (meshes averaged: {counts})")
    if (results or errors) and not untouched:
        meta = {"preset": args.preset, "seed": args.seed, "encodings": args.encodings,
                "ntk_output": setup.ntk_output, "config_json": list(args.config_json),
                "setup": dataclasses.asdict(setup), "argv": sys.argv[1:] if argv is None else list(argv),
                "seconds": total}
        jpath, mpath = occ.write_results(results, errors, out, meta)
        if results:
            print(occ.results_table(results))
        print(f"results: {jpath}, {mpath}  ({total:.0f} s)")
    for line in diverged:
        print(f"error: {line}", file=sys.stderr, flush=True)
    if n_failed:
        print(f"{n_failed} of {n_tried} mesh(es) failed: "
              + ", ".join(e["mesh"] for e in errors[-n_failed:]), file=sys.stderr)
    return 1 if n_failed or diverged else 0


def _traceback_note(out: Path, name: str) -> str:
    """Write the current exception's traceback to ``<out>/logs/<name>.traceback.txt`` (for a bug
    report; the terminal gets one line) and say where; nothing when that cannot be written."""
    import traceback

    from ntkgrid.files import write_text

    path = out / "logs" / f"{name}.traceback.txt"
    try:
        write_text(path, traceback.format_exc())
    except OSError:
        return ""
    return f" (traceback: {path})"


if __name__ == "__main__":
    sys.exit(main())
