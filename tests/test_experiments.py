"""The 2D experiments end to end on tiny settings (16 px, 2 epochs, 16 NTK points), plus what the
sweep does end to end: resume, shard + merge, bad input, config JSON. The sweep's and the analyses'
library pieces on their own: tests/test_sweep_*.py, tests/test_analysis.py."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from experiments import grid_ablation, imagenet_sweep, inspect_grid, ntk_evolution, recipe, scaling, tune
from ntkgrid import ablation, files, presets, sweep
from ntkgrid.config import TrainConfig

TINY = ["--size", "16", "--epochs", "2", "--ntk-points", "16", "--no-progress"]
# Two images in one program per encoding (ntkgrid.training.batched); a shard's single image trains alone, so
# test_shards_and_merge_equal_unsharded compares batched against one-at-a-time training.
SWEEP = ["--runs-per-program", "2", "--num-synsets", "2", "--encodings", "baseline", "multigrid", *TINY]


def _json(path: Path):
    return json.loads(Path(path).read_text())


def _is_png(path: Path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    assert imagenet_sweep.main([*SWEEP, "--out", str(out)]) == 0
    return out


# ----------------------------------------------------------------------------- imagenet_sweep


def test_sweep_outputs(sweep_dir):
    for name in ("summary.csv", "summary.md", "report.md", "results.json", "spectra.json", "manifest.json"):
        assert (sweep_dir / name).exists(), name
    assert _is_png(sweep_dir / "spectra.png")
    res = _json(sweep_dir / "results.json")
    assert len(res["images"]) == 2 and res["skipped"] == [] and res["failed"] == []
    for img in res["images"]:
        for enc in ("baseline", "multigrid"):
            run = img["runs"][enc]
            assert 5 < run["psnr"] < 80 and 0 <= run["ms_ssim"] <= 1 and not run["diverged"]
            assert run["checkpoints"] == {"start": None, "middle": 1, "end": 2}
            assert run["ntk_points"] == 16 and run["floor"] < run["lambda_max"]
            assert run["ntk_selection"] == "window"  # a contiguous 4x4 block of the 16 px image
            assert [c["epoch"] for c in run["curve"]] == [0, 1, 2] and run["curve"][-1]["psnr"] == pytest.approx(
                run["psnr"])
            assert (run["grid_offdiag_fraction"] is None) == (enc == "baseline")
    rows = {r["encoding"]: r for r in res["summary"]}
    for enc in ("baseline", "multigrid"):
        ps = [i["runs"][enc]["psnr"] for i in res["images"]]
        assert rows[enc]["psnr_mean"] == pytest.approx(np.mean(ps))
        assert rows[enc]["psnr_std"] == pytest.approx(np.std(ps))
        assert rows[enc]["psnr_min"] == min(ps) and rows[enc]["psnr_max"] == max(ps)
        assert rows[enc]["paper_psnr"] == presets.PAPER_PSNR["imagenet"][enc][0]
    spectra = _json(sweep_dir / "spectra.json")
    for enc in ("baseline", "multigrid"):
        # The quick preset takes spectra at the end only, of the total kernel (ntkgrid.presets, issue 24).
        assert spectra["means"][enc]["total"]["middle"] is None
        m = spectra["means"][enc]["total"]["end"]
        assert len(m["mean"]) == sweep.SPECTRUM_LENGTH and m["count"] == 2
        assert m["mean"][0] >= m["mean"][-1] and m["floor"] > 0
    report = (sweep_dir / "report.md").read_text()
    assert "![mean spectra](spectra.png)" in report and "Paper's ordering multigrid > baseline" in report
    assert "## Theorem 1" in report and "![ratio](theorem1_ratio.png)" in report
    assert _is_png(sweep_dir / "theorem1_ratio.png") and _is_png(sweep_dir / "training_curves.png")
    claims = _json(sweep_dir / "theorem1_ratio.json")
    comparisons = ("stated", "fan_in_matched", "own_no_grid")
    checkpoints = {p["checkpoint"] for p in claims["per_image"]}
    assert checkpoints == {"init", "end"}  # the quick preset records spectra at the end only
    assert {(p["name"], p["comparison"], p["checkpoint"]) for p in claims["per_image"]} == {
        ("multigrid", c, cp) for c in comparisons for cp in checkpoints}
    assert len(claims["per_image"]) == 2 * len(checkpoints) * 3  # images x checkpoints x comparisons
    assert all(p["verdict"] in ("holds", "does not hold") for p in claims["per_image"])
    assert all(p["holds"] for p in claims["per_image"] if p["comparison"] == "own_no_grid")  # by construction
    assert {c["checkpoint"] for c in claims["cause"]} == checkpoints
    assert all(len(c["top_fan_in_matched"]) == 3 and c["grid_lambda_max"] > 0 for c in claims["cause"])
    assert "fan-in-matched (positive control)" in report and "The cause in numbers" in report
    assert (sweep_dir / "theorem1_kernels").is_dir()
    assert all(i["image_id"] in report for i in res["images"])
    assert "| multigrid | 2 | 0 |" in (sweep_dir / "summary.md").read_text()
    csv = (sweep_dir / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("encoding,n,n_diverged,psnr_mean") and len(csv) == 3


def test_sweep_resume_skips_finished_images(sweep_dir, capsys):
    before = {p: p.stat().st_mtime_ns for p in (sweep_dir / "results").glob("*.json")}
    runs_before = {p: p.stat().st_mtime_ns for p in (sweep_dir / "runs").rglob("summary.json")}
    assert imagenet_sweep.main([*SWEEP, "--out", str(sweep_dir)]) == 0
    assert "done before, skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert {p: p.stat().st_mtime_ns for p in runs_before} == runs_before


def test_sweep_refuses_other_settings_in_same_folder(sweep_dir, capsys):
    n = len(list(sweep_dir.rglob("*")))
    assert imagenet_sweep.main([*SWEEP[:-7], "--size", "16", "--epochs", "3", "--ntk-points", "16",
                                "--no-progress", "--out", str(sweep_dir)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and "epochs" in err and "Traceback" not in err
    assert len(list(sweep_dir.rglob("*"))) == n  # nothing removed or added


def test_shards_and_merge_equal_unsharded(sweep_dir, tmp_path):
    root = tmp_path / "sharded"
    for i in range(2):
        assert imagenet_sweep.main([*SWEEP, "--shard", f"{i}/2", "--out", str(root / f"shard-{i}-of-2")]) == 0
        assert len(list((root / f"shard-{i}-of-2" / "results").glob("*.json"))) == 1
    assert imagenet_sweep.main(["merge", "--out", str(root)]) == 0
    a, b = _json(root / "results.json"), _json(sweep_dir / "results.json")
    assert [i["image_id"] for i in a["images"]] == [i["image_id"] for i in b["images"]]
    for ia, ib in zip(a["images"], b["images"]):
        for enc in ("baseline", "multigrid"):
            for key in ("psnr", "ms_ssim", "loss", "lambda_min", "lambda_max"):
                assert ia["runs"][enc][key] == pytest.approx(ib["runs"][enc][key], rel=1e-6), key
    for ra, rb in zip(a["summary"], b["summary"]):
        for key in ("psnr_mean", "psnr_std", "ms_ssim_mean", "n"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-6)
    sa, sb = _json(root / "spectra.json"), _json(sweep_dir / "spectra.json")
    np.testing.assert_allclose(sa["means"]["multigrid"]["total"]["end"]["mean"],
                               sb["means"]["multigrid"]["total"]["end"]["mean"], rtol=1e-6)
    assert "merged from 2 folders" in (root / "report.md").read_text()


def test_merge_rejects_foreign_shards(sweep_dir, tmp_path, capsys):
    other = tmp_path / "other"  # a shard of another sweep: another seed
    manifest = _json(sweep_dir / "manifest.json")
    files.write_json(other / "manifest.json", {**manifest, "seed": manifest["seed"] + 1})
    assert imagenet_sweep.main(["merge", "--out", str(tmp_path / "m"), str(sweep_dir), str(other)]) == 2
    err = capsys.readouterr().err
    assert "only shards of one sweep can be merged" in err and "Traceback" not in err
    assert imagenet_sweep.main(["merge", "--out", str(tmp_path / "empty")]) == 2
    assert "no shard folders" in capsys.readouterr().err


def _imagenet_tree(root: Path) -> dict[str, str]:
    """One file per synset, so the draw is forced; returns {synset: what it holds}."""
    rng = np.random.default_rng(0)
    kinds = {}

    def put(syn, name, kind):
        (root / syn).mkdir(parents=True)
        kinds[syn] = kind
        return root / syn / name

    Image.fromarray((rng.random((24, 30, 3)) * 255).astype(np.uint8)).save(put("n001", "ok.jpg", "rgb"))
    buf = root / "full.jpg"
    Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(buf, quality=95)
    put("n002", "cut.jpg", "truncated").write_bytes(buf.read_bytes()[:300])
    buf.unlink()
    put("n003", "notes.jpg", "text").write_text("this is not an image\n")
    Image.fromarray((rng.random((20, 20)) * 255).astype(np.uint8), "L").save(put("n004", "grey.png", "grey"))
    Image.fromarray((rng.random((20, 20, 4)) * 255).astype(np.uint8), "RGBA").save(put("n005", "alpha.png", "rgba"))
    Image.fromarray((rng.random((20, 20)) * 65535).astype(np.uint16)).save(put("n006", "deep.png", "16bit"))
    Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(put("n007", "tiny.png", "small"))
    (root / "n008").mkdir()  # no images: skipped while choosing, with a warning
    return kinds


def test_bad_input_files_are_skipped_and_reported(tmp_path, capsys):
    root = tmp_path / "imagenet"
    _imagenet_tree(root)
    out = tmp_path / "out"
    code = imagenet_sweep.main(["--data-root", str(root), "--preset", "quick", "--encodings", "baseline",
                                "--size", "16", "--epochs", "1", "--ntk-points", "0", "--no-progress",
                                "--out", str(out)])
    cap = capsys.readouterr()
    assert code == 1 and "Traceback" not in cap.err
    assert "n008" in cap.err  # the empty synset folder is warned about
    res = _json(out / "results.json")
    assert sorted(i["synset"] for i in res["images"]) == ["n001", "n004", "n005", "n006"]
    reasons = {s["synset"]: s["reason"] for s in res["skipped"]}
    assert sorted(reasons) == ["n002", "n003", "n007"]
    for syn, reason in reasons.items():
        assert str(root / syn) in reason
    assert "smaller than the requested 16x16" in reasons["n007"]
    report = (out / "report.md").read_text()
    assert "## Skipped files" in report and "cut.jpg" in report and "notes.jpg" in report and "tiny.png" in report
    for i in res["images"]:
        assert np.isfinite(i["runs"]["baseline"]["psnr"]) and i["size"] == [16, 16]


def test_a_failing_run_is_reported_and_the_rest_kept(tmp_path, capsys):
    (src, other), _ = sweep.select_sources(None, 2, 0)
    out = tmp_path / "o"
    stale = out / "runs" / src.image_id / "baseline"
    stale.mkdir(parents=True)
    files.write_json(stale / "run.json", {"config": {"learning_rate": 123.0}, "options": {}})
    assert imagenet_sweep.main(["--num-synsets", "2", "--encodings", "baseline", *TINY, "--runs-per-program", "2",
                                "--out", str(out)]) == 1
    assert "2 image(s) in 1 program(s)" in capsys.readouterr().out  # one group, one image of it fails
    (failed,) = _json(out / "failed.json")
    assert failed["image_id"] == src.image_id and "run.json" in failed["errors"]["baseline"]
    assert [i["image_id"] for i in _json(out / "results.json")["images"]] == [other.image_id]
    assert "## Failed runs" in (out / "report.md").read_text()
    assert (stale / "run.json").exists()  # the foreign run is left alone


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_unusable_data_root_is_a_clear_error(tmp_path, capsys, make):
    root = tmp_path / "root"
    if make == "empty":
        root.mkdir()
    elif make == "file":
        root.write_text("x")
    code = imagenet_sweep.main(["--data-root", str(root), *TINY, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and str(root) in err and err.startswith("error:") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,needle", [
    (["--shard", "3/2"], "shard index"),
    (["--runs-per-program", "0"], "--runs-per-program must be"),
    (["--size", "4"], "--size must be >= 11"),
    (["--size", "16", "--ntk-points", "300"], "--ntk-points 300 exceeds the 16x16 = 256 pixels"),
    (["--config-json", "multigrid"], "NAME=PATH"),
    (["--config-json", "hashgrid=x.json"], "unknown name"),
    (["--config-json", "multigrid=/nonexistent/best.json"], "/nonexistent/best.json"),
    (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
    (["--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--theorem-seeds", "0"], "--theorem-seeds must be >= 1, got 0"),
    (["--shard", "a/b"], "shard spec must look like 'i/n' (e.g. '0/4'), got 'a/b'"),
    (["--num-processes", "2"], "need --distributed"),
    (["--distributed", "--coordinator", "nohost"], "--coordinator must be HOST:PORT"),
    (["--distributed", "--num-processes", "2", "--process-id", "2"], "--process-id / $JAX_PROCESS_ID must be in 0..1"),
])
def test_bad_arguments(tmp_path, capsys, argv, needle):
    assert imagenet_sweep.main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_config_json_of_another_kind_is_refused(tmp_path, capsys):
    """A Fourier config given as the multigrid would be trained and reported as the multigrid."""
    path = files.write_json(tmp_path / "ff.json", presets.IMAGENET_QUICK["fourier"].to_dict())
    assert imagenet_sweep.main(["--config-json", f"multigrid={path}", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"multigrid={path}" in err and "'fourier'" in err and "'multigrid'" in err
    inf = tmp_path / "inf.json"
    inf.write_text(json.dumps({**presets.IMAGENET_QUICK["fourier"].to_dict(), "learning_rate": float("inf")}))
    assert imagenet_sweep.main(["--config-json", f"fourier={inf}", "--out", str(tmp_path / "o")]) == 2
    assert "learning_rate must be finite" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_out_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    assert imagenet_sweep.main(["--num-synsets", "1", *TINY, "--out", str(afile)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --out {afile}: exists and is not a folder\n" and afile.read_text() == "keep me\n"
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: emulate a read-only filesystem
        def refuse(self, data):
            raise OSError(errno.EROFS, "Read-only file system", str(self))

        monkeypatch.setattr(Path, "write_bytes", refuse)
    else:
        ro.chmod(0o555)
    try:
        assert imagenet_sweep.main(["--num-synsets", "1", *TINY, "--out", str(ro / "out")]) == 2
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {ro / 'out'}: cannot be written (") and err.count("\n") == 1


def test_distributed_settings_from_options_then_environment():
    import argparse

    def ns(**kw):
        return argparse.Namespace(**{"coordinator": None, "num_processes": None, "process_id": None, **kw})

    env = {"JAX_COORDINATOR_ADDRESS": "node0:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert imagenet_sweep.distributed_settings(ns(), env) == {
        "coordinator_address": "node0:1234", "num_processes": 4, "process_id": 3}
    assert imagenet_sweep.distributed_settings(ns(coordinator="h:9", num_processes=2, process_id=0), env) == {
        "coordinator_address": "h:9", "num_processes": 2, "process_id": 0}
    assert imagenet_sweep.distributed_settings(ns(), {}) == {}  # JAX's cluster detection (SLURM, MPI, k8s)
    with pytest.raises(ValueError, match=r"\$JAX_NUM_PROCESSES must be an integer, got 'four'"):
        imagenet_sweep.distributed_settings(ns(), {"JAX_NUM_PROCESSES": "four"})


def test_config_json_replaces_a_preset(tmp_path):
    cfg = presets.IMAGENET_QUICK["baseline"].replace(learning_rate=7.5, hidden=(64, 64))
    path = files.write_json(tmp_path / "best.json", cfg.to_dict())
    out = tmp_path / "o"
    assert imagenet_sweep.main(["--num-synsets", "1", "--encodings", "baseline", *TINY, "--ntk-points", "0",
                                "--config-json", f"baseline={path}", "--out", str(out)]) == 0
    used = TrainConfig.from_dict(_json(out / "manifest.json")["configs"]["baseline"])
    assert used.learning_rate == 7.5 and used.hidden == (64, 64) and used.epochs == 2 and used.ntk_points == 0
    bad = tmp_path / "bad.json"
    bad.write_text('{"encoding": {"kind": "nope"}}')
    with pytest.raises(ValueError, match=str(bad)):
        sweep.load_config_json(f"baseline={bad}", ["baseline"])


# ----------------------------------------------------------------------------- single-image experiments
# (the studies themselves: tests/test_studies_scaling.py)


def test_scaling_cli_prints_the_table_and_the_report(tmp_path, capsys):
    out = tmp_path / "o"
    assert scaling.main(["--configs", "baseline", *TINY, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert (out / "table.md").read_text() in text and f"report: {out / 'report.md'}" in text


def test_missing_image_is_a_clear_error(tmp_path, capsys):
    assert scaling.main(["--image", "no_such_photo", *TINY, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no_such_photo" in err and "bundled photos" in err and "Traceback" not in err
    assert scaling.main(["--image", str(tmp_path / "x.png"), *TINY, "--out", str(tmp_path / "o")]) == 2
    assert "x.png" in capsys.readouterr().err


def test_sweep_init_kernels_are_computed_once_per_configuration(sweep_dir):
    """The NTK at initialisation depends on the configuration, the output width and the
    points, not on the image: the report computes it once for both 16 px images
    (``theorem1_kernels/_init``), and a fresh per-image computation gives the same spectra."""
    from ntkgrid import evidence

    cache = sweep_dir / "theorem1_kernels"
    shared = sorted(f"{p.parent.name}/{p.name.split('_', 1)[1]}" for p in (cache / "_init").rglob("*.npz"))
    assert shared == ["baseline/groups.npz", "multigrid/fan_in_matched.npz", "multigrid/groups.npz"]
    assert not [p for p in cache.rglob("init_*.npz")]  # no per-image copy
    data = sweep.load_sweep(sweep_dir)
    configs = data["manifest"]["configs"]
    claims = _json(sweep_dir / "theorem1_ratio.json")
    init = {c["image_id"]: c for c in claims["cause"] if c["checkpoint"] == "init"}
    assert len(init) == 2
    for rec in data["records"]:
        fresh = evidence.theorem1([rec], configs, cache_dir=None)  # no cache: recomputed for this image alone
        (row,) = [c for c in fresh["cause"] if c["checkpoint"] == "init"]
        for key in ("top_baseline", "top_fan_in_matched", "top_mpe", "top_no_grid", "grid_lambda_max"):
            np.testing.assert_allclose(row[key], init[rec.image_id][key], rtol=1e-12, err_msg=key)


def test_theorem1_init_on_the_kernels_averaged_over_seeds(sweep_dir):
    """``init_seeds=2`` (``--theorem-seeds 2``): the init spectra are those of the mean of the
    two initialisations' kernels, here recomputed with the jacobian contraction in float64."""
    import jax
    import jax.numpy as jnp

    from ntkgrid import evidence
    from ntkgrid.models import build_model
    from ntkgrid.ntk import empirical_ntk
    from ntkgrid.training.runfolder import ntk_points_path

    data = sweep.load_sweep(sweep_dir)
    configs = data["manifest"]["configs"]
    rec = data["records"][0]
    res = evidence.theorem1([rec], configs, cache_dir=None, init_seeds=2)
    (row,) = [c for c in res["cause"] if c["checkpoint"] == "init"]
    assert res["init_seeds"] == 2 and "mean over 2 initialisations" in "\n".join(evidence.theorem1_markdown(res))
    cfg = TrainConfig.from_dict(configs["baseline"])
    x = np.load(ntk_points_path(rec.runs["baseline"].run_path))
    model = build_model(cfg, x.shape[1], 3)
    kernels = []
    for seed in (cfg.seed, cfg.seed + 1):  # as training initialises (ntkgrid.training.fit)
        variables = model.init(jax.random.split(jax.random.PRNGKey(seed))[0], jnp.asarray(x[:1], jnp.float32))
        with jax.enable_x64(True):
            v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
            kernels.append(np.asarray(empirical_ntk(model.clone(param_dtype=jnp.float64), v64,
                                                    jnp.asarray(x, jnp.float64), method="jacobian")))
    top = np.linalg.eigvalsh(0.5 * (kernels[0] + kernels[1]))[::-1][:3]
    np.testing.assert_allclose(row["top_baseline"], top, rtol=1e-9)
    one = evidence.theorem1([rec], configs, cache_dir=None)
    (single,) = [c for c in one["cause"] if c["checkpoint"] == "init"]
    assert not np.allclose(single["top_baseline"], top, rtol=1e-6)  # the average is not one seed's kernel


