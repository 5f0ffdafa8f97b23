"""The paper's claims measured over a sweep's records (the ``results/<image>.json`` runs).

* :func:`theorem1` — Theorem 1's three comparisons
  (:data:`ntkgrid.theory.THEOREM1_COMPARISONS`: ``stated``, ``fan_in_matched``,
  ``own_no_grid``), per image and on the mean over images, at initialisation and at every
  checkpoint where the runs recorded spectra (the middle and end of training, or the end
  only under the quick preset): every grid network (``multigrid``, ``hashgrid``,
  ``mulfagrid`` configs) against the ``baseline`` network, the fan-in-matched baseline and
  its own no-grid kernel, with the top eigenvalues that show the cause.
* :func:`ratio_curves` — the mean ``log10(lambda_i(MPE) / lambda_i(other))`` curves
  that the ratio figure draws.
* :func:`training_curves` — the mean full-image PSNR and loss through training per
  configuration (the runs' ``curve.jsonl``; Figs. 6, 8, 10).
* :func:`theorem1_markdown` — the report section.
* :func:`predicted_vs_measured` — the kernel-regression prediction of a run's training
  loss from a checkpoint (the paper's Eqs. 5-7: replayed through the run's own minibatches,
  :func:`ntkgrid.theory.replay_training`, and SGD's expected step,
  :func:`ntkgrid.theory.predict_training`)
  against the full-image loss the run measured.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid import config, files
from ntkgrid.analysis import checkpoint_variables, recompute_kernels, run_spectra
from ntkgrid.config import TrainConfig
from ntkgrid.models import build_model
from ntkgrid.spectrum import (
    SPECTRUM_LENGTH,
    Spectrum,
    eigh,
    full_ntk,
    ntk_kernels,
    resample,
    spectrum_from_kernel,
)
from ntkgrid.stability import critical_lr
from ntkgrid.theory import (
    band_energies,
    compare_spectra,
    fan_in_matched_baseline,
    loss_gradient_scale,
    predict_training,
    replay_training,
    theorem1_comparisons,
)
from ntkgrid.training import epoch_batches, predict
from ntkgrid.training.runfolder import load_spectra, ntk_points_path, save_spectra

__all__ = ["FULL_EIGH_MAX_ROWS", "FULL_KERNEL_MAX_ROWS", "THEOREM1_CHECKPOINTS", "grid_configs",
           "kernel_motion_share", "predicted_vs_measured", "ratio_curves", "theorem1", "theorem1_markdown",
           "training_curves"]

_SCALARS = ("verdict", "holds", "fraction", "n_compared", "median_log10_ratio", "min_log10_ratio", "first_below")


def grid_configs(configs: Mapping[str, Mapping]) -> list[str]:
    """Names of the configs (``{name: TrainConfig dict}``) whose encoding is a grid
    (:data:`ntkgrid.config.GRID_KINDS`, registered kinds included)."""
    grid_kinds = config.GRID_KINDS
    return [n for n, d in configs.items() if d.get("encoding", {}).get("kind") in grid_kinds]


#: The checkpoints Theorem 1 is compared at: initialisation (recomputed from the run's seed
#: when the run did not record epoch 0), and the middle and end of training where the runs
#: recorded spectra there.
THEOREM1_CHECKPOINTS = ("init", "middle", "end")


def _epoch(run, checkpoint: str) -> int | None:
    """The run's (:class:`~ntkgrid.sweep.records.RunRecord`) epoch of ``checkpoint``
    (``"init"`` is epoch 0)."""
    if checkpoint == "init":
        return 0
    return run.checkpoints.get(checkpoint)


def _spectra(run, checkpoint: str) -> dict[str, Spectrum] | None:
    """The spectra the run recorded at ``checkpoint`` (None if none)."""
    epoch = _epoch(run, checkpoint)
    if epoch is None or run.diverged or run.run_path is None:
        return None
    return run_spectra(run.run_path, epoch)


def _offdiag(run, checkpoint: str) -> float | None:
    """The grid kernel's off-diagonal share the run recorded at ``checkpoint`` (None if none)."""
    return run.grid_offdiag_history.get(_epoch(run, checkpoint))


