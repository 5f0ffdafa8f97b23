"""Grid interpolation throughput: ntkgrid's jitted gather vs torch ``grid_sample``.

MultiGrid-style interpolation of one dense level, forward + backward, where backward is
the gradient w.r.t. the node table (and, with ``--grad-points``, also w.r.t. the points):

* ours: ``jax.jit`` of ``jax.vjp(interpolate_dense)`` applied to a fixed cotangent, i.e.
  the values and the table (and point) gradients in one compiled call;
* torch: ``torch.nn.functional.grid_sample(mode="bilinear", align_corners=True)`` (3D:
  trilinear) forward, then ``backward`` with the same cotangent.

Both see the same points, the same grid values (each in its native layout: ours
``(prod(res), k)`` axis 0 fastest, torch ``(1, k, r_{d-1}, ..., r_0)``) and the same
cotangent; the outputs and gradients are checked against each other before timing.

``--kernels linear cubic`` adds a row per case for ntkgrid's cubic kernel (the uniform cubic
B-spline, ``4**d`` taps, :mod:`ntkgrid.interpolate`) beside ``grid_sample(mode="bicubic")``
(2D only: torch has no tricubic). The two cubic kernels differ (torch's is Keys' cubic
convolution, a = -0.75, interpolating), so these rows compare the cost of 16-tap
interpolation, not values: no agreement check; their torch ratio is ``bicubic_ratio`` (the
``ratio`` key, what ``python -m benchmarks`` summarises, stays the linear rows' only), and
``cubic_over_linear`` is our cubic points/s over our linear points/s on the same points.

    python -m benchmarks.bench_interpolate [--points 262144 1048576] [--cases 2d-512-k2 ...]
                                           [--grad-points] [--block N] [--threads N] [--json OUT]
                                           [--kernels linear cubic]

Threads: both libraries get the same CPU cores. The process is pinned to ``--threads``
cores (default: every core it may use; both cores on a 2-core machine) with
``os.sched_setaffinity`` *before* JAX and torch are imported: XLA:CPU sizes its thread
pool from the cores the process may run on (it has no thread-count option), and torch gets
``torch.set_num_threads(threads)``. Note that torch's CPU ``grid_sample`` backward
parallelises over the batch dimension only, which is 1 here (one grid shared by all
points), so in practice its backward runs on one thread; XLA's scatter-add is serial too,
while the elementwise parts of both run on all threads.

Allocator: XLA:CPU allocates one scratch buffer per call for all of a program's
intermediates. Above glibc's mmap threshold (at most 32 MiB by default) that buffer is
mmap-ed and its pages are faulted in afresh on every call, which on a VM costs as much as
the computation; :func:`ntkgrid.interpolate.interpolate_dense` therefore accumulates the
table gradient over chunks of points (scratch about 24 MiB, plus the forward's integer
cells, ``4 d`` bytes per point). torch's ``grid_sample`` has no such intermediates.
``--keep-freed-memory`` re-runs the benchmark with ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` set so that glibc recycles freed memory (for both libraries),
which shows the cost of the computation alone.

Each measurement is warmed up, then timed in ``--repeats`` rounds; a round runs one untimed
call and then ``--block`` timed calls back to back of ours, then the same of torch (so that
load from other processes affects both alike). Blocks, not single calls, alternate: on a
virtual machine a thread pool left idle while the other library runs (torch's backward is
serial here) is slow to wake, and timing single alternating calls measured that wake-up
rather than the throughput. The table reports the median over rounds of the per-call time
in a block. On a GPU (``jax.default_backend() == "gpu"``) the achieved bandwidth is printed
as well: bytes moved (points, cotangent and output once, the ``2**d`` corner rows read in
the forward and read-modify-written by the scatter-add, and the zero-filled gradient
table) over the median time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

from experiments._cli import fail

CASES = {  # name: (resolution per axis, dimension, features per node)
    "2d-512-k2": (512, 2, 2),
    "2d-512-k3": (512, 2, 3),
    "2d-512-k4": (512, 2, 4),
    "3d-128-k2": (128, 3, 2),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, nargs="+", default=[2**18, 2**20],
                   help="numbers of points (default 2^18 2^20)")
    p.add_argument("--cases", nargs="+", default=["2d-512-k2", "2d-512-k4", "3d-128-k2"], choices=sorted(CASES))
    p.add_argument("--grad-points", action="store_true", help="also time the gradient w.r.t. the points")
    p.add_argument("--kernels", nargs="+", default=["linear"], choices=["linear", "cubic"],
                   help="interpolation kernels: linear (vs grid_sample bilinear) and/or cubic (vs bicubic, 2D); "
                        "default: %(default)s")
    p.add_argument("--repeats", type=int, default=9, help="timed repetitions per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (after compilation)")
    p.add_argument("--block", type=int, default=5,
                   help="back-to-back calls timed together in each round (1: alternate single calls)")
    p.add_argument("--threads", type=int, default=None, help="CPU cores for both libraries (default: all available)")
    p.add_argument("--no-torch", action="store_true", help="time ours only")
    p.add_argument("--impl", default="ntkgrid.interpolate:interpolate_dense",
                   help="module:function with interpolate_dense's signature (to compare implementations)")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="re-run under glibc malloc settings that keep freed memory (see the module docstring)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    return p.parse_args(argv)


def pin_threads(threads: int | None) -> int:
    """Restrict the process to ``threads`` cores (before jax/torch start their pools)."""
    if "jax" in sys.modules or "torch" in sys.modules:
        raise RuntimeError("pin_threads must run before jax and torch are imported")
    available = sorted(os.sched_getaffinity(0))
    threads = len(available) if threads is None else threads
    if not 1 <= threads <= len(available):
        raise ValueError(f"--threads must be in 1..{len(available)}, got {threads}")
    os.sched_setaffinity(0, available[:threads])
    return threads


def bytes_moved(n: int, d: int, k: int, table_rows: int, grad_points: bool, itemsize: int = 4,
                taps: int | None = None) -> int:
    """Lower bound on memory traffic of one forward + backward (see the module docstring);
    ``taps`` rows read per point (default ``2**d``, the linear corners)."""
    corners = 2**d if taps is None else taps
    fwd = n * d * itemsize + n * corners * k * itemsize + n * k * itemsize  # points, corner rows, output
    bwd = n * k * itemsize + 2 * n * corners * k * itemsize + table_rows * k * itemsize  # cotangent, RMW, zeros
    if grad_points:
        bwd += n * d * itemsize
    return fwd + bwd


class Ours:
    """jit(vjp(interpolate_dense)) with a fixed cotangent."""

    def __init__(self, table, x, cot, res, grad_points, impl="ntkgrid.interpolate:interpolate_dense",
                 kernel="linear"):
        import functools
        import importlib

        import jax

        module, name = impl.split(":")
        interpolate_dense = getattr(importlib.import_module(module), name)
        if kernel != "linear":
            interpolate_dense = functools.partial(interpolate_dense, interpolation=kernel)

        if grad_points:
            def fb(t, p, c):
                out, vjp = jax.vjp(lambda t, p: interpolate_dense(t, p, res), t, p)
                return out, *vjp(c)
        else:
            def fb(t, p, c):
                out, vjp = jax.vjp(lambda t: interpolate_dense(t, p, res), t)
                return out, *vjp(c)

        self.jax = jax
        self.fn = jax.jit(fb)
        self.args = tuple(jax.device_put(a) for a in (table, x, cot))
        jax.block_until_ready(self.args)

    def __call__(self):
        return self.jax.block_until_ready(self.fn(*self.args))

    def results(self):
        out = self()
        res = {"out": np.asarray(out[0]), "table": np.asarray(out[1])}
        if len(out) > 2:
            res["points"] = np.asarray(out[2])
        return res


class Torch:
    """grid_sample(align_corners=True) forward + backward with the same cotangent."""

    def __init__(self, table, x, cot, res, grad_points, device, mode="bilinear"):
        import torch

        self.torch = torch
        self.mode = mode
        d, k, n = len(res), table.shape[1], x.shape[0]
        layout = np.ascontiguousarray(table.T.reshape((1, k) + tuple(res[::-1])))  # (1, k, r_{d-1}, ..., r_0)
        self.inp = torch.tensor(layout, device=device, requires_grad=True)
        grid = np.ascontiguousarray((2.0 * x - 1.0).reshape((1,) * d + (n, d)))  # x_0 is grid_sample's first coord
        self.grid = torch.tensor(grid, device=device, requires_grad=grad_points)
        self.cot = torch.tensor(np.ascontiguousarray(cot.T.reshape((1, k) + (1,) * (d - 1) + (n,))), device=device)
        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def __call__(self):
        self.inp.grad = None
        self.grid.grad = None
        out = self.torch.nn.functional.grid_sample(self.inp, self.grid, mode=self.mode, align_corners=True)
        out.backward(self.cot)
        self.sync()
        return out

    def results(self):
        out = self().detach().cpu().numpy()
        k, n = out.shape[1], out.shape[-1]
        res = {"out": out.reshape(k, n).T, "table": self.inp.grad.cpu().numpy().reshape(k, -1).T}
        if self.grid.grad is not None:
            d = self.grid.shape[-1]
            res["points"] = 2.0 * self.grid.grad.cpu().numpy().reshape(n, d)  # d/dx = 2 d/dgrid
        return res


def check_agreement(ours: dict, theirs: dict, x: np.ndarray, res, tol: float = 2e-4) -> float:
    """Largest difference relative to each quantity's scale; raise if above ``tol``.

    The point gradient jumps across cell faces, and float32 rounding can put a point that
    lies within ~1e-7 of a face in different cells in the two libraries, so it is compared
    only at points at least 1e-3 of a cell away from every face.
    """
    pos = x.astype(np.float64) * (np.asarray(res) - 1)
    frac = pos - np.floor(pos)
    inside = np.all((frac > 1e-3) & (frac < 1 - 1e-3), axis=-1)
    worst = 0.0
    for key in ours:
        a, b = ours[key].astype(np.float64), theirs[key].astype(np.float64)
        if key == "points":
            a, b = a[inside], b[inside]
        err = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
        worst = max(worst, err)
        if err > tol:
            raise AssertionError(f"ours and torch disagree on {key}: relative error {err:.2e}")
    return worst


def time_interleaved(fns: dict, repeats: int, warmup: int, block: int = 5) -> dict:
    """Per-call seconds of each function: ``repeats`` rounds, each timing ``block`` calls
    of every function in turn (back to back within a block), so that throughput is measured
    in steady state while load from other processes still affects all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            fn()  # untimed: wakes this library's threads after the other library ran
            t = time.perf_counter()
            for _ in range(block):
                fn()
            times[name].append((time.perf_counter() - t) / block)
    return times


