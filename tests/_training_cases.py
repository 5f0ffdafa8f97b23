"""Shared data and helpers of the ntkgrid.training tests: tiny images, a sphere, tree equality, interruptions."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid.config import MultiGridConfig, TrainConfig
from ntkgrid.data.images import image_to_dataset

MULTIGRID = MultiGridConfig(num_levels=2, features_per_level=2, min_res=8, max_res=32)
SMALL = TrainConfig(hidden=(32, 32), learning_rate=10.0, epochs=6, batch_size=32, ntk_points=0)


@functools.cache
def astronaut(size: int | None = None, crop: int | None = None):
    """skimage's astronaut as (coords (H*W, 2), rgb (H*W, 3)) float32: resized to size x size,
    or a crop x crop centre crop at full resolution."""
    from skimage import data
    from skimage.transform import resize

    img = data.astronaut().astype(np.float64) / 255.0
    if crop is not None:
        h, w = img.shape[:2]
        img = img[(h - crop) // 2:(h + crop) // 2, (w - crop) // 2:(w + crop) // 2]
    else:
        img = np.clip(resize(img, (size, size), anti_aliasing=True), 0.0, 1.0)
    return image_to_dataset(img)


def sphere(n: int, seed: int = 0, radius: float = 0.35):
    """Uniform points in [0, 1]^3 and labels 1 inside the sphere of ``radius`` about the centre."""
    x = np.random.default_rng(seed).random((n, 3)).astype(np.float32)
    y = (np.linalg.norm(x - 0.5, axis=1) < radius).astype(np.float32)[:, None]
    return x, y


def tree_equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda u, v: bool(np.array_equal(np.asarray(u), np.asarray(v))), a, b)))


class Interrupt(Exception):
    pass


def interrupt_at(call: int, calls: list):
    def eval_fn(apply, variables):
        calls.append(1)
        if len(calls) == call:
            raise Interrupt
        return {"mean_output": float(jnp.mean(apply(variables, jnp.full((4, 2), 0.5))))}

    return eval_fn