class _Kernels:
    """Spectra Theorem 1 needs beyond what the runs recorded: every network at initialisation
    (``"init"``: recomputed from the run's seed, as :func:`ntkgrid.training.fit` initialises
    it) and the fan-in-matched baseline (:func:`ntkgrid.theory.fan_in_matched_baseline`) of
    each grid network at initialisation and at each checkpoint where the run recorded
    spectra (every saved checkpoint unless ``recorded_only``), in float64 on the run's own kernel points, cached as
    ``<cache>/<image_id>/<name>/<checkpoint>_<kind>.npz`` (``kind``: ``groups`` or
    ``fan_in_matched``) so that a rerun reads them back.

    The NTK at initialisation depends on the configuration (seed included), the output width
    and the kernel points, never on the targets: runs of one configuration on images of one
    size share it exactly, so it is computed once and kept as
    ``<cache>/_init/<name>/<key>_<kind>.npz``, ``key`` a SHA-256 digest of those three (and of
    ``init_seeds``). With ``init_seeds`` K > 1 the kernels at initialisation are the mean over
    the K initialisations of seeds ``seed .. seed + K - 1`` (the expected kernel of the
    paper's Eq. 4, estimated), and the spectra are those of the mean kernels."""

    def __init__(self, configs: Mapping[str, Mapping], cache: Path | None, compute: bool, recorded_only: bool,
                 init_seeds: int = 1):
        self.configs, self.cache, self.compute, self.problems = configs, cache, compute, []
        self.recorded_only, self.init_seeds = recorded_only, int(init_seeds)
        self._shared: dict[tuple[str, str, str], dict[str, Spectrum]] = {}

    def _path(self, image_id: str, name: str, checkpoint: str, kind: str) -> Path | None:
        return None if self.cache is None else self.cache / files.safe_name(str(image_id)) / name / \
            f"{checkpoint}_{kind}.npz"

    def _init_key(self, name: str, run) -> str:
        """Digest of what the network's NTK at initialisation depends on: its configuration,
        output width and kernel points."""
        epochs = sorted(int(e) for e in run.checkpoints.values() if e is not None)
        if not epochs:
            raise ValueError("the run saved no checkpoint to read its output width from")
        out_dim = _out_dim(checkpoint_variables(run.run_path, epochs[-1]))
        x = np.ascontiguousarray(np.load(ntk_points_path(run.run_path)))
        h = hashlib.sha256(json.dumps(self.configs[name], sort_keys=True).encode())
        h.update(f"|{out_dim}|{x.dtype}|{x.shape}|".encode())
        h.update(x.tobytes())
        if self.init_seeds > 1:
            h.update(f"|seeds {self.init_seeds}".encode())
        return h.hexdigest()[:24]

    def _variables(self, cfg, run, checkpoint: str, x: np.ndarray, seed: int | None = None):
        """The run's variables at ``checkpoint`` (``"init"``: as :func:`ntkgrid.training.fit`
        initialises them, from ``seed``, default the run's)."""
        if checkpoint != "init":
            return checkpoint_variables(run.run_path, _epoch(run, checkpoint))
        epochs = sorted(int(e) for e in run.checkpoints.values() if e is not None)
        if not epochs:
            raise ValueError("the run saved no checkpoint to read its output width from")
        model = build_model(cfg, x.shape[1], _out_dim(checkpoint_variables(run.run_path, epochs[-1])))
        init_key, _ = jax.random.split(jax.random.PRNGKey(cfg.seed if seed is None else seed))
        return jax.jit(model.init)(init_key, jnp.asarray(x[:1], jnp.float32))

    def get(self, image_id: str, name: str, run, checkpoint: str, kind: str) -> dict[str, Spectrum] | None:
        """``{group: Spectrum}`` (``kind="groups"``: the network's own kernels by group) or
        ``{"total": Spectrum}`` (``kind="fan_in_matched"``), or None if it cannot be had."""
        if run.diverged or run.run_path is None or _epoch(run, checkpoint) is None:
            return None
        recorded = _spectra(run, checkpoint)
        if checkpoint != "init" and recorded is None and self.recorded_only:
            return None  # compared at initialisation and where the run recorded spectra only
        if kind == "groups":
            grid_run = self.configs.get(name, {}).get("encoding", {}).get("kind") in config.GRID_KINDS
            if recorded is not None and (not grid_run or {"grid", "no_grid"} <= set(recorded)) and \
                    (checkpoint != "init" or self.init_seeds == 1):
                return recorded
        path = self._path(image_id, name, checkpoint, kind)
        shared = None
        if checkpoint == "init":
            try:
                key = self._init_key(name, run)
            except Exception as err:  # noqa: BLE001 - reported like any network that cannot be recomputed
                self.problems.append(f"{image_id}/{name} at init: no {kind} spectra ({type(err).__name__}: {err})")
                return None
            if (name, key, kind) in self._shared:
                return self._shared[(name, key, kind)]
            shared = None if self.cache is None else self.cache / "_init" / name / f"{key}_{kind}.npz"
        for p in (path, shared):
            if p is not None and p.exists():
                try:
                    return load_spectra(p)
                except (OSError, ValueError, KeyError):
                    pass  # a damaged cache file is recomputed
        if not self.compute:
            return None
        try:
            cfg = TrainConfig.from_dict(self.configs[name])
            x = np.load(ntk_points_path(run.run_path))
            seeds = range(cfg.seed, cfg.seed + self.init_seeds) if checkpoint == "init" else (None,)
            mean: dict[str, np.ndarray] = {}
            for seed in seeds:  # the expected kernel at init over init_seeds initialisations, else the one
                for g, k in self._kernels(cfg, self._variables(cfg, run, checkpoint, x, seed), x, kind).items():
                    mean[g] = mean.get(g, 0.0) + np.asarray(k, np.float64) / len(seeds)
            spectra = {g: spectrum_from_kernel(k) for g, k in mean.items()}
            if "mlp" in spectra:
                spectra["no_grid"] = spectra["mlp"]  # the MPE (No Grid) kernel is the MLP group
        except Exception as err:  # noqa: BLE001 - one network that cannot be recomputed is reported, not fatal
            self.problems.append(f"{image_id}/{name} at {checkpoint}: no {kind} spectra ({type(err).__name__}: {err})")
            return None
        if checkpoint == "init":
            self._shared[(name, key, kind)] = spectra
            path = shared
        if path is not None:
            save_spectra(path, _epoch(run, checkpoint) or 0, spectra)
        return spectra


    @staticmethod
    def _kernels(cfg, variables: Mapping, x: np.ndarray, kind: str) -> dict[str, np.ndarray]:
        """The float64 traced kernels :meth:`get` solves: ``{"total"}`` (``kind="fan_in_matched"``:
        the fan-in-matched baseline's), or for a grid network ``{"total", "mlp", "grid"}``."""
        model = build_model(cfg, x.shape[1], _out_dim(variables))
        if kind == "fan_in_matched":
            base, bvars = fan_in_matched_baseline(model, variables)
            return {"total": ntk_kernels(base, bvars, x, method=cfg.ntk_method)}
        if "encoding" in variables["params"]:
            kernels = ntk_kernels(model, variables, x, method=cfg.ntk_method, groups=True)
            return {g: kernels[g] for g in ("total", "mlp", "grid")}
        return {"total": ntk_kernels(model, variables, x, method=cfg.ntk_method)}


