"""ntkgrid.interpolate against independent references.

* A brute-force NumPy interpolant written from the formula (one Python loop per point,
  per axis and per tap; the cubic B-spline as a function of the distance to each node);
  it shares no code with :mod:`ntkgrid.interpolate`.
* ``scipy.ndimage.map_coordinates(order=3, prefilter=False, mode="nearest")`` for the cubic
  B-spline with clamped (edge-replicated) taps.
* ``torch.nn.functional.grid_sample(..., align_corners=True)`` for values and gradients.
* ``jax.test_util.check_grads`` (finite differences, forward and reverse mode).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import ntkgrid.interpolate as interp
from ntkgrid.interpolate import (
    INTERPOLATIONS as ALL_KERNELS,
)
from ntkgrid.interpolate import (
    bspline_weights,
    corner_bits,
    corner_weights,
    dense_cells,
    dense_corners,
    dense_offsets,
    dense_strides,
    dense_taps,
    gather_interpolate,
    interpolate_dense,
    taps_per_point,
)

# One table of tolerances (relative to the scale of the values compared) per dtype.
TOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]
INTERPOLATIONS = ["linear", "smoothstep"]  # the 2**d-corner kernels (the chunked fast path)
KERNELS = ["nearest", "linear", "smoothstep", "cubic"]  # every kernel of a dense grid
# Dense grids: 1D, 2D, 3D, square and non-square.
RESOLUTIONS = [(2,), (9,), (2, 2), (5, 3), (4, 7), (3, 3, 3), (4, 2, 5)]


# ----------------------------------------------------------------------------- reference


def ref_bspline(u):
    """The uniform cubic B-spline as a function of the distance ``u`` (in nodes) to its centre."""
    u = abs(u)
    if u < 1.0:
        return 2.0 / 3.0 - u * u + u**3 / 2.0
    if u < 2.0:
        return (2.0 - u) ** 3 / 6.0
    return 0.0


def ref_taps(x, res, interpolation):
    """Per point: the list of (flat node, weight) taps, written from the definitions."""
    taps = []
    for point in np.asarray(x, np.float64).reshape(-1, len(res)):
        pos = [min(max(v, 0.0), 1.0) * (r - 1) for v, r in zip(point, res)]
        if interpolation == "nearest":  # nearest node, ties up
            axes = [[(min(int(math.floor(p + 0.5)), r - 1), 1.0)] for p, r in zip(pos, res)]
        else:  # cubic: nodes i-1 .. i+2 around the cell [i, i+1], each clamped into the grid
            axes = []
            for p, r in zip(pos, res):
                i = min(int(math.floor(p)), r - 2)
                axes.append([(min(max(j, 0), r - 1), ref_bspline(p - j)) for j in range(i - 1, i + 3)])
        point_taps = []
        for combo in itertools.product(*axes):
            flat, stride, weight = 0, 1, 1.0
            for (node, wa), r in zip(combo, res):
                flat += node * stride
                stride *= r
                weight *= wa
            point_taps.append((flat, weight))
        taps.append(point_taps)
    return taps


def ref_interpolate(table, x, res, interpolation):
    """Brute force: clamp, find the cell, weight its 2**d corners by the tensor-product formula
    (nearest and cubic: the taps of :func:`ref_taps`)."""
    table = np.asarray(table, np.float64)
    x = np.asarray(x, np.float64).reshape(-1, len(res))
    out = np.zeros((x.shape[0], table.shape[1]))
    if interpolation in ("nearest", "cubic"):
        for p, point_taps in enumerate(ref_taps(x, res, interpolation)):
            for flat, weight in point_taps:
                out[p] += weight * table[flat]
        return out
    for p in range(x.shape[0]):
        lower, frac = [], []
        for a, r in enumerate(res):
            xa = min(max(x[p, a], 0.0), 1.0)
            pos = xa * (r - 1)  # node i sits at i / (r - 1)
            i = min(int(math.floor(pos)), r - 2)  # x = 1 lies in the last cell, fraction 1
            t = pos - i
            if interpolation == "smoothstep":
                t = t * t * (3.0 - 2.0 * t)
            lower.append(i)
            frac.append(t)
        for upper in itertools.product((0, 1), repeat=len(res)):
            weight, flat, stride = 1.0, 0, 1
            for a, r in enumerate(res):
                weight *= frac[a] if upper[a] else 1.0 - frac[a]
                flat += (lower[a] + upper[a]) * stride  # axis 0 fastest
                stride *= r
            out[p] += weight * table[flat]
    return out


def make_points(res, n_random, seed):
    """Random points, every cell boundary on each axis, the cube's corners and points outside."""
    rng = np.random.default_rng(seed)
    d = len(res)
    pts = [rng.random((n_random, d))]
    for a, r in enumerate(res):  # points exactly on node planes of axis a (incl. 0 and 1)
        p = rng.random((r, d))
        p[:, a] = np.arange(r) / (r - 1)
        pts.append(p)
    pts.append(np.array(list(itertools.product((0.0, 1.0), repeat=d))))  # corners of the cube
    pts.append(rng.uniform(-0.7, 1.7, (8, d)))  # mostly outside: clamped
    pts.append(np.full((1, d), -3.0))
    pts.append(np.full((1, d), 5.0))
    return np.concatenate(pts)


