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
    loss_gradient_scale,
    predict_training,
    scale_mlp,
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


def test_mean_comparison_uses_the_mean_curves():
    m = {"mean": np.array([3.0, 2.0, 1.0]), "floor": 1e-12}
    b = {"mean": np.array([2.0, 2.5, 0.5]), "floor": 1e-12}
    r = compare_mean_spectra(m, b)
    assert r["verdict"] == "does not hold" and r["first_below"] == 1 and r["fraction"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def window_16px():
    from skimage import data
    from skimage.transform import resize

    img = np.clip(resize(data.chelsea() / 255.0, (16, 16), anti_aliasing=True), 0, 1)
    return image_to_dataset(img)


def test_constructed_counterexample_does_not_hold(window_16px):
    """Same MLP, same points: the real MPE network against the baseline, then the same MPE
    network with its MLP scaled down by 0.3 per layer (its kernel falls below the
    baseline's). The comparison must say "does not hold" for the latter; Weyl's bound
    holds for both, whatever the networks, because it is an identity of the split."""
    x, _ = window_16px
    mpe = CoordinateMLP(MultiGrid(dim=2, num_levels=1, features_per_level=2, min_res=6, max_res=6), hidden=(64, 64))
    base = CoordinateMLP(Identity(), hidden=(64, 64))
    v_mpe = mpe.init(jax.random.PRNGKey(0), x[:1])
    v_base = base.init(jax.random.PRNGKey(0), x[:1])
    s_base, _ = ntk_spectrum(base, v_base, x)
    specs, kernels = ntk_spectrum(mpe, v_mpe, x, groups=True)
    real = compare_spectra(specs["total"], s_base)
    assert real["n_compared"] > 20 and np.isfinite(real["median_log10_ratio"])
    scaled_specs, scaled_k = ntk_spectrum(mpe, scale_mlp(v_mpe, 0.3), x, groups=True)
    bad = compare_spectra(scaled_specs["total"], s_base)
    assert bad["verdict"] == "does not hold" and bad["fraction"] < 0.5 and bad["min_log10_ratio"] < -1
    for k in (kernels, scaled_k):
        assert weyl_bound(k["no_grid"], k["grid"], k["total"])["holds"]


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
