"""Campaign cases for the ImageNet sweep (``experiments.imagenet_sweep``) and ``recipe table``:
bad arguments, merges into finished folders, corrupted results and run folders, file names
that are not UTF-8, symlink loops, diverged runs and a two-process jax.distributed job.

Every case generates its images (12 px PNGs) and runs the CLI in a subprocess on tiny
settings (a 16-wide hidden layer, one epoch, no spectra). The cases that start from a
finished sweep copy one built once per campaign (:func:`_base`)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from reliability.campaign import ROOT, Case, Outcome, Ran, classify_error_run, cli, digests, one_line, run_cli

SWEEP = "experiments.imagenet_sweep"
#: A file name byte that is not UTF-8.
BAD_BYTE_NAME = b"caf\xff"


def _images(root: Path, n: int = 2, *, non_utf8: bool = False) -> Path:
    """``root/n00k/im<k>.png`` (12 px, random colours); the last named ``caf\\xff.png`` if ``non_utf8``."""
    from PIL import Image

    rng = np.random.default_rng(21)
    for k in range(n):
        folder = root / f"n{k:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = os.fsdecode(BAD_BYTE_NAME + b".png") if non_utf8 and k == n - 1 else f"im{k}.png"
        Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8)).save(folder / name)
    return root


def _tiny(tmp: Path, data: Path, encodings=("baseline", "fourier")) -> list[str]:
    """Sweep arguments: ``data``, the quick preset's ``encodings`` with a 16-wide hidden layer
    (``--config-json`` files written under ``tmp``), 12 px, one epoch, no spectra."""
    from ntkgrid import files, presets

    args = ["--data-root", str(data), "--preset", "quick", "--encodings", *encodings]
    for n in encodings:
        cfg = presets.IMAGENET_QUICK[n].replace(hidden=(16,), batch_size=16, checkpoints=None)
        args += ["--config-json", f"{n}={files.write_json(tmp / f'tiny_{n}.json', cfg.to_dict())}"]
    return args + ["--size", "12", "--epochs", "1", "--ntk-points", "0", "--no-progress"]


_BASE: dict = {}


def _base() -> tuple[list[str], Path]:
    """``(argv, folder)`` of a finished two-image sweep (baseline + Fourier), built once."""
    if not _BASE:
        tmp = Path(tempfile.mkdtemp(prefix="ntkgrid-campaign-base-"))
        atexit.register(shutil.rmtree, tmp, True)
        argv = _tiny(tmp, _images(tmp / "data"))
        r = run_cli(SWEEP, [*argv, "--out", str(tmp / "done")])
        if r.rc != 0:
            raise RuntimeError(f"the base sweep failed (exit {r.rc}): {one_line(r.err[-300:])}")
        _BASE.update(argv=argv, out=tmp / "done")
    return _BASE["argv"], _BASE["out"]


def _copy_base(tmp: Path) -> tuple[list[str], Path]:
    argv, out = _base()
    return argv, Path(shutil.copytree(out, tmp / "D", symlinks=True))


def _psnrs(folder: Path) -> dict:
    data = json.loads((folder / "results.json").read_text())
    return {i["image_id"]: {n: r["psnr"] for n, r in i["runs"].items()} for i in data["images"]}


def _finished(folder: Path) -> dict[str, str]:
    """Digests of the finished files (per-image results and run folders)."""
    return {k: v for k, v in digests(folder).items() if k.startswith(("results/", "runs/"))}


def _failed_run(r: Ran, code: int = 0) -> Outcome | None:
    """None when ``r`` exited ``code`` without a traceback; else its outcome."""
    text = r.out + r.err
    if "Traceback (most recent call last)" in text:
        last = [ln for ln in r.err.strip().splitlines() if ln.strip()][-1:] or [""]
        return Outcome("traceback", f"exit {r.rc}: " + one_line(last[0]))
    if r.rc != code:
        err = [ln for ln in r.err.splitlines() if ln.startswith("error:")][:1] or [r.err.strip()[-200:]]
        return Outcome("wrong exit", f"exit {r.rc} (want {code}): " + one_line(err[0]))
    return None


# ----------------------------------------------------------------------------- bad arguments


def _bad(extra: list[str], names: str, also: str | None = None, *, code: int = 2, env: dict | None = None):
    """A case: the sweep with ``extra`` must fail before writing anything, one line naming ``names``."""
    def run(tmp: Path) -> Outcome:
        argv = [*(a.replace("{tmp}", str(tmp)) for a in extra), "--out", str(tmp / "o")]
        if env:
            old = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
        try:
            r = run_cli(SWEEP, argv)
        finally:
            if env:
                for k, v in old.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        o = classify_error_run(r, code=code, names=names.replace("{tmp}", str(tmp)), also=also)
        if o.kind == "clear error" and (tmp / "o").exists() and any((tmp / "o").iterdir()):
            return Outcome("damaged", "refused but wrote into --out: " + o.detail)
        if o.kind == "clear error" and len([ln for ln in r.err.splitlines() if ln.strip()]) != 1:
            return Outcome("confusing", "more than one line on stderr: " + one_line(r.err))
        return o
    return run


def config_kind_mismatch(tmp: Path) -> Outcome:
    from ntkgrid import files, presets

    path = files.write_json(tmp / "ff.json", presets.IMAGENET_QUICK["fourier"].to_dict())
    return cli(SWEEP, ["--config-json", f"multigrid={path}", "--out", str(tmp / "o")], code=2,
               names=f"multigrid={path}", also="'fourier' encoding")


def config_infinite_lr(tmp: Path) -> Outcome:
    from ntkgrid import presets

    path = tmp / "inf.json"
    path.write_text(json.dumps({**presets.IMAGENET_QUICK["fourier"].to_dict(), "learning_rate": float("inf")}))
    return cli(SWEEP, ["--config-json", f"fourier={path}", "--out", str(tmp / "o")], code=2, names=str(path),
               also="finite")


def config_garbage(tmp: Path) -> Outcome:
    path = tmp / "garbage.json"
    path.write_bytes(b"\x00\x01{not json")
    return cli(SWEEP, ["--config-json", f"baseline={path}", "--out", str(tmp / "o")], code=2, names=str(path))


def out_is_a_file(tmp: Path) -> Outcome:
    f = tmp / "afile"
    f.write_text("keep\n")
    o = cli(SWEEP, ["--num-synsets", "1", "--out", str(f)], code=2, names=str(f), also="not a folder")
    return o if f.read_text() == "keep\n" else Outcome("damaged", "the file given as --out changed")


def out_read_only(tmp: Path) -> Outcome:
    """A folder on a read-only filesystem: /sys refuses new folders even to root (EPERM);
    as another user a 0555 folder does."""
    if os.geteuid() == 0:
        target = "/sys/ntkgrid-campaign/out"
    else:
        ro = tmp / "ro"
        ro.mkdir(mode=0o555)
        target = str(ro / "out")
    return cli(SWEEP, ["--num-synsets", "1", "--out", target], code=2, names=target)


def data_root_file(tmp: Path) -> Outcome:
    (tmp / "root").write_text("x")
    return cli(SWEEP, ["--data-root", str(tmp / "root"), "--out", str(tmp / "o")], code=2, names=str(tmp / "root"))


def data_root_empty(tmp: Path) -> Outcome:
    (tmp / "root").mkdir()
    return cli(SWEEP, ["--data-root", str(tmp / "root"), "--out", str(tmp / "o")], code=2, names=str(tmp / "root"),
               also="empty")


def recipe_missing(tmp: Path) -> Outcome:
    return cli("experiments.recipe", ["table", "--out", str(tmp / "nope")], code=2, names=str(tmp / "nope"))


def recipe_empty(tmp: Path) -> Outcome:
    return cli("experiments.recipe", ["table", "--out", str(tmp)], code=2, names=str(tmp), also="screen.json")


def merge_nothing(tmp: Path) -> Outcome:
    return cli(SWEEP, ["merge", "--out", str(tmp)], code=2, names=str(tmp), also="no shard folders")


def merge_foreign(tmp: Path) -> Outcome:
    from ntkgrid import files

    _, d = _copy_base(tmp)
    m = json.loads((d / "manifest.json").read_text())
    files.write_json(tmp / "other" / "manifest.json", {**m, "seed": 7})
    return cli(SWEEP, ["merge", "--out", str(tmp / "m"), str(d), str(tmp / "other")], code=2,
               names=str(tmp / "other" / "manifest.json"), also="only shards of one sweep")


# ----------------------------------------------------------------------------- finished folders


def merge_keeps_finished(tmp: Path) -> Outcome:
    """The issue's case: sweep finished in D, shard 0/2 into D/shard-0-of-2, merge --out D."""
    argv, d = _copy_base(tmp)
    before = _finished(d)
    bad = _failed_run(run_cli(SWEEP, [*argv, "--shard", "0/2", "--out", str(d / "shard-0-of-2")])) \
        or _failed_run(run_cli(SWEEP, ["merge", "--out", str(d)]))
    if bad:
        return bad
    after = digests(d)
    lost = [k for k in before if after.get(k) != before[k]]
    if lost:
        return Outcome("damaged", f"{len(lost)} finished file(s) changed or removed, e.g. {lost[0]}")
    return Outcome("preserved", f"all {len(before)} finished files byte-identical; {len(_psnrs(d))} images in the "
                                "merged summary")