def assert_close(actual, expected, dtype, scale=None):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = np.max(np.abs(expected)) if scale is None else scale
    np.testing.assert_allclose(actual, expected, rtol=TOL[dtype], atol=TOL[dtype] * max(scale, 1e-300))


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("interpolation", KERNELS)
@pytest.mark.parametrize("res", RESOLUTIONS, ids=str)
def test_matches_bruteforce(res, interpolation, dtype):
    with jax.enable_x64(dtype == np.float64):
        rng = np.random.default_rng(len(res) * 100 + sum(res))
        k = 3
        table = rng.normal(size=(int(np.prod(res)), k)).astype(dtype)
        x = make_points(res, 40, seed=sum(res)).astype(dtype)
        out = jax.jit(interpolate_dense, static_argnums=(2, 3))(jnp.asarray(table), jnp.asarray(x), res, interpolation)
        assert out.dtype == dtype and out.shape == (x.shape[0], k)
        assert_close(out, ref_interpolate(table, x, res, interpolation), dtype, scale=np.max(np.abs(table)))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
def test_nodes_reproduce_table_and_batch_shapes(dtype):
    """At a node the interpolant is that node's value; leading batch axes are preserved."""
    with jax.enable_x64(dtype == np.float64):
        res = (5, 3, 4)
        table = np.random.default_rng(0).normal(size=(60, 2)).astype(dtype)
        grid = np.stack(np.meshgrid(*[np.arange(r) / (r - 1) for r in res], indexing="ij"), -1)  # (5, 3, 4, 3)
        grid = np.transpose(grid, (2, 1, 0, 3)).astype(dtype)  # axis 0 fastest when flattened
        out = interpolate_dense(jnp.asarray(table), jnp.asarray(grid), res)
        assert out.shape == (4, 3, 5, 2)
        assert_close(out.reshape(-1, 2), table, dtype)
        for interpolation in INTERPOLATIONS:
            single = interpolate_dense(jnp.asarray(table), jnp.asarray(grid[1, 2, 3]), res, interpolation)
            assert single.shape == (2,)


def test_docstring_example():
    out = interpolate_dense(jnp.arange(4.0).reshape(4, 1), jnp.array([[0.5, 0.5], [1.0, 0.0]]), (2, 2))
    np.testing.assert_array_equal(np.asarray(out[:, 0]), [1.5, 1.0])


# ----------------------------------------------------------------------------- building blocks


def test_corner_bits_order():
    np.testing.assert_array_equal(corner_bits(1), [[0], [1]])
    np.testing.assert_array_equal(corner_bits(2), [[0, 0], [1, 0], [0, 1], [1, 1]])
    bits = corner_bits(3)
    assert bits.shape == (8, 3)
    np.testing.assert_array_equal(bits @ [1, 2, 4], np.arange(8))  # bit a of corner c is axis a


