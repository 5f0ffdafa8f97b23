"""Tests for ntkgrid.training.fit: learning, files, determinism, divergence, BCE, errors, the curve, fresh points."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkgrid.config import FourierConfig, MultiGridConfig, TrainConfig
from ntkgrid.models import build_model
from ntkgrid.training import HISTORY_KEYS, TRACE_COUNTS, fit, load_run, make_epoch_fn, predict

from ._training_cases import MULTIGRID, SMALL, Interrupt, astronaut, sphere, tree_equal


def test_multigrid_learns_writes_documented_files_and_traces_once(tmp_path):
    x, y = astronaut(32)
    cfg = SMALL.replace(encoding=MULTIGRID, ntk_points=64)
    make_epoch_fn.cache_clear()
    traces = TRACE_COUNTS["epoch"]
    r = fit(cfg, x, y, image_shape=(32, 32), out_dir=tmp_path, label="mg")
    assert TRACE_COUNTS["epoch"] - traces == 1  # one trace for six epochs

    assert [h["epoch"] for h in r.history] == [0, 3, 6] and r.params_epoch == 6 and not r.diverged
    loss = [h["loss"] for h in r.history]
    psnr = [h["psnr"] for h in r.history]
    assert loss[0] > loss[1] > loss[2] and psnr[0] < psnr[1] < psnr[2]
    assert psnr[2] > psnr[0] + 10.0
    assert r.losses.shape == (6,) and r.losses[-1] < r.losses[0]
    for h in r.history:
        assert set(HISTORY_KEYS) <= set(h)
        assert h["ms_ssim_scales"] == 2 and h["ms_ssim_reduced"]  # 32 px: metrics' small-image fallback
        spectra = h["spectra"]
        # Group spectra at the last checkpoint (ntk_group_spectra="last"); per op: ntk_spectrum(groups="ops").
        assert set(spectra) == ({"total", "mlp", "grid", "no_grid"} if h["epoch"] == 6 else {"total"})
        assert h["spectrum"] is spectra["total"] and h["ntk_points"] == 64
        assert 0.0 < h["grid_offdiag_fraction"] < 1.0  # an 8x8 window: neighbouring pixels share nodes
        for s in spectra.values():
            assert s.eigenvalues.shape == (64,) and s.floor > 0
            assert np.all(np.diff(s.eigenvalues) <= 0) and 0 < s.n_above_floor <= 64
    assert r.history[0]["train_loss"] is None and r.history[2]["train_loss"] == r.losses[5]

    # Files and their keys.
    options = json.loads((tmp_path / "run.json").read_text())["options"]
    assert (options["ntk_points"], options["ntk_selection"], options["ntk_window"]) == (64, "window", [8, 8])
    lines = [json.loads(t) for t in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [ln["epoch"] for ln in lines] == [0, 3, 6]
    for ln, h in zip(lines, r.history, strict=True):
        assert {"epoch", "loss", "psnr", "ms_ssim", "ms_ssim_scales", "spectrum", "spectrum_file",
                "checkpoint_file", "seconds"} <= set(ln)
        assert set(ln["spectrum"]["total"]) == {"lambda_max", "lambda_min", "floor", "n_above_floor", "n_negative"}
        assert (tmp_path / ln["checkpoint_file"]).exists()
        npz = np.load(tmp_path / ln["spectrum_file"])
        np.testing.assert_array_equal(npz["eigenvalues/total"], h["spectra"]["total"].eigenvalues)
        if h["epoch"] == 6:
            assert ln["spectrum"]["no_grid"]["floor"] == h["spectra"]["no_grid"].floor
            np.testing.assert_array_equal(npz["eigenvalues/grid"], h["spectra"]["grid"].eigenvalues)
    assert np.load(tmp_path / "spectra" / "ntk_x.npy").shape == (64, 2)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"config", "options", "complete", "diverged", "diverged_epoch", "seconds", "final", "losses",
            "epochs_run", "params_epoch", "label"} <= set(summary)
    assert TrainConfig.from_dict(summary["config"]) == cfg
    assert summary["complete"] and not summary["diverged"] and summary["final"]["epoch"] == 6
    assert summary["losses"] == pytest.approx(r.losses.tolist(), rel=0, abs=0)

    # load_run gives back the same run; predict reproduces the recorded loss.
    back = load_run(tmp_path)
    assert back.config == cfg and back.label == "mg" and back.complete
    np.testing.assert_array_equal(back.losses, r.losses)
    assert tree_equal(back.params, r.params)
    assert [h["loss"] for h in back.history] == loss
    np.testing.assert_array_equal(back.history[1]["spectrum"].eigenvalues, r.history[1]["spectrum"].eigenvalues)
    pred = predict(cfg, back.params, x, batch=300)  # 4 batches, the last one padded
    np.testing.assert_allclose(pred, predict(build_model(cfg, 2, 3), r.params, x), rtol=1e-6, atol=1e-6)
    assert pred.shape == (1024, 3)
    assert float(np.mean((pred.astype(np.float64) - y) ** 2)) == pytest.approx(loss[-1], rel=1e-6)


def test_same_seed_same_numbers_and_quiet_without_terminal(capfd):
    x, y = astronaut(16)
    cfg = SMALL.replace(encoding=FourierConfig(num_frequencies=4), epochs=4)
    a = fit(cfg, x, y, image_shape=(16, 16))
    make_epoch_fn.cache_clear()  # the second run compiles afresh
    b = fit(cfg, x, y, image_shape=(16, 16))
    c = fit(cfg.replace(seed=1), x, y, image_shape=(16, 16))
    np.testing.assert_array_equal(a.losses, b.losses)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert tree_equal(a.params, b.params)
    assert not np.array_equal(a.losses, c.losses)
    assert capfd.readouterr().err == ""  # stderr is not a terminal: no progress bar


@pytest.mark.parametrize("checkpoints, measured", [(None, [0]), ((4,), [])])
def test_divergence_is_recorded_not_raised(tmp_path, checkpoints, measured):
    x, y = astronaut(16)
    cfg = SMALL.replace(learning_rate=1e6, epochs=4, checkpoints=checkpoints)
    r = fit(cfg, x, y, image_shape=(16, 16), out_dir=tmp_path)
    assert r.diverged and r.diverged_epoch == 1 and r.complete
    assert r.losses.shape == (1,) and not np.isfinite(r.losses[0])
    assert [h["epoch"] for h in r.history] == measured and r.params_epoch == 0  # the initial variables
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(r.params))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["diverged"] and summary["diverged_epoch"] == 1 and summary["losses"] == [None]
    again = fit(cfg, x, y, image_shape=(16, 16), out_dir=tmp_path)  # stored: returned as is
    assert again.diverged and again.diverged_epoch == 1 and tree_equal(again.params, r.params)


def test_bce_occupancy_improves_accuracy():
    x, y = sphere(4096)
    cfg = TrainConfig(encoding=MultiGridConfig(num_levels=1, min_res=8, max_res=8), hidden=(32, 32),
                      loss="bce", learning_rate=10.0, epochs=8, batch_size=64, ntk_points=0)
    r = fit(cfg, x, y, epoch_size=1024)
    first, last = r.history[0], r.history[-1]
    assert r.losses.shape == (8,) and last["loss"] < first["loss"]
    assert last["accuracy"] >= 0.95 and last["accuracy"] > first["accuracy"] + 0.3
    assert last["psnr"] is None and last["ms_ssim"] is None
    logits = predict(cfg, r.params, x)
    assert float(np.mean((logits > 0) == (y > 0.5))) == last["accuracy"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(targets=np.zeros((5, 3))), "same N"),
    (dict(image_shape=(8, 8)), "image_shape"),
    (dict(epoch_size=300), "epoch_size"),
    (dict(cfg=SMALL.replace(loss="bce"), targets=np.full((256, 1), 2.0)), r"\[0, 1\]"),
    (dict(ntk_x=np.zeros((4, 3))), "ntk_x"),
])
def test_bad_inputs_are_refused(kwargs, match):
    x, y = astronaut(16)
    args = dict(cfg=SMALL, coords=x, targets=y) | kwargs
    with pytest.raises(ValueError, match=match):
        fit(args.pop("cfg"), args.pop("coords"), args.pop("targets"), **args)


def test_curve_is_full_data_loss_at_regular_epochs_and_survives_resume(tmp_path):
    x, y = astronaut(8)
    cfg = SMALL.replace(epochs=6, curve_every=2, checkpoints=(3,))
    res = fit(cfg, x, y, out_dir=tmp_path, progress=False)
    assert [c["epoch"] for c in res.curve] == [0, 2, 3, 4, 6]
    for c in res.curve:  # each point is the full-data loss, not the minibatch mean
        if c["epoch"] in (3, 6):
            h = next(h for h in res.history if h["epoch"] == c["epoch"])
            assert c["loss"] == pytest.approx(h["loss"], rel=1e-12)
    final = predict(cfg, res.params, x)
    assert res.curve[-1]["loss"] == pytest.approx(float(np.mean((final.astype(np.float64) - y) ** 2)), rel=1e-6)
    assert res.curve[1]["train_loss"] == pytest.approx(res.losses[1])
    again = load_run(tmp_path)
    assert again.curve == res.curve
    assert SMALL.replace(epochs=90).curve_epochs()[:3] == (0, 3, 6) and SMALL.replace(curve_every=0).curve_epochs() == ()


def test_steps_per_epoch_draws_that_many_minibatches():
    x, y = astronaut(8)
    cfg = SMALL.replace(steps_per_epoch=1, batch_size=16, epochs=2, curve_every=0)
    assert cfg.epoch_size(64) == 16 and SMALL.epoch_size(64) == 64
    assert cfg.replace(steps_per_epoch=100).epoch_size(64) == 64
    a = fit(cfg, x, y, progress=False)
    b = fit(cfg.replace(steps_per_epoch=None), x, y, progress=False, epoch_size=16)
    assert tree_equal(a.params, b.params)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        SMALL.replace(steps_per_epoch=0)


@pytest.mark.parametrize("field,bad", [("loss_reduction", "median"), ("coords", "polar"), ("pixels", "edges")])
def test_reading_fields_refuse_unknown_values(field, bad):
    with pytest.raises(ValueError, match=field):
        SMALL.replace(**{field: bad})


def test_epoch_data_trains_each_epoch_on_its_own_points_and_resumes_exactly(tmp_path):
    """fit(epoch_data=) against epochs run by hand on the same points; resume from a checkpoint."""
    cfg = TrainConfig(hidden=(8,), loss="bce", epochs=4, batch_size=16, learning_rate=2.0, ntk_points=0,
                      checkpoints=(2, 4), curve_every=0)
    rng = np.random.default_rng(0)
    meas_x = rng.random((40, 3)).astype(np.float32)
    meas_y = (meas_x.sum(1, keepdims=True) > 1.5).astype(np.float32)

    def fresh(e):
        x = np.random.default_rng([7, e]).random((48, 3)).astype(np.float32)
        return x, (x.sum(1, keepdims=True) > 1.5).astype(np.float32)

    r = fit(cfg, meas_x, meas_y, epoch_data=fresh, progress=False)
    model = build_model(cfg, 3, 1)
    init_key, data_key = jax.random.split(jax.random.PRNGKey(cfg.seed))
    v = model.init(init_key, jnp.asarray(meas_x[:1]))
    opt = optax.sgd(cfg.learning_rate).init(v["params"])
    fn = make_epoch_fn(model, "bce", 16, 48, 48)
    for e in range(4):
        v, opt, loss = fn(v, opt, data_key, np.int32(e), np.float32(cfg.learning_rate), *map(jnp.asarray, fresh(e)))
        assert float(loss) == pytest.approx(r.losses[e], rel=1e-6)
    assert tree_equal(r.params, v)
    assert r.options["epoch_size"] == 48 and r.options["n_points"] == 40  # the measurement set is separate

    calls: list = []

    def interrupt_at_second(apply, variables):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupt
        return {}

    with pytest.raises(Interrupt):  # killed while measuring epoch 4: epoch 2's checkpoint is on disk
        fit(cfg, meas_x, meas_y, epoch_data=fresh, out_dir=tmp_path, eval_fn=interrupt_at_second)
    resumed = fit(cfg, meas_x, meas_y, epoch_data=fresh, out_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(resumed.losses, r.losses)
    assert tree_equal(resumed.params, r.params)
    with pytest.raises(ValueError, match="fresh_hash"):  # another stream of points is another run
        fit(cfg, meas_x, meas_y, epoch_data=lambda e: fresh(e + 1), out_dir=tmp_path)
    with pytest.raises(ValueError, match="exclude each other"):
        fit(cfg, meas_x, meas_y, epoch_data=fresh, epoch_size=10)
    with pytest.raises(ValueError, match=r"epoch_data\(0\) must give"):
        fit(cfg, meas_x, meas_y, epoch_data=lambda e: (meas_x[:, :2], meas_y))


def test_spectra_only_at_the_last_checkpoint_and_only_of_the_total_kernel(tmp_path):
    """ntk_spectra_at="last" + ntk_group_spectra="none" (the quick ImageNet preset): the earlier
    checkpoints record metrics without spectra, the last one the total kernel's spectrum only,
    and training is unchanged, bit for bit (the spectra never feed back)."""
    x, y = astronaut(16)
    base = SMALL.replace(encoding=MULTIGRID, ntk_points=32, epochs=4, checkpoints=(2, 4))
    full = fit(base, x, y, image_shape=(16, 16), progress=False)
    lean = fit(base.replace(ntk_spectra_at="last", ntk_group_spectra="none"), x, y, image_shape=(16, 16),
               out_dir=tmp_path, progress=False)
    assert [h["epoch"] for h in lean.history] == [2, 4]
    assert lean.history[0]["spectrum"] is None and lean.history[0]["psnr"] == full.history[0]["psnr"]
    assert set(lean.history[1]["spectra"]) == {"total"} and 0.0 < lean.history[1]["grid_offdiag_fraction"] < 1.0
    np.testing.assert_array_equal(lean.history[1]["spectrum"].eigenvalues, full.history[1]["spectrum"].eigenvalues)
    np.testing.assert_array_equal(lean.losses, full.losses)
    assert tree_equal(lean.params, full.params)
    back = load_run(tmp_path)
    assert back.history[0]["spectrum"] is None and back.history[1]["spectrum"] is not None
    with pytest.raises(ValueError, match="ntk_spectra_at"):
        base.replace(ntk_spectra_at="middle")
