"""Tests for ntkgrid.models: every parameterisation's layer scales and initialisation against a
NumPy forward pass, and the coordinate conventions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgrid import config, models
from ntkgrid.config import ENCODINGS, PARAMETERIZATIONS, MultiGridConfig, TrainConfig
from ntkgrid.models import LAYER_PARAMETERIZATIONS, CoordinateMLP, build_model

# (parameterization, hidden (w_scale(fan_in), b_scale), output (w_scale(fan_in), b_scale), N(0,1) init?)
NTK = (lambda n: n**-0.5, "beta")
STD = (lambda n: 1.0, 1.0)
CASES = {
    "ntk": (NTK, NTK),
    "ntk_unscaled_output": (NTK, (lambda n: 1.0, "beta")),
    "ntk_standard_output": (NTK, STD),
    "mean_field": (NTK, (lambda n: 1.0 / n, "beta")),
    "standard": (STD, STD),
    "torch_default": (STD, STD),
}
BETA = 0.3


def test_parameterizations_have_one_source():
    assert models.PARAMETERIZATIONS is config.PARAMETERIZATIONS
    assert tuple(PARAMETERIZATIONS) == tuple(CASES)
    assert {p for pair in PARAMETERIZATIONS.values() for p in pair} <= set(LAYER_PARAMETERIZATIONS)


def test_build_model_is_the_configs_network():
    enc = MultiGridConfig(num_levels=2, min_res=3, max_res=5)
    cfg = TrainConfig(encoding=enc, hidden=(7, 5), parameterization="mean_field", beta=0.2, coords="signed")
    model = build_model(cfg, 2, 4)
    assert model.encoding == enc.build(2) and model.hidden == (7, 5) and model.out_dim == 4
    assert (model.parameterization, model.beta, model.coords) == ("mean_field", 0.2, "signed")


@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_layer_scales_match_numpy_forward(param):
    model = CoordinateMLP(hidden=(64, 48), out_dim=3, parameterization=param, beta=BETA)
    x = np.random.default_rng(0).random((5, 2)).astype(np.float32)
    v = model.init(jax.random.PRNGKey(1), jnp.asarray(x))["params"]
    h = x.astype(np.float64)
    layers = [CASES[param][0]] * 2 + [CASES[param][1]]
    for i, (w_scale, b_scale) in enumerate(layers):
        w = np.asarray(v[f"dense_{i}"]["kernel"], np.float64)
        b = np.asarray(v[f"dense_{i}"]["bias"], np.float64)
        fan_in = w.shape[0]
        if param == "torch_default":  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights and biases
            assert np.abs(w).max() <= fan_in**-0.5 and np.abs(b).max() <= fan_in**-0.5
            assert 0.8 < w.std() * np.sqrt(3 * fan_in) < 1.2
        elif (w_scale, b_scale) == STD:  # LeCun normal weights, zero biases
            assert np.all(b == 0)
            assert 0.6 < w.std() * np.sqrt(fan_in) < 1.4 or fan_in < 8
        else:  # N(0, 1) weights and biases
            assert 0.8 < w.std() < 1.2
        bs = BETA if b_scale == "beta" else b_scale
        h = w_scale(fan_in) * h @ w + bs * b
        if i < 2:
            h = np.maximum(h, 0.0)
    out = np.asarray(model.apply({"params": v}, jnp.asarray(x)), np.float64)
    np.testing.assert_allclose(out, h, rtol=2e-5, atol=2e-5)


def test_mean_field_output_is_sqrt_n_smaller_than_ntk_output():
    x = jnp.asarray(np.random.default_rng(0).random((7, 2)), jnp.float32)
    outs = {}
    for p in ("ntk", "mean_field"):
        m = CoordinateMLP(hidden=(128, 128), out_dim=2, parameterization=p, beta=0.0)
        outs[p] = np.asarray(m.apply(m.init(jax.random.PRNGKey(0), x), x))
    np.testing.assert_allclose(outs["mean_field"] * np.sqrt(128), outs["ntk"], rtol=1e-4, atol=1e-6)


def test_unknown_parameterization_is_refused():
    with pytest.raises(ValueError, match="parameterization"):
        TrainConfig(parameterization="ntk2")
    with pytest.raises(ValueError, match="parameterization"):
        CoordinateMLP(parameterization="bogus").init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))


def test_signed_coords_map_unit_square_to_minus_one_one():
    cfg = TrainConfig(hidden=(16,))
    x = jnp.asarray([[0.0, 0.0], [1.0, 1.0], [0.25, 0.75]], jnp.float32)
    unit, signed = build_model(cfg, 2, 3), build_model(cfg.replace(coords="signed"), 2, 3)
    v = unit.init(jax.random.PRNGKey(0), x)
    np.testing.assert_allclose(signed.apply(v, x), unit.apply(v, 2 * x - 1), rtol=1e-6, atol=1e-6)
    # pixel (0, 0) at corner coordinates (0, 0) enters the network as (-1, -1)
    first = signed.apply(v, x[:1], method=lambda m, z: m.layers[0](m._encode(z)))
    direct = unit.apply(v, -jnp.ones((1, 2)), method=lambda m, z: m.layers[0](m._encode(z)))
    np.testing.assert_allclose(first, direct, rtol=1e-6)


@pytest.mark.parametrize("kind", sorted(ENCODINGS))
def test_signed_coords_follow_the_encodings_declaration(kind):
    """coords="signed" leaves the lookup of an encoding that takes unit coordinates (the grids)
    on the unit square and maps the others' input to 2x - 1, as each module class declares; a
    grid's appended raw coordinates (include_input) enter the MLP as 2x - 1, as the baseline's."""
    small = {"num_levels": 1, "min_res": 4, "max_res": 4} if kind in ("multigrid", "mulfagrid") else \
        {"num_levels": 1, "min_res": 4, "log2_table_size": 6} if kind == "hashgrid" else \
        {"num_features": 8} if kind == "gaussian" else {}
    cfg = TrainConfig(hidden=(8,)).replace(encoding={"kind": kind, **small})
    unit, signed = build_model(cfg, 2, 1), build_model(cfg.replace(coords="signed"), 2, 1)
    declared = ENCODINGS[kind].module_class().takes_unit_coords
    assert declared == (kind in ("multigrid", "hashgrid", "mulfagrid"))
    x = jnp.asarray(np.random.default_rng(1).random((6, 2)), jnp.float32)
    v = unit.init(jax.random.PRNGKey(0), x)
    if not declared:
        np.testing.assert_array_equal(signed.apply(v, x), unit.apply(v, 2 * x - 1))
        return
    fu, fs = (np.asarray(m.apply(v, x, method=lambda m, z: m._encode(z))) for m in (unit, signed))
    raw = 2 if getattr(unit.encoding, "include_input", False) else 0
    np.testing.assert_array_equal(fs[:, :fs.shape[1] - raw], fu[:, :fu.shape[1] - raw])  # the grid lookup
    if raw:
        np.testing.assert_allclose(fs[:, -raw:], 2 * np.asarray(x) - 1, rtol=1e-6)
        assert not np.allclose(signed.apply(v, x), unit.apply(v, x))
    else:
        np.testing.assert_array_equal(signed.apply(v, x), unit.apply(v, x))
