"""The run folder: the one place that knows a training run's paths and file formats.

Files in a run folder (all written atomically through :mod:`ntkgrid.files`):

* ``run.json``: ``{"format", "label", "config", "options"}``, written at the start;
  ``options`` = ``{"n_points", "dim", "out_dim", "epoch_size", "image_shape",
  "ntk_points", "ntk_selection", "ntk_window", "data_hash", "ntk_hash"}`` (plus
  ``"fresh_hash"`` for runs with fresh points every epoch). A later run with a different
  config or data in the same folder is refused (``ValueError`` naming the differing fields).
* ``metrics.jsonl``: one JSON line per measured epoch: the scalar keys of the history
  entry, ``"spectrum"`` as ``{group: {"lambda_max", "lambda_min", "floor",
  "n_above_floor", "n_negative"}}`` (or null), ``"spectrum_file"`` and
  ``"checkpoint_file"`` (paths relative to the folder). Non-finite numbers are null.
* ``curve.jsonl``: the training curve, one JSON line per epoch of
  ``cfg.curve_epochs()`` and per measured epoch: ``{"epoch", "loss", "psnr", "accuracy",
  "train_loss"}`` measured on all the data (not the minibatch loss).
* ``spectra/epoch_XXXXXX.npz`` (:func:`spectra_path`): per group ``eigenvalues/<group>``
  (descending, float64), ``floor/<group>``, ``n_above_floor/<group>``, ``n_negative/<group>``,
  ``asymmetry/<group>``, plus ``groups`` (names) and ``epoch``;
  ``spectra/ntk_x.npy`` (:func:`ntk_points_path`) holds the ``(M, d)`` points the kernels
  were computed on.
* ``checkpoints/epoch_XXXXXX.msgpack`` (:func:`checkpoint_path`, ``flax.serialization``):
  ``{"variables", "opt_state", "epoch", "key" (the data key, uint32 (2,)), "losses"
  (per-epoch, float64), "seconds"}``.
* ``summary.json`` at the end: ``{"format", "label", "config", "options", "complete",
  "diverged", "diverged_epoch", "epochs_run", "params_epoch", "seconds", "final" (the last
  metrics line), "losses" (per epoch, null if non-finite), "curve"}``.

A run resumes from the newest checkpoint that restores and has its metrics line
(:meth:`RunFolder.restore`); a folder whose ``summary.json`` is complete holds a finished run.
"""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid.config import TrainConfig
from ntkgrid.data import DataError
from ntkgrid.files import diff, read_json, read_jsonl, to_jsonable, write_bytes, write_json, write_jsonl
from ntkgrid.spectrum import Spectrum
from ntkgrid.training.result import RunResult

__all__ = ["FORMAT", "Restored", "RunFolder", "RunFolderError", "checkpoint_path", "checkpoint_state", "load_checkpoint", "load_run",
           "load_spectra", "ntk_points_path", "read_spectra", "save_spectra", "spectra_path"]

#: Version of the run-folder format written in ``run.json`` and ``summary.json``.
FORMAT = 1


class RunFolderError(RuntimeError):
    """A finished run folder lacks what an analysis reads (no such checkpoint, no recorded
    NTK points) or holds it unreadable. The message names the file and the problem."""


def checkpoint_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """``run_dir/checkpoints/epoch_XXXXXX.msgpack``: the checkpoint of ``epoch``."""
    return Path(run_dir) / "checkpoints" / f"epoch_{int(epoch):06d}.msgpack"


def spectra_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """``run_dir/spectra/epoch_XXXXXX.npz``: the spectra measured at ``epoch``."""
    return Path(run_dir) / "spectra" / f"epoch_{int(epoch):06d}.npz"


def ntk_points_path(run_dir: str | os.PathLike) -> Path:
    """``run_dir/spectra/ntk_x.npy``: the ``(M, d)`` points the run's kernels were taken on."""
    return Path(run_dir) / "spectra" / "ntk_x.npy"


def checkpoint_state(variables, opt_state, epoch: int, key, losses, seconds: float) -> dict:
    """What a checkpoint file holds: host ``variables`` and ``opt_state``, the ``epoch``,
    the data ``key`` (uint32 ``(2,)``), the per-epoch ``losses`` so far (float64) and the
    run's wall-time ``seconds``."""
    return {"variables": variables, "opt_state": opt_state, "epoch": epoch, "key": np.asarray(key),
            "losses": np.asarray(losses, np.float64), "seconds": seconds}


