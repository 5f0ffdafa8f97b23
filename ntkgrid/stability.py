"""The largest stable SGD step predicted from the NTK at initialisation.

For a minibatch of ``B`` points with ``O`` outputs, SGD minimises

    L_B(theta) = s / (B O) * sum_{b, o} (f_o(x_b; theta) - y_bo)^2

with ``s = ntkgrid.config.loss_scale(reduction, B, O)`` (1 for the mean, ``O`` for the sum
over channels, ``B O`` for the sum over both). Linearising ``f`` around the current
parameters, one step ``theta <- theta - lr grad L_B`` changes the minibatch residual
``r = f - y`` (a ``B O`` vector) to

    r' = (I - lr * 2 s / (B O) * Theta_B) r,

where ``Theta_B = J J^T`` is the ``(B O) x (B O)`` empirical NTK of the minibatch (all
output pairs, not traced). The step contracts every eigen-direction iff
``lr * 2 s / (B O) * lambda_max(Theta_B) < 2``, i.e.

    lr < lr_crit = B O / (s * lambda_max(Theta_B)).

So the mean reduction's critical step is ``B O / lambda_max``, the sum over channels'
``B / lambda_max`` and the sum's ``1 / lambda_max``.

**The one definition.** Writing ``g = 2 s / (B O)`` (``dL_B / df_o(x_b) = g r_bo``,
:func:`ntkgrid.theory.loss_gradient_scale`), one step is ``r' = (I - lr g Theta_step) r``
and :func:`critical_step` is ``lr_crit = 2 / (g lambda_max(Theta_step))``, always on the
full output-block kernel (every output pair, not the trace over outputs): ``Theta_step =
Theta_B`` for a minibatch (what :func:`critical_lr` measures, at initialisation or at any
checkpoint's ``variables``), or ``(B / N) Theta_N`` for the expected step over ``N``
points (``ntkgrid.theory.predict_training``). The library's every ``eta_crit``
(:mod:`ntkgrid.evidence`, the experiments' reports) is :func:`critical_lr`'s. The traced
kernel ``K = Theta / O`` summed over ``o = p`` assumes the outputs independent
(``Theta[n, m, o, p] = delta_op K[n, m]``); on a trained baseline the off-diagonal output
blocks carry ~5% of ``||Theta||_F^2`` and the full kernel's ``lambda_max`` is ~25% above the
traced model's, so an ``eta_crit`` from ``K`` is too permissive. Under every parameterisation of
:mod:`ntkgrid.models` the kernel's top eigenvector is close to the constant mode, so
``lambda_max`` grows about linearly with ``B`` and the mean reduction's ``lr_crit`` is
nearly independent of the batch size, while the sum's shrinks as ``1/B``. Above
``lr_crit`` a wide network may still survive by "catapulting" (the loss spikes and the
kernel shrinks, Lewkowycz et al. 2020) up to a few times ``lr_crit``; beyond that the
run diverges. :func:`critical_lr` gives the prediction; experiments/RECIPE.md compares
it with runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid.config import TrainConfig, loss_scale
from ntkgrid.data.images import image_to_dataset
from ntkgrid.models import build_model
from ntkgrid.ntk import empirical_ntk

__all__ = ["CATAPULT_NOTE", "StepPrediction", "batch_lambda_max", "critical_lr", "critical_step", "lr_rule_note",
           "with_critical_lr", "with_critical_lrs"]


@dataclasses.dataclass(frozen=True)
class StepPrediction:
    """Prediction of :func:`critical_lr`.

    Attributes:
      lambda_max: ``(n_batches,)`` float64 top eigenvalue of each minibatch's full
        ``(B O) x (B O)`` NTK at initialisation.
      lr_crit: ``(n_batches,)`` ``B O / (s lambda_max)`` per minibatch.
      lr_crit_median: median of ``lr_crit``; the prediction is "stable" iff ``lr`` is below it.
      batch_size, out_dim, scale: ``B``, ``O`` and the loss scale ``s``.
    """

    lambda_max: np.ndarray
    lr_crit: np.ndarray
    lr_crit_median: float
    batch_size: int
    out_dim: int
    scale: float

    def stable(self, lr: float) -> bool:
        """``lr < lr_crit_median``."""
        return bool(lr < self.lr_crit_median)


def critical_step(lambda_max, gradient_scale: float):
    """``lr_crit = 2 / (g lambda_max)``: the step at which ``|1 - lr g lambda_max| = 1``.

    Args:
      lambda_max: top eigenvalue(s) of the full output-block kernel one SGD step applies
        (``Theta_B``, or ``(B / N) Theta_N`` in expectation); float or array.
      gradient_scale: ``g`` (``2 s / (B O)`` for the squared error; module docstring).

    Returns:
      ``lr_crit``, the shape of ``lambda_max`` (inf where ``lambda_max <= 0``).
    """
    lam = np.asarray(lambda_max, np.float64)
    with np.errstate(divide="ignore"):
        out = np.where(lam > 0, 2.0 / (gradient_scale * np.where(lam > 0, lam, 1.0)), np.inf)
    return float(out) if out.ndim == 0 else out


def batch_lambda_max(cfg: TrainConfig, coords, out_dim: int, *, batch_size: int | None = None,
                     n_batches: int = 4, seed: int = 0, variables=None) -> np.ndarray:
    """``(n_batches,)`` top eigenvalues of the full minibatch NTK ``Theta_B`` (``(B O) x
    (B O)``, float64 eigensolver) of ``cfg.model`` with ``variables`` (default: initialised
    as :func:`ntkgrid.training.fit` does, ``cfg.seed``), on ``n_batches`` minibatches of
    ``batch_size`` (default ``cfg.batch_size``) points of ``coords`` ``(N, d)`` drawn
    without replacement (``numpy`` generator ``seed``)."""
    x = np.asarray(coords, np.float32)
    b = int(batch_size or cfg.batch_size)
    if x.ndim != 2 or not 1 <= b <= x.shape[0]:
        raise ValueError(f"coords must be (N, d) with N >= batch size {b}, got {x.shape}")
    model = build_model(cfg, x.shape[1], out_dim)
    if variables is None:
        init_key, _ = jax.random.split(jax.random.PRNGKey(cfg.seed))
        variables = model.init(init_key, jnp.asarray(x[:1]))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        xb = jnp.asarray(x[rng.choice(x.shape[0], b, replace=False)])
        k = np.asarray(empirical_ntk(model, variables, xb, trace=False, block_size=b), np.float64)
        k = k.transpose(0, 2, 1, 3).reshape(b * out_dim, b * out_dim)
        out.append(float(np.linalg.eigvalsh(0.5 * (k + k.T))[-1]))
    return np.asarray(out, np.float64)


def critical_lr(cfg: TrainConfig, coords, out_dim: int, *, batch_size: int | None = None,
                n_batches: int = 4, seed: int = 0, variables=None) -> StepPrediction:
    """The largest stable SGD step ``B O / (s lambda_max(Theta_B))`` (:func:`critical_step`
    with ``g = 2 s / (B O)``; module docstring) for ``cfg``'s loss reduction, on minibatches
    of ``coords`` ``(N, d)``, at initialisation or at a checkpoint's ``variables``."""
    b = int(batch_size or cfg.batch_size)
    lam = batch_lambda_max(cfg, coords, out_dim, batch_size=b, n_batches=n_batches, seed=seed, variables=variables)
    s = loss_scale(cfg.loss_reduction, b, out_dim)
    lr = np.asarray(critical_step(lam, 2.0 * s / (b * out_dim)), np.float64).reshape(lam.shape)
    return StepPrediction(lambda_max=lam, lr_crit=lr, lr_crit_median=float(np.median(lr)), batch_size=b,
                          out_dim=out_dim, scale=s)