def test_dense_cells_and_corners_edges():
    res = (5, 3)
    x = jnp.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [-1.0, 2.0], [0.3, 0.75]])
    base, frac = dense_cells(x, res)
    assert base.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(base), [[0, 0], [3, 1], [2, 1], [0, 1], [1, 1]])
    np.testing.assert_allclose(np.asarray(frac), [[0, 0], [1, 1], [0, 0], [0, 1], [0.2, 0.5]], atol=1e-6)
    np.testing.assert_array_equal(dense_strides((5, 3, 4)), [1, 5, 15])
    idx, w = dense_corners(x, res)
    assert idx.shape == w.shape == (5, 4) and idx.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(idx[1]), [3 + 5, 4 + 5, 3 + 10, 4 + 10])
    np.testing.assert_allclose(np.asarray(w.sum(-1)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(w[1]), [0, 0, 0, 1])


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_corner_weights_formula(interpolation):
    with jax.enable_x64(True):
        frac = np.random.default_rng(1).random((6, 3))
        w = np.asarray(corner_weights(jnp.asarray(frac), interpolation))
        t = frac * frac * (3 - 2 * frac) if interpolation == "smoothstep" else frac
        for c in range(8):
            expect = np.prod([t[:, a] if (c >> a) & 1 else 1 - t[:, a] for a in range(3)], axis=0)
            np.testing.assert_allclose(w[:, c], expect, rtol=TOL[np.float64])


def test_kernel_list_and_taps_per_point():
    assert KERNELS == list(ALL_KERNELS)
    assert [taps_per_point(2, k) for k in KERNELS] == [1, 4, 4, 16]
    assert [taps_per_point(3, k) for k in KERNELS] == [1, 8, 8, 64]
    with pytest.raises(ValueError, match="interpolation must be one of"):
        taps_per_point(2, "lanczos")


@pytest.mark.parametrize("interpolation", KERNELS)
@pytest.mark.parametrize("res", [(9,), (5, 3), (2, 2), (4, 2, 5)], ids=str)
def test_taps_match_reference_and_weight_properties(res, interpolation):
    """dense_taps equals the brute-force taps (as a weight matrix); every kernel's weights are
    non-negative and a partition of unity, on random points, node planes and outside points."""
    with jax.enable_x64(True):
        x = make_points(res, 30, seed=len(res))
        idx, w = dense_taps(jnp.asarray(x), res, interpolation)
        idx, w = np.asarray(idx), np.asarray(w)
        assert idx.shape == w.shape == (x.shape[0], taps_per_point(len(res), interpolation))
        assert idx.min() >= 0 and idx.max() < np.prod(res)
        assert w.min() >= 0.0  # all four kernels are non-negative (Catmull-Rom would not be)
        np.testing.assert_allclose(w.sum(-1), 1.0, rtol=0, atol=1e-14)
        ours = np.zeros((x.shape[0], int(np.prod(res))))
        ref = np.zeros_like(ours)
        for p, point_taps in enumerate(ref_taps(x, res, interpolation) if interpolation in ("nearest", "cubic")
                                       else [list(zip(i, v)) for i, v in zip(idx, w)]):
            np.add.at(ours[p], idx[p], w[p])
            for flat, weight in point_taps:
                ref[p, flat] += weight
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-14)


def test_bspline_weights_formula_and_smoothness():
    """The four weights are B(t + 1), B(t), B(t - 1), B(t - 2) of the distance-based B-spline;
    across a node plane the interpolant is C2 (value, slope and curvature continuous), and at
    a node it does not interpolate: the value is (v_{i-1} + 4 v_i + v_{i+1}) / 6."""
    with jax.enable_x64(True):
        t = np.linspace(0.0, 1.0, 11)
        w = np.stack([np.asarray(v) for v in bspline_weights(jnp.asarray(t))], -1)
        expect = np.array([[ref_bspline(ti + 1 - j) for j in range(4)] for ti in t])
        np.testing.assert_allclose(w, expect, rtol=0, atol=1e-15)
        res = (9,)
        table = jnp.asarray(np.random.default_rng(4).normal(size=(9, 1)))
        f = lambda p: interpolate_dense(table, p.reshape(1, 1), res, "cubic")[0, 0]  # noqa: E731
        node = 4 / 8  # an interior node plane: cell 3 ends, cell 4 starts
        eps = 1e-7
        for deriv in (f, jax.grad(f), jax.grad(jax.grad(f))):
            left, right = float(deriv(jnp.array(node - eps))), float(deriv(jnp.array(node + eps)))
            assert abs(left - right) <= 1e-4 * max(1.0, abs(left)), (left, right)
        v = np.asarray(table)[:, 0]
        np.testing.assert_allclose(float(f(jnp.array(node))), (v[3] + 4 * v[4] + v[5]) / 6, rtol=1e-13)
        # The derivative in x is continuous too for smoothstep, but not for linear.
        g = lambda p, k: jax.grad(lambda q: interpolate_dense(table, q.reshape(1, 1), res, k)[0, 0])(p)  # noqa: E731
        assert abs(float(g(jnp.array(node - eps), "smoothstep")) - float(g(jnp.array(node + eps), "smoothstep"))) < 1e-3
        assert abs(float(g(jnp.array(node - eps), "linear")) - float(g(jnp.array(node + eps), "linear"))) > 1e-3


