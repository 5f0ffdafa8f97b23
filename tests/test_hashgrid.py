"""HashGrid against a brute-force transcription of tiny-cuda-nn's definitions.

The reference below is written from tcnn's ``common_device.h`` / ``encodings/grid.h``
(``grid_scale``, ``grid_resolution``, ``pos_fract``, ``grid_index``,
``coherent_prime_hash``) with Python integers and an explicit ``& 0xFFFFFFFF`` for
uint32 wrap-around; it shares no code with :mod:`ntkgrid.encodings.hashgrid` or
:mod:`ntkgrid.interpolate`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ntkgrid.encodings.hashgrid import HashGrid, hash_corners, hash_levels
from ntkgrid.models import CoordinateMLP
from ntkgrid.ntk import structured_ntk

M32 = 0xFFFFFFFF
PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
MAX_BASES = (0x0, 0xFFFFFFFF, 0xFFFF, 0x659, 0xFF, 0x54, 0x28, 0x17, 0xF, 0xB, 0x9)


# ----------------------------------------------------------------------------- reference


def ref_levels(d, n_levels, log2_t, base, b):
    """[(scale as np.float32, resolution, params_in_level, hashed)] per tcnn's host code."""
    out = []
    log2_b = np.log2(np.float32(b))  # std::log2(float) -> float
    for level in range(n_levels):
        scale = np.exp2(np.float32(level) * log2_b) * np.float32(base) - np.float32(1.0)  # grid_scale
        res = int(math.ceil(float(scale))) + 1  # grid_resolution
        dense = res**d
        p = 0x7FFFFFFF if float(res) ** d > 2.0**31 else dense
        p = (p + 7) // 8 * 8  # next_multiple(p, 8)
        p = min(p, 1 << log2_t)
        stride = dense if res <= MAX_BASES[d] else M32
        out.append((scale, res, p, p < stride))
    return out


def ref_index(pos_grid, res, p, hashed):
    """tcnn's grid_index (hash grid, CoherentPrime) on Python ints in [0, 2**32)."""
    if hashed:
        index = 0
        for i, g in enumerate(pos_grid):
            index ^= (g * PRIMES[i]) & M32
    else:
        index, stride = 0, 1
        for g in pos_grid:
            index = (index + g * stride) & M32
            stride *= res
    return index % p


def ref_level_corners(x, level, interpolation, dtype):
    """Per point: list of (row, weight) for one level, following pos_fract + the corner loop."""
    scale, res, p, hashed = level
    d = x.shape[-1]
    out = []
    for point in x:
        grid, frac = [], []
        for i in range(d):
            pos = dtype(point[i]) * dtype(scale) + dtype(0.5)  # no fma: see the tolerance note
            fl = np.floor(pos)
            grid.append(int(fl) & M32)  # (uint32_t)(int)floor
            f = pos - fl
            if interpolation == "smoothstep":
                f = f * f * (dtype(3.0) - dtype(2.0) * f)
            frac.append(f)
        if interpolation == "nearest":
            out.append([(ref_index(grid, res, p, hashed), 1.0)])
            continue
        corners = []
        for c in range(2**d):
            w = dtype(1.0)
            local = []
            for i in range(d):
                if (c >> i) & 1:
                    w = w * frac[i]
                    local.append((grid[i] + 1) & M32)
                else:
                    w = w * (dtype(1.0) - frac[i])
                    local.append(grid[i])
            corners.append((ref_index(local, res, p, hashed), float(w)))
        out.append(corners)
    return out


def ref_encode(x, tables, levels, interpolation, dtype):
    feats = []
    for table, level in zip(tables, levels, strict=True):
        rows = ref_level_corners(x, level, interpolation, dtype)
        feats.append(np.array([sum(w * table[r].astype(np.float64) for r, w in pt) for pt in rows]))
    return np.concatenate(feats, axis=-1)


# ----------------------------------------------------------------------------- helpers

