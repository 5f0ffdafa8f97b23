"""The grid tangent kernel and Zhao et al.'s three results, checked against independent
computations (neural-tangents, scipy's expm, actual gradient descent, brute force)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from ntkgrid import CoordinateMLP, FourierFeatures, MultiGrid
from ntkgrid.encodings import HashGrid, MulFAGrid
from ntkgrid.gtk import (
    GridModel,
    fourier_rayleigh,
    gd_ode_tolerance,
    generalisation_bound,
    generalisation_bound_map,
    gradient_descent,
    grid_model,
    gtk,
    gtk_change,
    gtk_gd_prediction,
    gtk_ode_prediction,
)
from ntkgrid.ntk import nt_ntk, structured_ntk

from ._cases import rel_err, to64

GRIDS = {
    "multigrid": MultiGrid(dim=2, num_levels=2, features_per_level=2, min_res=3, max_res=6),
    "hashgrid": HashGrid(dim=2, num_levels=2, features_per_level=2, log2_table_size=4, min_res=3),
    "mulfagrid": MulFAGrid(dim=2, num_levels=2, features_per_level=2, min_res=3, max_res=6),
}


def _x(n, seed=1):
    return jax.random.uniform(jax.random.PRNGKey(seed), (n, 2), jnp.float64)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_gtk_is_the_grid_part_of_the_ntk_and_neural_tangents_restricted_to_grid_params(name):
    enc = GRIDS[name].clone(param_dtype=jnp.float64)
    with jax.enable_x64(True):
        x = _x(12).at[0].set(1.0).at[1].set(0.0)
        mlp = CoordinateMLP(enc, (8,), 2)
        v = to64(jax.jit(mlp.init)(jax.random.PRNGKey(0), x))
        g = gtk(mlp, v, x)
        grid = structured_ntk(mlp, v, x, groups=True)["grid"]
        ref = nt_ntk(mlp, v, x, param_filter=lambda p: p.startswith("encoding/"))
        # A bare encoding is the grid model g(x) = sum_f enc(x)_f.
        ve = {"params": v["params"]["encoding"]}
        g_enc = gtk(enc, ve, x)
        if name == "mulfagrid":  # the bare-encoding path is the same for every encoding
            assert rel_err(g_enc, nt_ntk(grid_model(enc), {"params": {"encoding": ve["params"]}}, x)) <= 1e-10
    assert g.dtype == np.float64 and g.shape == (12, 12)
    assert rel_err(g, grid) <= 1e-10
    assert rel_err(g, ref) <= 1e-10
    assert rel_err(g_enc, g) > 1e-3  # the MLP's cotangents weight the grid term


@pytest.mark.parametrize("name", ["multigrid", "mulfagrid"])
def test_gradient_descent_follows_the_gtk_ode_and_the_gtk_is_stationary(name):
    """Result 1 and 2 on a model linear in its grid parameters, with L = 1/2 sum (O - Y)^2."""
    with jax.enable_x64(True):
        x = _x(24)
        y = np.sin(2 * np.pi * x[:, :1]) * np.cos(np.pi * x[:, 1:])
        model = grid_model(GRIDS[name].clone(param_dtype=jnp.float64, init_std=0.3))
        v = jax.jit(model.init)(jax.random.PRNGKey(0), x)
        g = gtk(model, v, x)
        lr = 0.05 / np.linalg.eigvalsh(g)[-1]
        steps = (0, 5, 40, 300)
        outs, v_end = gradient_descent(model, v, x, y, lr, steps)
        change = gtk_change(model, v, v_end, x)
    o0 = outs[0]
    scale = np.linalg.norm(o0 - y)
    tol = gd_ode_tolerance(g, lr)
    ode_gaps = []
    for s, o in zip(steps, outs, strict=True):
        assert rel_err(o, gtk_gd_prediction(g, o0, y, lr, s)) <= 1e-9  # exact discrete dynamics
        ode_gaps.append(np.linalg.norm(o - gtk_ode_prediction(g, o0, y, lr * s)) / scale)
    assert max(ode_gaps) <= tol
    assert max(ode_gaps) > 1e-3 * tol  # the two predictions do differ: the check is not vacuous
    assert np.linalg.norm(outs[-1] - y) < 0.9 * scale  # it learnt something
    assert change <= 1e-12


def test_multi_output_gd_follows_the_full_kernel():
    """Per-feature MulFAGrid weights: outputs couple through the full (N, N, O, O) GTK."""
    with jax.enable_x64(True):
        x = _x(10)
        y = np.stack([np.sin(3 * x[:, 0]), x[:, 1] ** 2], axis=1)
        model = grid_model(GRIDS["mulfagrid"].clone(param_dtype=jnp.float64, num_levels=1), readout="features")
        v = jax.jit(model.init)(jax.random.PRNGKey(0), x)
        full = gtk(model, v, x, trace=False)
        lr = 0.1 / np.linalg.eigvalsh(full.transpose(0, 2, 1, 3).reshape(20, 20))[-1]
        outs, _ = gradient_descent(model, v, x, y, lr, (0, 50))
    assert full.shape == (10, 10, 2, 2) and np.abs(full[:, :, 0, 1]).max() == 0.0  # features decouple...
    assert rel_err(full[:, :, 0, 0], full[:, :, 1, 1]) > 1e-3  # ...but each has its own kernel
    assert rel_err(outs[1], gtk_gd_prediction(full, outs[0], y, lr, 50)) <= 1e-9
    traced = 0.5 * (full[:, :, 0, 0] + full[:, :, 1, 1])
    assert rel_err(outs[1], gtk_gd_prediction(traced, outs[0], y, lr, 50)) > 1e-6  # G kron I is wrong here


def test_gtk_moves_when_the_model_is_not_linear_in_the_grid():
    """The grid term of a CoordinateMLP's NTK depends on the MLP, which trains; MulFAGrid with
    learnt filters is checked in tests/test_mulfagrid.py."""
    with jax.enable_x64(True):
        x = _x(16)
        y = np.cos(4 * x[:, :1])
        mlp = CoordinateMLP(GRIDS["multigrid"].clone(param_dtype=jnp.float64, init_std=0.3), (8,), 1)
        v = to64(jax.jit(mlp.init)(jax.random.PRNGKey(0), x))
        _, v1 = gradient_descent(mlp, v, x, y, 0.05, (20,))
        assert gtk_change(mlp, v, v1, x, method="structured") > 1e-4


def test_ode_prediction_matches_expm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 4))
    g = a @ a.T  # singular PSD
    o0, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    for t in (0.0, 0.3, 5.0):
        ref = y + scipy.linalg.expm(-g * t) @ (o0 - y)
        assert rel_err(gtk_ode_prediction(g, o0, y, t), ref) <= 1e-12
    traj = gtk_ode_prediction(g, o0[:, 0], y[:, 0], np.array([0.0, 1.0]))
    assert traj.shape == (2, 6) and np.allclose(traj[0], o0[:, 0])
    # Infinite time leaves the null-space component of the residual untouched.
    _, vecs = np.linalg.eigh(g)
    null = vecs[:, :2]
    late = gtk_ode_prediction(g, o0[:, 0], y[:, 0], 1e6)
    np.testing.assert_allclose(late - y[:, 0], null @ null.T @ (o0[:, 0] - y[:, 0]), atol=1e-9)


@pytest.mark.parametrize("a", [1e-3, 0.05, 0.5])
def test_gd_ode_tolerance_bounds_the_scalar_gap(a):
    g = np.diag([a, a / 3])
    tol = gd_ode_tolerance(g, 1.0)
    s = np.arange(0, 20000)
    gap = np.max(np.exp(-a * s) - (1 - a) ** s)
    assert gap <= tol <= gap / (1 - a)  # tight for small steps
    with pytest.raises(ValueError, match="below 1"):
        gd_ode_tolerance(g, 1.0 / a)


def test_generalisation_bound():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 5))
    g = a @ a.T + 0.1 * np.eye(5)
    y = rng.normal(size=5)
    assert math.isclose(generalisation_bound(g, y), math.sqrt(2 * y @ np.linalg.solve(g, y) / 5), rel_tol=1e-12)
    singular = np.outer(y, y)
    with pytest.raises(ValueError, match="ridge"):
        generalisation_bound(singular, y)
    ridge = 1e-3
    assert math.isclose(generalisation_bound(singular, y, ridge),
                        math.sqrt(2 * y @ np.linalg.solve(singular + ridge * np.eye(5), y) / 5), rel_tol=1e-10)
    g2 = g[:2, :2]
    y1, y2 = np.linspace(-1, 1, 5), np.linspace(-2, 2, 3)
    m = generalisation_bound_map(g2, y1, y2)
    assert m.shape == (3, 5)
    for j, b in enumerate(y2):
        for i, a_ in enumerate(y1):
            assert math.isclose(m[j, i], generalisation_bound(g2, np.array([a_, b])), rel_tol=1e-12, abs_tol=1e-15)


def test_fourier_rayleigh_is_the_kernel_diagonal_in_the_fourier_basis():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(12, 12))
    g = a @ a.T
    s = fourier_rayleigh(g, (3, 4))
    idx = np.stack(np.meshgrid(np.arange(3), np.arange(4), indexing="ij"), -1).reshape(-1, 2)
    for u in range(3):
        for w in range(4):
            v = np.exp(2j * np.pi * (idx[:, 0] * u / 3 + idx[:, 1] * w / 4))
            assert math.isclose(s[u, w], np.real(v.conj() @ g @ v) / 12, rel_tol=1e-12)
    assert math.isclose(s.sum(), np.trace(g), rel_tol=1e-12)  # Parseval: the modes split the trace


def test_grid_model_construction():
    enc = MultiGrid(dim=2, num_levels=1, min_res=3, max_res=3)  # include_input=True by default
    key, x = jax.random.PRNGKey(0), jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="grid_model"):
        jax.eval_shape(GridModel(enc).init, key, x)
    v = jax.eval_shape(grid_model(enc).init, key, x)
    assert jax.eval_shape(grid_model(enc).apply, v, x).shape == (4, 1)
    assert jax.eval_shape(grid_model(enc, "features").apply, v, x).shape == (4, 2)
    with pytest.raises(ValueError, match="readout"):
        jax.eval_shape(grid_model(enc, "mean").apply, v, x)
    mlp = CoordinateMLP(FourierFeatures(2), (4,), 1)
    with pytest.raises(ValueError, match="no grid levels"):
        gtk(mlp, jax.jit(mlp.init)(key, x), x)
