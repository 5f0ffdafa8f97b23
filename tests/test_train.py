"""Tests for ntkgrid.train: learning, determinism, divergence, resume, files, BCE, MS-SSIM oracle."""

from __future__ import annotations

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkgrid import train
from ntkgrid.config import FourierConfig, MultiGridConfig, TrainConfig
from ntkgrid.data.images import image_to_dataset

MULTIGRID = MultiGridConfig(num_levels=2, features_per_level=2, min_res=8, max_res=32)
SMALL = TrainConfig(hidden=(32, 32), learning_rate=10.0, epochs=6, batch_size=32, ntk_points=0)


@functools.lru_cache(maxsize=None)
def astronaut(size: int | None = None, crop: int | None = None):
    """skimage's astronaut as (coords (H*W, 2), rgb (H*W, 3)) float32: resized to size x size,
    or a crop x crop centre crop at full resolution."""
    from skimage import data
    from skimage.transform import resize

    img = data.astronaut().astype(np.float64) / 255.0
    if crop is not None:
        h, w = img.shape[:2]
        img = img[(h - crop) // 2:(h + crop) // 2, (w - crop) // 2:(w + crop) // 2]
    else:
        img = np.clip(resize(img, (size, size), anti_aliasing=True), 0.0, 1.0)
    return image_to_dataset(img)


def sphere(n: int, seed: int = 0, radius: float = 0.35):
    """Uniform points in [0, 1]^3 and labels 1 inside the sphere of ``radius`` about the centre."""
    x = np.random.default_rng(seed).random((n, 3)).astype(np.float32)
    y = (np.linalg.norm(x - 0.5, axis=1) < radius).astype(np.float32)[:, None]
    return x, y


def tree_equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda u, v: bool(np.array_equal(np.asarray(u), np.asarray(v))), a, b)))


# ----------------------------------------------------------------------------- learning + files


def test_multigrid_learns_writes_documented_files_and_traces_once(tmp_path):
    x, y = astronaut(32)
    cfg = SMALL.replace(encoding=MULTIGRID, ntk_points=64)
    train.make_epoch_fn.cache_clear()
    traces = train.TRACE_COUNTS["epoch"]
    r = train.fit(cfg, x, y, image_shape=(32, 32), out_dir=tmp_path, label="mg")
    assert train.TRACE_COUNTS["epoch"] - traces == 1  # one trace for six epochs

    assert [h["epoch"] for h in r.history] == [0, 3, 6] and r.params_epoch == 6 and not r.diverged
    loss = [h["loss"] for h in r.history]
    psnr = [h["psnr"] for h in r.history]
    assert loss[0] > loss[1] > loss[2] and psnr[0] < psnr[1] < psnr[2]
    assert psnr[2] > psnr[0] + 10.0
    assert r.losses.shape == (6,) and r.losses[-1] < r.losses[0]
    for h in r.history:
        assert set(train.HISTORY_KEYS) <= set(h)
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
    for ln, h in zip(lines, r.history):
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
    back = train.load_run(tmp_path)
    assert back.config == cfg and back.label == "mg" and back.complete
    np.testing.assert_array_equal(back.losses, r.losses)
    assert tree_equal(back.params, r.params)
    assert [h["loss"] for h in back.history] == loss
    np.testing.assert_array_equal(back.history[1]["spectrum"].eigenvalues, r.history[1]["spectrum"].eigenvalues)
    pred = train.predict(cfg, back.params, x, batch=300)  # 4 batches, the last one padded
    np.testing.assert_allclose(pred, train.predict(cfg.model(2, 3), r.params, x), rtol=1e-6, atol=1e-6)
    assert pred.shape == (1024, 3)
    assert float(np.mean((pred.astype(np.float64) - y) ** 2)) == pytest.approx(loss[-1], rel=1e-6)


# ----------------------------------------------------------------------------- determinism, divergence