def _out_dim(variables: Mapping) -> int:
    """Output width ``O`` of a CoordinateMLP's variables (its last dense layer's)."""
    dense = sorted((k for k in variables["params"] if k.startswith("dense_")), key=lambda k: int(k.split("_")[1]))
    return int(np.shape(variables["params"][dense[-1]]["kernel"])[1])


def _row_scalars(c: Mapping) -> dict:
    return {k: c[k] for k in _SCALARS}


def _top(s: Spectrum | None, k: int = 3) -> list[float] | None:
    return None if s is None else [float(v) for v in s.eigenvalues[:k]]


def _compare_image(r, baseline: str, mpe: Sequence[str], checkpoints: Sequence[str], length: int,
                   kernels: _Kernels, matched_names: Sequence[str] = ()
                   ) -> tuple[list[dict], list[tuple[tuple, tuple]], list[dict]]:
    """One image's Theorem 1 rows, its spectra resampled to ``length`` for the means, and
    the cause rows (top eigenvalues): ``([per-image row], [((name, checkpoint, comparison),
    (mpe values, mpe floor, other values, other floor))], [cause row])``; runs on other
    points than the baseline's are left out; the fan-in-matched comparison is made for the
    ``matched_names`` (the grids that append the raw coordinates)."""
    rows, pooled, cause = [], [], []
    base_run = r.runs.get(baseline)
    image_id = r.image_id
    for cp in checkpoints if base_run is not None else ():
        base = kernels.get(image_id, baseline, base_run, cp, "groups")
        if base is None:
            continue
        b = base["total"]
        for name in mpe:
            run = r.runs.get(name)
            spectra = None if run is None else kernels.get(image_id, name, run, cp, "groups")
            if spectra is None or spectra["total"].eigenvalues.size != b.eigenvalues.size:
                continue  # no such checkpoint, or not the same points
            matched = kernels.get(image_id, name, run, cp, "fan_in_matched") if name in matched_names else None
            m = spectra["total"]
            comps = theorem1_comparisons(m, baseline=b, fan_in_matched=None if matched is None else matched["total"],
                                         no_grid=spectra.get("no_grid"))
            others = {"stated": b, "fan_in_matched": None if matched is None else matched["total"],
                      "own_no_grid": spectra.get("no_grid")}
            for comp, c in comps.items():
                rows.append({"image_id": image_id, "name": name, "checkpoint": cp, "comparison": comp,
                             "kernel": "total", "by_construction": c["by_construction"],
                             "ntk_points": int(m.eigenvalues.size), "grid_offdiag_fraction": _offdiag(run, cp),
                             **_row_scalars(c)})
                o = others[comp]
                pooled.append(((name, cp, comp), (resample(m.eigenvalues, length), m.floor,
                                                  resample(o.eigenvalues, length), o.floor)))
            grid = spectra.get("grid")
            cause.append({"image_id": image_id, "name": name, "checkpoint": cp, "top_baseline": _top(b),
                          "top_fan_in_matched": _top(others["fan_in_matched"]), "top_mpe": _top(m),
                          "top_no_grid": _top(spectra.get("no_grid")),
                          "grid_lambda_max": None if grid is None else float(grid.eigenvalues[0])})
    return rows, pooled, cause