def load_checkpoint(run_dir: str | os.PathLike, epoch: int, template=None) -> dict:
    """The model variables a run saved at ``epoch``.

    Args:
      run_dir: the run folder.
      epoch: a measured epoch of the run.
      template: variables of the model's structure (restored into it with
        ``flax.serialization.from_state_dict``); None gives plain nested dicts.

    Returns:
      the variables (``{"params": ...}``), NumPy arrays. A missing checkpoint raises
      ``FileNotFoundError``, an unreadable one ``ValueError``; both name the file.
    """
    path = checkpoint_path(run_dir, epoch)
    try:
        state = flax.serialization.msgpack_restore(path.read_bytes())
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: no checkpoint for epoch {epoch}") from err
    except Exception as err:  # noqa: BLE001 - msgpack raises several types
        raise ValueError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err})") from err
    variables = state["variables"]
    return variables if template is None else flax.serialization.from_state_dict(template, variables)


def save_spectra(path: str | os.PathLike, epoch: int, spectra: Mapping[str, Spectrum],
                 extra: Mapping[str, np.ndarray] | None = None) -> None:
    """Write ``spectra`` (``{group: Spectrum}``; a group may hold ``/``) to the ``.npz``
    ``path`` atomically: ``groups`` (names, in order), ``epoch``, each spectrum's
    :meth:`~ntkgrid.spectrum.Spectrum.to_arrays` and the named arrays of ``extra`` (e.g. a
    cache key)."""
    arrays: dict[str, np.ndarray] = {"groups": np.array(list(spectra)), "epoch": np.int64(epoch)}
    for g, s in spectra.items():
        arrays.update(s.to_arrays(g))
    arrays.update(extra or {})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())