@pytest.mark.parametrize("module", [scaling, ntk_evolution, inspect_grid], ids=lambda m: m.__name__.split(".")[-1])
def test_every_run_failed_exits_1_naming_the_errors(module, monkeypatch, tmp_path, capsys):
    from ntkgrid.studies import image_runs

    monkeypatch.setattr(image_runs, "run_configs", lambda *a, **k: ({}, {"baseline": "lr too large"}))
    assert module.main(["--configs", "baseline", *TINY, "--out", str(tmp_path / "o")]) == 1
    assert "error: every run failed: baseline: lr too large" in capsys.readouterr().err


# ----------------------------------------------------------------------------- grid ablation, tune


def test_grid_ablation_on_a_sweep(sweep_dir, tmp_path):
    out = tmp_path / "abl"
    assert grid_ablation.main(["--sweep-dir", str(sweep_dir), "--out", str(out)]) == 0
    assert _is_png(out / "ablation.png") and _is_png(out / "levels.png")
    th = _json(out / "theorem.json")
    for cp in ("middle", "end"):
        s = th["summary"][cp]
        assert s["images"] == 2 and s["weyl_holds"] == 2 and s["lambda_min_grid_median"] > 0
        assert s["ntk_points"] == [16] and 0 <= s["grid_offdiag_fraction_mean"] < 1
        for key in ("total", "no_grid"):
            t = s[f"theorem1_{key}"]
            if cp == "middle":  # the quick preset's baseline has no middle spectra: nothing to compare with
                assert t["images_compared"] == 0
                continue
            assert t["images_compared"] == 2 and 0 <= t["fraction_mean"] <= 1
            assert t["on_mean"]["verdict"] in ("holds", "does not hold")
    comp = th["comparisons"]
    verdicts = {(r["comparison"], r["checkpoint"]): r["verdict"] for r in comp["on_mean"]}
    assert set(verdicts) == {(c, cp) for c in ("stated", "fan_in_matched", "own_no_grid")
                             for cp in ("init", "middle", "end")}
    assert verdicts[("own_no_grid", "end")] == "holds"
    # The control is built to fail, and the report says so.
    assert th["control"][0]["verdict"] == "does not hold" and th["control"][0]["scale"] == ablation.CONTROL_SCALE
    report = (out / "report.md").read_text()
    assert "verdict **does not hold**" in report and _is_png(out / "theorem1_ratio.png")
    groups = _json(out / "levels.json")["groups"]
    assert {"total", "no_grid", "grid", "mlp", "encoding/level_0", "encoding/level_1"} <= set(groups)
    assert "Theorem 1" in report and "fan-in-matched (positive control)" in report


