"""Frozen, commented configuration dataclasses: what to build and how to train it.

Encodings have one config per kind (:data:`ENCODINGS`: ``BaselineConfig``, ``FourierConfig``,
``GaussianConfig``, ``MultiGridConfig``, ``HashGridConfig``, ``MulFAGridConfig``), a tagged
union: ``to_dict`` stores the ``kind`` beside the fields, :func:`encoding_from_dict` reads it
back. :func:`register_encoding` adds a kind defined outside ntkgrid (README, "Adding an
encoding"). :class:`TrainConfig` holds one of them. Its dicts carry ``"config_format"``
(:data:`CONFIG_FORMAT`); dicts without it (run.json files written before the per-kind configs)
are read as format 1 by :func:`encoding_from_format1`.

The paper's settings are named instances of these in :mod:`ntkgrid.presets`; the CLIs
and the README show values read from there, never retyped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [  # noqa: F822 (ENCODING_KINDS and GRID_KINDS are read from ENCODINGS by __getattr__)
    "ACTIVATIONS", "CONFIG_FORMAT", "COORDS", "ENCODINGS", "ENCODING_KINDS", "GRID_KINDS", "LOSS_REDUCTIONS", "PARAMETERIZATIONS",
    "PIXEL_CONVENTIONS", "BaselineConfig", "EncodingConfig", "EncodingSpec", "FourierConfig", "GaussianConfig",
    "HashGridConfig", "MulFAGridConfig", "MultiGridConfig", "TrainConfig", "encoding_from_dict",
    "encoding_from_format1", "loss_scale", "register_encoding", "unregister_encoding", "LrRule", "parse_lr",
]

#: How the minibatch loss sums the squared errors (see :func:`loss_scale`).
LOSS_REDUCTIONS = ("mean", "sum_channels", "sum")
#: Network parameterisations of :class:`~ntkgrid.models.CoordinateMLP` (see :mod:`ntkgrid.models`),
#: each ``name: (hidden layers', output layer's)`` :class:`~ntkgrid.models.NTKDense` parameterisation;
#: "ntk" is the paper's Appendix A.1.
PARAMETERIZATIONS = {
    "ntk": ("ntk", "ntk"),
    "ntk_unscaled_output": ("ntk", "ntk_unscaled"),
    "ntk_standard_output": ("ntk", "standard"),
    "mean_field": ("ntk", "mean_field"),
    "standard": ("standard", "standard"),
    "torch_default": ("torch", "torch"),
    "siren": ("siren", "siren"),  # SIREN's initialisation (standard parameterisation); its first layer is "siren_first"
}
#: Hidden-layer activations of the coordinate MLP (see :mod:`ntkgrid.models`): "relu" is the paper's.
ACTIVATIONS = ("relu", "tanh", "sine", "gaussian")
#: Network input coordinates: "unit" [0, 1] (the paper's A.1) or "signed" [-1, 1].
COORDS = ("unit", "signed")
#: Where pixel (i, j) of a W x H image sits: "corners" (i / (W-1), the ends included) or
#: "centres" ((i + 0.5) / W); see :func:`ntkgrid.data.images.image_to_dataset`.
PIXEL_CONVENTIONS = ("corners", "centres")


def loss_scale(reduction: str, batch_size: int, out_dim: int) -> float:
    """Factor that turns the mean over a minibatch's ``batch_size x out_dim`` errors into the
    loss whose gradient SGD follows: ``"mean"`` 1 (mean over points and channels, PyTorch's
    ``MSELoss()``), ``"sum_channels"`` ``out_dim`` (sum over channels, mean over points),
    ``"sum"`` ``batch_size * out_dim`` (sum over both, ``MSELoss(reduction="sum")``)."""
    if reduction == "mean":
        return 1.0
    if reduction == "sum_channels":
        return float(out_dim)
    if reduction == "sum":
        return float(batch_size * out_dim)
    raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {reduction!r}")


@dataclasses.dataclass(frozen=True)
class LrRule:
    """A learning rate set from the NTK instead of by hand: ``fraction`` times the network's own
    critical SGD step at initialisation (:func:`ntkgrid.stability.with_critical_lr`)."""

    fraction: float  # the step is fraction x lr_crit_median (> 0; >= 1 is beyond the linearised bound)

    def __str__(self) -> str:
        return f"critical:{self.fraction:g}"


def parse_lr(text: str) -> float | LrRule:
    """Parse a learning-rate argument: ``"20"`` (a step by hand) or ``"critical:0.5"`` (half the
    network's critical step at initialisation, :class:`LrRule`). Raises ``ValueError`` with a
    one-line message for anything else (not a number, a rule without a fraction, values <= 0)."""
    s = str(text).strip()
    head, sep, tail = s.partition(":")
    if sep:
        if head != "critical":
            raise ValueError(f"learning rate {text!r}: a rule must be written critical:FRACTION (e.g. critical:0.5)")
        try:
            fraction = float(tail)
        except ValueError:
            raise ValueError(f"learning rate {text!r}: FRACTION in critical:FRACTION must be a number") from None
        if not (fraction > 0 and fraction != float("inf")):
            raise ValueError(f"learning rate {text!r}: FRACTION must be a finite number > 0")
        return LrRule(fraction)
    try:
        lr = float(s)
    except ValueError:
        raise ValueError(f"learning rate {text!r} is neither a number nor critical:FRACTION") from None
    if not (lr > 0 and lr != float("inf")):
        raise ValueError(f"learning rate {text!r} must be a finite number > 0")
    return lr


class EncodingConfig:
    """Base of the encoding configs: each is a frozen dataclass whose fields are the keyword
    arguments of its Flax module, unrenamed, so :meth:`build` is ``Module(dim=dim, **fields)``.

    What the model needs to know about the encoding (is it a grid, which coordinates does it
    take) is declared by the module class (``is_grid``, ``takes_unit_coords``; see
    :mod:`ntkgrid.encodings`), not here. A kind defined outside ntkgrid subclasses this and
    is added with :func:`register_encoding`."""

    kind: ClassVar[str]  # the tag stored as "kind" in to_dict and a key of ENCODINGS
    module: ClassVar[str | type]  # the Flax module class, or the name of one in ntkgrid.encodings

    @classmethod
    def module_class(cls) -> type:
        """The Flax module class this config builds (``module``, looked up in
        :mod:`ntkgrid.encodings` when it is a name; that import loads Flax)."""
        if isinstance(cls.module, str):
            from ntkgrid import encodings

            return getattr(encodings, cls.module)
        return cls.module

    def fields(self) -> dict[str, Any]:
        """The module's keyword arguments (every field, unrenamed)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def build(self, dim: int):
        """The Flax encoding module for ``dim``-dimensional coordinates."""
        return self.module_class()(dim=dim, **self.fields())

    def describe(self) -> str:
        """Short human-readable summary of the parameters that matter."""
        return "N/A"

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": kind, **fields}`` (JSON-ready); :func:`encoding_from_dict` inverts it."""
        return {"kind": self.kind, **self.fields()}


@dataclasses.dataclass(frozen=True)
class BaselineConfig(EncodingConfig):
    """No encoding (the paper's baseline): :class:`~ntkgrid.encodings.Identity`."""

    kind: ClassVar[str] = "baseline"
    module: ClassVar[str] = "Identity"


@dataclasses.dataclass(frozen=True)
class FourierConfig(EncodingConfig):
    """The paper's logarithmic Fourier features (its Eq. 1): :class:`~ntkgrid.encodings.FourierFeatures`."""

    kind: ClassVar[str] = "fourier"
    module: ClassVar[str] = "FourierFeatures"

    num_frequencies: int = 8  # L: frequencies 2^0 .. 2^(L-1)
    pi_factor: bool = False  # multiply frequencies by pi (the paper does not)
    include_input: bool = False  # append raw x (the paper's Fourier does not)

    def describe(self) -> str:
        return f"L={self.num_frequencies}"


@dataclasses.dataclass(frozen=True)
class GaussianConfig(EncodingConfig):
    """Random Fourier features (Tancik et al.): :class:`~ntkgrid.encodings.GaussianFourierFeatures`."""

    kind: ClassVar[str] = "gaussian"
    module: ClassVar[str] = "GaussianFourierFeatures"

    num_features: int = 256  # m: rows of the random matrix B
    sigma: float = 10.0  # std of B's entries (cycles per unit length)
    seed: int = 0  # seed of the NumPy generator that draws B
    include_input: bool = False  # append raw x

    def describe(self) -> str:
        return f"m={self.num_features}, sigma={self.sigma:g}"


@dataclasses.dataclass(frozen=True)
class _DenseGridConfig(EncodingConfig):
    """The fields every dense grid shares (MultiGrid and MulFAGrid): its levels of nodes."""

    num_levels: int = 1  # L, number of grids
    features_per_level: int = 2  # k, scalars per node
    min_res: int = 16  # nodes per axis of the coarsest level
    max_res: int = 128  # nodes per axis of the finest level
    spacing: str = "linear"  # "linear" or "log" spacing of the resolutions
    init_std: float = 0.01  # node init N(0, init_std^2)

    def describe(self) -> str:
        res = f"x={self.max_res}" if self.num_levels == 1 else f"x±=[{self.min_res},{self.max_res}]"
        return f"k={self.features_per_level}, L={self.num_levels}, {res}"


@dataclasses.dataclass(frozen=True)
class MultiGridConfig(_DenseGridConfig):
    """The paper's multigrid parametric encoding (its Eq. 3): :class:`~ntkgrid.encodings.MultiGrid`."""

    kind: ClassVar[str] = "multigrid"
    module: ClassVar[str] = "MultiGrid"

    include_input: bool = True  # append raw x after the levels (the paper does)
    interpolation: str = "linear"  # "nearest", "linear" (bi/trilinear), "smoothstep" or "cubic" (B-spline, 4^d taps)


@dataclasses.dataclass(frozen=True)
class HashGridConfig(EncodingConfig):
    """Multiresolution hash encoding (Mueller et al., tiny-cuda-nn): :class:`~ntkgrid.encodings.HashGrid`."""

    kind: ClassVar[str] = "hashgrid"
    module: ClassVar[str] = "HashGrid"

    num_levels: int = 16  # L, number of levels (tcnn: n_levels)
    features_per_level: int = 2  # F, features per table row (tcnn: n_features_per_level)
    log2_table_size: int = 19  # log2 of the most rows T of a level's table (tcnn: log2_hashmap_size)
    min_res: int = 16  # N_min, vertices per axis of level 0 (tcnn: base_resolution)
    per_level_scale: float = 2.0  # b, growth factor of the scale between levels (tcnn: per_level_scale)
    interpolation: str = "linear"  # "linear", "smoothstep" or "nearest" (tcnn's kernels; no cubic)
    init_scale: float = 1e-4  # tables start uniform in [-init_scale, init_scale] (tcnn: 1e-4)
    include_input: bool = False  # append raw x after the levels (tcnn: no)

    def describe(self) -> str:
        return (f"L={self.num_levels}, F={self.features_per_level}, T=2^{self.log2_table_size}, "
                f"N_min={self.min_res}, b={self.per_level_scale:g}")


@dataclasses.dataclass(frozen=True)
class MulFAGridConfig(_DenseGridConfig):
    """Multiplicative Fourier adaptive grid (Zhao et al.): :class:`~ntkgrid.encodings.MulFAGrid`."""

    kind: ClassVar[str] = "mulfagrid"
    module: ClassVar[str] = "MulFAGrid"

    num_frequencies: int = 4  # J, Fourier features sin/cos(2^j pi u) of the filter MFN
    filter_width: int = 16  # hidden width of the filter MFN
    filter_layers: int = 2  # multiplicative filter layers
    node_frequency_std: float = 1.0  # std of the filter frequencies (radians per node)
    filter_scale: float = 1.0  # multiplies the MFN logits (0: multilinear interpolation)
    shared_kernel: bool = False  # one kernel for all k features
    learn_filters: bool = False  # train the MFN too (then only NT's "jacobian" NTK applies)
    filter_seed: int = 0  # level l draws its fixed MFN constants with seed filter_seed + l
    include_input: bool = False  # append raw x after the levels

    def describe(self) -> str:
        return super().describe() + (", learnt filters" if self.learn_filters else "")


#: The encoding configs by kind: the one list of encoding names (a tagged union's tags). The
#: built-in kinds are listed here; :func:`register_encoding` adds others.
ENCODINGS: dict[str, type[EncodingConfig]] = {
    c.kind: c for c in (BaselineConfig, FourierConfig, GaussianConfig, MultiGridConfig, HashGridConfig, MulFAGridConfig)
}
_BUILTIN_KINDS = frozenset(ENCODINGS)
#: Any one of the built-in encoding configs (a registered kind is an :class:`EncodingConfig`).
EncodingSpec = BaselineConfig | FourierConfig | GaussianConfig | MultiGridConfig | HashGridConfig | MulFAGridConfig


def __getattr__(name: str):
    # ENCODING_KINDS and GRID_KINDS are read from ENCODINGS when asked for, so that they include
    # the registered kinds. GRID_KINDS asks each module class (importing ntkgrid.encodings, Flax).
    if name == "ENCODING_KINDS":  # the keys of ENCODINGS, in order
        return tuple(ENCODINGS)
    if name == "GRID_KINDS":  # the kinds whose module is a learnable grid (its ``is_grid``)
        return tuple(k for k, c in ENCODINGS.items() if c.module_class().is_grid)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_encoding(cls: type[EncodingConfig]) -> type[EncodingConfig]:
    """Add the encoding config ``cls`` to :data:`ENCODINGS` under ``cls.kind``, so that
    :class:`TrainConfig`, :func:`encoding_from_dict` (run.json files), :func:`ntkgrid.fit` and
    :data:`GRID_KINDS` know it. Returns ``cls`` (usable as a class decorator).

    ``cls`` must be a frozen dataclass subclassing :class:`EncodingConfig` whose ``module`` is
    a Flax module class (or the name of one in :mod:`ntkgrid.encodings`) that declares the
    class variables ``is_grid`` and ``takes_unit_coords`` (bools) and takes ``dim`` and every
    field of ``cls`` as keyword arguments. Registering the same class twice does nothing;
    raises ``ValueError`` for a kind another class holds and ``TypeError`` for
    a class that breaks the contract. :func:`unregister_encoding` undoes it."""
    if not (isinstance(cls, type) and issubclass(cls, EncodingConfig) and dataclasses.is_dataclass(cls)
            and cls.__dataclass_params__.frozen):
        raise TypeError(f"register_encoding needs a frozen dataclass subclassing EncodingConfig, got {cls!r}")
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__name__}.kind must be a non-empty string, got {kind!r}")
    if ENCODINGS.get(kind, cls) is not cls:
        raise ValueError(f"encoding kind {kind!r} is already registered to {ENCODINGS[kind].__name__}")
    module = getattr(cls, "module", None)
    if isinstance(module, str):
        from ntkgrid import encodings

        module = getattr(encodings, module, None)
    if not isinstance(module, type):
        raise TypeError(f"{cls.__name__}.module must be the Flax module class it builds (or the name of one in "
                        f"ntkgrid.encodings), got {cls.module!r}")
    for flag in ("is_grid", "takes_unit_coords"):
        if not isinstance(getattr(module, flag, None), bool):
            raise TypeError(f"{module.__name__} must declare the class variable {flag}: bool (see ntkgrid.encodings)")
    ENCODINGS[kind] = cls
    return cls