def _fan_in(config: Mapping) -> dict | None:
    """``{"d", "fan_in"}`` of a grid config's first dense layer (None without raw coordinates)."""
    try:
        cfg = TrainConfig.from_dict(config)
        enc = cfg.encoding.build(2)
        if not getattr(enc, "include_input", False):
            return None
        f = jax.eval_shape(lambda: enc.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 2)))[0])
        return {"d": 2, "fan_in": int(f.shape[-1])}
    except Exception:  # noqa: BLE001 - the fan-in is a label for the report only
        return None


def theorem1(records: Sequence, configs: Mapping[str, Mapping], *, baseline: str = "baseline",
             checkpoints: Sequence[str] = THEOREM1_CHECKPOINTS, length: int = SPECTRUM_LENGTH,
             cache_dir: str | Path | None = None, compute: bool = True, recorded_only: bool = True,
             init_seeds: int = 1) -> dict:
    """Theorem 1's three comparisons (:data:`ntkgrid.theory.THEOREM1_COMPARISONS`) per image
    and on the mean, at every checkpoint.

    Args:
      records: :func:`ntkgrid.sweep.load_sweep`'s records
        (:class:`ntkgrid.sweep.records.ImageRecord`, run paths resolved).
      configs: the manifest's ``{name: config dict}``.
      baseline: the baseline config's name.
      checkpoints: of :data:`THEOREM1_CHECKPOINTS`; ``"init"`` is recomputed from the run's
        seed where the run did not record epoch 0.
      length: the mean spectra are over spectra resampled to this many values.
      cache_dir: where the recomputed spectra (init, fan-in-matched) are kept (None: not kept).
      compute: recompute what the runs did not record (False: only what is recorded or cached;
        an old sweep then lacks the init and fan-in-matched rows).
      recorded_only: compare at initialisation and at the checkpoints where the runs recorded
        spectra (the sweep's report; the quick preset records the end only); False: at every
        checkpoint whose parameters the runs saved (the grid ablation).
      init_seeds: K > 1 compares at initialisation on the kernels averaged over K
        initialisations (seeds ``seed .. seed + K - 1``: the expected kernel of the paper's
        Eq. 4, estimated); 1: the run's own initialisation.

    Returns:
      ``{"baseline", "mpe": [names], "fan_in": {name: {"d", "fan_in"}}, "per_image":
      [{"image_id", "name", "checkpoint", "comparison" ("stated" | "fan_in_matched" |
      "own_no_grid"), "kernel" ("total"), "by_construction", "ntk_points",
      "grid_offdiag_fraction", ...compare_spectra scalars}], "on_mean": [{"name",
      "checkpoint", "comparison", "by_construction", "images", ...scalars, "log10_ratio"
      (length,)}], "summary": {"name/checkpoint/comparison": {"images_holding",
      "images_compared"}}, "cause": [{"image_id", "name", "checkpoint", "top_baseline",
      "top_fan_in_matched", "top_mpe", "top_no_grid" (top 3 eigenvalues each),
      "grid_lambda_max"}], "problems": [messages]}``. Without a baseline or a grid config,
      the lists are empty.
    """
    mpe = grid_configs(configs)
    out: dict = {"baseline": baseline, "mpe": mpe, "fan_in": {}, "per_image": [], "on_mean": [], "summary": {},
                 "cause": [], "problems": [], "init_seeds": int(init_seeds)}
    if baseline not in configs or not mpe:
        return out
    out["fan_in"] = {n: f for n in mpe if (f := _fan_in(configs[n])) is not None}
    if int(init_seeds) < 1:
        raise ValueError(f"init_seeds must be >= 1, got {init_seeds}")
    kernels = _Kernels(configs, None if cache_dir is None else Path(cache_dir), compute, recorded_only, init_seeds)
    pooled: dict[tuple, list[tuple[np.ndarray, float, np.ndarray, float]]] = {}
    for r in records:
        rows, spectra, cause = _compare_image(r, baseline, mpe, checkpoints, length, kernels, list(out["fan_in"]))
        out["per_image"] += rows
        out["cause"] += cause
        for key, item in spectra:
            pooled.setdefault(key, []).append(item)
    for (name, cp, comp), items in pooled.items():
        m = Spectrum(np.mean([i[0] for i in items], 0), float(np.mean([i[1] for i in items])), 0, 0)
        b = Spectrum(np.mean([i[2] for i in items], 0), float(np.mean([i[3] for i in items])), 0, 0)
        c = compare_spectra(m, b)
        out["on_mean"].append({"name": name, "checkpoint": cp, "comparison": comp,
                               "by_construction": comp == "own_no_grid", "images": len(items),
                               **_row_scalars(c), "log10_ratio": c["log10_ratio"]})
        rows = [p for p in out["per_image"] if (p["name"], p["checkpoint"], p["comparison"]) == (name, cp, comp)]
        out["summary"][f"{name}/{cp}/{comp}"] = {"images_holding": sum(bool(p["holds"]) for p in rows),
                                                  "images_compared": sum(p["holds"] is not None for p in rows)}
    out["problems"] = kernels.problems
    return out


