"""Coordinate MLPs in the NTK parameterisation, as Flax Linen modules.

``CoordinateMLP(encoding, hidden, out_dim)`` is ``x -> encoding(x) -> [Dense -> ReLU] *
len(hidden) -> Dense``. ``model.apply(variables, x)`` is the ``f(params, x)`` that
neural-tangents expects.

NTK parameterisation (Jacot et al. 2018; the paper's Appendix A.1): every weight and bias
is drawn from N(0, 1) and a layer computes ``W a / sqrt(fan_in) + beta * b`` with
``beta = 0.1``. The standard parameterisation (``parameterization="standard"``: LeCun
normal weights, zero biases, ``W a + b``) is available for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ntkgrid._taps import tap
from ntkgrid.encodings import Identity

__all__ = ["CoordinateMLP", "NTKDense"]


class NTKDense(nn.Module):
    """Dense layer ``y = w_scale * a @ W + b_scale * b`` on the last axis.

    Attributes:
      features: output width.
      parameterization: ``"ntk"`` (W, b ~ N(0, 1); ``w_scale = 1/sqrt(fan_in)``,
        ``b_scale = beta``) or ``"standard"`` (LeCun-normal W, zero b; both scales 1).
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
        if self.parameterization == "ntk":
            w_init, b_init = nn.initializers.normal(1.0), nn.initializers.normal(1.0)
            w_scale, b_scale = fan_in**-0.5, self.beta
        elif self.parameterization == "standard":
            w_init, b_init = nn.initializers.lecun_normal(), nn.initializers.zeros
            w_scale, b_scale = 1.0, 1.0
        else:
            raise ValueError(f"parameterization must be 'ntk' or 'standard', got {self.parameterization!r}")
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
      parameterization: ``"ntk"`` or ``"standard"`` (see :class:`NTKDense`).
      beta: bias scale of the NTK parameterisation.
      param_dtype: dtype of the MLP parameters.
    """

    encoding: nn.Module = Identity()
    hidden: Sequence[int] = (512, 512)
    out_dim: int = 3
    parameterization: str = "ntk"
    beta: float = 0.1
    param_dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.layers = [
            NTKDense(w, self.parameterization, self.beta, param_dtype=self.param_dtype, name=f"dense_{i}")
            for i, w in enumerate([*self.hidden, self.out_dim])
        ]

    def features(self, x: jnp.ndarray) -> list[jnp.ndarray]:
        """Post-ReLU activations of every hidden layer, each ``(..., width)``."""
        h = self.encoding(x)
        acts = []
        for layer in self.layers[:-1]:
            h = jax.nn.relu(layer(h))
            acts.append(h)
        return acts

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """``x: (..., d)`` in ``[0, 1]^d`` -> ``(..., out_dim)`` (linear output)."""
        h = self.encoding(x)
        for layer in self.layers[:-1]:
            h = jax.nn.relu(layer(h))
        return self.layers[-1](h)
