"""Tests for the encoding registry and its contract (ntkgrid.config.register_encoding): an
encoding defined here, outside the package, is registered, trained with ``ntkgrid.fit``
(run folder written and read back), and its structured NTK equals a jax.jacrev J J^T."""

from __future__ import annotations

import dataclasses
import re
import sys
import types
from pathlib import Path
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkgrid
from ntkgrid import config, evidence
from ntkgrid.config import ENCODINGS, EncodingConfig, TrainConfig, register_encoding, unregister_encoding
from ntkgrid.encodings import tap
from ntkgrid.models import build_model
from ntkgrid.training import load_run

from ._cases import jacobian_ntk, rel_err, to64


class SimplexGrid(nn.Module):
    """A 2D dense grid read by barycentric interpolation on the two triangles of each cell
    (3 nodes per point, where bilinear reads 4). ``(..., 2) -> (..., levels * k)``.

    Its parameters are ``level_<l>``, ``(res_l^2, k)`` with axis 0 fastest; each level's
    lookup is tapped with its sparse structure (node indices and weights), so the exact
    structured NTK covers it."""

    is_grid: ClassVar[bool] = True  # a learnable grid: parameters level_0 .. level_{L-1}
    takes_unit_coords: ClassVar[bool] = True  # looks up x in [0, 1]^2 whatever the coords

    dim: int  # coordinate dimension (2 only)
    resolutions: tuple[int, ...] = (4, 7)  # nodes per axis of each level
    features_per_level: int = 2  # k, learnable scalars per node
    init_std: float = 0.1  # node init N(0, init_std^2)
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if self.dim != 2 or x.shape[-1] != 2:
            raise ValueError(f"SimplexGrid takes (..., 2) coordinates, got {x.shape}")
        x = x.astype(jnp.result_type(x.dtype, self.param_dtype))
        feats = []
        for level, r in enumerate(self.resolutions):
            table = self.param(f"level_{level}", nn.initializers.normal(self.init_std),
                               (r * r, self.features_per_level), self.param_dtype).astype(x.dtype)
            u = jnp.clip(x, 0.0, 1.0) * (r - 1)
            cell = jnp.clip(jnp.floor(u), 0, r - 2).astype(jnp.int32)
            fx, fy = u[..., 0] - cell[..., 0], u[..., 1] - cell[..., 1]
            lower = fx >= fy  # triangle (0,0)-(1,0)-(1,1) below the diagonal, (0,0)-(0,1)-(1,1) above
            i0 = cell[..., 0] + r * cell[..., 1]
            idx = jnp.stack([i0, jnp.where(lower, i0 + 1, i0 + r), i0 + r + 1], axis=-1)  # (..., 3)
            w = jnp.stack([1.0 - jnp.maximum(fx, fy), jnp.abs(fx - fy), jnp.minimum(fx, fy)], axis=-1)
            value = jnp.einsum("...c,...ck->...k", w, table[idx])
            feats.append(tap(self, f"level_{level}", value,
                             {"kind": "sparse", "idx": idx, "w": w, "n_params": table.size}))
        return jnp.concatenate(feats, axis=-1)


@dataclasses.dataclass(frozen=True)
class SimplexGridConfig(EncodingConfig):
    """The config of :class:`SimplexGrid`: its fields are the module's keyword arguments."""

    kind: ClassVar[str] = "simplexgrid"
    module: ClassVar[type] = SimplexGrid

    resolutions: tuple[int, ...] = (4, 7)  # nodes per axis of each level
    features_per_level: int = 2  # k, learnable scalars per node
    init_std: float = 0.1  # node init N(0, init_std^2)


@pytest.fixture
def simplex():
    """SimplexGridConfig registered for one test, and unregistered after it."""
    register_encoding(SimplexGridConfig)
    try:
        yield SimplexGridConfig
    finally:
        unregister_encoding(SimplexGridConfig.kind)
    assert SimplexGridConfig.kind not in ENCODINGS


def _image(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:n, 0:n] / (n - 1)
    img = np.stack([rows, cols, 0.5 + 0.5 * np.sin(6 * rows * cols)], axis=-1).astype(np.float32)
    return ntkgrid.image_to_dataset(img)


def test_simplex_weights_interpolate_the_nodes():
    """The worked encoding itself: weights sum to 1, and at a node it returns that node."""
    enc = SimplexGrid(dim=2, resolutions=(5,), features_per_level=1)
    v = enc.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    table = np.asarray(v["params"]["level_0"])[:, 0]
    nodes = np.stack(np.meshgrid(np.arange(5), np.arange(5), indexing="xy"), -1).reshape(-1, 2) / 4.0
    np.testing.assert_allclose(np.asarray(enc.apply(v, jnp.asarray(nodes)))[:, 0], table, rtol=1e-6, atol=1e-7)
    ones = {"params": {"level_0": jnp.ones_like(v["params"]["level_0"])}}
    x = jax.random.uniform(jax.random.PRNGKey(1), (50, 2))
    np.testing.assert_allclose(enc.apply(ones, x), 1.0, rtol=1e-6)


