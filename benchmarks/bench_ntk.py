"""NTK benchmark: ntkgrid's structured kernel vs neural-tangents' jacobian contraction.

The paper's image network: 2 hidden layers of 512, NTK parameterisation, MPE with two
levels, k = 2, finest resolution 200 (coarsest 96), 3 outputs, float64, traced kernel on
a regular grid of points in [0, 1]^2.

    python -m benchmarks.bench_ntk [--sizes 1024 2048 8192] [--json OUT]

At the first size both methods run on the same points and the kernels are compared
(relative max error). Jacobian contraction at the larger sizes runs in a child process
under a memory cap (``--jacobian-mem-gb``), so running out of memory is reported as such
instead of taking the machine down. Eigendecomposition (LAPACK ``eigvalsh``) is timed too.

Full-image rows (``--full-image-sides``, default 64 on a CPU and 128 on a GPU): the
training-set kernel of Table 2's multigrid network (2x512, k=3, L=2, 96..277 nodes) on every
pixel of a side x side image, float64, each row in a fresh child process: the total kernel,
the group kernels (``groups=True``: total, MLP, grid in one pass; the target is at most 2x
the total kernel), ``eigvalsh`` with the backend's solver (``ntkgrid.spectrum.eigvalsh``; on a
GPU also NumPy's LAPACK beside it), and the child's peak resident memory against the size of
one N x N float64 kernel (blocks, no N x P Jacobian).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time

import numpy as np


def _setup(n: int):
    import jax
    import jax.numpy as jnp

    from ntkgrid import CoordinateMLP, MultiGrid

    side = int(np.ceil(np.sqrt(n)))
    g = np.stack(np.meshgrid(np.linspace(0, 1, side), np.linspace(0, 1, side)), -1).reshape(-1, 2)[:n]
    enc = MultiGrid(dim=2, num_levels=2, features_per_level=2, min_res=96, max_res=200, param_dtype=jnp.float64)
    model = CoordinateMLP(enc, (512, 512), 3, param_dtype=jnp.float64)
    v = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.float64))
    # Move the grid off its near-zero init so the grid term is not negligible.
    v = jax.tree_util.tree_map_with_path(
        lambda p, a: a * 30.0 if "encoding" in jax.tree_util.keystr(p) else a, v)
    return model, v, jnp.asarray(g, jnp.float64)


def _n_params(model, v) -> int:
    import jax

    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(v["params"]))


def _time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _jacobian_child(n: int, mem_gb: float, queue) -> None:
    import jax

    if mem_gb > 0:
        cap = int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        with jax.enable_x64(True):
            from ntkgrid.ntk import nt_ntk

            model, v, x = _setup(n)
            t = time.perf_counter()
            k = np.asarray(nt_ntk(model, v, x, method="jacobian"))
            queue.put(("ok", time.perf_counter() - t, k if n <= 2048 else None))
    except Exception as e:  # noqa: BLE001 - reported, the benchmark goes on
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        capped = f" under a {mem_gb:g} GB address-space cap" if mem_gb > 0 else ""
        queue.put(("failed" + capped, None, msg))


def run_jacobian(n: int, mem_gb: float):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_jacobian_child, args=(n, mem_gb, q))
    p.start()
    try:  # read before join: a child blocks on exit until its queued kernel is consumed
        result = q.get(timeout=3600)
    except Exception:  # noqa: BLE001 - the child died without reporting
        result = None
    p.join()
    if result is not None:
        return result
    return ("killed (out of memory)" if p.exitcode in (-9, 137) else "failed", None,
            f"child exited with code {p.exitcode}")


def _full_image_child(side: int, repeats: int, queue) -> None:
    try:
        import jax
        import jax.numpy as jnp

        from ntkgrid import presets
        from ntkgrid.data.images import image_to_dataset
        from ntkgrid.models import build_model
        from ntkgrid.ntk import structured_ntk
        from ntkgrid.spectrum import _float64_model, eigvalsh

        x, _ = image_to_dataset(np.zeros((side, side, 3)))
        cfg = presets.IMAGENET["multigrid"]
        model = _float64_model(build_model(cfg, 2, 3))
        row = {"side": side, "n": side * side, "backend": jax.default_backend(), "encoding": cfg.encoding.describe()}
        with jax.enable_x64(True):
            v = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.float64))
            v = jax.tree_util.tree_map_with_path(  # grid off its near-zero init, as after training
                lambda p, a: a * 30.0 if "encoding" in jax.tree_util.keystr(p) else a, v)
            xd = jnp.asarray(x, jnp.float64)
            structured_ntk(model, v, xd, groups=True)  # compile both
            structured_ntk(model, v, xd)
            row["total_s"], k = _time(lambda: structured_ntk(model, v, xd), repeats)
            row["groups_s"], ks = _time(lambda: structured_ntk(model, v, xd, groups=True), repeats)
        row["groups_over_total"] = row["groups_s"] / row["total_s"]
        row["groups_rel_err"] = float(np.max(np.abs(ks["total"] - k)) / np.max(np.abs(k)))
        row["solver"] = "jax" if row["backend"] != "cpu" else "numpy"
        eigvalsh(k[:64, :64])  # warm the solver
        row["eigvalsh_s"], lam = _time(lambda: eigvalsh(k), 1)
        if row["solver"] == "jax":
            row["eigvalsh_numpy_s"], lam_np = _time(lambda: eigvalsh(k, "numpy"), 1)
            row["solvers_rel_diff"] = float(np.max(np.abs(lam - lam_np)) / lam_np[0])
        row["kernel_gib"] = k.nbytes / 2**30
        row["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        row["n_above_floor"] = int(np.sum(lam > len(lam) * np.finfo(np.float64).eps * lam[0]))
        queue.put(row)
    except Exception as e:  # noqa: BLE001 - reported, the benchmark goes on
        queue.put({"side": side, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})


def run_full_image(side: int, repeats: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_full_image_child, args=(side, repeats, q))
    p.start()
    try:
        row = q.get(timeout=3600)
    except Exception:  # noqa: BLE001 - the child died without reporting
        row = {"side": side, "error": f"child exited with code {p.exitcode}"}
    p.join()
    return row


def _fmt_full(r: dict) -> str:
    if "error" in r:
        return f"full image {r['side']}x{r['side']}: {r['error']}"
    extra = (f", numpy {r['eigvalsh_numpy_s']:.2f} s (diff {r['solvers_rel_diff']:.1e})"
             if "eigvalsh_numpy_s" in r else "")
    return (f"full image {r['side']}x{r['side']} (N={r['n']}, {r['backend']}): total {r['total_s']:.2f} s, "
            f"groups {r['groups_s']:.2f} s ({r['groups_over_total']:.2f}x), eigvalsh[{r['solver']}] "
            f"{r['eigvalsh_s']:.2f} s{extra}; peak RSS {r['peak_rss_gib']:.2f} GiB for a "
            f"{r['kernel_gib']:.2f} GiB kernel")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 8192])
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions of the structured kernel")
    ap.add_argument("--jacobian-sizes", type=int, nargs="*", default=None,
                    help="sizes at which to also run jacobian contraction (default: the first two)")
    ap.add_argument("--jacobian-mem-gb", type=float, default=16.0, help="address-space cap of the jacobian child")
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--full-image-sides", type=int, nargs="*", default=None,
                    help="full-image rows: image sides in pixels (default: 64 on a CPU, 128 on a GPU; none: skip)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)

    import jax

    from ntkgrid.ntk import structured_ntk
    from ntkgrid.spectrum import spectrum_from_kernel

    jac_sizes = args.jacobian_sizes if args.jacobian_sizes is not None else args.sizes[:2]
    rows = []
    for n in args.sizes:
        row = {"n": n, "backend": jax.default_backend()}
        with jax.enable_x64(True):
            model, v, x = _setup(n)
            structured_ntk(model, v, x, block_size=args.block_size)  # compile
            kernel = lambda m=model, v=v, x=x: structured_ntk(m, v, x, block_size=args.block_size)  # noqa: E731
            row["structured_s"], k = _time(kernel, args.repeats if n <= 2048 else 1)
        t = time.perf_counter()
        s = spectrum_from_kernel(k)
        row["eigh_s"] = time.perf_counter() - t
        row["n_above_floor"], row["floor"], row["lambda_max"] = s.n_above_floor, s.floor, s.lambda_max
        if n in jac_sizes:
            # No cap at the comparison size; a cap above it, where the N x O x P Jacobian
            # alone approaches the machine's memory.
            cap = 0.0 if n == args.sizes[0] else args.jacobian_mem_gb
            row["jacobian_bytes_estimate"] = n * 3 * _n_params(model, v) * 8
            row["jacobian_cap_gb"] = cap
            status, secs, payload = run_jacobian(n, cap)
            row["jacobian_status"] = status
            row["jacobian_s"] = secs
            if status == "ok":
                row["speedup"] = secs / row["structured_s"]
                if payload is not None:
                    row["rel_err"] = float(np.max(np.abs(payload - k)) / np.max(np.abs(payload)))
            else:
                row["jacobian_error"] = payload
        rows.append(row)
        print(_fmt(row), flush=True)
    sides = args.full_image_sides
    if sides is None:
        sides = [64] if jax.default_backend() == "cpu" else [128]
    full = []
    for side in sides:
        full.append(run_full_image(side, args.repeats))
        print(_fmt_full(full[-1]), flush=True)
    result = {"benchmark": "ntk", "rows": rows, "full_image": full}
    if args.json:
        from ntkgrid.files import write_json  # here, not at the top: ntkgrid imports JAX
        write_json(args.json, result, indent=2)
    return 0


def _fmt(r: dict) -> str:
    jac = (f"jacobian {r['jacobian_s']:.2f} s, speedup {r['speedup']:.0f}x, "
           f"rel err {r.get('rel_err', float('nan')):.1e}"
           if r.get("jacobian_status") == "ok" else
           f"jacobian {r['jacobian_status']} "
           f"(its Jacobian alone needs {r['jacobian_bytes_estimate'] / 2**30:.1f} GiB): "
           f"{r.get('jacobian_error', '')[:80]}" if "jacobian_status" in r else "jacobian -")
    return (f"N={r['n']:6d}  structured {r['structured_s']:8.3f} s  eigh {r['eigh_s']:7.2f} s  "
            f"above floor {r['n_above_floor']}/{r['n']}  | {jac}")


if __name__ == "__main__":
    sys.exit(main())
