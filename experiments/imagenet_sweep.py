"""The ImageNet sweep (the paper's Table 1 ImageNet columns and Fig. 5a).

    python -m experiments.imagenet_sweep [--data-root DIR] [--num-synsets 100] [--seed 0]
        [--preset paper|quick] [--out DIR] [--shard i/n|auto] [--distributed] [--encodings ...]
        [--runs-per-program N|auto] [--matmul-precision default|highest]
        [--config-json NAME=PATH ...] [--size PX] [--epochs N] [--batch-size N] [--lr X]
        [--ntk-points N] [--no-progress]
    python -m experiments.imagenet_sweep merge --out DIR [SHARD_DIR ...]

Trains baseline, fourier and multigrid (Table 2 settings with ``--preset paper``) on one
image per synset of an ImageNet-style folder ``<root>/<wnid>/<image>`` (the synsets and
the image in each are drawn with ``--seed``). Without ``--data-root`` it runs on the
photos bundled with scikit-image, and the preset defaults to ``quick``; with a data root
it defaults to ``paper``.

Writes to ``--out`` (default ``runs/imagenet_sweep``, or ``.../shard-i-of-n`` with
``--shard``): ``results/<image>.json`` per image, ``summary.csv``/``summary.md`` (mean,
std, min, max of PSNR and MS-SSIM per encoding), ``spectra.png``/``spectra.json`` (mean
NTK spectra at the middle and the end of training, resampled to 8000 values, with the
numerical floor; the quick preset takes spectra at the end only, of the total kernel), ``report.md`` (also lists skipped files), and ``runs/`` (every training
run). Rerunning skips finished images; ``merge`` combines shard folders.

The images of one encoding train together, ``--runs-per-program`` of them in one compiled
program (default ``auto``: sized from the device's memory; the numbers do not depend on
it), sharded over the local devices when there are several. ``--shard auto`` runs this
process's share ``jax.process_index()/jax.process_count()``; with ``--distributed``
``jax.distributed.initialize()`` is called first (it reads the cluster from the
environment: SLURM, or ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``).
On a CPU the program asks XLA for one device per core (at most 8; set
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` to choose), so a group's runs
also spread over the cores. Training uses JAX's default float32 matmuls (TF32 on recent
NVIDIA GPUs); ``--matmul-precision highest`` trains in full float32. Kernels and spectra
are float64.

Exit status: 0 when every selected image has results; 1 when some were skipped or failed
(they are listed in report.md); 2 for bad arguments or an unusable data root.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from experiments import add_run_args, check_overrides, configs_for, fail, image_side, log, overrides, split_host_cpus
from ntkgrid.presets import PAPER_ENCODINGS

ENCODINGS = PAPER_ENCODINGS  # the encodings the paper compares (ntkgrid.presets; no JAX imported yet)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m experiments.imagenet_sweep", description=__doc__.split("\n\n")[0],
        epilog="Without --data-root the preset defaults to quick (scikit-image's bundled photos, "
               "64 px, under 10 minutes on a 2-core CPU); with --data-root it defaults to paper (Table 2, "
               "128 px). Merge shards with: python -m experiments.imagenet_sweep merge --out DIR [SHARD_DIR ...]")
    ap.add_argument("--data-root", type=Path, default=None,
                    help="ImageNet-style folder <root>/<wnid>/<image> (default: scikit-image's bundled photos)")
    ap.add_argument("--num-synsets", type=int, default=100,
                    help="synsets to draw, one image each (default 100; bundled photos: all 12 at most)")
    ap.add_argument("--shard", default=None, metavar="i/n|auto",
                    help="run only shard i of n of the selected images; auto: jax.process_index()/process_count()")
    ap.add_argument("--distributed", action="store_true",
                    help="call jax.distributed.initialize() first (multi-host; use with --shard auto)")
    ap.add_argument("--runs-per-program", default="auto", metavar="N|auto",
                    help="images trained together in one compiled program (default auto: from device memory)")
    ap.add_argument("--matmul-precision", choices=("default", "highest"), default="default",
                    help="float32 matmul precision of training: default (TF32 on recent NVIDIA GPUs) or highest")
    ap.add_argument("--encodings", nargs="+", default=list(ENCODINGS), choices=ENCODINGS,
                    help="which encodings to train (default: all three)")
    ap.add_argument("--config-json", action="append", default=[], metavar="NAME=PATH",
                    help="replace an encoding's preset by a TrainConfig JSON (e.g. from experiments.tune); "
                         "the overrides below still apply")
    add_run_args(ap, name="imagenet_sweep", default_preset=None)
    return ap


def build_merge_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.imagenet_sweep merge",
                                 description="Combine the output folders of --shard runs into one summary.")
    ap.add_argument("--out", type=Path, required=True, help="folder for the merged summary")
    ap.add_argument("shards", nargs="*", type=Path,
                    help="shard output folders (default: every sub-folder of --out with a manifest.json)")
    return ap


def _default_out(args) -> Path:
    out = Path("runs/imagenet_sweep")
    if args.shard:
        i, _, n = args.shard.partition("/")
        out = out / f"shard-{i.strip()}-of-{n.strip()}"
    return out


def _merge(argv: list[str]) -> int:
    """``merge --out DIR [SHARD_DIR ...]``: combine shard folders; the exit status of the merged sweep."""
    from ntkgrid import sweep

    margs = build_merge_parser().parse_args(argv)
    try:
        sweep.merge(margs.out, margs.shards, log=log)
    except sweep.SweepError as err:
        return fail(str(err))
    return _status(margs.out)


def _runs_per_program(value: str) -> int | None:
    """``--runs-per-program``: None for auto, else a positive integer (ValueError otherwise)."""
    if value == "auto":
        return None
    try:
        rpp = int(value)
    except ValueError:
        rpp = 0
    if rpp < 1:
        raise ValueError(f"--runs-per-program must be a positive integer or auto, got {value!r}")
    return rpp


def _setup(args, preset: str) -> tuple[dict, int | None]:
    """Check the arguments, start the distributed runtime and resolve ``--shard auto`` (in ``args``);
    returns ``(configs, runs_per_program)``. Raises ValueError or KeyError for bad arguments."""
    from ntkgrid import presets, sweep
    from ntkgrid.data.images import shard as take_shard

    check_overrides(args, preset)
    if args.num_synsets < 1:
        raise ValueError(f"--num-synsets must be >= 1, got {args.num_synsets}")
    if args.distributed:
        import jax

        try:
            jax.distributed.initialize()
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"--distributed: jax.distributed.initialize() failed ({err})") from err
    if args.shard == "auto":
        args.shard = sweep.resolve_shard("auto")
    take_shard([], args.shard)  # validates the spec
    rpp = _runs_per_program(args.runs_per_program)
    configs = configs_for(presets.IMAGENET, preset, args.encodings, args)
    for spec in args.config_json:
        name, cfg = sweep.load_config_json(spec, args.encodings)
        configs[name] = sweep.apply_overrides(cfg, **overrides(args))
    return configs, rpp


def _finish(result: dict, out: Path, t0: float) -> int:
    """Log the summary, the ordering and the report's path; the exit status (see the module docstring)."""
    for line in (out / "summary.md").read_text().splitlines():
        log(line)
    order = result["ordering"]
    if order.get("holds_on_mean") is not None:
        verdict = "holds" if order["holds_on_mean"] else "does NOT hold"
        log(f"ordering {' > '.join(order['expected'])} in mean PSNR: {verdict}"
            f" ({order['images_holding']}/{order['images_compared']} images)")
    log(f"report: {out / 'report.md'}  ({time.perf_counter() - t0:.0f} s)")
    bad = len(result["skipped"]) + len(result["failed"])
    if bad:
        print(f"{len(result['skipped'])} image(s) skipped, {len(result['failed'])} failed; see {out / 'report.md'}",
              file=sys.stderr)
    if not result["rows"] or all(r["n"] == 0 for r in result["rows"]):
        return fail(f"no image has results (skipped or failed: see {out / 'report.md'})", 1)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    """Run (or merge) the sweep; returns the exit status (see the module docstring)."""
    split_host_cpus()  # before JAX starts: one CPU device per core, so groups shard over the cores
    from ntkgrid import sweep
    from ntkgrid.data import DataError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        return _merge(argv[1:])

    args = build_parser().parse_args(argv)
    preset = args.preset or ("paper" if args.data_root is not None else "quick")
    try:
        configs, rpp = _setup(args, preset)
    except (ValueError, KeyError) as err:
        return fail(str(err).strip("'\""))
    size = image_side(args, preset)
    out = args.out or _default_out(args)
    t0 = time.perf_counter()
    try:
        sources, selection_warnings = sweep.select_sources(args.data_root, args.num_synsets, args.seed)
    except DataError as err:
        return fail(f"{err} (expected an ImageNet-style folder <root>/<wnid>/<image>)")
    for w in selection_warnings:
        print(f"warning: {w}", file=sys.stderr, flush=True)
    where = args.data_root or "scikit-image's bundled photos"
    log(f"imagenet_sweep: {len(sources)} image(s) from {where}, preset {preset}, {size}x{size} px, "
        f"encodings {', '.join(configs)}, output {out}")
    manifest = {"title": "ImageNet sweep (Table 1, Fig. 5a)", "table": "imagenet", "preset": preset,
                "seed": args.seed, "data_root": None if args.data_root is None else str(args.data_root.resolve()),
                "num_images": args.num_synsets, "selection_warnings": selection_warnings,
                "config_json": list(args.config_json)}
    try:
        result = sweep.run_sweep(out, sources, configs, size=size, manifest=manifest, shard=args.shard, log=log,
                                 progress=not args.no_progress, runs_per_program=rpp,
                                 matmul_precision=args.matmul_precision)
    except sweep.SweepError as err:
        return fail(str(err))
    return _finish(result, out, t0)


def _status(out: Path) -> int:
    from ntkgrid.sweep import load_sweep

    s = load_sweep(out)
    return 1 if (s["skipped"] or s["failed"] or s["missing"]) else 0


if __name__ == "__main__":
    sys.exit(main())
