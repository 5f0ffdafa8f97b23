"""Image quality metrics in JAX: MSE, PSNR, SSIM and MS-SSIM.

All functions take images with values in ``[0, data_range]`` (``[0, 1]`` by
default) in channels-last layout ``(..., H, W, C)``: any number of leading batch
axes, then height, width and channels (grayscale images need an explicit
``C = 1`` axis). Metrics are computed per image over the trailing ``(H, W, C)``
axes, so the result has the batch shape ``(...)`` (a scalar for one image).
Inputs are promoted to at least float32 and the result has that dtype, so
float64 works under ``with jax.enable_x64(True):``.

Every function is pure ``jnp`` code and works under :func:`jax.jit`; the image
shape, ``win_size``, ``win_sigma``, ``k`` and ``weights`` must be static (pass
them through :func:`functools.partial` or ``static_argnames``), ``data_range``
may be traced.

:func:`ssim` and :func:`ms_ssim` reproduce pytorch-msssim 1.0.0
(``size_average=False``) exactly: 11-tap Gaussian window (sigma 1.5) applied
separably as a *valid* convolution, ``K = (0.01, 0.03)``, the SSIM/CS maps
averaged per channel and then over channels, the weights ``(0.0448, 0.2856,
0.3001, 0.2363, 0.1333)``, ``relu`` on the per-scale CS values and on the last
scale's SSIM, and 2x2 average pooling (zero padding ``s % 2`` per side, counted
in the mean) between scales.

Unlike pytorch-msssim, which asserts that the short side exceeds
``(win_size - 1) * 2**4 = 160`` pixels, :func:`ms_ssim` accepts smaller images:
it uses the largest number of scales ``S <= len(weights)`` whose coarsest scale
still fits the window (see :func:`ms_ssim_scales`), renormalises the first
``S`` weights to sum to 1 and emits a :class:`ReducedScalesWarning`;
:func:`ms_ssim_report` returns the value together with ``scales`` and a
``reduced`` flag. Images whose short side is below ``win_size`` raise
``ValueError`` (also in :func:`ssim`, where pytorch-msssim would silently skip
the smoothing along that axis).

Example:

>>> import jax.numpy as jnp
>>> from ntkgrid import metrics
>>> x = jnp.linspace(0.0, 1.0, 2 * 200 * 200 * 3).reshape(2, 200, 200, 3)
>>> y = jnp.clip(x + 0.01, 0.0, 1.0)
>>> metrics.psnr(x, y).shape
(2,)
>>> float(metrics.ms_ssim(x, x)[0])
1.0
>>> r = metrics.ms_ssim_report(x[:, :100, :100], y[:, :100, :100])
>>> r["scales"], r["reduced"]
(4, True)
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = [
    "MS_SSIM_WEIGHTS",
    "ReducedScalesWarning",
    "mse",
    "psnr",
    "ssim",
    "ms_ssim",
    "ms_ssim_scales",
    "ms_ssim_weights",
    "ms_ssim_report",
]

#: Per-scale MS-SSIM exponents of Wang et al. (2003), finest scale first.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


class ReducedScalesWarning(UserWarning):
    """MS-SSIM ran with fewer scales than weights because the image is small."""


def _prepare(x, y) -> tuple[jax.Array, jax.Array]:
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"images must have the same shape, got {x.shape} and {y.shape}")
    if x.ndim < 3:
        raise ValueError(f"images must have layout (..., H, W, C), got shape {x.shape}")
    dtype = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
    return x.astype(dtype), y.astype(dtype)


def mse(x, y) -> jax.Array:
    """Mean squared error per image.

    Args:
      x, y: images, shape ``(..., H, W, C)``.

    Returns:
      ``mean((x - y)**2)`` over the trailing ``(H, W, C)`` axes, shape ``(...)``,
      in squared units of the input.
    """
    x, y = _prepare(x, y)
    return jnp.mean(jnp.square(x - y), axis=(-3, -2, -1))


def psnr(x, y, data_range: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio per image, in decibels.

    Args:
      x, y: images, shape ``(..., H, W, C)``, values in ``[0, data_range]``.
      data_range: peak-to-peak value range of the images (1 for ``[0, 1]``).

    Returns:
      ``10 * log10(data_range**2 / mse(x, y))`` in dB, shape ``(...)``;
      ``+inf`` for identical images.
    """
    err = mse(x, y)
    return 10.0 * jnp.log10(jnp.square(jnp.asarray(data_range, err.dtype)) / err)


