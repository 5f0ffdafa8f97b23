"""A sweep's output folder (layout: see :mod:`ntkgrid.sweep`): the manifest's identity that
a rerun or a merge must match, where the numbers were measured, and reading a sweep back
(:func:`load_sweep`)."""

from __future__ import annotations

import os
import platform
from collections.abc import Collection, Mapping
from pathlib import Path

from ntkgrid import files
from ntkgrid.config import TrainConfig
from ntkgrid.sweep.common import SweepError, read_json

__all__ = ["IDENTITY_KEYS", "check_manifest", "describe_machine", "identity_diff", "load_sweep", "read_list"]

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
    """Where the numbers were measured: platform, CPU count, JAX backend and devices."""
    import jax

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}


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
    """The records of a ``skipped.json``/``failed.json`` (``[]`` if absent), without the image ids ``drop``."""
    items = read_json(path) if path.exists() else []
    return [s for s in items if s.get("image_id") not in drop]


def load_sweep(out: str | os.PathLike) -> dict:
    """Read a sweep (or merged) folder back.

    Returns:
      ``{"manifest", "records" (per-image results, selection order, run dirs resolved to
      absolute ``run_path``), "skipped", "failed", "missing" (selected ids without results
      and not skipped)}``. Raises :class:`SweepError` when ``out`` is not a sweep folder.
    """
    out = Path(out)
    if not (out / "manifest.json").exists():
        raise SweepError(f"{out}: no manifest.json, so not a sweep output folder")
    manifest = read_json(out / "manifest.json")
    by_id = {}
    for p in sorted((out / "results").glob("*.json")):
        r = read_json(p)
        for run in r.get("runs", {}).values():
            run["run_path"] = str((out / run["run_dir"]).resolve())
        by_id[r["image_id"]] = r
    order = [s["image_id"] for s in manifest.get("selection", [])]
    records = [by_id[i] for i in order if i in by_id] + [by_id[i] for i in sorted(by_id) if i not in order]
    skipped = read_list(out / "skipped.json")
    failed = read_list(out / "failed.json")
    done = set(by_id) | {s["image_id"] for s in skipped} | {f["image_id"] for f in failed}
    missing = [i for i in order if i not in done]
    return {"manifest": manifest, "records": records, "skipped": skipped, "failed": failed, "missing": missing}
