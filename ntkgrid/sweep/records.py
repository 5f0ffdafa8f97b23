"""The sweep's per-image results file, ``results/<image_id>.json``, typed: one
:class:`RunRecord` per finished run inside one :class:`ImageRecord` per image.

This module is the file's only writer (:meth:`ImageRecord.to_json`,
:meth:`RunRecord.to_json`: the dicts :func:`ntkgrid.files.write_json` writes) and its only
reader (:meth:`ImageRecord.from_json`, :func:`read_image_record`). Everything else reads
attributes (``record.runs["multigrid"].psnr``), never string keys.

Old folders: a results file written before a key existed still loads; the missing keys
read as their defaults below (``None``, ``False``, empty), and keys this version does not
know are ignored. Written back (a merge, ``results.json``), such a record has every key of
this version.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ntkgrid import files
from ntkgrid.sweep.common import FORMAT

__all__ = ["ImageRecord", "RunRecord", "middle_and_end", "read_image_record"]

#: A run's keys whose values must be numbers or null (the file is unusable otherwise).
_NUMBERS = ("psnr", "ms_ssim", "seconds")


def middle_and_end(history: Sequence[Mapping], epochs: int) -> dict[str, int | None]:
    """Epochs to call "start", "middle" and "end" among a run's measured ``history``.

    Args:
      history: the run's measurements, each with an ``"epoch"``.
      epochs: the epochs the run was configured for.

    Returns:
      ``{"start", "middle", "end"}``: start is epoch 0 if measured; end the last measured
      epoch; middle the measured epoch strictly between them nearest ``epochs / 2``
      (``None`` when there is none).
    """
    measured = sorted(int(h["epoch"]) for h in history)
    if not measured:
        return {"start": None, "middle": None, "end": None}
    end = measured[-1]
    inner = [e for e in measured if 0 < e < end]
    middle = min(inner, key=lambda e: (abs(e - epochs / 2), e)) if inner else None
    return {"start": 0 if measured[0] == 0 else None, "middle": middle, "end": end}


def _epoch_keys(history: Mapping | None) -> dict[int, Any]:
    """``{epoch: value}`` with int epochs (JSON object keys are strings)."""
    return {int(k): v for k, v in (history or {}).items()}


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What a sweep keeps of one finished run (``results/<image_id>.json``'s ``runs[name]``).

    Built by :meth:`from_result` (training) or :meth:`from_json` (the file); written by
    :meth:`to_json`, whose keys are the fields in this order (``run_path`` only on request).
    """

    run_dir: str  # the run's folder relative to the sweep folder ("runs/<image_id>/<name>")
    label: str | None = None  # the label the run was trained under ("[1/2] img0 baseline")
    psnr: float | None = None  # final PSNR of the clipped prediction over the whole image, dB (None: not measured)
    ms_ssim: float | None = None  # final MS-SSIM, unitless in [0, 1] (None: not measured)
    ms_ssim_scales: int | None = None  # scales MS-SSIM used (fewer on small images)
    loss: float | None = None  # final full-image loss (MSE)
    final_epoch: int | None = None  # the epoch of the final measurement
    epochs_run: int | None = None  # epochs trained (less than configured when it diverged)
    diverged: bool = False  # training stopped on a non-finite loss
    diverged_epoch: int | None = None  # the 1-based epoch whose loss was non-finite (None if not diverged)
    seconds: float | None = None  # wall time of training and measuring, s
    checkpoints: Mapping[str, int | None] = dataclasses.field(default_factory=dict)  # {"start", "middle", "end"}: epochs
    psnr_history: Mapping[int, float | None] = dataclasses.field(default_factory=dict)  # {epoch: PSNR dB} measured
    lambda_max: float | None = None  # final NTK spectrum's largest eigenvalue (None: no spectrum)
    lambda_min: float | None = None  # ... its smallest eigenvalue
    floor: float | None = None  # ... its numerical floor N*eps*lambda_max
    n_above_floor: int | None = None  # ... how many eigenvalues lie above the floor
    ntk_points: int | None = None  # ... the kernel's size N (points)
    ntk_selection: str | None = None  # how the kernel points were chosen ("all", "window")
    grid_offdiag_fraction: float | None = None  # final grid kernel's off-diagonal share of its squared norm
    grid_offdiag_history: Mapping[int, float | None] = dataclasses.field(default_factory=dict)  # {epoch: share}
    curve: tuple[Mapping[str, Any], ...] = ()  # full-image curve, ({"epoch", "loss", "psnr"}, ...) by epoch
    run_path: str | None = None  # absolute run folder (ntkgrid.sweep.load_sweep sets it; not in the file)

    @classmethod
    def from_result(cls, result, run_dir: str) -> RunRecord:
        """The record of a :class:`ntkgrid.training.RunResult` whose folder is ``run_dir``
        (relative to the sweep's): its final measurement, spectrum scalars, histories, curve."""
        final = result.final
        spec = final.get("spectrum")
        return cls(
            run_dir=run_dir, label=result.label, psnr=final.get("psnr"), ms_ssim=final.get("ms_ssim"),
            ms_ssim_scales=final.get("ms_ssim_scales"), loss=final.get("loss"), final_epoch=final.get("epoch"),
            epochs_run=int(result.losses.size), diverged=bool(result.diverged),
            diverged_epoch=result.diverged_epoch, seconds=float(result.seconds),
            checkpoints=middle_and_end(result.history, result.config.epochs),
            psnr_history={int(h["epoch"]): h.get("psnr") for h in result.history},
            lambda_max=None if spec is None else spec.lambda_max,
            lambda_min=None if spec is None else spec.lambda_min,
            floor=None if spec is None else spec.floor,
            n_above_floor=None if spec is None else spec.n_above_floor,
            ntk_points=None if spec is None else int(spec.eigenvalues.size),
            ntk_selection=result.options.get("ntk_selection"),
            grid_offdiag_fraction=final.get("grid_offdiag_fraction"),
            grid_offdiag_history={int(h["epoch"]): h.get("grid_offdiag_fraction") for h in result.history},
            curve=tuple({k: c.get(k) for k in ("epoch", "loss", "psnr")} for c in result.curve))

    def to_json(self, *, with_path: bool = False) -> dict:
        """The JSON-ready dict: every field but ``run_path`` in field order (and ``run_path``
        last when ``with_path``); histories keyed by epoch, the curve a list."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "run_path":
                if with_path:
                    out["run_path"] = v
            elif isinstance(v, Mapping):
                out[f.name] = dict(v)
            elif f.name == "curve":
                out[f.name] = [dict(c) for c in v]
            else:
                out[f.name] = v
        return out

    @classmethod
    def from_json(cls, data: Any) -> RunRecord:
        """Read a run's entry (missing keys: the defaults; unknown keys ignored; epochs of the
        histories as ints). Raises ``ValueError`` when it is not a run's results: not an
        object, no ``run_dir`` string, or a non-number PSNR, MS-SSIM or seconds."""
        if not isinstance(data, Mapping) or not isinstance(data.get("run_dir"), str) \
                or not all(isinstance(data.get(k), (int, float, type(None))) for k in _NUMBERS):
            raise ValueError("not a run's results")
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        for key in ("psnr_history", "grid_offdiag_history"):
            kw[key] = _epoch_keys(kw.get(key))
        kw["checkpoints"] = dict(kw.get("checkpoints") or {})
        kw["curve"] = tuple(kw.get("curve") or ())
        kw["diverged"] = bool(kw.get("diverged"))
        return cls(**kw)


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image's results file: where the image came from and its finished runs.

    Written by :meth:`to_json` (keys ``format``, ``image_id``, ``source``, ``synset``,
    ``size``, ``runs``), read by :meth:`from_json` / :func:`read_image_record`.
    """

    image_id: str  # the image's id in the selection (the file is results/<image_id>.json)
    source: str | None = None  # the image's file, or skimage.data.<name> for a bundled photo
    synset: str | None = None  # its ImageNet synset folder (None for bundled photos)
    size: tuple[int, ...] | None = None  # (H, W) pixels it was trained at
    runs: Mapping[str, RunRecord] = dataclasses.field(default_factory=dict)  # {config name: its run}
    format: int = FORMAT  # the sweep format number the file was written with

    def to_json(self, *, with_paths: bool = False) -> dict:
        """The JSON-ready dict of ``results/<image_id>.json`` (with each run's absolute
        ``run_path`` when ``with_paths``, as ``results.json`` lists the images)."""
        return {"format": self.format, "image_id": self.image_id, "source": self.source, "synset": self.synset,
                "size": None if self.size is None else list(self.size),
                "runs": {n: r.to_json(with_path=with_paths) for n, r in self.runs.items()}}

    @classmethod
    def from_json(cls, data: Any) -> ImageRecord:
        """Read a results file's dict. Raises ``ValueError`` naming what is wrong (not an
        object, no image id or runs, a run entry that is not a run's results)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("image_id"), str) \
                or not isinstance(data.get("runs"), Mapping):
            raise ValueError("not an image's results")
        runs = {}
        for name, run in data["runs"].items():
            try:
                runs[name] = RunRecord.from_json(run)
            except ValueError:
                raise ValueError(f"the entry of {name!r} is not a run's results") from None
        size = data.get("size")
        return cls(image_id=data["image_id"], source=data.get("source"), synset=data.get("synset"),
                   size=None if size is None else tuple(size), runs=runs,
                   format=data.get("format", FORMAT))

    def with_runs(self, fn) -> ImageRecord:
        """A copy whose every run is ``fn(run)`` (e.g. with its folder resolved)."""
        return dataclasses.replace(self, runs={n: fn(r) for n, r in self.runs.items()})


def read_image_record(path: str | os.PathLike) -> tuple[ImageRecord | None, str | None]:
    """A ``results/<image_id>.json`` file as an :class:`ImageRecord` and ``None``, or
    ``None`` and why it cannot be used (unreadable JSON, not the results of that image, a
    run entry without its numbers), naming the file."""
    path = Path(path)
    try:
        data = files.read_json(path)
    except ValueError as err:
        return None, str(err)
    if not isinstance(data, Mapping) or data.get("image_id") != path.stem or not isinstance(data.get("runs"), Mapping):
        return None, f"{path}: not the results of image {path.stem}"
    try:
        return ImageRecord.from_json(data), None
    except ValueError as err:
        return None, f"{path}: {err}"
