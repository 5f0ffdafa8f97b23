"""Theorem 1 as the paper states it (a check that can fail) and the kernel-regression
prediction of training (Eqs. 5-7) against brute-force gradient descent."""

import jax
import numpy as np
import pytest

from ntkgrid import CoordinateMLP, Identity, MultiGrid
from ntkgrid.data.images import image_to_dataset
from ntkgrid.models import build_model
from ntkgrid.spectrum import Spectrum, eigh, ntk_spectrum, spectrum_from_kernel, weyl_bound
from ntkgrid.theory import (
    band_edges,
    band_energies,
    compare_mean_spectra,
    compare_spectra,
    fan_in_matched_baseline,
    loss_gradient_scale,
    predict_training,
    replay_training,
    scale_mlp,
    theorem1_comparisons,
)
from ntkgrid.training import epoch_batches


def _spec(values, floor=1e-12):
    v = np.sort(np.asarray(values, np.float64))[::-1]
    return Spectrum(v, floor, int(np.sum(v > floor)), int(np.sum(v < 0)))


@pytest.mark.parametrize(
    "mpe, base, verdict, fraction, first_below",
    [
        ([4, 3, 2, 1], [2, 1.5, 1, 0.5], "holds", 1.0, None),
        ([4, 3, 0.5, 0.1], [2, 1.5, 1, 0.5], "does not hold", 0.5, 2),
        ([1, 1, 1, 1], [1, 1, 1, 1], "holds", 1.0, None),  # equal spectra: the bound is not strict
        ([1e-20, 1e-21], [1e-20, 1e-21], "cannot be judged", np.nan, None),  # all below the floors
    ],
)
def test_compare_spectra_table(mpe, base, verdict, fraction, first_below):
    r = compare_spectra(_spec(mpe), _spec(base))
    assert r["verdict"] == verdict and r["first_below"] == first_below
    np.testing.assert_equal(r["fraction"], fraction)
    if verdict != "cannot be judged":
        ratio = np.log10(np.asarray(sorted(mpe, reverse=True)) / np.asarray(sorted(base, reverse=True)))
        assert r["min_log10_ratio"] == pytest.approx(ratio.min()) and r["median_log10_ratio"] == pytest.approx(
            np.median(ratio))


def test_compare_spectra_refuses_different_lengths_and_takes_a_relative_tolerance():
    with pytest.raises(ValueError, match="different lengths"):
        compare_spectra(_spec([4, 3, 2]), _spec([4, 3, 2, 1]))
    near = compare_spectra(_spec([4, 2.9, 2]), _spec([4, 3, 2]))
    assert near["verdict"] == "does not hold" and near["first_below"] == 1
    loose = compare_spectra(_spec([4, 2.9, 2]), _spec([4, 3, 2]), rtol=0.05)
    assert loose["verdict"] == "holds" and loose["fraction"] == 1.0
    assert compare_spectra(_spec([4, 2.5, 2]), _spec([4, 3, 2]), rtol=0.05)["first_below"] == 1
    with pytest.raises(ValueError, match="rtol"):
        compare_spectra(_spec([1.0]), _spec([1.0]), rtol=-0.1)