# pytorch-msssim's default window, bit for bit: it builds it in float32 with torch's exp and
# sum, which differ from other float32 implementations by an ulp in a few taps; its sum
# (1 - 3.1e-8) moves SSIM by up to ~1e-5, so we use torch's exact float32 values.
_TORCH_WINDOW_11_1P5 = (
    0.0010283803567290306, 0.0075987582094967365, 0.036000773310661316,
    0.10936068743467331, 0.21300552785396576, 0.26601171493530273,
)  # taps 0..5 of 11, symmetric


def _gaussian_window(win_size: int, win_sigma: float, dtype) -> jax.Array:
    """Normalised 1-D Gaussian window of length ``win_size``, float32 values cast to ``dtype``.

    Like pytorch-msssim the taps are float32 numbers even for float64 images; for
    the default ``(11, 1.5)`` they are exactly pytorch-msssim's.
    """
    if win_size % 2 != 1:
        raise ValueError(f"window size must be odd, got {win_size}")
    if (win_size, win_sigma) == (11, 1.5):
        taps = _TORCH_WINDOW_11_1P5 + _TORCH_WINDOW_11_1P5[-2::-1]
    else:
        g = [math.exp(-((i - win_size // 2) ** 2) / (2 * win_sigma**2)) for i in range(win_size)]
        total = math.fsum(g)
        taps = tuple(v / total for v in g)
    return jnp.asarray(taps, dtype=jnp.float32).astype(dtype)


def _filter_valid(x: jax.Array, win: jax.Array) -> jax.Array:
    """Separable valid correlation of ``(..., H, W, C)`` with ``win`` along H then W.

    A sum of shifted slices, which XLA fuses into one pass per axis: on CPU it is
    several times faster than a depthwise convolution, and float32 results do not
    depend on an accelerator's convolution precision (e.g. TF32).
    """
    n = win.shape[0]
    for axis in (x.ndim - 3, x.ndim - 2):
        m = x.shape[axis] - n + 1
        x = sum(win[i] * jax.lax.slice_in_dim(x, i, i + m, axis=axis) for i in range(n))
    return x


def _ssim_cs(x, y, win, data_range, k) -> tuple[jax.Array, jax.Array]:
    """Per-channel means of the SSIM and contrast-structure maps, each shape ``(..., C)``."""
    k1, k2 = k
    data_range = jnp.asarray(data_range, x.dtype)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    c = x.shape[-1]
    filtered = _filter_valid(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1), win)
    mu1, mu2, xx, yy, xy = (filtered[..., i * c : (i + 1) * c] for i in range(5))
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq, sigma2_sq, sigma12 = xx - mu1_sq, yy - mu2_sq, xy - mu1_mu2
    cs_map = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2)
    ssim_map = ((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return jnp.mean(ssim_map, axis=(-3, -2)), jnp.mean(cs_map, axis=(-3, -2))


def _check_fits(shape, win_size: int) -> None:
    if min(shape[-3], shape[-2]) < win_size:
        raise ValueError(
            f"image shape {tuple(shape)} (layout (..., H, W, C)) is too small: "
            f"height and width must be >= win_size={win_size}"
        )


def ssim(
    x,
    y,
    data_range: float = 1.0,
    *,
    win_size: int = 11,
    win_sigma: float = 1.5,
    k: tuple[float, float] = (0.01, 0.03),
) -> jax.Array:
    """Structural similarity per image, as ``pytorch_msssim.ssim(size_average=False)``.

    Args:
      x, y: images, shape ``(..., H, W, C)`` with ``H, W >= win_size``,
        values in ``[0, data_range]``.
      data_range: peak-to-peak value range of the images.
      win_size: odd length of the Gaussian window (pixels).
      win_sigma: standard deviation of the Gaussian window (pixels).
      k: the constants ``(K1, K2)``.

    Returns:
      Dimensionless SSIM (1 for identical images), mean of the valid-region
      SSIM map per channel then over channels, shape ``(...)``.

    Raises:
      ValueError: if shapes differ or ``min(H, W) < win_size``.
    """
    x, y = _prepare(x, y)
    _check_fits(x.shape, win_size)
    return _ssim_impl(x, y, data_range, win_size=win_size, win_sigma=float(win_sigma), k=_pair(k))


def _pair(k) -> tuple[float, float]:
    k1, k2 = k
    return float(k1), float(k2)


_STATIC = ("win_size", "win_sigma", "k", "weights")


@functools.partial(jax.jit, static_argnames=_STATIC[:3])
def _ssim_impl(x, y, data_range, *, win_size, win_sigma, k):
    s, _ = _ssim_cs(x, y, _gaussian_window(win_size, win_sigma, x.dtype), data_range, k)
    return jnp.mean(s, axis=-1)


def ms_ssim_scales(height: int, width: int, win_size: int = 11, max_scales: int = 5) -> int:
    """Number of MS-SSIM scales used for an ``height x width`` image.

    The largest ``S <= max_scales`` with ``min(height, width) > (win_size - 1) * 2**(S - 1)``,
    i.e. the coarsest of the ``S`` scales (side ``ceil(side / 2**(S - 1))`` after
    the padded 2x2 poolings) is still at least ``win_size`` pixels. For the default
    window: short side 161+ -> 5, 81..160 -> 4, 41..80 -> 3, 21..40 -> 2, 11..20 -> 1.

    Raises:
      ValueError: if ``min(height, width) < win_size`` (not even one scale fits).
    """
    side = min(height, width)
    if side < win_size:
        raise ValueError(
            f"image of shape (H, W) = ({height}, {width}) is too small for MS-SSIM: "
            f"the short side must be >= win_size={win_size}"
        )
    scales = 1
    while scales < max_scales and side > (win_size - 1) * 2**scales:
        scales += 1
    return scales


def ms_ssim_weights(
    height: int, width: int, win_size: int = 11, weights: Sequence[float] | None = None
) -> tuple[float, ...]:
    """Per-scale exponents MS-SSIM uses for an ``height x width`` image.

    ``weights`` (default :data:`MS_SSIM_WEIGHTS`) unchanged when all of them fit,
    otherwise the first ``ms_ssim_scales(...)`` of them renormalised to sum to 1.
    """
    weights = tuple(float(w) for w in (MS_SSIM_WEIGHTS if weights is None else weights))
    if not weights:
        raise ValueError("weights must not be empty")
    scales = ms_ssim_scales(height, width, win_size, max_scales=len(weights))
    if scales == len(weights):
        return weights
    total = math.fsum(weights[:scales])
    return tuple(w / total for w in weights[:scales])


def _avg_pool2(x: jax.Array) -> jax.Array:
    """``F.avg_pool2d(kernel_size=2, padding=[s % 2 ...])`` on ``(..., H, W, C)``."""
    h, w = x.shape[-3], x.shape[-2]
    ph, pw = h % 2, w % 2
    pad = [(0, 0)] * (x.ndim - 3) + [(ph, ph), (pw, pw), (0, 0)]
    x = jnp.pad(x, pad)
    oh, ow = (h + 2 * ph) // 2, (w + 2 * pw) // 2  # floor((s + 2p - 2) / 2) + 1
    x = x[..., : 2 * oh, : 2 * ow, :]
    x = x.reshape(*x.shape[:-3], oh, 2, ow, 2, x.shape[-1])
    return jnp.mean(x, axis=(-4, -2))  # zero padding counts in the mean


def ms_ssim(
    x,
    y,
    data_range: float = 1.0,
    weights: Sequence[float] | None = None,
    *,
    win_size: int = 11,
    win_sigma: float = 1.5,
    k: tuple[float, float] = (0.01, 0.03),
) -> jax.Array:
    """Multi-scale SSIM per image, as ``pytorch_msssim.ms_ssim(size_average=False)``.

    Args:
      x, y: images, shape ``(..., H, W, C)`` with ``min(H, W) >= win_size``,
        values in ``[0, data_range]``.
      data_range: peak-to-peak value range of the images.
      weights: per-scale exponents, finest first (default :data:`MS_SSIM_WEIGHTS`);
        their number is the number of scales when the image is large enough.
      win_size, win_sigma, k: as in :func:`ssim`.

    Returns:
      Dimensionless MS-SSIM in ``[0, 1]`` (1 for identical images), shape ``(...)``.
      Equal to pytorch-msssim when ``min(H, W) > (win_size - 1) * 2**(len(weights) - 1)``;
      for smaller images the number of scales is reduced (see
      :func:`ms_ssim_scales`, :func:`ms_ssim_weights`) and a
      :class:`ReducedScalesWarning` is emitted (once per trace under ``jit``).

    Raises:
      ValueError: if shapes differ or ``min(H, W) < win_size``.
    """
    x, y = _prepare(x, y)
    h, w = x.shape[-3], x.shape[-2]
    scale_weights = ms_ssim_weights(h, w, win_size, weights)
    n_full = len(MS_SSIM_WEIGHTS) if weights is None else len(weights)
    if len(scale_weights) < n_full:
        warnings.warn(
            f"image of shape (H, W) = ({h}, {w}) is too small for {n_full}-scale MS-SSIM "
            f"with win_size={win_size}; using {len(scale_weights)} scales with "
            f"renormalised weights {scale_weights}",
            ReducedScalesWarning,
            stacklevel=2,
        )
    return _ms_ssim_impl(
        x, y, data_range, win_size=win_size, win_sigma=float(win_sigma), k=_pair(k), weights=scale_weights
    )


@functools.partial(jax.jit, static_argnames=_STATIC)
def _ms_ssim_impl(x, y, data_range, *, win_size, win_sigma, k, weights):
    win = _gaussian_window(win_size, win_sigma, x.dtype)
    levels = []
    for i in range(len(weights)):
        s, cs = _ssim_cs(x, y, win, data_range, k)
        if i < len(weights) - 1:
            levels.append(jax.nn.relu(cs))
            x, y = _avg_pool2(x), _avg_pool2(y)
    levels.append(jax.nn.relu(s))
    stacked = jnp.stack(levels)  # (scales, ..., C)
    exps = jnp.asarray(weights, x.dtype).reshape((-1,) + (1,) * (stacked.ndim - 1))
    return jnp.mean(jnp.prod(stacked**exps, axis=0), axis=-1)


def ms_ssim_report(
    x,
    y,
    data_range: float = 1.0,
    weights: Sequence[float] | None = None,
    *,
    win_size: int = 11,
    win_sigma: float = 1.5,
    k: tuple[float, float] = (0.01, 0.03),
) -> dict:
    """MS-SSIM with the scale bookkeeping made explicit (call eagerly, not under ``jit``).

    Same arguments as :func:`ms_ssim`, but no :class:`ReducedScalesWarning` is emitted.

    Returns:
      ``dict(value=..., scales=int, reduced=bool, weights=tuple)``: ``value`` is
      :func:`ms_ssim` (shape ``(...)``), ``scales`` the number of scales used,
      ``reduced`` whether that is fewer than ``len(weights)``, ``weights`` the
      exponents actually applied (renormalised when reduced).
    """
    shape = jnp.shape(x)
    if len(shape) < 3:
        raise ValueError(f"images must have layout (..., H, W, C), got shape {shape}")
    used = ms_ssim_weights(shape[-3], shape[-2], win_size, weights)
    n_full = len(MS_SSIM_WEIGHTS) if weights is None else len(weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReducedScalesWarning)
        value = ms_ssim(x, y, data_range, weights, win_size=win_size, win_sigma=win_sigma, k=k)
    return {"value": value, "scales": len(used), "reduced": len(used) < n_full, "weights": used}