def test_same_seed_same_numbers_and_quiet_without_terminal(capfd):
    x, y = astronaut(16)
    cfg = SMALL.replace(encoding=FourierConfig(num_frequencies=4), epochs=4)
    a = train.fit(cfg, x, y, image_shape=(16, 16))
    train.make_epoch_fn.cache_clear()  # the second run compiles afresh
    b = train.fit(cfg, x, y, image_shape=(16, 16))
    c = train.fit(cfg.replace(seed=1), x, y, image_shape=(16, 16))
    np.testing.assert_array_equal(a.losses, b.losses)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert tree_equal(a.params, b.params)
    assert not np.array_equal(a.losses, c.losses)
    assert capfd.readouterr().err == ""  # stderr is not a terminal: no progress bar


@pytest.mark.parametrize("checkpoints, measured", [(None, [0]), ((4,), [])])
def test_divergence_is_recorded_not_raised(tmp_path, checkpoints, measured):
    x, y = astronaut(16)
    cfg = SMALL.replace(learning_rate=1e6, epochs=4, checkpoints=checkpoints)
    r = train.fit(cfg, x, y, image_shape=(16, 16), out_dir=tmp_path)
    assert r.diverged and r.diverged_epoch == 1 and r.complete
    assert r.losses.shape == (1,) and not np.isfinite(r.losses[0])
    assert [h["epoch"] for h in r.history] == measured and r.params_epoch == 0  # the initial variables
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(r.params))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["diverged"] and summary["diverged_epoch"] == 1 and summary["losses"] == [None]
    again = train.fit(cfg, x, y, image_shape=(16, 16), out_dir=tmp_path)  # stored: returned as is
    assert again.diverged and again.diverged_epoch == 1 and tree_equal(again.params, r.params)


# ----------------------------------------------------------------------------- resume


class _Interrupt(Exception):
    pass


def _interrupt_at(call: int, calls: list):
    def eval_fn(apply, variables):
        calls.append(1)
        if len(calls) == call:
            raise _Interrupt
        return {"mean_output": float(jnp.mean(apply(variables, jnp.full((4, 2), 0.5))))}

    return eval_fn


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    x, y = astronaut(16)
    cfg = SMALL.replace(encoding=FourierConfig(num_frequencies=4), epochs=4, checkpoints=(0, 2, 4))
    ref = train.fit(cfg, x, y, eval_fn=_interrupt_at(0, []))

    calls: list = []
    with pytest.raises(_Interrupt):  # killed while measuring epoch 4: checkpoints 0 and 2 are on disk
        train.fit(cfg, x, y, out_dir=tmp_path, eval_fn=_interrupt_at(3, calls))
    assert not (tmp_path / "summary.json").exists()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    partial = train.load_run(tmp_path)
    assert not partial.complete and partial.params_epoch == 2 and partial.losses.shape == (2,)

    calls.clear()
    r = train.fit(cfg, x, y, out_dir=tmp_path, eval_fn=_interrupt_at(0, calls))
    assert len(calls) == 1  # resumed at epoch 2: only epoch 4 was measured
    np.testing.assert_array_equal(r.losses, ref.losses)
    assert tree_equal(r.params, ref.params)
    assert [(h["epoch"], h["loss"], h["mean_output"]) for h in r.history] == \
        [(h["epoch"], h["loss"], h["mean_output"]) for h in ref.history]

    calls.clear()
    (tmp_path / "summary.json").unlink()  # lost summary: resumes at epoch 4, trains nothing
    r2 = train.fit(cfg, x, y, out_dir=tmp_path, eval_fn=_interrupt_at(0, calls))
    assert calls == [] and (tmp_path / "summary.json").exists()
    np.testing.assert_array_equal(r2.losses, ref.losses)
    assert [h["loss"] for h in r2.history] == [h["loss"] for h in ref.history]

    with pytest.raises(ValueError, match=r"different run.*learning_rate"):
        train.fit(cfg.replace(learning_rate=5.0), x, y, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"different run.*data_hash"):
        train.fit(cfg, x, 1.0 - y, out_dir=tmp_path)


# ----------------------------------------------------------------------------- epoch semantics, BCE


class _Constant(nn.Module):
    """f(x) = c (one scalar parameter), so a zero-learning-rate epoch's loss reveals its indices."""

    @nn.compact
    def __call__(self, x):
        return jnp.broadcast_to(self.param("c", nn.initializers.zeros, ()), x.shape[:-1] + (1,))