def test_cubic_matches_scipy_map_coordinates():
    """Independent oracle: SciPy's order-3 spline without prefiltering is the uniform cubic
    B-spline of the raw table; mode="nearest" replicates the edge, i.e. clamps the taps."""
    ndimage = pytest.importorskip("scipy.ndimage")
    with jax.enable_x64(True):
        for res in [(7,), (5, 6), (4, 3, 5)]:
            rng = np.random.default_rng(sum(res))
            table = rng.normal(size=(int(np.prod(res)), 1))
            x = make_points(res, 40, seed=3)
            grid = table[:, 0].reshape(res[::-1])  # axis 0 fastest: numpy axes (r_{d-1}, ..., r_0)
            coords = (np.clip(x, 0, 1) * (np.asarray(res) - 1)).T[::-1]  # numpy axis order
            want = ndimage.map_coordinates(grid, coords, order=3, prefilter=False, mode="nearest")
            got = interpolate_dense(jnp.asarray(table), jnp.asarray(x), res, "cubic")[:, 0]
            np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-12)


def test_nearest_rounds_half_up_and_has_zero_point_gradient():
    with jax.enable_x64(True):
        res = (5,)  # nodes at 0, .25, .5, .75, 1
        table = jnp.arange(5.0).reshape(5, 1)
        x = jnp.array([[0.0], [0.12], [0.125], [0.13], [0.874], [0.875], [1.0], [-1.0], [2.0]])
        out = interpolate_dense(table, x, res, "nearest")[:, 0]
        np.testing.assert_array_equal(np.asarray(out), [0, 0, 1, 1, 3, 4, 4, 0, 4])
        gx = jax.grad(lambda p: interpolate_dense(table, p, res, "nearest").sum())(x)
        assert not np.any(np.asarray(gx))
        gt = jax.grad(lambda t: interpolate_dense(t, x, res, "nearest").sum())(table)
        np.testing.assert_array_equal(np.asarray(gt)[:, 0], [3, 2, 0, 1, 3])