def test_mean_comparison_uses_the_mean_curves():
    m = {"mean": np.array([3.0, 2.0, 1.0]), "floor": 1e-12}
    b = {"mean": np.array([2.0, 2.5, 0.5]), "floor": 1e-12}
    r = compare_mean_spectra(m, b)
    assert r["verdict"] == "does not hold" and r["first_below"] == 1 and r["fraction"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def window_12px():
    from skimage import data
    from skimage.transform import resize

    img = np.clip(resize(data.chelsea() / 255.0, (12, 12), anti_aliasing=True), 0, 1)
    return image_to_dataset(img)


def test_theorem1_three_comparisons_on_a_real_pair(window_12px):
    """The stated comparison fails at init, the fan-in-matched one holds (the positive
    control), the MLP x 0.3 control fails against both, and the own-no-grid one holds (by
    construction). The fan-in-matched network is the MPE network with its grid features
    replaced by zeros: equal outputs to the MPE network whose tables are zeroed."""
    x, _ = window_12px
    mpe = CoordinateMLP(MultiGrid(dim=2, num_levels=1, features_per_level=2, min_res=6, max_res=6), hidden=(32, 32))
    base = CoordinateMLP(Identity(), hidden=(32, 32))
    v = mpe.init(jax.random.PRNGKey(0), x[:1])
    matched, vm = fan_in_matched_baseline(mpe, v)
    assert isinstance(matched.encoding, Identity) and matched.encoding.pad == 2 and matched.hidden == (32, 32)
    assert vm["params"]["dense_0"]["kernel"].shape == (4, 32) and "encoding" not in vm["params"]
    zeroed = {"params": {**v["params"], "encoding": jax.tree.map(np.zeros_like, v["params"]["encoding"])}}
    np.testing.assert_array_equal(matched.apply(vm, x), mpe.apply(zeroed, x))
    s_base, _ = ntk_spectrum(base, base.init(jax.random.PRNGKey(0), x[:1]), x)
    s_matched, _ = ntk_spectrum(matched, vm, x)
    specs, kernels = ntk_spectrum(mpe, v, x, groups=True)
    c = theorem1_comparisons(specs["total"], baseline=s_base, fan_in_matched=s_matched, no_grid=specs["no_grid"])
    assert c["stated"]["verdict"] == "does not hold" and c["stated"]["first_below"] == 0
    assert c["fan_in_matched"]["verdict"] == "holds" and not c["fan_in_matched"]["by_construction"]
    assert c["own_no_grid"]["verdict"] == "holds" and c["own_no_grid"]["by_construction"]
    # The control built to fail: the same MPE network with its MLP scaled by 0.3 per layer.
    scaled_specs, scaled_k = ntk_spectrum(mpe, scale_mlp(v, 0.3), x, groups=True)
    bad = theorem1_comparisons(scaled_specs["total"], baseline=s_base, fan_in_matched=s_matched)
    assert bad["stated"]["fraction"] < 0.5 and bad["stated"]["min_log10_ratio"] < -1
    assert bad["fan_in_matched"]["verdict"] == "does not hold"
    # Weyl's bound holds for both, whatever the networks: an identity of the split.
    for k in (kernels, scaled_k):
        assert weyl_bound(k["no_grid"], k["grid"], k["total"])["holds"]
    with pytest.raises(ValueError, match="include_input"):
        fan_in_matched_baseline(base, base.init(jax.random.PRNGKey(0), x[:1]))


def _linear_gd(phi, y, lr, batch, steps_per_epoch, epochs, seed=0):
    """Brute-force SGD on the linear model f_o(x) = phi(x) . theta_o with the mean squared
    error over minibatch and channels, minibatches without replacement (full batch when
    batch == N). Returns the full-data residuals ``(T, N, O)`` at the ``epochs``."""
    n, p = phi.shape
    theta = np.zeros((p, y.shape[1]))
    out, rng = [], np.random.default_rng(seed)
    for e in range(max(epochs) + 1):
        if e in epochs:
            out.append(phi @ theta - y)
        for _ in range(steps_per_epoch):
            idx = rng.permutation(n)[:batch] if batch < n else np.arange(n)
            r = phi[idx] @ theta - y[idx]
            theta -= lr * (2.0 / (batch * y.shape[1])) * phi[idx].T @ r
    return np.array(out)


def test_prediction_is_exact_for_a_linear_model_under_full_batch_gd():
    """For a model linear in its parameters the NTK is constant, so full-batch gradient
    descent follows the prediction exactly (the brute-force oracle is plain NumPy GD)."""
    rng = np.random.default_rng(1)
    n, p, o = 40, 60, 3
    phi, y = rng.normal(size=(n, p)) / np.sqrt(p), rng.normal(size=(n, o))
    k = phi @ phi.T  # traced kernel of f_o = phi . theta_o (outputs do not share parameters)
    lam, q = eigh(k)
    epochs = [0, 1, 5, 20, 60]
    pred = predict_training(lam, q, -y, learning_rate=3.0, gradient_scale=loss_gradient_scale("mse", n, o),
                            batch_size=n, epoch_size=n, epochs=epochs)
    gd = np.mean(_linear_gd(phi, y, 3.0, n, 1, epochs) ** 2, axis=(1, 2))
    np.testing.assert_allclose(pred["loss"], gd, rtol=1e-10)
    assert pred["stable"] and pred["loss"][-1] < 0.5 * pred["loss"][0]
    # The bands split the loss without losing any of it.
    np.testing.assert_allclose(pred["bands"].sum(1), pred["loss"], rtol=1e-12)
    e0 = band_energies(lam, pred["coefficients"], pred["edges"])
    assert e0.sum() == pytest.approx(np.mean(y**2), rel=1e-12)


def test_prediction_tracks_minibatch_sgd_in_expectation_and_flags_instability():
    rng = np.random.default_rng(2)
    n, p, o = 64, 200, 1
    phi, y = rng.normal(size=(n, p)) / np.sqrt(p), rng.normal(size=(n, o))
    lam, q = eigh(phi @ phi.T)
    g = loss_gradient_scale("mse", 8, o)
    pred = predict_training(lam, q, -y, learning_rate=0.5, gradient_scale=g, batch_size=8, epoch_size=n,
                            epochs=[0, 10, 30])
    runs = np.array([_linear_gd(phi, y, 0.5, 8, 8, [0, 10, 30], seed=s) for s in range(64)])  # (S, T, N, O)
    # The prediction is the expected residual: it matches the residual averaged over SGD's
    # minibatch orders; the mean loss of single runs sits above it by SGD's noise.
    mean_residual_loss = np.mean(runs.mean(0) ** 2, axis=(1, 2))
    np.testing.assert_allclose(pred["loss"], mean_residual_loss, rtol=0.05)
    assert np.all(pred["loss"][1:] < np.mean(runs**2, axis=(0, 2, 3))[1:])
    critical = 2.0 / (g * (8 / n) * lam.max())  # |1 - eta g (B/N) lambda_max| = 1
    assert predict_training(lam, q, -y, learning_rate=1.01 * critical, gradient_scale=g, batch_size=8,
                            epoch_size=n, epochs=[1])["stable"] is False
    assert predict_training(lam, q, -y, learning_rate=0.99 * critical, gradient_scale=g, batch_size=8,
                            epoch_size=n, epochs=[1])["stable"] is True


def test_gradient_scale_and_band_edges():
    assert loss_gradient_scale("mse", 10, 3) == pytest.approx(2 / 30)
    assert loss_gradient_scale("mse", 10, 3, "sum_channels") == pytest.approx(0.2)
    with pytest.raises(ValueError, match="squared-error"):
        loss_gradient_scale("bce", 10, 1)
    edges = band_edges(np.array([5e2, 3.0, 1e-3]), 1e-9)
    assert edges[0] == 0 and edges[-1] > 5e2 and np.all(np.diff(edges) > 0)
    s = spectrum_from_kernel(np.diag([5e2, 3.0, 1e-3]))
    assert s.lambda_max == 5e2


def _reshuffled_sgd(phi, y, lr, batches):
    """Brute-force SGD on ``f(x_n) = phi[n] @ theta`` (``phi`` ``(N, O, P)``: the outputs
    share parameters, so the kernel has off-diagonal output blocks) with the mean squared
    error over the minibatch and channels, through the given epochs of minibatches (the
    training's reshuffled order). Returns the residual ``(N, O)`` after every epoch."""
    n, o, p = phi.shape
    theta, out = np.zeros(p), []
    for epoch in batches:
        for idx in epoch:
            r = phi[idx] @ theta - y[idx]  # (B, O)
            theta -= lr * (2.0 / (len(idx) * o)) * np.einsum("bop,bo->p", phi[idx], r)
        out.append(phi @ theta - y)
    return np.array(out)


def test_replay_is_sgd_for_a_model_linear_in_its_parameters():
    """Replay mode through the training's own reshuffled minibatches (B does not divide N, so
    the last batch wraps around) equals brute-force SGD to 1e-10 on the full output-block
    kernel; the traced kernel (independent outputs) and the expected step do not."""
    rng = np.random.default_rng(3)
    n, o, p, b = 30, 3, 40, 8
    phi, y = rng.normal(size=(n, o, p)) / np.sqrt(p), rng.normal(size=(n, o))
    full = np.einsum("nop,mqp->nomq", phi, phi).reshape(n * o, n * o)
    batches = [epoch_batches(7, e, n, b) for e in range(4)]
    assert batches[0].shape == (4, 8) and sorted(np.unique(batches[1])) == list(range(n))
    g = loss_gradient_scale("mse", b, o)
    sgd = _reshuffled_sgd(phi, y, 2.0, batches)
    rep = replay_training(full, -y, learning_rate=2.0, gradient_scale=g, batches=batches, epochs=[0, 1, 2, 4])
    assert rep["kernel"] == "full"
    np.testing.assert_allclose(rep["residuals"][1:], sgd[[0, 1, 3]], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rep["loss"][0], np.mean(y**2), rtol=1e-12)
    traced = full.reshape(n, o, n, o).trace(axis1=1, axis2=3) / o
    rep_t = replay_training(traced, -y, learning_rate=2.0, gradient_scale=g, batches=batches, epochs=[4])
    assert rep_t["kernel"] == "traced" and abs(rep_t["loss"][0] / rep["loss"][-1] - 1) > 1e-3
    lam, q = eigh(full)
    exp = predict_training(lam, q, -y, learning_rate=2.0, gradient_scale=g, batch_size=b, epoch_size=n, epochs=[4])
    assert exp["kernel"] == "full" and abs(exp["loss"][0] / rep["loss"][-1] - 1) > 1e-3


def test_replay_follows_the_training_step_batch_order():
    """The training epoch itself (float32) on a network linear in its parameters (no hidden
    layer) against the replay with its exact full kernel: the same minibatch order."""
    import jax.numpy as jnp
    import optax

    from ntkgrid.config import TrainConfig
    from ntkgrid.ntk import empirical_ntk
    from ntkgrid.training import make_epoch_fn

    rng = np.random.default_rng(4)
    n, b, o = 20, 6, 3
    cfg = TrainConfig(hidden=(), batch_size=b, beta=1.0, seed=5, learning_rate=0.5)
    x, y = rng.random((n, 2)).astype(np.float32), rng.random((n, o)).astype(np.float32)
    model = build_model(cfg, 2, o)
    v = model.init(jax.random.split(jax.random.PRNGKey(cfg.seed))[0], jnp.asarray(x[:1]))
    k = np.asarray(empirical_ntk(model, v, jnp.asarray(x), trace=False), np.float64)
    k = k.transpose(0, 2, 1, 3).reshape(n * o, n * o)
    r0 = np.asarray(model.apply(v, x), np.float64) - y
    step = make_epoch_fn(model, "mse", b, n)
    state, data_key = optax.sgd(1.0).init(v["params"]), jax.random.split(jax.random.PRNGKey(cfg.seed))[1]
    vv = jax.tree.map(jnp.array, v)
    for e in range(3):
        vv, state, _ = step(vv, state, data_key, np.int32(e), np.float32(cfg.learning_rate), jnp.asarray(x),
                            jnp.asarray(y))
    measured = np.asarray(model.apply(vv, x), np.float64) - y
    rep = replay_training(k, r0, learning_rate=cfg.learning_rate, gradient_scale=loss_gradient_scale("mse", b, o),
                          batches=[epoch_batches(cfg.seed, e, n, b) for e in range(3)], epochs=[3])
    np.testing.assert_allclose(rep["residuals"][0], measured, rtol=1e-4, atol=1e-5)
    other = replay_training(k, r0, learning_rate=cfg.learning_rate, gradient_scale=loss_gradient_scale("mse", b, o),
                            batches=[epoch_batches(cfg.seed + 1, e, n, b) for e in range(3)], epochs=[3])
    assert np.abs(other["residuals"][0] - measured).max() > 1e-3


def test_expected_step_against_reshuffled_epochs_on_a_diagonal_kernel():
    """The expected step is an approximation: on a diagonal kernel (N = 64, B = 16, r = 1) every point is visited
    once per reshuffled epoch (its residual times 1 - eta g d per epoch), which the i.i.d.
    model does not see; above eta g d = 2 the epochs diverge while the model says stable."""
    n, b, o = 64, 16, 1
    g = loss_gradient_scale("mse", b, o)
    k = np.eye(n)
    batches = [epoch_batches(0, e, n, b) for e in range(15)]
    r0 = np.ones((n, o))
    for eta_g_d, expected_loss, replay_loss in ((0.31, (1 - 0.31 / 4) ** 40, 0.69**10), (2.5, None, 1.5**30)):
        lr = eta_g_d / g
        rep = replay_training(k, r0, learning_rate=lr, gradient_scale=g, batches=batches, epochs=[5, 15])
        pred = predict_training(np.ones(n), np.eye(n), r0, learning_rate=lr, gradient_scale=g, batch_size=b,
                                epoch_size=n, epochs=[5])
        if expected_loss is not None:
            assert rep["loss"][0] == pytest.approx(replay_loss, rel=1e-12)
            assert pred["loss"][0] == pytest.approx(expected_loss, rel=1e-12)  # 0.0397 against 0.0245
        else:
            assert pred["stable"] and rep["loss"][1] == pytest.approx(replay_loss, rel=1e-12) and rep["loss"][1] > 1e5


def test_stable_ignores_eigenvalues_below_the_floor():
    """A kernel with one eigenvalue at -floor (rounding noise): stable at a step below the
    critical one; only a resolved eigenvalue can make the prediction unstable."""
    lam = np.array([2.0, 1.0, -1.1e-12])
    floor = 1.1e-12
    q = np.eye(3)
    g = loss_gradient_scale("mse", 3, 1)
    lr = 0.5 * 2.0 / (g * 2.0)
    pred = predict_training(lam, q, np.ones((3, 1)), learning_rate=lr, gradient_scale=g, batch_size=3,
                            epoch_size=3, epochs=[0, 1], floor=floor)
    assert pred["stable"] and pred["rate"][2] == 1.0
    assert abs(1 - lr * g * lam[2]) > 1  # the raw check |rate| <= 1 that this eigenvalue used to fail
    assert pred["loss"][1] == pytest.approx((0.0**2 + 0.5**2 + 1.0**2) / 3, rel=1e-12)  # rates 0, 0.5, 1
    unstable = predict_training(lam, q, np.ones((3, 1)), learning_rate=1.01 * 2 * lr, gradient_scale=g,
                                batch_size=3, epoch_size=3, epochs=[1], floor=floor)
    assert unstable["stable"] is False  # a resolved eigenvalue past the critical step still flips it