def unregister_encoding(kind: str) -> None:
    """Remove a kind added by :func:`register_encoding` (the built-in kinds stay); raises
    ``ValueError`` for a built-in or unknown kind."""
    if kind in _BUILTIN_KINDS or kind not in ENCODINGS:
        raise ValueError(f"{kind!r} is not a registered (non-built-in) encoding kind")
    del ENCODINGS[kind]

#: Version of :meth:`TrainConfig.to_dict`'s layout: 1 (no "config_format" key) had one flat
#: 25-field encoding dict; 2 has one dict per kind, with the module's own field names.
CONFIG_FORMAT = 2

# Format 1: the flat encoding dict's fields each kind used, as {old name: new name}.
_FORMAT1_FIELDS = {
    "baseline": {},
    "fourier": {"num_frequencies": "num_frequencies", "pi_factor": "pi_factor", "include_input": "include_input"},
    "gaussian": {"gaussian_features": "num_features", "gaussian_sigma": "sigma", "include_input": "include_input"},
    "multigrid": {n: n for n in ("num_levels", "features_per_level", "min_res", "max_res", "spacing", "init_std",
                                 "interpolation")},
    "hashgrid": {"hash_levels": "num_levels", "features_per_level": "features_per_level",
                 "log2_hashmap_size": "log2_table_size", "base_resolution": "min_res",
                 "per_level_scale": "per_level_scale", "interpolation": "interpolation"},
    "mulfagrid": {**{n: n for n in ("num_levels", "features_per_level", "min_res", "max_res", "spacing", "init_std")},
                  "mfn_frequencies": "num_frequencies", "mfn_width": "filter_width", "mfn_layers": "filter_layers",
                  "mfn_frequency_std": "node_frequency_std", "mfn_scale": "filter_scale",
                  "mfn_shared_kernel": "shared_kernel", "learn_filters": "learn_filters", "filter_seed": "filter_seed"},
}
# Every field of a format-1 encoding dict (25: each was used by at least one kind).
_FORMAT1_ALL = frozenset({"kind"}.union(*_FORMAT1_FIELDS.values()))


