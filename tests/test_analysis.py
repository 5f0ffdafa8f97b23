"""ntkgrid.analysis: the learned grid as images (orientation against the encoding itself), the nodes
no pixel touches, and ReLU activation regions against a brute-force count. Tiny untrained networks."""

from __future__ import annotations

import numpy as np
import pytest

from ntkgrid import analysis, presets
from ntkgrid.config import TrainConfig
from ntkgrid.models import build_model


def test_grid_tables_orientation_matches_the_encoding():
    """grid_tables' (r, r, k) image has rows = y, columns = x: the encoding evaluated at the
    node (x = col / (r-1), y = row / (r-1)) returns exactly table_image[row, col]."""
    import jax

    cfg = TrainConfig(hidden=(4,), encoding=presets.SCALING["multigrid_coarse"].encoding).replace(
        encoding={"min_res": 5, "max_res": 5})
    model = build_model(cfg, 2, 3)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), np.zeros((1, 2), np.float32))
    ((_, img),) = analysis.grid_tables(cfg, variables)
    r = img.shape[0]
    rows, cols = np.meshgrid(np.arange(r), np.arange(r), indexing="ij")
    x = np.stack([cols.ravel() / (r - 1), rows.ravel() / (r - 1)], -1).astype(np.float32)
    enc = cfg.encoding.build(2)
    feats = np.asarray(jax.jit(enc.apply)({"params": variables["params"]["encoding"]}, x))[:, :2]
    np.testing.assert_allclose(feats.reshape(r, r, 2), img, rtol=1e-6)


def test_unused_nodes_of_a_finer_grid():
    """A 4x4-pixel image on a 7x7 grid lands exactly on the even nodes; odd ones are never used."""
    from ntkgrid.data.images import image_to_dataset

    coords, _ = image_to_dataset(np.zeros((4, 4, 3), np.float32))
    unused = analysis.unused_nodes(7, coords)
    even = (np.arange(7) % 2 == 0)
    np.testing.assert_array_equal(unused, ~(even[:, None] & even[None, :]))
    assert not analysis.unused_nodes(4, coords).any()


def test_activation_regions_match_a_brute_force_count():
    import jax

    cfg = TrainConfig(hidden=(6, 5))
    model = build_model(cfg, 2, 3)
    variables = jax.jit(model.init)(jax.random.PRNGKey(1), np.zeros((1, 2), np.float32))
    x = np.random.default_rng(0).random((300, 2)).astype(np.float32)
    ar = analysis.activation_regions(cfg, variables, x, batch=64)
    feats = [np.asarray(f) > 0 for f in jax.jit(lambda v, x: model.apply(v, x, method=model.features))(variables, x)]
    patterns = [tuple(np.concatenate([f[i] for f in feats])) for i in range(len(x))]
    assert 1 < ar["count"] == len(set(patterns)) < len(x)
    first = {}
    for i, p in enumerate(patterns):
        first.setdefault(p, len(first))
        assert ar["ids"][i] == first[p]
    assert ar["per_layer"] == [len({tuple(f[i]) for i in range(len(x))}) for f in feats]


def test_run_folder_problems_raise_run_folder_error(tmp_path):
    from ntkgrid.training.runfolder import RunFolderError

    with pytest.raises(RunFolderError, match="epoch_000003"):
        analysis.checkpoint_variables(tmp_path, 3)
    with pytest.raises(RunFolderError, match=r"ntk_x\.npy: the run recorded no NTK points"):
        analysis.recompute_kernels(TrainConfig(), tmp_path, 3)