def ratio_curves(result: Mapping) -> list[dict]:
    """Curves for :func:`ntkgrid.plots.curves_figure` from :func:`theorem1`'s ``on_mean``:
    ``log10`` of the mean MPE spectrum over the mean spectrum it is compared with (the
    baseline's, the fan-in-matched baseline's, its own no-grid kernel's) against the
    normalised eigenvalue index. Rows of an old result without a ``comparison`` are the
    stated comparison (``kernel`` "total") or the no-grid kernel against the baseline."""
    curves = []
    styles = {"end": "-", "middle": "--", "init": ":"}
    for row in result.get("on_mean", []):
        ratio = np.asarray(row["log10_ratio"], np.float64)
        x = np.linspace(0.0, 1.0, ratio.size)
        comp = row.get("comparison") or ("stated" if row.get("kernel", "total") == "total" else "no_grid_vs_baseline")
        label_of = {"stated": "baseline", "fan_in_matched": "fan-in-matched baseline",
                    "own_no_grid": "own no-grid kernel (true by construction)",
                    "no_grid_vs_baseline": "baseline (no-grid kernel)"}
        curves.append({"name": row["name"] if comp == "stated" else f"{row['name']}_{comp}", "x": x[::10],
                       "y": ratio[::10], "linestyle": styles.get(row["checkpoint"], "-."),
                       "label": f"{row['name']} / {label_of[comp]} ({row['checkpoint']})"})
    return curves


def training_curves(records: Sequence, names: Sequence[str]) -> dict[str, dict]:
    """Mean full-image curves over images: ``{name: {"epoch": [...], "psnr": [...],
    "loss": [...], "images": n}}`` from each run's ``curve`` (epochs every image measured;
    diverged runs left out); ``records``: :class:`ntkgrid.sweep.records.ImageRecord`."""
    out = {}
    for n in names:
        runs = [r.runs[n] for r in records if n in r.runs]
        curves = [run.curve for run in runs if not run.diverged and run.curve]
        if not curves:
            continue
        common = sorted(set.intersection(*[{int(c["epoch"]) for c in cv} for cv in curves]))
        by_epoch = [{int(c["epoch"]): c for c in cv} for cv in curves]

        def mean(key, common=common, by_epoch=by_epoch):
            vals = [[be[e].get(key) for be in by_epoch] for e in common]
            return [float(np.mean(v)) if all(x is not None for x in v) else None for v in vals]

        out[n] = {"epoch": common, "psnr": mean("psnr"), "loss": mean("loss"), "images": len(curves)}
    return out


def _mean_top(rows: Sequence[Mapping], key: str) -> str:
    vals = [r[key] for r in rows if r.get(key) is not None]
    if not vals:
        return "-"
    if isinstance(vals[0], list):
        k = min(len(v) for v in vals)
        return ", ".join(files.fmt(float(np.mean([v[i] for v in vals])), 3) for i in range(k))
    return files.fmt(float(np.mean(vals)), 3)


_COMPARISON_LABELS = {"stated": "stated (vs baseline)", "fan_in_matched": "fan-in-matched (positive control)",
                      "own_no_grid": "own no-grid (true by construction)"}


