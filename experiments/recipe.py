"""Search for the reading of the paper's training under which Tables 2 and 3 train as printed
(issue 13; the evidence is in experiments/RECIPE.md).

    python -m experiments.recipe screen [--readings ...] [--size 64] [--screen-epochs 2] [--out DIR]
    python -m experiments.recipe train  [--readings ...] [--size 64] [--epochs3 30] [--epochs2 10]
        [--images chelsea astronaut coffee] [--tables 2 3] [--out DIR]
    python -m experiments.recipe table  [--out DIR ...] [--long DIR ...]   # the evidence table

``screen``: for every reading (``ntkgrid.presets.READINGS``) and every configuration of
Table 3 (lr 100, batch 32) and Table 2 (its lr and batch), the critical step predicted by
the minibatch NTK at initialisation (:func:`ntkgrid.stability.critical_lr`, median over 4
minibatches of chelsea's pixels) and what happens in ``--screen-epochs`` epochs at the
table's lr: diverged (epoch) or not. ``train``: a reduced schedule with the tables' lr and
batch: Table 3 on chelsea for ``--epochs3`` epochs, Table 2 on ``--images`` for
``--epochs2`` epochs, final full-image PSNR. Images are ``--size`` px squares; Table 3's
grids are scaled with the image (``ntkgrid.presets.scaled_grid``). Writes
``<out>/screen.json`` / ``train.json`` (every number); ``table`` merges the JSON files of
every ``--out`` given (and, as extra columns, the ``train.json`` of every ``--long`` folder:
runs at the printed epoch counts) and prints the one markdown table of experiments/RECIPE.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from experiments._cli import fail, log
from ntkgrid.files import fmt, read_json, write_json

TABLE3 = ("baseline", "fourier_low", "fourier_mid", "fourier_high", "multigrid_coarse", "multigrid_fine")
TABLE2 = ("multigrid", "fourier", "baseline")


def build_parser() -> argparse.ArgumentParser:
    from ntkgrid import presets

    ap = argparse.ArgumentParser(prog="python -m experiments.recipe", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("screen", "train", "table"))
    ap.add_argument("--readings", nargs="+", default=list(presets.READINGS), choices=sorted(presets.READINGS))
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    ap.add_argument("--screen-epochs", type=int, default=2, help="epochs of the observed-stability runs")
    ap.add_argument("--epochs3", type=int, default=30, help="train: Table 3 epochs (paper: 300)")
    ap.add_argument("--epochs2", type=int, default=10, help="train: Table 2 epochs (paper: 100)")
    ap.add_argument("--images", nargs="+", default=["chelsea", "astronaut", "coffee"],
                    help="train: bundled photos for Table 2 (default: %(default)s)")
    ap.add_argument("--tables", nargs="+", default=["2", "3"], choices=["2", "3"])
    ap.add_argument("--configs3", nargs="+", default=list(TABLE3), choices=TABLE3, help="Table 3 rows to run")
    ap.add_argument("--configs2", nargs="+", default=list(TABLE2), choices=TABLE2, help="Table 2 rows to run")
    ap.add_argument("--out", type=Path, nargs="+", default=[Path("runs/recipe")],
                    help="output folder (table: every folder to merge)")
    ap.add_argument("--long", type=Path, nargs="*", default=[],
                    help="table: folders whose train.json hold runs at the printed epoch counts (extra columns)")
    return ap


def _table_configs(size: int) -> dict:
    from ntkgrid import presets

    t3 = {n: presets.scaled_grid(presets.SCALING[n], size) for n in TABLE3}
    t2 = {n: presets.IMAGENET[n] for n in TABLE2}  # Table 2's grids (96, 277) stay as printed
    return {"3": t3, "2": t2}


def _short(cfg, epochs: int):
    return cfg.replace(epochs=epochs, ntk_points=0, checkpoints=(0, epochs), curve_every=max(1, epochs // 10))


def screen(args) -> dict:
    from ntkgrid import presets
    from ntkgrid.data.images import bundled_image, image_to_dataset
    from ntkgrid.stability import critical_lr
    from ntkgrid.training import fit

    img = bundled_image("chelsea", args.size)
    tables = _table_configs(args.size)
    results = {}
    for rd in args.readings:
        rows = {}
        for table, cfgs in (("3", tables["3"]), ("2", tables["2"])):
            for name, base in cfgs.items():
                if name not in (args.configs3 if table == "3" else args.configs2):
                    continue
                cfg = presets.reading(base, rd)
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


def train(args) -> dict:
    from ntkgrid import presets
    from ntkgrid.data.images import bundled_image, image_to_dataset
    from ntkgrid.training import fit

    tables = _table_configs(args.size)
    results = {}
    for rd in args.readings:
        res = {"3": {}, "2": {}}
        if "3" in args.tables:
            img = bundled_image("chelsea", args.size)
            for name in args.configs3:
                cfg = _short(presets.reading(tables["3"][name], rd), args.epochs3)
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
                    cfg = _short(presets.reading(tables["2"][name], rd), args.epochs2)
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


def _load(outs, names=("screen.json", "train.json")):
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


def table(outs, long=()) -> str:
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "table":
        for opt, folders in (("--out", args.out), ("--long", args.long)):
            for d in folders:
                if not d.is_dir():
                    return fail(f"{opt} {d}: no such folder")
                if not any((d / n).exists() for n in ("screen.json", "train.json")):
                    return fail(f"{opt} {d}: holds neither screen.json nor train.json (run screen or train first)")
        try:
            log(table(args.out, args.long))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            return fail(f"recipe table: unreadable results ({type(err).__name__}: {err})")
        return 0
    args.out = args.out[0]
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = screen(args) if args.command == "screen" else train(args)
    path = args.out / f"{args.command}.json"
    old = read_json(path) if path.exists() else {}
    old.update(results)  # readings run separately accumulate in one file
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_json(path, {**old, "_args_" + args.command + "_" + "_".join(args.readings)[:80]: meta})
    log(f"{args.command}: {time.perf_counter() - t0:.0f} s; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