def _config_class(kind: Any) -> type[EncodingConfig]:
    if kind not in ENCODINGS:
        raise ValueError(f"encoding kind must be one of {tuple(ENCODINGS)}, got {kind!r}")
    return ENCODINGS[kind]


def encoding_from_dict(d: Mapping[str, Any]) -> EncodingConfig:
    """The encoding config of ``d = {"kind": ..., **fields}`` (:meth:`to_dict`'s layout; a
    missing ``kind`` is ``"baseline"``, missing fields take their defaults). Raises
    ``ValueError`` for an unknown kind and ``TypeError`` for a field the kind does not have."""
    d = dict(d)
    cls = _config_class(d.pop("kind", "baseline"))
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise TypeError(f"{cls.__name__} ({cls.kind!r} encoding) has no field(s) {unknown}")
    return cls(**{k: _tuples(v) for k, v in d.items()})


def _tuples(value: Any) -> Any:
    """``value`` with its lists (JSON's arrays) made tuples, so that a config field holding a
    tuple compares equal after a round trip through JSON (the built-in kinds hold none)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def encoding_from_format1(d: Mapping[str, Any]) -> EncodingConfig:
    """The encoding config of a format-1 dict (one flat 25-field dict for every kind): the
    fields its kind used, renamed to the module's names; the other kinds' fields are dropped.
    Raises ``ValueError`` for an unknown kind and ``TypeError`` for an unknown field."""
    unknown = sorted(set(d) - _FORMAT1_ALL)
    if unknown:
        raise TypeError(f"format-1 encoding dict has unknown field(s) {unknown}")
    kind = d.get("kind", "baseline")
    cls = _config_class(kind)
    if kind not in _FORMAT1_FIELDS:
        raise ValueError(f"format-1 dicts hold only the kinds {tuple(_FORMAT1_FIELDS)}, got {kind!r}")
    return cls(**{new: d[old] for old, new in _FORMAT1_FIELDS[kind].items() if old in d})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run: model, optimiser, schedule and what to measure at checkpoints."""

    encoding: EncodingConfig = BaselineConfig()  # input encoding: one of the ENCODINGS configs
    hidden: tuple[int, ...] = (512, 512)  # hidden widths (paper: 2x512 images, 8x256 occupancy)
    learning_rate: float = 100.0  # plain SGD step size (NTK parameterisation needs large steps)
    epochs: int = 300  # passes over the training points
    batch_size: int = 32  # points per SGD step
    loss: str = "mse"  # "mse" on the linear output (images) or "bce" on a sigmoid (occupancy)
    loss_reduction: str = "mean"  # minibatch loss: "mean" (points, channels), "sum_channels" or "sum"; loss_scale
    parameterization: str = "ntk"  # one of PARAMETERIZATIONS: "ntk" (paper, A.1), "mean_field", ... (models.py)
    beta: float = 0.1  # bias scale of the NTK parameterisation (paper: 0.1)
    activation: str = "relu"  # hidden activation, one of ACTIVATIONS: "relu" (paper), "tanh", "sine", "gaussian"
    omega0: float = 30.0  # "sine": sin(omega0 z), and the "siren" initialisation's omega0 (SIREN: 30)
    gaussian_sigma: float = 0.1  # "gaussian": exp(-z^2 / (2 sigma^2)), sigma in units of the pre-activation
    coords: str = "unit"  # network input: "unit" [0, 1] (paper) or "signed" [-1, 1] (grids: raw input only)
    pixels: str = "corners"  # image pixel positions: "corners" (i/(W-1)) or "centres" ((i+0.5)/W)
    steps_per_epoch: int | None = None  # None: an epoch is one pass over all points; n: n minibatches
    checkpoints: tuple[int, ...] | None = None  # epochs to measure at; None = (0, epochs//2, epochs)
    curve_every: int | None = None  # full-data loss/PSNR every n epochs (training curve); None = ~30 points, 0 = off
    ntk_points: int | None = None  # NTK points: None = the training set (capped per backend), n = n-point window, 0 = none
    ntk_method: str = "structured"  # kernel method for spectra ("structured" or "jacobian")
    ntk_group_spectra: str = "last"  # spectra of the mlp/no_grid/grid kernels: at "every" checkpoint, the "last", or "none"
    ntk_spectra_at: str = "every"  # checkpoints that take NTK spectra: "every" one or only the "last"
    seed: int = 0  # PRNG seed: initialisation and minibatch order
    lr_fraction: float | None = None  # learning_rate = this x stability.critical_lr at init (None: set by hand)

    def __post_init__(self):
        if not isinstance(self.encoding, tuple(ENCODINGS.values())):
            raise TypeError(f"encoding must be one of the configs {[c.__name__ for c in ENCODINGS.values()]} "
                            f"(or a dict given to from_dict/replace), got {type(self.encoding).__name__}")
        if self.loss not in ("mse", "bce"):
            raise ValueError(f"loss must be 'mse' or 'bce', got {self.loss!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError(f"need epochs >= 1, batch_size >= 1, learning_rate > 0; got {self}")
        if self.ntk_group_spectra not in ("every", "last", "none"):
            raise ValueError(f"ntk_group_spectra must be 'every', 'last' or 'none', got {self.ntk_group_spectra!r}")
        if self.ntk_spectra_at not in ("every", "last"):
            raise ValueError(f"ntk_spectra_at must be 'every' or 'last', got {self.ntk_spectra_at!r}")
        if self.curve_every is not None and self.curve_every < 0:
            raise ValueError(f"curve_every must be >= 0 or None, got {self.curve_every}")
        for name, value, allowed in (("loss_reduction", self.loss_reduction, LOSS_REDUCTIONS),
                                     ("parameterization", self.parameterization, tuple(PARAMETERIZATIONS)),
                                     ("activation", self.activation, ACTIVATIONS),
                                     ("coords", self.coords, COORDS), ("pixels", self.pixels, PIXEL_CONVENTIONS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.lr_fraction is not None and not self.lr_fraction > 0:
            raise ValueError(f"lr_fraction must be > 0 or None, got {self.lr_fraction}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1 or None, got {self.steps_per_epoch}")

    def checkpoint_epochs(self) -> tuple[int, ...]:
        """Sorted epochs at which metrics and spectra are recorded (0 = before training)."""
        cps = self.checkpoints if self.checkpoints is not None else (0, self.epochs // 2, self.epochs)
        bad = [c for c in cps if not 0 <= c <= self.epochs]
        if bad:
            raise ValueError(f"checkpoints {bad} outside 0..{self.epochs}")
        return tuple(sorted(set(cps)))

    def takes_spectra(self, epoch: int) -> bool:
        """Whether checkpoint ``epoch`` takes NTK spectra: every checkpoint, or with
        ``ntk_spectra_at == "last"`` only the last one (``epoch == epochs``)."""
        return self.ntk_spectra_at == "every" or epoch == self.epochs

    def curve_epochs(self) -> tuple[int, ...]:
        """Epochs (0..epochs) at which the full-data loss and PSNR are measured for the training
        curve: every ``curve_every`` epochs (``None``: ``max(1, epochs // 30)``), plus 0 and the
        last epoch; ``()`` when ``curve_every == 0``."""
        every = max(1, self.epochs // 30) if self.curve_every is None else int(self.curve_every)
        if every == 0:
            return ()
        return tuple(sorted({*range(0, self.epochs + 1, every), self.epochs}))

    def epoch_size(self, n_points: int) -> int:
        """Points drawn (without replacement) per epoch from a pool of ``n_points``: all of
        them, or ``min(n_points, steps_per_epoch * batch_size)``."""
        if self.steps_per_epoch is None:
            return int(n_points)
        return int(min(n_points, self.steps_per_epoch * self.batch_size))

    def replace(self, **changes: Any) -> TrainConfig:
        """Copy with some fields changed. ``encoding`` may be a config, or a dict of changes to
        the current encoding's fields; a dict whose ``"kind"`` differs builds that kind from
        its defaults and the dict's fields."""
        enc = changes.pop("encoding", None)
        if isinstance(enc, Mapping):
            enc = dict(enc)
            kind = enc.pop("kind", self.encoding.kind)
            if kind == self.encoding.kind:
                changes["encoding"] = encoding_from_dict({**self.encoding.to_dict(), **enc})
            else:
                changes["encoding"] = encoding_from_dict({"kind": kind, **enc})
        elif enc is not None:
            changes["encoding"] = enc
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready dict (format :data:`CONFIG_FORMAT`); :meth:`from_dict` inverts it."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"config_format": CONFIG_FORMAT, **d, "encoding": self.encoding.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> TrainConfig:
        """The config of a :meth:`to_dict` dict, of any format up to :data:`CONFIG_FORMAT`
        (format 1, without a ``"config_format"`` key, had one flat 25-field encoding dict).
        Missing fields take their defaults; raises ``ValueError``/``TypeError`` on bad ones."""
        d = dict(d)
        fmt = d.pop("config_format", 1)
        if fmt not in (1, CONFIG_FORMAT):
            raise ValueError(f"config_format {fmt!r} is not one this version reads (1..{CONFIG_FORMAT})")
        enc = d.get("encoding", {})
        if not isinstance(enc, Mapping):
            raise TypeError(f"encoding must be a dict, got {type(enc).__name__}")
        d["encoding"] = encoding_from_format1(enc) if fmt == 1 else encoding_from_dict(enc)
        for key in ("hidden", "checkpoints"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)