@pytest.mark.parametrize("res", [(6,), (4, 5), (3, 3, 3)], ids=str)
def test_cubic_check_grads(res):
    """Table and point derivatives of the cubic kernel (forward and reverse) against finite
    differences, at interior points and at points whose taps are clamped at the edges."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(30)
        table = jnp.asarray(rng.normal(size=(int(np.prod(res)), 2)))
        r = np.asarray(res)
        edge = (np.array([[0.3], [0.6]]) * np.ones(len(res))) / (r - 1)  # inside the first cell
        x = jnp.asarray(np.concatenate([interior_points(res, 2, 31), edge, 1.0 - edge]))
        check_grads(lambda t, p: interpolate_dense(t, p, res, "cubic"), (table, x), order=1, modes=("fwd", "rev"),
                    eps=1e-5)


def test_gather_interpolate_generic_indices_and_clip():
    """Arbitrary (e.g. hashed) indices: a weighted sum of rows; out-of-range indices are clipped."""
    table = jnp.asarray(np.random.default_rng(2).normal(size=(7, 2)), jnp.float32)
    idx = jnp.array([[0, 6, 3], [2, 2, 2], [-4, 9, 1]])
    w = jnp.array([[0.5, 0.25, 0.25], [1.0, 2.0, -1.0], [1.0, 1.0, 1.0]], jnp.float32)
    out = gather_interpolate(table, idx, w)
    t = np.asarray(table)
    expect = np.stack([0.5 * t[0] + 0.25 * t[6] + 0.25 * t[3], 2.0 * t[2], t[0] + t[6] + t[1]])
    np.testing.assert_allclose(np.asarray(out), expect, rtol=1e-6)
    # One corner (C = 1, "nearest") and a float64 weight on a float32 table.
    with jax.enable_x64(True):
        out = gather_interpolate(table, jnp.array([[5]]), jnp.array([[1.0]], jnp.float64))
        assert out.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(out), t[5:6])


def test_errors():
    table = jnp.zeros((6, 1))
    with pytest.raises(ValueError, match="at least 2 nodes"):
        interpolate_dense(jnp.zeros((3, 1)), jnp.zeros((1, 2)), (3, 1))
    with pytest.raises(ValueError, match="table has 6 rows"):
        interpolate_dense(table, jnp.zeros((1, 2)), (3, 3))
    with pytest.raises(ValueError, match="grid has 2 axes but points have d=3"):
        interpolate_dense(table, jnp.zeros((1, 3)), (3, 2))
    with pytest.raises(ValueError, match="interpolation must be"):
        interpolate_dense(table, jnp.zeros((1, 2)), (3, 2), "quadratic")
    with pytest.raises(ValueError, match=r"interpolation must be one of \('nearest', 'linear', 'smoothstep', 'cubic'\)"):
        dense_taps(jnp.zeros((1, 2)), (3, 2), "bicubic")


# ----------------------------------------------------------------------------- derivatives


def interior_points(res, n, seed):
    """Points in random cells, at least 0.2 of a cell away from every cell boundary."""
    rng = np.random.default_rng(seed)
    r = np.asarray(res)
    return (rng.integers(0, r - 1, (n, len(res))) + rng.uniform(0.2, 0.8, (n, len(res)))) / (r - 1)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("res", [(6,), (4, 5), (3, 4, 3)], ids=str)
def test_check_grads(res, interpolation):
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        table = jnp.asarray(rng.normal(size=(int(np.prod(res)), 2)))
        x = jnp.asarray(interior_points(res, 7, 4))
        # Forward and reverse mode against central differences.
        check_grads(lambda t: interpolate_dense(t, x, res, interpolation), (table,), order=1, modes=("fwd", "rev"))
        check_grads(
            lambda p: interpolate_dense(table, p, res, interpolation), (x,), order=1, modes=("fwd", "rev"), eps=1e-5
        )


def test_second_order_and_generic_weights():
    """The custom JVP of gather_interpolate: mixed second derivatives in (table, x), and
    derivatives w.r.t. generic weights (as HashGrid / arbitrary indices use it)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(9)
        res = (4, 3)
        table = jnp.asarray(rng.normal(size=(12, 3)))
        x = jnp.asarray(interior_points(res, 4, 10))
        check_grads(lambda t, p: interpolate_dense(t, p, res), (table, x), order=2, modes=("rev",), eps=1e-5)
        idx = jnp.asarray(rng.integers(-2, 14, (5, 3)))  # some out of range: clamped
        w = jnp.asarray(rng.normal(size=(5, 3)))
        check_grads(lambda t, v: gather_interpolate(t, idx, v), (table, w), order=1, modes=("fwd", "rev"))
        # jvp / vjp with one argument held fixed (symbolic-zero tangents inside the rule)
        dt = jnp.asarray(rng.normal(size=table.shape))
        _, tan = jax.jvp(lambda t: interpolate_dense(t, x, res), (table,), (dt,))
        np.testing.assert_allclose(tan, interpolate_dense(dt, x, res), rtol=1e-12)  # linear in the table
        gw = jax.grad(lambda v: gather_interpolate(table, idx, v).sum())(w)
        expect = np.asarray(table)[np.clip(np.asarray(idx), 0, 11)].sum(-1)
        np.testing.assert_allclose(gw, expect, rtol=1e-12)


