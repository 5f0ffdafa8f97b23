"""Tests for ntkgrid.config: the per-encoding configs, their registry, and the run.json formats."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from ntkgrid import config, encodings
from ntkgrid.config import (
    _FORMAT1_ALL,
    CONFIG_FORMAT,
    ENCODING_KINDS,
    ENCODINGS,
    GRID_KINDS,
    FourierConfig,
    HashGridConfig,
    MulFAGridConfig,
    MultiGridConfig,
    TrainConfig,
    encoding_from_dict,
)

# The "config" of two run.json files written by ntkgrid before the per-encoding configs
# (format 1: one flat encoding dict of 25 fields), copied verbatim from runs made with
# main at fe3c751 (2 epochs on an 8x8 random image).
OLD_HASHGRID_RUN = json.loads("""{"encoding": {"kind": "hashgrid", "num_frequencies": 8, "pi_factor": false,
"include_input": false, "gaussian_features": 256, "gaussian_sigma": 10.0, "num_levels": 1, "features_per_level": 2,
"min_res": 16, "max_res": 128, "spacing": "linear", "init_std": 0.01, "hash_levels": 2, "log2_hashmap_size": 6,
"base_resolution": 4, "per_level_scale": 1.5, "interpolation": "linear", "mfn_frequencies": 4, "mfn_width": 16,
"mfn_layers": 2, "mfn_frequency_std": 1.0, "mfn_scale": 1.0, "mfn_shared_kernel": false, "learn_filters": false,
"filter_seed": 0}, "hidden": [8], "learning_rate": 1.0, "epochs": 2, "batch_size": 16, "loss": "mse",
"loss_reduction": "mean", "parameterization": "ntk", "beta": 0.1, "coords": "unit", "pixels": "corners",
"steps_per_epoch": null, "checkpoints": null, "curve_every": 0, "ntk_points": 0, "ntk_method": "structured",
"ntk_group_spectra": "last", "seed": 0}""")
OLD_MULFAGRID_RUN = json.loads("""{"encoding": {"kind": "mulfagrid", "num_frequencies": 8, "pi_factor": false,
"include_input": false, "gaussian_features": 256, "gaussian_sigma": 10.0, "num_levels": 2, "features_per_level": 2,
"min_res": 3, "max_res": 6, "spacing": "linear", "init_std": 0.01, "hash_levels": 16, "log2_hashmap_size": 19,
"base_resolution": 16, "per_level_scale": 2.0, "interpolation": "linear", "mfn_frequencies": 4, "mfn_width": 8,
"mfn_layers": 1, "mfn_frequency_std": 1.0, "mfn_scale": 0.5, "mfn_shared_kernel": false, "learn_filters": false,
"filter_seed": 3}, "hidden": [8], "learning_rate": 1.0, "epochs": 2, "batch_size": 16, "loss": "mse",
"loss_reduction": "mean", "parameterization": "ntk", "beta": 0.1, "coords": "unit", "pixels": "corners",
"steps_per_epoch": null, "checkpoints": null, "curve_every": 0, "ntk_points": 0, "ntk_method": "structured",
"ntk_group_spectra": "last", "seed": 0}""")

# One non-default instance per kind, with every field changed where the type allows.
EXAMPLES = {
    "baseline": ENCODINGS["baseline"](),
    "fourier": FourierConfig(num_frequencies=3, pi_factor=True, include_input=True),
    "gaussian": ENCODINGS["gaussian"](num_features=5, sigma=2.5, seed=4, include_input=True),
    "multigrid": MultiGridConfig(num_levels=2, features_per_level=3, min_res=4, max_res=9, spacing="log",
                                 init_std=0.5, include_input=False, interpolation="smoothstep"),
    "hashgrid": HashGridConfig(num_levels=3, features_per_level=1, log2_table_size=7, min_res=5, per_level_scale=1.5,
                               interpolation="nearest", init_scale=0.25, include_input=True),
    "mulfagrid": MulFAGridConfig(num_levels=2, features_per_level=1, min_res=3, max_res=5, spacing="log",
                                 init_std=0.2, num_frequencies=2, filter_width=4, filter_layers=1,
                                 node_frequency_std=0.5, filter_scale=0.25, shared_kernel=True, learn_filters=True,
                                 filter_seed=9, include_input=True),
}


def test_registry_is_the_one_list_of_kinds():
    assert tuple(EXAMPLES) == ENCODING_KINDS == tuple(ENCODINGS)
    assert all(ENCODINGS[k].kind == k for k in ENCODINGS)
    assert GRID_KINDS == ("multigrid", "hashgrid", "mulfagrid")


@pytest.mark.parametrize("kind", ENCODING_KINDS)
def test_module_classes_declare_the_contract(kind):
    """Each module class says whether it is a grid and which coordinates it takes; the built-in
    configs name their module by its name in ntkgrid.encodings."""
    module = ENCODINGS[kind].module_class()
    assert isinstance(ENCODINGS[kind].module, str) and module is getattr(encodings, ENCODINGS[kind].module)
    assert module.is_grid is (kind in GRID_KINDS)
    assert module.takes_unit_coords is module.is_grid  # every built-in grid looks up [0, 1]^d
    assert "is_grid" not in {f.name for f in dataclasses.fields(module)}  # class variables, not module fields


def test_config_imports_no_model_code():
    """config -> models is the one direction (models builds what config describes)."""
    tree = ast.parse(Path(config.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {f"ntkgrid.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                 and n.module == "ntkgrid" for a in n.names}
    assert "ntkgrid.models" not in imported and not hasattr(TrainConfig, "model")
    assert imported <= {"__future__", "dataclasses", "collections.abc", "typing", "ntkgrid", "ntkgrid.encodings"}


@pytest.mark.parametrize("kind", ENCODING_KINDS)
def test_fields_are_the_modules_arguments(kind):
    """build(dim) is Module(dim=dim, **fields): every field reaches the module unrenamed,
    and the config's defaults are the module's."""
    cls = ENCODINGS[kind]
    module = getattr(encodings, cls.module)
    built = EXAMPLES[kind].build(2)
    assert type(built) is module and built.dim == 2
    default = cls().build(2)
    for f in dataclasses.fields(cls):
        assert getattr(built, f.name) == getattr(EXAMPLES[kind], f.name)
        assert getattr(default, f.name) == f.default


@pytest.mark.parametrize("kind", ENCODING_KINDS)
def test_dicts_round_trip(kind):
    enc = EXAMPLES[kind]
    d = enc.to_dict()
    assert d["kind"] == kind and encoding_from_dict(d) == enc
    cfg = TrainConfig(encoding=enc, hidden=(4, 3), checkpoints=(0, 1))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["config_format"] == CONFIG_FORMAT and d["encoding"]["kind"] == kind
    assert TrainConfig.from_dict(d) == cfg


def test_describe():
    assert EXAMPLES["baseline"].describe() == "N/A"
    assert EXAMPLES["fourier"].describe() == "L=3"
    assert EXAMPLES["gaussian"].describe() == "m=5, sigma=2.5"
    assert EXAMPLES["multigrid"].describe() == "k=3, L=2, x±=[4,9]"
    assert MultiGridConfig(max_res=50).describe() == "k=2, L=1, x=50"
    assert EXAMPLES["hashgrid"].describe() == "L=3, F=1, T=2^7, N_min=5, b=1.5"
    assert EXAMPLES["mulfagrid"].describe() == "k=1, L=2, x±=[3,5], learnt filters"


def test_old_run_json_loads_through_format_1():
    """A run.json written before the per-encoding configs (no "config_format") loads: the
    kind's own fields, renamed to the module's names; the other kinds' fields dropped."""
    assert set(OLD_HASHGRID_RUN["encoding"]) == set(OLD_MULFAGRID_RUN["encoding"]) == _FORMAT1_ALL
    cfg = TrainConfig.from_dict(OLD_HASHGRID_RUN)
    assert cfg.encoding == HashGridConfig(num_levels=2, features_per_level=2, log2_table_size=6, min_res=4,
                                          per_level_scale=1.5, interpolation="linear")
    assert cfg.hidden == (8,) and cfg.epochs == 2 and cfg.curve_every == 0
    cfg = TrainConfig.from_dict(OLD_MULFAGRID_RUN)
    assert cfg.encoding == MulFAGridConfig(num_levels=2, features_per_level=2, min_res=3, max_res=6, num_frequencies=4,
                                           filter_width=8, filter_layers=1, node_frequency_std=1.0,
                                           filter_scale=0.5, filter_seed=3)
    # The old default encoding and a partial old dict (fields added later take their defaults)
    assert TrainConfig.from_dict({}).encoding == ENCODINGS["baseline"]()
    old = {"encoding": {"kind": "gaussian", "gaussian_features": 7, "gaussian_sigma": 3.0}}
    assert TrainConfig.from_dict(old).encoding == ENCODINGS["gaussian"](num_features=7, sigma=3.0)
    old = {"encoding": {"kind": "fourier", "num_frequencies": 5, "max_res": 9}}
    assert TrainConfig.from_dict(old).encoding == FourierConfig(num_frequencies=5)
    # and writes back in the current format, which reads to the same config
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_bad_dicts_are_refused():
    with pytest.raises(ValueError, match="encoding kind must be one of"):
        TrainConfig.from_dict({"encoding": {"kind": "nope"}})
    with pytest.raises(ValueError, match="encoding kind must be one of"):
        TrainConfig.from_dict({"config_format": 2, "encoding": {"kind": "nope"}})
    with pytest.raises(TypeError, match="unknown field"):  # a format-2 name in a format-1 dict
        TrainConfig.from_dict({"encoding": {"kind": "hashgrid", "log2_table_size": 4}})
    with pytest.raises(TypeError, match="has no field"):  # another kind's field
        TrainConfig.from_dict({"config_format": 2, "encoding": {"kind": "fourier", "max_res": 4}})
    with pytest.raises(TypeError, match="encoding must be one of the configs"):
        TrainConfig(encoding={"kind": "fourier"})
    with pytest.raises(ValueError, match="config_format 3"):
        TrainConfig.from_dict({"config_format": 3})


def test_replace_changes_the_current_kinds_fields():
    cfg = TrainConfig(encoding=MultiGridConfig(num_levels=2, min_res=8, max_res=32))
    out = cfg.replace(encoding={"min_res": 4, "max_res": 16}, epochs=3)
    assert out.encoding == MultiGridConfig(num_levels=2, min_res=4, max_res=16) and out.epochs == 3
    assert cfg.replace(encoding={"kind": "multigrid", "max_res": 40}).encoding.max_res == 40
    assert cfg.replace(encoding={"kind": "fourier", "num_frequencies": 3}).encoding == FourierConfig(num_frequencies=3)
    assert cfg.replace(encoding=FourierConfig()).encoding == FourierConfig()
    with pytest.raises(TypeError, match="has no field"):
        cfg.replace(encoding={"num_frequencies": 3})