@pytest.mark.parametrize("n, batch, epoch_size", [(12, 4, None), (10, 4, None), (10, 16, None), (50, 8, 20)])
def test_epoch_draws_a_permutation_padded_by_wrapping(n, batch, epoch_size):
    x = np.zeros((n, 1), np.float32)
    y = np.arange(n, dtype=np.float32)[:, None]
    epoch = train.make_epoch_fn(_Constant(), "mse", batch, n, epoch_size)
    key = jax.random.PRNGKey(3)
    e = epoch_size or n
    steps = -(-e // batch)
    for index in (0, 1):
        variables = {"params": {"c": jnp.zeros(())}}
        _, _, loss = epoch(variables, optax.sgd(0.0).init(variables["params"]), key, np.int32(index),
                           np.float32(0.0), x, y)
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, index), n))[:e]
        idx = np.resize(order, steps * batch)
        assert float(loss) == pytest.approx(np.mean(y[idx, 0] ** 2), rel=1e-6)


def test_bce_occupancy_improves_accuracy():
    x, y = sphere(4096)
    cfg = TrainConfig(encoding=MultiGridConfig(num_levels=1, min_res=8, max_res=8), hidden=(32, 32),
                      loss="bce", learning_rate=10.0, epochs=8, batch_size=64, ntk_points=0)
    r = train.fit(cfg, x, y, epoch_size=1024)
    first, last = r.history[0], r.history[-1]
    assert r.losses.shape == (8,) and last["loss"] < first["loss"]
    assert last["accuracy"] >= 0.95 and last["accuracy"] > first["accuracy"] + 0.3
    assert last["psnr"] is None and last["ms_ssim"] is None
    logits = train.predict(cfg, r.params, x)
    assert float(np.mean((logits > 0) == (y > 0.5))) == last["accuracy"]


# ----------------------------------------------------------------------------- errors


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
        train.fit(args.pop("cfg"), args.pop("coords"), args.pop("targets"), **args)


# ----------------------------------------------------------------------------- MS-SSIM oracle


@pytest.mark.oracle
def test_ms_ssim_matches_pytorch_msssim_on_trained_model_output():
    torch = pytest.importorskip("torch", reason="torch is needed for the pytorch-msssim oracle")
    pytorch_msssim = pytest.importorskip("pytorch_msssim", reason="pytorch-msssim is not installed")
    x, y = astronaut(crop=176)  # > 160 px: all five scales
    cfg = SMALL.replace(encoding=MultiGridConfig(num_levels=1, min_res=64, max_res=64),
                        epochs=2, batch_size=256, checkpoints=(2,))
    r = train.fit(cfg, x, y, image_shape=(176, 176))
    ours = r.history[-1]
    assert ours["ms_ssim_scales"] == 5 and not ours["ms_ssim_reduced"]
    pred = np.clip(train.predict(cfg, r.params, x).astype(np.float64), 0.0, 1.0)
    to_t = lambda a: torch.from_numpy(a.reshape(176, 176, 3).transpose(2, 0, 1)[None].copy())  # noqa: E731
    ref = float(pytorch_msssim.ms_ssim(to_t(pred), to_t(y.astype(np.float64)), data_range=1.0))
    assert 0.2 < ref < 0.99  # a partly trained model: neither noise nor a copy of the image
    assert abs(ours["ms_ssim"] - ref) <= 1e-5


def test_curve_is_full_data_loss_at_regular_epochs_and_survives_resume(tmp_path):
    x, y = astronaut(8)
    cfg = SMALL.replace(epochs=6, curve_every=2, checkpoints=(3,))
    res = train.fit(cfg, x, y, out_dir=tmp_path, progress=False)
    assert [c["epoch"] for c in res.curve] == [0, 2, 3, 4, 6]
    for c in res.curve:  # each point is the full-data loss, not the minibatch mean
        if c["epoch"] in (3, 6):
            h = next(h for h in res.history if h["epoch"] == c["epoch"])
            assert c["loss"] == pytest.approx(h["loss"], rel=1e-12)
    final = train.predict(cfg, res.params, x)
    assert res.curve[-1]["loss"] == pytest.approx(float(np.mean((final.astype(np.float64) - y) ** 2)), rel=1e-6)
    assert res.curve[1]["train_loss"] == pytest.approx(res.losses[1])
    again = train.load_run(tmp_path)
    assert again.curve == res.curve
    assert SMALL.replace(epochs=90).curve_epochs()[:3] == (0, 3, 6) and SMALL.replace(curve_every=0).curve_epochs() == ()


