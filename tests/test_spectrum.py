"""Spectra: float64 scoping, floors, resampling, the Weyl bound and PSD on a real image."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
import skimage.transform

from ntkgrid import CoordinateMLP, Identity, MultiGrid
from ntkgrid.spectrum import (
    Spectrum,
    baseline_below,
    kernel_change,
    mean_spectrum,
    ntk_spectrum,
    resample,
    spectrum_from_kernel,
    weyl_bound,
)


def _psd(n, rank, seed):
    a = np.random.default_rng(seed).normal(size=(n, rank))
    return a @ a.T


def test_spectrum_sorted_with_floor():
    k = _psd(50, 20, 0)
    s = spectrum_from_kernel(k)
    assert np.all(np.diff(s.eigenvalues) <= 0)
    assert s.floor == pytest.approx(50 * np.finfo(np.float64).eps * s.lambda_max)
    assert s.n_above_floor == 20  # rank 20: the other 30 are rounding noise below the floor
    assert np.all(np.abs(s.eigenvalues[20:]) < s.floor)
    assert Spectrum.from_dict(s.to_dict()).n_above_floor == 20


def test_full_kernel_is_flattened():
    k4 = np.random.default_rng(0).normal(size=(6, 6, 2, 2))
    k4 = k4 + k4.transpose(1, 0, 3, 2)
    flat = k4.transpose(0, 2, 1, 3).reshape(12, 12)
    assert np.allclose(spectrum_from_kernel(k4).eigenvalues, np.sort(np.linalg.eigvalsh(flat))[::-1])


@pytest.mark.parametrize("x", [np.zeros((0, 2)), np.array([[0.1, 0.2], [np.nan, 0.5]]),
                               np.array([[0.1, np.inf]]), np.zeros(3)])
def test_ntk_spectrum_refuses_empty_or_non_finite_x(x):
    model = CoordinateMLP(encoding=Identity(), hidden=(8,), out_dim=1)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"x must be \(N, d\) with N >= 1|NaN or infinite coordinates"):
        ntk_spectrum(model, params, x)


def test_non_finite_kernel_is_a_clear_error_not_an_eigensolver_failure():
    k = _psd(5, 5, 0)
    k[1, 2] = np.nan
    with pytest.raises(ValueError, match="kernel has 1 of 25 entries NaN or infinite"):
        spectrum_from_kernel(k)
    with pytest.raises(ValueError, match="kernel is empty"):
        spectrum_from_kernel(np.zeros((0, 0)))
    model = CoordinateMLP(encoding=Identity(), hidden=(8,), out_dim=1)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    params = jax.tree.map(lambda a: a * np.nan, params)  # a diverged model
    with pytest.raises(ValueError, match="NaN or infinite"):
        ntk_spectrum(model, params, np.random.default_rng(0).random((4, 2)))


def test_resample_and_mean():
    e = np.array([4.0, 2.0, 1.0])
    assert np.allclose(resample(e, 5), [4.0, 3.0, 2.0, 1.5, 1.0])
    s1, s2 = spectrum_from_kernel(_psd(30, 30, 1)), spectrum_from_kernel(_psd(45, 45, 2))
    m = mean_spectrum([s1, s2], 100)
    assert m["mean"].shape == (100,) and m["count"] == 2
    assert np.allclose(m["mean"], 0.5 * (s1.resample(100) + s2.resample(100)))
    assert m["mean"][0] == pytest.approx(0.5 * (s1.lambda_max + s2.lambda_max))


def test_weyl_bound_holds_and_detects_violation():
    a, b = _psd(40, 40, 3), _psd(40, 10, 4)
    r = weyl_bound(a, b)
    assert r["holds"] and r["margin"].shape == (40,) and r["margin"].min() >= -r["tolerance"]
    b_full = _psd(40, 40, 4)  # positive definite: lambda_min > 0 must lift every eigenvalue
    bad = weyl_bound(a, b_full, k_total=a)  # pretend the grid term added nothing
    assert not bad["holds"] and bad["max_violation"] > 0


def test_baseline_below_and_kernel_change():
    lo, hi = spectrum_from_kernel(_psd(20, 20, 5)), spectrum_from_kernel(10 * _psd(20, 20, 5))
    r = baseline_below(lo, hi)
    assert r["fraction"] == 1.0 and r["first_above"] is None
    assert baseline_below(hi, lo)["fraction"] == 0.0
    k = _psd(10, 10, 6)
    assert kernel_change(k, k) == 0.0 and kernel_change(k, 2 * k) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def camera_points():
    img = skimage.transform.resize(skimage.data.camera(), (24, 24), anti_aliasing=True)
    ys, xs = np.meshgrid(np.linspace(0, 1, 24), np.linspace(0, 1, 24), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32), img.reshape(-1, 1).astype(np.float32)


def test_float64_scoped_and_psd_on_a_real_image(camera_points):
    """Kernels of a network briefly trained on a real photo are symmetric PSD above the floor,
    computed in float64 while the caller stays in float32."""
    x, y = camera_points
    model = CoordinateMLP(MultiGrid(dim=2, num_levels=2, min_res=8, max_res=20), hidden=(64, 64), out_dim=1)
    v = model.init(jax.random.PRNGKey(0), x[:1])

    @jax.jit
    def step(v):
        g = jax.grad(lambda v: jnp.mean((model.apply(v, x) - y) ** 2))(v)
        return jax.tree.map(lambda p, g: p - 5.0 * g, v, g)

    for _ in range(20):
        v = step(v)
    specs, kernels = ntk_spectrum(model, v, x, groups="ops")
    assert not jax.config.jax_enable_x64 and jnp.zeros(1).dtype == jnp.float32
    for name in ("total", "mlp", "grid", "no_grid", "encoding/level_0"):
        s, k = specs[name], kernels[name]
        assert k.dtype == np.float64 and s.asymmetry <= 1e-12
        assert s.eigenvalues[-1] >= -s.floor, name
    assert weyl_bound(kernels["no_grid"], kernels["grid"], kernels["total"])["holds"]


def test_float32_kernel_is_worse_than_float64(camera_points):
    """The reason spectra are float64: a float32 kernel has spurious negative eigenvalues far
    below the float64 floor, and its tail is wrong."""
    x, _ = camera_points
    model = CoordinateMLP(Identity(), hidden=(256, 256), out_dim=1)
    v = model.init(jax.random.PRNGKey(0), x[:1])
    s64, _ = ntk_spectrum(model, v, x)
    from ntkgrid.ntk import empirical_ntk

    s32 = spectrum_from_kernel(empirical_ntk(model, v, x))  # float32 assembly
    assert s64.eigenvalues[-1] >= -s64.floor and s64.n_above_floor > 400
    assert s32.n_negative > 0 and s32.eigenvalues[-1] < -1e3 * s64.floor
    tail = slice(s64.n_above_floor - 100, s64.n_above_floor)
    rel = np.abs(s32.eigenvalues[tail] - s64.eigenvalues[tail]) / s64.eigenvalues[tail]
    assert rel.max() > 1e-2


# ----------------------------------------------------------------------------- training-set kernels


def test_jax_and_lapack_eigensolvers_agree_to_1e_12():
    from ntkgrid.spectrum import eigh, eigvalsh

    k = _psd(300, 300, 7) + _psd(300, 20, 8) * 1e3
    a, b = eigvalsh(k, "numpy"), eigvalsh(k, "jax")
    assert np.all(np.diff(a) <= 0)
    assert np.max(np.abs(a - b)) / a[0] <= 1e-12
    w, v = eigh(k, "jax")
    assert np.max(np.abs(w - a)) / a[0] <= 1e-12
    np.testing.assert_allclose((k @ v[:, :5]) / w[:5], v[:, :5], atol=1e-9)
    assert not jax.config.jax_enable_x64
    with pytest.raises(ValueError, match="backend"):
        eigvalsh(k, "cupy")


@pytest.mark.parametrize("kernel, expected", [
    (np.diag([1.0, 2.0, 3.0]), 0.0),
    (np.ones((4, 4)), 0.75),
    (np.array([[1.0, 1.0], [1.0, 1.0]]) + np.diag([2.0, 0.0]), 2 / 12),  # [[3, 1], [1, 1]]
])
def test_offdiag_fraction_table(kernel, expected):
    from ntkgrid.spectrum import offdiag_fraction

    assert offdiag_fraction(kernel) == pytest.approx(expected, abs=1e-15)


def test_strided_subset_hides_grid_sharing_that_the_full_image_shows():
    """A grid coarser than the image (8 nodes per side, 32 px): on a strided 4x4 subset no
    two points share a node, so the grid kernel is exactly diagonal; on the whole image
    (and on a contiguous window) neighbouring pixels share nodes."""
    from ntkgrid.data.images import eval_subset, image_to_dataset, ntk_window
    from ntkgrid.spectrum import offdiag_fraction

    img = np.random.default_rng(0).random((32, 32, 3))
    x, _ = image_to_dataset(img)
    model = CoordinateMLP(MultiGrid(dim=2, num_levels=1, features_per_level=2, min_res=8, max_res=8),
                          hidden=(32,), out_dim=3)
    v = model.init(jax.random.PRNGKey(0), x[:1])
    frac = {}
    for name, idx in (("strided", eval_subset((32, 32), 16)), ("window", ntk_window((32, 32), 256)[0]),
                      ("full", np.arange(32 * 32))):
        _, k = ntk_spectrum(model, v, x[idx], groups=True)
        frac[name] = offdiag_fraction(k["grid"])
    assert frac["strided"] == 0.0
    assert frac["full"] > 0.5 and frac["window"] > 0.5


def test_spectrum_to_arrays_from_arrays_round_trip():
    s = Spectrum(np.array([4.0, 1.0, -1e-18]), 2.5e-15, 2, 1, 3e-9)
    arrays = s.to_arrays("grid")
    assert sorted(arrays) == sorted(f"{f}/grid" for f in
                                    ("eigenvalues", "floor", "n_above_floor", "n_negative", "asymmetry"))
    assert arrays["n_above_floor/grid"].dtype == np.int64 and arrays["floor/grid"].dtype == np.float64
    back = Spectrum.from_arrays(arrays, "grid")
    np.testing.assert_array_equal(back.eigenvalues, s.eigenvalues)
    assert (back.floor, back.n_above_floor, back.n_negative, back.asymmetry) == (2.5e-15, 2, 1, 3e-9)
    with pytest.raises(KeyError):
        Spectrum.from_arrays(arrays, "total")
