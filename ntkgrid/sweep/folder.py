"""A sweep's output folder (layout: see :mod:`ntkgrid.sweep`): the manifest's identity that
a rerun or a merge must match, where the numbers were measured, and reading a sweep back
(:func:`load_sweep`)."""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Collection, Mapping
from pathlib import Path

import jax

from ntkgrid import files
from ntkgrid.config import TrainConfig
from ntkgrid.sweep.common import SweepError, read_json
from ntkgrid.sweep.records import read_image_record

__all__ = ["IDENTITY_KEYS", "check_manifest", "describe_machine", "identity_diff", "load_sweep", "read_list",
           "set_aside"]

#: manifest.json keys that must match for a rerun or a merge to reuse results (the
#: selection is compared by image id, so shards may see the data root at different paths).
IDENTITY_KEYS = ("table", "preset", "size", "seed", "num_images", "configs", "selection")


def _identity(manifest: Mapping) -> dict:
    """The :data:`IDENTITY_KEYS` of a manifest, the selection as image ids, and the configs in
    the current :data:`~ntkgrid.config.CONFIG_FORMAT` (a sweep written before it still matches)."""
    ident = {k: manifest.get(k) for k in IDENTITY_KEYS}
    ident["selection"] = [s["image_id"] for s in ident["selection"] or []]
    ident["configs"] = {k: _current_format(c) for k, c in (ident["configs"] or {}).items()}
    return ident


def _current_format(config: Mapping) -> Mapping:
    try:
        return TrainConfig.from_dict(config).to_dict()
    except (TypeError, ValueError, AttributeError):
        return config  # not a config this version reads: compared as it is


def identity_diff(a: Mapping, b: Mapping) -> list[str]:
    """Where the identities of two manifests differ (:func:`ntkgrid.files.diff` lines)."""
    return files.diff(files.to_jsonable(_identity(a)), files.to_jsonable(_identity(b)))


def describe_machine() -> dict:
    """Where the numbers were measured: platform, CPU count, JAX backend and this process's
    devices (``jax.local_devices()``: in a multi-host job, those of this host)."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.local_devices()]}


def check_manifest(out: Path, manifest: Mapping) -> None:
    """Raise :class:`SweepError` if ``out/manifest.json`` holds a sweep with another identity."""
    path = out / "manifest.json"
    if not path.exists():
        return
    diffs = identity_diff(read_json(path), manifest)
    if diffs:
        raise SweepError(
            f"{path}: this folder holds a sweep with other settings ({'; '.join(diffs[:6])}"
            f"{'; ...' if len(diffs) > 6 else ''}); use another --out or delete the folder")


def read_list(path: Path, drop: Collection[str] = ()) -> list[dict]:
    """The records of a ``skipped.json``/``failed.json`` (``[]`` if absent or unreadable: a
    sweep rewrites both, and their images, having no results, are tried again), without the
    image ids ``drop``."""
    try:
        items = files.read_json(path) if path.exists() else []
    except ValueError:
        items = []
    items = items if isinstance(items, list) else []
    return [s for s in items if isinstance(s, dict) and isinstance(s.get("image_id"), str)
            and s["image_id"] not in drop]


def set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.corrupt`` (``.corrupt-2``, ... if taken) so that nothing is
    deleted; returns the new path."""
    k, dest = 1, path.with_name(path.name + ".corrupt")
    while dest.exists():
        k += 1
        dest = path.with_name(f"{path.name}.corrupt-{k}")
    path.rename(dest)
    return dest


def load_sweep(out: str | os.PathLike) -> dict:
    """Read a sweep (or merged) folder back.

    Returns:
      ``{"manifest", "records" (per-image :class:`~ntkgrid.sweep.records.ImageRecord`, in
      selection order, each run's ``run_path`` its absolute folder), "skipped", "failed",
      "corrupt" (``[{"image_id", "reason"}]``: results files that cannot be used; a rerun of the sweep rebuilds them from their run
      folders), "missing" (selected ids without usable results and not skipped)}``. Raises
      :class:`SweepError` when ``out`` is not a sweep folder.
    """
    out = Path(out)
    if not (out / "manifest.json").exists():
        raise SweepError(f"{out}: no manifest.json, so not a sweep output folder")
    manifest = read_json(out / "manifest.json")
    by_id, corrupt = {}, []
    for p in sorted((out / "results").glob("*.json")):
        r, reason = read_image_record(p)
        if r is None:
            corrupt.append({"image_id": p.stem, "reason": reason})
            continue
        by_id[r.image_id] = r.with_runs(lambda run: dataclasses.replace(
            run, run_path=str((out / run.run_dir).resolve())))
    order = [s["image_id"] for s in manifest.get("selection", [])]
    records = [by_id[i] for i in order if i in by_id] + [by_id[i] for i in sorted(by_id) if i not in order]
    skipped = read_list(out / "skipped.json")
    failed = read_list(out / "failed.json")
    done = set(by_id) | {s["image_id"] for s in skipped} | {f["image_id"] for f in failed}
    missing = [i for i in order if i not in done]
    return {"manifest": manifest, "records": records, "skipped": skipped, "failed": failed, "corrupt": corrupt,
            "missing": missing}