def test_tune_without_optuna_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # makes `import optuna` raise ImportError
    assert tune.main(["--trials", "1", *TINY, "--out", str(tmp_path)]) == 2
    assert "pip install 'ntkgrid[tune]'" in capsys.readouterr().err


def test_tune_writes_a_config_the_sweep_loads(tmp_path):
    pytest.importorskip("optuna")
    out = tmp_path / "tune"
    assert tune.main(["--encoding", "fourier", "--trials", "2", *TINY, "--out", str(out)]) == 0
    best = TrainConfig.from_dict(_json(out / "best_fourier.json"))
    assert best.encoding.kind == "fourier" and 2 <= best.encoding.num_frequencies <= 12
    assert len(_json(out / "trials_fourier.json")["trials"]) == 2
    assert tune.main(["--encoding", "fourier", "--trials", "3", *TINY, "--out", str(out)]) == 0  # continues
    assert len(_json(out / "trials_fourier.json")["trials"]) == 3
    name, cfg = sweep.load_config_json(f"fourier={out / 'best_fourier.json'}", ["fourier"])
    assert cfg == TrainConfig.from_dict(_json(out / "best_fourier.json"))


# ----------------------------------------------------------------------------- recipe


def test_recipe_screen_predicts_and_observes_and_tabulates(tmp_path, capsys):
    """experiments.recipe on a 16 px image: the init-NTK prediction (lr < lr_crit) and the
    observed outcome are recorded per row, and the table has the reading's row."""
    out = tmp_path / "recipe"
    assert recipe.main(["screen", "--readings", "literal", "--configs3", "baseline", "--configs2", "baseline",
                        "--size", "16", "--screen-epochs", "1", "--out", str(out)]) == 0
    rows = _json(out / "screen.json")["literal"]
    assert set(rows) == {"3/baseline", "2/baseline"}
    for r in rows.values():
        assert r["predicted_stable"] == (r["lr"] < r["lr_crit"]) and len(r["lambda_max"]) == 4
    assert not rows["3/baseline"]["predicted_stable"] and rows["2/baseline"]["predicted_stable"]
    capsys.readouterr()
    assert recipe.main(["table", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| literal | " in text and "predicted stable (lr < lr_crit): 1 runs" in text


# ----------------------------------------------------------------------------- --lr critical:F


def test_lr_rule_parses_on_scaling_and_sweep_and_bad_values_exit_2(capsys):
    from ntkgrid.config import LrRule

    assert scaling.build_parser().parse_args(["--lr", "critical:0.5"]).lr == LrRule(0.5)
    assert imagenet_sweep.build_parser().parse_args(["--lr", "critical:0.25"]).lr == LrRule(0.25)
    assert scaling.build_parser().parse_args(["--lr", "7"]).lr == 7.0
    for bad in ("critical:x", "critical:0", "fast"):
        with pytest.raises(SystemExit) as err:
            scaling.main(["--lr", bad])
        assert err.value.code == 2
        assert "--lr" in capsys.readouterr().err
    assert scaling.main(["--lr", "-2"]) == 2  # a number: checked like a plain --lr
    assert capsys.readouterr().err == "error: --lr must be a finite number > 0, got -2.0\n"


def test_apply_lr_rule_applies_critical_f_and_leaves_a_number_to_the_overrides(monkeypatch):
    import argparse

    from experiments._cli import apply_lr_rule, overrides
    from ntkgrid import stability
    from ntkgrid.config import LrRule

    cfgs = {n: presets.SCALING_QUICK[n] for n in ("baseline", "multigrid_coarse")}
    args = argparse.Namespace(lr=LrRule(0.5), epochs=None, batch_size=None, ntk_points=None, seed=0)
    assert overrides(args)["learning_rate"] is None  # the rule is not a step
    calls = []
    monkeypatch.setattr(stability, "with_critical_lrs", lambda c, f, im, log=None: calls.append((c, f, im)) or "set")
    assert apply_lr_rule(cfgs, args, "image") == "set" and calls == [(cfgs, 0.5, "image")]
    args.lr = 3.0  # a number: already in the configs through overrides(args)
    assert overrides(args)["learning_rate"] == 3.0 and apply_lr_rule(cfgs, args, "image") == cfgs and len(calls) == 1


def test_recipe_table_of_a_missing_or_empty_folder_is_an_error(tmp_path, capsys):
    assert recipe.main(["table", "--out", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path / 'missing'}: no such folder\n"
    assert recipe.main(["table", "--out", str(tmp_path)]) == 2
    assert "holds neither screen.json nor train.json" in capsys.readouterr().err


def test_ntk_evolution_without_ntk_points_is_one_line(tmp_path, capsys):
    assert ntk_evolution.main(["--ntk-points", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --ntk-points 0 means no kernels") and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_bench_sweep_with_no_images_is_one_line(capsys):
    from benchmarks import bench_sweep

    assert bench_sweep.main(["--images", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --images must be >= 1, got 0"