def read_spectra(path: str | os.PathLike) -> tuple[dict[str, Spectrum], dict[str, np.ndarray]]:
    """``({group: Spectrum}, {name: array})`` of a :func:`save_spectra` file: the spectra,
    and every other array (``epoch``, ``extra``). A file without ``groups`` (an occupancy
    ``ntk/epoch_XXXXXX.npz`` written before :func:`save_spectra`) names its groups by its
    ``eigenvalues/<group>`` arrays.

    Raises :class:`ntkgrid.data.DataError` (a ``ValueError``) naming the file when it is
    missing, not an ``.npz`` archive, truncated, or lacks a spectra file's arrays."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = z.files
            prefix = "eigenvalues/"
            groups = ([str(g) for g in z["groups"]] if "groups" in names
                      else [k[len(prefix):] for k in names if k.startswith(prefix)])
            spectra = {g: Spectrum.from_arrays(z, g) for g in groups}
            layout = {k for g in groups for k in spectra[g].to_arrays(g)} | {"groups"}
            extra = {k: z[k] for k in names if k not in layout}
    except FileNotFoundError as err:
        raise DataError(path, "no such spectra file") from err
    except KeyError as err:
        raise DataError(path, f"not a spectra file (no array {err})") from err
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(path, f"damaged .npz spectra file (garbage or truncated: {err})") from err
    if not spectra:
        raise DataError(path, "not a spectra file (no array 'groups')")
    return spectra, extra


def load_spectra(path: str | os.PathLike) -> dict[str, Spectrum]:
    """``{group: Spectrum}`` from a ``spectra/epoch_XXXXXX.npz`` file (:func:`read_spectra`;
    raises :class:`ntkgrid.data.DataError` naming the file when it cannot be used)."""
    return read_spectra(path)[0]


@dataclasses.dataclass
class Restored:
    """A run picked up from its folder: the checkpoint of ``epoch`` (``state``, as
    :func:`checkpoint_state`), and its history and curve up to that epoch."""

    epoch: int
    state: dict
    history: list[dict]
    curve: list[dict]


class RunFolder:
    """The writer and reader of one run folder ``root`` (created if missing).

    ``lines`` holds the metrics lines written so far (by epoch), for ``metrics.jsonl`` and
    the summary's ``final``.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lines: dict[int, dict] = {}

    @staticmethod
    def _meta(path: Path) -> dict | None:
        """The dict in ``run.json``/``summary.json``, or None if missing or unreadable (a
        damaged file: the run's checkpoints and the other file still tell what it holds)."""
        try:
            meta = read_json(path) if path.exists() else None
        except ValueError:
            return None
        return meta if isinstance(meta, dict) and isinstance(meta.get("config"), dict) else None

    @staticmethod
    def unidentifiable(root: str | os.PathLike) -> bool:
        """``root`` holds files of a run but neither a readable ``run.json`` nor ``summary.json``,
        so which run it holds cannot be told (:meth:`check_same_run` refuses it)."""
        root = Path(root)
        present = [root / n for n in ("summary.json", "run.json") if (root / n).exists()]
        return bool(present) and all(RunFolder._meta(p) is None for p in present)

    def check_same_run(self, config: dict, options: dict) -> None:
        """Refuse (``ValueError`` naming the file and the fields) a folder that holds a run
        with another config or other options. An unreadable ``summary.json`` is passed over
        for ``run.json`` (the run then resumes from its checkpoints); when neither can be
        read the folder is refused too, naming both."""
        unreadable = []
        for name in ("summary.json", "run.json"):
            path = self.root / name
            if path.exists():
                meta = self._meta(path)
                if meta is None:
                    unreadable.append(path)
                    continue
                stored = meta.get("config", {})
                try:  # fields added since the run was written take their defaults
                    stored = TrainConfig.from_dict(stored).to_dict()
                except (TypeError, ValueError):
                    pass
                diffs = diff(to_jsonable({"config": stored, "options": meta.get("options", {})}),
                             to_jsonable({"config": config, "options": options}))
                if diffs:
                    raise ValueError(f"{path}: out_dir holds a different run ({'; '.join(diffs)}); "
                                     "use another out_dir or delete this one")
                return
        if unreadable:
            raise ValueError(f"{' and '.join(map(str, unreadable))}: unreadable, so which run {self.root} holds "
                             "cannot be told; use another out_dir or delete this one")

    def complete(self) -> bool:
        """The folder holds a finished run (``summary.json`` says ``complete``)."""
        meta = self._meta(self.root / "summary.json")
        return meta is not None and bool(meta.get("complete"))

    def restore(self, template: dict) -> Restored | None:
        """The newest checkpoint that restores into ``template`` (a :func:`checkpoint_state`)
        and has its metrics line, with the history and curve up to it; None if there is none."""
        lines = {line["epoch"]: line for line in read_jsonl(self.root / "metrics.jsonl")}
        for f in sorted((self.root / "checkpoints").glob("epoch_*.msgpack"), reverse=True):
            epoch = int(f.stem.split("_")[1])
            if epoch not in lines:
                continue
            state = _restore_ckpt(f, template)
            if state is not None and int(state["epoch"]) == epoch:
                self.lines = {k: v for k, v in lines.items() if k <= epoch}
                curve = [c for c in _read_curve(self.root) if c["epoch"] <= epoch]
                return Restored(epoch, state, _read_history(self.root, upto=epoch), curve)
        return None

    def begin(self, label: str, config: dict, options: dict, ntk_x: np.ndarray | None, start: int | None) -> None:
        """Start (``start=None``: remove every file of an earlier run) or continue from epoch
        ``start`` (remove the files of later epochs and the summary); write ``run.json`` and
        the kernel points."""
        if start is None:
            self.lines = {}
        _clear(self.root, after=-1 if start is None else start)
        write_json(self.root / "run.json", {"format": FORMAT, "label": label, "config": config, "options": options})
        if ntk_x is not None:
            buf = io.BytesIO()
            np.save(buf, ntk_x)
            write_bytes(ntk_points_path(self.root), buf.getvalue())

    def write_curve(self, curve: list[dict]) -> None:
        """Write ``curve.jsonl``: the whole training curve so far."""
        write_jsonl(self.root / "curve.jsonl", curve)

    def save_state(self, epoch: int, state: dict) -> Path:
        """Write the checkpoint of ``epoch`` (a :func:`checkpoint_state`); returns its path."""
        return write_bytes(checkpoint_path(self.root, epoch), flax.serialization.to_bytes(state))

    def has_checkpoint(self, epoch: int) -> bool:
        """The checkpoint file of ``epoch`` exists."""
        return checkpoint_path(self.root, epoch).exists()

    def write_checkpoint(self, epoch: int, entry: Mapping, state: dict) -> None:
        """Write a measured epoch: its spectra (if any), its checkpoint and its metrics line."""
        spec_file = None
        if entry.get("spectra") is not None:
            save_spectra(spectra_path(self.root, epoch), epoch, entry["spectra"])
            spec_file = str(spectra_path(self.root, epoch).relative_to(self.root))
        ckpt = self.save_state(epoch, state)
        self.lines[epoch] = _line(entry, spec_file, str(ckpt.relative_to(self.root)))
        write_jsonl(self.root / "metrics.jsonl", [self.lines[k] for k in sorted(self.lines)])

    def write_summary(self, r: RunResult) -> None:
        """Write ``summary.json`` for the finished run ``r``."""
        write_json(self.root / "summary.json", {
            "format": FORMAT, "label": r.label, "config": r.config.to_dict(), "options": r.options,
            "complete": r.complete, "diverged": r.diverged, "diverged_epoch": r.diverged_epoch,
            "epochs_run": int(r.losses.size), "params_epoch": r.params_epoch, "seconds": r.seconds,
            "final": self.lines[max(self.lines)] if self.lines else None, "losses": [float(v) for v in r.losses],
            "curve": r.curve})


