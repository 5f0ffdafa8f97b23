"""Coordinate MLPs in the NTK parameterisation, as Flax Linen modules.

``CoordinateMLP(encoding, hidden, out_dim)`` is ``x -> encoding(x) -> [Dense -> ReLU] *
len(hidden) -> Dense``. ``model.apply(variables, x)`` is the ``f(params, x)`` that
neural-tangents expects.

NTK parameterisation (Jacot et al. 2018; the paper's Appendix A.1): every weight and bias
is drawn from N(0, 1) and a layer computes ``W a / sqrt(fan_in) + beta * b`` with
``beta = 0.1``. Other readings of the paper (see experiments/RECIPE.md), chosen with
``CoordinateMLP.parameterization`` (:data:`PARAMETERIZATIONS`):

* ``"ntk"``: every layer ``W a / sqrt(n) + beta b``, W, b ~ N(0, 1) (the paper's A.1).
* ``"ntk_unscaled_output"``: hidden layers as ``"ntk"``; the output layer has no
  ``1/sqrt(n)`` factor: ``W a + beta b`` with W ~ N(0, 1) (the literal reading of "NTK
  without the factor on the output layer"; its output is ``sqrt(n)`` times larger).
* ``"ntk_standard_output"``: hidden layers as ``"ntk"``; the output layer is a standard
  dense layer (LeCun-normal W, zero bias, ``W a + b``), as a PyTorch model with NTK
  hidden layers and a plain ``nn.Linear`` head would be. Same forward distribution as
  ``"ntk"`` at initialisation (up to the bias), but the output layer's share of the NTK
  is ``n`` times larger.
* ``"mean_field"``: hidden layers as ``"ntk"``; the output layer is ``W a / n + beta b``
  (mean-field / muP-style head): the whole NTK is about ``n`` times smaller.
* ``"standard"``: every layer LeCun-normal W, zero bias, ``W a + b``.
* ``"torch_default"``: every layer as PyTorch's ``nn.Linear`` initialises it: W and b ~
  U(-1/sqrt(n), 1/sqrt(n)) (``kaiming_uniform_(a=sqrt(5))``), ``W a + b``: a standard
  parameterisation whose forward signal shrinks ~6x in second moment per ReLU layer.

``coords="signed"`` maps the input coordinates from ``[0, 1]`` to ``[-1, 1]`` (``2x - 1``)
before an encoding whose class declares ``takes_unit_coords = False`` (the non-grid ones, and
any module that declares nothing). Grid encodings declare ``True`` and always look up the
``[0, 1]`` coordinates (the grid spans the image either way); the raw coordinates a grid
appends (``include_input``) enter the MLP as ``2x - 1``, as the baseline's do, so ``coords``
treats every network's raw-coordinate input the same way.

:func:`build_model` is the model a :class:`~ntkgrid.config.TrainConfig` trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ntkgrid._taps import tap
from ntkgrid.config import COORDS, PARAMETERIZATIONS, TrainConfig
from ntkgrid.encodings import Identity

__all__ = ["COORDS", "CoordinateMLP", "LAYER_PARAMETERIZATIONS", "NTKDense", "PARAMETERIZATIONS", "build_model"]

# PARAMETERIZATIONS (network level: {name: (hidden layers', output layer's) NTKDense
# parameterisation}) and COORDS are ntkgrid.config's, re-exported here.
#: Per-layer parameterisations of :class:`NTKDense`.
LAYER_PARAMETERIZATIONS = ("ntk", "ntk_unscaled", "mean_field", "standard", "torch")


class NTKDense(nn.Module):
    """Dense layer ``y = w_scale * a @ W + b_scale * b`` on the last axis.

    Attributes:
      features: output width.
      parameterization: ``"ntk"`` (W, b ~ N(0, 1); ``w_scale = 1/sqrt(fan_in)``,
        ``b_scale = beta``), ``"ntk_unscaled"`` (W, b ~ N(0, 1); ``w_scale = 1``,
        ``b_scale = beta``), ``"mean_field"`` (W, b ~ N(0, 1); ``w_scale = 1/fan_in``,
        ``b_scale = beta``), ``"standard"`` (LeCun-normal W, zero b; both scales 1) or
        ``"torch"`` (W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default; scales 1).
      beta: bias scale of the NTK parameterisation.
      use_bias: add a bias.
      param_dtype: dtype of the parameters.
    """

    features: int
    parameterization: str = "ntk"
    beta: float = 0.1
    use_bias: bool = True
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, a: jnp.ndarray) -> jnp.ndarray:
        """``a: (..., fan_in) -> (..., features)``."""
        fan_in = a.shape[-1]
        p = self.parameterization
        if p in ("ntk", "ntk_unscaled", "mean_field"):
            w_init, b_init = nn.initializers.normal(1.0), nn.initializers.normal(1.0)
            w_scale = {"ntk": fan_in**-0.5, "ntk_unscaled": 1.0, "mean_field": 1.0 / fan_in}[p]
            b_scale = self.beta
        elif p == "standard":
            w_init, b_init = nn.initializers.lecun_normal(), nn.initializers.zeros
            w_scale, b_scale = 1.0, 1.0
        elif p == "torch":
            bound = fan_in**-0.5
            def w_init(key, shape, dtype):
                return jax.random.uniform(key, shape, dtype, -bound, bound)

            b_init = w_init
            w_scale, b_scale = 1.0, 1.0
        else:
            raise ValueError(f"layer parameterization must be one of {LAYER_PARAMETERIZATIONS}, got {p!r}")
        kernel = self.param("kernel", w_init, (fan_in, self.features), self.param_dtype)
        dtype = jnp.result_type(a.dtype, kernel.dtype)
        y = w_scale * (a.astype(dtype) @ kernel.astype(dtype))
        if self.use_bias:
            bias = self.param("bias", b_init, (self.features,), self.param_dtype)
            y = y + b_scale * bias.astype(dtype)
        n_params = fan_in * self.features + (self.features if self.use_bias else 0)
        structure = {
            "kind": "dense",
            "a": a.astype(dtype),
            "w_scale": w_scale,
            "b_scale": b_scale if self.use_bias else None,
            "n_params": n_params,
        }
        return tap(self, "out", y, structure)


class CoordinateMLP(nn.Module):
    """Encoding followed by a ReLU MLP with a linear output.

    Attributes:
      encoding: a Flax module mapping ``(..., d)`` to ``(..., F)`` (see
        :mod:`ntkgrid.encodings`); defaults to the identity (the paper's baseline).
      hidden: widths of the hidden layers, e.g. ``(512, 512)`` for the paper's images.
      out_dim: output channels (3 for RGB, 1 for occupancy logits).
      parameterization: a key of :data:`PARAMETERIZATIONS` (see the module docstring).
      beta: bias scale of the NTK parameterisation.
      param_dtype: dtype of the MLP parameters.
      coords: ``"unit"`` (inputs used as given, ``[0, 1]``) or ``"signed"`` (``2x - 1``
        before an encoding whose class has ``takes_unit_coords`` False, and for a grid's
        appended raw coordinates); see the module docstring.
    """

    encoding: nn.Module = Identity()
    hidden: Sequence[int] = (512, 512)
    out_dim: int = 3
    parameterization: str = "ntk"
    beta: float = 0.1
    param_dtype: jnp.dtype = jnp.float32
    coords: str = "unit"

    def setup(self):
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {tuple(PARAMETERIZATIONS)}, "
                             f"got {self.parameterization!r}")
        if self.coords not in COORDS:
            raise ValueError(f"coords must be one of {COORDS}, got {self.coords!r}")
        hidden_p, out_p = PARAMETERIZATIONS[self.parameterization]
        widths = [*self.hidden, self.out_dim]
        self.layers = [
            NTKDense(w, out_p if i == len(widths) - 1 else hidden_p, self.beta, param_dtype=self.param_dtype,
                     name=f"dense_{i}")
            for i, w in enumerate(widths)
        ]

    def _encode(self, x: jnp.ndarray) -> jnp.ndarray:
        """``(..., d) -> (..., F)``: the encoding's features under ``coords`` (module docstring)."""
        if self.coords != "signed":
            return self.encoding(x)
        if not getattr(type(self.encoding), "takes_unit_coords", False):
            return self.encoding(2.0 * x - 1.0)
        h = self.encoding(x)  # the grid looks up the [0, 1] coordinates
        if getattr(self.encoding, "include_input", False):  # raw coordinates are the last d features
            d = x.shape[-1]
            h = jnp.concatenate([h[..., :-d], (2.0 * x - 1.0).astype(h.dtype)], axis=-1)
        return h

    def features(self, x: jnp.ndarray) -> list[jnp.ndarray]:
        """Post-ReLU activations of every hidden layer, each ``(..., width)``."""
        h = self._encode(x)
        acts = []
        for layer in self.layers[:-1]:
            h = jax.nn.relu(layer(h))
            acts.append(h)
        return acts

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """``x: (..., d)`` in ``[0, 1]^d`` -> ``(..., out_dim)`` (linear output)."""
        h = self._encode(x)
        for layer in self.layers[:-1]:
            h = jax.nn.relu(layer(h))
        return self.layers[-1](h)


def build_model(cfg: TrainConfig, dim: int, out_dim: int) -> CoordinateMLP:
    """The :class:`CoordinateMLP` that ``cfg`` trains on ``dim``-dimensional coordinates with
    ``out_dim`` output channels: ``cfg.encoding.build(dim)``, then ``cfg.hidden``,
    ``cfg.parameterization``, ``cfg.beta`` and ``cfg.coords``."""
    return CoordinateMLP(cfg.encoding.build(dim), tuple(cfg.hidden), out_dim, cfg.parameterization, cfg.beta,
                         coords=cfg.coords)