def theorem1_markdown(result: Mapping, *, figure: str | None = None) -> list[str]:
    """Report lines for :func:`theorem1`'s result (empty when there is nothing to compare)."""
    if not result.get("per_image"):
        return []
    base = result["baseline"]
    lines = ["## Theorem 1: the MPE network's eigenvalues, three comparisons", "",
             "The paper claims λ_i(MPE) ≥ λ_i(no encoding) index by index on the training set. Each grid network's "
             "float64 NTK spectrum (same points: the training pixels) is compared three ways; **holds** means "
             "λ_i(MPE) ≥ λ_i(other) at every index where either eigenvalue is above its floor (within the two "
             "floors), 'fraction' is the share of such indices where it does:", "",
             f"- **stated**: against the `{base}` network (no encoding), as the paper states the theorem.",
             "- **fan-in-matched** (the positive control): against the no-encoding network whose first layer has the "
             "MPE MLP's fan-in, fed [0, …, 0, x] with the MPE network's `dense_0` weights "
             "(`ntkgrid.theory.fan_in_matched_baseline`; at a trained checkpoint, that checkpoint's weights).",
             "- **own no-grid** (true by construction): against the network's own no-grid kernel (the MLP's "
             "parameters only, the paper's MPE (No Grid)). In the paper's Eq. 12 the MLP terms are evaluated at "
             "the embedding, not at x, so Weyl gives λ_i(K_MPE) ≥ λ_i(K_no-grid) + λ_min(K_grid) for any split "
             "of any network's parameters: a unit test of the split, not evidence.", "",
             "**What the theorem can and cannot claim.** The proof supports only the own-no-grid comparison. "
             "Nothing is proved against the no-encoding network, and the stated comparison can fail for a reason "
             "that is not the grid: under the NTK parameterisation the first layer scales its input by "
             "1/√fan_in, and with the raw coordinates appended (`include_input`) the MPE MLP's first layer takes "
             "F inputs where the baseline's takes d, so the coordinates enter the MPE network scaled by √(d/F). "
             "The fan-in-matched baseline removes that difference. At initialisation the fan-in-matched "
             "comparison is close to an identity (the grid features start at N(0, 0.01²), so the no-grid kernel is "
             "nearly the padded baseline's); it becomes a real test only after training.", ""]
    seeds = int(result.get("init_seeds") or 1)
    if seeds > 1:
        lines += [f"At initialisation every kernel is the mean over {seeds} initialisations (seeds seed .. seed + "
                  f"{seeds - 1}), the expected kernel of the paper's Eq. 4 estimated; the spectra at `init` are "
                  "those of the mean kernels.", ""]
    fan = result.get("fan_in") or {}
    unmatched = [n for n in result.get("mpe", []) if n not in fan]
    if unmatched:
        lines += [", ".join(f"`{n}`" for n in unmatched) + ": no raw coordinates appended (`include_input` off), "
                  "so no fan-in-matched comparison.", ""]
    if fan:
        lines += ["First-layer fan-in: " + "; ".join(
            f"`{n}` F = {f['fan_in']} (d = {f['d']}: coordinates scaled by √({f['d']}/{f['fan_in']}) = "
            f"{(f['d'] / f['fan_in']) ** 0.5:.3f} against the baseline)" for n, f in fan.items()) + ".", ""]
    cause = result.get("cause") or []
    if cause:
        body = []
        for (name, cp) in dict.fromkeys((c["name"], c["checkpoint"]) for c in cause):
            rows = [c for c in cause if (c["name"], c["checkpoint"]) == (name, cp)]
            body.append([name, cp, str(len(rows)), _mean_top(rows, "top_baseline"),
                         _mean_top(rows, "top_fan_in_matched"), _mean_top(rows, "top_mpe"),
                         _mean_top(rows, "top_no_grid"), _mean_top(rows, "grid_lambda_max")])
        lines += ["**The cause in numbers**: the top three eigenvalues (mean over images) of each kernel, and the "
                  "grid kernel's λ_max (what the grid can add on top of the no-grid kernel, by Weyl at most λ_max(K_grid) "
                  "per eigenvalue).", "",
                  files.markdown_table(["network", "checkpoint", "images", f"{base} λ1-3", "fan-in-matched λ1-3",
                                        "MPE λ1-3", "MPE no-grid λ1-3", "grid λ_max"], body)]
    body = []
    for row in result["on_mean"]:
        comp = row.get("comparison", "stated")
        s = result["summary"][f"{row['name']}/{row['checkpoint']}/{comp}"]
        body.append([row["name"], _COMPARISON_LABELS.get(comp, comp), row["checkpoint"], f"**{row['verdict']}**",
                     f"{s['images_holding']}/{s['images_compared']}", files.fmt(row["fraction"], 3),
                     files.fmt(row["median_log10_ratio"], 3), files.fmt(row["min_log10_ratio"], 3)])
    lines += ["On the mean spectra over images (resampled to a common length), and the number of images on "
              "which it holds:", "",
              files.markdown_table(["network", "comparison", "checkpoint", "verdict on the mean", "images holding",
                                    "fraction", "median log10 ratio", "min log10 ratio"], body)]
    if figure:
        lines += [f"![ratio]({figure})", "",
                  "log10 of the mean MPE spectrum over the mean spectrum it is compared with (baseline, fan-in-matched "
                  "baseline, own no-grid kernel) against the normalised eigenvalue index; dotted: init, dashed: "
                  "middle, solid: end; above 0 the claim holds at that index.", ""]
    body = [[p["image_id"], p["name"], p.get("comparison", "stated"), p["checkpoint"], str(p["ntk_points"]),
             files.fmt(p["grid_offdiag_fraction"], 4), p["verdict"], files.fmt(p["fraction"], 3),
             files.fmt(p["median_log10_ratio"], 3), files.fmt(p["min_log10_ratio"], 3)] for p in result["per_image"]]
    lines += ["Per image:", "", files.markdown_table(
        ["image", "network", "comparison", "checkpoint", "NTK points", "grid off-diagonal share", "verdict",
         "fraction", "median log10 ratio", "min log10 ratio"], body)]
    if result.get("problems"):
        lines += ["Not compared:", ""] + [f"- {p}" for p in result["problems"]] + [""]
    return lines


