"""Shared test helpers: tolerances per dtype and backend, and a brute-force J J^T NTK.

Precision policy (see ntkgrid.training.batched): kernels and spectra are float64 and compared with
float64 tolerances everywhere. float32 results that pass through a matmul are exact to
float32 rounding on the CPU, but JAX's default float32 matmul on NVIDIA GPUs is TF32
(inputs rounded to a 10-bit mantissa, about 5e-4 relative per product) and on TPUs
bfloat16 passes: such comparisons take :func:`f32_matmul_tol`, which keeps the CPU
tolerance on the CPU and loosens it elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# Relative tolerances per dtype for quantities computed two different ways.
RTOL = {jnp.float32: 1e-4, jnp.float64: 1e-10}

#: The backend the tests run on ("cpu", "gpu", "tpu").
BACKEND = jax.default_backend()
#: Smallest relative tolerance of a float32 quantity that went through default-precision
#: matmuls, per backend (TF32 on GPUs, bfloat16 passes on TPUs; our choice: 10x the rounding).
F32_MATMUL_RTOL = {"cpu": 0.0, "gpu": 5e-3, "tpu": 2e-2}


def f32_matmul_tol(cpu_tol: float) -> float:
    """``cpu_tol`` on the CPU; on other backends at least :data:`F32_MATMUL_RTOL`."""
    return max(cpu_tol, F32_MATMUL_RTOL.get(BACKEND, 2e-2))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def jacobian_ntk(apply, variables, x, trace: bool):
    """Reference NTK from an explicit (N, O, P) Jacobian built with jax.jacrev."""
    params = variables["params"]

    def f(p):
        return apply({**variables, "params": p}, x)

    jac = jax.jacrev(f)(params)  # leaves (N, O, *shape)
    n, o = x.shape[0], f(params).shape[-1]
    j = jnp.concatenate([leaf.reshape(n, o, -1) for leaf in jax.tree.leaves(jac)], axis=-1)
    full = jnp.einsum("nop,mqp->nmoq", j, j)
    if trace:
        return jnp.mean(jnp.diagonal(full, axis1=2, axis2=3), axis=-1)
    return full


def to64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def write_off(path: Path, v, f) -> Path:
    """Write vertices ``(V, 3)`` and triangles ``(F, 3)`` as an OFF file."""
    lines = ["OFF", f"{len(v)} {len(f)} 0"]
    lines += [" ".join(repr(float(c)) for c in row) for row in v]
    lines += ["3 " + " ".join(str(int(i)) for i in row) for row in f]
    path.write_text("\n".join(lines) + "\n")
    return path
