"""Sweeps of the paper's 2D experiments: which images, which configs, resumable runs,
shards, merging and summaries.

A sweep trains every configuration (``{name: TrainConfig}``, e.g. Table 2's
``baseline``, ``fourier``, ``multigrid``) on every selected image and writes, under its
output folder ``out``::

    manifest.json                 what was selected and with which settings (see below)
    runs/<image_id>/<name>/       one ntkgrid.training.fit run (metrics, spectra, checkpoints)
    results/<image_id>.json       per-image results, written when all its runs are done
                                  (ntkgrid.sweep.records: ImageRecord, RunRecord)
    skipped.json                  files that could not be used, each with the reason
    results.json, summary.csv, summary.md, spectra.png/.json, report.md   (summarize)

Resuming: an image whose ``results/<image_id>.json`` holds every config's results is
skipped; an interrupted image continues inside ``fit`` from its last checkpoint. Damage is
rebuilt, never deleted: an unreadable results file is renamed ``<image_id>.json.corrupt``
and rebuilt from the image's run folders (finished runs load, only missing ones train); a
run folder whose ``run.json`` and ``summary.json`` are both unreadable is renamed
``<name>.corrupt`` and that config trains again; an unreadable ``summary.json`` alone
resumes from the checkpoints. ``manifest.json`` pins the
settings that decide the results (configs, image size, seed, the selected images); a
rerun with different ones into the same folder stops with an error naming the
differences before anything is computed, so nothing already computed is lost.

Batching: the images of a shard train in groups (``runs_per_program``, default sized per
config from the device's memory, :func:`ntkgrid.training.runs_per_program`): per group and
config, its images are one compiled program (:func:`run_group`,
:func:`ntkgrid.training.fit_batch`), with the numbers and run folders of one-at-a-time
training; several local devices share a program (its run axis is sharded). An image's
results are written when all its configs are done.

Sharding: ``shard="i/n"`` runs images ``i, i+n, ...`` of the selection (use one output
folder per shard); :func:`merge` collects shard folders into one summary equal to that of
an unsharded run (per-image results point at the shards' run folders). A merge only adds:
results its output folder already holds stay byte-identical, and an image with other
numbers in a shard is an error. ``shard="auto"`` takes
``jax.process_index()/jax.process_count()`` (one shard per process of a
``jax.distributed.initialize()`` job).

File names that are not UTF-8: image ids keep only ``[A-Za-z0-9._-]``; JSON files keep the
exact path (Python's ``surrogateescape``, written as ``\\udcXX`` escapes); Markdown and
CSV show the undecodable bytes as ``\\xNN`` (:func:`ntkgrid.files.printable`).

Spectra: each run records float64 NTK spectra (by parameter group) at its checkpoints;
"middle" is the measured epoch nearest ``epochs / 2`` and "end" the last one. Mean
spectra resample every image's spectrum to ``length`` (8000, as the paper) values
(:func:`ntkgrid.spectrum.mean_spectrum`).

Modules: :mod:`~ntkgrid.sweep.sources` (images), :mod:`~ntkgrid.sweep.configs` (overrides,
``--config-json``), :mod:`~ntkgrid.sweep.records` (the per-image results files, typed),
:mod:`~ntkgrid.sweep.runner` (training, :func:`run_sweep`),
:mod:`~ntkgrid.sweep.folder` (manifest identity, :func:`load_sweep`),
:mod:`~ntkgrid.sweep.shards` (shards, :func:`merge`), :mod:`~ntkgrid.sweep.stats`
(statistics, the paper's ordering) and :mod:`~ntkgrid.sweep.report` (:func:`summarize`).
The analyses of finished runs are in :mod:`ntkgrid.analysis`.
"""

from ntkgrid.sweep.common import FORMAT, SPECTRUM_LENGTH, SweepError
from ntkgrid.sweep.configs import apply_overrides, load_config_json
from ntkgrid.sweep.folder import describe_machine, load_sweep
from ntkgrid.sweep.records import ImageRecord, RunRecord, middle_and_end, read_image_record
from ntkgrid.sweep.report import summarize, summary_markdown, sweep_report, write_csv
from ntkgrid.sweep.runner import run_configs, run_group, run_sweep
from ntkgrid.sweep.shards import merge, resolve_shard
from ntkgrid.sweep.sources import ImageSource, load_source, resolve_image, select_sources
from ntkgrid.sweep.stats import mean_spectra, ordering, spectra_curves, summary_rows

__all__ = [
    "FORMAT",
    "SPECTRUM_LENGTH",
    "ImageRecord",
    "ImageSource",
    "RunRecord",
    "SweepError",
    "apply_overrides",
    "describe_machine",
    "load_config_json",
    "load_source",
    "load_sweep",
    "mean_spectra",
    "merge",
    "middle_and_end",
    "ordering",
    "read_image_record",
    "resolve_image",
    "resolve_shard",
    "run_configs",
    "run_group",
    "run_sweep",
    "select_sources",
    "spectra_curves",
    "summarize",
    "summary_markdown",
    "summary_rows",
    "sweep_report",
    "write_csv",
]