# d -> log2_hashmap_size. With base 5 and b = 2 (integer scales 4, 9, 19; resolutions 5, 10,
# 20) or b = 1.5 (scales 4, 6.5, 10.25; resolutions 5, 8, 12), each case has a dense level
# 0 padded to a multiple of 8 (5^d -> 8, 32, 128 rows) and at least one hashed level.
CASES = {1: 3, 2: 6, 3: 8}


def make_points(d, rng, n_random=24, low=0.0, high=1.0):
    pts = [rng.uniform(low, high, (n_random, d))]
    corners = (np.arange(2**d)[:, None] >> np.arange(d)) & 1  # every vertex of the unit cube
    pts.append(corners.astype(np.float64))
    # Level 0 has scale 4: x = (2k + 1) / 8 makes x * 4 + 0.5 an exact integer (cell
    # boundary), with or without fma. x = 1/2 is a boundary of every level with odd scale.
    boundary = np.array([0.125, 0.375, 0.5, 0.625, 0.875])
    pts.append(rng.choice(boundary, (16, d)))
    pts.append(np.stack([rng.choice(boundary, 16)] + [rng.uniform(0, 1, 16) for _ in range(d - 1)], -1))
    return np.concatenate(pts)


def random_tables(module, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {
        f"level_{lv.level}": rng.normal(size=(lv.params_in_level, module.features_per_level)).astype(dtype)
        for lv in module.levels()
    }


def tol(dtype):
    # frac = pos - floor(pos) has an absolute error of ulp(pos) (up to ~8e-6 for the
    # out-of-domain points in float32) depending on whether x * scale + 0.5 is fused into
    # an fma; indices are compared exactly, so values need only this accuracy.
    return dict(rtol=5e-5, atol=5e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- tcnn formulas


def test_instant_ngp_nerf_config_matches_tcnn_allocation():
    # instant-ngp's NeRF grid: 16 levels, F = 2, T = 2^19, N_min = 16, N_max = 2048.
    b = math.exp(math.log(2048 / 16) / 15)
    m = HashGrid(dim=3, per_level_scale=b)
    levels = m.levels()
    assert [lv.resolution for lv in levels] == [
        16, 23, 31, 43, 59, 81, 112, 154, 213, 295, 407, 562, 777, 1073, 1483, 2048,
    ]  # fmt: skip
    assert [lv.params_in_level for lv in levels] == [4096, 12168, 29792, 79512, 205384] + [2**19] * 11
    assert [lv.hashed for lv in levels] == [False] * 5 + [True] * 11
    assert levels[0].scale == 15.0 and abs(levels[-1].scale - 2046.9987) < 1e-3
    # tcnn's n_params(): F * offset_table[n_levels]. 12,196,240 is also the grid size that
    # third-party loaders of instant-ngp NeRF snapshots split off params_binary.
    assert m.n_params() == 12_196_240
    for lv, ref in zip(levels, ref_levels(3, 16, 19, 16, b), strict=True):
        assert (lv.scale, lv.resolution, lv.params_in_level, lv.hashed) == (float(ref[0]), *ref[1:])


def test_tcnn_unit_test_config():
    # tiny-cuda-nn's tests/test_grid.cu ("GridEncoding sanity checks"): 3D, base 32,
    # T = 2^16, F = 2, 20 levels, b = 1.5 -> level 0 dense 32^3, then 65536-row hash tables,
    # n_params() == 2555904.
    m = HashGrid(dim=3, num_levels=20, log2_table_size=16, min_res=32, per_level_scale=1.5)
    levels = m.levels()
    assert m.output_dim() == 40
    assert (levels[0].params_in_level, levels[0].hashed) == (32**3, False)
    assert [lv.resolution for lv in levels[:3]] == [32, 48, 72]
    assert all(lv.params_in_level == 65536 and lv.hashed for lv in levels[1:])
    assert m.n_params() == 2555904


def test_default_config_2d():
    levels = HashGrid(dim=2).levels()
    assert [lv.scale for lv in levels] == [16.0 * 2**i - 1 for i in range(16)]
    assert [lv.resolution for lv in levels] == [16 * 2**i for i in range(16)]
    expected = [min((16 * 2**i) ** 2, 2**19) for i in range(16)]
    assert [lv.params_in_level for lv in levels] == expected
    assert [lv.hashed for lv in levels] == [(16 * 2**i) ** 2 > 2**19 for i in range(16)]


def test_param_count_edge_cases():
    # Padding to a multiple of 8 and tcnn's MAX_BASES / max_params caps.
    (lv,) = hash_levels(dim=3, num_levels=1, log2_table_size=10, min_res=5)
    assert (lv.resolution, lv.params_in_level, lv.hashed) == (5, 128, False)  # 125 -> 128
    (lv,) = hash_levels(dim=3, num_levels=1, log2_table_size=31, min_res=1700)
    assert (lv.params_in_level, lv.hashed) == (2**31, True)  # R^3 > 2^31 and R > MAX_BASES[3]
    (lv,) = hash_levels(dim=1, num_levels=1, log2_table_size=3, min_res=8)
    assert (lv.params_in_level, lv.hashed) == (8, False)
    (lv,) = hash_levels(dim=1, num_levels=1, log2_table_size=3, min_res=9)
    assert (lv.params_in_level, lv.hashed) == (8, True)
    for d in (1, 2, 3):
        for ours, ref in zip(hash_levels(d, 12, 14, 3, 1.7), ref_levels(d, 12, 14, 3, 1.7), strict=True):
            assert (ours.scale, ours.resolution, ours.params_in_level, ours.hashed) == (float(ref[0]), *ref[1:])


# ----------------------------------------------------------------------------- brute force


def _check_against_reference(d, interpolation, dtype, b=2.0, low=0.0, high=1.0, seed=0):
    log2_t = CASES[d]
    m = HashGrid(dim=d, num_levels=3, log2_table_size=log2_t, min_res=5, per_level_scale=b,
                 interpolation=interpolation, param_dtype=dtype)  # fmt: skip
    levels = ref_levels(d, 3, log2_t, 5, b)
    hashed = [lv[3] for lv in levels]
    assert any(hashed) and not all(hashed)
    x = make_points(d, np.random.default_rng(seed), low=low, high=high).astype(dtype)
    params = random_tables(m, dtype, seed)

    @jax.jit  # one compilation per case; the boundary points are exact with or without fma
    def run(x, params):
        return m.apply({"params": params}, x), [hash_corners(x, lv, interpolation) for lv in m.levels()]

    out, corners = run(jnp.asarray(x), params)
    for (idx, w), ref in zip(corners, levels, strict=True):  # indices: exact; weights: to rounding
        assert idx.dtype == jnp.int32 and w.dtype == dtype
        rows = ref_level_corners(x, ref, interpolation, dtype)
        np.testing.assert_array_equal(np.asarray(idx), [[r for r, _ in pt] for pt in rows])
        np.testing.assert_allclose(np.asarray(w), [[v for _, v in pt] for pt in rows], **tol(dtype))

    assert out.shape == (len(x), 3 * 2) and out.dtype == dtype
    want = ref_encode(x, [params[f"level_{i}"] for i in range(3)], levels, interpolation, dtype)
    np.testing.assert_allclose(np.asarray(out), want, **tol(dtype))


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("interpolation", ["linear", "smoothstep", "nearest"])
def test_matches_reference_float32(d, interpolation):
    _check_against_reference(d, interpolation, np.float32)


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("interpolation", ["linear", "smoothstep"])
def test_matches_reference_float64(d, interpolation):
    with jax.enable_x64(True):
        _check_against_reference(d, interpolation, np.float64)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_matches_reference_non_integer_scales(d):
    _check_against_reference(d, "linear", np.float32, b=1.5)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_outside_unit_cube_wraps_like_tcnn(d):
    # No clamping: negative vertices wrap to uint32 and every index is taken mod P.
    _check_against_reference(d, "linear", np.float32, low=-2.5, high=3.5, seed=1)
    m = HashGrid(dim=d, num_levels=3, log2_table_size=CASES[d], min_res=5)
    x = jnp.asarray(np.random.default_rng(2).uniform(-1e4, 1e4, (64, d)), jnp.float32)
    all_idx = jax.jit(lambda y: [hash_corners(y, lv)[0] for lv in m.levels()])(x)
    for lv, idx in zip(m.levels(), all_idx, strict=True):
        assert int(idx.min()) >= 0 and int(idx.max()) < lv.params_in_level


def test_x_equal_one_wraps_on_dense_levels():
    # Integer scale s: x = 1 sits mid-cell s, whose upper vertex s + 1 = R is past the grid.
    (lv,) = hash_levels(dim=1, num_levels=1, log2_table_size=10, min_res=5)
    assert (lv.scale, lv.resolution, lv.params_in_level, lv.hashed) == (4.0, 5, 8, False)
    idx, w = hash_corners(jnp.array([[1.0], [0.0]]), lv)
    np.testing.assert_array_equal(idx, [[4, 5], [0, 1]])  # row 5: padding, as in tcnn
    np.testing.assert_allclose(w, [[0.5, 0.5], [0.5, 0.5]])
    (lv,) = hash_levels(dim=2, num_levels=1, log2_table_size=10, min_res=5)
    idx, _ = hash_corners(jnp.array([[1.0, 0.0]]), lv)
    np.testing.assert_array_equal(idx, [[4, 5, 9, 10]])  # (5, 0) -> row 5 == vertex (0, 1)


# ----------------------------------------------------------------------------- module API


def test_init_shapes_and_range():
    m = HashGrid(dim=2, num_levels=3, log2_table_size=9, min_res=6, per_level_scale=1.7)
    variables = jax.jit(m.init)(jax.random.PRNGKey(0), jnp.zeros((3, 2)))
    assert set(variables) == {"params"}
    params = variables["params"]
    for lv in m.levels():
        t = params[f"level_{lv.level}"]
        assert t.shape == (lv.params_in_level, 2) and t.dtype == jnp.float32
        assert float(jnp.abs(t).max()) <= 1e-4 and float(jnp.abs(t).max()) > 0.5e-4
    assert sum(t.size for t in params.values()) == m.n_params()
    flat = m.to_tcnn_params(params)
    assert flat.shape == (m.n_params(),)
    back = m.from_tcnn_params(flat)
    assert jax.tree.all(jax.tree.map(lambda a, c: bool(jnp.array_equal(a, c)), params, back))
    lv1 = m.levels()[1]
    offset = m.levels()[0].params_in_level * 2
    np.testing.assert_array_equal(flat[offset + 2 * 7 + 1], params["level_1"][7, 1])  # grid[index * F + f]
    assert lv1.params_in_level > 7


def test_shapes_include_input_and_errors():
    m = HashGrid(dim=3, num_levels=3, log2_table_size=8, min_res=4, include_input=True)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 5, 3))
    variables = jax.jit(m.init)(jax.random.PRNGKey(0), x)
    out = jax.jit(m.apply)(variables, x)
    assert out.shape == (2, 5, 3 * 2 + 3) == (2, 5, m.output_dim())
    np.testing.assert_array_equal(out[..., -3:], x)
    assert jax.jit(m.apply)(variables, x[0, 0]).shape == (9,)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        m.apply(variables, x[..., :2])
    with pytest.raises(ValueError, match="interpolation"):
        HashGrid(dim=3, interpolation="cubic").init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="dim"):
        hash_levels(dim=8)


