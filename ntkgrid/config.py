"""Frozen, commented configuration dataclasses: what to build and how to train it.

The paper's settings are named instances of these in :mod:`ntkgrid.presets`; the CLIs
and the README show values read from there, never retyped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["ENCODING_KINDS", "EncodingConfig", "TrainConfig"]

ENCODING_KINDS = ("baseline", "fourier", "gaussian", "multigrid", "hashgrid", "mulfagrid")


@dataclasses.dataclass(frozen=True)
class EncodingConfig:
    """Which input encoding to build, and its hyper-parameters (unused fields are ignored)."""

    kind: str = "baseline"  # one of ENCODING_KINDS; "baseline" = no encoding
    num_frequencies: int = 8  # fourier: L, frequencies 2^0 .. 2^(L-1)
    pi_factor: bool = False  # fourier: multiply frequencies by pi (the paper does not)
    include_input: bool = False  # fourier/gaussian: append raw x (the paper's Fourier does not)
    gaussian_features: int = 256  # gaussian: rows m of the random matrix B
    gaussian_sigma: float = 10.0  # gaussian: std of B's entries (cycles per unit length)
    num_levels: int = 1  # multigrid/mulfagrid: L, number of grids
    features_per_level: int = 2  # multigrid/hashgrid/mulfagrid: k (F), scalars per node
    min_res: int = 16  # multigrid/mulfagrid: nodes per axis of the coarsest level
    max_res: int = 128  # multigrid/mulfagrid: nodes per axis of the finest level
    spacing: str = "linear"  # multigrid/mulfagrid: "linear" or "log" spacing of resolutions
    init_std: float = 0.01  # multigrid/mulfagrid: node init N(0, init_std^2)
    hash_levels: int = 16  # hashgrid: n_levels
    log2_hashmap_size: int = 19  # hashgrid: log2 of the table size T per level
    base_resolution: int = 16  # hashgrid: N_min
    per_level_scale: float = 2.0  # hashgrid: growth factor b between levels
    interpolation: str = "linear"  # grids: "linear" or "smoothstep"
    mfn_frequencies: int = 4  # mulfagrid: J, Fourier features sin/cos(2^j pi u) of the filter MFN
    mfn_width: int = 16  # mulfagrid: hidden width of the filter MFN
    mfn_layers: int = 2  # mulfagrid: multiplicative filter layers
    mfn_frequency_std: float = 1.0  # mulfagrid: std of the filter frequencies (radians per node)
    mfn_scale: float = 1.0  # mulfagrid: multiplies the MFN logits (0: multilinear interpolation)
    mfn_shared_kernel: bool = False  # mulfagrid: one kernel for all k features
    learn_filters: bool = False  # mulfagrid: train the MFN too (then only NT's "jacobian" NTK applies)
    filter_seed: int = 0  # mulfagrid: level l draws its fixed MFN constants with seed filter_seed + l

    def __post_init__(self):
        if self.kind not in ENCODING_KINDS:
            raise ValueError(f"encoding kind must be one of {ENCODING_KINDS}, got {self.kind!r}")

    def build(self, dim: int):
        """The Flax encoding module for ``dim``-dimensional coordinates."""
        from ntkgrid import encodings

        if self.kind == "baseline":
            return encodings.Identity(dim=dim)
        if self.kind == "fourier":
            return encodings.FourierFeatures(self.num_frequencies, self.pi_factor, self.include_input, dim=dim)
        if self.kind == "gaussian":
            return encodings.GaussianFourierFeatures(
                self.gaussian_features, self.gaussian_sigma, dim, include_input=self.include_input
            )
        if self.kind == "multigrid":
            return encodings.MultiGrid(
                dim=dim, num_levels=self.num_levels, features_per_level=self.features_per_level,
                min_res=self.min_res, max_res=self.max_res, spacing=self.spacing, init_std=self.init_std,
                interpolation=self.interpolation,
            )
        if self.kind == "hashgrid":
            from ntkgrid.hashgrid import HashGrid

            return HashGrid(
                dim=dim, n_levels=self.hash_levels, n_features_per_level=self.features_per_level,
                log2_hashmap_size=self.log2_hashmap_size, base_resolution=self.base_resolution,
                per_level_scale=self.per_level_scale, interpolation=self.interpolation,
            )
        from ntkgrid.mulfagrid import MulFAGrid

        return MulFAGrid(
            dim=dim, num_levels=self.num_levels, features_per_level=self.features_per_level,
            min_res=self.min_res, max_res=self.max_res, spacing=self.spacing, init_std=self.init_std,
            num_frequencies=self.mfn_frequencies, filter_width=self.mfn_width, filter_layers=self.mfn_layers,
            node_frequency_std=self.mfn_frequency_std, filter_scale=self.mfn_scale,
            shared_kernel=self.mfn_shared_kernel, learn_filters=self.learn_filters, filter_seed=self.filter_seed,
        )

    def describe(self) -> str:
        """Short human-readable summary of the parameters that matter for ``kind``."""
        if self.kind == "fourier":
            return f"L={self.num_frequencies}"
        if self.kind == "gaussian":
            return f"m={self.gaussian_features}, sigma={self.gaussian_sigma:g}"
        if self.kind in ("multigrid", "mulfagrid"):
            res = f"x={self.max_res}" if self.num_levels == 1 else f"x±=[{self.min_res},{self.max_res}]"
            learnt = ", learnt filters" if self.kind == "mulfagrid" and self.learn_filters else ""
            return f"k={self.features_per_level}, L={self.num_levels}, {res}{learnt}"
        if self.kind == "hashgrid":
            return (f"L={self.hash_levels}, F={self.features_per_level}, T=2^{self.log2_hashmap_size}, "
                    f"N_min={self.base_resolution}, b={self.per_level_scale:g}")
        return "N/A"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run: model, optimiser, schedule and what to measure at checkpoints."""

    encoding: EncodingConfig = EncodingConfig()  # input encoding
    hidden: tuple[int, ...] = (512, 512)  # hidden widths (paper: 2x512 images, 8x256 occupancy)
    learning_rate: float = 100.0  # plain SGD step size (NTK parameterisation needs large steps)
    epochs: int = 300  # passes over the training points
    batch_size: int = 32  # points per SGD step
    loss: str = "mse"  # "mse" on the linear output (images) or "bce" on a sigmoid (occupancy)
    parameterization: str = "ntk"  # "ntk" (paper) or "standard"
    beta: float = 0.1  # bias scale of the NTK parameterisation
    checkpoints: tuple[int, ...] | None = None  # epochs to measure at; None = (0, epochs//2, epochs)
    curve_every: int | None = None  # full-data loss/PSNR every n epochs (training curve); None = ~30 points, 0 = off
    ntk_points: int | None = None  # NTK points: None = the training set (capped per backend), n = n-point window, 0 = none
    ntk_method: str = "structured"  # kernel method for spectra ("structured" or "jacobian")
    ntk_group_spectra: str = "last"  # spectra of the mlp/no_grid/grid kernels: at "every" checkpoint or the "last"
    seed: int = 0  # PRNG seed: initialisation and minibatch order

    def __post_init__(self):
        if self.loss not in ("mse", "bce"):
            raise ValueError(f"loss must be 'mse' or 'bce', got {self.loss!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError(f"need epochs >= 1, batch_size >= 1, learning_rate > 0; got {self}")
        if self.ntk_group_spectra not in ("every", "last"):
            raise ValueError(f"ntk_group_spectra must be 'every' or 'last', got {self.ntk_group_spectra!r}")
        if self.curve_every is not None and self.curve_every < 0:
            raise ValueError(f"curve_every must be >= 0 or None, got {self.curve_every}")

    def checkpoint_epochs(self) -> tuple[int, ...]:
        """Sorted epochs at which metrics and spectra are recorded (0 = before training)."""
        cps = self.checkpoints if self.checkpoints is not None else (0, self.epochs // 2, self.epochs)
        bad = [c for c in cps if not 0 <= c <= self.epochs]
        if bad:
            raise ValueError(f"checkpoints {bad} outside 0..{self.epochs}")
        return tuple(sorted(set(cps)))

    def curve_epochs(self) -> tuple[int, ...]:
        """Epochs (0..epochs) at which the full-data loss and PSNR are measured for the training
        curve: every ``curve_every`` epochs (``None``: ``max(1, epochs // 30)``), plus 0 and the
        last epoch; ``()`` when ``curve_every == 0``."""
        every = max(1, self.epochs // 30) if self.curve_every is None else int(self.curve_every)
        if every == 0:
            return ()
        return tuple(sorted({*range(0, self.epochs + 1, every), self.epochs}))

    def model(self, dim: int, out_dim: int):
        """The :class:`~ntkgrid.models.CoordinateMLP` this config trains."""
        from ntkgrid.models import CoordinateMLP

        return CoordinateMLP(self.encoding.build(dim), tuple(self.hidden), out_dim, self.parameterization, self.beta)

    def replace(self, **changes: Any) -> TrainConfig:
        """Copy with some fields changed; ``encoding`` may be given as a dict of changes."""
        enc = changes.pop("encoding", None)
        if isinstance(enc, dict):
            changes["encoding"] = dataclasses.replace(self.encoding, **enc)
        elif enc is not None:
            changes["encoding"] = enc
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        d["encoding"] = EncodingConfig(**d.get("encoding", {}))
        for key in ("hidden", "checkpoints"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)
