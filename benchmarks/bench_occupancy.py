"""End-to-end time of the occupancy experiment (default: ``--preset quick`` on the default shape).

    python -m benchmarks.bench_occupancy [--mesh PATH ...] [--preset quick|paper]
                                         [--out DIR] [--json OUT] [-- EXTRA CLI ARGS]

Runs :func:`experiments.occupancy.main` in this process into a fresh directory (a
temporary one unless ``--out``), so pools are labelled and every network trained from
scratch, then prints one row per stage from the run's ``results.json`` (wall seconds)
and the totals: wall time, process CPU time (user + system, all threads) and the load
average before and after (a busy machine inflates wall time, not CPU time). The quick
preset's target is a wall time under 10 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def stage_rows(results: dict) -> list[tuple[str, float]]:
    """``[(stage, wall seconds)]`` from an experiment's ``results.json`` document."""
    rows = []
    for m in results["meshes"]:
        rows.append((f"{m['name']}: load / generate mesh", m.get("load_seconds", 0.0)))
        rows.append((f"{m['name']}: pools (sample + label)", m["data_seconds"]))
        rows.append((f"{m['name']}: ground-truth render", m["gt_render_seconds"]))
        for enc, run in m["runs"].items():
            for what, sec in run["seconds"].items():
                what = "train (+ checkpoint metrics, spectra)" if what == "train" else what
                rows.append((f"{m['name']}: {enc} {what}", sec))
    return rows


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mesh", nargs="+", default=[], help="mesh files (default: the procedural default shape)")
    ap.add_argument("--preset", choices=("quick", "paper"), default="quick")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary one, removed)")
    ap.add_argument("--json", type=Path, default=None, help="write the timings as JSON here")
    args = ap.parse_args(argv)

    from experiments import occupancy

    out = args.out or Path(tempfile.mkdtemp(prefix="bench_occupancy_"))
    if out.exists() and any(out.iterdir()) and args.out is not None:
        raise SystemExit(f"{out}: not empty; the benchmark needs a fresh directory")
    cli = ["--preset", args.preset, "--out", str(out), "--no-progress", *extra]
    if args.mesh:
        cli = ["--mesh", *args.mesh, *cli]
    load0 = os.getloadavg()
    wall0, cpu0 = time.perf_counter(), _cpu_seconds()
    rc = occupancy.main(cli)
    wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    load1 = os.getloadavg()
    results = json.loads((out / "results.json").read_text())
    rows = stage_rows(results)
    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    print(f"\nmachine: {os.cpu_count()} CPUs ({machine}), python {platform.python_version()}, "
          f"load average {load0[0]:.1f} before, {load1[0]:.1f} after")
    width = max([len(r[0]) for r in rows] + [24])
    print(f"{'stage':<{width}}  wall s")
    for name, sec in rows:
        print(f"{name:<{width}}  {sec:7.1f}")
    print(f"{'TOTAL wall':<{width}}  {wall:7.1f}")
    print(f"{'TOTAL CPU (user+sys)':<{width}}  {cpu:7.1f}")
    ious = {f"{m['name']}/{e}": (r["final"].get("iou_uniform"), r["final"].get("iou_surface"))
            for m in results["meshes"] for e, r in m["runs"].items()}
    for k, (u, s) in ious.items():
        print(f"IoU {k}: uniform {u}, near-surface {s}")
    doc = {"preset": args.preset, "meshes": args.mesh or ["default_shape"], "exit_status": rc,
           "wall_seconds": wall, "cpu_seconds": cpu, "loadavg_before": load0, "loadavg_after": load1,
           "cpus": os.cpu_count(), "machine": machine, "stages": dict(rows), "iou": ious,
           "under_10_minutes": wall < 600.0}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    return doc


if __name__ == "__main__":
    main()