def merge_conflict(tmp: Path) -> Outcome:
    from ntkgrid import files

    _, d = _copy_base(tmp)
    shard = d / "shard-1-of-2"
    files.write_json(shard / "manifest.json", {**json.loads((d / "manifest.json").read_text()), "shard": "1/2"})
    rec = json.loads((d / "results" / "n001_im1.json").read_text())
    rec["runs"]["baseline"]["psnr"] += 1.0
    files.write_json(shard / "results" / "n001_im1.json", rec)
    before = digests(d)
    o = classify_error_run(run_cli(SWEEP, ["merge", "--out", str(d)]), code=2,
                           names=str(d / "results" / "n001_im1.json"), also="other results")
    if digests(d) != before:
        return Outcome("damaged", "the refused merge changed files: " + o.detail)
    return o


def _rerun_rebuilds(damage, what: str):
    """A case: damage a copy of the finished sweep, rerun it; the numbers must come back equal
    and the files ``damage`` did not touch stay byte-identical."""
    def run(tmp: Path) -> Outcome:
        argv, d = _copy_base(tmp)
        want = _psnrs(d)
        touched = damage(d)
        keep = {k: v for k, v in _finished(d).items() if not k.startswith(tuple(touched))}
        bad = _failed_run(run_cli(SWEEP, [*argv, "--out", str(d)]))
        if bad:
            return bad
        if _psnrs(d) != want:
            return Outcome("silent wrong", f"after the rerun the numbers differ: {_psnrs(d)} vs {want}")
        now = digests(d)
        changed = [k for k, v in keep.items() if now.get(k) != v]
        if changed:
            return Outcome("damaged", f"{len(changed)} intact file(s) changed, e.g. {changed[0]}")
        return Outcome("preserved", f"{what}; numbers equal, {len(keep)} intact files byte-identical")
    return run