#: Largest ``N O`` for which :func:`predicted_vs_measured` builds the full output-block kernel
#: for the replay (``8 (N O)^2`` bytes: 1.2 GB at 4096 points x 3 channels); above it the
#: replay uses the traced kernel and says so.
FULL_KERNEL_MAX_ROWS = 4096 * 3
#: Largest ``N O`` for which the expected-step prediction eigendecomposes the full kernel
#: (a float64 ``eigh``, cubic in ``N O``); above it it uses the traced kernel's eigenvectors.
FULL_EIGH_MAX_ROWS = 3072


def kernel_motion_share(replay: np.ndarray, expected: np.ndarray, measured: np.ndarray) -> float:
    """``|replay - measured| / |expected - measured|`` at the last epoch: the share of the
    expected-step prediction's final error that remains once the exact minibatch order is
    replayed, i.e. the part due to the kernel's motion.

    Args:
      replay, expected, measured: ``(T,)`` losses per epoch from the prediction's start.

    Returns:
      The share, or NaN where it means nothing: the replay diverged (its loss is not finite
      or ends above where it started: the step is above what the fixed kernel allows, so the
      gap measures the divergence, not the motion), or the expected step is exact.
    """
    r, e, m = (np.asarray(v, np.float64) for v in (replay, expected, measured))
    with np.errstate(over="ignore", invalid="ignore"):
        gap = abs(e[-1] - m[-1])
        if not (np.isfinite(r[-1]) and r[-1] <= r[0]) or not gap > 0:
            return float("nan")
        return float(abs(r[-1] - m[-1]) / gap)


