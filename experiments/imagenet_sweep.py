"""The ImageNet sweep (the paper's Table 1 ImageNet columns and Fig. 5a).

    python -m experiments.imagenet_sweep [--data-root DIR] [--num-synsets 100] [--seed 0]
        [--preset paper|quick] [--out DIR] [--shard i/n|auto] [--encodings ...]
        [--distributed [--coordinator HOST:PORT --num-processes N --process-id I]]
        [--runs-per-program N|auto] [--matmul-precision default|highest] [--theorem-seeds K]
        [--config-json NAME=PATH ...] [--size PX] [--epochs N] [--batch-size N] [--lr X|critical:F]
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
``jax.distributed.initialize()`` is called first, with ``--coordinator HOST:PORT``,
``--num-processes N`` and ``--process-id I`` (each defaults to the environment variable
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``); what none of them
gives, JAX detects from the cluster (SLURM, Open MPI, Kubernetes).
On a CPU the program asks XLA for one device per core (at most 8; set
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` to choose), so a group's runs
also spread over the cores. Training uses JAX's default float32 matmuls (TF32 on recent
NVIDIA GPUs); ``--matmul-precision highest`` trains in full float32. Kernels and spectra
are float64.

Exit status: 0 when every selected image has results; 1 when some were skipped or failed
(they are listed in report.md) or the output could not be written; 2 for bad arguments,
an unusable data root or an ``--out`` that cannot be a folder. Every error is one line.

File names that are not UTF-8 (Linux allows any bytes): image ids keep only
``[A-Za-z0-9._-]`` of ``<synset>_<file stem>`` (others become ``_``); JSON files keep the
exact path (its undecodable bytes as ``\\udcXX`` escapes, which Python's ``json`` and
``os.fsencode`` turn back into the bytes); Markdown, CSV and log lines show them as ``\\xNN``
(:func:`ntkgrid.files.printable`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from experiments._cli import (
    add_run_args,
    apply_lr_rule,
    check_overrides,
    configs_for,
    fail,
    image_side,
    log,
    overrides,
    split_host_cpus,
)
from ntkgrid.presets import PAPER_ENCODINGS, QUICK_SWEEP_IMAGE_SIZE

ENCODINGS = PAPER_ENCODINGS  # the encodings the paper compares (ntkgrid.presets; no JAX imported yet)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m experiments.imagenet_sweep", description=__doc__.split("\n\n")[0],
        epilog="Without --data-root the preset defaults to quick (scikit-image's bundled photos, "
               f"{QUICK_SWEEP_IMAGE_SIZE} px, under 5 minutes on a 2-core CPU); with --data-root it defaults to paper (Table 2, "
               "128 px). Merge shards with: python -m experiments.imagenet_sweep merge --out DIR [SHARD_DIR ...]")
    ap.add_argument("--data-root", type=Path, default=None,
                    help="ImageNet-style folder <root>/<wnid>/<image> (default: scikit-image's bundled photos)")
    ap.add_argument("--num-synsets", type=int, default=100,
                    help="synsets to draw, one image each (default 100; bundled photos: all 12 at most)")
    ap.add_argument("--shard", default=None, metavar="i/n|auto",
                    help="run only shard i of n of the selected images; auto: jax.process_index()/process_count()")
    ap.add_argument("--distributed", action="store_true",
                    help="call jax.distributed.initialize() first (multi-host; use with --shard auto)")
    ap.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                    help="with --distributed: the coordinator (process 0's host and a free port; "
                         "default: $JAX_COORDINATOR_ADDRESS, else JAX's cluster detection)")
    ap.add_argument("--num-processes", type=int, default=None, metavar="N",
                    help="with --distributed: processes in the job (default: $JAX_NUM_PROCESSES, else detected)")
    ap.add_argument("--process-id", type=int, default=None, metavar="I",
                    help="with --distributed: this process's index 0..N-1 (default: $JAX_PROCESS_ID, else detected)")
    ap.add_argument("--runs-per-program", default="auto", metavar="N|auto",
                    help="images trained together in one compiled program (default auto: from device memory)")
    ap.add_argument("--matmul-precision", choices=("default", "highest"), default="default",
                    help="float32 matmul precision of training: default (TF32 on recent NVIDIA GPUs) or highest")
    ap.add_argument("--theorem-seeds", type=int, default=1, metavar="K",
                    help="compare Theorem 1 at initialisation on the kernels averaged over K initialisations "
                         "(seeds seed..seed+K-1: the paper's Eq. 4 expected kernel, estimated; default 1: each run's "
                         "own); computed once per network for all images of one size")
    ap.add_argument("--encodings", nargs="+", default=list(ENCODINGS), choices=ENCODINGS,
                    help="which encodings to train (default: all three)")
    ap.add_argument("--config-json", action="append", default=[], metavar="NAME=PATH",
                    help="replace an encoding's preset by a TrainConfig JSON (e.g. from experiments.tune); "
                         "the overrides below still apply")
    add_run_args(ap, name="imagenet_sweep", default_preset=None, critical_lr=True, sweep=True)
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
    margs = build_merge_parser().parse_args(argv)
    from ntkgrid import sweep  # after parsing: --help loads no JAX

    try:
        sweep.merge(margs.out, margs.shards, log=log)
    except sweep.SweepError as err:
        return fail(str(err))
    except OSError as err:
        return fail(f"merge --out {margs.out}: {_os_error(err)}", 1)
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


#: The environment variables ``--coordinator``, ``--num-processes`` and ``--process-id`` default to.
DISTRIBUTED_ENV = {"coordinator": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
                   "process_id": "JAX_PROCESS_ID"}


def distributed_settings(args, environ=None) -> dict:
    """The keyword arguments of ``jax.distributed.initialize`` for ``--distributed``:
    ``coordinator_address``, ``num_processes``, ``process_id``, each from its option, else
    its environment variable (:data:`DISTRIBUTED_ENV`), else left out (JAX then detects it
    from the cluster: SLURM, Open MPI, Kubernetes). Raises ValueError naming the option or
    variable for a malformed value."""
    import os

    env = os.environ if environ is None else environ
    out: dict = {}
    for key, var in DISTRIBUTED_ENV.items():
        opt = "--" + key.replace("_", "-")
        val, where = getattr(args, key), opt
        if val is None and env.get(var, "").strip():
            val, where = env[var].strip(), f"${var}"
            if key != "coordinator":
                try:
                    val = int(val)
                except ValueError:
                    raise ValueError(f"{where} must be an integer, got {env[var]!r}") from None
        if val is None:
            continue
        if key == "coordinator":
            host, sep, port = str(val).rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{where} must be HOST:PORT (e.g. node0:1234), got {val!r}")
            out["coordinator_address"] = str(val)
        else:
            out[key] = val
    n, i = out.get("num_processes"), out.get("process_id")
    if n is not None and n < 1:
        raise ValueError(f"--num-processes / $JAX_NUM_PROCESSES must be >= 1, got {n}")
    if i is not None and (i < 0 or (n is not None and i >= n)):
        raise ValueError(f"--process-id / $JAX_PROCESS_ID must be in 0..{'N-1' if n is None else n - 1}, got {i}")
    return out


def _start_distributed(args) -> None:
    """``jax.distributed.initialize`` with :func:`distributed_settings`; ValueError (one line) if it fails."""
    import jax

    kw = distributed_settings(args)
    try:
        jax.distributed.initialize(**kw)
    except (RuntimeError, ValueError, TypeError) as err:
        given = ", ".join(f"{k}={v!r}" for k, v in kw.items()) or "nothing given: cluster detection"
        msg = " ".join(str(err).split())
        raise ValueError(f"--distributed: jax.distributed.initialize() failed ({msg}) [{given}]; give "
                         "--coordinator HOST:PORT --num-processes N --process-id I (or JAX_COORDINATOR_ADDRESS, "
                         "JAX_NUM_PROCESSES, JAX_PROCESS_ID), or run under SLURM / Open MPI") from err


def _setup(args, preset: str) -> tuple[dict, int | None]:
    """Check the arguments, start the distributed runtime and resolve ``--shard auto`` (in ``args``);
    returns ``(configs, runs_per_program)``. Raises ValueError or KeyError for bad arguments."""
    from ntkgrid import presets, sweep
    from ntkgrid.data.images import shard as take_shard

    check_overrides(args, preset, sweep=True)
    if args.num_synsets < 1:
        raise ValueError(f"--num-synsets must be >= 1, got {args.num_synsets}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.theorem_seeds < 1:
        raise ValueError(f"--theorem-seeds must be >= 1, got {args.theorem_seeds}")
    if args.shard is not None and args.shard != "auto":
        take_shard([], args.shard)  # validates the spec before a distributed start
    if args.distributed:
        _start_distributed(args)
    elif any(v is not None for v in (args.coordinator, args.num_processes, args.process_id)):
        raise ValueError("--coordinator, --num-processes and --process-id need --distributed")
    if args.shard == "auto":
        args.shard = sweep.resolve_shard("auto")
    take_shard([], args.shard)  # validates the spec
    rpp = _runs_per_program(args.runs_per_program)
    configs = configs_for(presets.IMAGENET, preset, args.encodings, args)
    for spec in args.config_json:
        name, cfg = sweep.load_config_json(spec, args.encodings,
                                           kinds={n: c.encoding.kind for n, c in configs.items()})
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        return _merge(argv[1:])

    args = build_parser().parse_args(argv)
    from ntkgrid import sweep  # after parsing: --help loads no JAX
    from ntkgrid.data import DataError

    preset = args.preset or ("paper" if args.data_root is not None else "quick")
    try:
        configs, rpp = _setup(args, preset)
    except (ValueError, KeyError) as err:
        return fail(str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err))
    size = image_side(args, preset, sweep=True)
    out = args.out or _default_out(args)
    if out.exists() and not out.is_dir():
        return fail(f"--out {out}: exists and is not a folder")
    t0 = time.perf_counter()
    try:
        sources, selection_warnings = sweep.select_sources(args.data_root, args.num_synsets, args.seed)
    except DataError as err:
        return fail(f"{err} (expected an ImageNet-style folder <root>/<wnid>/<image>)")
    try:
        _check_writable(out)
    except OSError as err:
        return fail(f"--out {out}: cannot be written ({_os_error(err)})")
    for w in selection_warnings:
        print(f"warning: {w}", file=sys.stderr, flush=True)
    try:  # --lr critical:F: one step per config, from its critical step on the first selected image
        configs = apply_lr_rule(configs, args, sweep.load_source(sources[0], size), log=log)
    except (ValueError, DataError) as err:
        return fail(f"--lr {args.lr}: {err}")
    where = args.data_root or "scikit-image's bundled photos"
    log(f"imagenet_sweep: {len(sources)} image(s) from {where}, preset {preset}, {size}x{size} px, "
        f"encodings {', '.join(configs)}, output {out}")
    manifest = {"title": "ImageNet sweep (Table 1, Fig. 5a)", "table": "imagenet", "preset": preset,
                "seed": args.seed, "data_root": None if args.data_root is None else str(args.data_root.resolve()),
                "num_images": args.num_synsets, "selection_warnings": selection_warnings,
                "config_json": list(args.config_json), "theorem_seeds": args.theorem_seeds}
    try:
        result = sweep.run_sweep(out, sources, configs, size=size, manifest=manifest, shard=args.shard, log=log,
                                 progress=not args.no_progress, runs_per_program=rpp,
                                 matmul_precision=args.matmul_precision)
    except sweep.SweepError as err:
        return fail(str(err))
    except OSError as err:  # e.g. the disk filled up: what was written stays, a rerun resumes
        return fail(f"--out {out}: the sweep stopped ({_os_error(err)}); what was finished is kept, a rerun "
                    "resumes", 1)
    return _finish(result, out, t0)


def _check_writable(out: Path) -> None:
    """Create ``out`` (and its parents) if missing and check a file can be written in it;
    raises OSError (with the path) otherwise. Nothing is left behind."""
    import os

    out.mkdir(parents=True, exist_ok=True)
    probe = out / f".write-test.{os.getpid()}"
    try:
        probe.write_bytes(b"")
    finally:
        probe.unlink(missing_ok=True)


def _os_error(err: OSError) -> str:
    """The problem and the path of an OSError, on one line (``"Read-only file system: /x/y"``)."""
    where = err.filename or ""
    if err.filename2:
        where = f"{where} -> {err.filename2}"
    problem = err.strerror or str(err)
    return f"{problem}: {where}" if where else problem


def _status(out: Path) -> int:
    from ntkgrid.sweep import load_sweep

    s = load_sweep(out)
    return 1 if (s["skipped"] or s["failed"] or s["missing"]) else 0


if __name__ == "__main__":
    sys.exit(main())
