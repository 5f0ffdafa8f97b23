"""Every benchmark in one run: each script in a child process with a timeout, one JSON document.

:func:`run_suite` runs the benchmark scripts of :data:`BENCHMARKS` one after the other, each
as ``python -m benchmarks.bench_<name> <args> --json <file>`` in a child process under a
wall-clock timeout, so that a benchmark that fails, hangs or runs out of memory is reported
and the suite goes on. Each script measures and writes its own JSON (the suite does not
re-implement any measurement); the suite adds a headline ratio against the benchmark's peer
(:func:`headline`) and the machine (:func:`describe_machine`: backend, device name, library
versions, load average before and after).

Profiles (the arguments each script gets, :data:`BENCHMARKS`):

* ``full``: every script at its own defaults (which depend on the backend: CPU or GPU sizes);
* ``quick``: smaller CPU sizes, the whole suite within 10 minutes on a 2-core CPU;
* ``gpu``: the accelerator sizes the GPU run needs (``benchmarks/gpu_run.sh``);
* ``tiny``: seconds per benchmark, every code path (the smoke test, ``tests/test_benchmarks.py``).

No JAX is imported here: the children own the devices.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path

__all__ = ["BENCHMARKS", "PROFILES", "Benchmark", "describe_machine", "headline", "run_suite"]

PROFILES = ("full", "quick", "gpu", "tiny")


def _geomean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def _ratios(values: Sequence[float | None]) -> dict:
    """``{"ratio": geometric mean, "min", "max"}`` of the finite positive ``values``."""
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return {"ratio": _geomean(vals), "min": min(vals, default=None), "max": max(vals, default=None)}


def _head_ntk(doc: Mapping) -> dict:
    first = doc["rows"][0] if doc.get("rows") else {}
    full = [r for r in doc.get("full_image", []) if "error" not in r]
    out = {"ratio": first.get("speedup"), "n": first.get("n"),
           "meaning": "neural-tangents jacobian-contraction seconds / ntkgrid structured-kernel seconds, "
                      "same float64 kernel, first size"}
    if full:
        f = full[-1]
        out.update(full_image_n=f["n"], full_image_total_s=f["total_s"], full_image_groups_s=f["groups_s"],
                   groups_over_total=f["groups_over_total"], eigvalsh_s=f["eigvalsh_s"], solver=f["solver"],
                   eigvalsh_numpy_s=f.get("eigvalsh_numpy_s"))
    return out


def _head_interpolate(doc: Mapping) -> dict:
    rows = doc.get("results", [])
    cubic = [r for r in rows if r.get("kernel") == "cubic"]
    out = {**_ratios([r.get("ratio") for r in rows]),
           "meaning": "torch grid_sample seconds / ntkgrid interpolate_dense seconds (forward + backward, "
                      "bilinear), geometric mean over cases and point counts"}
    if cubic:
        out.update(bicubic_ratio=_geomean([r.get("bicubic_ratio") for r in cubic]),
                   cubic_over_linear=_geomean([r.get("cubic_over_linear") for r in cubic]))
    return out


def _head_train(doc: Mapping) -> dict:
    rows = doc.get("rows", [])
    return {**_ratios([r.get("ratio") for r in rows]), "ratio_best": _geomean([r.get("ratio_best") for r in rows]),
            "meaning": "ntkgrid jitted-epoch steps/s / PyTorch eager steps/s (reference thread count), geometric "
                       "mean over encodings and batches; ratio_best: against torch's fastest thread count"}


def _head_sweep(doc: Mapping) -> dict:
    return {"ratio": doc.get("ratio"), "images": doc.get("images"), "epochs": doc.get("epochs"),
            "size": doc.get("size"),
            "meaning": "images/minute batched (fit_batch) / images/minute sequential (fit), Table 2's three "
                       "encodings per image"}


def _head_labels(doc: Mapping) -> dict:
    rows = {r["method"]: r for r in doc.get("rows", [])}
    warm = rows.get("ntkgrid occupancy (embree, warm)", {})
    return {"ratio": warm.get("ratio"), "points_per_s": warm.get("points_per_s"),
            "meaning": "ntkgrid occupancy (Embree, warm) points/s / trimesh contains (ray_triangle) points/s"}


def _head_occupancy(doc: Mapping) -> dict:
    rows = doc.get("rows", [])
    label = [r for r in rows if r["what"].startswith("label (warm")]
    train = [r for r in rows if r["what"].startswith("train ")]
    lab = label[0]["points_per_s"] if label else None
    tr = _geomean([r["points_per_s"] for r in train])
    return {"ratio": lab / tr if lab and tr else None, "label_points_per_s": lab, "train_points_per_s": tr,
            "meaning": "labelling points/s (Embree, warm) / training points/s (jitted epoch, geometric mean "
                       "over the three encodings): how much cheaper fresh labels are than training on them"}


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One benchmark script of the suite."""

    name: str  # the suite's name for it (--only NAME)
    module: str  # python -m MODULE runs it; it accepts --json FILE
    what: str  # one line: what is compared with what
    args: Mapping[str, tuple[str, ...] | None]  # profile -> arguments (None: not run in that profile)
    timeout_s: Mapping[str, float]  # profile -> wall-clock limit of the child, seconds
    headline: Callable[[Mapping], dict]  # the script's JSON -> {"ratio", "meaning", ...}


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "ntk", "benchmarks.bench_ntk",
        "structured NTK vs neural-tangents jacobian contraction; full-image kernel, group split, eigvalsh",
        {"full": (),
         "quick": ("--sizes", "256", "--jacobian-sizes", "256", "--repeats", "1", "--full-image-sides", "64",
                   "--activation-n", "256"),
         "gpu": ("--sizes", "1024", "--jacobian-sizes", "1024", "--repeats", "2", "--full-image-sides", "128"),
         "tiny": ("--sizes", "16", "--jacobian-sizes", "16", "--repeats", "1", "--full-image-sides", "8",
                  "--activation-n", "16")},
        {"full": 3600, "quick": 300, "gpu": 140, "tiny": 120}, _head_ntk),
    Benchmark(
        "interpolate", "benchmarks.bench_interpolate",
        "dense-grid interpolation forward + backward vs torch grid_sample",
        {"full": ("--kernels", "linear", "cubic"),
         "quick": ("--points", "262144", "--repeats", "3", "--kernels", "linear", "cubic"),
         "gpu": ("--points", "1048576", "4194304", "--kernels", "linear", "cubic"),
         "tiny": ("--points", "1024", "--cases", "2d-512-k2", "3d-128-k2", "--repeats", "1", "--warmup", "1",
                  "--block", "1", "--kernels", "linear", "cubic")},
        {"full": 900, "quick": 120, "gpu": 60, "tiny": 60}, _head_interpolate),
    Benchmark(
        "train", "benchmarks.bench_train",
        "jitted lax.scan training epoch vs an equivalent PyTorch eager loop",
        {"full": (), "quick": ("--reps", "3", "--threads", "2"), "gpu": None,
         "tiny": ("--reps", "1", "--threads", "1", "--steps", "2", "--batches", "8")},
        {"full": 900, "quick": 150, "gpu": 60, "tiny": 60}, _head_train),
    Benchmark(
        "sweep", "benchmarks.bench_sweep",
        "the sweep's batched training (fit_batch) vs one image at a time (fit)",
        {"full": (), "quick": (), "gpu": ("--sequential-images", "1", "--passes", "1"),
         "tiny": ("--images", "2", "--epochs", "1", "--size", "12", "--runs-per-program", "2", "--passes", "1")},
        {"full": 1800, "quick": 300, "gpu": 140, "tiny": 90}, _head_sweep),
    Benchmark(
        "labels", "benchmarks.bench_labels",
        "occupancy labels (Embree, batched) vs trimesh's plain contains",
        {"full": (), "quick": ("--points", "100000", "--plain-points", "20", "--winding-points", "500"),
         "gpu": None, "tiny": ("--mesh", "{tiny_mesh}", "--points", "500", "--plain-points", "20",
                               "--winding-points", "20")},
        {"full": 900, "quick": 90, "gpu": 60, "tiny": 60}, _head_labels),
    Benchmark(
        "occupancy", "benchmarks.bench_occupancy",
        "occupancy pipeline points/s: labelling vs training at the paper preset's settings",
        {"full": ("--throughput",), "quick": ("--throughput", "--epochs", "1", "--points-per-epoch", "50000"),
         "gpu": None,
         "tiny": ("--throughput", "--mesh", "{tiny_mesh}", "--epochs", "1", "--points-per-epoch", "14000")},
        {"full": 900, "quick": 150, "gpu": 120, "tiny": 90}, _head_occupancy),
)