def test_registered_encoding_round_trips_and_joins_the_derived_lists(simplex):
    enc = simplex(resolutions=(3, 5), features_per_level=1)
    assert config.ENCODING_KINDS[-1] == "simplexgrid" and "simplexgrid" in config.GRID_KINDS
    cfg = TrainConfig(encoding=enc, hidden=(8,))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    d = cfg.to_dict()["encoding"]
    assert d == {"kind": "simplexgrid", "resolutions": (3, 5), "features_per_level": 1, "init_std": 0.1}
    assert config.encoding_from_dict(d) == enc
    assert cfg.replace(encoding={"init_std": 0.2}).encoding == simplex(resolutions=(3, 5), features_per_level=1,
                                                                       init_std=0.2)
    assert evidence.grid_configs({"a": cfg.to_dict(), "b": TrainConfig().to_dict()}) == ["a"]
    with pytest.raises(ValueError, match="format-1"):  # format 1 predates registered kinds
        config.encoding_from_format1({"kind": "simplexgrid"})


def test_unregistered_encoding_is_refused():
    assert "simplexgrid" not in ENCODINGS and "simplexgrid" not in config.GRID_KINDS
    with pytest.raises(TypeError, match="encoding must be one of the configs"):
        TrainConfig(encoding=SimplexGridConfig())
    with pytest.raises(ValueError, match="encoding kind must be one of"):
        config.encoding_from_dict({"kind": "simplexgrid"})


def test_register_checks_the_contract(simplex):
    register_encoding(simplex)  # the same class again: nothing happens
    assert ENCODINGS["simplexgrid"] is simplex

    @dataclasses.dataclass(frozen=True)
    class Other(EncodingConfig):
        kind: ClassVar[str] = "simplexgrid"
        module: ClassVar[type] = SimplexGrid

    with pytest.raises(ValueError, match="already registered to SimplexGridConfig"):
        register_encoding(Other)

    class Undeclared(nn.Module):
        dim: int

        def __call__(self, x):
            return x

    @dataclasses.dataclass(frozen=True)
    class Bad(EncodingConfig):
        kind: ClassVar[str] = "bad"
        module: ClassVar[type] = Undeclared

    with pytest.raises(TypeError, match="must declare the class variable is_grid"):
        register_encoding(Bad)
    with pytest.raises(TypeError, match="frozen dataclass"):
        register_encoding(dataclasses.dataclass(type("Loose", (EncodingConfig,), {"kind": "loose",
                                                                                     "module": SimplexGrid})))
    with pytest.raises(ValueError, match="not a registered"):
        unregister_encoding("multigrid")
    assert "bad" not in ENCODINGS and "loose" not in ENCODINGS


def test_registered_encoding_trains_and_its_structured_ntk_is_exact(simplex, tmp_path):
    """The proof of the contract: fit trains it (writing a run folder that loads back), and
    the structured NTK of the trained network equals jax.jacrev's J J^T in float64."""
    x, y = _image(8)
    cfg = TrainConfig(encoding=simplex(), hidden=(16,), learning_rate=5.0, epochs=2, batch_size=16,
                      checkpoints=(0, 2), ntk_points=16, seed=3)
    res = ntkgrid.fit(cfg, x, y, out_dir=tmp_path / "run", progress=False)
    assert not res.diverged and res.losses.shape == (2,) and res.losses[-1] < res.losses[0]
    assert set(res.params["params"]["encoding"]) == {"level_0", "level_1"}
    back = load_run(tmp_path / "run")  # run.json names the registered kind and its fields
    assert back.config == cfg and back.complete
    np.testing.assert_array_equal(back.params["params"]["encoding"]["level_1"],
                                  res.params["params"]["encoding"]["level_1"])
    model = build_model(cfg, 2, 3)
    signed = build_model(cfg.replace(coords="signed"), 2, 3)  # a grid: looks up [0, 1]^2 either way
    np.testing.assert_array_equal(signed.apply(res.params, x), model.apply(res.params, x))
    with jax.enable_x64(True):
        v = to64(res.params)
        xs = jnp.asarray(x[::3], jnp.float64)  # 22 points, some on shared cells and nodes
        k = ntkgrid.empirical_ntk(model, v, xs, method="structured")
        ref = jacobian_ntk(model.apply, v, xs, trace=True)
    assert k.dtype == np.float64 and k.shape == (len(xs), len(xs))
    assert rel_err(k, ref) <= 1e-12
    # fit's spectra (structured, by group): the levels are the "grid" group, shared by neighbours
    assert {"total", "mlp", "grid", "no_grid"} <= set(res.final["spectra"]) and res.final["ntk_points"] == 16
    assert res.final["grid_offdiag_fraction"] > 0.1


def _readme_example() -> str:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## Adding an encoding"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_and_its_kernel_is_exact():
    """The README's "Adding an encoding" example runs as written (registering its kind, which
    is removed afterwards), and its encoding's structured NTK equals jacrev's."""
    # a module of its own, as a script or notebook has (dataclasses look class variables up there)
    module = types.ModuleType("readme_adding_an_encoding")
    scope = module.__dict__
    sys.modules[module.__name__] = module
    try:
        exec(compile(_readme_example(), "README.md", "exec"), scope)
        assert config.ENCODINGS["nearestgrid"] is scope["NearestGridConfig"]
        assert not scope["result"].diverged and scope["result"].losses.shape == (2,)
        assert scope["kernel"].shape == (64, 64)
        model = build_model(scope["cfg"], 2, 3)
        with jax.enable_x64(True):
            v, xs = to64(scope["result"].params), jnp.asarray(scope["x"][:40], jnp.float64)
            k = ntkgrid.empirical_ntk(model, v, xs, method="structured")
            ref = jacobian_ntk(model.apply, v, xs, trace=True)
        assert rel_err(k, ref) <= 1e-12
    finally:
        del sys.modules[module.__name__]
        if "nearestgrid" in config.ENCODINGS:
            unregister_encoding("nearestgrid")
