"""Theorem 1 as the paper states it (a check that can fail) and the kernel-regression
prediction of training (Eqs. 5-7) against brute-force gradient descent."""

import jax
import numpy as np
import pytest

from ntkgrid import CoordinateMLP, Identity, MultiGrid
from ntkgrid.data.images import image_to_dataset
from ntkgrid.spectrum import Spectrum, eigh, ntk_spectrum, spectrum_from_kernel, weyl_bound
from ntkgrid.theory import (
    band_edges,
    band_energies,
    compare_mean_spectra,
    compare_spectra,
    fan_in_matched_baseline,
    loss_gradient_scale,
    predict_training,
    scale_mlp,
    theorem1_comparisons,
)


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
