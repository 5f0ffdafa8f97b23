"""3-D occupancy experiment (the paper's Section 5 / Appendix E, Fig. 5b): library logic.

Modules: :mod:`~ntkgrid.occupancy.setup` (settings, presets, per-mesh configs),
:mod:`~ntkgrid.occupancy.data` (point pools, IoU, held-out evaluation),
:mod:`~ntkgrid.occupancy.spectra` (float64 NTK spectra of a run),
:mod:`~ntkgrid.occupancy.run` (one mesh, every encoding),
:mod:`~ntkgrid.occupancy.report` (figures, ``results.json``, ``report.md``),
:mod:`~ntkgrid.occupancy.results` (mesh folders by content hash; reruns merged into
earlier results, never replacing them with a failures-only version) and
:mod:`~ntkgrid.occupancy.study` (the study over several meshes: :func:`run_occupancy_study`).

One mesh -> labelled point pools -> one SGD run per encoding -> metrics, spectra,
pictures. :mod:`experiments.occupancy` is the command line around :func:`run_occupancy_study`
(which runs :func:`run_mesh` per mesh, then :func:`plot_mean_spectra` and :func:`write_results`).

* **Data.** The mesh is normalised so its longest axis spans ``[0, 1]``
  (:func:`ntkgrid.data.meshes.load_mesh`). Labels (1 = inside) come from
  :func:`ntkgrid.data.meshes.occupancy` (Embree ray parity; winding numbers for open
  meshes). Two ways to draw training points (:class:`OccupancySetup` ``sampling``):
  ``"fresh"`` (Appendix E, the paper preset): every epoch new points uniform in the
  scaled mesh's bounding box, labelled on the fly in batches
  (:class:`ntkgrid.data.meshes.FreshPoints`, labels cached per seed), passed to
  :func:`ntkgrid.training.fit` as ``epoch_data``; ``"pool"`` (the quick preset): a fixed,
  cached pool (uniform plus near-surface points) from which each epoch draws its points
  on the device. Held-out pools (uniform in the box, and near-surface) use another seed.
* **Network.** :class:`~ntkgrid.config.TrainConfig` from :data:`ntkgrid.presets.OCCUPANCY`
  (Table 4: 8x256 ReLU MLP, sigmoid + binary cross-entropy, plain SGD, per-mesh MPE
  settings) or a tuned config (``experiments.tune --task occupancy``): :func:`configs_for`.
* **Measured.** At evenly spaced checkpoints (the IoU curve; middle and end; paper runs
  also 0): loss and accuracy, volumetric IoU and accuracy on both held-out pools
  (:func:`occupancy_metrics`). At 0 (paper), middle and end: the float64 NTK spectra of
  the logit and of the sigmoid output (:func:`checkpoint_spectra`) on ``ntk_points``
  points drawn as training draws them (uniform in the box).
* **Pictures.** A ray-marched render of each network's 0.5 level set beside the
  ground-truth mesh from the same camera (:mod:`ntkgrid.render`), one PNG per mesh; the
  IoU-against-epochs curve; the marching-cubes surface of each network as a ``.ply``;
  the mean spectra across meshes (Fig. 5b), one figure per kernel.
"""

from ntkgrid.occupancy.data import (
    MeshResult,
    OccupancyData,
    iou,
    make_eval_fn,
    occupancy_metrics,
    prepare_data,
    region_bounds,
)
from ntkgrid.occupancy.report import KERNEL_CAPTION, plot_iou_curves, plot_mean_spectra, results_table, write_results
from ntkgrid.occupancy.results import finished_result, legacy_folder, load_mesh_result, merge_results, mesh_folder_name
from ntkgrid.occupancy.run import run_mesh
from ntkgrid.occupancy.setup import (
    ENCODINGS,
    EVAL_SEED_OFFSET,
    NTK_OUTPUTS,
    NTK_SEED_OFFSET,
    PAPER_SETUP,
    QUICK_SETUP,
    REGIONS,
    SAMPLINGS,
    OccupancySetup,
    configs_for,
    mesh_preset_key,
)
from ntkgrid.occupancy.spectra import checkpoint_spectra
from ntkgrid.occupancy.study import PAPER_MESHES, MeshSource, OccupancyStudyResult, mesh_sources, run_occupancy_study

__all__ = [
    "ENCODINGS",
    "EVAL_SEED_OFFSET",
    "KERNEL_CAPTION",
    "NTK_OUTPUTS",
    "NTK_SEED_OFFSET",
    "PAPER_MESHES",
    "PAPER_SETUP",
    "QUICK_SETUP",
    "REGIONS",
    "SAMPLINGS",
    "MeshResult",
    "MeshSource",
    "OccupancyData",
    "OccupancySetup",
    "OccupancyStudyResult",
    "checkpoint_spectra",
    "configs_for",
    "finished_result",
    "iou",
    "legacy_folder",
    "load_mesh_result",
    "make_eval_fn",
    "merge_results",
    "mesh_folder_name",
    "mesh_sources",
    "mesh_preset_key",
    "occupancy_metrics",
    "plot_iou_curves",
    "plot_mean_spectra",
    "prepare_data",
    "region_bounds",
    "results_table",
    "run_mesh",
    "run_occupancy_study",
    "write_results",
]
