"""Occupancy-label throughput: ntkgrid's ``occupancy`` vs trimesh's plain ``contains``.

    python -m benchmarks.bench_labels [--mesh PATH] [--points N] [--plain-points M]
                                      [--winding-points K] [--json OUT]

Rows (same uniform points in [0, 1]^3, the plain paths use the first M / K of them):

* ``trimesh contains (ray_triangle)``: ``trimesh.ray.ray_triangle.RayMeshIntersector
  (mesh).contains_points`` -- pure NumPy ray casting, no Embree.  It needs the optional
  ``rtree`` package (``uv run --with rtree python -m benchmarks.bench_labels``); without
  it the row is reported as skipped.  Slow and memory hungry: keep M small.
* ``ntkgrid occupancy (embree, cold)``: :func:`ntkgrid.data.meshes.occupancy` on all N
  points, first call (includes the Embree BVH build); ``(embree, warm)``: a second call.
* ``ntkgrid winding numbers``: the non-watertight fallback (clustered generalised
  winding numbers), on K points (0 skips it).

``ratio`` is throughput relative to the plain trimesh row; ``agree`` is the fraction of
the row's points whose label equals ours.  Peak RSS is the process high-water mark after
the row (monotone; rows run from cheapest to dearest in memory).
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mesh", default="default", help="mesh file, or 'default' (procedural shape)")
    ap.add_argument("--points", type=int, default=200_000, help="points for ntkgrid occupancy")
    ap.add_argument("--plain-points", type=int, default=None,
                    help="points for trimesh ray_triangle (default 1000, or 100 above 100k faces: "
                         "it needs about 30 MB per point there)")
    ap.add_argument("--winding-points", type=int, default=2_000,
                    help="points for ntkgrid winding numbers (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    return ap


def _ours_rows(mesh, pts: np.ndarray, args) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """ntkgrid's rows: embree cold and warm on ``args.points`` points, winding numbers on
    ``args.winding_points``.

    Args:
      mesh: the trimesh.Trimesh; pts: (n_max, 3) points in [0, 1]^3.

    Returns:
      ``(rows, ours, ours_all)``: the rows, the embree labels (args.points,) and the embree labels
      on the first ``max(plain, winding)`` points (bool).
    """
    from ntkgrid.data import meshes as M

    rows: list[dict] = []
    # ours, embree: cold (includes the BVH build), then warm
    for label in ("cold", "warm"):
        t0 = time.perf_counter()
        ours = M.occupancy(mesh, pts[: args.points], method="embree")
        dt = time.perf_counter() - t0
        rows.append(dict(method=f"ntkgrid occupancy (embree, {label})", points=args.points,
                         seconds=dt, agree=1.0, peak_rss_mb=_peak_rss_mb()))
    need = max(args.plain_points, args.winding_points)
    ours_all = ours if need <= args.points else M.occupancy(mesh, pts[:need], method="embree")

    if args.winding_points > 0:
        k = args.winding_points
        t0 = time.perf_counter()
        lab = M.occupancy(mesh, pts[:k], method="winding")
        dt = time.perf_counter() - t0
        rows.append(dict(method="ntkgrid winding numbers", points=k, seconds=dt,
                         agree=float((lab == ours_all[:k]).mean()), peak_rss_mb=_peak_rss_mb()))
    return rows, ours, ours_all


def _plain_row(mesh, pts: np.ndarray, m: int, ours_all: np.ndarray) -> dict:
    """trimesh's ray_triangle ``contains`` on the first ``m`` points (skipped without ``rtree``)."""
    import trimesh

    plain_row = dict(method="trimesh contains (ray_triangle)", points=m)
    try:
        import rtree  # noqa: F401  (trimesh's ray_triangle broad phase needs it)
    except ImportError:
        plain_row.update(seconds=None, skipped="needs the 'rtree' package: "
                         "uv run --with rtree python -m benchmarks.bench_labels")
        return plain_row
    from trimesh.ray.ray_triangle import RayMeshIntersector

    plain_mesh = trimesh.Trimesh(mesh.vertices.copy(), mesh.faces.copy(), process=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = RayMeshIntersector(plain_mesh).contains_points(pts[:m])
    dt = time.perf_counter() - t0
    plain_row.update(seconds=dt, agree=float((lab == ours_all[:m]).mean()),
                     peak_rss_mb=_peak_rss_mb())
    return plain_row


def _add_rates(rows: list[dict], plain_row: dict) -> None:
    """Add ``points_per_s`` and ``ratio`` (throughput over the plain row's) to the timed rows, in place."""
    base = plain_row["points"] / plain_row["seconds"] if plain_row.get("seconds") else None
    for r in rows:
        if r.get("seconds"):
            r["points_per_s"] = r["points"] / r["seconds"]
            r["ratio"] = r["points_per_s"] / base if base else None


def _print_table(rows: list[dict]) -> None:
    hdr = f"{'method':34s} {'points':>9s} {'seconds':>9s} {'points/s':>12s} {'ratio':>9s} {'agree':>7s} {'peakRSS':>9s}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if r.get("seconds") is None:
            print(f"{r['method']:34s} {r['points']:9d}   skipped: {r.get('skipped', '')}")
            continue
        ratio = f"{r['ratio']:8.1f}x" if r.get("ratio") else f"{'-':>9s}"
        print(
            f"{r['method']:34s} {r['points']:9d} {r['seconds']:9.3f} {r['points_per_s']:12.0f} "
            f"{ratio} {r['agree']:7.4f} {r['peak_rss_mb']:7.0f}MB"
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from experiments._cli import fail

    for opt, val, low in (("--points", args.points, 1), ("--plain-points", args.plain_points, 1),
                          ("--winding-points", args.winding_points, 0), ("--seed", args.seed, 0)):
        if val is not None and val < low:
            return fail(f"{opt} must be >= {low}, got {val}")

    import trimesh

    from ntkgrid.data import DataError
    from ntkgrid.data import meshes as M

    t0 = time.perf_counter()
    try:
        mesh = M.load_any(args.mesh)
    except DataError as exc:
        return fail(f"--mesh {exc}")
    t_load = time.perf_counter() - t0
    info = M.mesh_info(mesh)
    print(
        f"mesh: {info['source']}  vertices={info['vertices']}  faces={info['faces']}  "
        f"watertight={info['watertight']}  (loaded+normalised in {t_load:.2f} s)"
    )
    if args.plain_points is None:
        args.plain_points = 1_000 if info["faces"] <= 100_000 else 100
    rng = np.random.default_rng(args.seed)
    n_max = max(args.points, args.plain_points, args.winding_points)
    pts = rng.random((n_max, 3))

    rows, ours, ours_all = _ours_rows(mesh, pts, args)
    plain_row = _plain_row(mesh, pts, args.plain_points, ours_all)
    rows.insert(0, plain_row)
    _add_rates(rows, plain_row)
    _print_table(rows)
    result = dict(
        mesh=info,
        load_seconds=t_load,
        rows=rows,
        inside_fraction=float(ours.mean()),
        python=sys.version.split()[0],
        trimesh=trimesh.__version__,
        numpy=np.__version__,
        machine=platform.machine(),
        processor=platform.processor(),
    )
    if args.json:
        from ntkgrid.files import write_json  # here, not at the top: ntkgrid imports JAX
        write_json(args.json, result, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