#: What :func:`lr_rule_note` says of a step at or above the critical one.
CATAPULT_NOTE = ("at or above the critical step at initialisation: the linearised bound says nothing about "
                 "such runs (they may catapult, Lewkowycz et al. 2020, or diverge)")


def lr_rule_note(fraction: float | None) -> str | None:
    """Where the critical-step rule cannot speak for a run: :data:`CATAPULT_NOTE` for
    ``fraction >= 1``; None for a fraction below 1 (the linearised prediction applies) or no rule."""
    if fraction is None or fraction < 1.0:
        return None
    return CATAPULT_NOTE


def with_critical_lr(cfg: TrainConfig, fraction: float, coords, out_dim: int, **kwargs) -> tuple[TrainConfig,
                                                                                                 StepPrediction]:
    """``cfg`` training at ``fraction`` of its own critical step: ``learning_rate = fraction *
    critical_lr(cfg, coords, out_dim).lr_crit_median`` (the network ``cfg`` builds, initialised with
    ``cfg.seed``, on minibatches of ``cfg.batch_size`` points of ``coords`` ``(N, d)``) and
    ``lr_fraction = fraction`` recorded in the config. ``kwargs`` go to :func:`critical_lr`.
    Returns ``(config, prediction)``; raises ``ValueError`` if the prediction is not finite."""
    if not fraction > 0:
        raise ValueError(f"the critical-step fraction must be > 0, got {fraction}")
    pred = critical_lr(cfg, coords, out_dim, **kwargs)
    lr = float(fraction) * pred.lr_crit_median
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"critical step of {cfg.encoding.kind} ({cfg.activation}) is not usable: "
                         f"lr_crit_median = {pred.lr_crit_median}")
    return cfg.replace(learning_rate=lr, lr_fraction=float(fraction)), pred


def with_critical_lrs(configs: Mapping[str, TrainConfig], fraction: float, image: np.ndarray, *,
                      log: Callable[[str], None] | None = None) -> dict[str, TrainConfig]:
    """Every config of ``configs`` at ``fraction`` of its own critical step on ``image``'s pixels
    (:func:`with_critical_lr`, each on the pixels its ``cfg.pixels`` selects).

    Args:
      configs: ``{name: TrainConfig}``.
      fraction: the fraction of the critical step (> 0; >= 1 is beyond the linearised bound).
      image: ``(H, W, C)`` float32 in ``[0, 1]``, the training image.
      log: given, one line per config with the critical step and the step set.

    Returns:
      ``{name: TrainConfig}`` with ``learning_rate`` and ``lr_fraction`` set, in ``configs``' order.
    """
    out = {}
    for name, cfg in configs.items():
        coords, values = image_to_dataset(image, pixels=cfg.pixels)
        out[name], pred = with_critical_lr(cfg, fraction, coords, values.shape[1])
        if log is not None:
            note = lr_rule_note(fraction)
            log(f"{name}: lr = {fraction:g} x critical step {pred.lr_crit_median:.4g} = "
                f"{out[name].learning_rate:.4g}" + (f" ({note})" if note else ""))
    return out