def headline(name: str, doc: Mapping) -> dict:
    """The headline of benchmark ``name``'s JSON ``doc`` (``{"ratio", "meaning", ...}``)."""
    return {b.name: b for b in BENCHMARKS}[name].headline(doc)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_PROBE = ("import json, jax; d = jax.devices()[0]; "
          "print(json.dumps({'backend': jax.default_backend(), 'device': getattr(d, 'device_kind', str(d)), "
          "'devices': [str(x) for x in jax.devices()]}))")


def describe_machine() -> dict:
    """Platform, CPU, cores, load average, library versions, and JAX's backend and device name
    (asked of a child process, so that this process never starts a backend)."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "versions": {d: _version(d) for d in ("ntkgrid", "jax", "jaxlib", "flax", "optax", "numpy", "scipy",
                                                  "torch", "neural-tangents", "trimesh", "embreex")}}
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True)
        info.update(json.loads(out.stdout.strip().splitlines()[-1]))
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as err:
        info.update(backend=None, device=None, probe_error=f"{type(err).__name__}: {err}"[:300])
    try:
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
        info["memory_gib"] = round(int(mem[1]) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    return info


def _tiny_mesh(folder: Path) -> Path:
    """A small watertight mesh file for the ``tiny`` profile (an icosphere, 320 faces)."""
    import trimesh

    path = folder / "tiny_mesh.ply"
    trimesh.creation.icosphere(subdivisions=2, radius=0.4).export(path)
    return path


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_one(bench: Benchmark, profile: str, workdir: Path, *, log: Callable[[str], None] = print,
            timeout_s: float | None = None, subst: Mapping[str, str] | None = None) -> dict:
    """Run ``bench`` in a child process; its entry of the suite's JSON.

    Returns:
      ``{"status": "ok" | "failed" | "timeout" | "skipped", "command", "seconds", "returncode",
      "headline", "raw" (the script's JSON), "output_tail", "error"}``.
    """
    args = bench.args.get(profile)
    if args is None:
        return {"status": "skipped", "reason": f"not part of the {profile} profile"}
    args = [a.format(**(subst or {})) for a in args]
    out = workdir / f"{bench.name}.json"
    cmd = [sys.executable, "-m", bench.module, *args, "--json", str(out)]
    limit = timeout_s if timeout_s is not None else bench.timeout_s[profile]
    log(f"[{bench.name}] {' '.join(cmd[1:])}  (timeout {limit:.0f} s)")
    t0 = time.perf_counter()
    entry: dict = {"command": ["python", *cmd[1:]], "timeout_s": limit}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
        entry.update(returncode=proc.returncode, output_tail=_tail(proc.stdout + "\n" + proc.stderr, 40))
        status = "ok" if proc.returncode == 0 else "failed"
        if status == "failed":
            entry["error"] = _tail(proc.stderr or proc.stdout, 8)
    except subprocess.TimeoutExpired as err:
        text = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        entry.update(returncode=None, output_tail=_tail(text, 40), error=f"timed out after {limit:.0f} s")
        status = "timeout"
    entry["seconds"] = time.perf_counter() - t0
    if status == "ok":
        try:
            entry["raw"] = json.loads(out.read_text())
            entry["headline"] = bench.headline(entry["raw"])
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            status, entry["error"] = "failed", f"no usable JSON from the script: {type(err).__name__}: {err}"
    entry["status"] = status
    if status == "ok":
        h = entry["headline"]
        ratio = "-" if h.get("ratio") is None else f"{h['ratio']:.2f}x"
        log(f"[{bench.name}] ok in {entry['seconds']:.0f} s: {ratio} ({h['meaning']})")
    else:
        log(f"[{bench.name}] {status.upper()} after {entry['seconds']:.0f} s: {entry.get('error', '')}")
    return entry


def run_suite(profile: str = "full", only: Sequence[str] | None = None, *, log: Callable[[str], None] = print,
              timeout_s: float | None = None, workdir: Path | None = None,
              on_progress: Callable[[dict], None] | None = None) -> dict:
    """Run the benchmarks (all, or those named in ``only``, in that order) of ``profile``; the
    suite's JSON document.

    Args:
      profile: one of :data:`PROFILES`.
      only: benchmark names (:data:`BENCHMARKS`), run in the order given; None runs all.
      log: where progress lines go.
      timeout_s: one limit for every child (default: each benchmark's for the profile).
      workdir: where the children write their JSON (default: a temporary folder, removed).
      on_progress: called with the document so far after every benchmark (``"complete"``
        False and ``"pending"`` listing the benchmarks not run yet), so that a suite stopped
        half-way keeps what it measured.

    Returns:
      ``{"suite", "profile", "started", "machine" (:func:`describe_machine`), "loadavg_before",
      "loadavg_after", "seconds", "benchmarks": {name: run_one's entry}, "failed": [names],
      "pending": [], "complete": True}``.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    names = [b.name for b in BENCHMARKS]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {names}")
    by_name = {b.name: b for b in BENCHMARKS}
    chosen = [by_name[n] for n in dict.fromkeys(only)] if only else list(BENCHMARKS)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="ntkgrid_bench_")
        workdir = Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        doc = {"suite": "ntkgrid benchmarks", "profile": profile,
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": describe_machine(),
               "loadavg_before": list(load0)}
        log(f"benchmarks ({profile}): {', '.join(b.name for b in chosen)} on {doc['machine'].get('backend')} "
            f"({doc['machine'].get('device')}), {os.cpu_count()} CPUs, load average {load0[0]:.1f}")
        subst = {"tiny_mesh": str(_tiny_mesh(workdir))} if profile == "tiny" else {}
        doc["benchmarks"] = {}
        for i, b in enumerate(chosen):
            doc["benchmarks"][b.name] = run_one(b, profile, workdir, log=log, timeout_s=timeout_s, subst=subst)
            doc["loadavg_after"] = list(os.getloadavg())
            doc["seconds"] = time.perf_counter() - t0
            doc["failed"] = [n for n, e in doc["benchmarks"].items() if e["status"] in ("failed", "timeout")]
            doc["pending"] = [c.name for c in chosen[i + 1:]]
            doc["complete"] = not doc["pending"]
            if on_progress is not None:
                on_progress(doc)
        return doc
    finally:
        if tmp is not None:
            tmp.cleanup()
