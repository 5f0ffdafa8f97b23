"""Tests for ntkgrid.training.runfolder: resume after an interruption, refusing another run, old run.json files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ntkgrid.config import FourierConfig
from ntkgrid.training import fit, load_run

from ._training_cases import SMALL, Interrupt, astronaut, interrupt_at, tree_equal


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    x, y = astronaut(16)
    cfg = SMALL.replace(encoding=FourierConfig(num_frequencies=4), epochs=4, checkpoints=(0, 2, 4))
    ref = fit(cfg, x, y, eval_fn=interrupt_at(0, []))

    calls: list = []
    with pytest.raises(Interrupt):  # killed while measuring epoch 4: checkpoints 0 and 2 are on disk
        fit(cfg, x, y, out_dir=tmp_path, eval_fn=interrupt_at(3, calls))
    assert not (tmp_path / "summary.json").exists()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    partial = load_run(tmp_path)
    assert not partial.complete and partial.params_epoch == 2 and partial.losses.shape == (2,)

    calls.clear()
    r = fit(cfg, x, y, out_dir=tmp_path, eval_fn=interrupt_at(0, calls))
    assert len(calls) == 1  # resumed at epoch 2: only epoch 4 was measured
    np.testing.assert_array_equal(r.losses, ref.losses)
    assert tree_equal(r.params, ref.params)
    assert [(h["epoch"], h["loss"], h["mean_output"]) for h in r.history] == \
        [(h["epoch"], h["loss"], h["mean_output"]) for h in ref.history]

    calls.clear()
    (tmp_path / "summary.json").unlink()  # lost summary: resumes at epoch 4, trains nothing
    r2 = fit(cfg, x, y, out_dir=tmp_path, eval_fn=interrupt_at(0, calls))
    assert calls == [] and (tmp_path / "summary.json").exists()
    np.testing.assert_array_equal(r2.losses, ref.losses)
    assert [h["loss"] for h in r2.history] == [h["loss"] for h in ref.history]

    with pytest.raises(ValueError, match=r"different run.*learning_rate"):
        fit(cfg.replace(learning_rate=5.0), x, y, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"different run.*data_hash"):
        fit(cfg, x, 1.0 - y, out_dir=tmp_path)


def test_run_json_written_before_the_reading_fields_loads_and_resumes(tmp_path):
    x, y = astronaut(8)
    cfg = SMALL.replace(epochs=2, checkpoints=(1,), curve_every=0)
    fit(cfg, x, y, out_dir=tmp_path, progress=False)
    new = ("loss_reduction", "coords", "pixels", "steps_per_epoch")
    for name in ("run.json", "summary.json"):
        meta = json.loads((tmp_path / name).read_text())
        assert all(k in meta["config"] for k in new)
        for k in new:
            meta["config"].pop(k)
        meta["config"]["parameterization"] = "ntk"
        (tmp_path / name).write_text(json.dumps(meta))
    old = load_run(tmp_path)
    assert (old.config.loss_reduction, old.config.coords, old.config.pixels, old.config.steps_per_epoch) == \
        ("mean", "unit", "corners", None)
    assert old.config == cfg
    again = fit(cfg, x, y, out_dir=tmp_path, progress=False)  # same run: reused, not refused
    assert tree_equal(again.params, old.params)


def test_path_helpers_and_load_checkpoint_read_what_fit_wrote(tmp_path):
    import jax

    from ntkgrid.training import checkpoint_path, load_checkpoint, load_spectra, ntk_points_path, spectra_path

    x, y = astronaut(8)
    cfg = SMALL.replace(epochs=2, checkpoints=(1,), curve_every=0, ntk_points=16)
    r = fit(cfg, x, y, out_dir=tmp_path, progress=False)
    assert checkpoint_path(tmp_path, 2) == tmp_path / "checkpoints" / "epoch_000002.msgpack"
    assert spectra_path(tmp_path, 1) == tmp_path / "spectra" / "epoch_000001.npz"
    lines = [json.loads(t) for t in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [tmp_path / ln["checkpoint_file"] for ln in lines] == [checkpoint_path(tmp_path, e) for e in (1, 2)]
    assert [tmp_path / ln["spectrum_file"] for ln in lines] == [spectra_path(tmp_path, e) for e in (1, 2)]
    assert np.load(ntk_points_path(tmp_path)).shape == (16, 2)
    assert load_spectra(spectra_path(tmp_path, 2))["total"].eigenvalues.shape == (16,)
    plain = load_checkpoint(tmp_path, 2)
    assert tree_equal(plain, r.params)
    typed = load_checkpoint(tmp_path, 2, template=r.params)
    assert jax.tree.structure(typed) == jax.tree.structure(r.params) and tree_equal(typed, r.params)
    with pytest.raises(FileNotFoundError, match="epoch_000003.msgpack"):
        load_checkpoint(tmp_path, 3)
    checkpoint_path(tmp_path, 1).write_bytes(b"not msgpack")
    with pytest.raises(ValueError, match="epoch_000001.msgpack: unreadable"):
        load_checkpoint(tmp_path, 1)


def test_resume_skips_a_metrics_line_whose_checkpoint_is_unreadable(tmp_path):
    """The newest checkpoint that restores and has its metrics line wins; a later line whose
    checkpoint is truncated is dropped with that epoch's files."""
    x, y = astronaut(8)
    cfg = SMALL.replace(epochs=4, checkpoints=(2,), curve_every=0, ntk_points=16)
    ref = fit(cfg, x, y, out_dir=tmp_path, progress=False)
    (tmp_path / "summary.json").unlink()
    (tmp_path / "checkpoints" / "epoch_000004.msgpack").write_bytes(b"truncated")
    again = fit(cfg, x, y, out_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.losses, ref.losses)
    assert [h["epoch"] for h in again.history] == [2, 4] and tree_equal(again.params, ref.params)


