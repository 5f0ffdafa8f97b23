"""ntkgrid.sweep.records: the typed per-image results file. The writer gives the bytes the
sweep wrote before the records were typed (the old dict writer is kept here as the
reference), the reader reads them back (and old files that lack newer keys), and a file
that is not an image's results is refused with the file named. No training."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from ntkgrid import files
from ntkgrid.config import TrainConfig
from ntkgrid.spectrum import Spectrum
from ntkgrid.sweep import load_sweep
from ntkgrid.sweep.records import ImageRecord, RunRecord, middle_and_end, read_image_record

CFG = TrainConfig(hidden=(16,), epochs=4, batch_size=16)


def _result(psnr=20.0, spectrum=True, diverged=False):
    spec = Spectrum(np.array([3.0, 1.0, 0.5]), 1e-12, 3, 0) if spectrum else None
    history = [{"epoch": 0, "psnr": 5.0, "grid_offdiag_fraction": 0.5}, {"epoch": 2, "psnr": 12.0},
               {"epoch": 4, "psnr": psnr, "grid_offdiag_fraction": np.float64(0.25)}]
    return SimpleNamespace(
        label="[1/2] img baseline", config=CFG, losses=np.ones(3 if diverged else 4), diverged=diverged,
        diverged_epoch=3 if diverged else None, seconds=np.float64(1.5), history=history,
        options={"ntk_selection": "window"},
        final={"epoch": 4, "psnr": np.float32(psnr), "ms_ssim": 0.5, "ms_ssim_scales": 2, "loss": 0.01,
               "spectrum": spec, "grid_offdiag_fraction": history[-1]["grid_offdiag_fraction"]},
        curve=[{"epoch": 1, "loss": 0.1, "psnr": 10.0, "accuracy": None, "train_loss": 0.2},
               {"epoch": 4, "loss": float("nan"), "psnr": None, "accuracy": None, "train_loss": 0.1}])


def _old_run_record(result, run_dir: str) -> dict:
    """The sweep's writer before the records were typed (ntkgrid.sweep.runner.run_record), verbatim."""
    final = result.final
    spec = final.get("spectrum")
    return {
        "run_dir": run_dir,
        "label": result.label,
        "psnr": final.get("psnr"),
        "ms_ssim": final.get("ms_ssim"),
        "ms_ssim_scales": final.get("ms_ssim_scales"),
        "loss": final.get("loss"),
        "final_epoch": final.get("epoch"),
        "epochs_run": int(result.losses.size),
        "diverged": bool(result.diverged),
        "diverged_epoch": result.diverged_epoch,
        "seconds": float(result.seconds),
        "checkpoints": middle_and_end(result.history, result.config.epochs),
        "psnr_history": {int(h["epoch"]): h.get("psnr") for h in result.history},
        "lambda_max": None if spec is None else spec.lambda_max,
        "lambda_min": None if spec is None else spec.lambda_min,
        "floor": None if spec is None else spec.floor,
        "n_above_floor": None if spec is None else spec.n_above_floor,
        "ntk_points": None if spec is None else int(spec.eigenvalues.size),
        "ntk_selection": result.options.get("ntk_selection"),
        "grid_offdiag_fraction": final.get("grid_offdiag_fraction"),
        "grid_offdiag_history": {int(h["epoch"]): h.get("grid_offdiag_fraction") for h in result.history},
        "curve": [{k: c.get(k) for k in ("epoch", "loss", "psnr")} for c in result.curve],
    }


def _old_image_record(runs: dict) -> dict:
    """The per-image dict the sweep wrote before (ntkgrid.sweep.runner._write_results)."""
    return {"format": 1, "image_id": "img", "source": "/data/n01/img.png", "synset": "n01", "size": [12, 12],
            "runs": runs}


def _typed(results: dict) -> ImageRecord:
    return ImageRecord("img", "/data/n01/img.png", "n01", (12, 12),
                       {n: RunRecord.from_result(r, f"runs/img/{n}") for n, r in results.items()})


RESULTS = {"baseline": _result(21.5), "fourier": _result(18.0, spectrum=False, diverged=True)}


@pytest.mark.parametrize("name", ["baseline", "fourier"])
def test_from_result_reads_the_run(name):
    run = RunRecord.from_result(RESULTS[name], f"runs/img/{name}")
    assert run.run_dir == f"runs/img/{name}" and run.label == "[1/2] img baseline" and run.run_path is None
    assert run.checkpoints == {"start": 0, "middle": 2, "end": 4}
    assert run.psnr_history == {0: 5.0, 2: 12.0, 4: RESULTS[name].final["psnr"]}
    assert run.grid_offdiag_history == {0: 0.5, 2: None, 4: 0.25}
    assert run.curve == ({"epoch": 1, "loss": 0.1, "psnr": 10.0}, {"epoch": 4, "loss": run.curve[1]["loss"],
                                                                  "psnr": None})  # only the sweep's keys
    if name == "baseline":
        assert (run.lambda_max, run.lambda_min, run.n_above_floor, run.ntk_points) == (3.0, 0.5, 3, 3)
        assert (run.epochs_run, run.diverged, run.diverged_epoch) == (4, False, None)
    else:
        assert (run.lambda_max, run.floor, run.ntk_points) == (None, None, None)
        assert (run.epochs_run, run.diverged, run.diverged_epoch) == (3, True, 3)


