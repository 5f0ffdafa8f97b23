"""Every encoding through one table of cases, plus the definitions of each encoding and of
CoordinateMLP's NTK parameterisation, checked against hand-written NumPy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ntkgrid.encodings import (
    FourierFeatures,
    GaussianFourierFeatures,
    HashGrid,
    Identity,
    MulFAGrid,
    MultiGrid,
    level_resolutions,
)
from ntkgrid.models import CoordinateMLP, NTKDense

from ._cases import f32_matmul_tol

TOL = {jnp.float32: 1e-5, jnp.float64: 1e-12}  # relative to the scale of the values compared
# The same for values that went through float32 matmuls (TF32 on a GPU, see tests/_cases.py).
TOL_MATMUL = {jnp.float32: f32_matmul_tol(TOL[jnp.float32]), jnp.float64: TOL[jnp.float64]}
BATCH_SHAPES = [(), (7,), (3, 5)]


@dataclasses.dataclass(frozen=True)
class Case:
    """One encoding: ``make(param_dtype)`` builds it; ``n_out`` is its feature-count formula."""

    id: str
    dim: int
    n_out: int
    make: Callable[[jnp.dtype], nn.Module]


# Feature counts: Identity d; paper Fourier 2 d L (+ d with the input); Gaussian 2 m (+ d);
# MultiGrid L k + d; HashGrid L F; MulFAGrid L k. Adding an encoding is one line here.
CASES = [
    Case("identity-2d", 2, 2, lambda dt: Identity(dim=2)),
    Case("fourier-paper-3d", 3, 2 * 3 * 4, lambda dt: FourierFeatures(4)),
    Case("fourier-pi-input-1d", 1, 2 * 1 * 3 + 1, lambda dt: FourierFeatures(3, pi_factor=True, include_input=True, dim=1)),
    Case("gaussian-input-2d", 2, 2 * 6 + 2, lambda dt: GaussianFourierFeatures(6, 3.0, dim=2, include_input=True)),
    Case("multigrid-1d-linear", 1, 3 * 2 + 1, lambda dt: MultiGrid(1, 3, 2, 4, 16, param_dtype=dt)),
    Case("multigrid-2d-log", 2, 3 * 4 + 2, lambda dt: MultiGrid(2, 3, 4, 3, 12, "log", param_dtype=dt)),
    Case("multigrid-2d-linear-smoothstep", 2, 2 * 2 + 2,
         lambda dt: MultiGrid(2, 2, 2, 5, 9, interpolation="smoothstep", param_dtype=dt)),
    Case("multigrid-2d-cubic", 2, 2 * 2 + 2, lambda dt: MultiGrid(2, 2, 2, 4, 7, interpolation="cubic", param_dtype=dt)),
    Case("multigrid-3d-nearest", 3, 1 * 2 + 3, lambda dt: MultiGrid(3, 1, 2, 4, 4, interpolation="nearest", param_dtype=dt)),
    Case("multigrid-3d-log-noinput", 3, 3 * 1, lambda dt: MultiGrid(3, 3, 1, 2, 8, "log", include_input=False, param_dtype=dt)),
    Case("hashgrid-2d", 2, 4 * 2, lambda dt: HashGrid(2, 4, 2, log2_table_size=6, min_res=3, param_dtype=dt)),
    Case("hashgrid-3d-input", 3, 2 * 2 + 3, lambda dt: HashGrid(3, 2, 2, 7, 3, 2.0, include_input=True, param_dtype=dt)),
    Case("mulfagrid-2d", 2, 2 * 2, lambda dt: MulFAGrid(2, 2, 2, 3, 6, filter_width=4, filter_layers=1, param_dtype=dt)),
]
PARAMS = [pytest.param(c, id=c.id) for c in CASES]


def points(shape, dim, dtype, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(0.02, 0.98, shape + (dim,)), dtype)


def random_variables(module, x, seed=0):
    """Variables with ``module.init``'s structure, shapes and dtypes (from ``jax.eval_shape``,
    which traces ``init`` without compiling it) and N(0, 0.5^2) values, so that every
    parameter matters. Initial distributions are tested separately below."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.5, s.shape), s.dtype), shapes)


