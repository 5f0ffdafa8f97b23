"""Import neural-tangents 0.6.5 on current JAX without TensorFlow.

neural-tangents 0.6.5 (its last release) was written against JAX 0.4: it imports names
that have since moved out of ``jax.core`` and ``jax.util``, and its package ``__init__``
imports ``neural_tangents.experimental``, which imports TensorFlow. :func:`import_nt`
patches exactly those gaps, once, and then imports the package:

* the moved ``jax.core`` names are aliased from ``jax.extend.core`` / ``jax._src.core``;
* ``jax.util.safe_map`` / ``safe_zip`` are provided (strict ``map``/``zip``);
* ``jax.interpreters.ad.zeros_like_p`` (removed from JAX) gets a placeholder primitive
  that no traced program ever contains, so NT's rule table can register it;
* an empty ``neural_tangents.experimental`` module is registered first, so TensorFlow is
  never imported.

Nothing here touches global JAX configuration. Only implementations 1 (jacobian
contraction) and 2 (NTK-vector products) are supported; implementation 3 (structured
derivatives) walks JAX internals that no longer exist and is refused by
:func:`ntkgrid.ntk.empirical_ntk` with an explanation.
"""

from __future__ import annotations

import functools
import importlib
import sys
import types

_MOVED_CORE_NAMES = (
    "Jaxpr", "JaxprEqn", "Literal", "ShapedArray", "Value", "Var", "Primitive",
    "AbstractValue", "ClosedJaxpr", "eval_context",
)


def _strict_map(f, *args):
    n = len(args[0])
    if any(len(a) != n for a in args[1:]):
        raise ValueError(f"safe_map: length mismatch {[len(a) for a in args]}")
    return list(map(f, *args))


def _strict_zip(*args):
    return list(zip(*args, strict=True))


def _patch_jax() -> None:
    import jax
    import jax.core
    import jax.interpreters.ad as ad
    from jax._src import core as src_core

    try:
        from jax.extend import core as ext_core
    except ImportError:  # pragma: no cover - very old JAX
        ext_core = None
    for name in _MOVED_CORE_NAMES:
        if hasattr(jax.core, name):
            continue
        value = getattr(ext_core, name, None) if ext_core is not None else None
        if value is None:
            value = getattr(src_core, name, None)
        if value is not None:
            setattr(jax.core, name, value)

    try:
        util = importlib.import_module("jax.util")
    except ImportError:  # removed in JAX 0.8
        util = types.ModuleType("jax.util", "Placeholder registered by ntkgrid for neural-tangents.")
        sys.modules["jax.util"] = util
    if not hasattr(util, "safe_map"):
        util.safe_map = _strict_map
    if not hasattr(util, "safe_zip"):
        util.safe_zip = _strict_zip
    jax.util = util

    if not hasattr(ad, "zeros_like_p"):
        ad.zeros_like_p = src_core.Primitive("ntkgrid_unused_zeros_like")


@functools.cache
def import_nt() -> types.ModuleType:
    """Return the ``neural_tangents`` module, importing it through the shim once."""
    if "neural_tangents" in sys.modules and "neural_tangents.experimental" in sys.modules:
        return sys.modules["neural_tangents"]
    _patch_jax()
    if "neural_tangents.experimental" not in sys.modules:
        stub = types.ModuleType(
            "neural_tangents.experimental",
            "Placeholder registered by ntkgrid: the real module imports TensorFlow.",
        )
        sys.modules["neural_tangents.experimental"] = stub
    import neural_tangents

    return neural_tangents
