"""The structured NTK against neural-tangents' jacobian contraction, over every encoding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgrid import CoordinateMLP, FourierFeatures, GaussianFourierFeatures, Identity, MultiGrid
from ntkgrid.encodings import HashGrid
from ntkgrid.ntk import empirical_ntk, nt_ntk, structured_ntk

from ._cases import f32_matmul_tol, jacobian_ntk, rel_err

# name -> (encoding, d). Every encoding, with grids in 1D, 2D and 3D.
ENCODINGS = {
    "identity": (Identity(), 2),
    "fourier": (FourierFeatures(3), 2),
    "fourier_pi_input": (FourierFeatures(2, pi_factor=True, include_input=True), 3),
    "gaussian": (GaussianFourierFeatures(8, 2.0, dim=2), 2),
    "multigrid_1d": (MultiGrid(dim=1, num_levels=2, features_per_level=3, min_res=4, max_res=11), 1),
    "multigrid_2d": (MultiGrid(dim=2, num_levels=2, features_per_level=2, min_res=3, max_res=7), 2),
    "multigrid_3d": (MultiGrid(dim=3, num_levels=2, features_per_level=2, min_res=3, max_res=5, spacing="log"), 3),
    "hashgrid": (HashGrid(dim=2, num_levels=3, features_per_level=2, log2_table_size=5,
                          min_res=2, per_level_scale=2.0), 2),
}

# (encoding, hidden layers, outputs): every encoding; depths 1 to 8; 1 and 3 outputs.
CASES = [(name, (16,), 3) for name in ENCODINGS] + [
    ("multigrid_2d", (8,) * 8, 2),
    ("identity", (8,) * 4, 1),
    ("fourier", (12, 12), 1),
    ("hashgrid", (10, 10), 3),
]


def _setup(name, hidden, out_dim, n=13, seed=0):
    enc, d = ENCODINGS[name]
    model = CoordinateMLP(enc, hidden, out_dim)
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)  # float32 unless inside enable_x64
    x = jax.random.uniform(jax.random.PRNGKey(seed + 1), (n, d), dtype)
    x = x.at[0].set(1.0).at[1].set(0.0)  # domain edges
    v = jax.tree.map(lambda a: a.astype(dtype), model.init(jax.random.PRNGKey(seed), x))
    return model, v, x


@pytest.mark.parametrize("trace", [True, False])
@pytest.mark.parametrize("name,hidden,out_dim", CASES)
def test_structured_equals_jacobian_contraction(name, hidden, out_dim, trace):
    with jax.enable_x64(True):
        model, v, x = _setup(name, hidden, out_dim)
        k = structured_ntk(model, v, x, trace=trace, block_size=8)  # blocks that do not divide N
        ref = nt_ntk(model, v, x, method="jacobian", trace=trace)
    assert k.dtype == np.float64
    assert k.shape == ((13, 13) if trace else (13, 13, out_dim, out_dim))
    assert rel_err(k, ref) <= 1e-10


@pytest.mark.parametrize("name", ["multigrid_2d", "multigrid_3d", "hashgrid", "fourier"])
def test_groups_sum_to_total(name):
    with jax.enable_x64(True):
        model, v, x = _setup(name, (16, 16), 3)
        ks = structured_ntk(model, v, x, groups="ops", block_size=5)
    ops = [k for k in ks if k not in ("total", "mlp", "grid")]
    assert ops and all(("/" in k) or k.startswith("dense_") for k in ops)
    assert rel_err(sum(ks[k] for k in ops), ks["total"]) <= 1e-13
    levels = [k for k in ops if k.startswith("encoding/")]
    if levels:
        assert rel_err(ks["mlp"] + ks["grid"], ks["total"]) <= 1e-13
        assert rel_err(sum(ks[k] for k in levels), ks["grid"]) <= 1e-13
        # The grid group is neural-tangents' kernel restricted to the grid parameters.
        with jax.enable_x64(True):
            ref = nt_ntk(model, v, x, param_filter=lambda p: p.startswith("encoding/"))
        assert rel_err(ks["grid"], ref) <= 1e-10
    else:
        assert "grid" not in ks


def test_structured_matches_independent_jacrev_float32_tolerance():
    model, v, x = _setup("multigrid_2d", (16, 16), 3)
    x32, v32 = x.astype(jnp.float32), jax.tree.map(lambda a: a.astype(jnp.float32), v)
    k = empirical_ntk(model, v32, x32)
    ref = jacobian_ntk(model.apply, v32, x32, trace=True)
    assert k.dtype == np.float32
    assert rel_err(k, ref) <= f32_matmul_tol(1e-4)  # TF32 matmuls on a GPU


def test_untapped_parameters_are_refused():
    class WithPlainDense(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(CoordinateMLP(hidden=(4,), out_dim=3)(x))

    model = WithPlainDense()
    x = jnp.zeros((3, 2))
    v = model.init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="covers 27 of the model's 35 parameters"):
        structured_ntk(model, v, x)


def test_bad_inputs():
    model, v, x = _setup("identity", (4,), 1)
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        structured_ntk(model, v, x[None])
    with pytest.raises(ValueError, match="method must be one of"):
        empirical_ntk(model, v, x, method="nope")
    with pytest.raises(ValueError, match="groups=True needs"):
        empirical_ntk(model, v, x, method="jacobian", groups=True)


def test_kernel_is_symmetric_psd_and_blocking_invariant():
    with jax.enable_x64(True):
        model, v, x = _setup("multigrid_2d", (16, 16), 3, n=40)
        k1 = structured_ntk(model, v, x, block_size=40)
        k2 = structured_ntk(model, v, x, block_size=7)
    assert np.array_equal(k1, k1.T)
    assert rel_err(k1, k2) <= 1e-14
    eig = np.linalg.eigvalsh(k1)
    assert eig.min() > -40 * np.finfo(np.float64).eps * eig.max()


# Every activation x every encoding family: the structured kernel against a brute-force
# jacrev J J^T in float64 (tiny sizes). "siren" is the sine network in SIREN's own
# (standard) parameterisation; the others use the NTK parameterisation.
ACTIVATION_NETS = {
    "relu": dict(activation="relu"),
    "tanh": dict(activation="tanh"),
    "gaussian": dict(activation="gaussian", sigma=0.7),
    "sine": dict(activation="sine", omega0=3.0),
    "siren": dict(activation="sine", parameterization="siren"),
}
ACTIVATION_ENCODINGS = ("identity", "fourier", "multigrid_2d", "hashgrid")


@pytest.mark.parametrize("encoding", ACTIVATION_ENCODINGS)
@pytest.mark.parametrize("net", sorted(ACTIVATION_NETS))
def test_structured_equals_jacrev_for_every_activation(net, encoding):
    enc, d = ENCODINGS[encoding]
    model = CoordinateMLP(enc, (12, 10), 2, **ACTIVATION_NETS[net])
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.PRNGKey(1), (11, d), jnp.float64).at[0].set(1.0).at[1].set(0.0)
        v = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.PRNGKey(0), x))
        if encoding in ("multigrid_2d", "hashgrid"):  # grid tables off their near-zero init
            v = jax.tree_util.tree_map_with_path(
                lambda p, a: a * 50.0 if "encoding" in jax.tree_util.keystr(p) else a, v)
        k = structured_ntk(model, v, x, trace=False, block_size=4)
        ref = jacobian_ntk(model.apply, v, x, trace=False)
        assert np.max(np.abs(np.asarray(ref))) > 0
        assert rel_err(k, ref) <= 1e-12, net


def test_structured_equals_neural_tangents_for_sine():
    """SIREN (sine, its own parameterisation) with a multigrid encoding, traced and full."""
    enc, d = ENCODINGS["multigrid_2d"]
    model = CoordinateMLP(enc, (16, 16), 3, activation="sine", parameterization="siren")
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.PRNGKey(2), (10, d), jnp.float64)
        v = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.PRNGKey(0), x))
        for trace in (True, False):
            k = structured_ntk(model, v, x, trace=trace)
            ref = nt_ntk(model, v, x, method="jacobian", trace=trace)
            assert rel_err(k, ref) <= 1e-12


# Interpolation kernels x grids, d = 2 and 3: (grid, kernel, d). HashGrid has tcnn's three
# kernels (no cubic); tiny grids so that many points share nodes (a non-diagonal grid kernel).
KERNEL_CASES = [(grid, kernel, d) for d in (2, 3) for grid, kernels in
                (("multigrid", ("nearest", "linear", "smoothstep", "cubic")),
                 ("hashgrid", ("nearest", "linear", "smoothstep"))) for kernel in kernels]


def _kernel_model(grid, kernel, d):
    if grid == "multigrid":
        enc = MultiGrid(dim=d, num_levels=2 if d == 2 else 1, features_per_level=2, min_res=3, max_res=5 - (d == 3),
                        interpolation=kernel)
    else:
        enc = HashGrid(dim=d, num_levels=2, features_per_level=2, log2_table_size=4, min_res=3,
                       per_level_scale=1.5, interpolation=kernel)
    return CoordinateMLP(enc, (8,), 2)


@pytest.mark.parametrize("grid,kernel,d", KERNEL_CASES, ids=lambda v: str(v))
def test_structured_exact_for_every_interpolation_kernel(grid, kernel, d):
    """The structured NTK (1, 2**d or 4**d taps per point) equals a brute-force jacrev J J^T
    in float64 to 1e-12, the grid group included."""
    with jax.enable_x64(True):
        model = _kernel_model(grid, kernel, d)
        x = jax.random.uniform(jax.random.PRNGKey(1), (9, d), jnp.float64).at[0].set(1.0).at[1].set(0.0)
        v = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.PRNGKey(0), x))
        ks = structured_ntk(model, v, x, groups=True, block_size=5)
        ref = jacobian_ntk(model.apply, v, x, trace=True)
        grid_ref = jacobian_ntk(lambda g, p: model.apply({"params": {**v["params"], **g["params"]}}, p),
                                {"params": {"encoding": v["params"]["encoding"]}}, x, trace=True)
    assert rel_err(ks["total"], ref) <= 1e-12
    assert rel_err(ks["grid"], grid_ref) <= 1e-12
    off = ks["grid"] - np.diag(np.diag(ks["grid"]))
    assert np.any(off != 0.0)  # points share nodes: the comparison covers the off-diagonal terms


def test_hashgrid_refuses_cubic():
    with pytest.raises(ValueError, match="HashGrid interpolation 'cubic' is not supported: tiny-cuda-nn"):
        _kernel_model("hashgrid", "cubic", 2).init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