def init_and_apply(module, x, seed=0):
    """The real ``init`` and an ``apply``, compiled together once."""

    @jax.jit
    def run(key, p):
        variables = module.init(key, p)
        return variables, module.apply(variables, p)

    return run(jax.random.PRNGKey(seed), x)


def scale_tol(dtype, *arrays, table=TOL):
    return table[dtype] * max(float(np.max(np.abs(np.asarray(a, np.float64)))) for a in arrays)


# ----------------------------------------------------------------------------- the table


@pytest.mark.parametrize("case", PARAMS)
def test_float32_shapes_batches_jit_vmap_grads_mlp(case):
    x = points((3, 5), case.dim, jnp.float32)
    module = case.make(jnp.float32)
    model = CoordinateMLP(module, hidden=(8,), out_dim=2)
    variables, mlp_vars = random_variables(module, x), random_variables(model, x, seed=1)
    for leaf in jax.tree.leaves((variables, mlp_vars)):
        assert leaf.dtype == jnp.float32
    assert set(mlp_vars["params"]) >= {"dense_0", "dense_1"}
    pts = x.reshape(-1, case.dim)
    batches = [pts[: int(np.prod(s))].reshape(s + (case.dim,)) for s in BATCH_SHAPES]

    def loss(v, mv, p):
        return jnp.sum(module.apply(v, p) ** 2) + jnp.sum(model.apply(mv, p) ** 2)

    @jax.jit
    def everything(v, mv, batches):  # one compilation: every batch shape, vmap, the MLP, grads
        outs = [module.apply(v, b) for b in batches]
        mapped = jax.vmap(module.apply, in_axes=(None, 0))(v, pts)
        return outs, mapped, model.apply(mv, x), jax.grad(loss, argnums=(0, 1, 2))(v, mv, x)

    outs, mapped, mlp_out, grads = everything(variables, mlp_vars, batches)
    flat = outs[-1].reshape(-1, case.n_out)  # the (3, 5) batch
    assert np.all(np.isfinite(np.asarray(flat)))
    tol = scale_tol(jnp.float32, flat, table=TOL_MATMUL)  # MulFAGrid's filters and the MLP use matmuls
    for shape, out in zip(BATCH_SHAPES, outs, strict=True):  # same values point by point
        assert out.shape == shape + (case.n_out,) and out.dtype == jnp.float32
        np.testing.assert_allclose(out.reshape(-1, case.n_out), flat[: out.size // case.n_out], atol=tol)
    np.testing.assert_allclose(mapped, flat, atol=tol)
    assert mlp_out.shape == (3, 5, 2) and mlp_out.dtype == jnp.float32

    # Gradients w.r.t. parameters and inputs, bare and inside the CoordinateMLP.
    for g, v in zip(jax.tree.leaves(grads[:2]), jax.tree.leaves((variables, mlp_vars)), strict=True):
        assert g.shape == v.shape and g.dtype == v.dtype and np.all(np.isfinite(np.asarray(g)))
    assert grads[2].shape == x.shape and grads[2].dtype == jnp.float32 and np.any(np.asarray(grads[2]) != 0)
    for g in (grads[0], grads[1]["params"].get("encoding", {})):  # the encoding's parameters are trained
        assert all(np.any(np.asarray(leaf) != 0) for leaf in jax.tree.leaves(g))


@pytest.mark.parametrize("case", PARAMS)
def test_float64_params_inputs_and_gradients(case):
    """float64 end to end; grads w.r.t. params and inputs match central differences."""
    with jax.enable_x64(True):
        x = points((4,), case.dim, jnp.float64, seed=1)
        module = case.make(jnp.float64)
        variables = random_variables(module, x)
        for leaf in jax.tree.leaves(variables):
            assert leaf.dtype == jnp.float64
        f = jax.jit(module.apply)
        out = f(variables, x)
        assert out.shape == (4, case.n_out) and out.dtype == jnp.float64
        check_grads(f, (variables, x), order=1, modes=("rev",), eps=1e-6)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES if c.id == "multigrid-2d-log"])
