"""Analyses of finished runs (a run folder of :func:`ntkgrid.training.fit`, e.g. one of a
sweep's ``runs/<image_id>/<name>``): the spectra it recorded, its checkpoints' variables
and float64 kernels recomputed from them, and the learned grid (its levels as images, the
nodes no pixel touches, the network's ReLU activation regions; the appendix figures).

Errors about a run folder (no checkpoint, no recorded NTK points) raise
:class:`ntkgrid.training.runfolder.RunFolderError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from ntkgrid.config import TrainConfig
from ntkgrid.interpolate import dense_corners
from ntkgrid.models import build_model
from ntkgrid.spectrum import Spectrum, ntk_spectrum
from ntkgrid.theory import scale_mlp as scale_mlp_layers
from ntkgrid.training import runfolder
from ntkgrid.training.runfolder import RunFolderError

__all__ = ["activation_regions", "checkpoint_variables", "grid_tables", "recompute_kernels", "run_spectra",
           "unused_nodes"]


def run_spectra(run_path: str | os.PathLike, epoch: int) -> dict[str, Spectrum] | None:
    """The spectra a run recorded at a checkpoint.

    Args:
      run_path: the run folder.
      epoch: the checkpoint's epoch.

    Returns:
      ``{group: Spectrum}`` (``"total"``, ``"grid"``, ``"no_grid"``, ...; float64
      eigenvalues, descending), or ``None`` if the run has none at ``epoch``.
    """
    p = runfolder.spectra_path(run_path, epoch)
    return runfolder.load_spectra(p) if p.exists() else None


def checkpoint_variables(run_path: str | os.PathLike, epoch: int) -> dict:
    """The model variables a run saved at ``epoch``.

    Args:
      run_path: the run folder.
      epoch: the checkpoint's epoch.

    Returns:
      The Flax variables of its ``checkpoints/epoch_XXXXXX.msgpack`` (see
      :mod:`ntkgrid.training`) as NumPy arrays. Raises :class:`~ntkgrid.training.runfolder.RunFolderError`
      naming the file when it is missing or unreadable.
    """
    try:
        return runfolder.load_checkpoint(run_path, epoch)
    except (FileNotFoundError, ValueError) as err:
        raise RunFolderError(str(err)) from err


def recompute_kernels(cfg: TrainConfig, run_path: str | os.PathLike, epoch: int, *, out_dim: int = 3,
                      groups: bool | str = False, solve: Sequence[str] | None = None, scale_mlp: float | None = None):
    """Float64 NTK of a run's checkpoint at ``epoch`` on the run's own spectrum points.

    Args:
      cfg: the run's config.
      run_path: the run folder (its ``spectra/ntk_x.npy`` holds the ``(N, d)`` points).
      epoch: the checkpoint's epoch.
      out_dim: the network's outputs ``O``.
      groups, solve: as :func:`ntkgrid.spectrum.ntk_spectrum` (``True`` or ``"ops"`` for
        per-group kernels; ``solve``: the groups to solve).
      scale_mlp: first scale the dense layers by this (:func:`ntkgrid.theory.scale_mlp`;
        a constructed control).

    Returns:
      ``(Spectrum, (N, N) float64 kernel (traced over outputs))`` or, with ``groups``,
      ``({group: Spectrum}, {group: kernel})``. Raises :class:`~ntkgrid.training.runfolder.RunFolderError`
      naming the file when the run recorded no points or has no such checkpoint.
    """
    x_path = runfolder.ntk_points_path(run_path)
    if not x_path.exists():
        raise RunFolderError(f"{x_path}: the run recorded no NTK points (ntk_points=0?)")
    try:
        x = np.load(x_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise RunFolderError(f"{x_path}: unreadable NTK points file (garbage or truncated: {err})") from err
    variables = checkpoint_variables(run_path, epoch)
    if scale_mlp is not None:
        variables = scale_mlp_layers(variables, scale_mlp)
    model = build_model(cfg, x.shape[1], out_dim)
    return ntk_spectrum(model, variables, x, method=cfg.ntk_method, groups=groups, solve=solve)


def grid_tables(cfg: TrainConfig, variables: Mapping) -> list[tuple[str, np.ndarray]]:
    """The learned levels of a 2-D multigrid encoding as images.

    Returns ``[(f"level {l} ({r}x{r})", (r, r, k) array)]``: the level's ``(r*r, k)``
    table reshaped C-order, so (axis 0 = x is fastest) rows are y and columns are x,
    the same orientation as the image (:mod:`ntkgrid.interpolate`).
    """
    if cfg.encoding.kind != "multigrid":
        raise ValueError(f"grid_tables needs a multigrid encoding, got {cfg.encoding.kind!r}")
    enc = cfg.encoding.build(2)
    params = variables["params"]["encoding"]
    out = []
    for level, r in enumerate(enc.resolutions()):
        table = np.asarray(params[f"level_{level}"], np.float64)
        if table.shape[0] != r * r:
            raise ValueError(f"level_{level} has {table.shape[0]} nodes, expected {r}x{r}")
        out.append((f"level {level} ({r}x{r})", table.reshape(r, r, table.shape[1])))
    return out


def unused_nodes(resolution: int, coords: np.ndarray) -> np.ndarray:
    """``(r, r)`` bool: nodes of an ``r x r`` grid that no point of ``coords`` ``(N, 2)``
    touches with a non-zero bilinear weight (they keep their initial values; the
    "small gaps" of the paper's Fig. 12). Rows are y, columns x."""
    idx, w = dense_corners(np.asarray(coords, np.float32), (resolution, resolution))
    used = np.zeros(resolution * resolution, bool)
    used[np.asarray(idx)[np.asarray(w) > 0]] = True
    return ~used.reshape(resolution, resolution)


def activation_regions(cfg: TrainConfig, variables: Mapping, coords: np.ndarray, *, out_dim: int = 3,
                       batch: int = 8192) -> dict:
    """ReLU activation patterns of the network at ``coords`` ``(N, 2)`` (the paper's Eq. 15).

    A point's pattern is the on/off state (``> 0``) of every hidden neuron
    (``CoordinateMLP.features``); points with the same pattern share an activation
    region. Returns ``{"ids": (N,) int64 region id per point (ids numbered by first
    appearance), "count": distinct patterns over all layers, "per_layer": distinct patterns
    of each hidden layer alone}``.
    """
    model = build_model(cfg, coords.shape[1], out_dim)
    feats = jax.jit(lambda v, x: [f > 0 for f in model.apply(v, x, method=model.features)])
    layers: list[list[np.ndarray]] = []
    x = np.asarray(coords, np.float32)
    for i in range(0, x.shape[0], batch):
        chunk = [np.packbits(np.asarray(a), axis=1) for a in feats(variables, x[i:i + batch])]
        layers.append(chunk)
    per_layer = [np.concatenate([c[j] for c in layers]) for j in range(len(layers[0]))]
    allbits = np.concatenate(per_layer, axis=1)
    _, first, inv = np.unique(allbits, axis=0, return_index=True, return_inverse=True)
    # renumber by first appearance so ids are stable and neighbouring regions get distinct ids
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(first.size)
    ids = rank[inv.reshape(-1)].astype(np.int64)
    return {"ids": ids, "count": int(first.size),
            "per_layer": [int(np.unique(p, axis=0).shape[0]) for p in per_layer]}
