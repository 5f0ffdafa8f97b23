"""Taps: how modules expose the structure that makes their NTK cheap to compute exactly.

Every parameterised operation in ntkgrid is linear in its parameters with a Jacobian of
outer-product form, so its share of the empirical NTK is

    K_op[n, m] = <cotangent_n, cotangent_m> * G_op[n, m]

where the cotangent is d(output)/d(op output) at point n and ``G_op`` is a small Gram
matrix of the op's *input structure*:

* ``dense``: ``y = w_scale * a @ W + b_scale * b``  ->  ``G = w_scale^2 a_n.a_m + b_scale^2``
* ``sparse``: ``y = sum_c w_c table[idx_c]`` (grid levels, hash tables)
  ->  ``G = sum_{c,c'} w_nc w_mc' [idx_nc == idx_mc']``
* ``sparse`` with per-feature weights ``w: (..., C, k)`` (MulFAGrid) is handled the same
  way, feature by feature.

A module calls :func:`tap` on the op's output. Normally this is the identity. When
:func:`ntkgrid.ntk.structured_ntk` applies the model with the ``ntk_structure`` collection
mutable, the call also records the structure (``sow``) and adds a zero perturbation from
the ``ntk_taps`` collection, whose gradient is the cotangent. During ``init`` nothing is
recorded, so user-facing variables hold only ``params``.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp

STRUCTURE = "ntk_structure"
TAPS = "ntk_taps"


def tap(module: nn.Module, name: str, value: jnp.ndarray, structure: dict | Callable[[], dict]) -> jnp.ndarray:
    """Return ``value``; record ``structure`` and a perturbation when the NTK asks for them.

    Args:
      module: the bound module owning the parameters.
      name: unique name of the op inside ``module``.
      value: the op's output ``(..., width)``.
      structure: ``{"kind": "dense", "a": (..., fan_in), "w_scale": float, "b_scale":
        float or None, "n_params": int}`` or ``{"kind": "sparse", "idx": (..., C) int,
        "w": (..., C) or (..., C, width), "n_params": int}``; or a function returning it,
        called only when the structure is recorded.
    """
    if module.is_initializing():
        return value
    if module.is_mutable_collection(STRUCTURE):
        if callable(structure):
            structure = structure()
        module.sow(STRUCTURE, name, structure, reduce_fn=lambda _, y: y, init_fn=lambda: None)
    return module.perturb(name, value, collection=TAPS)