def _truncate_results(d: Path) -> list[str]:
    p = d / "results" / "n000_im0.json"
    p.write_bytes(p.read_bytes()[:60])
    return ["results/n000_im0.json"]


def _broken_entry(d: Path) -> list[str]:
    (d / "results" / "n001_im1.json").write_text('{"image_id": "n001_im1", "runs": {"baseline": 3}}')
    return ["results/n001_im1.json"]


def _run_metadata_garbage(d: Path) -> list[str]:
    for name in ("run.json", "summary.json"):
        (d / "runs" / "n001_im1" / "fourier" / name).write_text("garbage")
    (d / "results" / "n001_im1.json").unlink()
    return ["runs/n001_im1/fourier", "results/n001_im1.json"]


def _summary_garbage(d: Path) -> list[str]:
    (d / "runs" / "n000_im0" / "baseline" / "summary.json").write_text("{")
    (d / "results" / "n000_im0.json").unlink()
    return ["runs/n000_im0/baseline", "results/n000_im0.json"]


def _skipped_garbage(d: Path) -> list[str]:
    (d / "skipped.json").write_text("][")
    return []


def manifest_garbage(tmp: Path) -> Outcome:
    argv, d = _copy_base(tmp)
    (d / "manifest.json").write_text("{oops")
    before = _finished(d)
    o = classify_error_run(run_cli(SWEEP, [*argv, "--out", str(d)]), code=2, names=str(d / "manifest.json"))
    return o if _finished(d) == before else Outcome("damaged", "finished files changed: " + o.detail)