def test_jit_vmap_and_table_gradient_scatter():
    m = HashGrid(dim=2, num_levels=4, log2_table_size=8, min_res=5)
    x = make_points(2, np.random.default_rng(3)).astype(np.float32)
    params = random_tables(m, np.float32, 3)
    out = m.apply({"params": params}, x)
    # frac = pos - floor(pos) carries an absolute error of ulp(pos) ~ 2e-6 whichever way the
    # compiler evaluates x * scale + 0.5 (fused or not), so compare to that accuracy.
    np.testing.assert_allclose(jax.jit(m.apply)({"params": params}, x), out, rtol=1e-5, atol=1e-5)
    per_point = jax.jit(jax.vmap(lambda p: m.apply({"params": params}, p)))(jnp.asarray(x))
    np.testing.assert_allclose(per_point, out, rtol=1e-5, atol=1e-5)

    # d/d(table) of <cot, out> scatters cot * w into the corner rows (hash collisions add up).
    cot = np.random.default_rng(4).normal(size=out.shape).astype(np.float32)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(m.apply({"params": p}, x) * cot)))(params)
    for i, ref in enumerate(ref_levels(2, 4, 8, 5, 2.0)):
        want = np.zeros((ref[2], 2))
        for n, pt in enumerate(ref_level_corners(x, ref, "linear", np.float32)):
            for r, w in pt:
                want[r] += w * cot[n, 2 * i : 2 * i + 2]
        np.testing.assert_allclose(grads[f"level_{i}"], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("interpolation", ["linear", "smoothstep"])
def test_check_grads(interpolation):
    with jax.enable_x64(True):
        # Level 0 dense (5^2 vertices -> 32 rows), level 1 hashed (10^2 vertices, 64 rows).
        m = HashGrid(dim=2, num_levels=2, log2_table_size=6, min_res=5, interpolation=interpolation,
                     param_dtype=jnp.float64)  # fmt: skip
        assert [lv.hashed for lv in m.levels()] == [False, True]
        x = jnp.asarray(np.random.default_rng(5).uniform(0.05, 0.95, (16, 2)))
        params = jax.tree.map(jnp.asarray, random_tables(m, np.float64, 5))
        f = lambda p, y: m.apply({"params": p}, y)  # noqa: E731 (eager: cheaper than jit here)
        # The encoding is linear in the tables, so first order says everything.
        check_grads(lambda p: f(p, x), (params,), order=1, modes=("fwd", "rev"))
        # In x, within cells (autodiff of frac; equals tcnn's dy_dx).
        check_grads(lambda y: f(params, y), (x,), order=1, modes=("fwd", "rev"), eps=1e-7)


def test_nearest_has_zero_input_gradient():
    m = HashGrid(dim=2, num_levels=3, log2_table_size=8, min_res=5, interpolation="nearest")
    x = jnp.asarray(np.random.default_rng(6).uniform(0, 1, (8, 2)), jnp.float32)
    params = random_tables(m, np.float32, 6)
    g = jax.jit(jax.grad(lambda y: jnp.sum(m.apply({"params": params}, y))))(x)
    np.testing.assert_array_equal(g, 0.0)


def test_inside_coordinate_mlp_and_structured_ntk():
    # Small tables (T = 2^6) so the hashed levels have collisions, which the structured
    # kernel must count through equal row indices.
    enc = HashGrid(dim=2, num_levels=3, log2_table_size=6, min_res=5)
    assert [lv.hashed for lv in enc.levels()] == [False, True, True]
    model = CoordinateMLP(encoding=enc, hidden=(16,), out_dim=2)
    x = jax.random.uniform(jax.random.PRNGKey(2), (12, 2))
    variables = jax.jit(model.init)(jax.random.PRNGKey(1), x)
    assert sorted(variables["params"]["encoding"]) == [f"level_{i}" for i in range(3)]
    assert variables["params"]["encoding"]["level_2"].shape == (64, 2)

    kernels = structured_ntk(model, variables, x, groups="ops")
    assert {f"encoding/level_{i}" for i in range(3)} <= set(kernels)

    @jax.jit
    def jacobians(params):
        j = jax.jacrev(lambda p: model.apply({"params": p}, x))(params)
        flat = lambda tree: jnp.concatenate([a.reshape(12, 2, -1) for a in jax.tree.leaves(tree)], -1)  # noqa: E731
        return model.apply({"params": params}, x), flat(j), flat(j["encoding"])

    y, j_all, j_grid = jacobians(variables["params"])
    assert y.shape == (12, 2) and bool(jnp.all(jnp.isfinite(y)))
    assert float(jnp.abs(j_grid).sum()) > 0  # gradients reach the tables
    ntk = lambda j: np.einsum("nop,mop->nm", j, j) / j.shape[1]  # noqa: E731 (mean over outputs)
    np.testing.assert_allclose(kernels["total"], ntk(j_all), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(kernels["grid"], ntk(j_grid), rtol=1e-4, atol=1e-6)
