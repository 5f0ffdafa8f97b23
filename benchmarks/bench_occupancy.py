"""End-to-end time of the occupancy experiment (default: ``--preset quick`` on the default shape).

    python -m benchmarks.bench_occupancy [--mesh PATH ...] [--preset quick|paper]
                                         [--out DIR] [--json OUT] [-- EXTRA CLI ARGS]

Runs :func:`experiments.occupancy.main` in this process into a fresh directory (a
temporary one unless ``--out``), so pools are labelled and every network trained from
scratch, then prints one row per stage from the run's ``results.json`` (wall seconds)
and the totals: wall time, process CPU time (user + system, all threads) and the load
average before and after (a busy machine inflates wall time, not CPU time). The quick
preset's target is a wall time under 10 minutes on a 2-core CPU.

    python -m benchmarks.bench_occupancy --throughput [--mesh PATH] [--epochs 2]
                                         [--points-per-epoch 100000] [--json OUT]

Points per second at the paper preset's settings (Table 4's networks and batches; an
epoch = ``--points-per-epoch`` fresh points uniform in the mesh's bounding box), on
whatever JAX device is the default (the table says which):

* ``label``: :class:`ntkgrid.data.meshes.FreshPoints` drawing and labelling an epoch
  (Embree ray parity, batched), cold (first call: Embree's BVH build) and warm;
* ``train <encoding>``: the jitted SGD epoch alone (:func:`ntkgrid.training.make_epoch_fn`,
  points already on the device), after one compiling epoch;
* ``fit <encoding>``: :func:`ntkgrid.training.fit` with ``epoch_data`` (labelling of epoch
  e + 1 on the host overlapping epoch e on the device), compile included.

Each row also gives the process CPU seconds (user + system) it used: on a shared machine
wall-clock rates fall with the load, CPU seconds much less.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from experiments._cli import fail


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
                what = "train (+ checkpoint metrics)" if what == "train" else what
                rows.append((f"{m['name']}: {enc} {what}", sec))
    return rows


def throughput(mesh_path: str | None, epochs: int = 2, points_per_epoch: int = 100_000,
               encodings=("baseline", "fourier", "multigrid")) -> dict:
    """Rows ``{"what", "points", "wall_s", "cpu_s", "points_per_s"}`` (see the module docstring)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from ntkgrid import occupancy as occ
    from ntkgrid.data.meshes import FreshPoints, default_shape, load_mesh
    from ntkgrid.models import build_model
    from ntkgrid.training import fit, make_epoch_fn

    mesh = load_mesh(mesh_path) if mesh_path else default_shape()
    name = Path(mesh_path).stem if mesh_path else "default_shape"
    rows = []

    def timed(what, n, fn):
        w0, c0 = time.perf_counter(), _cpu_seconds()
        out = fn()
        w, c = time.perf_counter() - w0, _cpu_seconds() - c0
        rows.append({"what": what, "points": n, "wall_s": w, "cpu_s": c, "points_per_s": n / w})
        print(f"{what:<34s} {n:>9d} points  {w:7.2f} s wall  {c:7.2f} s CPU  {n / w:>11,.0f} points/s", flush=True)
        return out

    box = np.asarray(mesh.bounds)
    sampler = FreshPoints(mesh, box, points_per_epoch, seed=0)
    timed("label (cold: BVH build + 1 epoch)", points_per_epoch, lambda: sampler(0))
    timed(f"label (warm, {epochs} epochs)", epochs * points_per_epoch,
          lambda: [sampler(e) for e in range(1, epochs + 1)])
    meas_x, meas_y = sampler(epochs + 1)
    configs = occ.configs_for(name, "paper", encodings)
    for enc, cfg in configs.items():
        model = build_model(cfg, 3, 1)
        variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))
        opt = optax.sgd(cfg.learning_rate).init(variables["params"])
        fn = make_epoch_fn(model, "bce", cfg.batch_size, points_per_epoch, points_per_epoch)
        x, y = jnp.asarray(meas_x), jnp.asarray(meas_y)
        key, lr = jnp.asarray(jax.random.PRNGKey(1)), np.float32(cfg.learning_rate)
        variables, opt, loss = fn(variables, opt, key, np.int32(0), lr, x, y)  # compile
        float(loss)

        def run(variables=variables, opt=opt, fn=fn, key=key, lr=lr, x=x, y=y):
            for e in range(epochs):
                variables, opt, loss = fn(variables, opt, key, np.int32(e + 1), lr, x, y)
            return float(loss)

        timed(f"train {enc} (B={cfg.batch_size})", epochs * points_per_epoch, run)
    for enc, cfg in configs.items():
        fresh = FreshPoints(mesh, box, points_per_epoch, seed=1)
        timed(f"fit {enc} (fresh points, compile)", epochs * points_per_epoch,
              lambda cfg=cfg, fresh=fresh: fit(cfg.replace(epochs=epochs, checkpoints=(epochs,), ntk_points=0),
                                               meas_x, meas_y, epoch_data=fresh, progress=False))
    return {"mesh": name, "device": str(jax.devices()[0]), "backend": jax.default_backend(),
            "points_per_epoch": points_per_epoch, "epochs": epochs, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    from ntkgrid.files import read_json, write_json  # here, not at the top: ntkgrid imports JAX

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--throughput" in argv:
        ap = argparse.ArgumentParser(description="points/s of labelling and training (paper preset)")
        ap.add_argument("--throughput", action="store_true")
        ap.add_argument("--mesh", default=None, help="a mesh file (default: the procedural default shape)")
        ap.add_argument("--epochs", type=int, default=2)
        ap.add_argument("--points-per-epoch", type=int, default=100_000)
        ap.add_argument("--json", type=Path, default=None)
        args = ap.parse_args(argv)
        load0 = os.getloadavg()
        doc = throughput(args.mesh, args.epochs, args.points_per_epoch)
        machine = f"{platform.machine()} {platform.processor() or ''}".strip()
        doc.update(cpus=os.cpu_count(), machine=machine, loadavg_before=load0, loadavg_after=os.getloadavg())
        print(f"device {doc['device']} ({doc['backend']}), {os.cpu_count()} CPUs ({machine}), load average "
              f"{load0[0]:.1f} before, {doc['loadavg_after'][0]:.1f} after")
        if args.json:
            write_json(args.json, doc)
        return 0
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
        return fail(f"{out}: not empty; the benchmark needs a fresh directory")
    cli = ["--preset", args.preset, "--out", str(out), "--no-progress", *extra]
    if args.mesh:
        cli = ["--mesh", *args.mesh, *cli]
    load0 = os.getloadavg()
    wall0, cpu0 = time.perf_counter(), _cpu_seconds()
    rc = occupancy.main(cli)
    wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    load1 = os.getloadavg()
    results = read_json(out / "results.json")
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
        write_json(args.json, doc)
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    return 1 if rc else 0


if __name__ == "__main__":
    sys.exit(main())