# ----------------------------------------------------------------------------- reading options (issue 13)


@pytest.mark.parametrize("reduction,factor", [("mean", 1.0), ("sum_channels", 3.0), ("sum", 8 * 3.0)])
def test_loss_reduction_scales_the_step_but_not_the_reported_loss(reduction, factor):
    x, y = astronaut(8)
    x, y = x[:8], y[:8]
    model = SMALL.model(2, 3)
    v = model.init(jax.random.PRNGKey(0), jnp.asarray(x[:1]))
    outs = {}
    for red in ("mean", reduction):
        step = train.make_epoch_fn(model, "mse", 8, 8, None, red)
        v1, _, loss = step(jax.tree.map(jnp.array, v), optax.sgd(1.0).init(v["params"]), jax.random.PRNGKey(0),
                           np.int32(0), np.float32(0.1), jnp.asarray(x), jnp.asarray(y))
        outs[red] = (jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), v1, v), float(loss))
    assert outs[reduction][1] == pytest.approx(outs["mean"][1], rel=1e-6)  # always the mean MSE
    for d_red, d_mean in zip(jax.tree.leaves(outs[reduction][0]), jax.tree.leaves(outs["mean"][0])):
        np.testing.assert_allclose(d_red, factor * d_mean, rtol=1e-3, atol=1e-6 * factor)


def test_steps_per_epoch_draws_that_many_minibatches():
    x, y = astronaut(8)
    cfg = SMALL.replace(steps_per_epoch=1, batch_size=16, epochs=2, curve_every=0)
    assert cfg.epoch_size(64) == 16 and SMALL.epoch_size(64) == 64
    assert cfg.replace(steps_per_epoch=100).epoch_size(64) == 64
    a = train.fit(cfg, x, y, progress=False)
    b = train.fit(cfg.replace(steps_per_epoch=None), x, y, progress=False, epoch_size=16)
    assert tree_equal(a.params, b.params)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        SMALL.replace(steps_per_epoch=0)


@pytest.mark.parametrize("field,bad", [("loss_reduction", "median"), ("coords", "polar"), ("pixels", "edges")])
def test_reading_fields_refuse_unknown_values(field, bad):
    with pytest.raises(ValueError, match=field):
        SMALL.replace(**{field: bad})


def test_run_json_written_before_the_reading_fields_loads_and_resumes(tmp_path):
    x, y = astronaut(8)
    cfg = SMALL.replace(epochs=2, checkpoints=(1,), curve_every=0)
    train.fit(cfg, x, y, out_dir=tmp_path, progress=False)
    new = ("loss_reduction", "coords", "pixels", "steps_per_epoch")
    for name in ("run.json", "summary.json"):
        meta = json.loads((tmp_path / name).read_text())
        assert all(k in meta["config"] for k in new)
        for k in new:
            meta["config"].pop(k)
        meta["config"]["parameterization"] = "ntk"
        (tmp_path / name).write_text(json.dumps(meta))
    old = train.load_run(tmp_path)
    assert (old.config.loss_reduction, old.config.coords, old.config.pixels, old.config.steps_per_epoch) == \
        ("mean", "unit", "corners", None)
    assert old.config == cfg
    again = train.fit(cfg, x, y, out_dir=tmp_path, progress=False)  # same run: reused, not refused
    assert tree_equal(again.params, old.params)


