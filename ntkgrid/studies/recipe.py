"""The search for the reading of the paper's training under which Tables 2 and 3 train as printed
(issue 13; ``python -m experiments.recipe``; the evidence is in experiments/RECIPE.md).

* :func:`screen`: for every reading (:data:`ntkgrid.readings.READINGS`) and every configuration
  of Table 3 (lr 100, batch 32) and Table 2 (its lr and batch), the critical step predicted by
  the minibatch NTK at initialisation (:func:`ntkgrid.stability.critical_lr`) and what happens
  in a few epochs at the table's lr.
* :func:`train`: a reduced schedule at the tables' lr and batch, final full-image PSNR.
* :func:`run_recipe`: either one, with its results merged into ``<out>/screen.json`` /
  ``train.json`` (readings run separately accumulate in one file).
* :func:`table`: the one markdown table of experiments/RECIPE.md from those files, with
  :func:`agreement` (prediction against observation).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ntkgrid import presets
from ntkgrid.config import TrainConfig
from ntkgrid.data.images import bundled_image, image_to_dataset
from ntkgrid.files import fmt, read_json, write_json
from ntkgrid.readings import READINGS, reading
from ntkgrid.stability import critical_lr
from ntkgrid.training import fit

__all__ = ["COLLAPSED_DB", "TABLE2", "TABLE3", "RecipeOptions", "agreement", "run_recipe", "screen", "table",
           "table_configs", "train"]

#: Table 3's rows (:data:`ntkgrid.presets.SCALING`) and Table 2's (:data:`ntkgrid.presets.IMAGENET`).
TABLE3 = tuple(presets.SCALING)
TABLE2 = tuple(presets.IMAGENET)

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class RecipeOptions:
    """What :func:`run_recipe` runs (the options of ``python -m experiments.recipe``, in its order;
    they are recorded with the results)."""

    command: str = "screen"  # "screen" or "train"
    readings: Sequence[str] = tuple(READINGS)  # the readings to run (ntkgrid.readings.READINGS)
    size: int = 64  # image side in pixels
    screen_epochs: int = 2  # epochs of the screen's observed-stability runs
    epochs3: int = 30  # train: Table 3 epochs (paper: 300)
    epochs2: int = 10  # train: Table 2 epochs (paper: 100)
    images: Sequence[str] = ("chelsea", "astronaut", "coffee")  # train: bundled photos for Table 2
    tables: Sequence[str] = ("2", "3")  # train: which tables ("2", "3")
    configs3: Sequence[str] = TABLE3  # Table 3 rows to run
    configs2: Sequence[str] = TABLE2  # Table 2 rows to run
    out: Path = Path("runs/recipe")  # output folder
    long: Sequence[Path] = ()  # table only: folders of runs at the printed epoch counts


def table_configs(size: int) -> dict[str, dict[str, TrainConfig]]:
    """``{"3": {config: TrainConfig}, "2": {config: TrainConfig}}``: Table 3's configs with their
    grids scaled to ``size`` px images (:func:`ntkgrid.presets.scaled_grid`) and Table 2's as printed."""
    t3 = {n: presets.scaled_grid(presets.SCALING[n], size) for n in TABLE3}
    t2 = {n: presets.IMAGENET[n] for n in TABLE2}  # Table 2's grids (96, 277) stay as printed
    return {"3": t3, "2": t2}