def test_init_float32_and_float64(case):
    """The real ``init`` (compiled once per dtype here; elsewhere its shapes are traced)."""
    for dtype in (jnp.float32, jnp.float64):
        with jax.enable_x64(dtype == jnp.float64):
            x = points((2,), case.dim, dtype)
            variables, out = init_and_apply(case.make(dtype), x)
            assert out.shape == (2, case.n_out) and out.dtype == dtype
            for leaf in jax.tree.leaves(variables):
                assert leaf.dtype == dtype and np.all(np.isfinite(np.asarray(leaf)))


# ----------------------------------------------------------------------------- definitions


@pytest.mark.parametrize("pi_factor, include_input", [(False, False), (True, False), (True, True)])
def test_fourier_features_eq1_order(pi_factor, include_input):
    """Eq. 1: [sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)], blocks of d."""
    with jax.enable_x64(True):
        x = np.random.default_rng(3).uniform(0, 1, (5, 3))
        out = FourierFeatures(4, pi_factor=pi_factor, include_input=include_input).apply({}, jnp.asarray(x))
    expect = []
    for p in x:
        row = []
        for level in range(4):
            freq = 2.0**level * (np.pi if pi_factor else 1.0)
            row += [np.sin(freq * p[0]), np.sin(freq * p[1]), np.sin(freq * p[2])]
            row += [np.cos(freq * p[0]), np.cos(freq * p[1]), np.cos(freq * p[2])]
        if include_input:
            row += list(p)
        expect.append(row)
    np.testing.assert_allclose(np.asarray(out), np.array(expect), rtol=0, atol=TOL[jnp.float64])


def test_gaussian_fourier_features_definition():
    with jax.enable_x64(True):
        enc = GaussianFourierFeatures(5, sigma=2.0, dim=2, seed=7)
        x = np.random.default_rng(4).uniform(0, 1, (6, 2))
        out = np.asarray(enc.apply({}, jnp.asarray(x)))
    b = np.random.default_rng(7).normal(0.0, 2.0, (5, 2))
    np.testing.assert_allclose(enc.frequencies(), b)
    arg = 2 * np.pi * x @ b.T
    np.testing.assert_allclose(out, np.concatenate([np.sin(arg), np.cos(arg)], -1), atol=TOL[jnp.float64])


def test_level_resolutions():
    assert level_resolutions(4, 16, 128, "linear") == [16, 53, 91, 128]  # round(linspace)
    assert level_resolutions(4, 16, 128, "log") == [16, 32, 64, 128]  # constant factor 2
    assert level_resolutions(3, 10, 1000, "log") == [10, 100, 1000]
    assert level_resolutions(1, 16, 64) == [64]
    assert MultiGrid(2, 5, min_res=4, max_res=20).resolutions() == [4, 8, 12, 16, 20]
    with pytest.raises(ValueError, match="spacing"):
        level_resolutions(3, 4, 8, "cubic")


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_multigrid_params_init_and_raw_input(dim):
    enc = MultiGrid(dim, num_levels=3, features_per_level=3, min_res=4, max_res=(800, 40, 12)[dim - 1])
    x = points((9,), dim, jnp.float32, seed=5)
    params, out = init_and_apply(enc, x, seed=2)
    params = params["params"]
    res = enc.resolutions()
    assert sorted(params) == [f"level_{i}" for i in range(3)]
    for i, r in enumerate(res):
        assert params[f"level_{i}"].shape == (r**dim, 3)
    values = np.concatenate([np.asarray(v).ravel() for v in params.values()])
    n = values.size  # std of N(0, 0.01^2): sample std within 6 standard errors
    assert n > 1000
    assert abs(values.std() - 0.01) < 6 * 0.01 / np.sqrt(2 * n)
    assert abs(values.mean()) < 6 * 0.01 / np.sqrt(n)
    assert out.shape == (9, 3 * 3 + dim)
    np.testing.assert_array_equal(np.asarray(out[:, -dim:]), np.asarray(x))  # raw input last


def test_multigrid_wrong_dimension_message():
    enc = MultiGrid(2, num_levels=2, min_res=4, max_res=8)
    with pytest.raises(ValueError, match=r"expects coordinates of shape \(\.\.\., 2\), got shape \(5, 3\)"):
        enc.init(jax.random.PRNGKey(0), jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\).*\(\)"):
        enc.init(jax.random.PRNGKey(0), jnp.zeros(()))


# ----------------------------------------------------------------------------- CoordinateMLP