def test_vmap_and_empty_batch():
    res = (5, 4)
    rng = np.random.default_rng(11)
    tables = jnp.asarray(rng.normal(size=(3, 20, 2)), jnp.float32)
    x = jnp.asarray(rng.random((3, 6, 2)), jnp.float32)
    batched = jax.jit(jax.vmap(lambda t, p: interpolate_dense(t, p, res)))(tables, x)
    for i in range(3):
        np.testing.assert_allclose(batched[i], interpolate_dense(tables[i], x[i], res), rtol=1e-6, atol=1e-6)
    gt = jax.jit(jax.vmap(jax.grad(lambda t, p: interpolate_dense(t, p, res).sum())))(tables, x)
    assert gt.shape == tables.shape
    empty = jnp.zeros((0, 2), jnp.float32)
    assert interpolate_dense(tables[0], empty, res).shape == (0, 2)
    g = jax.grad(lambda t, p: interpolate_dense(t, p, res).sum(), argnums=(0, 1))(tables[0], empty)
    assert g[0].shape == (20, 2) and not np.any(np.asarray(g[0])) and g[1].shape == (0, 2)


def test_gradients_exact_and_zero_outside():
    """d/dtable is the corner weights; d/dx is zero where x is clamped."""
    with jax.enable_x64(True):
        res = (4, 3)
        table = jnp.asarray(np.random.default_rng(5).normal(size=(12, 1)))
        x = jnp.array([[0.4, 0.3], [-0.5, 0.7], [0.2, 1.5]])
        jac = jax.jit(jax.jacrev(lambda t: interpolate_dense(t, x, res)[:, 0]))(table)[..., 0]  # (3, 12)
        idx, w = dense_corners(x, res)
        dense = np.zeros((3, 12))
        for n, c in itertools.product(range(3), range(4)):
            dense[n, int(idx[n, c])] += float(w[n, c])
        np.testing.assert_allclose(np.asarray(jac), dense, rtol=1e-12, atol=1e-15)
        gx = jax.jit(jax.grad(lambda p: interpolate_dense(table, p, res).sum()))(x)
        assert float(gx[1, 0]) == 0.0 and float(gx[2, 1]) == 0.0
        assert float(gx[0, 0]) != 0.0


# ----------------------------------------------------------------------------- chunked backward


def test_dense_offsets():
    assert dense_offsets((9,)) == (0, 1)
    assert dense_offsets((5, 3)) == (0, 1, 5, 6)
    assert dense_offsets((4, 2, 5)) == (0, 1, 4, 5, 8, 9, 12, 13)
    idx, _ = dense_corners(jnp.array([[0.3, 0.6, 0.9]]), (4, 2, 5))
    np.testing.assert_array_equal(np.asarray(idx[0]) - int(idx[0, 0]), dense_offsets((4, 2, 5)))


# (grid, points): 1D, 2D and 3D; with k = 3 the first, second and fourth use the
# corner-stacked table, the others the corner-major form.
TANGENT_CASES = [((9,), 40), ((5, 4), 37), ((6, 5), 9), ((3, 4, 3), 50), ((4, 3, 5), 23)]


