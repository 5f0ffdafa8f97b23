"""Nothing finished is ever lost (issue 21): merging into a folder that already holds results,
corrupted results and run folders rebuilt on rerun, file names that are not UTF-8, a
report for diverged runs, a symlink loop in a synset folder. One tiny sweep (two 12 px
images, baseline and Fourier, one epoch) is trained once and copied for each case."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from experiments import imagenet_sweep
from ntkgrid import files, sweep

from ._sweep_cases import digests, psnrs, sweep_args, write_images


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``(argv without --out, finished sweep folder)``."""
    tmp = tmp_path_factory.mktemp("tiny")
    argv = sweep_args(tmp, write_images(tmp / "data"))
    out = tmp / "done"
    assert imagenet_sweep.main([*argv, "--out", str(out)]) == 0
    return argv, out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def test_non_utf8_file_name_is_written_safely(tiny):
    argv, out = tiny
    ids = [i["image_id"] for i in json.loads((out / "results.json").read_text())["images"]]
    assert ids == ["n000_im0", "n001_caf"]  # ids keep [A-Za-z0-9._-]
    report = (out / "report.md").read_bytes().decode("utf-8")  # valid UTF-8
    assert "caf\\xff.png" in report  # the undecodable byte shown as \xff
    for name in ("summary.md", "summary.csv", "training_curves.json", "results.json"):
        (out / name).read_bytes().decode("utf-8")
    # JSON keeps the exact path: os.fsencode gives the file's bytes back
    source = json.loads((out / "results" / "n001_caf.json").read_text())["source"]
    assert os.fsencode(source).endswith(b"/caf\xff.png") and Path(source).exists()


def test_rerun_of_a_finished_sweep_changes_no_result(tiny, tmp_path, capsys):
    argv, out = tiny
    again = _copy(out, tmp_path / "again")
    before = {k: v for k, v in digests(again).items() if k.startswith(("results/", "runs/"))}
    assert imagenet_sweep.main([*argv, "--out", str(again)]) == 0
    assert "done before, skipped" in capsys.readouterr().out
    after = {k: v for k, v in digests(again).items() if k.startswith(("results/", "runs/"))}
    assert after == before


def test_merge_into_a_finished_sweep_keeps_its_results(tiny, tmp_path):
    """The issue's case: a sweep finished in D, then shard 0/2 into D/shard-0-of-2, then merge --out D."""
    argv, out = tiny
    d = _copy(out, tmp_path / "D")
    before = {k: v for k, v in digests(d).items() if k.startswith(("results/", "runs/"))}
    assert imagenet_sweep.main([*argv, "--shard", "0/2", "--out", str(d / "shard-0-of-2")]) == 0
    assert imagenet_sweep.main(["merge", "--out", str(d)]) == 0
    after = digests(d)
    assert {k: after[k] for k in before} == before  # every result of D kept, byte for byte
    assert sorted(p.name for p in (d / "results").iterdir()) == ["n000_im0.json", "n001_caf.json"]
    assert psnrs(d / "results.json") == psnrs(out / "results.json")
    assert imagenet_sweep.main(["merge", "--out", str(d)]) == 0  # merging again changes nothing
    assert {k: digests(d)[k] for k in before} == before


def test_merge_conflicting_numbers_is_an_error_and_writes_nothing(tiny, tmp_path, capsys):
    _, out = tiny
    d = _copy(out, tmp_path / "D")
    shard = d / "shard-1-of-2"
    manifest = json.loads((d / "manifest.json").read_text())
    files.write_json(shard / "manifest.json", {**manifest, "shard": "1/2"})
    record = json.loads((d / "results" / "n001_caf.json").read_text())
    record["runs"]["baseline"]["psnr"] += 1.0
    files.write_json(shard / "results" / "n001_caf.json", record)
    before = digests(d)
    assert imagenet_sweep.main(["merge", "--out", str(d)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(d / "results" / "n001_caf.json") in err and str(shard / "results" / "n001_caf.json") in err
    assert digests(d) == before


def test_corrupt_results_and_run_folders_are_rebuilt(tiny, tmp_path, capsys):
    """A truncated results file, and an image whose Fourier run folder lost run.json and
    summary.json: the rerun rebuilds both images, retraining only that Fourier run."""
    argv, out = tiny
    d = _copy(out, tmp_path / "D")
    a, b = d / "results" / "n000_im0.json", d / "results" / "n001_caf.json"
    a.write_bytes(a.read_bytes()[:80])
    b.write_text('{"image_id": "n001_caf", "runs": {"baseline": 3}}')  # one encoding's entry broken
    for name in ("run.json", "summary.json"):
        (d / "runs" / "n001_caf" / "fourier" / name).write_text("garbage")
    kept = {k: v for k, v in digests(d).items() if k.startswith(("runs/n000_im0/", "runs/n001_caf/baseline/"))}
    # before the rerun the summary already names the damage instead of failing
    sweep.summarize(d, log=lambda m: None)
    assert "## Unreadable results" in (d / "report.md").read_text()
    assert imagenet_sweep.main([*argv, "--out", str(d)]) == 0
    logged = capsys.readouterr().out
    assert "rebuilding it from the run folders" in logged and "training fourier again" in logged
    assert psnrs(d / "results.json") == psnrs(out / "results.json")
    assert {k: v for k, v in digests(d).items() if k in kept} == kept  # intact runs untouched
    assert (d / "results" / "n000_im0.json.corrupt").exists() and (d / "runs" / "n001_caf" / "fourier.corrupt").is_dir()


def test_a_diverged_run_and_an_unreadable_config_still_get_a_report(tiny, tmp_path):
    _, out = tiny
    d = _copy(out, tmp_path / "D")
    path = d / "results" / "n000_im0.json"
    record = json.loads(path.read_text())
    record["runs"]["baseline"].update(psnr=None, ms_ssim=None, loss=None, seconds=None, diverged=True,
                                      diverged_epoch=1)
    files.write_json(path, record)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["configs"]["fourier"]["learning_rate"] = None  # as an infinite lr was written (strict JSON)
    files.write_json(d / "manifest.json", manifest)
    res = sweep.summarize(d, log=lambda m: None)
    report = (d / "report.md").read_text()
    assert "(diverged)" in report and "not a config this version reads" in report
    assert [r["n_diverged"] for r in res["rows"]] == [1, 0]


def test_a_symlink_loop_in_a_synset_folder_is_skipped_with_a_warning(tmp_path):
    root = write_images(tmp_path / "data", 2, non_utf8=False)
    (root / "n000" / "loop.png").symlink_to(root / "n000" / "loop.png")
    (root / "n001" / "a.png").symlink_to(root / "n001" / "b.png")
    (root / "n001" / "b.png").symlink_to(root / "n001" / "a.png")
    (root / "n001" / "im1.png").unlink()  # n001 holds only the loop
    sources, warns = sweep.select_sources(root, 5, 0)
    assert [s.source for s in sources] == [str(root / "n000" / "im0.png")]
    assert any(str(root / "n000" / "loop.png") in w and "symlink loop" in w for w in warns)
    assert any(str(root / "n001") in w and "no image files" in w for w in warns)