def test_save_and_read_spectra_file_round_trip_with_extra_arrays(tmp_path):
    from ntkgrid.spectrum import Spectrum
    from ntkgrid.training.runfolder import load_spectra, read_spectra, save_spectra

    spectra = {"total": Spectrum(np.array([2.0, 1.0, 1e-20]), 1e-15, 2, 0, 1e-8),
               "grid/level_0": Spectrum(np.array([1.5, 0.25, -1e-19]), 1e-16, 2, 1, 0.0)}
    path = tmp_path / "spectra" / "epoch_000007.npz"
    save_spectra(path, 7, spectra, extra={"ntk_hash": np.array("abc")})
    with np.load(path) as z:  # the layout old readers expect
        assert list(z["groups"]) == ["total", "grid/level_0"] and int(z["epoch"]) == 7
        assert z["eigenvalues/grid/level_0"].dtype == np.float64 and z["n_negative/grid/level_0"].dtype == np.int64
    back, extra = read_spectra(path)
    assert list(back) == list(spectra) and set(extra) == {"epoch", "ntk_hash"} and str(extra["ntk_hash"]) == "abc"
    for g, s in spectra.items():
        np.testing.assert_array_equal(back[g].eigenvalues, s.eigenvalues)
        assert (back[g].floor, back[g].n_above_floor, back[g].n_negative, back[g].asymmetry) == \
            (s.floor, s.n_above_floor, s.n_negative, s.asymmetry)
    assert list(load_spectra(path)) == ["total", "grid/level_0"]


def test_an_unreadable_summary_resumes_from_the_checkpoints_and_unreadable_metadata_is_refused(tmp_path):
    """A damaged summary.json: the run.json and the checkpoints still tell the run, which
    finishes again with the same numbers; with run.json damaged too the folder is refused,
    naming both files, and nothing in it is removed."""
    from ntkgrid.training.runfolder import RunFolder

    x, y = astronaut(16)
    cfg = SMALL.replace(epochs=2, checkpoints=(0, 2))
    ref = fit(cfg, x, y, out_dir=tmp_path)
    (tmp_path / "summary.json").write_text("{trunc")
    assert not RunFolder(tmp_path).complete() and not RunFolder.unidentifiable(tmp_path)
    r = fit(cfg, x, y, out_dir=tmp_path)
    assert r.complete and r.final["psnr"] == ref.final["psnr"] and np.array_equal(r.losses, ref.losses)
    assert json.loads((tmp_path / "summary.json").read_text())["complete"]
    for name in ("summary.json", "run.json"):
        (tmp_path / name).write_text("[]")
    assert RunFolder.unidentifiable(tmp_path)
    files = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="summary.json and .*run.json: unreadable"):
        fit(cfg, x, y, out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == files


@pytest.mark.parametrize("kind", ["garbage", "truncated", "other_arrays"])
def test_damaged_spectra_file_is_a_clear_error_naming_it(tmp_path, kind):
    from ntkgrid.data import DataError
    from ntkgrid.training import load_spectra

    p = tmp_path / "epoch_000002.npz"
    np.savez(p, groups=np.array(["total"]), **{"eigenvalues/total": np.ones(4), "floor/total": np.array(0.1),
                                               "n_above_floor/total": np.array(4), "n_negative/total": np.array(0),
                                               "asymmetry/total": np.array(0.0)})
    assert load_spectra(p)["total"].n_above_floor == 4
    if kind == "garbage":
        p.write_bytes(b"not a zip archive at all\n" * 20)
    elif kind == "truncated":
        p.write_bytes(p.read_bytes()[:300])
    else:
        np.savez(p, something=np.zeros(2))
    with pytest.raises(DataError) as ei:
        load_spectra(p)
    assert str(ei.value).startswith(str(p)) and "spectra file" in str(ei.value)
