"""MulFAGrid: shapes, dtypes, jit, gradients, its kernel's defining properties, and its
structured NTK against neural-tangents inside a CoordinateMLP."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ntkgrid import CoordinateMLP, MultiGrid
from ntkgrid.config import MulFAGridConfig, TrainConfig
from ntkgrid.encodings.mulfagrid import MulFAGrid, fourier_features, mfn_filters
from ntkgrid.gtk import gradient_descent, grid_model, gtk_change
from ntkgrid.ntk import nt_ntk, structured_ntk
from ntkgrid.training import fit

from ._cases import rel_err, to64

# name -> MulFAGrid, in 1D/2D/3D, per-feature and shared kernels.
GRIDS = {
    "1d": MulFAGrid(dim=1, num_levels=2, features_per_level=3, min_res=4, max_res=9),
    "2d": MulFAGrid(dim=2, num_levels=2, features_per_level=2, min_res=3, max_res=6),
    "2d_shared": MulFAGrid(dim=2, num_levels=1, features_per_level=2, min_res=5, max_res=5, shared_kernel=True),
    "3d": MulFAGrid(dim=3, num_levels=2, features_per_level=2, min_res=3, max_res=4, spacing="log",
                    filter_layers=3, filter_width=8),
}


def _points(d, n=11, seed=1, dtype=jnp.float32):
    return jax.random.uniform(jax.random.PRNGKey(seed), (n, d), dtype)


@pytest.mark.parametrize("name", ["1d", "3d"])
def test_shapes_dtypes_and_jit(name):
    enc = GRIDS[name]
    x = _points(enc.dim)
    v = jax.jit(enc.init)(jax.random.PRNGKey(0), x)
    res = enc.resolutions()
    assert set(v["params"]) == {f"level_{i}" for i in range(enc.num_levels)}
    for i, r in enumerate(res):
        assert v["params"][f"level_{i}"].shape == (r**enc.dim, enc.features_per_level)
        assert v["params"][f"level_{i}"].dtype == jnp.float32
    y = jax.jit(enc.apply)(v, x)
    assert y.shape == (11, enc.num_levels * enc.features_per_level) and y.dtype == jnp.float32
    np.testing.assert_allclose(enc.apply(v, x), y, rtol=1e-5, atol=1e-7)  # eager == jit
    with_x = jax.jit(enc.clone(include_input=True).apply)(v, x.reshape(11, 1, enc.dim))  # any batch shape
    assert with_x.shape == (11, 1, y.shape[1] + enc.dim)
    np.testing.assert_array_equal(with_x[:, 0, -enc.dim:], x)
    with jax.enable_x64(True):
        e64 = enc.clone(param_dtype=jnp.float64)
        x64 = x.astype(jnp.float64)
        assert jax.jit(e64.apply)(jax.jit(e64.init)(jax.random.PRNGKey(0), x64), x64).dtype == jnp.float64


@pytest.mark.parametrize("name", ["3d"])
def test_gradients_in_params_and_points(name):
    enc = GRIDS[name]
    with jax.enable_x64(True):
        e64 = enc.clone(param_dtype=jnp.float64)
        x = _points(enc.dim, dtype=jnp.float64) * 0.9 + 0.05
        v = jax.jit(e64.init)(jax.random.PRNGKey(0), x)
        g = jax.jit(jax.grad(lambda p: jnp.sum(e64.apply({"params": p}, x) ** 2)))(v["params"])
        assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(g))
        assert any(np.any(a != 0) for a in jax.tree.leaves(g))
        # d/dx through Fourier features, filters, normalisation (points inside cells).
        check_grads(jax.jit(lambda xx: e64.apply(v, xx)), (x,), order=1, modes=("fwd", "rev"), eps=1e-6)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_weights_are_a_positive_partition_of_unity(name):
    enc = GRIDS[name]
    x = jnp.concatenate([_points(enc.dim, 64), jnp.zeros((1, enc.dim)), jnp.ones((1, enc.dim))])
    for level in range(enc.num_levels):
        idx, w = jax.jit(enc.kernel, static_argnums=1)(x, level)
        k = 1 if enc.shared_kernel else enc.features_per_level
        assert idx.shape == (66, 2**enc.dim) and w.shape == (66, 2**enc.dim, k)
        assert np.all(np.asarray(w) >= 0)
        np.testing.assert_allclose(np.sum(np.asarray(w), axis=1), 1.0, rtol=1e-6)
        assert int(idx.max()) < enc.resolutions()[level] ** enc.dim and int(idx.min()) >= 0


@pytest.mark.parametrize("d", [3])
def test_zero_filter_scale_is_multilinear_interpolation(d):
    enc = MulFAGrid(dim=d, num_levels=2, features_per_level=2, min_res=3, max_res=7, filter_scale=0.0)
    mg = MultiGrid(dim=d, num_levels=2, features_per_level=2, min_res=3, max_res=7, include_input=False)
    x = _points(d, 50)
    v = jax.jit(enc.init)(jax.random.PRNGKey(0), x)
    ref = jax.jit(mg.apply)(v, x)
    np.testing.assert_allclose(jax.jit(enc.apply)(v, x), ref, rtol=1e-5, atol=1e-7)
    # ... while the default filters do change the interpolant.
    assert rel_err(jax.jit(enc.clone(filter_scale=1.0).apply)(v, x), ref) > 1e-2


@pytest.mark.parametrize("d", [1, 3])
def test_continuous_across_cell_faces(d):
    enc = MulFAGrid(dim=d, num_levels=1, features_per_level=2, min_res=5, max_res=5, init_std=1.0)
    with jax.enable_x64(True):
        e64 = enc.clone(param_dtype=jnp.float64)
        rng = np.random.default_rng(0)
        x = rng.uniform(0.05, 0.95, (20, d))
        x[:, 0] = rng.integers(1, 4, 20) / 4.0  # on an interior face along axis 0
        v = jax.jit(e64.init)(jax.random.PRNGKey(0), jnp.asarray(x))
        lo, hi = x.copy(), x.copy()
        lo[:, 0] -= 1e-9
        hi[:, 0] += 1e-9
        f = jax.jit(e64.apply)
        gap = np.abs(np.asarray(f(v, jnp.asarray(hi))) - np.asarray(f(v, jnp.asarray(lo))))
        step = np.zeros(d)
        step[0] = 0.1
        jump = np.abs(np.asarray(f(v, jnp.asarray(x + step))) - np.asarray(f(v, jnp.asarray(x))))
    assert gap.max() < 1e-6 * jump.max()


def test_kernel_uses_node_information_and_clamps():
    enc = GRIDS["1d"].clone(num_levels=1, min_res=9, max_res=9)
    frac = 0.3
    x = jnp.asarray([[(2 + frac) / 8], [(5 + frac) / 8]])  # same in-cell position, cells 2 and 5
    _, w = enc.kernel(x, 0)
    assert rel_err(w[0], w[1]) > 1e-3  # the filters see which nodes they sit on
    v = jax.jit(enc.init)(jax.random.PRNGKey(0), x)
    out = np.asarray(jax.jit(enc.apply)(v, jnp.asarray([[-0.5], [1.7], [0.0], [1.0]])))
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[1], out[3])


def test_filters_are_seeded_constants():
    a = mfn_filters(3, 2, 4, 8, 2, 2, 1.0)
    b = mfn_filters(3, 2, 4, 8, 2, 2, 1.0)
    c = mfn_filters(4, 2, 4, 8, 2, 2, 1.0)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W_0"], c["W_0"])
    assert a["W_0"].shape == (16, 8) and a["omega_1"].shape == (2, 8) and a["W_out"].shape == (8, 2)
    enc = GRIDS["2d"]
    assert not np.array_equal(enc.filters(0)["W_0"], enc.filters(1)["W_0"])  # one MFN per level
    u = jnp.linspace(0.0, 3.0, 7)[:, None]
    np.testing.assert_allclose(fourier_features(u + 2.0, 4), fourier_features(u, 4), atol=1e-5)  # period 2 cells


def test_learn_filters_trains_the_mfn_and_is_refused_by_the_structured_ntk():
    enc = GRIDS["2d"]
    learnt = enc.clone(learn_filters=True)
    x = _points(2, 9)
    vl = jax.jit(learnt.init)(jax.random.PRNGKey(0), x)
    v = {"params": {k: a for k, a in vl["params"].items() if k.startswith("level_")}}
    assert set(vl["params"]) == {"level_0", "level_1", "mfn_0", "mfn_1"}
    np.testing.assert_allclose(jax.jit(learnt.apply)(vl, x), jax.jit(enc.apply)(v, x), rtol=1e-6)  # same kernel
    g = jax.jit(jax.grad(lambda p: jnp.sum(learnt.apply({"params": p}, x) ** 2)))(vl["params"])
    assert float(jnp.abs(g["mfn_0"]["W_out"]).max()) > 0
    model = CoordinateMLP(learnt, (8,), 1)
    with pytest.raises(ValueError, match="covers"):
        structured_ntk(model, jax.jit(model.init)(jax.random.PRNGKey(0), x), x)
    with jax.enable_x64(True):  # training the kernel moves the GTK: Theorem 2 needs a fixed kernel
        x64 = x.astype(jnp.float64)
        gm = grid_model(learnt.clone(param_dtype=jnp.float64, init_std=0.3))
        w = jax.jit(gm.init)(jax.random.PRNGKey(0), x64)
        _, w1 = gradient_descent(gm, w, x64, np.cos(4 * np.asarray(x64[:, :1])), 0.05, (20,))
        assert gtk_change(gm, w, w1, x64) > 1e-4  # neural-tangents Jacobians w.r.t. the grid tables


@pytest.mark.parametrize("name,trace", [("2d", False), ("2d_shared", True), ("3d", True)])
def test_structured_ntk_equals_neural_tangents_in_coordinate_mlp(name, trace):
    enc = GRIDS[name]
    with jax.enable_x64(True):
        model = CoordinateMLP(enc.clone(param_dtype=jnp.float64, include_input=True), (12,), 2)
        x = _points(enc.dim, 13, dtype=jnp.float64).at[0].set(1.0).at[1].set(0.0)
        v = to64(jax.jit(model.init)(jax.random.PRNGKey(0), x))
        k = structured_ntk(model, v, x, trace=trace, block_size=8)
        ref = nt_ntk(model, v, x, method="jacobian", trace=trace)
    assert k.dtype == np.float64
    assert rel_err(k, ref) <= 1e-10


def test_encoding_config_builds_mulfagrid():
    cfg = MulFAGridConfig(num_levels=2, features_per_level=3, min_res=4, max_res=8, spacing="log")
    enc = cfg.build(2)
    assert isinstance(enc, MulFAGrid) and enc.resolutions() == [4, 8]
    model = CoordinateMLP(enc, (8,), 3)
    x = _points(2, 5)
    assert jax.jit(model.apply)(jax.jit(model.init)(jax.random.PRNGKey(0), x), x).shape == (5, 3)


def test_encoding_config_mfn_fields_reach_the_module():
    """Every MulFAGrid filter field of MulFAGridConfig is passed to the module; the learnt
    variant trains its MFN through ``fit`` with neural-tangents' spectra."""
    cfg = MulFAGridConfig(num_levels=1, min_res=6, max_res=6, num_frequencies=3, filter_width=8,
                          filter_layers=3, node_frequency_std=0.5, filter_scale=0.25, shared_kernel=True,
                          learn_filters=True, filter_seed=7)
    enc = cfg.build(2)
    assert (enc.num_frequencies, enc.filter_width, enc.filter_layers, enc.node_frequency_std, enc.filter_scale,
            enc.shared_kernel, enc.learn_filters, enc.filter_seed) == (3, 8, 3, 0.5, 0.25, True, True, 7)
    assert cfg.describe() == "k=2, L=1, x=6, learnt filters"
    assert MulFAGridConfig().describe().endswith("x=128")
    fields = {f.name for f in dataclasses.fields(MulFAGridConfig)}
    defaults = MulFAGridConfig().build(2)
    module_names = {"num_frequencies", "filter_width", "filter_layers", "node_frequency_std", "filter_scale",
                    "shared_kernel"}
    assert module_names <= fields
    for field in fields:  # the config's defaults are the module's
        assert getattr(MulFAGridConfig(), field) == getattr(defaults, field)
    x = _points(2, 64)
    y = jnp.cos(3.0 * x[:, :1])
    run = fit(TrainConfig(encoding=cfg, hidden=(16,), learning_rate=0.5, epochs=3, batch_size=16, checkpoints=(0, 3),
                          ntk_points=16, ntk_method="jacobian"), x, y)
    first, last = run.history[0], run.history[-1]
    assert last["loss"] < first["loss"] and last["spectrum"].n_above_floor > 0
    (mfn,) = [v["mfn_0"] for v in run.params["params"].values() if isinstance(v, dict) and "mfn_0" in v]
    assert float(jnp.abs(mfn["W_out"] - enc.filters(0)["W_out"]).max()) > 0  # the filters moved

