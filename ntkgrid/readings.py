"""Candidate readings of the paper's training recipe (issue 13, experiments/RECIPE.md).

The paper leaves parts of its training open to interpretation (the parameterisation of each
layer, how the loss is reduced, the coordinates' range, what an epoch is). Each reading is a set
of :class:`~ntkgrid.config.TrainConfig` field changes applied on top of a table's entry by
:func:`reading`; :mod:`ntkgrid.presets` trains each paper table under one of them
(``SCALING_READING``, ``IMAGENET_READING``) and re-exports these names, and
:mod:`ntkgrid.studies.recipe` screens them all. Imports no JAX.
"""

from __future__ import annotations

from ntkgrid.config import TrainConfig

__all__ = ["READINGS", "READING_FIELDS", "reading"]

# Candidate readings of the paper's training (issue 13, experiments/RECIPE.md): each is a
# set of TrainConfig field changes applied on top of a table's entry (reading(cfg, name)).
# "literal" is the paper's text taken at its word (Appendix A.1: NTK parameterisation on
# every layer, beta 0.1, PyTorch's default MSELoss = mean over points and channels,
# coordinates in [0, 1] with the image's corner pixels at 0 and 1, an epoch = one pass).
READINGS = {
    "literal": {},
    "sum_channels": {"loss_reduction": "sum_channels"},  # loss summed over RGB, mean over points
    "sum": {"loss_reduction": "sum"},  # MSELoss(reduction="sum"): summed over points and RGB
    "ntk_unscaled_output": {"parameterization": "ntk_unscaled_output"},  # no 1/sqrt(n) on the output layer
    "ntk_standard_output": {"parameterization": "ntk_standard_output"},  # plain nn.Linear-style head
    "mean_field": {"parameterization": "mean_field"},  # 1/n on the output layer
    "standard": {"parameterization": "standard"},  # LeCun-normal weights, zero biases, no factors
    "torch_default": {"parameterization": "torch_default"},  # PyTorch nn.Linear's default init, no factors
    "beta_1": {"beta": 1.0},
    "beta_0": {"beta": 0.0},
    "signed": {"coords": "signed"},  # inputs in [-1, 1]
    "centres": {"pixels": "centres"},  # pixel centres (i + 0.5) / W
    "signed_beta_0": {"coords": "signed", "beta": 0.0},
    "sum_channels_signed": {"loss_reduction": "sum_channels", "coords": "signed"},
    "mean_field_beta_0": {"parameterization": "mean_field", "beta": 0.0},
    "mean_field_sum_channels": {"parameterization": "mean_field", "loss_reduction": "sum_channels"},
    "mean_field_sum_beta_0": {"parameterization": "mean_field", "loss_reduction": "sum", "beta": 0.0},
    "epoch_one_step": {"steps_per_epoch": 1},  # an "epoch" = one minibatch
}


#: The TrainConfig fields a reading sets; every reading starts from their defaults (the literal reading).
READING_FIELDS = ("loss_reduction", "parameterization", "beta", "coords", "pixels", "steps_per_epoch")


def reading(cfg: TrainConfig, name: str) -> TrainConfig:
    """``cfg`` under the candidate reading ``name`` of :data:`READINGS`: the fields of
    :data:`READING_FIELDS` reset to the literal reading's (TrainConfig's defaults), then the
    reading's changes applied; everything else (encoding, lr, batch, epochs) kept."""
    if name not in READINGS:
        raise KeyError(f"unknown reading {name!r}; choose from {sorted(READINGS)}")
    literal = {f: getattr(TrainConfig(), f) for f in READING_FIELDS}
    return cfg.replace(**{**literal, **READINGS[name]})