def other_settings(tmp: Path) -> Outcome:
    argv, d = _copy_base(tmp)
    before = digests(d)
    argv = list(argv)
    argv[argv.index("--epochs") + 1] = "2"
    o = classify_error_run(run_cli(SWEEP, [*argv, "--out", str(d)]), code=2, names=str(d / "manifest.json"),
                           also="epochs")
    return o if digests(d) == before else Outcome("damaged", "files changed: " + o.detail)


def rerun_unchanged(tmp: Path) -> Outcome:
    argv, d = _copy_base(tmp)
    before = _finished(d)
    bad = _failed_run(run_cli(SWEEP, [*argv, "--out", str(d)]))
    if bad:
        return bad
    return Outcome("preserved", f"{len(before)} finished files byte-identical") if _finished(d) == before \
        else Outcome("damaged", "a rerun changed finished files")


# ----------------------------------------------------------------------------- odd data


def non_utf8_name(tmp: Path) -> Outcome:
    argv = _tiny(tmp, _images(tmp / "data", non_utf8=True), encodings=("baseline",))
    out = tmp / "o"
    bad = _failed_run(run_cli(SWEEP, [*argv, "--out", str(out)]))
    if bad:
        return bad
    try:
        report = (out / "report.md").read_bytes().decode("utf-8")
        for name in ("summary.md", "summary.csv", "results.json", "training_curves.json"):
            (out / name).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        return Outcome("silent wrong", f"a written file is not UTF-8: {err}")
    if "caf\\xff.png" not in report:
        return Outcome("silent wrong", "report.md does not show the file as caf\\xff.png")
    before = _finished(out)
    bad = _failed_run(run_cli(SWEEP, [*argv, "--out", str(out)]))
    if bad:
        return Outcome(bad.kind, "the rerun: " + bad.detail)
    if _finished(out) != before:
        return Outcome("damaged", "the rerun changed finished files")
    return Outcome("correct", "trained; report shows caf\\xff.png, every file UTF-8; the rerun changed nothing")


def symlink_loop(tmp: Path) -> Outcome:
    data = _images(tmp / "data")
    (data / "n000" / "loop.png").symlink_to(data / "n000" / "loop.png")
    argv = _tiny(tmp, data, encodings=("baseline",))
    r = run_cli(SWEEP, [*argv, "--out", str(tmp / "o")])
    bad = _failed_run(r)
    if bad:
        return bad
    warn = [ln for ln in r.err.splitlines() if "loop.png" in ln]
    if not warn or "symlink loop" not in warn[0]:
        return Outcome("confusing", "no warning naming the symlink loop: " + one_line(r.err[-200:]))
    return Outcome("correct", "skipped with a warning: " + one_line(warn[0]))


def diverged(tmp: Path) -> Outcome:
    argv = _tiny(tmp, _images(tmp / "data", 1), encodings=("baseline",))
    r = run_cli(SWEEP, [*argv, "--lr", "1e30", "--out", str(tmp / "o")])
    bad = _failed_run(r)
    if bad:
        return bad
    report = (tmp / "o" / "report.md")
    if not report.exists() or "(diverged)" not in report.read_text():
        return Outcome("silent wrong", "no report marking the diverged run")
    return Outcome("correct", "report.md lists the run as diverged")


