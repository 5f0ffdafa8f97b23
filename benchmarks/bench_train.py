"""Training throughput: ntkgrid's jitted ``lax.scan`` epoch vs an equivalent PyTorch eager loop.

    python -m benchmarks.bench_train [--reps 5] [--threads 2 1] [--json OUT]

Both sides train the same model with the same loop: a coordinate MLP in the NTK
parameterisation (2 x 512 ReLU, linear 3-channel output, ``beta = 0.1``) on 2-D points,
plain SGD, MSE, shuffled minibatches (a fresh permutation per epoch, the batch gathered
by index). Encodings: none (baseline), Fourier features ``L = 8`` (the paper's Eq. 1), and
a 1-level multigrid (``k = 2``, 200 x 200 nodes, bilinear; PyTorch uses
``torch.nn.functional.grid_sample(align_corners=True, padding_mode="border")`` on the
node table). Batch sizes 32 and 1024.

* ours: :func:`ntkgrid.training.make_epoch_fn`, the function :func:`ntkgrid.training.fit`
  calls: one jitted call per epoch, steps in ``lax.scan``.
* torch: the usual eager loop (``randperm``, index, forward, ``MSELoss``, ``zero_grad``,
  ``backward``, ``SGD.step``) with ``torch.set_num_threads(t)`` for each ``t`` of
  ``--threads``; the first (default 2) is the reference. JAX's CPU backend uses all
  cores of the machine (2 on the dev box). The extra single-thread torch column is there
  because on a loaded machine torch's OpenMP threads spin at barriers and 2 threads
  can be several times slower than 1; ``ratio`` compares with the reference,
  ``ratio_best`` with the fastest torch setting (the conservative figure).

One timed repetition is one epoch of ``steps`` SGD steps. After one warm-up epoch each
(which also compiles ours), the runners alternate repetitions so that background load
hits all alike; the table shows the median steps/s over ``--reps`` repetitions. The load
average is printed and stored, since other processes slow every column. ``--json``
writes the rows plus the machine description.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

CASES = (  # (name, ntkgrid encoding config dict: ntkgrid.config.encoding_from_dict)
    ("baseline", dict(kind="baseline")),
    ("fourier L=8", dict(kind="fourier", num_frequencies=8)),
    ("multigrid k=2 200x200", dict(kind="multigrid", num_levels=1, features_per_level=2, min_res=200,
                                   max_res=200)),
)
BATCHES = (32, 1024)
HIDDEN = (512, 512)
LR = 0.1  # small enough that no case diverges during the timing


def _steps_for(batch: int, steps: int | None = None) -> int:
    """SGD steps per timed epoch: ``steps`` if given, else 256 for small batches and 16 for large."""
    if steps is not None:
        return steps
    return 256 if batch <= 64 else 16


# ----------------------------------------------------------------------------- torch side


def _torch_model(enc: dict):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class NTKLinear(nn.Module):
        def __init__(self, fan_in: int, out: int, beta: float = 0.1):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(fan_in, out))
            self.bias = nn.Parameter(torch.randn(out))
            self.w_scale, self.beta = fan_in**-0.5, beta

        def forward(self, a):
            return self.w_scale * (a @ self.weight) + self.beta * self.bias

    class Fourier(nn.Module):
        def __init__(self, levels: int):
            super().__init__()
            self.register_buffer("freqs", 2.0 ** torch.arange(levels, dtype=torch.float32))

        def forward(self, x):  # (B, d) -> (B, 2 L d), ordered as ntkgrid's FourierFeatures
            arg = x[:, None, :] * self.freqs[:, None]
            return torch.stack([torch.sin(arg), torch.cos(arg)], dim=-2).reshape(x.shape[0], -1)

    class Grid(nn.Module):
        def __init__(self, res: int, k: int):
            super().__init__()
            self.table = nn.Parameter(0.01 * torch.randn(1, k, res, res))

        def forward(self, x):  # (B, 2) -> (B, k + 2): [bilinear grid features, x]
            g = F.grid_sample(self.table, (2.0 * x - 1.0)[None, :, None, :], mode="bilinear",
                              padding_mode="border", align_corners=True)
            return torch.cat([g[0, :, :, 0].T, x], dim=-1)

    class MLP(nn.Module):
        def __init__(self, encoding, width_in: int):
            super().__init__()
            self.encoding = encoding
            widths = [width_in, *HIDDEN, 3]
            self.layers = nn.ModuleList(NTKLinear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))

        def forward(self, x):
            h = self.encoding(x)
            for layer in self.layers[:-1]:
                h = torch.relu(layer(h))
            return self.layers[-1](h)

    if enc["kind"] == "baseline":
        return MLP(nn.Identity(), 2)
    if enc["kind"] == "fourier":
        return MLP(Fourier(enc["num_frequencies"]), 4 * enc["num_frequencies"])
    return MLP(Grid(enc["max_res"], enc["features_per_level"]), enc["features_per_level"] + 2)


def _torch_runner(enc: dict, x: np.ndarray, y: np.ndarray, batch: int, steps: int):
    import torch

    torch.manual_seed(0)
    model = _torch_model(enc)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.MSELoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    n = xt.shape[0]

    def epoch() -> float:
        perm = torch.randperm(n)
        total = 0.0
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        return float(total) / steps

    return epoch


# ----------------------------------------------------------------------------- our side


def _jax_runner(enc: dict, x: np.ndarray, y: np.ndarray, batch: int):
    import jax
    import jax.numpy as jnp
    import optax

    from ntkgrid.config import TrainConfig, encoding_from_dict
    from ntkgrid.models import build_model
    from ntkgrid.training import make_epoch_fn

    cfg = TrainConfig(encoding=encoding_from_dict(enc), hidden=HIDDEN, learning_rate=LR, batch_size=batch)
    model = build_model(cfg, 2, 3)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.asarray(x[:1]))
    state = {"v": variables, "o": optax.sgd(LR).init(variables["params"]), "e": 0}
    fn = make_epoch_fn(model, "mse", batch, x.shape[0])
    key, lr = jax.random.PRNGKey(1), np.float32(LR)
    xd, yd = jnp.asarray(x), jnp.asarray(y)

    def epoch() -> float:
        state["v"], state["o"], loss = fn(state["v"], state["o"], key, np.int32(state["e"]), lr, xd, yd)
        state["e"] += 1
        return float(loss)  # blocks until the epoch is done

    return epoch


# ----------------------------------------------------------------------------- driver


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_case(name: str, enc: dict, batch: int, reps: int, threads: tuple[int, ...],
             steps: int | None = None) -> dict:
    import torch

    steps = _steps_for(batch, steps)
    n = steps * batch  # one epoch = `steps` full batches, no padding
    rng = np.random.default_rng(0)
    x = rng.random((n, 2), dtype=np.float32)
    y = rng.random((n, 3), dtype=np.float32)
    runners = {"ours": _jax_runner(enc, x, y, batch)}
    for t in threads:
        runners[f"torch{t}"] = _torch_runner(enc, x, y, batch, steps)

    def timed(key: str) -> float:
        if key.startswith("torch"):
            torch.set_num_threads(int(key[5:]))
        return _time(runners[key])

    first = {key: timed(key) for key in runners}  # warm-up; compiles ours
    times: dict[str, list[float]] = {key: [] for key in runners}
    for _ in range(reps):  # alternate so background load hits every runner alike
        for key in runners:
            times[key].append(timed(key))
    sps = {key: steps / statistics.median(t) for key, t in times.items()}
    ref = sps[f"torch{threads[0]}"]
    best = max(v for k, v in sps.items() if k != "ours")
    return {"case": name, "batch": batch, "steps_per_epoch": steps, "ours_steps_per_s": sps["ours"],
            "torch_steps_per_s": ref, "torch_threads": threads[0],
            "torch_steps_per_s_by_threads": {k[5:]: v for k, v in sps.items() if k != "ours"},
            "ratio": sps["ours"] / ref, "ratio_best": sps["ours"] / best, "ours_first_call_s": first["ours"],
            "best_steps_per_s": {k: steps / min(t) for k, t in times.items()},
            "times_s": times}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed epochs per runner and case (median reported)")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                    help="torch.set_num_threads values; the first is the reference")
    ap.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), help="batch sizes (default 32 1024)")
    ap.add_argument("--steps", type=int, default=None,
                    help="SGD steps per timed epoch (default 256 for batches up to 64, else 16)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    bad = [f"--{k} {v}" for k, v in (("batches", min(args.batches)), ("steps", args.steps),
                                     ("reps", args.reps), ("threads", min(args.threads))) if v is not None and v < 1]
    if bad:
        print(f"bench_train: {', '.join(bad)}: must be at least 1", file=sys.stderr)
        return 2

    try:
        import torch
    except ImportError:
        print("bench_train: torch is not installed; nothing to compare against", file=sys.stderr)
        return 2
    import jax

    threads = tuple(args.threads)
    load0 = os.getloadavg()
    rows = []
    extra = "".join(f"{f'torch({t})':>12}" for t in threads[1:])
    print(f"{'case':<24}{'batch':>6}{'ours steps/s':>14}{f'torch({threads[0]}) steps/s':>19}{'ratio':>8}"
          f"{extra}{'ratio_best':>12}")
    for name, enc in CASES:
        for batch in args.batches:
            r = run_case(name, enc, batch, args.reps, threads, args.steps)
            rows.append(r)
            by = r["torch_steps_per_s_by_threads"]
            extra = "".join(f"{by[str(t)]:>12.1f}" for t in threads[1:])
            print(f"{name:<24}{batch:>6}{r['ours_steps_per_s']:>14.1f}{r['torch_steps_per_s']:>19.1f}"
                  f"{r['ratio']:>8.2f}{extra}{r['ratio_best']:>12.2f}", flush=True)
    machine = {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
               "jax": jax.__version__, "torch": torch.__version__,
               "jax_devices": [str(d) for d in jax.devices()], "loadavg_start": load0, "loadavg_end": os.getloadavg()}
    print(f"load average start {load0[0]:.1f}, end {machine['loadavg_end'][0]:.1f} on {os.cpu_count()} CPUs")
    result = {"rows": rows, "machine": machine, "hidden": list(HIDDEN), "lr": LR, "torch_threads": list(threads)}
    if args.json is not None:
        from ntkgrid.files import write_json  # here, not at the top: ntkgrid imports JAX
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