def test_training_set_points_default_cap_and_errors(monkeypatch):
    x, _ = astronaut(16)
    pts, sel = train.training_set_points(x, None, (16, 16))
    assert pts is x and sel == {"ntk_points": 256, "ntk_selection": "all", "ntk_window": [16, 16]}
    pts, sel = train.training_set_points(x, 64, (16, 16))
    assert sel["ntk_selection"] == "window" and sel["ntk_window"] == [8, 8] and pts.shape == (64, 2)
    assert train.training_set_points(x, 0, (16, 16))[0] is None
    with pytest.raises(ValueError, match="ntk_points=300 exceeds the 256 training points"):
        train.training_set_points(x, 300, (16, 16))
    from ntkgrid import presets

    monkeypatch.setitem(presets.NTK_POINTS_CAP, "cpu", 100)
    with pytest.warns(RuntimeWarning, match="100 of the 256 training points"):
        pts, sel = train.training_set_points(x, None, (16, 16))
    assert sel == {"ntk_points": 100, "ntk_selection": "window", "ntk_window": [10, 10]}
    _, sel = train.training_set_points(x, 50, None)  # not an image: a uniform random subset
    assert sel["ntk_selection"] == "random" and sel["ntk_points"] == 50


def test_out_of_memory_kernel_falls_back_to_the_cpu_cap_with_a_warning(monkeypatch):
    """A kernel that does not fit in memory is retried on a centred window of the CPU cap;
    the run goes on and records the points actually used."""
    from ntkgrid import presets, spectrum

    real = spectrum.ntk_spectrum

    def small_memory(model, variables, x, **kw):
        if x.shape[0] > 64:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 2.0GiB")
        return real(model, variables, x, **kw)

    monkeypatch.setattr(spectrum, "ntk_spectrum", small_memory)
    monkeypatch.setitem(presets.NTK_POINTS_CAP, "cpu", 64)
    x, y = astronaut(16)
    with pytest.warns(RuntimeWarning) as record:
        r = train.fit(SMALL.replace(encoding=MULTIGRID, epochs=1, checkpoints=(1,)), x, y, image_shape=(16, 16),
                      ntk_x=x, progress=False)
    assert any("ran out of memory" in str(w.message) for w in record)
    assert r.final["ntk_points"] == 64 and r.final["spectrum"].eigenvalues.shape == (64,)
    assert r.options["ntk_selection"] == "all"  # ntk_x was the whole image: the fallback is its centred 8x8


# ----------------------------------------------------------------------------- fresh points every epoch


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

    r = train.fit(cfg, meas_x, meas_y, epoch_data=fresh, progress=False)
    model = cfg.model(3, 1)
    init_key, data_key = jax.random.split(jax.random.PRNGKey(cfg.seed))
    v = model.init(init_key, jnp.asarray(meas_x[:1]))
    opt = optax.sgd(cfg.learning_rate).init(v["params"])
    fn = train.make_epoch_fn(model, "bce", 16, 48, 48)
    for e in range(4):
        v, opt, loss = fn(v, opt, data_key, np.int32(e), np.float32(cfg.learning_rate), *map(jnp.asarray, fresh(e)))
        assert float(loss) == pytest.approx(r.losses[e], rel=1e-6)
    assert tree_equal(r.params, v)
    assert r.options["epoch_size"] == 48 and r.options["n_points"] == 40  # the measurement set is separate

    calls: list = []

    def interrupt_at_second(apply, variables):
        calls.append(1)
        if len(calls) == 2:
            raise _Interrupt
        return {}

    with pytest.raises(_Interrupt):  # killed while measuring epoch 4: epoch 2's checkpoint is on disk
        train.fit(cfg, meas_x, meas_y, epoch_data=fresh, out_dir=tmp_path, eval_fn=interrupt_at_second)
    resumed = train.fit(cfg, meas_x, meas_y, epoch_data=fresh, out_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(resumed.losses, r.losses)
    assert tree_equal(resumed.params, r.params)
    with pytest.raises(ValueError, match="fresh_hash"):  # another stream of points is another run
        train.fit(cfg, meas_x, meas_y, epoch_data=lambda e: fresh(e + 1), out_dir=tmp_path)
    with pytest.raises(ValueError, match="exclude each other"):
        train.fit(cfg, meas_x, meas_y, epoch_data=fresh, epoch_size=10)
    with pytest.raises(ValueError, match=r"epoch_data\(0\) must give"):
        train.fit(cfg, meas_x, meas_y, epoch_data=lambda e: (meas_x[:, :2], meas_y))