def two_process_job(tmp: Path) -> Outcome:
    """Two local processes as one jax.distributed job (options for one, JAX_* variables for the
    other), ``--shard auto``, merged: the numbers must equal a one-process run's."""
    argv = _tiny(tmp, _images(tmp / "data"), encodings=("baseline",))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        coord = f"127.0.0.1:{s.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "SLURM_", "OMPI_"))}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    cmd = [sys.executable, "-m", SWEEP, *argv, "--distributed", "--shard", "auto"]
    procs = [subprocess.Popen([*cmd, "--coordinator", coord, "--num-processes", "2", "--process-id", "0",
                               "--out", str(tmp / "job" / "s0")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True),
             subprocess.Popen([*cmd, "--out", str(tmp / "job" / "s1")], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env={**env, "JAX_COORDINATOR_ADDRESS": coord, "JAX_NUM_PROCESSES": "2",
                                   "JAX_PROCESS_ID": "1"})]
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(procs, logs, strict=True):
        if p.returncode != 0:
            return Outcome("traceback" if "Traceback" in log else "wrong exit",
                           f"a process exited {p.returncode}: " + one_line(log.strip().splitlines()[-1] if log else ""))
    bad = _failed_run(run_cli(SWEEP, ["merge", "--out", str(tmp / "job")])) \
        or _failed_run(run_cli(SWEEP, [*argv, "--out", str(tmp / "one")]))
    if bad:
        return bad
    a, b = _psnrs(tmp / "job"), _psnrs(tmp / "one")
    if a != b:
        return Outcome("silent wrong", f"merged {a} != one process {b}")
    return Outcome("correct", f"each process ran its shard; merged numbers of {len(a)} images equal one process's")


CASES = [
    Case("sweep/lr-inf", "sweep", "`--lr inf`", _bad(["--lr", "inf"], "--lr", "finite")),
    Case("sweep/lr-nan", "sweep", "`--lr nan`", _bad(["--lr", "nan"], "--lr", "finite")),
    Case("sweep/lr-zero", "sweep", "`--lr 0`", _bad(["--lr", "0"], "--lr", "> 0")),
    Case("sweep/lr-negative", "sweep", "`--lr -1`", _bad(["--lr", "-1"], "--lr", "> 0")),
    Case("sweep/seed-negative", "sweep", "`--seed -1`", _bad(["--seed", "-1"], "--seed", ">= 0")),
    Case("sweep/shard-letters", "sweep", "`--shard a/b`", _bad(["--shard", "a/b"], "'a/b'", "i/n")),
    Case("sweep/shard-index", "sweep", "`--shard 3/2`", _bad(["--shard", "3/2"], "'3/2'", "index")),
    Case("sweep/num-synsets-0", "sweep", "`--num-synsets 0`", _bad(["--num-synsets", "0"], "--num-synsets")),
    Case("sweep/size-4", "sweep", "`--size 4`", _bad(["--size", "4"], "--size")),
    Case("sweep/epochs-0", "sweep", "`--epochs 0`", _bad(["--epochs", "0"], "--epochs")),
    Case("sweep/batch-0", "sweep", "`--batch-size 0`", _bad(["--batch-size", "0"], "--batch-size")),
    Case("sweep/ntk-points-neg", "sweep", "`--ntk-points -3`", _bad(["--ntk-points", "-3"], "--ntk-points")),
    Case("sweep/rpp-0", "sweep", "`--runs-per-program 0`", _bad(["--runs-per-program", "0"], "--runs-per-program")),
    Case("sweep/config-kind", "sweep", "`--config-json multigrid=<a Fourier config>`", config_kind_mismatch),
    Case("sweep/config-inf-lr", "sweep", "`--config-json` with an infinite learning rate", config_infinite_lr),
    Case("sweep/config-garbage", "sweep", "`--config-json` of a binary garbage file", config_garbage),
    Case("sweep/config-missing", "sweep", "`--config-json` of a missing file",
         _bad(["--config-json", "baseline={tmp}/none.json"], "{tmp}/none.json")),
    Case("sweep/config-no-path", "sweep", "`--config-json multigrid`", _bad(["--config-json", "multigrid"],
                                                                             "NAME=PATH")),
    Case("sweep/out-file", "sweep", "`--out` an existing file", out_is_a_file),
    Case("sweep/out-read-only", "sweep", "`--out` on a read-only filesystem", out_read_only),
    Case("sweep/data-root-missing", "sweep", "`--data-root` missing", _bad(["--data-root", "{tmp}/none"],
                                                                             "{tmp}/none")),
    Case("sweep/data-root-file", "sweep", "`--data-root` a file", data_root_file),
    Case("sweep/data-root-empty", "sweep", "`--data-root` an empty folder", data_root_empty),
    Case("sweep/procs-no-distributed", "sweep", "`--num-processes 2` without `--distributed`",
         _bad(["--num-processes", "2"], "--num-processes", "--distributed")),
    Case("sweep/coordinator-bad", "sweep", "`--distributed --coordinator nohost`",
         _bad(["--distributed", "--coordinator", "nohost"], "--coordinator", "HOST:PORT")),
    Case("sweep/process-id-range", "sweep", "`--distributed --num-processes 2 --process-id 2`",
         _bad(["--distributed", "--num-processes", "2", "--process-id", "2"], "--process-id", "0..1")),
    Case("sweep/env-num-processes", "sweep", "`--distributed` with JAX_NUM_PROCESSES=two",
         _bad(["--distributed"], "$JAX_NUM_PROCESSES", "integer", env={"JAX_NUM_PROCESSES": "two"})),
    Case("sweep/recipe-table-missing", "sweep", "`recipe table --out` a missing folder", recipe_missing),
    Case("sweep/recipe-table-empty", "sweep", "`recipe table --out` a folder without results", recipe_empty),
    Case("sweep/merge-nothing", "sweep", "`merge --out` a folder without shards", merge_nothing),
    Case("sweep/merge-foreign", "sweep", "`merge` of a shard of another sweep (other seed)", merge_foreign),
    Case("sweep/merge-into-finished", "sweep", "finished sweep in D, `--shard 0/2 --out D/shard-0-of-2`, "
         "`merge --out D`", merge_keeps_finished),
    Case("sweep/merge-conflict", "sweep", "`merge` of a shard whose numbers differ from D's", merge_conflict),
    Case("sweep/results-truncated", "sweep", "a truncated `results/<image>.json`, rerun",
         _rerun_rebuilds(_truncate_results, "rebuilt from its run folders")),
    Case("sweep/results-entry-broken", "sweep", "one encoding's entry of `results/<image>.json` broken, rerun",
         _rerun_rebuilds(_broken_entry, "rebuilt from its run folders")),
    Case("sweep/run-metadata-garbage", "sweep", "one encoding's run.json and summary.json garbage, rerun",
         _rerun_rebuilds(_run_metadata_garbage, "that encoding retrained, the image's other kept")),
    Case("sweep/run-summary-garbage", "sweep", "a run's summary.json truncated, rerun",
         _rerun_rebuilds(_summary_garbage, "resumed from its checkpoints")),
    Case("sweep/skipped-garbage", "sweep", "`skipped.json` garbage, rerun",
         _rerun_rebuilds(_skipped_garbage, "rewritten")),
    Case("sweep/manifest-garbage", "sweep", "`manifest.json` garbage, rerun", manifest_garbage),
    Case("sweep/other-settings", "sweep", "rerun into a finished folder with `--epochs 2`", other_settings),
    Case("sweep/rerun", "sweep", "rerun of a finished sweep", rerun_unchanged),
    Case("sweep/non-utf8-name", "sweep", "an image file name with byte 0xff (not UTF-8), then a rerun",
         non_utf8_name),
    Case("sweep/symlink-loop", "sweep", "a symlink loop `loop.png` in a synset folder", symlink_loop),
    Case("sweep/diverged", "sweep", "`--lr 1e30` (every run diverges)", diverged),
    Case("sweep/two-process-job", "sweep", "two local processes as one jax.distributed job, `--shard auto`, merge",
         two_process_job),
]