def load_run(out_dir: str | os.PathLike) -> RunResult:
    """The :class:`RunResult` stored in ``out_dir``: complete (``summary.json``) or partial
    (an interrupted run: ``run.json`` and its checkpoints; ``complete=False``).

    ``params`` are those of the last measured epoch; spectra come from the ``.npz`` files.
    """
    out = Path(out_dir)
    summary_path, run_path = out / "summary.json", out / "run.json"
    if not summary_path.exists() and not run_path.exists():
        raise FileNotFoundError(f"{out}: no summary.json or run.json, so not an ntkgrid run directory")
    meta = RunFolder._meta(summary_path) or RunFolder._meta(run_path)  # an unreadable summary: the partial run
    if meta is None:
        raise ValueError(f"{out}: summary.json and run.json unreadable, so the run cannot be loaded")
    try:
        cfg = TrainConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{summary_path if summary_path.exists() else run_path}: bad config ({err})") from err
    history = _read_history(out)
    complete = bool(meta.get("complete", False))
    params_epoch = meta.get("params_epoch") if complete else (history[-1]["epoch"] if history else None)
    params, losses, seconds = None, np.zeros(0), float(meta.get("seconds") or 0.0)
    if params_epoch is not None:
        state = _restore_ckpt(checkpoint_path(out, params_epoch))
        if state is None:
            raise ValueError(f"{checkpoint_path(out, params_epoch)}: missing or unreadable checkpoint")
        params = jax.tree.map(jnp.asarray, state["variables"])
        losses = np.asarray(state["losses"], np.float64)
        if not complete:
            seconds = float(state["seconds"])
    if complete:
        losses = np.asarray([np.nan if v is None else v for v in meta["losses"]], np.float64)
    return RunResult(
        config=cfg, label=meta.get("label", ""), params=params, params_epoch=params_epoch, history=history,
        losses=losses, diverged=bool(meta.get("diverged", False)), diverged_epoch=meta.get("diverged_epoch"),
        seconds=seconds, complete=complete, out_dir=out, options=meta.get("options", {}),
        curve=_read_curve(out))


# ---------------------------------------------------------------------------- private


def _spectrum_summary(spectra: Mapping[str, Spectrum] | None) -> dict | None:
    if spectra is None:
        return None
    return {g: {"lambda_max": s.lambda_max, "lambda_min": s.lambda_min, "floor": s.floor,
                "n_above_floor": s.n_above_floor, "n_negative": s.n_negative} for g, s in spectra.items()}


def _line(entry: Mapping, spectrum_file: str | None, checkpoint_file: str | None) -> dict:
    """The ``metrics.jsonl`` line of a history entry."""
    line = {k: v for k, v in entry.items() if k not in ("spectrum", "spectra")}
    line["spectrum"] = _spectrum_summary(entry.get("spectra"))
    line["spectrum_file"], line["checkpoint_file"] = spectrum_file, checkpoint_file
    return to_jsonable(line)


def _read_history(out: Path, upto: int | None = None) -> list[dict]:
    """The history entries of ``metrics.jsonl`` (epochs ``<= upto``), spectra loaded from their files."""
    history = []
    for line in read_jsonl(out / "metrics.jsonl"):
        if upto is not None and line["epoch"] > upto:
            continue
        entry = {k: v for k, v in line.items() if k not in ("spectrum_file", "checkpoint_file")}
        entry["spectra"] = entry["spectrum"] = None
        if line.get("spectrum_file"):
            entry["spectra"] = load_spectra(out / line["spectrum_file"])
            entry["spectrum"] = entry["spectra"]["total"]
        history.append(entry)
    return history


def _read_curve(out: Path) -> list[dict]:
    return read_jsonl(out / "curve.jsonl")


def _restore_ckpt(path: Path, template: dict | None = None) -> dict | None:
    try:
        data = path.read_bytes()
        if template is None:
            return flax.serialization.msgpack_restore(data)
        return flax.serialization.from_bytes(template, data)
    except Exception:  # noqa: BLE001 - a truncated or foreign file is skipped, not fatal
        return None


def _clear(out: Path, after: int = -1) -> None:
    """Remove the run's files for epochs > ``after`` and the summary (all files with ``after=-1``)."""
    for sub, pat in (("checkpoints", "epoch_*.msgpack"), ("spectra", "epoch_*.npz")):
        for f in (out / sub).glob(pat):
            if int(f.name.split("_")[1].split(".")[0]) > after:
                f.unlink()
    (out / "summary.json").unlink(missing_ok=True)
    if after < 0:
        for name in ("metrics.jsonl", "curve.jsonl"):
            (out / name).unlink(missing_ok=True)