@pytest.mark.parametrize("res, n", TANGENT_CASES, ids=str)
def test_chunked_table_tangent_matches_bruteforce(res, n):
    """Table and point derivatives through the chunked scan (with a ragged last chunk)
    equal the brute-force weight matrix and the single-chunk evaluation, in both forms."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(sum(res) + n)
        rows, k = int(np.prod(res)), 3
        corners = 2 ** len(res)
        assert interp._use_stacked(rows, n, corners, k) == (4 * (corners - 1) * n >= rows * corners * k)
        table = jnp.asarray(rng.normal(size=(rows, k)))
        x = jnp.asarray(rng.uniform(-0.1, 1.1, (n, len(res))))  # a few clamped points
        cot = jnp.asarray(rng.normal(size=(n, k)))
        dtable, dx = jnp.asarray(rng.normal(size=(rows, k))), jnp.asarray(rng.normal(size=(n, len(res))))
        weights = ref_interpolate(np.eye(rows), x, res, "linear")  # (n, rows): out = weights @ table
        results = {}
        for chunk in (1, 4, 7, None):
            f = jax.jit(lambda t, p, chunk=chunk: interpolate_dense(t, p, res, chunk=chunk))
            out, vjp = jax.vjp(f, table, x)
            g_table, g_x = vjp(cot)
            _, tangent = jax.jvp(f, (table, x), (dtable, dx))
            assert_close(out, weights @ np.asarray(table), np.float64)
            assert_close(g_table, weights.T @ np.asarray(cot), np.float64)
            results[chunk] = (g_x, tangent)
        for chunk in (1, 4, 7):
            for a, b in zip(results[chunk], results[None]):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


def test_chunked_second_order_and_vmap():
    with jax.enable_x64(True):
        rng = np.random.default_rng(12)
        res = (4, 3)
        table = jnp.asarray(rng.normal(size=(12, 2)))
        x = jnp.asarray(interior_points(res, 9, 13))
        f = lambda t, p: interpolate_dense(t, p, res, chunk=4)  # noqa: E731
        check_grads(f, (table, x), order=2, modes=("fwd", "rev"), eps=1e-5)
        tables = jnp.asarray(rng.normal(size=(3, 12, 2)))
        g = jax.vmap(jax.grad(lambda t: interpolate_dense(t, x, res, chunk=2).sum()))(tables)
        expect = jax.grad(lambda t: interpolate_dense(t, x, res).sum())(tables[1])
        np.testing.assert_allclose(np.asarray(g[1]), np.asarray(expect))


def test_large_batch_matches_generic_gather():
    """A batch large enough for the rematerialised point tangent (over 12 MiB of corner rows)
    and a ragged chunked scan: value, table and point gradients equal the generic
    corner-major gather (:func:`gather_interpolate` on :func:`dense_corners`)."""
    res, n, k = (33, 17), 200_000, 4
    rng = np.random.default_rng(14)
    table = jnp.asarray(rng.normal(size=(33 * 17, k)), jnp.float32)
    x = jnp.asarray(rng.random((n, 2)), jnp.float32)
    cot = jnp.asarray(rng.normal(size=(n, k)), jnp.float32)
    assert n * 4 * k * 4 > interp._TEMP_BYTES // 2

    def fwd_bwd(f):
        out, vjp = jax.vjp(f, table, x)
        return (out, *vjp(cot))

    ours = jax.jit(lambda: fwd_bwd(lambda t, p: interpolate_dense(t, p, res, chunk=3 * 2**14)))()
    generic = jax.jit(lambda: fwd_bwd(lambda t, p: gather_interpolate(t, *dense_corners(p, res))))()
    for a, b in zip(ours, generic):
        assert_close(a, b, np.float32)


@pytest.mark.skipif(jax.default_backend() != "cpu",
                    reason="the chunked scratch budget is CPU-specific: off the CPU interpolation runs in one chunk")
def test_default_chunk_fits_the_scratch_budget(monkeypatch):
    mib = 2**20
    # The paper-scale benchmark grid: 512^2 nodes, k = 2, float32, stacked (8 MiB accumulator).
    assert interp._default_chunk(512 * 512, 4, 2, True, 4) == 2**19
    for rows, corners, k, stacked, itemsize in itertools.product(
        (16, 512 * 512, 128**3), (2, 4, 8), (1, 2, 4, 16), (True, False), (4, 8)
    ):
        chunk = interp._default_chunk(rows, corners, k, stacked, itemsize)
        per_point = corners * k * itemsize
        budget = max(interp._MIN_CHUNK_BYTES, interp._TEMP_BYTES - rows * (corners * k if stacked else k) * itemsize)
        assert chunk & (chunk - 1) == 0 and chunk * per_point <= budget < 2 * chunk * per_point
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert interp._default_chunk(512 * 512, 4, 2, True, 4) is None  # off CPU: one chunk
    assert 4 * mib == interp._MIN_CHUNK_BYTES


@pytest.mark.parametrize("n", [2**20, 2**22], ids=["2^20", "2^22"])
def test_backward_scratch_does_not_grow_with_the_batch(n):
    """The compiled forward + backward of a 512^2 grid accumulates the table gradient chunk
    by chunk: besides the forward's integer cells (d int32 per point) its scratch stays
    within the 24 MiB budget, where a one-shot scatter would need 32 bytes of updates per
    point (128 MiB at 2^22 points)."""
    res, k = (512, 512), 2
    table = jax.ShapeDtypeStruct((512 * 512, k), jnp.float32)
    x = jax.ShapeDtypeStruct((n, 2), jnp.float32)

    def fwd_bwd(t, p):
        out, vjp = jax.vjp(lambda t: interpolate_dense(t, p, res), t)
        return out, vjp(out)[0]

    scratch = jax.jit(fwd_bwd).lower(table, x).compile().memory_analysis().temp_size_in_bytes
    budget = interp._TEMP_BYTES + n * 2 * 4 + 2**20
    assert scratch <= budget, f"{scratch / 2**20:.1f} MiB of scratch for {n} points"


def test_chunk_must_be_positive():
    with pytest.raises(ValueError, match="chunk must be a positive number of points, got 0"):
        interpolate_dense(jnp.zeros((4, 1)), jnp.zeros((3, 2)), (2, 2), chunk=0)


# ----------------------------------------------------------------------------- torch oracle


def torch_layout(table, res):
    """(T, k) table, axis 0 fastest -> grid_sample's (1, k, r_{d-1}, ..., r_0) input."""
    k = table.shape[1]
    return np.ascontiguousarray(np.asarray(table).T.reshape((1, k) + tuple(res[::-1])))


