"""neural-tangents 0.6.5 through ntkgrid's compatibility layer, against a jacrev J J^T."""

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from ntkgrid import CoordinateMLP, MultiGrid
from ntkgrid.ntk import RefusedMethodError, empirical_ntk, nt_ntk

from ._cases import jacobian_ntk, rel_err, to64


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_has_no_side_effects():
    out = _run(
        "import sys, jax; import ntkgrid, ntkgrid.ntk, ntkgrid.spectrum;"
        "print('tensorflow' in sys.modules, 'neural_tangents' in sys.modules, jax.config.jax_enable_x64)"
    )
    assert out == "False False False"


def test_public_api_is_curated_and_lazy():
    out = _run(
        "import sys, ntkgrid; light = 'optax' not in sys.modules and 'ntkgrid.training' not in sys.modules;"
        "from ntkgrid import fit, load_run, ntk_spectrum, empirical_ntk, TrainConfig, compare_spectra;"
        "print(light, fit.__module__, ntk_spectrum.__module__, sorted(set(ntkgrid.__all__) - set(dir(ntkgrid))))"
    )
    assert out == "True ntkgrid.training.loop ntkgrid.spectrum []"
    import ntkgrid

    with pytest.raises(AttributeError, match="no attribute 'tap_structure'"):
        ntkgrid.tap_structure  # noqa: B018 - internals are not re-exported


def test_configs_and_presets_import_without_jax_and_every_api_name_resolves():
    out = _run("import sys, ntkgrid, ntkgrid.config, ntkgrid.presets, ntkgrid.readings; "
               "print(sorted({'jax', 'flax', 'optax'} & set(sys.modules)))")
    assert out == "[]"  # so a CLI can read presets before it sets XLA_FLAGS
    import ntkgrid

    assert sorted(ntkgrid.__all__) == sorted(ntkgrid._API)
    for name in ntkgrid.__all__:
        assert getattr(ntkgrid, name).__name__ == name


def test_neural_tangents_imports_without_tensorflow():
    out = _run(
        "import sys; from ntkgrid._nt_compat import import_nt; nt = import_nt();"
        "print(nt.__version__, 'tensorflow' in sys.modules)"
    )
    assert out == "0.6.5 False"


class TwoLayer(nn.Module):
    """A plain Flax model (no ntkgrid layers): NT must work on any Linen module."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(4)(jnp.tanh(nn.Dense(16)(x)))


MODELS = {
    "flax_dense": (TwoLayer(), 3),
    "mlp_multigrid": (CoordinateMLP(MultiGrid(dim=2, num_levels=2, min_res=3, max_res=6), (12, 12), 3), 2),
}


@pytest.mark.parametrize("method", ["jacobian", "ntvp"])
@pytest.mark.parametrize("trace", [True, False])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_nt_matches_jacrev(name, method, trace):
    model, d = MODELS[name]
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.PRNGKey(1), (9, d), jnp.float64)
        v = to64(model.init(jax.random.PRNGKey(0), x))
        ref = jacobian_ntk(model.apply, v, x, trace)
        k = nt_ntk(model, v, x, method=method, trace=trace)
    assert k.shape == ref.shape == ((9, 9) if trace else (9, 9) + ref.shape[2:])
    assert k.dtype == jnp.float64
    assert rel_err(k, ref) <= 1e-10


def test_trace_axes_is_a_mean_over_outputs():
    model, d = MODELS["flax_dense"]
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.PRNGKey(1), (5, d), jnp.float64)
        v = to64(model.init(jax.random.PRNGKey(0), x))
        full = nt_ntk(model, v, x, trace=False)
        traced = nt_ntk(model, v, x, trace=True)
        diag = jnp.diagonal(full, axis1=2, axis2=3)
        assert rel_err(traced, jnp.mean(diag, -1)) <= 1e-12
        assert rel_err(traced, jnp.sum(diag, -1)) > 0.5


def test_structured_derivatives_refused_with_reason():
    model, d = MODELS["flax_dense"]
    x = jnp.zeros((2, d))
    v = model.init(jax.random.PRNGKey(0), x)
    with pytest.raises(RefusedMethodError, match="implementation 3"):
        empirical_ntk(model, v, x, method="structured_derivatives")


def test_param_filter_restricts_the_kernel():
    model, d = MODELS["mlp_multigrid"]
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.PRNGKey(1), (7, d), jnp.float64)
        v = to64(model.init(jax.random.PRNGKey(0), x))
        full = nt_ntk(model, v, x)
        grid = nt_ntk(model, v, x, param_filter=lambda p: p.startswith("encoding/"))
        mlp = nt_ntk(model, v, x, param_filter=lambda p: not p.startswith("encoding/"))
    assert rel_err(grid + mlp, full) <= 1e-12