def predicted_vs_measured(run, coords: np.ndarray, targets: np.ndarray, from_epoch: int, *,
                          full_kernel_max_rows: int = FULL_KERNEL_MAX_ROWS,
                          full_eigh_max_rows: int = FULL_EIGH_MAX_ROWS, traced: tuple | None = None) -> dict:
    """The linearised network's training-set loss after ``from_epoch`` (the paper's Eqs. 5-7),
    against the loss the run measured (its ``curve``).

    Two predictions from the checkpoint's float64 kernel, frozen from then on:

    * replay (``"predicted"``; :func:`ntkgrid.theory.replay_training`): the run's own
      minibatch sequence (:func:`ntkgrid.training.epoch_batches` from its seed), exact for a
      model linear in its parameters, so its gap to the measurement is the kernel's motion;
    * expected step (``"predicted_expected"``; :func:`ntkgrid.theory.predict_training`): SGD's
      expectation over i.i.d. minibatches, an approximation also in the sampling.

    Both use the full output-block kernel ``(N O) x (N O)`` where ``N O`` is at most
    ``full_kernel_max_rows`` (replay) or ``full_eigh_max_rows`` (expected step), else the
    traced one; ``"replay_kernel"`` and ``"expected_kernel"`` say which. ``eta_crit`` is
    :func:`ntkgrid.stability.critical_lr` at the checkpoint (the full minibatch kernel).
    ``traced``: the checkpoint's ``(Spectrum, (N, N) traced kernel)`` of
    :func:`ntkgrid.analysis.recompute_kernels` when the caller has it (else recomputed).

    ``run``: a :class:`ntkgrid.training.RunResult` with an ``out_dir``, whose spectra were
    taken on the whole training set (``options["ntk_selection"] == "all"``, so the kernel's
    points are ``coords`` in order) and with a checkpoint at ``from_epoch``; ``coords``
    ``(N, d)`` and ``targets`` ``(N, O)``: its training data; ``mse`` loss only.

    Returns ``{"from_epoch", "epochs" (T,), "measured" (T,), "predicted" (T,) replay,
    "predicted_expected" (T,), "relative_error" (T,) |replay - meas| / meas,
    "max_relative_error" (after from_epoch), "final_relative_error", "expected_max_relative_error",
    "expected_final_relative_error", "kernel_motion_share" (|replay - meas| / |expected - meas|
    at the last epoch: the share of the expected-step model's final error that the exact
    minibatch order leaves, i.e. the kernel's motion; NaN where the replay diverges, its loss
    ending above its start, as it then measures the divergence, not the motion), "replay_kernel", "expected_kernel",
    "stable" (lr < eta_crit), "expected_stable" (the expected-step rates all within 1), "edges",
    "bands_start", "bands_predicted_end" (expected step), "bands_replay_end", "bands_measured_end"
    (energy per eigenvalue band of the expected step's kernel at from_epoch, predicted and
    measured at the last curve epoch; measured = the final residual projected on the
    kernel's eigenvectors at from_epoch), "end_epoch", "lambda_max" (the expected step's
    kernel), "critical_learning_rate" (eta_crit)}``. Raises ``ValueError`` naming what is missing.
    """
    cfg = run.config
    if run.out_dir is None:
        raise ValueError(f"{run.label or 'run'}: has no run folder to read its checkpoints from")
    if run.options.get("ntk_selection") != "all":
        raise ValueError(f"{run.out_dir}: the prediction needs kernels on the whole training set, but its spectra "
                         f"were taken on {run.options.get('ntk_points')} {run.options.get('ntk_selection')} points")

    ntk_x = np.load(ntk_points_path(run.out_dir))
    if ntk_x.shape != np.shape(coords):
        raise ValueError(f"{run.out_dir}: its kernel points {ntk_x.shape} are not the {np.shape(coords)} "
                         "training points")
    coords = ntk_x  # the run's own training coordinates (its pixel convention), in order
    o = int(np.asarray(targets).shape[1])
    n = int(coords.shape[0])
    g = loss_gradient_scale(cfg.loss, cfg.batch_size, o, getattr(cfg, "loss_reduction", "mean"))
    y = np.asarray(targets, np.float64)
    later = [c for c in run.curve if c["epoch"] >= from_epoch and c.get("loss") is not None]
    if len(later) < 2:
        raise ValueError(f"{run.out_dir}: no full-data losses measured after epoch {from_epoch} (curve_every=0?)")
    variables = checkpoint_variables(run.out_dir, from_epoch)
    spectrum, traced = traced if traced is not None else recompute_kernels(cfg, run.out_dir, from_epoch, out_dim=o)
    full = None
    if n * o <= full_kernel_max_rows:
        full = full_ntk(build_model(cfg, coords.shape[1], o), variables, coords, method=cfg.ntk_method)
    if full is not None and n * o <= full_eigh_max_rows:
        lam, q = eigh(full)
        floor = spectrum_from_kernel(full).floor
    else:
        lam, q = eigh(traced)
        floor = spectrum.floor
    resid = predict(cfg, variables, coords).astype(np.float64) - y
    epochs = np.array([c["epoch"] for c in later])
    measured = np.array([c["loss"] for c in later], np.float64)
    epoch_size = int(run.options.get("epoch_size", len(y)))
    pred = predict_training(lam, q, resid, learning_rate=cfg.learning_rate, gradient_scale=g,
                            batch_size=cfg.batch_size, epoch_size=epoch_size, epochs=epochs - from_epoch, floor=floor)
    batches = [epoch_batches(cfg.seed, from_epoch + e, n, cfg.batch_size, epoch_size)
               for e in range(int(epochs[-1]) - from_epoch)]
    rep = replay_training(full if full is not None else traced, resid, learning_rate=cfg.learning_rate,
                          gradient_scale=g, batches=batches, epochs=epochs - from_epoch)
    crit = critical_lr(cfg, coords, o, variables=variables)
    end = int(epochs[-1])
    resid_end = predict(cfg, checkpoint_variables(run.out_dir, end), coords).astype(np.float64) - y \
        if end in {int(h["epoch"]) for h in run.history} else None

    def project(r):
        return q.T @ (r if pred["kernel"] == "traced" else r.reshape(-1, 1))

    with np.errstate(over="ignore", invalid="ignore"):
        rel = np.abs(rep["loss"] - measured) / measured
        rel_exp = np.abs(pred["loss"] - measured) / measured
        share = kernel_motion_share(rep["loss"], pred["loss"], measured)
        bands_replay = band_energies(lam, project(rep["residuals"][-1]), pred["edges"])
    return {
        "from_epoch": int(from_epoch), "epochs": epochs, "measured": measured, "predicted": rep["loss"],
        "predicted_expected": pred["loss"], "relative_error": rel, "max_relative_error": float(rel[1:].max()),
        "final_relative_error": float(rel[-1]), "expected_max_relative_error": float(rel_exp[1:].max()),
        "expected_final_relative_error": float(rel_exp[-1]), "kernel_motion_share": share,
        "replay_kernel": rep["kernel"], "expected_kernel": pred["kernel"],
        "stable": crit.stable(cfg.learning_rate), "expected_stable": pred["stable"], "edges": pred["edges"],
        "bands_start": band_energies(lam, pred["coefficients"], pred["edges"]),
        "bands_predicted_end": pred["bands"][-1], "bands_replay_end": bands_replay,
        "bands_measured_end": None if resid_end is None else band_energies(lam, project(resid_end), pred["edges"]),
        "end_epoch": end, "lambda_max": float(np.max(lam)), "critical_learning_rate": crit.lr_crit_median,
    }