@pytest.mark.oracle
@pytest.mark.parametrize("chunk", [None, 16], ids=["one-chunk", "chunk16"])
@pytest.mark.parametrize("res", [(7,), (5, 3), (6, 9), (4, 3, 5)], ids=str)
def test_torch_grid_sample_values_and_grads(res, chunk):
    torch = pytest.importorskip("torch", reason="torch (CPU wheel) is the grid_sample oracle; not installed")
    F = torch.nn.functional
    d, k = len(res), 3
    rng = np.random.default_rng(6)
    table = rng.normal(size=(int(np.prod(res)), k))
    x = np.concatenate([make_points(res, 30, seed=7), interior_points(res, 30, 8)])
    n = x.shape[0]
    cot = rng.normal(size=(n, k))

    # torch: x_0 is grid_sample's first coordinate (the last, fastest input axis); [0, 1] -> [-1, 1].
    # 1D is 2D with a single row; "border" padding clamps outside points like ntkgrid does.
    tres = res if d > 1 else (res[0], 1)
    tx = np.concatenate([x, np.zeros((n, 1))], -1) if d == 1 else x
    inp = torch.tensor(torch_layout(table, tres), dtype=torch.float64, requires_grad=True)
    grid = torch.tensor((2.0 * tx - 1.0).reshape((1,) * len(tres) + (n, len(tres))), requires_grad=True)
    out_t = F.grid_sample(inp, grid, mode="bilinear", padding_mode="border", align_corners=True)
    out_t.backward(torch.tensor(cot.T.reshape(out_t.shape)))
    vals_t = out_t.detach().numpy().reshape(k, n).T
    gtab_t = inp.grad.numpy().reshape(k, -1).T  # back to (T, k), axis 0 fastest
    gx_t = 2.0 * grid.grad.numpy().reshape(n, len(tres))[:, :d]  # d/dx = 2 d/dgrid

    @jax.jit
    def ours(t, p, c):
        f = lambda t, p: interpolate_dense(t, p, res, chunk=chunk)  # noqa: E731
        vals, vjp = jax.vjp(f, t, p)
        gtab_grad = jax.grad(lambda t: jnp.vdot(f(t, p), c))(t)
        return vals, *vjp(c), gtab_grad

    with jax.enable_x64(True):
        vals, gtab, gx, gtab_grad = ours(jnp.asarray(table), jnp.asarray(x), jnp.asarray(cot))
    assert_close(vals, vals_t, np.float64)
    assert_close(gtab, gtab_t, np.float64)
    assert_close(gtab_grad, gtab_t, np.float64)
    inner = slice(n - 30, n)  # d/dx only where the interpolant is differentiable
    assert_close(np.asarray(gx)[inner], gx_t[inner], np.float64)