def test_ntk_parameterisation_by_hand():
    with jax.enable_x64(True):
        fan_in, width = 400, 300
        layer = NTKDense(width, param_dtype=jnp.float64)
        a = jnp.asarray(np.random.default_rng(6).normal(size=(5, fan_in)))
        p = layer.init(jax.random.PRNGKey(3), a)["params"]
        w, b = np.asarray(p["kernel"]), np.asarray(p["bias"])
        assert w.shape == (fan_in, width) and b.shape == (width,)
        assert abs(w.std() - 1.0) < 6 / np.sqrt(2 * w.size) and abs(w.mean()) < 6 / np.sqrt(w.size)
        assert abs(b.std() - 1.0) < 6 / np.sqrt(2 * b.size) and abs(b.mean()) < 6 / np.sqrt(b.size)
        out = np.asarray(layer.apply({"params": p}, a))
        np.testing.assert_allclose(out, np.asarray(a) @ w / np.sqrt(fan_in) + 0.1 * b, rtol=1e-12, atol=1e-12)

        std = NTKDense(width, parameterization="standard", param_dtype=jnp.float64)
        ps = std.init(jax.random.PRNGKey(3), a)["params"]
        ws, bs = np.asarray(ps["kernel"]), np.asarray(ps["bias"])
        assert np.all(bs == 0) and abs(ws.std() - 1 / np.sqrt(fan_in)) < 0.05 / np.sqrt(fan_in)
        np.testing.assert_allclose(np.asarray(std.apply({"params": ps}, a)), np.asarray(a) @ ws + bs, rtol=1e-12, atol=1e-12)
        with pytest.raises(ValueError, match="parameterization"):
            NTKDense(3, parameterization="mup").init(jax.random.PRNGKey(0), a)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_coordinate_mlp_by_hand(parameterization):
    with jax.enable_x64(True):
        enc = FourierFeatures(2)
        model = CoordinateMLP(enc, hidden=(6, 5), out_dim=3, parameterization=parameterization, param_dtype=jnp.float64)
        x = jnp.asarray(np.random.default_rng(7).uniform(0, 1, (4, 2)))
        variables, out = init_and_apply(model, x, seed=4)
        p = variables["params"]
        h = np.asarray(enc.apply({}, x))
        for i in range(3):
            w, b = np.asarray(p[f"dense_{i}"]["kernel"]), np.asarray(p[f"dense_{i}"]["bias"])
            if parameterization == "ntk":
                h = h @ w / np.sqrt(w.shape[0]) + 0.1 * b
            else:
                h = h @ w + b
            if i < 2:
                h = np.maximum(h, 0.0)
        np.testing.assert_allclose(np.asarray(out), h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", ["nearest", "linear", "smoothstep", "cubic"])
def test_multigrid_kernels_match_interpolate_dense(kernel):
    """Each level of MultiGrid(interpolation=k) is interpolate_dense(..., k) of its table."""
    from ntkgrid.interpolate import interpolate_dense

    m = MultiGrid(2, 2, 3, 4, 6, interpolation=kernel, include_input=False)
    x = points((11,), 2, jnp.float32, seed=3)
    v = random_variables(m, x)
    out = m.apply(v, x)
    want = jnp.concatenate([interpolate_dense(v["params"][f"level_{i}"], x, (r, r), kernel)
                            for i, r in enumerate(m.resolutions())], -1)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(want))


def test_interpolation_kernel_errors_and_config_default():
    from ntkgrid.config import MultiGridConfig, TrainConfig

    with pytest.raises(ValueError, match="MultiGrid interpolation must be one of .*'cubic'.*got 'bicubic'"):
        MultiGrid(2, interpolation="bicubic").init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match="HashGrid interpolation 'cubic' is not supported: tiny-cuda-nn"):
        HashGrid(2, 2, interpolation="cubic").init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    cfg = TrainConfig(encoding=MultiGridConfig(interpolation="cubic"))
    assert TrainConfig.from_dict(cfg.to_dict()).encoding.interpolation == "cubic"
    old = cfg.to_dict()
    del old["encoding"]["interpolation"]  # a run.json written before the field: linear, as then
    assert TrainConfig.from_dict(old).encoding == MultiGridConfig()