_KEEP_FREED = {"MALLOC_MMAP_THRESHOLD_": "2000000000", "MALLOC_TRIM_THRESHOLD_": "4000000000"}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.keep_freed_memory and any(os.environ.get(k) != v for k, v in _KEEP_FREED.items()):
        # glibc reads these at start-up only: re-execute this benchmark with them set.
        argv = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.bench_interpolate", *argv],
                  {**os.environ, **_KEEP_FREED})
    try:
        threads = pin_threads(args.threads)
    except ValueError as err:
        return fail(str(err))

    import jax

    torch = None
    if not args.no_torch:
        import torch

        torch.set_num_threads(threads)
    backend = jax.default_backend()
    device = "cuda" if (torch is not None and backend == "gpu" and torch.cuda.is_available()) else "cpu"
    keep = all(os.environ.get(k) == v for k, v in _KEEP_FREED.items())
    print(f"jax {jax.__version__} ({backend}), torch {torch.__version__ if torch else '-'} ({device}), "
          f"{threads} thread(s) each, {platform.processor() or platform.machine()}"
          f"{', glibc keeps freed memory' if keep else ''}")
    print(f"forward + backward w.r.t. the table{' and the points' if args.grad_points else ''}; "
          f"median of {args.repeats} rounds of {args.block} calls, points/s")

    rows = []
    rng = np.random.default_rng(args.seed)
    width = 28 if "cubic" in args.kernels else 22  # the first column fits "<case> cubic n=<points>"
    header = f"{'case':<{width}}{'ours pts/s':>14}{'torch pts/s':>14}{'ours/torch':>12}"
    if "cubic" in args.kernels:
        print("cubic rows: ours = uniform cubic B-spline, torch = grid_sample bicubic (Keys, a = -0.75; 2D only); "
              "speed only, the kernels differ")
    if backend == "gpu":
        header += f"{'ours GB/s':>11}"
    print(header)
    for case in args.cases:
        r, d, k = CASES[case]
        res = (r,) * d
        table = rng.normal(size=(r**d, k)).astype(np.float32)
        for n in args.points:
            x = rng.random((n, d), dtype=np.float32)
            cot = rng.normal(size=(n, k)).astype(np.float32)
            linear_s = None
            for kernel in args.kernels:
                fns = {"ours": Ours(table, x, cot, res, args.grad_points, args.impl, kernel)}
                agreement = None
                if torch is not None and (kernel == "linear" or d == 2):
                    fns["torch"] = Torch(table, x, cot, res, args.grad_points, device,
                                         "bilinear" if kernel == "linear" else "bicubic")
                    if kernel == "linear":
                        agreement = check_agreement(fns["ours"].results(), fns["torch"].results(), x, res)
                    elif not np.all(np.isfinite(fns["torch"].results()["out"])):
                        raise AssertionError("torch bicubic returned non-finite values")
                times = time_interleaved(fns, args.repeats, args.warmup, args.block)
                med = {name: statistics.median(t) for name, t in times.items()}
                row = {
                    "case": case, "kernel": kernel, "resolution": r, "dim": d, "features": k, "points": n,
                    "grad_points": args.grad_points, "threads": threads, "backend": backend,
                    "keep_freed_memory": keep,
                    "ours_s": med["ours"], "ours_pts_per_s": n / med["ours"], "ours_times_s": times["ours"],
                }
                label = case if kernel == "linear" else f"{case} cubic"
                line = f"{label + ' n=' + str(n):<{width}}{n / med['ours']:>14.3e}"
                if "torch" in med:
                    ratio = med["torch"] / med["ours"]
                    row.update(torch_s=med["torch"], torch_pts_per_s=n / med["torch"], torch_times_s=times["torch"])
                    if kernel == "linear":
                        row.update(ratio=ratio, max_rel_diff=agreement)
                    else:
                        row.update(torch_mode="bicubic", bicubic_ratio=ratio)
                    line += f"{n / med['torch']:>14.3e}{ratio:>11.2f}x"
                else:
                    line += f"{'-':>14}{'-':>12}"
                if kernel == "linear":
                    linear_s = med["ours"]
                elif linear_s is not None:
                    row["cubic_over_linear"] = linear_s / med["ours"]
                    line += f"  ({linear_s / med['ours']:.2f}x linear)"
                if backend == "gpu":
                    taps = 2**d if kernel == "linear" else 4**d
                    gbs = bytes_moved(n, d, k, r**d, args.grad_points, taps=taps) / med["ours"] / 1e9
                    row["ours_bytes_per_s"] = gbs * 1e9
                    line += f"{gbs:>11.1f}"
                print(line, flush=True)
                rows.append(row)
                del fns

    if args.json:
        from ntkgrid.files import write_json  # here, not at the top: ntkgrid imports JAX
        write_json(args.json, {"argv": sys.argv[1:], "threads": threads, "backend": backend,
                               "keep_freed_memory": keep, "results": rows})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