def test_the_writer_writes_the_bytes_of_the_old_dict_writer(tmp_path):
    old = files.write_json(tmp_path / "old.json",
                           _old_image_record({n: _old_run_record(r, f"runs/img/{n}") for n, r in RESULTS.items()}))
    new = files.write_json(tmp_path / "new.json", _typed(RESULTS).to_json())
    assert new.read_bytes() == old.read_bytes()
    # the keys of a run, in the order written: the fields, run_path left out
    assert list(json.loads(new.read_text())["runs"]["baseline"]) == [
        f.name for f in dataclasses.fields(RunRecord) if f.name != "run_path"]


def test_read_then_written_again_is_byte_identical(tmp_path):
    path = files.write_json(tmp_path / "img.json", _typed(RESULTS).to_json())
    rec, reason = read_image_record(path)
    assert reason is None
    base = rec.runs["baseline"]
    assert base.psnr_history == {0: 5.0, 2: 12.0, 4: 21.5}  # JSON's string keys back to epochs
    assert base.curve[1] == {"epoch": 4, "loss": None, "psnr": None}  # non-finite written as null
    assert rec.size == (12, 12) and rec.runs["fourier"].diverged is True
    again = files.write_json(tmp_path / "again.json", rec.to_json())
    assert again.read_bytes() == path.read_bytes()


def test_an_old_file_without_the_newer_keys_loads(tmp_path):
    """A run entry as early sweeps wrote it (no label, curve, histories, ntk_selection, ...)
    and with a key this version does not know."""
    old_run = {"run_dir": "runs/img/baseline", "psnr": 20.0, "ms_ssim": 0.9, "loss": 0.01, "diverged": False,
               "seconds": 3, "checkpoints": {"middle": 5, "end": 10}, "lambda_max": 2.0, "lambda_min": 1e-9,
               "retired_key": [1, 2]}
    path = files.write_json(tmp_path / "img.json", {**_old_image_record({"baseline": old_run}), "format": 1})
    rec, reason = read_image_record(path)
    assert reason is None
    run = rec.runs["baseline"]
    assert (run.psnr, run.seconds, run.checkpoints["end"], run.lambda_max) == (20.0, 3, 10, 2.0)
    assert (run.label, run.curve, run.psnr_history, run.grid_offdiag_history, run.ntk_selection) == (
        None, (), {}, {}, None)
    assert not hasattr(run, "retired_key")
    bare = RunRecord.from_json({"run_dir": "x"})  # only the folder: everything else its default
    assert bare == RunRecord("x") and bare.diverged is False and bare.checkpoints.get("end") is None
    written = rec.to_json()["runs"]["baseline"]  # written back: this version's keys, the old values kept
    assert "retired_key" not in written and written["psnr"] == 20.0 and written["curve"] == []


@pytest.mark.parametrize(("content", "problem"), [
    ("{not json", "img.json"),
    ('{"image_id": "other", "runs": {}}', "not the results of image img"),
    ('{"image_id": "img", "runs": []}', "not the results of image img"),
    ('{"image_id": "img", "runs": {"baseline": 3}}', "the entry of 'baseline' is not a run's results"),
    ('{"image_id": "img", "runs": {"baseline": {"psnr": 20.0}}}', "the entry of 'baseline' is not a run's results"),
    ('{"image_id": "img", "runs": {"baseline": {"run_dir": "r", "psnr": "20"}}}',
     "the entry of 'baseline' is not a run's results"),
])
def test_a_file_that_is_not_an_images_results_is_refused_naming_it(tmp_path, content, problem):
    path = tmp_path / "img.json"
    path.write_text(content)
    rec, reason = read_image_record(path)
    assert rec is None and str(path) in reason and problem in reason


def test_from_json_refuses_what_is_not_a_record():
    with pytest.raises(ValueError, match="not a run's results"):
        RunRecord.from_json([1, 2])
    with pytest.raises(ValueError, match="not an image's results"):
        ImageRecord.from_json({"image_id": "img"})
    with pytest.raises(ValueError, match="the entry of 'b' is not a run's results"):
        ImageRecord.from_json({"image_id": "img", "runs": {"b": {"run_dir": 1}}})


def test_load_sweep_gives_records_with_absolute_run_paths(tmp_path):
    out = tmp_path / "sweep"
    files.write_json(out / "manifest.json", {"selection": [{"image_id": "b"}, {"image_id": "img"}]})
    files.write_json(out / "results" / "img.json", _typed(RESULTS).to_json())
    (out / "results" / "a.json").write_text("garbage")
    data = load_sweep(out)
    (rec,) = data["records"]
    assert isinstance(rec, ImageRecord) and data["missing"] == ["b"] and data["corrupt"][0]["image_id"] == "a"
    assert rec.runs["baseline"].run_path == str((out / "runs" / "img" / "baseline").resolve())
    listed = rec.to_json(with_paths=True)["runs"]["baseline"]  # as results.json lists it: the file's keys + run_path
    on_disk = json.loads((out / "results" / "img.json").read_text())["runs"]["baseline"]
    assert list(listed) == [*on_disk, "run_path"]
