"""Run every benchmark: ``python -m benchmarks [--quick | --gpu] [--only NAME ...] [--json FILE]``.

Each benchmark script (``benchmarks/bench_*.py``) runs in its own child process with a
timeout, at the backend's default sizes (``--quick``: smaller CPU sizes, within 10 minutes
on a 2-core CPU; ``--gpu``: the accelerator run's sizes, see ``benchmarks/gpu_run.sh``).
A benchmark that fails or times out is reported and the others still run. ``--json``
writes one document: the machine (backend, device, library versions, load average before
and after) and one entry per benchmark with its headline ratio against its peer and the
script's raw figures (:mod:`benchmarks.suite`); it is rewritten after every benchmark, so a
suite stopped half-way keeps what it measured (``"complete": false``, ``"pending"``). ``python -m benchmarks.results`` turns such
files under ``benchmarks/results/`` into RESULTS.md's tables.

Exit status: 0 when every benchmark ran, 1 when one failed or timed out, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.suite import BENCHMARKS, PROFILES, run_suite


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller CPU sizes: the suite within 10 minutes on 2 cores")
    mode.add_argument("--gpu", action="store_true", help="the GPU run's sizes (benchmarks/gpu_run.sh)")
    mode.add_argument("--profile", choices=PROFILES, default=None,
                      help="full (default), quick, gpu, or tiny (seconds each: the smoke test's sizes)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME",
                    help=f"run only these benchmarks, in this order ({', '.join(b.name for b in BENCHMARKS)})")
    ap.add_argument("--timeout", type=float, default=None, help="one timeout in seconds for every benchmark")
    ap.add_argument("--json", type=Path, default=None, help="write the suite's document here")
    ap.add_argument("--keep", type=Path, default=None,
                    help="folder for the scripts' own JSON files (default: a temporary one)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    profile = args.profile or ("quick" if args.quick else "gpu" if args.gpu else "full")
    names = [b.name for b in BENCHMARKS]
    bad = sorted(set(args.only or ()) - set(names))
    if bad:
        print(f"error: --only: unknown benchmark(s) {', '.join(bad)}; choose from {', '.join(names)}",
              file=sys.stderr)
        return 2
    if args.timeout is not None and args.timeout <= 0:
        print(f"error: --timeout must be positive, got {args.timeout:g}", file=sys.stderr)
        return 2
    if args.json is not None and args.json.is_dir():
        print(f"error: --json {args.json}: is a folder; give a file name", file=sys.stderr)
        return 2
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            print(f"error: --json {args.json}: cannot create its folder ({err.strerror})", file=sys.stderr)
            return 2
    def save(doc: dict) -> None:  # after every benchmark: a suite stopped half-way keeps what it measured
        if args.json is not None:
            tmp = args.json.with_name(args.json.name + ".tmp")
            tmp.write_text(json.dumps(doc, indent=1, allow_nan=True) + "\n")
            tmp.replace(args.json)

    doc = run_suite(profile, args.only, timeout_s=args.timeout, workdir=args.keep,
                    log=lambda s: print(s, flush=True), on_progress=save)
    print(f"benchmarks done in {doc['seconds']:.0f} s; load average {doc['loadavg_before'][0]:.1f} before, "
          f"{doc['loadavg_after'][0]:.1f} after" + (f"; FAILED: {', '.join(doc['failed'])}" if doc["failed"] else ""))
    if args.json is not None:
        save(doc)
        print(f"wrote {args.json}")
    return 1 if doc["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