def _short(cfg: TrainConfig, epochs: int) -> TrainConfig:
    return cfg.replace(epochs=epochs, ntk_points=0, checkpoints=(0, epochs), curve_every=max(1, epochs // 10))


def screen(args: RecipeOptions, *, log: Log = print) -> dict:
    """The screen: for every reading of ``args.readings`` and every selected configuration of
    Tables 3 and 2, the critical step predicted by the minibatch NTK at initialisation (median
    over 4 minibatches of chelsea's pixels at ``args.size`` px) and what ``args.screen_epochs``
    epochs at the table's lr do.

    Returns:
      ``{reading: {"<table>/<config>": {"lr", "batch_size", "lambda_max" (4 floats),
      "lr_crit", "predicted_stable", "diverged", "diverged_epoch", "psnr" (dB), "seconds"}}}``.
    """
    img = bundled_image("chelsea", args.size)
    tables = table_configs(args.size)
    results = {}
    for rd in args.readings:
        rows = {}
        for table, cfgs in (("3", tables["3"]), ("2", tables["2"])):
            for name, base in cfgs.items():
                if name not in (args.configs3 if table == "3" else args.configs2):
                    continue
                cfg = reading(base, rd)
                x, y = image_to_dataset(img, pixels=cfg.pixels)
                t0 = time.perf_counter()
                pred = critical_lr(cfg, x, y.shape[1], n_batches=4)
                run = fit(_short(cfg, args.screen_epochs), x, y, image_shape=img.shape[:2], progress=False)
                rows[f"{table}/{name}"] = {
                    "lr": cfg.learning_rate, "batch_size": cfg.batch_size,
                    "lambda_max": [float(v) for v in pred.lambda_max], "lr_crit": pred.lr_crit_median,
                    "predicted_stable": pred.stable(cfg.learning_rate), "diverged": run.diverged,
                    "diverged_epoch": run.diverged_epoch,
                    "psnr": run.curve[-1]["psnr"] if run.curve else None, "seconds": time.perf_counter() - t0}
                r = rows[f"{table}/{name}"]
                log(f"{rd:24s} T{table} {name:16s} lr {r['lr']:<7g} B {r['batch_size']:<3d} "
                    f"lam_max {np.median(r['lambda_max']):9.4g} lr_crit {r['lr_crit']:9.4g} "
                    f"pred {'stable' if r['predicted_stable'] else 'DIVERGE':7s} obs "
                    f"{'DIVERGED@' + str(r['diverged_epoch']) if r['diverged'] else 'stable'}")
        results[rd] = rows
    return results


def train(args: RecipeOptions, *, log: Log = print) -> dict:
    """The reduced schedule: for every reading, Table 3 on chelsea for ``args.epochs3`` epochs and
    Table 2 on ``args.images`` for ``args.epochs2`` epochs, at the tables' lr and batch.

    Returns:
      ``{reading: {"3": {config: {"psnr" (dB), "diverged", "diverged_epoch", "curve", "seconds"}},
      "2": {config: {"runs": [...], "mean_psnr" (dB), "n_diverged"}}}}``.
    """
    tables = table_configs(args.size)
    results = {}
    for rd in args.readings:
        res = {"3": {}, "2": {}}
        if "3" in args.tables:
            img = bundled_image("chelsea", args.size)
            for name in args.configs3:
                cfg = _short(reading(tables["3"][name], rd), args.epochs3)
                x, y = image_to_dataset(img, pixels=cfg.pixels)
                t0 = time.perf_counter()
                run = fit(cfg, x, y, image_shape=img.shape[:2], progress=False)
                res["3"][name] = {"psnr": run.curve[-1]["psnr"] if run.curve else None, "diverged": run.diverged,
                                  "diverged_epoch": run.diverged_epoch, "curve": run.curve,
                                  "seconds": time.perf_counter() - t0}
                log(f"{rd:24s} T3 {name:16s} PSNR {res['3'][name]['psnr']} diverged {run.diverged} "
                    f"({res['3'][name]['seconds']:.0f} s)")
        if "2" in args.tables:
            for name in args.configs2:
                vals = []
                for image in args.images:
                    img = bundled_image(image, args.size)
                    cfg = _short(reading(tables["2"][name], rd), args.epochs2)
                    x, y = image_to_dataset(img, pixels=cfg.pixels)
                    run = fit(cfg, x, y, image_shape=img.shape[:2], progress=False)
                    vals.append({"image": image, "psnr": run.curve[-1]["psnr"] if not run.diverged else None,
                                 "diverged": run.diverged, "diverged_epoch": run.diverged_epoch})
                ok = [v["psnr"] for v in vals if v["psnr"] is not None]
                res["2"][name] = {"runs": vals, "mean_psnr": float(np.mean(ok)) if ok else None,
                                  "n_diverged": sum(v["diverged"] for v in vals)}
                log(f"{rd:24s} T2 {name:16s} mean PSNR {res['2'][name]['mean_psnr']} "
                    f"diverged {res['2'][name]['n_diverged']}/{len(vals)}")
        results[rd] = res
    return results


def _g(v):
    return "-" if v is None else f"{v:.3g}"


#: Full-image PSNR (dB) below which a run that survived a step above its critical one counts as
#: collapsed: the all-zero (clipped) output scores 6.6 dB on chelsea, its mean colour 18.7 dB.
COLLAPSED_DB = 7.0


def _observed(rows) -> str:
    """``"k/n"`` runs finite after the screen epochs, with how many of those collapsed
    (predicted unstable, survived, PSNR below :data:`COLLAPSED_DB`)."""
    finite = [r for r in rows if not r["diverged"]]
    dead = sum(1 for r in finite if not r["predicted_stable"] and (r["psnr"] or 0.0) < COLLAPSED_DB)
    return f"{len(finite)}/{len(rows)}" + (f" ({dead} collapsed)" if dead else "")


def _psnr2(res: dict) -> str:
    return ", ".join(
        (fmt(res[n]["mean_psnr"], 1) + (f" ({res[n]['n_diverged']} div)" if res[n]["n_diverged"] else ""))
        if n in res else "-" for n in TABLE2) if res else "-"


def _psnr3(res: dict) -> str:
    return ", ".join("div" if (res.get(n) or {}).get("diverged") else fmt((res.get(n) or {}).get("psnr"), 1)
                     for n in TABLE3) if res else "-"


def _load(outs, names=("screen.json", "train.json")) -> tuple[dict, dict]:
    screen, trained = {}, {}
    for out in outs:
        for name, dst in (("screen.json", screen), ("train.json", trained)):
            if name not in names:
                continue
            path = Path(out) / name
            if path.exists():
                for k, v in read_json(path).items():
                    if k.startswith("_args"):
                        continue
                    if name == "train.json":
                        d = dst.setdefault(k, {"2": {}, "3": {}})
                        for t in ("2", "3"):
                            d[t].update(v.get(t, {}))
                    else:
                        dst[k] = v
    return screen, trained


def table(outs: Sequence[str | os.PathLike], long: Sequence[str | os.PathLike] = ()) -> str:
    """The evidence table: one row per reading found in the ``screen.json`` / ``train.json``
    files of ``outs``, plus the ``train.json`` runs of ``long`` as extra columns."""
    screen, trained = _load(outs)
    _, longer = _load(long, ("train.json",))
    head = ["reading", "T3 lr_crit (B=32)", "T3 lr 100: predicted / observed", "T3 PSNR base, low, mid, high, "
            "coarse, fine", "T2 lr_crit mg, ff, base (lr 0.39, 0.39, 0.24)", "T2: predicted / observed",
            "T2 mean PSNR mg, ff, base", "printed epochs: T3 PSNR", "printed epochs: T2 mean PSNR"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for rd in [r for r in screen] + [r for r in [*trained, *longer] if r not in screen]:
        sc, tr = screen.get(rd, {}), trained.get(rd, {"2": {}, "3": {}})
        t3 = [sc.get(f"3/{n}") for n in TABLE3 if sc.get(f"3/{n}")]
        t2 = [sc.get(f"2/{n}") for n in TABLE2 if sc.get(f"2/{n}")]
        crit3 = f"{min(r['lr_crit'] for r in t3):.3g}-{max(r['lr_crit'] for r in t3):.3g}" if t3 else "-"
        obs3 = f"{sum(r['predicted_stable'] for r in t3)}/{len(t3)} / {_observed(t3)}" if t3 else "-"
        psnr3 = _psnr3(tr["3"])
        lg = longer.get(rd, {"2": {}, "3": {}})
        crit2 = ", ".join(_g(r["lr_crit"]) for r in t2) if t2 else "-"
        obs2 = f"{sum(r['predicted_stable'] for r in t2)}/{len(t2)} / {_observed(t2)}" if t2 else "-"
        psnr2 = _psnr2(tr["2"])
        lines.append(f"| {rd} | {crit3} | {obs3} | {psnr3} | {crit2} | {obs2} | {psnr2} | {_psnr3(lg['3'])} "
                     f"| {_psnr2(lg['2'])} |")
    return "\n".join(lines) + "\n\n" + agreement(screen)


def agreement(screen: dict) -> str:
    """Prediction (lr below the init-NTK critical step) against observation over every screened
    (reading, configuration): a markdown list, with the lr / lr_crit of the runs that survived
    a step above the critical one."""
    # an "epoch" of one minibatch makes the screen two SGD steps long: too short to see divergence
    rows = [r for k, v in screen.items() if k != "epoch_one_step" for r in v.values()]
    ps = [r for r in rows if r["predicted_stable"]]
    pu = [r for r in rows if not r["predicted_stable"]]
    div = [r for r in pu if r["diverged"]]
    dead = [r for r in pu if not r["diverged"] and (r["psnr"] or 0.0) < COLLAPSED_DB]
    live = [r for r in pu if not r["diverged"] and (r["psnr"] or 0.0) >= COLLAPSED_DB]

    def ratio(rs) -> str:
        return ", ".join(f"{v:.2g}" for v in sorted(r["lr"] / r["lr_crit"] for r in rs))

    return "\n".join([
        f"- predicted stable (lr < lr_crit): {len(ps)} runs, {sum(not r['diverged'] for r in ps)} stayed finite "
        f"(lr / lr_crit of those that diverged: {ratio([r for r in ps if r['diverged']]) or 'none'})",
        f"- predicted unstable: {len(pu)} runs: {len(div)} diverged, {len(dead)} collapsed to a dead output "
        f"(< {COLLAPSED_DB} dB), {len(live)} survived and still fit (catapult; lr / lr_crit {ratio(live)})",
        f"- lr / lr_crit of the runs that diverged: {min(r['lr'] / r['lr_crit'] for r in div):.2g} to "
        f"{max(r['lr'] / r['lr_crit'] for r in div):.3g}" if div else "- no run diverged"])


def run_recipe(options: RecipeOptions, *, log: Log = print) -> Path:
    """Run ``options.command`` (:func:`screen` or :func:`train`) and merge its results into
    ``<out>/<command>.json`` with the options (readings run separately accumulate in one file).

    Args:
      options: what to run.
      log: where progress lines go.

    Returns:
      The JSON file written. Raises ``ValueError`` for another command.
    """
    if options.command not in ("screen", "train"):
        raise ValueError(f"recipe command must be screen or train, got {options.command!r}")
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = screen(options, log=log) if options.command == "screen" else train(options, log=log)
    path = out / f"{options.command}.json"
    old = read_json(path) if path.exists() else {}
    old.update(results)  # readings run separately accumulate in one file
    meta = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in meta.items()}
    write_json(path, {**old, "_args_" + options.command + "_" + "_".join(options.readings)[:80]: meta})
    log(f"{options.command}: {time.perf_counter() - t0:.0f} s; wrote {path}")
    return path
