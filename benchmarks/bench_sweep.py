"""Sweep training throughput: one image at a time (``fit``) vs many images per program (``fit_batch``).

    python -m benchmarks.bench_sweep [--images 12] [--epochs E] [--size PX] [--passes 2]
                                     [--sequential-images K] [--json OUT]

Trains Table 2's three encodings (:data:`ntkgrid.presets.IMAGENET`: multigrid batch 10,
Fourier batch 92, baseline batch 10, their learning rates and 2x512 MLP) on the same
``--images`` of scikit-image's bundled photos (default: all 12, as the sweep's embedded
default), spectra and training curve off (``ntk_points = 0``, ``curve_every = 0``),
measured only at the last epoch (PSNR, MS-SSIM), in two ways in one run:

* sequential: :func:`ntkgrid.training.fit` per image and encoding (what the sweep did);
* batched: :func:`ntkgrid.training.fit_batch` per encoding, the images in groups of
  ``--runs-per-program`` (default automatic) per program, what the sweep does now: as
  the sweep, the benchmark asks XLA for one CPU device per core
  (:func:`experiments._cli.split_host_cpus`), and a group's runs are sharded over the local
  devices. The sequential way runs on the default device, as ``fit`` always did.

Epochs: the paper's 100 on an accelerator; ``--epochs`` (default 6) on a CPU, where
100 epochs of 12 images would take hours. Images are 64 px on a CPU (the quick preset's
size) and 128 px (the paper preset's) elsewhere, unless ``--size``. The CPU default (12
images, 6 epochs) is the representative configuration: with fewer epochs the fixed cost of
every ``fit`` (model set-up, the final measurement) weighs more on the sequential side and
the ratio is lower (RESULTS.md). Both ways run once with one epoch first (compilation and
warm-up, not timed); then, per encoding, the sequential and the batched training are timed
back to back in the order sequential, batched, batched, sequential (``--passes 2``, the
default; each time is the mean of its two), so background load and drift hit both alike;
``--passes 1`` times each once (sequential, batched). ``--sequential-images K`` times the
sequential way on the first K images only and scales its time by ``images / K`` (each
``fit`` is independent, so its time is linear in the images; used on a GPU, where 100
sequential epochs of every image would take most of the run). Prints images/minute for both
(all three encodings per image) and their ratio, and checks that both give the same final
PSNR on the images both trained; ``--json`` writes them with the machine and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _configs(epochs: int) -> dict:
    from ntkgrid import presets

    return {n: c.replace(epochs=epochs, ntk_points=0, checkpoints=(epochs,), curve_every=0)
            for n, c in presets.IMAGENET.items()}


def _train(mode: str, cfg, data, size: int, matmul_precision: str | None, group: int):
    from ntkgrid.training import BatchRun, fit, fit_batch, precision_scope

    if mode == "sequential":
        with precision_scope(matmul_precision):
            return [fit(cfg, x, y, image_shape=(size, size), progress=False) for x, y in data]
    runs = [BatchRun(x, y, image_shape=(size, size)) for x, y in data]
    out = []
    for i in range(0, len(runs), group):
        out += fit_batch(cfg, runs[i:i + group], progress=False, matmul_precision=matmul_precision)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=12, help="bundled photos to train on (at most 12; default 12)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default: 100 on an accelerator, 6 on a CPU)")
    ap.add_argument("--size", type=int, default=None, help="image side (default: 128 on an accelerator, 64 on a CPU)")
    ap.add_argument("--runs-per-program", type=int, default=None,
                    help="images per program of the batched way (default: automatic, as the sweep)")
    ap.add_argument("--matmul-precision", choices=("default", "highest"), default="default",
                    help="float32 matmul precision of both ways (see ntkgrid.training.batched)")
    ap.add_argument("--passes", type=int, choices=(1, 2), default=2,
                    help="2: time sequential, batched, batched, sequential (default); 1: each once")
    ap.add_argument("--sequential-images", type=int, default=None, metavar="K",
                    help="time the sequential way on the first K images only, scaled to all (default: all)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    from experiments._cli import fail, split_host_cpus

    for opt, val, low in (("--images", args.images, 1), ("--epochs", args.epochs, 1), ("--size", args.size, 11),
                          ("--runs-per-program", args.runs_per_program, 1),
                          ("--sequential-images", args.sequential_images, 1)):
        if val is not None and val < low:
            return fail(f"{opt} must be >= {low}, got {val}")

    split_host_cpus()  # as the sweep does: one CPU device per core (before JAX starts)
    import jax

    from ntkgrid import presets, sweep
    from ntkgrid.data.images import image_to_dataset

    cpu = jax.default_backend() == "cpu"
    epochs = args.epochs or (6 if cpu else presets.IMAGENET["multigrid"].epochs)
    size = args.size or (presets.QUICK_IMAGE_SIZE if cpu else presets.IMAGE_SIZE)
    sources, _ = sweep.select_sources(None, args.images, 0)
    data = [image_to_dataset(sweep.load_source(s, size)) for s in sources]
    n = len(data)
    n_seq = min(n, args.sequential_images or n)
    configs = _configs(epochs)
    precision = None if args.matmul_precision == "default" else args.matmul_precision
    from ntkgrid.sweep.runner import group_sizes as _group_sizes

    groups = _group_sizes(args.runs_per_program, configs, size, n)
    load0 = os.getloadavg()
    print(f"bench_sweep: {n} images of {size}x{size} px, {epochs} epoch(s), Table 2 encodings "
          f"{', '.join(configs)}, {len(jax.local_devices())} {jax.default_backend()} device(s), "
          f"batched: images per program {groups}; sequential timed on {n_seq} image(s)"
          f"{f', scaled by {n / n_seq:.2f}' if n_seq < n else ''}; {args.passes} pass(es)",
          flush=True)

    warm = _configs(1)
    for name, cfg in warm.items():  # compile both ways (one epoch), untimed
        _train("sequential", cfg, data[:1], size, precision, groups[name])
        _train("batched", cfg, data, size, precision, groups[name])

    rows, total = [], {"sequential": 0.0, "batched": 0.0}
    print(f"{'encoding':<10}{'batch':>6}{'per prog':>9}{'sequential s':>14}{'batched s':>11}{'ratio':>7}"
          f"{'max |dPSNR| dB':>16}")
    for name, cfg in configs.items():
        secs, psnr = {"sequential": 0.0, "batched": 0.0}, {}
        order = ("sequential", "batched", "batched", "sequential")[:2 * args.passes]  # ABBA: drift hits both alike
        for mode in order:
            part = data if mode == "batched" else data[:n_seq]
            t0 = time.perf_counter()
            res = _train(mode, cfg, part, size, precision, groups[name])
            secs[mode] += (time.perf_counter() - t0) / args.passes * (n / len(part))
            psnr[mode] = [r.final.get("psnr") for r in res]
        for mode in secs:
            total[mode] += secs[mode]
        diff = max(abs(a - b) for a, b in zip(psnr["sequential"], psnr["batched"][:n_seq], strict=True))
        rows.append({"encoding": name, "batch_size": cfg.batch_size, "runs_per_program": groups[name],
                     "seconds": secs, "psnr": psnr,
                     "max_abs_psnr_difference_db": diff, "ratio": secs["sequential"] / secs["batched"]})
        print(f"{name:<10}{cfg.batch_size:>6}{groups[name]:>9}{secs['sequential']:>14.2f}{secs['batched']:>11.2f}"
              f"{secs['sequential'] / secs['batched']:>7.2f}{diff:>16.2e}", flush=True)
    per_min = {k: 60.0 * n / v for k, v in total.items()}
    ratio = per_min["batched"] / per_min["sequential"]
    load1 = os.getloadavg()
    print(f"images/minute (3 encodings each): sequential {per_min['sequential']:.2f}, "
          f"batched {per_min['batched']:.2f}, ratio {ratio:.2f}x")
    print(f"load average start {load0[0]:.1f}, end {load1[0]:.1f} on {os.cpu_count()} CPUs")
    result = {"images": n, "size": size, "epochs": epochs, "runs_per_program": groups,
              "passes": args.passes, "sequential_images": n_seq,
              "matmul_precision": args.matmul_precision,
              "images_per_minute": per_min, "seconds": total, "ratio": ratio, "rows": rows,
              "machine": {**sweep.describe_machine(), "loadavg_start": load0, "loadavg_end": load1}}
    if args.json is not None:
        from ntkgrid.files import write_json  # here, not at the top: ntkgrid imports JAX
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
